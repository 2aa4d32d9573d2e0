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
                Assign.self, Identity.self, Revoke.self, Approve.self,
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

    @Option(
        name: .long,
        help: "What a new key of the node needs: approve (provisionerctl nodes approve) or auto (stateless nodes without a TPM).")
    var enrollment: EnrollmentPolicy?

    @Option(name: .long, help: "An overlay (repeatable; on set, replaces the list).")
    var overlay: [String] = []

    @Option(name: .customLong("var"), help: "A template variable KEY=VALUE (repeatable; on set, adds or replaces that key).")
    var vars: [String] = []

    /// Sets the given fields (a node's or a profile's own) and leaves the others as they are.
    func apply(to fields: inout NodeFields) throws {
        if let image { fields.image = try Self.parseImage(image) }
        if let layout { fields.layout = try readFile(layout, what: "layout") }
        if let mode { fields.mode = mode }
        if !plugin.isEmpty { fields.plugins = try plugin.map(Self.parsePlugin) }
        if !kernelArg.isEmpty { fields.kernelArgs = kernelArg }
        if let syncVerify { fields.syncVerify = syncVerify }
        if let kernel { fields.kernel = kernel }
        if let initramfs { fields.initramfs = initramfs }
        if let kernelRelease { fields.kernelRelease = kernelRelease == "newest" ? nil : kernelRelease }
        if let enrollment { fields.enrollment = enrollment }
        if !overlay.isEmpty { fields.overlays = overlay }
        for pair in vars {
            guard let eq = pair.firstIndex(of: "=") else { throw CtlFailure("--var \"\(pair)\" is not KEY=VALUE") }
            fields.vars = (fields.vars ?? [:]).merging([String(pair[..<eq]): String(pair[pair.index(after: eq)...])]) { $1 }
        }
    }

    func apply(to node: inout NodeDefinition) throws {
        if !mac.isEmpty { node.macs = mac }
        try apply(to: &node.fields)
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
extension EnrollmentPolicy: ExpressibleByArgument {}

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
        static let configuration = CommandConfiguration(
            abstract: "Shows nodes (a hostlist: n[001-004]) as cluster-file YAML, --effective, or --json.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node names: a hostlist expression.") var name: String
        @Flag(name: .long, help: "Each effective field, its value and where it came from (node, profile NAME, default).")
        var effective = false

        func run() async throws {
            try await reporting {
                let client = try server.client()
                var records: [NodeRecord] = []
                var boots: [NodeBoot] = []
                for name in try expandNames(name) {
                    records.append(try await client.get("nodes/\(pathComponent(name))", as: NodeRecord.self))
                    boots.append(try await client.get("nodes/\(pathComponent(name))/boot", as: NodeBoot.self))
                }
                let shows = zip(records, boots).map { NodeShow(record: $0, boot: $1) }
                if server.json { return try shows.count == 1 ? printJSON(shows[0]) : printJSON(shows) }
                for (node, boot) in zip(records, boots) {
                    if effective {
                        print("# \(node.config.name): effective fields (profiles: \(node.definition.profiles.isEmpty ? "none" : node.definition.profiles.joined(separator: ", ")))")
                        var table = TextTable(["FIELD", "VALUE", "FROM"])
                        for source in node.sources {
                            let value = source.value.count > 60 ? String(source.value.prefix(57)) + "..." : source.value
                            table.add([source.field, value, source.source])
                        }
                        print(table.render())
                    } else {
                        print("# created \(node.createdAt), updated \(node.updatedAt)")
                        print("# boots: \(bootCell(boot))\(boot.image.map { " of \($0)" } ?? "")")
                        if let why = boot.boot?.reason { print("#   why: \(why)") }
                        if let warning = boot.boot?.warning { print("#   warning: \(warning)") }
                        print(ClusterFile.render([node.definition], profiles: []), terminator: "")
                    }
                }
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Defines new nodes: one name or a hostlist (n[001-064]), in one transaction.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node names: a hostlist expression.") var name: String
        @Option(name: .long, help: "A profile (repeatable, in order).") var profile: [String] = []
        @Option(name: .long, help: "Addresses for the nodes in order, as a hostlist (10.1.0.[1-64]); sets vars.ip.")
        var ip: String?
        @OptionGroup var fields: NodeFieldOptions

        func run() async throws {
            try await reporting {
                let names = try expandNames(name)
                let addresses = try ip.map { try expandAddresses($0, count: names.count) }
                var nodes: [NodeDefinition] = []
                for (i, name) in names.enumerated() {
                    var node = NodeDefinition(name: name, profiles: profile)
                    if let addresses { node.fields.vars = ["ip": addresses[i]] }
                    try fields.apply(to: &node)
                    nodes.append(node)
                }
                guard names.count == 1 || fields.mac.isEmpty else {
                    throw CtlFailure("--mac names one machine; give it with one node name, or use nodes assign")
                }
                if nodes.count == 1 {
                    let record = try await server.client().send(.POST, "nodes", nodes[0], as: NodeRecord.self)
                    if server.json { return try printJSON(record) }
                    print("node \(record.config.name) added")
                    return
                }
                let result = try await server.client().send(
                    .POST, "nodes/bulk", BulkNodesRequest(operation: .create, nodes: nodes), as: [String: [String]].self)
                if server.json { return try printJSON(result) }
                print("\(names.count) nodes added: \(Hostlist.compress(names))")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Changes fields of nodes (one name or a hostlist); the other fields stay.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node names: a hostlist expression.") var name: String
        @Option(name: .long, help: "A profile (repeatable, in order; replaces the list).") var profile: [String] = []
        @Flag(name: .long, help: "Remove every profile.") var noProfiles = false
        @Option(name: .long, help: "Addresses for the nodes in order, as a hostlist; sets vars.ip.") var ip: String?
        @Option(name: .long, help: "Unset a field of the node's own, so its profiles' value applies (repeatable).")
        var unset: [String] = []
        @OptionGroup var fields: NodeFieldOptions
        @Flag(name: .long, help: "Remove the disk layout.") var noLayout = false
        @Flag(name: .long, help: "Remove the image.") var noImage = false

        func run() async throws {
            try await reporting {
                let client = try server.client()
                let names = try expandNames(name)
                let addresses = try ip.map { try expandAddresses($0, count: names.count) }
                guard names.count == 1 || fields.mac.isEmpty else {
                    throw CtlFailure("--mac names one machine; give it with one node name")
                }
                var nodes: [NodeDefinition] = []
                for (i, name) in names.enumerated() {
                    var node = try await client.get("nodes/\(pathComponent(name))", as: NodeRecord.self).definition
                    if noLayout { node.fields.layout = nil }
                    if noImage { node.fields.image = nil }
                    if noProfiles { node.profiles = [] }
                    if !profile.isEmpty { node.profiles = profile }
                    for field in unset { try unsetField(field, in: &node.fields) }
                    if let addresses { node.fields.vars = (node.fields.vars ?? [:]).merging(["ip": addresses[i]]) { $1 } }
                    try fields.apply(to: &node)
                    nodes.append(node)
                }
                if nodes.count == 1 {
                    let record = try await client.send(.PUT, "nodes/\(pathComponent(name))", nodes[0], as: NodeRecord.self)
                    if server.json { return try printJSON(record) }
                    print("node \(record.config.name) updated")
                    return
                }
                let result = try await client.send(
                    .POST, "nodes/bulk", BulkNodesRequest(operation: .update, nodes: nodes), as: [String: [String]].self)
                if server.json { return try printJSON(result) }
                print("\(names.count) nodes updated: \(Hostlist.compress(names))")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deletes nodes (one name or a hostlist).")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node names: a hostlist expression.") var name: String

        func run() async throws {
            try await reporting {
                let names = try expandNames(name)
                if names.count == 1 {
                    let result = try await server.client().send(
                        .DELETE, "nodes/\(pathComponent(names[0]))", Optional<Empty>.none, as: [String: String].self)
                    if server.json { return try printJSON(result) }
                    print("node \(names[0]) deleted")
                    return
                }
                let result = try await server.client().send(
                    .POST, "nodes/bulk", BulkNodesRequest(operation: .delete, names: names), as: [String: [String]].self)
                if server.json { return try printJSON(result) }
                print("\(names.count) nodes deleted: \(Hostlist.compress(names))")
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
                let cluster: (nodes: [NodeDefinition], profiles: [Profile])
                do {
                    cluster = try ClusterFile.parseCluster(try readFile(file, what: "cluster file"), source: file)
                } catch let error as ConfigError {
                    throw CtlFailure("\(error)")
                }
                let result = try await server.client().send(
                    .POST, "nodes/import", ImportRequest(nodes: cluster.nodes, profiles: cluster.profiles, prune: prune),
                    as: ImportResult.self)
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
                let client = try server.client()
                let nodes = try await client.get("nodes", as: [NodeRecord].self).map(\.definition)
                let profiles = try await client.get("profiles", as: [ProfileRecord].self).map(\.profile)
                if server.json { return try printJSON(nodes) }
                let text = ClusterFile.render(nodes, profiles: profiles)
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
            abstract: "Binds a waiting machine (by MAC or session id) to a node, or with --in-order the waiting machines, in the order they appeared, to a hostlist of nodes.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "A MAC address or a pending session id; with --in-order, the nodes (a hostlist).") var machine: String
        @Argument(help: "Node name.") var node: String?
        @Flag(name: .long, help: "Assign the waiting machines in the order they first appeared to the nodes named.")
        var inOrder = false

        func run() async throws {
            try await reporting {
                if inOrder {
                    guard node == nil else { throw CtlFailure("with --in-order, give only the nodes (a hostlist)") }
                    let names = try expandNames(machine)
                    let result = try await server.client().send(
                        .POST, "pending/assign-many", AssignManyRequest(nodes: names), as: [Assignment].self)
                    if server.json { return try printJSON(result) }
                    for a in result { print("\(a.macs.joined(separator: ",")) (session \(a.sessionID)) -> \(a.node)") }
                    return
                }
                guard let node else { throw CtlFailure("name the node to assign \(machine) to (or use --in-order)") }
                let record = try await server.client().send(
                    .POST, "pending/assign", AssignRequest(machine: machine, node: node), as: NodeRecord.self)
                if server.json { return try printJSON(record) }
                print("\(machine) assigned to node \(node) (MACs: \(record.config.macs.joined(separator: ", ")))")
            }
        }
    }
}

/// A hostlist argument's names, or a failure naming the bad part.
func expandNames(_ expression: String) throws -> [String] {
    do {
        return try Hostlist.expand(expression)
    } catch {
        throw CtlFailure("\(error)")
    }
}

/// `--ip` as a hostlist of addresses, one per node, in order.
func expandAddresses(_ expression: String, count: Int) throws -> [String] {
    let addresses = try expandNames(expression)
    guard addresses.count == count else {
        throw CtlFailure("--ip \(expression) gives \(addresses.count) addresses for \(count) nodes")
    }
    return addresses
}

/// `--unset FIELD`: the node's (or profile's) own value goes, so the next layer's applies.
func unsetField(_ name: String, in fields: inout NodeFields) throws {
    switch name {
    case "image": fields.image = nil
    case "layout": fields.layout = nil
    case "mode": fields.mode = nil
    case "plugins": fields.plugins = nil
    case "kernelArgs": fields.kernelArgs = nil
    case "syncVerify": fields.syncVerify = nil
    case "kernel": fields.kernel = nil
    case "initramfs": fields.initramfs = nil
    case "kernelRelease": fields.kernelRelease = nil
    case "enrollment": fields.enrollment = nil
    case "overlays": fields.overlays = nil
    case "vars": fields.vars = nil
    default:
        throw CtlFailure("--unset \(name): not a field (\(NodeFields.rules.map(\.name).joined(separator: ", ")))")
    }
}

/// `nodes show --json`: the node and what it boots.
struct NodeShow: Codable {
    var record: NodeRecord
    var boot: NodeBoot
}
