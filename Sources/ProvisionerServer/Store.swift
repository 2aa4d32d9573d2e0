import Foundation
import Logging
import NIOCore
import NIOPosix
import ProvisionerAPI
import SQLiteNIO

/// Who made an admin change, and from where (for the audit log).
public struct Actor: Sendable {
    public var name: String
    public var remoteAddress: String?
    public init(name: String, remoteAddress: String?) {
        self.name = name
        self.remoteAddress = remoteAddress
    }
}

/// The registry: nodes, boot sessions, their events and the audit log, in one SQLite database
/// (STATE/provisioner.db) through sqlite-nio.
///
/// One connection; every operation runs under `gate`, so a multi-statement change (a node and its
/// audit entry) is one transaction that nothing interleaves with. SQLite answers these small
/// queries in microseconds, which keeps a rack's worth of agents well served (see the load test).
public final class Store: Sendable {
    let connection: SQLiteConnection
    private let gate = Gate()
    public let path: String
    let logger: Logger

    public static let maxEventsPerSession = 100_000

    private init(connection: SQLiteConnection, path: String, logger: Logger) {
        self.connection = connection
        self.path = path
        self.logger = logger
    }

    public static func open(path: String, logger: Logger) async throws -> Store {
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        } catch {
            throw ServerSetupError("opening the database \(path): \(error)")
        }
        let store = Store(connection: connection, path: path, logger: logger)
        try await store.migrate()
        return store
    }

    public func close() async {
        try? await connection.close()
    }

    private func migrate() async throws {
        _ = try await connection.query("PRAGMA journal_mode=WAL")
        _ = try await connection.query("PRAGMA synchronous=NORMAL")
        _ = try await connection.query("PRAGMA foreign_keys=ON")
        let version = try await connection.query("PRAGMA user_version").first?.column("user_version")?.integer ?? 0
        if version < 1 { try await createSchemaVersion1() }
        if version < 2 { try await createSchemaVersion2() }
        if version < 3 { try await createSchemaVersion3() }
        if version < 4 { try await createSchemaVersion4() }
    }

    /// Nodes, sessions, events, audit.
    private func createSchemaVersion1() async throws {
        let statements = [
            """
            CREATE TABLE nodes (name TEXT PRIMARY KEY, config TEXT NOT NULL,
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)
            """,
            "CREATE TABLE node_macs (mac TEXT PRIMARY KEY, node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE)",
            """
            CREATE TABLE sessions (id TEXT PRIMARY KEY, node TEXT, macs TEXT NOT NULL, facts TEXT NOT NULL,
                state TEXT NOT NULL, opened_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, remote TEXT,
                last_phase TEXT, last_message TEXT, event_count INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL)
            """,
            "CREATE INDEX sessions_state ON sessions(state, updated_at)",
            "CREATE INDEX sessions_node ON sessions(node, opened_at)",
            "CREATE TABLE session_macs (mac TEXT NOT NULL, session TEXT NOT NULL, PRIMARY KEY (mac, session))",
            """
            CREATE TABLE events (session TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL,
                event TEXT NOT NULL, PRIMARY KEY (session, seq))
            """,
            """
            CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, actor TEXT NOT NULL,
                remote TEXT, action TEXT NOT NULL, subject TEXT NOT NULL, before TEXT, after TEXT)
            """,
            "PRAGMA user_version = 1",
        ]
        try await transaction {
            for sql in statements { _ = try await connection.query(sql) }
        }
    }

    /// The image registry (docs/images.md): images, their branches, versions and open uploads.
    private func createSchemaVersion2() async throws {
        let statements = [
            "CREATE TABLE images (name TEXT PRIMARY KEY, live TEXT NOT NULL, created_at INTEGER NOT NULL)",
            """
            CREATE TABLE image_branches (image TEXT NOT NULL REFERENCES images(name) ON DELETE CASCADE,
                name TEXT NOT NULL, head TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (image, name))
            """,
            """
            CREATE TABLE image_versions (image TEXT NOT NULL REFERENCES images(name) ON DELETE CASCADE,
                id TEXT NOT NULL, parent TEXT, branch TEXT NOT NULL, created_at INTEGER NOT NULL,
                created_by TEXT NOT NULL, entries INTEGER NOT NULL, content_bytes INTEGER NOT NULL,
                summary TEXT NOT NULL, PRIMARY KEY (image, id))
            """,
            """
            CREATE TABLE image_branch_versions (image TEXT NOT NULL, branch TEXT NOT NULL, version TEXT NOT NULL,
                parent TEXT, PRIMARY KEY (image, branch, version))
            """,
            """
            CREATE TABLE image_uploads (image TEXT NOT NULL, id TEXT NOT NULL, branch TEXT NOT NULL,
                started_at INTEGER NOT NULL, started_by TEXT NOT NULL, PRIMARY KEY (image, id))
            """,
            "PRAGMA user_version = 2",
        ]
        try await transaction {
            for sql in statements { _ = try await connection.query(sql) }
        }
    }

    // MARK: Transactions

    /// Runs `body` alone, inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK when it throws).
    func transaction<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await gate.acquire()
        do {
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                let result = try await body()
                _ = try await connection.query("COMMIT")
                await gate.release()
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        } catch {
            await gate.release()
            throw error
        }
    }

    /// Runs read-only `body` alone (no other operation between its queries).
    func read<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await gate.acquire()
        do {
            let result = try await body()
            await gate.release()
            return result
        } catch {
            await gate.release()
            throw error
        }
    }

    func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        try await connection.query(sql, binds)
    }

    // MARK: Audit

    func audit(_ actor: Actor, _ action: String, _ subject: String, before: String?, after: String?) async throws {
        _ = try await query(
            "INSERT INTO audit (time, actor, remote, action, subject, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                .integer(Clock.nowMillis()), .text(actor.name), actor.remoteAddress.map { .text($0) } ?? .null,
                .text(action), .text(subject), before.map { .text($0) } ?? .null, after.map { .text($0) } ?? .null,
            ])
    }

    public func auditLog(limit: Int, subject: String? = nil) async throws -> [AuditEntry] {
        let rows = try await read {
            if let subject {
                return try await query(
                    "SELECT * FROM audit WHERE subject = ? ORDER BY id DESC LIMIT ?", [.text(subject), .integer(limit)])
            }
            return try await query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", [.integer(limit)])
        }
        return rows.reversed().map { row in
            AuditEntry(
                id: row.column("id")?.integer ?? 0, time: Clock.iso(row.column("time")?.integer ?? 0),
                actor: row.column("actor")?.string ?? "", remoteAddress: row.column("remote")?.string,
                action: row.column("action")?.string ?? "", subject: row.column("subject")?.string ?? "",
                before: row.column("before")?.string, after: row.column("after")?.string)
        }
    }
}

/// A FIFO lock for async code: one holder at a time, waiters served in order.
actor Gate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}

/// Times: milliseconds since 1970 in the database, ISO 8601 UTC on the wire.
enum Clock {
    static func nowMillis() -> Int { Int(Date().timeIntervalSince1970 * 1000) }

    static func iso(_ millis: Int) -> String {
        let date = Date(timeIntervalSince1970: Double(millis) / 1000)
        return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

/// JSON as stored in the database and in audit entries: stable key order.
enum StoredJSON {
    static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "null"
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String?) throws -> T {
        guard let text else { throw ServerSetupError("database: missing JSON column for \(T.self)") }
        return try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }
}

public struct ServerSetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
