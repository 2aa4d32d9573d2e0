import ArgumentParser
import Foundation
import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#endif

extension Ctl {
    /// `provisionerctl configure dhcp`: the services around the server that it does not run itself.
    struct Configure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "configure",
            abstract: "Writes the configuration of services the provisioning network needs (DHCP and TFTP).",
            subcommands: [DHCP.self])
    }
}

extension Ctl.Configure {
    struct DHCP: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dhcp",
            abstract:
                "Writes a dnsmasq configuration for network boot and copies Debian's iPXE binaries to its TFTP root.",
            discussion: """
                dnsmasq answers the machines' PXE requests on --interface: BIOS firmware gets undionly.kpxe, \
                UEFI firmware the --uefi-binary, both over TFTP from --tftp-root; iPXE then gets the server's \
                script (--boot-url/boot/start.ipxe). --mode full leases --range itself; --mode proxy leaves the \
                addresses to the network's DHCP server and adds only the boot information. Everything that \
                would be written is shown first; nothing is written without --yes (or a yes on a terminal). \
                Needs Debian's dnsmasq and ipxe packages; restart dnsmasq afterwards. See docs/pxe-boot.md.
                """)

        @Option(help: "The provisioning network's interface dnsmasq answers on (and only there).")
        var interface: String
        @Option(help: "This server's IPv4 address on that network.")
        var serverIP: String
        @Option(help: "The provisioning network, e.g. 10.0.0.0/24.")
        var subnet: String
        @Option(help: "full: dnsmasq leases --range; proxy: another DHCP server leases, dnsmasq adds the boot answers.")
        var mode: DnsmasqConfig.Mode = .full
        @Option(help: "Full mode: the addresses to lease, START,END.")
        var range: String?
        @Option(help: "Full mode: the router handed out (none by default).")
        var router: String?
        @Option(help: "The server's plain-HTTP boot listener (default: http://SERVER-IP:8080).")
        var bootURL: String?
        @Option(help: "The TFTP root the iPXE binaries are copied to.")
        var tftpRoot = "/srv/tftp"
        @Option(help: "Where Debian's ipxe package put its binaries.")
        var ipxeDir = "/usr/lib/ipxe"
        @Option(
            help: "The iPXE binary for UEFI machines: ipxe.efi (its own NIC drivers) or snponly.efi (the firmware's).")
        var uefiBinary: DnsmasqConfig.UEFIBinary = .ipxe
        @Option(help: "The dnsmasq configuration file to write.")
        var output = "/etc/dnsmasq.d/provisioner.conf"
        @Flag(help: "Show what would be written, write nothing.")
        var dryRun = false
        @Flag(help: "Write without asking.")
        var yes = false
        @Flag(help: "Print the plan as JSON (with --dry-run or --yes).")
        var json = false

        func run() async throws {
            try await reporting {
                let config: DnsmasqConfig
                do throws(DnsmasqConfig.Invalid) {
                    config = try DnsmasqConfig(
                        interface: interface, serverIP: serverIP, subnet: subnet, mode: mode, range: range,
                        router: router, bootURL: bootURL, tftpRoot: tftpRoot, uefiBinary: uefiBinary)
                } catch {
                    throw CtlFailure(error.description)
                }
                let plan = try DHCPPlan.make(config: config, output: output, ipxeDir: ipxeDir)
                if json {
                    try printJSON(plan)
                } else {
                    plan.show()
                }
                if dryRun {
                    if !json { print("dry run: nothing written") }
                    return
                }
                if !yes {
                    guard isatty(STDIN_FILENO) == 1 else {
                        throw CtlFailure("nothing written: standard input is not a terminal; give --yes to write")
                    }
                    print("write these? [y/N] ", terminator: "")
                    fflush(nil)
                    guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                        print("nothing written")
                        return
                    }
                }
                try plan.apply(log: json ? { _ in } : { print($0) })
                if !json {
                    print("restart dnsmasq to use it (systemctl restart dnsmasq)")
                }
            }
        }
    }
}

extension DnsmasqConfig.Mode: ExpressibleByArgument {}
extension DnsmasqConfig.UEFIBinary: ExpressibleByArgument {}

/// What `configure dhcp` writes: the configuration file and the iPXE binaries, decided before anything is written.
struct DHCPPlan: Encodable {
    struct Copy: Encodable {
        /// The file as the ipxe package installed it (symbolic links resolved).
        var source: String
        var destination: String
        var bytes: Int
        /// The destination already holds these bytes.
        var unchanged: Bool
    }

    var output: String
    var config: String
    /// The output already holds this text.
    var unchanged: Bool
    var copies: [Copy]

    static func make(config: DnsmasqConfig, output: String, ipxeDir: String) throws -> DHCPPlan {
        let fm = FileManager.default
        var copies: [Copy] = []
        for name in config.tftpFiles {
            let path = ipxeDir + "/" + name
            let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            guard let data = fm.contents(atPath: resolved) else {
                throw CtlFailure("cannot read \(path), the iPXE binary for the TFTP root (apt-get install ipxe)")
            }
            let destination = config.tftpRoot + "/" + name
            copies.append(
                Copy(
                    source: resolved, destination: destination, bytes: data.count,
                    unchanged: fm.contents(atPath: destination) == data))
        }
        let text = config.render()
        return DHCPPlan(
            output: output, config: text, unchanged: fm.contents(atPath: output) == Data(text.utf8), copies: copies)
    }

    func show() {
        print("\(output)\(unchanged ? " (unchanged)" : ""):")
        for line in config.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            print("  \(line)")
        }
        for copy in copies {
            print(
                "copy \(copy.source) -> \(copy.destination) (\(copy.bytes) bytes)\(copy.unchanged ? " (unchanged)" : "")"
            )
        }
    }

    /// Writes each file through a temporary file in its directory and a rename, so dnsmasq never reads half a file.
    func apply(log: (String) -> Void) throws {
        for copy in copies where !copy.unchanged {
            guard let data = FileManager.default.contents(atPath: copy.source) else {
                throw CtlFailure("cannot read \(copy.source)")
            }
            try Self.replace(copy.destination, with: data)
            log("wrote \(copy.destination) (\(data.count) bytes)")
        }
        if !unchanged {
            try Self.replace(output, with: Data(config.utf8))
            log("wrote \(output) (\(config.utf8.count) bytes)")
        } else {
            log("\(output) already holds this configuration")
        }
    }

    static func replace(_ path: String, with data: Data) throws {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CtlFailure("cannot create \(directory): \(error.localizedDescription)")
        }
        let temporary = directory + "/." + (path as NSString).lastPathComponent + ".\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o644])
        else {
            throw CtlFailure("cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            let cause = String(cString: strerror(errno))
            unlink(temporary)
            throw CtlFailure("cannot rename \(temporary) to \(path): \(cause)")
        }
    }
}
