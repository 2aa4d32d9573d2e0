import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore

extension Ctl {
    /// `provisionerctl nodes ...`: the node registry (docs/node-config.md).
    struct Nodes: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "nodes", abstract: "Defines nodes, imports and exports the cluster, assigns new machines.",
            subcommands: [
                List.self, Show.self, Add.self, Set.self, Delete.self, Import.self, Export.self, Pending.self,
                Assign.self,
            ])
    }
}

/// The fields `nodes add` and `nodes set` accept.
struct NodeFieldOptions: ParsableArguments {
    @Option(name: .long, help: "A MAC address (repeatable; on set, replaces the list).")
    var mac: [String] = []

    @Option(name: .long, help: "Image: NAME, NAME@VERSION or NAME:BRANCH.")
    var image: String?

    @Option(name: .long, help: "Disk layout file (YAML or JSON), checked before it is sent.")
    var layout: String?

    @Option(name: .long, help: "stateful or stateless.")
    var mode: NodeMode?

    @Option(name: .long, help: "Plugin NAME or NAME:key=value,key=value (repeatable; on set, replaces the list).")
    var plugin: [String] = []

    @Option(name: .long, help: "A kernel argument (repeatable; on set, replaces the list).")
    var kernelArg: [String] = []

    @Option(name: .long, help: "Image check on boot: stamp, metadata or content.")
    var syncVerify: SyncVerify?

    @Option(name: .long, help: "Kernel file name under STATE/files/kernels.")
    var kernel: String?

    @Option(name: .long, help: "Initramfs file name under STATE/files/initramfs.")
    var initramfs: String?

    @Option(
        name: .long,
        help: "Pin the kernel release the node boots from its image (uname -r; \"newest\" to unpin). Default: the newest.")
    var kernelRelease: String?

    func apply(to node: inout NodeConfig) throws {
        if !mac.isEmpty { node.macs = mac }
        if let image { node.image = try Self.parseImage(image) }
        if let layout { node.layout = try readFile(layout, what: "layout") }
        if let mode { node.mode = mode }
        if !plugin.isEmpty { node.plugins = try plugin.map(Self.parsePlugin) }
        if !kernelArg.isEmpty { node.kernelArgs = kernelArg }
        if let syncVerify { node.syncVerify = syncVerify }
        if let kernel { node.kernel = kernel }
        if let initramfs { node.initramfs = initramfs }
        if let kernelRelease { node.kernelRelease = kernelRelease == "newest" ? nil : kernelRelease }
        do {
            node = try node.validated()
        } catch {
            throw CtlFailure("\(error)")
        }
    }

    /// `NAME`, `NAME/BRANCH` or `NAME@VERSION` (the older `NAME:BRANCH` is read too).
    static func parseImage(_ text: String) throws -> ImageRef {
        let spelled = !text.contains("/") && !text.contains("@") ? text.replacingOccurrences(of: ":", with: "/") : text
        return try parseRef(spelled)
    }

    static func parsePlugin(_ text: String) throws -> PluginConfig {
        guard let colon = text.firstIndex(of: ":") else { return PluginConfig(name: text) }
        var plugin = PluginConfig(name: String(text[..<colon]))
        for pair in text[text.index(after: colon)...].split(separator: ",") {
            guard let eq = pair.firstIndex(of: "=") else {
                throw CtlFailure("plugin parameter \"\(pair)\" is not key=value")
            }
            plugin.parameters[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
        }
        return plugin
    }
}

extension NodeMode: ExpressibleByArgument {}
extension SyncVerify: ExpressibleByArgument {}

func imageText(_ image: ImageRef?) -> String { image?.spelled ?? "-" }

extension Ctl.Nodes {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists the nodes.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                let nodes = try await server.client().get("nodes", as: [NodeRecord].self)
                if server.json { return try printJSON(nodes) }
                var table = TextTable(["NAME", "MODE", "IMAGE", "MACS", "LAYOUT", "UPDATED"])
                for n in nodes {
                    table.add([
                        n.config.name, n.config.mode.rawValue, imageText(n.config.image),
                        n.config.macs.joined(separator: ","), n.config.layout == nil ? "-" : "yes", n.updatedAt,
                    ])
                }
                print(table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows one node (as cluster-file YAML, or --json).")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node name.") var name: String

        func run() async throws {
            try await reporting {
                let client = try server.client()
                let node = try await client.get("nodes/\(pathComponent(name))", as: NodeRecord.self)
                let boot = try await client.get("nodes/\(pathComponent(name))/boot", as: NodeBoot.self)
                if server.json { return try printJSON(NodeShow(record: node, boot: boot)) }
                print("# created \(node.createdAt), updated \(node.updatedAt)")
                print("# boots: \(bootCell(boot))\(boot.image.map { " of \($0)" } ?? "")")
                if let why = boot.boot?.reason { print("#   why: \(why)") }
                if let warning = boot.boot?.warning { print("#   warning: \(warning)") }
                print(ClusterFile.render([node.config]), terminator: "")
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Defines a new node.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node name (a host name label).") var name: String
        @OptionGroup var fields: NodeFieldOptions

        func run() async throws {
            try await reporting {
                var node = NodeConfig(name: name)
                try fields.apply(to: &node)
                let record = try await server.client().send(.POST, "nodes", node, as: NodeRecord.self)
                if server.json { return try printJSON(record) }
                print("node \(record.config.name) added")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Changes fields of a node (the others stay).")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node name.") var name: String
        @OptionGroup var fields: NodeFieldOptions
        @Flag(name: .long, help: "Remove the disk layout.") var noLayout = false
        @Flag(name: .long, help: "Remove the image.") var noImage = false

        func run() async throws {
            try await reporting {
                let client = try server.client()
                var node = try await client.get("nodes/\(pathComponent(name))", as: NodeRecord.self).config
                if noLayout { node.layout = nil }
                if noImage { node.image = nil }
                try fields.apply(to: &node)
                let record = try await client.send(.PUT, "nodes/\(pathComponent(name))", node, as: NodeRecord.self)
                if server.json { return try printJSON(record) }
                print("node \(record.config.name) updated")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deletes a node.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node name.") var name: String

        func run() async throws {
            try await reporting {
                let result = try await server.client().send(
                    .DELETE, "nodes/\(pathComponent(name))", Optional<Empty>.none, as: [String: String].self)
                if server.json { return try printJSON(result) }
                print("node \(name) deleted")
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Creates or updates every node of a cluster file (YAML), in one transaction.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Cluster file (- for stdin).") var file: String
        @Flag(name: .long, help: "Also delete nodes the file does not list.") var prune = false

        func run() async throws {
            try await reporting {
                let nodes: [NodeConfig]
                do {
                    nodes = try ClusterFile.parse(try readFile(file, what: "cluster file"), source: file)
                } catch let error as ConfigError {
                    throw CtlFailure("\(error)")
                }
                let result = try await server.client().send(
                    .POST, "nodes/import", ImportRequest(nodes: nodes, prune: prune), as: ImportResult.self)
                if server.json { return try printJSON(result) }
                print(
                    "created \(result.created.count), updated \(result.updated.count), unchanged \(result.unchanged.count), deleted \(result.deleted.count)"
                )
                for (what, names) in [
                    ("created", result.created), ("updated", result.updated), ("deleted", result.deleted),
                ]
                where !names.isEmpty {
                    print("  \(what): \(names.joined(separator: ", "))")
                }
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Writes every node as one cluster file (YAML).")
        @OptionGroup var server: ServerOptions
        @Option(name: .shortAndLong, help: "Write to this file instead of stdout.") var output: String?

        func run() async throws {
            try await reporting {
                let nodes = try await server.client().get("nodes", as: [NodeRecord].self).map(\.config)
                if server.json { return try printJSON(nodes) }
                let text = ClusterFile.render(nodes)
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: Data(text.utf8)) else {
                        throw CtlFailure("cannot write \(output)")
                    }
                } else {
                    print(text, terminator: "")
                }
            }
        }
    }

    struct Pending: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists machines that booted but match no node, with their hardware facts.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                let pending = try await server.client().get("pending", as: [PendingMachine].self)
                if server.json { return try printJSON(pending) }
                var table = TextTable(["SESSION", "MACS", "VENDOR", "PRODUCT", "SERIAL", "DISKS", "LAST SEEN", "FROM"])
                for p in pending {
                    let disks =
                        p.facts.inventory.map { inv in
                            inv.disks.map { "\($0.transport.rawValue):\(ByteSize(bytes: $0.sizeBytes).description)" }
                                .joined(separator: ",")
                        } ?? "-"
                    table.add([
                        p.sessionID, p.macs.joined(separator: ","), p.facts.dmi.vendor ?? "-",
                        p.facts.dmi.product ?? "-",
                        p.facts.dmi.serial ?? "-", disks, p.lastSeen, p.remoteAddress ?? "-",
                    ])
                }
                print(table.render())
            }
        }
    }

    struct Assign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Binds a waiting machine (by MAC or session id) to a node; it moves on at its next poll.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "A MAC address or a pending session id.") var machine: String
        @Argument(help: "Node name.") var node: String

        func run() async throws {
            try await reporting {
                let record = try await server.client().send(
                    .POST, "pending/assign", AssignRequest(machine: machine, node: node), as: NodeRecord.self)
                if server.json { return try printJSON(record) }
                print("\(machine) assigned to node \(node) (MACs: \(record.config.macs.joined(separator: ", ")))")
            }
        }
    }
}

/// `nodes show --json`: the node and what it boots.
struct NodeShow: Codable {
    var record: NodeRecord
    var boot: NodeBoot
}
