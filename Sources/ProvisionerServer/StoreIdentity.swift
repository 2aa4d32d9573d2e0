import Foundation
import ProvisionerAPI
import ProvisionerPKI
import SQLiteNIO

/// Node identities, the certificates the server issued or saw, revocations and secrets
/// (docs/certificates.md).
extension Store {
    func createSchemaVersion4() async throws {
        let statements = [
            "ALTER TABLE sessions ADD COLUMN verified INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE sessions ADD COLUMN challenge TEXT",
            """
            CREATE TABLE node_identities (node TEXT PRIMARY KEY, state TEXT NOT NULL, key TEXT,
                revoked_keys TEXT NOT NULL DEFAULT '[]', approved_by TEXT, enrolled_at INTEGER,
                updated_at INTEGER NOT NULL)
            """,
            """
            CREATE TABLE certificates (serial TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL,
                source TEXT NOT NULL, first_seen INTEGER NOT NULL, not_after INTEGER,
                revoked_at INTEGER, revoked_by TEXT)
            """,
            "CREATE INDEX certificates_name ON certificates(role, name)",
            """
            CREATE TABLE secrets (owner TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL, mode INTEGER NOT NULL,
                uid INTEGER NOT NULL, gid INTEGER NOT NULL, sealed BLOB NOT NULL, bytes INTEGER NOT NULL,
                generated INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL, updated_by TEXT NOT NULL,
                PRIMARY KEY (owner, name))
            """,
            "PRAGMA user_version = 4",
        ]
        try await transaction {
            for sql in statements { _ = try await connection.query(sql) }
        }
    }

    // MARK: Certificates

    func revokedSerials() async throws -> Set<String> {
        let rows = try await read { try await query("SELECT serial FROM certificates WHERE revoked_at IS NOT NULL") }
        return Set(rows.compactMap { $0.column("serial")?.string })
    }

    func knownSerials() async throws -> Set<String> {
        let rows = try await read { try await query("SELECT serial FROM certificates") }
        return Set(rows.compactMap { $0.column("serial")?.string })
    }

    /// A client certificate used for the first time: kept, so `admins revoke NAME` finds it.
    func recordSeen(_ peer: PeerIdentity) async throws {
        try await transaction {
            _ = try await query(
                "INSERT OR IGNORE INTO certificates (serial, role, name, source, first_seen) VALUES (?, ?, ?, 'seen', ?)",
                [.text(peer.serial), .text(peer.role?.rawValue ?? "none"), .text(peer.name), .integer(Clock.nowMillis())])
        }
    }

    /// An audit entry for an admin's action that changes no row (a multicast session started).
    func record(_ actor: Actor, _ action: String, _ subject: String, _ detail: String) async throws {
        try await transaction { try await audit(actor, action, subject, before: nil, after: detail) }
    }

    /// An audit entry for a refused request: who, what, and why (never a secret's value).
    public func auditRefusal(_ actor: Actor, _ action: String, _ subject: String, _ reason: String) async {
        do {
            try await transaction { try await audit(actor, action, subject, before: nil, after: reason) }
        } catch {
            logger.error("could not write the audit entry for a refused \(action) on \(subject): \(error)")
        }
    }

    /// Revokes serials (of any role): refused from the next request on. Returns those newly revoked.
    public func revoke(serials: [String], role: String?, name: String?, by actor: Actor, reason: String?) async throws
        -> [String]
    {
        try await transaction {
            let now = Clock.nowMillis()
            var newly: [String] = []
            for serial in serials {
                let row = try await query("SELECT revoked_at FROM certificates WHERE serial = ?", [.text(serial)]).first
                if let row, row.column("revoked_at")?.integer != nil { continue }
                if row == nil {
                    _ = try await query(
                        "INSERT INTO certificates (serial, role, name, source, first_seen) VALUES (?, ?, ?, 'revoked', ?)",
                        [.text(serial), .text(role ?? "unknown"), .text(name ?? "unknown"), .integer(now)])
                }
                _ = try await query(
                    "UPDATE certificates SET revoked_at = ?, revoked_by = ? WHERE serial = ?",
                    [.integer(now), .text(actor.name), .text(serial)])
                newly.append(serial)
            }
            try await audit(
                actor, "certificates.revoke", "certificates/" + (name ?? serials.joined(separator: ",")), before: nil,
                after: StoredJSON.encode(["serials": newly.joined(separator: ","), "reason": reason ?? ""]))
            return newly
        }
    }

    /// Every certificate of `role` named `name` the server issued or saw.
    public func certificates(role: String? = nil, name: String? = nil) async throws -> [CertificateInfo] {
        let rows = try await read {
            var sql = "SELECT * FROM certificates"
            var binds: [SQLiteData] = []
            var clauses: [String] = []
            if let role {
                clauses.append("role = ?")
                binds.append(.text(role))
            }
            if let name {
                clauses.append("name = ?")
                binds.append(.text(name))
            }
            if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
            return try await query(sql + " ORDER BY first_seen DESC, rowid DESC", binds)
        }
        return rows.map(Self.certificateInfo)
    }

    static func certificateInfo(_ row: SQLiteRow) -> CertificateInfo {
        CertificateInfo(
            serial: row.column("serial")?.string ?? "", role: row.column("role")?.string ?? "",
            name: row.column("name")?.string ?? "", source: row.column("source")?.string ?? "",
            firstSeen: Clock.iso(row.column("first_seen")?.integer ?? 0),
            notAfter: row.column("not_after")?.integer.map(Clock.iso),
            revokedAt: row.column("revoked_at")?.integer.map(Clock.iso), revokedBy: row.column("revoked_by")?.string)
    }

    // MARK: Node identities

    struct IdentityRecord: Sendable {
        var state: NodeIdentityInfo.State
        var key: String?
        var revokedKeys: Set<String>
        var approvedBy: String?
        var enrolledAt: Int?
    }

    func identityRecord(_ node: String) async throws -> IdentityRecord {
        guard let row = try await query("SELECT * FROM node_identities WHERE node = ?", [.text(node)]).first else {
            return IdentityRecord(state: .none, key: nil, revokedKeys: [], approvedBy: nil, enrolledAt: nil)
        }
        return IdentityRecord(
            state: NodeIdentityInfo.State(rawValue: row.column("state")?.string ?? "") ?? .none,
            key: row.column("key")?.string,
            revokedKeys: Set((try? StoredJSON.decode([String].self, row.column("revoked_keys")?.string)) ?? []),
            approvedBy: row.column("approved_by")?.string, enrolledAt: row.column("enrolled_at")?.integer)
    }

    func writeIdentity(_ node: String, _ record: IdentityRecord) async throws {
        _ = try await query(
            """
            INSERT INTO node_identities (node, state, key, revoked_keys, approved_by, enrolled_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(node) DO UPDATE SET state = excluded.state, key = excluded.key,
                revoked_keys = excluded.revoked_keys, approved_by = excluded.approved_by,
                enrolled_at = excluded.enrolled_at, updated_at = excluded.updated_at
            """,
            [
                .text(node), .text(record.state.rawValue), record.key.map { .text($0) } ?? .null,
                .text(StoredJSON.encode(record.revokedKeys.sorted())), record.approvedBy.map { .text($0) } ?? .null,
                record.enrolledAt.map { .integer($0) } ?? .null, .integer(Clock.nowMillis()),
            ])
    }

    public func identity(of node: String) async throws -> NodeIdentityInfo {
        try await read {
            let record = try await identityRecord(node)
            let certificates = try await query(
                "SELECT * FROM certificates WHERE role = 'node' AND name = ? ORDER BY first_seen DESC, rowid DESC LIMIT 20",
                [.text(node)]
            ).map(Self.certificateInfo)
            return NodeIdentityInfo(
                node: node, state: record.state, key: record.key, enrolledAt: record.enrolledAt.map(Clock.iso),
                approvedBy: record.approvedBy, certificates: certificates)
        }
    }

    /// The facts of `EnrollmentRules` for a session, read in one go.
    func enrollmentFacts(session id: String) async throws -> (SessionSummary, String?, IdentityRecord, EnrollmentPolicy) {
        try await read {
            guard let row = try await query("SELECT * FROM sessions WHERE id = ?", [.text(id)]).first else {
                throw Self.unknownSession(id)
            }
            let session = try Self.sessionSummary(row)
            let challenge = row.column("challenge")?.string
            guard let node = session.node else {
                return (session, challenge, IdentityRecord(state: .none, revokedKeys: []), .approve)
            }
            let policy = try await nodeRow(node)?.config.enrollment ?? .approve
            return (session, challenge, try await identityRecord(node), policy)
        }
    }

    /// An enrollment the rules accepted: the identity keeps the key, the certificate is recorded,
    /// the session is verified (its challenge used up) and the node's other open sessions end.
    func completeEnrollment(
        session id: String, node: String, kind: EnrollmentKind, key: String, serial: String, notAfter: Date,
        actor: Actor
    ) async throws {
        try await transaction {
            let now = Clock.nowMillis()
            var record = try await identityRecord(node)
            let before = record.key
            if record.key != key, let old = record.key { record.revokedKeys.insert(old) }
            record.state = .active
            record.key = key
            if kind != .renewed {
                record.enrolledAt = now
                record.approvedBy = nil
            }
            try await writeIdentity(node, record)
            _ = try await query(
                "INSERT INTO certificates (serial, role, name, source, first_seen, not_after) VALUES (?, 'node', ?, 'issued', ?, ?)",
                [.text(serial), .text(node), .integer(now), .integer(Int(notAfter.timeIntervalSince1970 * 1000))])
            _ = try await query(
                "UPDATE sessions SET verified = 1, challenge = NULL, updated_at = ? WHERE id = ?", [.integer(now), .text(id)])
            try await abandonOthers(of: id, node: node, now: now)
            try await audit(
                actor, "node.enroll", "node/\(node)", before: before,
                after: StoredJSON.encode(["kind": kind.rawValue, "key": key, "serial": serial, "session": id]))
        }
    }

    /// Ends the node's other waiting or running sessions: a verified one replaces them.
    func abandonOthers(of id: String, node: String, now: Int) async throws {
        _ = try await query(
            "UPDATE sessions SET state = 'abandoned', updated_at = ? WHERE node = ? AND id != ? AND state IN ('waiting', 'running')",
            [.integer(now), .text(node), .text(id)])
    }

    /// `nodes revoke`: every certificate of the node is refused from now on, and its key may not
    /// come back without approval (or the `auto` policy with a new key).
    public func revokeNode(_ node: String, by actor: Actor) async throws -> [String] {
        try await transaction {
            guard try await nodeRow(node) != nil else { throw APIError.notFound("unknown-node", "no node named \(node)") }
            var record = try await identityRecord(node)
            let serials = try await revokeCertificates(ofNode: node, by: actor)
            if let key = record.key { record.revokedKeys.insert(key) }
            record.state = record.state == .none && serials.isEmpty ? .none : .revoked
            record.key = nil
            record.approvedBy = nil
            try await writeIdentity(node, record)
            try await audit(
                actor, "node.revoke", "node/\(node)", before: nil,
                after: StoredJSON.encode(["serials": serials.joined(separator: ",")]))
            return serials
        }
    }

    /// `nodes approve`: the node's next enrollment with a new key is accepted once.
    public func approveNode(_ node: String, by actor: Actor) async throws -> NodeIdentityInfo {
        try await transaction {
            guard try await nodeRow(node) != nil else { throw APIError.notFound("unknown-node", "no node named \(node)") }
            var record = try await identityRecord(node)
            record.approvedBy = actor.name
            try await writeIdentity(node, record)
            try await audit(actor, "node.approve", "node/\(node)", before: nil, after: "next enrollment approved")
        }
        return try await identity(of: node)
    }
}

extension Store {
    /// Inside a transaction: marks every live certificate of `node` revoked; returns their serials.
    func revokeCertificates(ofNode node: String, by actor: Actor) async throws -> [String] {
        let serials = try await query(
            "SELECT serial FROM certificates WHERE role = 'node' AND name = ? AND revoked_at IS NULL", [.text(node)]
        ).compactMap { $0.column("serial")?.string }
        _ = try await query(
            "UPDATE certificates SET revoked_at = ?, revoked_by = ? WHERE role = 'node' AND name = ? AND revoked_at IS NULL",
            [.integer(Clock.nowMillis()), .text(actor.name), .text(node)])
        return serials
    }

    /// Revokes the node's certificates and removes its identity and its own secrets.
    func forgetIdentity(_ node: String, by actor: Actor) async throws -> [String] {
        try await transaction {
            let serials = try await revokeCertificates(ofNode: node, by: actor)
            _ = try await query("DELETE FROM node_identities WHERE node = ?", [.text(node)])
            _ = try await query("DELETE FROM secrets WHERE owner = ?", [.text("node:\(node)")])
            if !serials.isEmpty {
                try await audit(
                    actor, "node.forget", "node/\(node)", before: nil,
                    after: StoredJSON.encode(["revoked": serials.joined(separator: ",")]))
            }
            return serials
        }
    }
}
