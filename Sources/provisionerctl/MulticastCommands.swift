import ArgumentParser
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `image multicast`, `image multicasts`, `image multicast-stop` (docs/multicast.md).
extension Ctl.Image {
    struct Multicast: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send an image version once, by multicast, to the nodes of a range that boot into it.",
            discussion: """
                The server runs udpcast's udp-sender on its multicast interface (server config \
                multicast:), capped at its maxBitrate, round after round until its time limit: a node \
                that boots late gets the next round. Nodes of the range receive the version's objects, \
                check each against its hash and fetch only what is missing or damaged over HTTPS. \
                A round starts once --min-receivers nodes listen (default: the whole range), or \
                --max-wait seconds after the first one.
                """
        )
        @OptionGroup var server: ServerOptions
        @Argument(help: "Image name.") var name: String
        @Option(help: "The nodes (a hostlist: n[001-050],gpu1).") var nodes: String
        @Option(help: "A version id (default: the image's latest).") var version: String?
        @Option(help: "Start a round as soon as this many nodes listen.") var minReceivers: Int?
        @Option(help: "Start a round this many seconds after its first node, however many listen.") var maxWait: Int?

        func run() async throws {
            try await reporting {
                let client = try server.client()
                let info = try await client.send(
                    .POST, "images/\(pathComponent(name))/multicast",
                    MulticastStartRequest(nodes: nodes, version: version, minReceivers: minReceivers, maxWaitSeconds: maxWait),
                    as: MulticastSessionInfo.self)
                if server.json { return try printJSON(info) }
                print(
                    "multicast \(info.id): \(info.image)@\(info.version.prefix(12)) to \(info.nodes) on \(info.interface), "
                        + "ports \(info.portBase)-\(info.portBase + 1), at most \(info.maxBitrate)bit/s; "
                        + "\(info.objects) objects, \(info.streamBytes) bytes a round; a round starts with "
                        + "\(info.minReceivers) node(s) or \(info.maxWaitSeconds) s after the first")
            }
        }
    }

    struct Multicasts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The multicast sessions, running and stopped.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                let sessions = try await server.client().get("multicast", as: [MulticastSessionInfo].self)
                if server.json { return try printJSON(sessions) }
                var table = TextTable(["ID", "IMAGE", "VERSION", "NODES", "TRIGGER", "STATE", "PORT", "BYTES", "DETAIL"])
                for s in sessions {
                    table.add([
                        s.id, s.image, String(s.version.prefix(12)), s.nodes, s.trigger.rawValue, s.state.rawValue,
                        String(s.portBase), String(s.streamBytes), s.detail ?? "-",
                    ])
                }
                print(table.render())
            }
        }
    }

    struct MulticastStop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "multicast-stop", abstract: "Stop the running multicast sessions of an image.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Image name.") var name: String

        func run() async throws {
            try await reporting {
                let stopped = try await server.client().send(
                    .DELETE, "images/\(pathComponent(name))/multicast", Optional<Empty>.none,
                    as: [MulticastSessionInfo].self)
                if server.json { return try printJSON(stopped) }
                for s in stopped { print("stopped multicast \(s.id) (\(s.image)@\(s.version.prefix(12)))") }
            }
        }
    }
}
