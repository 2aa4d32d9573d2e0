import ArgumentParser
import Foundation
import ProvisionerPKI

extension Ctl {
    /// `provisionerctl ca init|issue`: the cluster CA and its certificates (docs/certificates.md).
    struct CA: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ca",
            abstract: "Creates the cluster CA and the certificates the server, nodes and admins use.",
            subcommands: [Init.self, Issue.self])
    }
}

extension Ctl.CA {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Creates a cluster CA, a server certificate, the nodes' client certificate and an admin certificate.",
            discussion: """
                Writes into DIR: ca.pem, ca-key.pem (the CA; keep ca-key.pem offline if you can), server.pem and
                server-key.pem (provisioner-server), client.pem and client-key.pem (embedded in the initramfs:
                make initramfs CA_CERT=DIR/ca.pem CLIENT_CERT=DIR/client.pem CLIENT_KEY=DIR/client-key.pem),
                admin.pem and admin-key.pem (provisionerctl). Keys are written mode 0600.
                """)

        @Option(name: .long, help: "Output directory (default: /var/lib/provisioner/tls, where the server looks).")
        var dir = "/var/lib/provisioner/tls"

        @Option(
            name: .long,
            help: "A DNS name the server is reached at (repeatable; default: this host's name and localhost).")
        var name: [String] = []

        @Option(name: .long, help: "An IP address the server is reached at (repeatable; default: 127.0.0.1).")
        var ip: [String] = []

        @Option(name: .long, help: "The admin certificate's name, recorded in the audit log (default: $USER).")
        var admin: String?

        @Option(name: .long, help: "Validity of the CA in days.")
        var caDays = 3650

        @Flag(name: .long, help: "Replace an existing CA (every certificate it issued stops working).")
        var force = false

        func run() async throws {
            try await reporting {
                let fm = FileManager.default
                if fm.fileExists(atPath: dir + "/ca.pem") && !force {
                    throw CtlFailure("\(dir)/ca.pem exists; use --force to replace the cluster CA")
                }
                let names = name.isEmpty ? [ProcessInfo.processInfo.hostName, "localhost"] : name
                let ips = ip.isEmpty ? ["127.0.0.1"] : ip
                let adminName = admin ?? ProcessInfo.processInfo.environment["USER"] ?? "admin"
                do {
                    let ca = try ClusterCA.create(validityDays: caDays)
                    let server = try ca.issue(
                        role: .server, commonName: names.first ?? "provisioner-server", dnsNames: names,
                        ipAddresses: ips)
                    let node = try ca.issue(role: .bootstrap, commonName: "provisioner-bootstrap")
                    let adminCert = try ca.issue(role: .admin, commonName: adminName)
                    try fm.createDirectory(
                        atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                    try write(try ca.certificatePEM, "ca.pem", mode: 0o644)
                    try write(ca.privateKeyPEM, "ca-key.pem", mode: 0o600)
                    try write(server.certificatePEM, "server.pem", mode: 0o644)
                    try write(server.privateKeyPEM, "server-key.pem", mode: 0o600)
                    try write(node.certificatePEM, "client.pem", mode: 0o644)
                    try write(node.privateKeyPEM, "client-key.pem", mode: 0o600)
                    try write(adminCert.certificatePEM, "admin.pem", mode: 0o644)
                    try write(adminCert.privateKeyPEM, "admin-key.pem", mode: 0o600)
                } catch let error as CtlFailure {
                    throw error
                } catch {
                    throw CtlFailure("creating the cluster CA in \(dir): \(error)")
                }
                print("cluster CA and certificates written to \(dir)")
                print("  server: names \(names.joined(separator: ", ")); addresses \(ips.joined(separator: ", "))")
                print(
                    "  nodes:  client.pem / client-key.pem (make initramfs CA_CERT=\(dir)/ca.pem CLIENT_CERT=\(dir)/client.pem CLIENT_KEY=\(dir)/client-key.pem)"
                )
                print("  admin:  admin.pem / admin-key.pem (\(adminName))")
            }
        }

        func write(_ text: String, _ file: String, mode: Int) throws {
            let path = dir + "/" + file
            guard
                FileManager.default.createFile(
                    atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode])
            else { throw CtlFailure("cannot write \(path)") }
            // createFile keeps an existing file's mode; make sure keys are private.
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        }
    }

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Issues another certificate from the cluster CA (an admin per person, a new server name, a mirror).")

        @Argument(
            help: """
                Role: admin (a person: provisionerctl), server (another name or address of the server), \
                mirror (a caching mirror's certificate to the server, docs/mirrors.md), node or bootstrap \
                (nodes normally enroll and get theirs from the server).
                """)
        var role: String

        @Argument(help: "The certificate's name (an admin's name is what the audit log records).")
        var commonName: String

        @Option(name: .long, help: "Directory holding ca.pem and ca-key.pem.")
        var dir = "/var/lib/provisioner/tls"

        @Option(name: .long, help: "Where to write NAME.pem and NAME-key.pem (default: the CA's directory).")
        var out: String?

        @Option(name: .long, help: "DNS name for a server certificate (repeatable).")
        var name: [String] = []

        @Option(name: .long, help: "IP address for a server certificate (repeatable).")
        var ip: [String] = []

        func run() async throws {
            try await reporting {
                guard let certificateRole = CertificateRole(rawValue: role) else {
                    throw CtlFailure(
                        "role must be one of \(CertificateRole.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(role)\"")
                }
                let ca: ClusterCA
                do {
                    ca = try ClusterCA(
                        certificatePEM: try readFile(dir + "/ca.pem", what: "CA certificate"),
                        privateKeyPEM: try readFile(dir + "/ca-key.pem", what: "CA key"))
                } catch let error as CtlFailure {
                    throw error
                } catch {
                    throw CtlFailure("\(error)")
                }
                let issued: IssuedCredential
                do {
                    issued = try ca.issue(
                        role: certificateRole, commonName: commonName, dnsNames: name, ipAddresses: ip)
                } catch {
                    throw CtlFailure("issuing the certificate: \(error)")
                }
                let target = out ?? dir
                let safe = commonName.filter { $0.isLetter || $0.isNumber || "-_.".contains($0) }
                let init_ = Init.parseOrExit(["--dir", target])
                try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
                try init_.write(issued.certificatePEM, "\(safe).pem", mode: 0o644)
                try init_.write(issued.privateKeyPEM, "\(safe)-key.pem", mode: 0o600)
                print("\(role) certificate \(commonName): \(target)/\(safe).pem, \(target)/\(safe)-key.pem")
            }
        }
    }
}
