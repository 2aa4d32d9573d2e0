import Foundation
import ProvisionerAPI
import ProvisionerCore
import SQLiteNIO

extension Store {
    // MARK: Nodes

    public func nodes() async throws -> [NodeRecord] {
        try await read {
            let profiles = try await profileMap()
            return try await query("SELECT * FROM nodes ORDER BY name").map { try Self.nodeRecord($0, profiles) }
        }
    }

    public func node(named name: String) async throws -> NodeRecord? {
        try await read { try await nodeRow(name) }
    }

    func nodeRow(_ name: String) async throws -> NodeRecord? {
        guard let row = try await query("SELECT * FROM nodes WHERE name = ?", [.text(name)]).first else { return nil }
        return try Self.nodeRecord(row, try await profileMap())
    }

    /// The stored definition with its profiles merged (a stored node's profiles always exist:
    /// deleting a profile in use is refused).
    static func nodeRecord(_ row: SQLiteRow, _ profiles: [String: Profile]) throws -> NodeRecord {
        let definition = try StoredJSON.decode(NodeDefinition.self, row.column("config")?.string)
        let (config, sources) = try resolve(definition, profiles)
        return NodeRecord(
            config: config, definition: definition, sources: sources,
            createdAt: Clock.iso(row.column("created_at")?.integer ?? 0),
            updatedAt: Clock.iso(row.column("updated_at")?.integer ?? 0))
    }

    static func resolve(_ definition: NodeDefinition, _ profiles: [String: Profile]) throws -> (NodeConfig, [FieldSource]) {
        do {
            return try ProfileMerge.resolve(definition, profiles: profiles)
        } catch {
            throw APIError(.unprocessableContent, "invalid-node", error.description)
        }
    }

    /// Every node's effective config (for templates that list the cluster).
    func effectiveNodes() async throws -> [NodeConfig] {
        let profiles = try await profileMap()
        return try await query("SELECT * FROM nodes ORDER BY name").map { try Self.nodeRecord($0, profiles).config }
    }

    /// The node that owns any of `macs` (normalised), if any, with its profiles merged.
    func nodeOwning(macs: [String]) async throws -> NodeConfig? {
        for mac in macs {
            if let row = try await query(
                "SELECT nodes.* FROM node_macs JOIN nodes ON nodes.name = node_macs.node WHERE node_macs.mac = ?",
                [.text(mac)]
            ).first {
                return try Self.nodeRecord(row, try await profileMap()).config
            }
        }
        return nil
    }

    /// Creates a node; 409 if the name or one of its MACs is taken.
    public func createNode(_ input: NodeConfig, by actor: Actor) async throws -> NodeRecord {
        try await createNode(NodeDefinition(input), by: actor)
    }

    public func createNode(_ input: NodeDefinition, by actor: Actor) async throws -> NodeRecord {
        let config = try Self.validate(input)
        return try await transaction {
            if try await nodeRow(config.name) != nil {
                throw APIError.conflict("node \(config.name) already exists")
            }
            try await writeNode(config, created: true)
            try await checkNodes([config])
            try await audit(actor, "node.create", "node/\(config.name)", before: nil, after: StoredJSON.encode(config))
            return try await nodeRow(config.name)!
        }
    }

    /// Replaces a node's config; 404 if it does not exist.
    public func updateNode(_ input: NodeConfig, by actor: Actor) async throws -> NodeRecord {
        try await updateNode(NodeDefinition(input), by: actor)
    }

    public func updateNode(_ input: NodeDefinition, by actor: Actor) async throws -> NodeRecord {
        let config = try Self.validate(input)
        return try await transaction {
            guard let old = try await nodeRow(config.name) else {
                throw APIError.notFound("unknown-node", "no node named \(config.name)")
            }
            guard old.definition != config else { return old }
            try await writeNode(config, created: false)
            try await checkNodes([config])
            try await audit(
                actor, "node.update", "node/\(config.name)", before: StoredJSON.encode(old.definition),
                after: StoredJSON.encode(config))
            return try await nodeRow(config.name)!
        }
    }

    public func deleteNode(named name: String, by actor: Actor) async throws {
        try await transaction {
            guard let old = try await nodeRow(name) else {
                throw APIError.notFound("unknown-node", "no node named \(name)")
            }
            _ = try await query("DELETE FROM node_macs WHERE node = ?", [.text(name)])
            _ = try await query("DELETE FROM nodes WHERE name = ?", [.text(name)])
            try await audit(actor, "node.delete", "node/\(name)", before: StoredJSON.encode(old.definition), after: nil)
        }
    }

    /// Creates or replaces every profile and node given, in one transaction; with `prune`, deletes
    /// the other nodes (and, when the file has profiles, the other profiles).
    public func importNodes(
        _ inputs: [NodeDefinition], profiles profileInputs: [Profile] = [], prune: Bool, by actor: Actor
    ) async throws -> ImportResult {
        var configs: [NodeDefinition] = []
        var names = Set<String>()
        for (i, input) in inputs.enumerated() {
            let config = try Self.validate(input, path: "nodes[\(i)]")
            guard names.insert(config.name).inserted else {
                throw APIError.badRequest("node \(config.name) appears twice in the import")
            }
            configs.append(config)
        }
        var profiles: [Profile] = []
        for (i, input) in profileInputs.enumerated() {
            let profile = try Self.validate(input, path: "profiles[\(i)]")
            guard !profiles.contains(where: { $0.name == profile.name }) else {
                throw APIError.badRequest("profile \(profile.name) appears twice in the import")
            }
            profiles.append(profile)
        }
        let ordered = configs
        let keep = names
        let newProfiles = profiles
        return try await transaction {
            var result = ImportResult(created: [], updated: [], unchanged: [], deleted: [])
            for profile in newProfiles {
                try await putProfile(profile, by: actor, check: false)
            }
            if prune {
                for row in try await query("SELECT * FROM nodes") {
                    let old = try StoredJSON.decode(NodeDefinition.self, row.column("config")?.string)
                    guard !keep.contains(old.name) else { continue }
                    _ = try await query("DELETE FROM node_macs WHERE node = ?", [.text(old.name)])
                    _ = try await query("DELETE FROM nodes WHERE name = ?", [.text(old.name)])
                    try await audit(
                        actor, "node.delete", "node/\(old.name)", before: StoredJSON.encode(old), after: nil)
                    result.deleted.append(old.name)
                }
            }
            // Release the MACs of nodes being replaced first, so MACs can move between nodes in one import.
            for config in ordered {
                _ = try await query("DELETE FROM node_macs WHERE node = ?", [.text(config.name)])
            }
            for config in ordered {
                if let old = try await nodeRow(config.name) {
                    if old.definition == config {
                        try await writeMACs(config)
                        result.unchanged.append(config.name)
                        continue
                    }
                    try await writeNode(config, created: false)
                    try await audit(
                        actor, "node.update", "node/\(config.name)", before: StoredJSON.encode(old.definition),
                        after: StoredJSON.encode(config))
                    result.updated.append(config.name)
                } else {
                    try await writeNode(config, created: true)
                    try await audit(
                        actor, "node.create", "node/\(config.name)", before: nil, after: StoredJSON.encode(config))
                    result.created.append(config.name)
                }
            }
            if prune && !newProfiles.isEmpty {
                let keepProfiles = Set(newProfiles.map(\.name))
                for old in try await profileMap().values.sorted(by: { $0.name < $1.name })
                where !keepProfiles.contains(old.name) {
                    try await removeProfile(old.name, by: actor)
                }
            }
            // Every node the import touched, and every node of a replaced profile, must resolve and render.
            try await checkNodes(try await query("SELECT config FROM nodes").map {
                try StoredJSON.decode(NodeDefinition.self, $0.column("config")?.string)
            })
            return result
        }
    }

    /// Many nodes created, replaced or deleted in one transaction with one audit entry
    /// (`nodes.create|update|delete`, subject `nodes/EXPRESSION`, before and after as lists).
    public func bulkNodes(_ request: BulkNodesRequest, by actor: Actor) async throws -> [String] {
        var definitions: [NodeDefinition] = []
        var names: [String] = []
        switch request.operation {
        case .create, .update:
            for (i, input) in request.nodes.enumerated() {
                let config = try Self.validate(input, path: "nodes[\(i)]")
                guard !names.contains(config.name) else {
                    throw APIError.badRequest("node \(config.name) appears twice")
                }
                names.append(config.name)
                definitions.append(config)
            }
        case .delete:
            names = request.names
        }
        guard !names.isEmpty else { throw APIError.badRequest("the request names no node") }
        guard names.count <= Hostlist.maxNames else {
            throw APIError.badRequest("\(names.count) nodes; at most \(Hostlist.maxNames) per request")
        }
        let subject = "nodes/" + Hostlist.compress(names)
        let all = definitions
        let list = names
        return try await transaction {
            var before: [NodeDefinition] = []
            for name in list {
                let old = try await query("SELECT config FROM nodes WHERE name = ?", [.text(name)]).first
                switch (request.operation, old) {
                case (.create, .some):
                    throw APIError.conflict("node \(name) already exists")
                case (.update, .none), (.delete, .none):
                    throw APIError.notFound("unknown-node", "no node named \(name)")
                default: break
                }
                if let old { before.append(try StoredJSON.decode(NodeDefinition.self, old.column("config")?.string)) }
            }
            switch request.operation {
            case .create, .update:
                for config in all { _ = try await query("DELETE FROM node_macs WHERE node = ?", [.text(config.name)]) }
                for config in all { try await writeNode(config, created: request.operation == .create) }
                try await checkNodes(all)
            case .delete:
                for name in list {
                    _ = try await query("DELETE FROM node_macs WHERE node = ?", [.text(name)])
                    _ = try await query("DELETE FROM nodes WHERE name = ?", [.text(name)])
                }
            }
            try await audit(
                actor, "nodes.\(request.operation.rawValue)", subject,
                before: before.isEmpty ? nil : StoredJSON.encode(before),
                after: request.operation == .delete ? nil : StoredJSON.encode(all))
            return list
        }
    }

    static func validate(_ input: NodeDefinition, path: String = "") throws -> NodeDefinition {
        do {
            return try input.validated(path: path)
        } catch {
            throw APIError(.unprocessableContent, "invalid-node", error.description)
        }
    }

    static func validate(_ input: Profile, path: String = "") throws -> Profile {
        do {
            return try input.validated(path: path)
        } catch {
            throw APIError(.unprocessableContent, "invalid-profile", error.description)
        }
    }

    /// Within a transaction, after writing: each of `definitions` resolves (its profiles exist and do
    /// not include each other), its image is one the registry has, and its overlays and plugin
    /// parameters render for it. Throwing rolls the whole change back.
    func checkNodes(_ definitions: [NodeDefinition]) async throws {
        guard !definitions.isEmpty else { return }
        let profiles = try await profileMap()
        let overlays = try await overlayMap()
        var configs: [NodeConfig] = []
        for definition in definitions {
            let (config, _) = try Self.resolve(definition, profiles)
            try await checkImage(of: config)
            configs.append(config)
        }
        let needsCluster = configs.contains { !$0.overlays.isEmpty || $0.plugins.contains { $0.parameters.values.contains { $0.contains("{{") } } }
        guard needsCluster else { return }
        let cluster = try await effectiveNodes()
        for config in configs {
            do {
                _ = try OverlayRender.render(node: config, cluster: cluster, overlays: overlays)
                _ = try OverlayRender.renderPlugins(node: config, cluster: cluster)
            } catch {
                throw APIError(.unprocessableContent, "invalid-overlay", error.description)
            }
        }
    }

    /// Inserts or replaces the row and its MACs (within a transaction).
    func writeNode(_ config: NodeDefinition, created: Bool) async throws {
        let now = Clock.nowMillis()
        if created {
            _ = try await query(
                "INSERT INTO nodes (name, config, created_at, updated_at) VALUES (?, ?, ?, ?)",
                [.text(config.name), .text(StoredJSON.encode(config)), .integer(now), .integer(now)])
        } else {
            _ = try await query(
                "UPDATE nodes SET config = ?, updated_at = ? WHERE name = ?",
                [.text(StoredJSON.encode(config)), .integer(now), .text(config.name)])
        }
        _ = try await query("DELETE FROM node_macs WHERE node = ?", [.text(config.name)])
        try await writeMACs(config)
    }

    private func writeMACs(_ config: NodeDefinition) async throws {
        for mac in config.macs {
            if let other = try await query("SELECT node FROM node_macs WHERE mac = ?", [.text(mac)]).first?
                .column("node")?.string, other != config.name
            {
                throw APIError.conflict("MAC \(mac) already belongs to node \(other)")
            }
            _ = try await query(
                "INSERT OR IGNORE INTO node_macs (mac, node) VALUES (?, ?)", [.text(mac), .text(config.name)])
        }
    }
}

extension Store {
    /// A node may name only a branch or version its image has, once the image is in the registry
    /// (an image not published yet, or only in a store directory, is not checked: docs/images.md).
    func checkImage(of config: NodeConfig) async throws {
        guard let ref = config.image, ref.branch != nil || (ref.version != nil && ref.version != "latest"),
            let image = try await imageRow(ref.name)
        else { return }
        if let branch = ref.branch, ref.version == nil, !image.branches.contains(where: { $0.name == branch }) {
            throw APIError(
                .unprocessableContent, "invalid-node",
                "\(config.name).image.branch: image \(ref.name) has no branch \(branch) (it has \(image.branches.map(\.name).joined(separator: ", ")))")
        }
        if let version = ref.version, !image.versions.contains(where: { $0.id == version }) {
            throw APIError(
                .unprocessableContent, "invalid-node", "\(config.name).image.version: image \(ref.name) has no version \(version)")
        }
    }
}
