import Foundation
import ProvisionerAPI
import ProvisionerCore
import Testing

@testable import ProvisionerPlugins

@Suite struct BuiltinPluginTests {
    let node = NodeConfig(name: "web1")
    let mounts = [
        MountedFilesystem(device: "/dev/system/root", uuid: "1111", mountPoint: "/", type: .ext4, options: []),
        MountedFilesystem(
            device: "/dev/md127", uuid: "AB-CD", mountPoint: "/boot/efi", type: .vfat, options: ["umask=0077"]),
        MountedFilesystem(
            device: "/dev/system/scratch", uuid: nil, mountPoint: "/my scratch", type: .xfs, options: ["noatime"]),
    ]
    let swaps = [MountedFilesystem(device: "/dev/system/swap", uuid: "5555", mountPoint: "", type: .swap, options: [])]

    func entries(_ name: String, _ parameters: [String: String] = [:], units: [String: [String]] = [:]) throws
        -> [RootEntry]
    {
        try BuiltinPlugins.entries(
            for: PluginConfig(name: name, parameters: parameters), node: node, mounts: mounts, swaps: swaps,
            wantedBy: { units[$0] })
    }

    @Test func hostnameDefaultsToTheNodeName() throws {
        #expect(try entries("hostname") == [.file(path: "/etc/hostname", content: "web1\n", mode: 0o644)])
        #expect(
            try entries("hostname", ["name": "gpu-7"]) == [
                .file(path: "/etc/hostname", content: "gpu-7\n", mode: 0o644)
            ])
    }

    @Test func fstabComesFromTheLayoutByUUID() throws {
        guard case .file(_, let text, _) = try #require(try entries("fstab").first) else {
            Issue.record("not a file"); return
        }
        #expect(text.contains("UUID=1111 / ext4 defaults 0 1\n"))
        #expect(text.contains("UUID=AB-CD /boot/efi vfat umask=0077 0 0\n"))
        #expect(text.contains("/dev/system/scratch /my\\040scratch xfs noatime 0 0\n"))
        #expect(text.contains("UUID=5555 none swap sw 0 0\n"))
    }

    @Test func staticNetworkAndEnablingNetworkd() throws {
        let result = try entries(
            "network",
            [
                "mac": "52:54:00:AB:CD:EF", "address": "10.0.0.11/24", "gateway": "10.0.0.1",
                "dns": "10.0.0.2, 10.0.0.3",
            ],
            units: ["systemd-networkd.service": ["multi-user.target"]])
        guard case .file(let path, let text, _) = result[0] else { Issue.record("not a file"); return }
        #expect(path == "/etc/systemd/network/10-provisioner-default.network")
        #expect(text.contains("MACAddress=52:54:00:ab:cd:ef\n"))
        #expect(text.contains("Address=10.0.0.11/24\nGateway=10.0.0.1\nDNS=10.0.0.2\nDNS=10.0.0.3\n"))
        #expect(
            result[1]
                == .symlink(
                    path: "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                    target: "/usr/lib/systemd/system/systemd-networkd.service"))
    }

    @Test(arguments: [
        ("network", ["address": "10.0.0.300/24"], "is not an address with a prefix length"),
        ("network", ["dhcp": "ipv4"], "the image has no unit systemd-networkd.service"),
        ("network", ["gateway": "10.0.0.1"], "gateway needs a static address"),
        ("network", ["mac": "52:54:00"], "is not a MAC address"),
        ("hostname", ["name": "-bad"], "is not a host name"),
        ("hostname", ["nmae": "x"], "unknown parameter \"nmae\""),
        ("ssh-keys", ["keys": "hello"], "does not look like an OpenSSH public key"),
        ("ssh-keys", [:], "keys lists no key"),
        ("units", ["enable": "nope.service"], "the image has no unit nope.service"),
        ("units", ["mask": "../x"], "is not a unit name"),
        ("printer", [:], "is not a built-in plugin"),
    ])
    func badParametersAreNamed(name: String, parameters: [String: String], problem: String) throws {
        let error = try #require(throws: PluginError.self) { try entries(name, parameters) }
        #expect(error.description.contains(problem), "\(error)")
        #expect(error.plugin == name)
    }

    @Test func wantedByReadsTheInstallSection() {
        let unit =
            "[Unit]\nWantedBy=wrong.target\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target graphical.target\n"
        #expect(BuiltinPlugins.wantedBy(unitFile: unit) == ["multi-user.target", "graphical.target"])
    }
}

@Suite struct PluginRunnerTests {
    func makeRoot() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plugins-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(
            atPath: dir + "/usr/lib/systemd/system", withIntermediateDirectories: true)
        try "[Unit]\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
            .write(toFile: dir + "/usr/lib/systemd/system/chronyd.service", atomically: true, encoding: .utf8)
        return dir
    }

    @Test func writesOnlyWhatDiffersAndSaysWhichChanged() throws {
        let root = try makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let runner = PluginRunner(root: root)
        let node = NodeConfig(name: "web1")
        func run(_ plugins: [PluginConfig]) throws -> PluginRunner.Report {
            var all: [RootEntry] = []
            for plugin in plugins {
                all += try BuiltinPlugins.entries(
                    for: plugin, node: node, mounts: [], swaps: [], wantedBy: runner.wantedBy)
            }
            return try runner.apply(all)
        }
        let plugins = [
            PluginConfig(name: "hostname"),
            PluginConfig(name: "ssh-keys", parameters: ["keys": "ssh-ed25519 AAAAC3Nza admin@x"]),
            PluginConfig(name: "units", parameters: ["enable": "chronyd.service", "mask": "apt-daily.timer"]),
        ]
        let first = try run(plugins)
        #expect(
            first.changed == [
                "/etc/hostname", "/root/.ssh/authorized_keys",
                "/etc/systemd/system/multi-user.target.wants/chronyd.service",
                "/etc/systemd/system/apt-daily.timer",
            ])
        let attributes = try FileManager.default.attributesOfItem(atPath: root + "/root/.ssh/authorized_keys")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: root + "/etc/systemd/system/apt-daily.timer")
                == "/dev/null")

        // Again: nothing changes, nothing is rewritten.
        let inode =
            try (FileManager.default.attributesOfItem(atPath: root + "/etc/hostname")[.systemFileNumber] as? Int)
        let second = try run(plugins)
        #expect(second.changed == [])
        #expect(second.unchanged.count == 4)
        #expect(
            try (FileManager.default.attributesOfItem(atPath: root + "/etc/hostname")[.systemFileNumber] as? Int)
                == inode)

        // Another host name: only that file.
        var renamed = plugins
        renamed[0].parameters = ["name": "web2"]
        #expect(try run(renamed).changed == ["/etc/hostname"])
        #expect(try String(contentsOfFile: root + "/etc/hostname", encoding: .utf8) == "web2\n")
    }

    @Test func aLinkInTheImageIsReplacedNotFollowed() throws {
        let root = try makeRoot()
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("outside-\(UUID().uuidString)").path
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: outside)
        }
        try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/hostname", withDestinationPath: outside)
        let report = try PluginRunner(root: root).apply([.file(path: "/etc/hostname", content: "web1\n", mode: 0o644)])
        #expect(report.changed == ["/etc/hostname"])
        #expect(!FileManager.default.fileExists(atPath: outside))
        // A directory that is a link out of the root is refused, not followed.
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/root", withDestinationPath: outside)
        #expect(throws: PluginRunner.WriteError.self) {
            try PluginRunner(root: root).apply([.file(path: "/root/.ssh/authorized_keys", content: "k\n", mode: 0o600)])
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == [])
    }
}

/// N10's lines: what the overlays and secrets changed, then the built-in plugins' summary.
@Suite struct PluginReportTests {
    @Test func nothingChanged() {
        let report = PluginRunner.Report(changed: [], unchanged: ["etc/hostname", "etc/fstab", "etc/motd", "etc/key"])
        #expect(
            report.fileLines(overlays: ["site", "motd"], overlayFiles: ["etc/motd"], secretFiles: ["etc/key"]) == [
                "overlays site, motd: nothing to change (1 file(s) already right)", "secrets: 1 already in place",
            ])
        #expect(
            report.summary(plugins: ["hostname", "fstab"], took: "0.1 s")
                == "hostname, fstab: nothing to change (4 file(s) already right); in 0.1 s")
    }

    @Test func whatWasWrittenIsNamedWhereItBelongs() {
        let report = PluginRunner.Report(changed: ["etc/motd", "etc/key", "etc/hostname"], unchanged: ["etc/fstab"])
        #expect(
            report.fileLines(overlays: ["motd"], overlayFiles: ["etc/motd", "etc/issue"], secretFiles: ["etc/key"]) == [
                "overlays motd: wrote etc/motd", "secrets: wrote etc/key",
            ])
        #expect(
            report.summary(plugins: ["hostname"], took: "0.2 s")
                == "hostname: wrote etc/motd, etc/key, etc/hostname; in 0.2 s")
    }

    @Test func aNodeWithoutOverlaysOrSecretsHasNoSuchLines() {
        let report = PluginRunner.Report(changed: ["etc/hostname"], unchanged: [])
        #expect(report.fileLines(overlays: [], overlayFiles: [], secretFiles: []) == [])
    }
}
