import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore

extension Ctl {
    /// `provisionerctl profiles ...`: named sets of node fields (docs/node-config.md, "Profiles").
    struct Profiles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "profiles", abstract: "Defines profiles: named node fields that nodes list in order.",
            subcommands: [List.self, Show.self, Add.self, Set.self, Delete.self])
    }
}

extension Ctl.Profiles {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists the profiles and who uses them.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                let profiles = try await server.client().get("profiles", as: [ProfileRecord].self)
                if server.json { return try printJSON(profiles) }
                var table = TextTable(["NAME", "PROFILES", "FIELDS", "USED BY", "UPDATED"])
                for p in profiles {
                    table.add([
                        p.profile.name, p.profile.profiles.isEmpty ? "-" : p.profile.profiles.joined(separator: ","),
                        p.profile.fields.setFields.joined(separator: ","), p.usedBy.isEmpty ? "-" : "\(p.usedBy.count)",
                        p.updatedAt,
                    ])
                }
                print(table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows a profile as cluster-file YAML (or --json).")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Profile name.") var name: String

        func run() async throws {
            try await reporting {
                let record = try await server.client().get("profiles/\(pathComponent(name))", as: ProfileRecord.self)
                if server.json { return try printJSON(record) }
                print("# updated \(record.updatedAt); used by \(record.usedBy.isEmpty ? "nothing" : record.usedBy.joined(separator: ", "))")
                print(ClusterFile.render([], profiles: [record.profile]).replacingOccurrences(of: "nodes: {}\n", with: ""), terminator: "")
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Defines a new profile.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Profile name.") var name: String
        @Option(name: .long, help: "A profile this one builds on (repeatable, in order).") var profile: [String] = []
        @OptionGroup var fields: NodeFieldOptions

        func run() async throws {
            try await reporting {
                guard fields.mac.isEmpty else { throw CtlFailure("a profile has no MAC addresses; give them to nodes") }
                var p = Profile(name: name, profiles: profile)
                try fields.apply(to: &p.fields)
                let record = try await server.client().send(.POST, "profiles", try validated(p), as: ProfileRecord.self)
                if server.json { return try printJSON(record) }
                print("profile \(record.profile.name) added")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Changes fields of a profile; every node using it is checked in the same transaction.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Profile name.") var name: String
        @Option(name: .long, help: "A profile this one builds on (repeatable, in order; replaces the list).")
        var profile: [String] = []
        @Option(name: .long, help: "Unset a field (repeatable).") var unset: [String] = []
        @OptionGroup var fields: NodeFieldOptions

        func run() async throws {
            try await reporting {
                guard fields.mac.isEmpty else { throw CtlFailure("a profile has no MAC addresses; give them to nodes") }
                let client = try server.client()
                var p = try await client.get("profiles/\(pathComponent(name))", as: ProfileRecord.self).profile
                if !profile.isEmpty { p.profiles = profile }
                for field in unset { try unsetField(field, in: &p.fields) }
                try fields.apply(to: &p.fields)
                let record = try await client.send(.PUT, "profiles/\(pathComponent(name))", try validated(p), as: ProfileRecord.self)
                if server.json { return try printJSON(record) }
                print("profile \(record.profile.name) updated (used by \(record.usedBy.count))")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deletes a profile no node or profile uses.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Profile name.") var name: String

        func run() async throws {
            try await reporting {
                let result = try await server.client().send(
                    .DELETE, "profiles/\(pathComponent(name))", Optional<Empty>.none, as: [String: String].self)
                if server.json { return try printJSON(result) }
                print("profile \(name) deleted")
            }
        }
    }
}

func validated(_ profile: Profile) throws -> Profile {
    do {
        return try profile.validated()
    } catch {
        throw CtlFailure("\(error)")
    }
}
