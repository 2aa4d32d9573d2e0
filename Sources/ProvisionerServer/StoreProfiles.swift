import Foundation
import ProvisionerAPI
import ProvisionerCore
import SQLiteNIO

/// Profiles and overlays (docs/node-config.md): kept in the database next to the nodes, so a
/// change to a profile and the nodes it affects is one transaction with its audit entry.
extension Store {
    /// Profiles and overlays.
    func createSchemaVersion3() async throws {
        let statements = [
            """
            CREATE TABLE profiles (name TEXT PRIMARY KEY, definition TEXT NOT NULL,
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)
            """,
            """
            CREATE TABLE overlays (name TEXT PRIMARY KEY, content TEXT NOT NULL,
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)
            """,
            "PRAGMA user_version = 3",
        ]
        try await transaction {
            for sql in statements { _ = try await connection.query(sql) }
        }
    }

    // MARK: Profiles

    func profileMap() async throws -> [String: Profile] {
        var result: [String: Profile] = [:]
        for row in try await query("SELECT definition FROM profiles") {
            let profile = try StoredJSON.decode(Profile.self, row.column("definition")?.string)
            result[profile.name] = profile
        }
        return result
    }

    /// The nodes and profiles that list profile `name` (`node n001`, `profile gpu`).
    func usersOfProfile(_ name: String) async throws -> [String] {
        var users: [String] = []
        for row in try await query("SELECT config FROM nodes ORDER BY name") {
            let node = try StoredJSON.decode(NodeDefinition.self, row.column("config")?.string)
            if node.profiles.contains(name) { users.append("node \(node.name)") }
        }
        for profile in try await profileMap().values.sorted(by: { $0.name < $1.name })
        where profile.profiles.contains(name) {
            users.append("profile \(profile.name)")
        }
        return users
    }

    public func profiles() async throws -> [ProfileRecord] {
        try await read {
            var records: [ProfileRecord] = []
            for row in try await query("SELECT * FROM profiles ORDER BY name") {
                records.append(try await profileRecord(row))
            }
            return records
        }
    }

    public func profile(named name: String) async throws -> ProfileRecord? {
        try await read {
            guard let row = try await query("SELECT * FROM profiles WHERE name = ?", [.text(name)]).first else {
                return nil
            }
            return try await profileRecord(row)
        }
    }

    func profileRecord(_ row: SQLiteRow) async throws -> ProfileRecord {
        let profile = try StoredJSON.decode(Profile.self, row.column("definition")?.string)
        return ProfileRecord(
            profile: profile, usedBy: try await usersOfProfile(profile.name),
            createdAt: Clock.iso(row.column("created_at")?.integer ?? 0),
            updatedAt: Clock.iso(row.column("updated_at")?.integer ?? 0))
    }

    /// Creates (`create`: 409 if it exists) or replaces (404 if it does not) a profile; every node
    /// that uses it, directly or through another profile, must still resolve and render.
    public func saveProfile(_ input: Profile, create: Bool, by actor: Actor) async throws -> ProfileRecord {
        let profile = try Self.validate(input)
        return try await transaction {
            let exists = try await query("SELECT name FROM profiles WHERE name = ?", [.text(profile.name)]).first != nil
            if create && exists { throw APIError.conflict("profile \(profile.name) already exists") }
            if !create && !exists { throw APIError.notFound("unknown-profile", "no profile named \(profile.name)") }
            try await putProfile(profile, by: actor, check: true)
            let row = try await query("SELECT * FROM profiles WHERE name = ?", [.text(profile.name)]).first!
            return try await profileRecord(row)
        }
    }

    /// Writes one profile and its audit entry (within a transaction). With `check`, refuses a cycle
    /// or an unknown profile it lists, and checks every node that uses it.
    func putProfile(_ profile: Profile, by actor: Actor, check: Bool) async throws {
        let old = try await query("SELECT definition FROM profiles WHERE name = ?", [.text(profile.name)]).first
            .map { try StoredJSON.decode(Profile.self, $0.column("definition")?.string) }
        if old == profile { return }
        let now = Clock.nowMillis()
        if old == nil {
            _ = try await query(
                "INSERT INTO profiles (name, definition, created_at, updated_at) VALUES (?, ?, ?, ?)",
                [.text(profile.name), .text(StoredJSON.encode(profile)), .integer(now), .integer(now)])
        } else {
            _ = try await query(
                "UPDATE profiles SET definition = ?, updated_at = ? WHERE name = ?",
                [.text(StoredJSON.encode(profile)), .integer(now), .text(profile.name)])
        }
        try await audit(
            actor, old == nil ? "profile.create" : "profile.update", "profile/\(profile.name)",
            before: old.map { StoredJSON.encode($0) }, after: StoredJSON.encode(profile))
        if check {
            let profiles = try await profileMap()
            do {
                _ = try ProfileMerge.order(of: [profile.name], for: "profile \(profile.name)", profiles: profiles)
            } catch {
                throw APIError(.unprocessableContent, "invalid-profile", error.description)
            }
            try await checkNodes(try await nodesUsing(profile: profile.name, profiles: profiles))
        }
    }

    /// The definitions of the nodes whose profiles include `name`, directly or not.
    func nodesUsing(profile name: String, profiles: [String: Profile]) async throws -> [NodeDefinition] {
        try await query("SELECT config FROM nodes ORDER BY name").compactMap { row in
            let node = try StoredJSON.decode(NodeDefinition.self, row.column("config")?.string)
            let order = try? ProfileMerge.order(of: node.profiles, for: "node \(node.name)", profiles: profiles)
            return (order ?? []).contains { $0.name == name } ? node : nil
        }
    }

    /// Deletes a profile; refused (409 `in-use`) while a node or profile lists it, naming them.
    public func deleteProfile(named name: String, by actor: Actor) async throws {
        try await transaction { try await removeProfile(name, by: actor) }
    }

    func removeProfile(_ name: String, by actor: Actor) async throws {
        guard let row = try await query("SELECT definition FROM profiles WHERE name = ?", [.text(name)]).first else {
            throw APIError.notFound("unknown-profile", "no profile named \(name)")
        }
        let users = try await usersOfProfile(name)
        guard users.isEmpty else {
            throw APIError(
                .conflict, "in-use", "profile \(name) is used by \(users.joined(separator: ", ")); remove it from them first")
        }
        _ = try await query("DELETE FROM profiles WHERE name = ?", [.text(name)])
        try await audit(actor, "profile.delete", "profile/\(name)", before: row.column("definition")?.string, after: nil)
    }

    // MARK: Overlays

    func overlayMap() async throws -> [String: Overlay] {
        var result: [String: Overlay] = [:]
        for row in try await query("SELECT content FROM overlays") {
            let overlay = try StoredJSON.decode(Overlay.self, row.column("content")?.string)
            result[overlay.name] = overlay
        }
        return result
    }

    /// The nodes and profiles that list overlay `name`.
    func usersOfOverlay(_ name: String) async throws -> [String] {
        var users: [String] = []
        for row in try await query("SELECT config FROM nodes ORDER BY name") {
            let node = try StoredJSON.decode(NodeDefinition.self, row.column("config")?.string)
            if node.fields.overlays?.contains(name) ?? false { users.append("node \(node.name)") }
        }
        for profile in try await profileMap().values.sorted(by: { $0.name < $1.name })
        where profile.fields.overlays?.contains(name) ?? false {
            users.append("profile \(profile.name)")
        }
        return users
    }

    public func overlays() async throws -> [OverlaySummary] {
        try await read {
            var result: [OverlaySummary] = []
            let stored = try await overlayMap()
            for overlay in (OverlayRender.builtins + stored.values).sorted(by: { $0.name < $1.name }) {
                result.append(
                    OverlaySummary(
                        name: overlay.name, files: overlay.files.map(\.path), bytes: overlay.files.reduce(0) { $0 + $1.data.count },
                        builtin: OverlayRender.isBuiltin(overlay.name), usedBy: try await usersOfOverlay(overlay.name)))
            }
            return result
        }
    }

    public func overlay(named name: String) async throws -> Overlay? {
        if let builtin = OverlayRender.builtins.first(where: { $0.name == name }) { return builtin }
        return try await read { try await overlayMap()[name] }
    }

    /// Creates (`create`) or replaces an overlay; every node that lists it (directly or through a
    /// profile) must render it.
    public func saveOverlay(_ input: Overlay, create: Bool, by actor: Actor) async throws -> OverlaySummary {
        let overlay: Overlay
        do {
            overlay = try input.validated()
        } catch {
            throw APIError(.unprocessableContent, "invalid-overlay", error.description)
        }
        guard !OverlayRender.isBuiltin(overlay.name) else {
            throw APIError.conflict("overlay \(overlay.name) is built in; it cannot be replaced")
        }
        return try await transaction {
            let old = try await query("SELECT content FROM overlays WHERE name = ?", [.text(overlay.name)]).first?
                .column("content")?.string
            if create && old != nil { throw APIError.conflict("overlay \(overlay.name) already exists") }
            let now = Clock.nowMillis()
            let content = StoredJSON.encode(overlay)
            if old == nil {
                _ = try await query(
                    "INSERT INTO overlays (name, content, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    [.text(overlay.name), .text(content), .integer(now), .integer(now)])
            } else if old != content {
                _ = try await query(
                    "UPDATE overlays SET content = ?, updated_at = ? WHERE name = ?",
                    [.text(content), .integer(now), .text(overlay.name)])
            }
            if old != content {
                // The audit keeps what changed without the bytes: paths, modes, owners, sizes.
                try await audit(
                    actor, old == nil ? "overlay.create" : "overlay.update", "overlay/\(overlay.name)",
                    before: old.flatMap { try? StoredJSON.decode(Overlay.self, $0) }.map(Self.auditText),
                    after: Self.auditText(overlay))
                let profiles = try await profileMap()
                try await checkNodes(
                    try await query("SELECT config FROM nodes ORDER BY name").compactMap { row in
                        let node = try StoredJSON.decode(NodeDefinition.self, row.column("config")?.string)
                        let config = try? ProfileMerge.resolve(node, profiles: profiles).config
                        return config?.overlays.contains(overlay.name) ?? false ? node : nil
                    })
            }
            return OverlaySummary(
                name: overlay.name, files: overlay.files.map(\.path), bytes: overlay.files.reduce(0) { $0 + $1.data.count },
                builtin: false, usedBy: try await usersOfOverlay(overlay.name))
        }
    }

    static func auditText(_ overlay: Overlay) -> String {
        StoredJSON.encode(
            overlay.files.map {
                "\($0.path) \(String($0.mode, radix: 8)) \($0.uid):\($0.gid) \($0.data.count) bytes"
                    + ($0.template ? " template" : "") + ($0.run.map { " plugin(\($0.when.rawValue), \($0.timeoutSeconds) s)" } ?? "")
            })
    }

    /// Deletes an overlay; refused while a node or profile lists it, naming them.
    public func deleteOverlay(named name: String, by actor: Actor) async throws {
        guard !OverlayRender.isBuiltin(name) else {
            throw APIError.conflict("overlay \(name) is built in; it cannot be deleted")
        }
        try await transaction {
            guard let old = try await query("SELECT content FROM overlays WHERE name = ?", [.text(name)]).first?
                .column("content")?.string
            else {
                throw APIError.notFound("unknown-overlay", "no overlay named \(name)")
            }
            let users = try await usersOfOverlay(name)
            guard users.isEmpty else {
                throw APIError(
                    .conflict, "in-use", "overlay \(name) is used by \(users.joined(separator: ", ")); remove it from them first")
            }
            _ = try await query("DELETE FROM overlays WHERE name = ?", [.text(name)])
            try await audit(
                actor, "overlay.delete", "overlay/\(name)",
                before: (try? StoredJSON.decode(Overlay.self, old)).map(Self.auditText), after: nil)
        }
    }

    /// A definition's effective config with the profiles stored now (422 when it does not resolve).
    public func effective(_ definition: NodeDefinition) async throws -> NodeConfig {
        try await read { try Self.resolve(definition, try await profileMap()).0 }
    }

    /// What the agent gets: `node` with its overlays rendered into `files` and its plugin
    /// parameters rendered.
    func withRenderedOverlays(_ node: NodeConfig) async throws -> NodeConfig {
        let needs = !node.overlays.isEmpty || node.plugins.contains { $0.parameters.values.contains { $0.contains("{{") } }
        guard needs else { return node }
        return try await read {
            let cluster = try await effectiveNodes()
            let overlays = try await overlayMap()
            var out = node
            do {
                out.files = try OverlayRender.render(node: node, cluster: cluster, overlays: overlays)
                out.plugins = try OverlayRender.renderPlugins(node: node, cluster: cluster)
            } catch {
                throw APIError(.unprocessableContent, "invalid-overlay", "\(error)")
            }
            return out
        }
    }
}
