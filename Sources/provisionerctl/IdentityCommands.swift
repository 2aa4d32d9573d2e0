import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore

// Node identities, revocation and secrets (docs/certificates.md).

extension Ctl.Nodes {
    struct Identity: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Shows a node's identity: its enrolled key and the certificates it was issued.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node name.") var name: String

        func run() async throws {
            try await reporting {
                let info = try await server.client().get(
                    "nodes/\(pathComponent(name))/identity", as: NodeIdentityInfo.self)
                if server.json { return try printJSON(info) }
                print("node \(info.node): identity \(info.state.rawValue)")
                if let key = info.key { print("  key:      \(key) (enrolled \(info.enrolledAt ?? "-"))") }
                if let approved = info.approvedBy { print("  approved: the next new key, by \(approved)") }
                var table = TextTable(["SERIAL", "ISSUED", "NOT AFTER", "REVOKED"])
                for c in info.certificates {
                    table.add([c.serial, c.firstSeen, c.notAfter ?? "-", c.revokedAt.map { "\($0) by \(c.revokedBy ?? "?")" } ?? "-"])
                }
                if !info.certificates.isEmpty { print(table.render()) }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revokes a node's certificates at once; its next enrollment with a new key needs approval.",
            discussion: """
                The server refuses the node's certificates from the next request on. The node's key is \
                remembered as revoked: it enrolls again only with `nodes approve` (or its enrollment policy \
                auto, with a new key).
                """)
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node names: a hostlist expression.") var name: String

        func run() async throws {
            try await reporting {
                for node in try expandNames(name) {
                    let result = try await server.client().send(
                        .POST, "nodes/\(pathComponent(node))/revoke", Optional<Empty>.none, as: RevokeResult.self)
                    if server.json { try printJSON(result) } else { print(result.message) }
                }
            }
        }
    }

    struct Approve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lets a node's next enrollment with a new key through (once): a replaced disk, a revoked node.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node names: a hostlist expression.") var name: String

        func run() async throws {
            try await reporting {
                for node in try expandNames(name) {
                    let info = try await server.client().send(
                        .POST, "nodes/\(pathComponent(node))/approve", Optional<Empty>.none, as: NodeIdentityInfo.self)
                    if server.json { try printJSON(info) } else {
                        print("node \(node): its next enrollment with a new key is approved")
                    }
                }
            }
        }
    }
}

extension Ctl {
    struct Certs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "certs", abstract: "Lists and revokes client certificates.",
            subcommands: [List.self, Revoke.self])

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Certificates the server issued (node identities) or saw (admins, mirrors, bootstrap).")
            @OptionGroup var server: ServerOptions
            @Option(help: "Only this role (node, admin, mirror, bootstrap).") var role: String?
            @Option(help: "Only this name (CN).") var name: String?

            func run() async throws {
                try await reporting {
                    var query: [String] = []
                    if let role { query.append("role=\(pathComponent(role))") }
                    if let name { query.append("name=\(pathComponent(name))") }
                    let list = try await server.client().get(
                        "certificates" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")),
                        as: [CertificateInfo].self)
                    if server.json { return try printJSON(list) }
                    var table = TextTable(["SERIAL", "ROLE", "NAME", "SOURCE", "FIRST SEEN", "NOT AFTER", "REVOKED"])
                    for c in list {
                        table.add([
                            c.serial, c.role, c.name, c.source, c.firstSeen, c.notAfter ?? "-", c.revokedAt ?? "-",
                        ])
                    }
                    print(table.render())
                }
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Revokes one certificate (a PEM file or --serial); refused from the next request on.")
            @OptionGroup var server: ServerOptions
            @Argument(help: "A PEM certificate file.") var file: String?
            @Option(help: "The serial in hex instead of a file.") var serial: String?
            @Option(help: "Why (kept in the audit log).") var reason: String?

            func run() async throws {
                try await reporting {
                    guard (file == nil) != (serial == nil) else { throw CtlFailure("give a certificate file or --serial, not both") }
                    let request = RevokeRequest(
                        serial: serial, certificate: try file.map { try readFile($0, what: "certificate") }, reason: reason)
                    let result = try await server.client().send(
                        .POST, "certificates/revoke", request, as: RevokeResult.self)
                    if server.json { return try printJSON(result) }
                    print(result.message)
                }
            }
        }
    }

    struct Admins: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "admins", abstract: "Revokes an admin's certificates.", subcommands: [Revoke.self])

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Revokes every certificate of admin NAME the server has seen (certs revoke FILE for others).")
            @OptionGroup var server: ServerOptions
            @Argument(help: "The admin's name (the certificate's CN).") var name: String

            func run() async throws {
                try await reporting {
                    let result = try await server.client().send(
                        .POST, "admins/\(pathComponent(name))/revoke", Optional<Empty>.none, as: RevokeResult.self)
                    if server.json { return try printJSON(result) }
                    print(result.message)
                }
            }
        }
    }

    struct Secrets: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "secrets",
            abstract: "Secrets delivered to nodes over their own certificates only (never logged, sealed at rest).",
            subcommands: [Set.self, List.self, Delete.self])

        struct Set: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Stores a secret for a node or a profile (its nodes); written into the node's root at boot.")
            @OptionGroup var server: ServerOptions
            @Argument(help: "The owner: a node or a profile (node:NAME or profile:NAME when both exist).") var owner: String
            @Argument(help: "The secret's name ([A-Za-z0-9._-]).") var name: String
            @Option(help: "Read the value from this file (- for stdin).") var from: String
            @Option(help: "Absolute path in the node's root.") var path: String
            @Option(help: "File mode, octal.") var mode = "0600"
            @Option(help: "Owner uid.") var uid = 0
            @Option(help: "Owner gid.") var gid = 0

            func run() async throws {
                try await reporting {
                    guard let modeValue = Int(mode, radix: 8) else { throw CtlFailure("--mode \(mode): not an octal mode") }
                    let data: Data?
                    if from == "-" { data = FileHandle.standardInput.readDataToEndOfFile() } else {
                        data = FileManager.default.contents(atPath: from)
                    }
                    guard let data else { throw CtlFailure("cannot read --from \(from)") }
                    let body = SecretWrite(path: path, mode: modeValue, uid: uid, gid: gid, data: data)
                    let result = try await server.client().send(
                        .PUT, "secrets/\(pathComponent(owner))/\(pathComponent(name))", body, as: [SecretInfo].self)
                    if server.json { return try printJSON(result) }
                    for s in result {
                        print("secret \(s.owner)/\(s.name): \(s.bytes) bytes -> \(s.path) (mode \(String(s.mode, radix: 8)), \(s.uid):\(s.gid))")
                    }
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Lists secrets (never their values).")
            @OptionGroup var server: ServerOptions
            @Argument(help: "Only this node's or profile's.") var owner: String?

            func run() async throws {
                try await reporting {
                    let list = try await server.client().get(
                        "secrets" + (owner.map { "?owner=\(pathComponent($0))" } ?? ""), as: [SecretInfo].self)
                    if server.json { return try printJSON(list) }
                    var table = TextTable(["OWNER", "NAME", "PATH", "MODE", "OWNER IDS", "BYTES", "UPDATED", "BY"])
                    for s in list {
                        table.add([
                            s.owner, s.name, s.path, String(s.mode, radix: 8), "\(s.uid):\(s.gid)", String(s.bytes),
                            s.updatedAt, s.generated ? "generated" : s.updatedBy,
                        ])
                    }
                    print(table.render())
                }
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Deletes a secret (nodes keep the file they have).")
            @OptionGroup var server: ServerOptions
            @Argument(help: "The owner.") var owner: String
            @Argument(help: "The secret's name.") var name: String

            func run() async throws {
                try await reporting {
                    let result = try await server.client().send(
                        .DELETE, "secrets/\(pathComponent(owner))/\(pathComponent(name))", Optional<Empty>.none,
                        as: [String: String].self)
                    if server.json { return try printJSON(result) }
                    print("secret \(owner)/\(name) deleted")
                }
            }
        }
    }
}
