import Foundation
import ProvisionerAPI
import ProvisionerCore
import SQLiteNIO

extension Store {
    // MARK: Nodes

    public func nodes() async throws -> [NodeRecord] {
        let rows = try await read { try await query("SELECT * FROM nodes ORDER BY name") }
        return try rows.map(Self.nodeRecord)
    }

    public func node(named name: String) async throws -> NodeRecord? {
        try await read { try await nodeRow(name) }
    }

    func nodeRow(_ name: String) async throws -> NodeRecord? {
        try await query("SELECT * FROM nodes WHERE name = ?", [.text(name)]).first.map(Self.nodeRecord)
    }

    static func nodeRecord(_ row: SQLiteRow) throws -> NodeRecord {
        NodeRecord(
            config: try StoredJSON.decode(NodeConfig.self, row.column("config")?.string),
            createdAt: Clock.iso(row.column("created_at")?.integer ?? 0),
            updatedAt: Clock.iso(row.column("updated_at")?.integer ?? 0))
    }

    /// The node that owns any of `macs` (normalised), if any.
    func nodeOwning(macs: [String]) async throws -> NodeConfig? {
        for mac in macs {
            if let row = try await query(
                "SELECT nodes.config FROM node_macs JOIN nodes ON nodes.name = node_macs.node WHERE node_macs.mac = ?",
                [.text(mac)]
            ).first {
                return try StoredJSON.decode(NodeConfig.self, row.column("config")?.string)
            }
        }
        return nil
    }

    /// Creates a node; 409 if the name or one of its MACs is taken.
    public func createNode(_ input: NodeConfig, by actor: Actor) async throws -> NodeRecord {
        let config = try Self.validate(input)
        return try await transaction {
            if try await nodeRow(config.name) != nil {
                throw APIError.conflict("node \(config.name) already exists")
            }
            try await writeNode(config, created: true)
            try await audit(actor, "node.create", "node/\(config.name)", before: nil, after: StoredJSON.encode(config))
            return try await nodeRow(config.name)!
        }
    }

    /// Replaces a node's config; 404 if it does not exist.
    public func updateNode(_ input: NodeConfig, by actor: Actor) async throws -> NodeRecord {
        let config = try Self.validate(input)
        return try await transaction {
            guard let old = try await nodeRow(config.name) else {
                throw APIError.notFound("unknown-node", "no node named \(config.name)")
            }
            guard old.config != config else { return old }
            try await writeNode(config, created: false)
            try await audit(
                actor, "node.update", "node/\(config.name)", before: StoredJSON.encode(old.config),
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
            try await audit(actor, "node.delete", "node/\(name)", before: StoredJSON.encode(old.config), after: nil)
        }
    }

    /// Creates or replaces every node given, in one transaction; with `prune`, deletes the others.
    public func importNodes(_ inputs: [NodeConfig], prune: Bool, by actor: Actor) async throws -> ImportResult {
        var configs: [NodeConfig] = []
        var names = Set<String>()
        for (i, input) in inputs.enumerated() {
            let config = try Self.validate(input, path: "nodes[\(i)]")
            guard names.insert(config.name).inserted else {
                throw APIError.badRequest("node \(config.name) appears twice in the import")
            }
            configs.append(config)
        }
        let ordered = configs
        let keep = names
        return try await transaction {
            var result = ImportResult(created: [], updated: [], unchanged: [], deleted: [])
            if prune {
                for row in try await query("SELECT * FROM nodes") {
                    let old = try Self.nodeRecord(row).config
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
                    if old.config == config {
                        try await writeMACs(config)
                        result.unchanged.append(config.name)
                        continue
                    }
                    try await writeNode(config, created: false)
                    try await audit(
                        actor, "node.update", "node/\(config.name)", before: StoredJSON.encode(old.config),
                        after: StoredJSON.encode(config))
                    result.updated.append(config.name)
                } else {
                    try await writeNode(config, created: true)
                    try await audit(
                        actor, "node.create", "node/\(config.name)", before: nil, after: StoredJSON.encode(config))
                    result.created.append(config.name)
                }
            }
            return result
        }
    }

    static func validate(_ input: NodeConfig, path: String = "") throws -> NodeConfig {
        do {
            return try input.validated(path: path)
        } catch {
            throw APIError(.unprocessableContent, "invalid-node", error.description)
        }
    }

    /// Inserts or replaces the row and its MACs (within a transaction).
    func writeNode(_ config: NodeConfig, created: Bool) async throws {
        try await checkImage(of: config)
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

    private func writeMACs(_ config: NodeConfig) async throws {
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
