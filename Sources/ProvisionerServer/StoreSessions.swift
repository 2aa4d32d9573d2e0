import Foundation
import ProvisionerAPI
import ProvisionerCore
import SQLiteNIO

extension Store {
    // MARK: Sessions

    /// Opens a boot session for a machine. An agent's new session abandons the machine's earlier
    /// unfinished ones. iPXE's requests from an unknown machine (`source == "ipxe"`) keep reusing
    /// one waiting session, so a machine that retries every 30 s is listed once. A new pending
    /// machine beyond `limits.maxPending` is refused with 429 (entries not refreshed within
    /// `limits.pendingExpirySeconds` are abandoned first and no longer count).
    /// Opens a session for the machine with `macs`. `caller` nil: iPXE (the plain-HTTP listener).
    /// A session the shared bootstrap certificate opens for a node is unverified: it gets an
    /// enrollment challenge and ends none of the node's other sessions until the node proves its
    /// identity (docs/certificates.md); one a node's own certificate opens must be that node's.
    public func openSession(
        macs: [String], facts: HardwareFacts, remoteAddress: String?, source: String,
        limits: RegistrationLimits = RegistrationLimits(), caller: SessionCaller? = .admin("server")
    ) async throws -> (SessionSummary, NodeConfig?) {
        let normal = try Self.normalize(macs)
        return try await transaction {
            let node = try await nodeOwning(macs: normal)
            let now = Clock.nowMillis()
            if case .node(let name)? = caller, node?.name != name {
                throw APIError.forbidden(
                    "the certificate of node \(name) may not open a session for "
                        + (node.map { "node \($0.name)'s MACs" } ?? "MACs no node has"),
                    code: "not-your-node")
            }
            let verified = caller.map(\.provesNode) ?? false
            if source == "ipxe", node == nil,
                let existing = try await sessionsSharing(macs: normal, states: [.waiting]).first
            {
                _ = try await query(
                    "UPDATE sessions SET updated_at = ?, remote = ?, facts = ? WHERE id = ?",
                    [
                        .integer(now), remoteAddress.map { .text($0) } ?? .null, .text(StoredJSON.encode(facts)),
                        .text(existing),
                    ])
                return (try await summary(existing)!, nil)
            }
            // An unverified claim on a node's MACs ends nothing: the real machine's boot goes on.
            if source != "ipxe" && (verified || node == nil) {
                for old in try await sessionsSharing(macs: normal, states: [.waiting, .running]) {
                    _ = try await query(
                        "UPDATE sessions SET state = 'abandoned', updated_at = ? WHERE id = ?",
                        [.integer(now), .text(old)])
                }
            }
            if node == nil { try await admitPending(now: now, limits: limits) }
            let id = UUID().uuidString.lowercased()
            let state: SessionState = node == nil ? .waiting : .running
            let challenge = verified ? nil : Self.newChallenge()
            _ = try await query(
                """
                INSERT INTO sessions (id, node, macs, facts, state, opened_at, updated_at, remote, source, verified, challenge)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(id), node.map { .text($0.name) } ?? .null, .text(StoredJSON.encode(normal)),
                    .text(StoredJSON.encode(facts)), .text(state.rawValue), .integer(now), .integer(now),
                    remoteAddress.map { .text($0) } ?? .null, .text(source), .integer(verified ? 1 : 0),
                    challenge.map { .text($0) } ?? .null,
                ])
            for mac in normal {
                _ = try await query(
                    "INSERT OR IGNORE INTO session_macs (mac, session) VALUES (?, ?)", [.text(mac), .text(id)])
            }
            return (try await summary(id)!, node)
        }
    }

    /// The agent's poll: the node, once one owns the session's MACs (then the session runs).
    public func pollSession(_ id: String, caller: SessionCaller = .admin("server")) async throws -> (
        SessionSummary, NodeConfig?
    ) {
        try await transaction {
            guard let session = try await summary(id) else { throw Self.unknownSession(id) }
            try Self.authorize(caller, session, .poll)
            let node = try await nodeOwning(macs: session.macs)
            let now = Clock.nowMillis()
            if session.state == .waiting, let node {
                _ = try await query(
                    "UPDATE sessions SET state = 'running', node = ?, updated_at = ? WHERE id = ?",
                    [.text(node.name), .integer(now), .text(id)])
            } else {
                _ = try await query("UPDATE sessions SET updated_at = ? WHERE id = ?", [.integer(now), .text(id)])
            }
            return (try await summary(id)!, node)
        }
    }

    public func addEvents(_ id: String, _ events: [AgentEvent], caller: SessionCaller = .admin("server")) async throws
        -> EventsAccepted
    {
        try await transaction {
            guard let session = try await summary(id) else { throw Self.unknownSession(id) }
            try Self.authorize(caller, session, .events)
            guard !session.state.isFinished else {
                throw APIError(.conflict, "session-finished", "session \(id) is \(session.state.rawValue)")
            }
            guard session.eventCount + events.count <= Self.maxEventsPerSession else {
                throw APIError(
                    .contentTooLarge, "too-many-events",
                    "session \(id) would exceed \(Self.maxEventsPerSession) events")
            }
            let now = Clock.nowMillis()
            var seq = session.eventCount
            for event in events {
                seq += 1
                _ = try await query(
                    "INSERT INTO events (session, seq, time, event) VALUES (?, ?, ?, ?)",
                    [.text(id), .integer(seq), .integer(now), .text(StoredJSON.encode(event))])
            }
            if let last = events.last {
                _ = try await query(
                    "UPDATE sessions SET event_count = ?, updated_at = ?, last_phase = ?, last_message = ? WHERE id = ?",
                    [.integer(seq), .integer(now), .text(last.phase), .text(last.message), .text(id)])
            }
            return EventsAccepted(accepted: events.count, lastSeq: seq)
        }
    }

    public func finishSession(_ id: String, _ finish: SessionFinish, caller: SessionCaller = .admin("server"))
        async throws -> SessionSummary
    {
        try await transaction {
            guard let session = try await summary(id) else { throw Self.unknownSession(id) }
            try Self.authorize(caller, session, .finish(succeeded: finish.succeeded))
            guard !session.state.isFinished else {
                throw APIError(.conflict, "session-finished", "session \(id) is already \(session.state.rawValue)")
            }
            let state: SessionState = finish.succeeded ? .succeeded : .failed
            _ = try await query(
                "UPDATE sessions SET state = ?, updated_at = ?, last_message = COALESCE(?, last_message) WHERE id = ?",
                [
                    .text(state.rawValue), .integer(Clock.nowMillis()), finish.message.map { .text($0) } ?? .null,
                    .text(id),
                ])
            return try await summary(id)!
        }
    }

    public func sessions(node: String?, limit: Int) async throws -> [SessionSummary] {
        let rows = try await read {
            if let node {
                return try await query(
                    "SELECT * FROM sessions WHERE node = ? ORDER BY opened_at DESC, rowid DESC LIMIT ?",
                    [.text(node), .integer(limit)])
            }
            return try await query(
                "SELECT * FROM sessions ORDER BY opened_at DESC, rowid DESC LIMIT ?", [.integer(limit)])
        }
        return try rows.map(Self.sessionSummary)
    }

    /// A session with its facts and the events after `afterSeq` (at most `limit`).
    public func session(_ id: String, afterSeq: Int, limit: Int) async throws -> SessionDetail {
        try await read {
            guard let row = try await query("SELECT * FROM sessions WHERE id = ?", [.text(id)]).first else {
                throw Self.unknownSession(id)
            }
            let events = try await query(
                "SELECT * FROM events WHERE session = ? AND seq > ? ORDER BY seq LIMIT ?",
                [.text(id), .integer(afterSeq), .integer(limit)])
            return SessionDetail(
                session: try Self.sessionSummary(row),
                facts: try StoredJSON.decode(HardwareFacts.self, row.column("facts")?.string),
                events: try events.map { e in
                    StoredEvent(
                        seq: e.column("seq")?.integer ?? 0, time: Clock.iso(e.column("time")?.integer ?? 0),
                        event: try StoredJSON.decode(AgentEvent.self, e.column("event")?.string))
                })
        }
    }

    /// Machines waiting for an assignment, newest first.
    public func pending() async throws -> [PendingMachine] {
        let rows = try await read {
            try await query(
                "SELECT * FROM sessions WHERE state = 'waiting' AND node IS NULL ORDER BY updated_at DESC, rowid DESC")
        }
        return try rows.map { row in
            PendingMachine(
                sessionID: row.column("id")?.string ?? "",
                macs: try StoredJSON.decode([String].self, row.column("macs")?.string),
                facts: try StoredJSON.decode(HardwareFacts.self, row.column("facts")?.string),
                firstSeen: Clock.iso(row.column("opened_at")?.integer ?? 0),
                lastSeen: Clock.iso(row.column("updated_at")?.integer ?? 0),
                remoteAddress: row.column("remote")?.string)
        }
    }

    /// Binds a machine (a MAC, or a waiting session's id) to a node: the machine's MACs are added
    /// to the node, so the waiting agent finds its node at its next poll.
    public func assign(machine: String, to nodeName: String, by actor: Actor) async throws -> NodeRecord {
        try await transaction {
            guard let old = try await nodeRow(nodeName) else {
                throw APIError.notFound("unknown-node", "no node named \(nodeName)")
            }
            var macs: [String]
            var sessionID: String?
            if let mac = MACAddress.normalize(machine) {
                macs = [mac]
                if let session = try await sessionsSharing(macs: [mac], states: [.waiting]).first {
                    sessionID = session
                    macs = try await summary(session)?.macs ?? macs
                }
            } else if let session = try await summary(machine) {
                guard session.state == .waiting else {
                    throw APIError.conflict("session \(machine) is \(session.state.rawValue), not waiting")
                }
                sessionID = machine
                macs = session.macs
            } else {
                throw APIError.notFound(
                    "unknown-machine", "\(machine) is neither a MAC address nor a waiting session's id")
            }
            var config = old.definition
            for mac in macs where !config.macs.contains(mac) { config.macs.append(mac) }
            if config != old.definition {
                try await writeNode(config, created: false)
            }
            if let sessionID {
                _ = try await query("UPDATE sessions SET node = ? WHERE id = ?", [.text(nodeName), .text(sessionID)])
            }
            try await audit(
                actor, "node.assign", "node/\(nodeName)", before: StoredJSON.encode(old.definition),
                after: StoredJSON.encode(config))
            return try await nodeRow(nodeName)!
        }
    }

    /// The waiting machines, in the order they first appeared, bound to `nodes` in order: one
    /// transaction, one audit entry (`nodes.assign`, subject `nodes/EXPRESSION`) listing each pair.
    /// Refused when fewer machines wait than nodes are named, or a named node does not exist.
    public func assignMany(to nodes: [String], by actor: Actor) async throws -> [Assignment] {
        guard !nodes.isEmpty else { throw APIError.badRequest("no node named") }
        return try await transaction {
            let waiting = try await query(
                "SELECT id, macs FROM sessions WHERE state = 'waiting' AND node IS NULL ORDER BY opened_at ASC, rowid ASC")
            guard waiting.count >= nodes.count else {
                throw APIError.conflict(
                    "\(nodes.count) nodes named but \(waiting.count) machines wait; nothing was assigned")
            }
            var assignments: [Assignment] = []
            for (row, nodeName) in zip(waiting, nodes) {
                guard let old = try await nodeRow(nodeName) else {
                    throw APIError.notFound("unknown-node", "no node named \(nodeName); nothing was assigned")
                }
                let sessionID = row.column("id")?.string ?? ""
                let macs = try StoredJSON.decode([String].self, row.column("macs")?.string)
                var config = old.definition
                for mac in macs where !config.macs.contains(mac) { config.macs.append(mac) }
                if config != old.definition { try await writeNode(config, created: false) }
                _ = try await query("UPDATE sessions SET node = ? WHERE id = ?", [.text(nodeName), .text(sessionID)])
                assignments.append(Assignment(sessionID: sessionID, macs: macs, node: nodeName))
            }
            try await audit(
                actor, "nodes.assign", "nodes/" + Hostlist.compress(nodes), before: nil,
                after: StoredJSON.encode(assignments))
            return assignments
        }
    }

    // MARK: Helpers

    /// Room for one more pending machine, or a 429 naming the cap.
    func admitPending(now: Int, limits: RegistrationLimits) async throws {
        _ = try await query(
            "UPDATE sessions SET state = 'abandoned', updated_at = ? WHERE state = 'waiting' AND node IS NULL AND updated_at < ?",
            [.integer(now), .integer(now - limits.pendingExpirySeconds * 1000)])
        let count =
            try await query("SELECT COUNT(*) AS n FROM sessions WHERE state = 'waiting' AND node IS NULL").first?
            .column("n")?.integer ?? 0
        guard count < limits.maxPending else {
            logger.warning(
                "refusing a new pending machine: \(count) machines already wait for an assignment (maxPending \(limits.maxPending))"
            )
            throw APIError(
                .tooManyRequests, "too-many-pending",
                "\(count) machines already wait for an assignment, the server's limit (maxPending \(limits.maxPending)); assign or wait for them to expire",
                retryAfter: 60)
        }
    }

    func summary(_ id: String) async throws -> SessionSummary? {
        try await query("SELECT * FROM sessions WHERE id = ?", [.text(id)]).first.map(Self.sessionSummary)
    }

    /// Ids of sessions in `states` that share a MAC with `macs`, newest first.
    func sessionsSharing(macs: [String], states: [SessionState]) async throws -> [String] {
        guard !macs.isEmpty else { return [] }
        let macMarks = Array(repeating: "?", count: macs.count).joined(separator: ",")
        let stateMarks = Array(repeating: "?", count: states.count).joined(separator: ",")
        let rows = try await query(
            """
            SELECT DISTINCT sessions.id, sessions.updated_at FROM session_macs JOIN sessions ON sessions.id = session_macs.session
            WHERE session_macs.mac IN (\(macMarks)) AND sessions.state IN (\(stateMarks))
            ORDER BY sessions.updated_at DESC
            """, macs.map { .text($0) } + states.map { .text($0.rawValue) })
        return rows.compactMap { $0.column("id")?.string }
    }

    static func sessionSummary(_ row: SQLiteRow) throws -> SessionSummary {
        SessionSummary(
            id: row.column("id")?.string ?? "", node: row.column("node")?.string,
            macs: try StoredJSON.decode([String].self, row.column("macs")?.string),
            state: SessionState(rawValue: row.column("state")?.string ?? "") ?? .failed,
            openedAt: Clock.iso(row.column("opened_at")?.integer ?? 0),
            updatedAt: Clock.iso(row.column("updated_at")?.integer ?? 0),
            remoteAddress: row.column("remote")?.string, lastPhase: row.column("last_phase")?.string,
            lastMessage: row.column("last_message")?.string, eventCount: row.column("event_count")?.integer ?? 0,
            verified: (row.column("verified")?.integer ?? 0) != 0)
    }

    /// The session's enrollment challenge (nil once used, or for a verified session).
    public func challenge(of id: String) async throws -> String? {
        try await read {
            try await query("SELECT challenge FROM sessions WHERE id = ?", [.text(id)]).first?.column("challenge")?.string
        }
    }

    /// 128 random bits, hex.
    static func newChallenge() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// `SessionAccess`'s refusal as the error the route answers.
    static func authorize(_ caller: SessionCaller, _ session: SessionSummary, _ use: SessionUse) throws {
        if let (_, error) = SessionAccess.refusal(caller: caller, session: session, use: use) { throw error }
    }

    static func normalize(_ macs: [String]) throws -> [String] {
        var out: [String] = []
        for mac in macs {
            guard let n = MACAddress.normalize(mac) else {
                throw APIError.badRequest("\"\(mac)\" is not a MAC address")
            }
            if !out.contains(n) { out.append(n) }
        }
        guard !out.isEmpty else { throw APIError.badRequest("a session needs at least one MAC address") }
        guard out.count <= 64 else { throw APIError.badRequest("more than 64 MAC addresses") }
        return out
    }

    static func unknownSession(_ id: String) -> APIError {
        APIError.notFound("unknown-session", "no session \(id)")
    }
}
