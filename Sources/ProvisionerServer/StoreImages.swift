import Foundation
import ProvisionerAPI
import ProvisionerCore
import SQLiteNIO

/// The image registry in the database (docs/images.md): which versions an image has, which version
/// each branch names, which branch is live, and the uploads under way. The bytes (objects and
/// manifests) live in the image store under STATE/images, named by their hashes; a branch move is a
/// row update in one transaction with its audit entry.
extension Store {
    public func images() async throws -> [ImageRecord] {
        try await read {
            var out: [ImageRecord] = []
            for row in try await query("SELECT name FROM images ORDER BY name") {
                if let name = row.column("name")?.string, let record = try await imageRow(name) { out.append(record) }
            }
            return out
        }
    }

    public func image(named name: String) async throws -> ImageRecord? {
        try await read { try await imageRow(name) }
    }

    func imageRow(_ name: String) async throws -> ImageRecord? {
        guard let row = try await query("SELECT * FROM images WHERE name = ?", [.text(name)]).first else { return nil }
        let branches = try await query(
            "SELECT * FROM image_branches WHERE image = ? ORDER BY name", [.text(name)]
        ).map { b in
            ImageBranchRecord(
                name: b.column("name")?.string ?? "", head: b.column("head")?.string ?? "",
                updatedAt: Clock.iso(b.column("updated_at")?.integer ?? 0))
        }
        let versions = try await query(
            "SELECT * FROM image_versions WHERE image = ? ORDER BY created_at, rowid", [.text(name)]
        ).map { v in
            ImageVersionRecord(
                id: v.column("id")?.string ?? "", parent: v.column("parent")?.string,
                branch: v.column("branch")?.string ?? "", createdAt: Clock.iso(v.column("created_at")?.integer ?? 0),
                createdBy: v.column("created_by")?.string ?? "", entries: v.column("entries")?.integer ?? 0,
                contentBytes: UInt64(v.column("content_bytes")?.integer ?? 0),
                summary: try StoredJSON.decode(ChangeSummary.self, v.column("summary")?.string))
        }
        return ImageRecord(
            name: name, live: row.column("live")?.string ?? ImageNames.defaultBranch, branches: branches,
            versions: versions)
    }

    /// The version a node following `ref` boots; nil when the registry has no such image (an image
    /// only in the store directory is served by its `latest` file, as before the registry).
    public func resolve(_ ref: ImageRef) async throws -> String? {
        try await read { try await imageRow(ref.name)?.resolve(ref) }
    }

    /// Records an upload under way (its objects are kept by `image gc` until it ends).
    func beginUpload(image: String, id: String, branch: String, by actor: Actor) async throws {
        try await transaction {
            _ = try await query(
                """
                INSERT INTO image_uploads (image, id, branch, started_at, started_by) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (image, id) DO UPDATE SET branch = excluded.branch, started_at = excluded.started_at
                """,
                [.text(image), .text(id), .text(branch), .integer(Clock.nowMillis()), .text(actor.name)])
        }
    }

    func upload(image: String, id: String) async throws -> String? {
        try await read {
            try await query("SELECT branch FROM image_uploads WHERE image = ? AND id = ?", [.text(image), .text(id)])
                .first?.column("branch")?.string
        }
    }

    /// Every upload under way, as (image, manifest id).
    func uploads() async throws -> [(image: String, id: String)] {
        try await read {
            try await query("SELECT image, id FROM image_uploads").compactMap { row in
                guard let image = row.column("image")?.string, let id = row.column("id")?.string else { return nil }
                return (image, id)
            }
        }
    }

    /// Makes `version` the head of `image`'s `branch` (creating the image, live on that branch, and
    /// the branch when new), records the version and ends its upload; audited as `image.publish`.
    /// `summary` is computed by the caller against `previousHead` (409 if the head moved meanwhile).
    func publish(
        image: String, branch: String, version: String, expectedHead previousHead: String?, entries: Int,
        contentBytes: UInt64, summary: ChangeSummary, by actor: Actor
    ) async throws -> BranchMove {
        try await transaction {
            let now = Clock.nowMillis()
            let existing = try await imageRow(image)
            let head = existing?.branches.first { $0.name == branch }?.head
            guard head == previousHead else {
                throw APIError.conflict(
                    "\(image)/\(branch) moved to \(head ?? "nothing") while this version was being published; publish again")
            }
            if existing == nil {
                _ = try await query(
                    "INSERT INTO images (name, live, created_at) VALUES (?, ?, ?)",
                    [.text(image), .text(branch), .integer(now)])
            }
            if existing?.versions.contains(where: { $0.id == version }) != true {
                _ = try await query(
                    """
                    INSERT INTO image_versions (image, id, parent, branch, created_at, created_by, entries,
                        content_bytes, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(image), .text(version), head.map { .text($0) } ?? .null, .text(branch), .integer(now),
                        .text(actor.name), .integer(entries), .integer(Int(clamping: contentBytes)),
                        .text(StoredJSON.encode(summary)),
                    ])
            }
            _ = try await query(
                """
                INSERT INTO image_branches (image, name, head, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (image, name) DO UPDATE SET head = excluded.head, updated_at = excluded.updated_at
                """, [.text(image), .text(branch), .text(version), .integer(now)])
            if head != version {
                try await recordParent(image: image, branch: branch, version: version, parent: head)
            }
            _ = try await query("DELETE FROM image_uploads WHERE image = ? AND id = ?", [.text(image), .text(version)])
            let move = BranchMove(image: image, branch: branch, previous: head, version: version, summary: summary)
            try await audit(
                actor, "image.publish", "image/\(image)/\(branch)", before: head.map { StoredJSON.encode(["head": $0]) },
                after: StoredJSON.encode(move))
            return move
        }
    }
}

extension Store {
    /// Nodes whose image is `image` and who follow `branch` by name (or, with `orLive`, the live
    /// branch by following the image alone).
    func nodesFollowing(image: String, branch: String, orLive: Bool) async throws -> [String] {
        try await nodesInTransaction().filter { node in
            guard let ref = node.image, ref.name == image, ref.version == nil else { return false }
            return ref.branch == branch || (orLive && ref.branch == nil)
        }.map(\.name).sorted()
    }

    func nodesInTransaction() async throws -> [NodeConfig] {
        try await effectiveNodes()
    }

    /// The version `version` replaced as head of `branch` when it was published there (what a
    /// rollback goes back to); kept from the first time, so rollbacks walk back the publishes.
    func recordParent(image: String, branch: String, version: String, parent: String?) async throws {
        _ = try await query(
            "INSERT OR IGNORE INTO image_branch_versions (image, branch, version, parent) VALUES (?, ?, ?, ?)",
            [.text(image), .text(branch), .text(version), parent.map { .text($0) } ?? .null])
    }

    /// What a rollback of `branch` goes back to: the head its current head replaced there.
    public func rollbackTarget(image: String, branch: String) async throws -> String? {
        try await read {
            guard
                let head = try await query(
                    "SELECT head FROM image_branches WHERE image = ? AND name = ?", [.text(image), .text(branch)]
                ).first?.column("head")?.string
            else { return nil }
            return try await query(
                "SELECT parent FROM image_branch_versions WHERE image = ? AND branch = ? AND version = ?",
                [.text(image), .text(branch), .text(head)]
            ).first?.column("parent")?.string
        }
    }

    /// Moves a branch head to a version the image has (rollback, or a new branch when `create`).
    func moveBranch(
        image: String, branch: String, to version: String, create: Bool, action: String, summary: ChangeSummary,
        by actor: Actor
    ) async throws -> BranchMove {
        try await transaction {
            guard let record = try await imageRow(image) else {
                throw APIError.notFound("unknown-image", "no image named \(image)")
            }
            guard record.versions.contains(where: { $0.id == version }) else {
                throw APIError.notFound("unknown-version", "image \(image) has no version \(version)")
            }
            let head = record.branches.first { $0.name == branch }?.head
            if create {
                guard head == nil else { throw APIError.conflict("image \(image) already has a branch \(branch)") }
            } else if head == nil {
                throw APIError.notFound("unknown-branch", "image \(image) has no branch \(branch)")
            }
            _ = try await query(
                """
                INSERT INTO image_branches (image, name, head, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (image, name) DO UPDATE SET head = excluded.head, updated_at = excluded.updated_at
                """, [.text(image), .text(branch), .text(version), .integer(Clock.nowMillis())])
            if create { try await recordParent(image: image, branch: branch, version: version, parent: nil) }
            let move = BranchMove(image: image, branch: branch, previous: head, version: version, summary: summary)
            try await audit(
                actor, action, "image/\(image)/\(branch)", before: head.map { StoredJSON.encode(["head": $0]) },
                after: StoredJSON.encode(move))
            return move
        }
    }

    func setLive(image: String, branch: String, by actor: Actor) async throws -> ImageRecord {
        try await transaction {
            guard let record = try await imageRow(image) else {
                throw APIError.notFound("unknown-image", "no image named \(image)")
            }
            guard record.branches.contains(where: { $0.name == branch }) else {
                throw APIError.notFound("unknown-branch", "image \(image) has no branch \(branch)")
            }
            _ = try await query("UPDATE images SET live = ? WHERE name = ?", [.text(branch), .text(image)])
            try await audit(
                actor, "image.live", "image/\(image)", before: StoredJSON.encode(["live": record.live]),
                after: StoredJSON.encode(["live": branch]))
            return try await imageRow(image)!
        }
    }

    func deleteBranch(image: String, branch: String, by actor: Actor) async throws {
        try await transaction {
            guard let record = try await imageRow(image) else {
                throw APIError.notFound("unknown-image", "no image named \(image)")
            }
            guard let head = record.branches.first(where: { $0.name == branch })?.head else {
                throw APIError.notFound("unknown-branch", "image \(image) has no branch \(branch)")
            }
            guard record.live != branch else {
                throw APIError.conflict("\(branch) is the live branch of \(image); make another branch live first")
            }
            let users = try await nodesFollowing(image: image, branch: branch, orLive: false)
            guard users.isEmpty else {
                throw APIError.conflict("nodes follow \(image)/\(branch): \(users.joined(separator: ", "))")
            }
            _ = try await query("DELETE FROM image_branches WHERE image = ? AND name = ?", [.text(image), .text(branch)])
            _ = try await query(
                "DELETE FROM image_branch_versions WHERE image = ? AND branch = ?", [.text(image), .text(branch)])
            try await audit(
                actor, "image.branch.delete", "image/\(image)/\(branch)", before: StoredJSON.encode(["head": head]),
                after: nil)
        }
    }
}

extension Store {
    /// Removes a version from the registry; refused while a branch names it or a node boots it
    /// (pinned, or following a branch at it), naming them. Its objects go at the next `image gc`.
    func deleteVersion(image: String, id: String, by actor: Actor) async throws {
        try await transaction {
            guard let record = try await imageRow(image) else {
                throw APIError.notFound("unknown-image", "no image named \(image)")
            }
            guard let version = record.versions.first(where: { $0.id == id }) else {
                throw APIError.notFound("unknown-version", "image \(image) has no version \(id)")
            }
            let heads = record.branches.filter { $0.head == id }.map(\.name)
            guard heads.isEmpty else {
                throw APIError.conflict(
                    "version \(id) is the head of \(image)/\(heads.joined(separator: ", ")); roll back or delete the branch first")
            }
            let pinned = try await nodesInTransaction().filter { $0.image?.name == image && $0.image?.version == id }
            guard pinned.isEmpty else {
                throw APIError.conflict(
                    "nodes are pinned to \(image)@\(id): \(pinned.map(\.name).sorted().joined(separator: ", "))")
            }
            _ = try await query("DELETE FROM image_versions WHERE image = ? AND id = ?", [.text(image), .text(id)])
            _ = try await query(
                "DELETE FROM image_branch_versions WHERE image = ? AND version = ?", [.text(image), .text(id)])
            try await audit(
                actor, "image.version.delete", "image/\(image)@\(id)", before: StoredJSON.encode(version), after: nil)
        }
    }

    /// Records a garbage collection in the audit log.
    func auditCollection(_ report: StoredJSONValue, by actor: Actor) async throws {
        try await transaction {
            try await audit(actor, "image.gc", "images", before: nil, after: report.text)
        }
    }
}

/// JSON already encoded, for the audit log.
struct StoredJSONValue: Sendable {
    var text: String
}
