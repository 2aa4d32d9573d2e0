import ProvisionerCore

/// The agent <-> server protocol's messages (routes: docs/server-api.md). Times are ISO 8601 UTC
/// strings set by the server; the agent never needs a clock.
public enum APIVersion {
    /// Prefix of every JSON route.
    public static let prefix = "/api/v1"
}

/// DMI (SMBIOS) facts from /sys/class/dmi/id; each may be missing on odd hardware.
public struct DMIFacts: Codable, Hashable, Sendable {
    public var serial: String?
    public var uuid: String?
    public var vendor: String?
    public var product: String?

    public init(serial: String? = nil, uuid: String? = nil, vendor: String? = nil, product: String? = nil) {
        self.serial = serial
        self.uuid = uuid
        self.vendor = vendor
        self.product = product
    }
}

/// One network interface as the agent saw it.
public struct NICFacts: Codable, Hashable, Sendable {
    public var name: String
    public var mac: String
    public var driver: String?
    public var speedMbps: Int?
    public var linkUp: Bool?
    /// Addresses with prefix length (`10.0.2.15/24`).
    public var addresses: [String]?

    public init(
        name: String, mac: String, driver: String? = nil, speedMbps: Int? = nil, linkUp: Bool? = nil,
        addresses: [String]? = nil
    ) {
        self.name = name
        self.mac = mac
        self.driver = driver
        self.speedMbps = speedMbps
        self.linkUp = linkUp
        self.addresses = addresses
    }
}

/// What the agent knows about its machine when it asks who it is.
public struct HardwareFacts: Codable, Hashable, Sendable {
    public var dmi: DMIFacts
    public var nics: [NICFacts]
    /// The disk inventory (`provisioner-agent disks --json`).
    public var inventory: Inventory?

    public init(dmi: DMIFacts = DMIFacts(), nics: [NICFacts] = [], inventory: Inventory? = nil) {
        self.dmi = dmi
        self.nics = nics
        self.inventory = inventory
    }
}

/// `POST /api/v1/sessions`: the agent opens a boot session.
public struct SessionOpenRequest: Codable, Hashable, Sendable {
    /// Every MAC of the machine; the server looks the node up by any of them.
    public var macs: [String]
    public var facts: HardwareFacts
    public var agentVersion: String?

    public init(macs: [String], facts: HardwareFacts = HardwareFacts(), agentVersion: String? = nil) {
        self.macs = macs
        self.facts = facts
        self.agentVersion = agentVersion
    }
}

public enum AssignmentStatus: String, Codable, Hashable, Sendable {
    /// `node` holds what to become.
    case assigned
    /// Nobody said yet what this machine is: poll again after `pollAfterSeconds`.
    case unassigned
}

/// The answer to opening or polling a session.
public struct SessionResponse: Codable, Hashable, Sendable {
    public var sessionID: String
    public var status: AssignmentStatus
    public var node: NodeConfig?
    /// When unassigned: seconds until the next `GET /api/v1/sessions/{id}` (default 30).
    public var pollAfterSeconds: Int?
    /// Base URLs (`https://host:port`) that serve the same files and image objects, for the agent's
    /// random pick with failover. Always includes the server itself.
    public var mirrors: [String]
    /// When assigned: the kernel and initrds the node boots (and installs on its ESP), with why.
    /// Nil from a server that predates it, or with `bootProblem` when the node cannot boot as told.
    public var boot: BootFiles?
    /// Why there is no `boot`: the node pins a kernel its image version does not carry.
    public var bootProblem: String?
    /// Set while the caller has not proved it is the node (it used the shared bootstrap
    /// certificate): `node` is then only `NodeConfig.bootstrapView`, and the agent enrolls.
    public var enrollment: EnrollmentOffer?
    /// The node's secrets (its own and its profiles'), only to the node's own certificate.
    public var secrets: [DeliveredSecret]?
    /// True when the server may send this node's image by multicast: the agent asks
    /// (`GET /api/v1/sessions/{id}/multicast`) before it syncs (docs/multicast.md).
    public var multicast: Bool?

    public init(
        sessionID: String, status: AssignmentStatus, node: NodeConfig? = nil, pollAfterSeconds: Int? = nil,
        mirrors: [String] = [], boot: BootFiles? = nil, bootProblem: String? = nil,
        enrollment: EnrollmentOffer? = nil, secrets: [DeliveredSecret]? = nil, multicast: Bool? = nil
    ) {
        self.multicast = multicast
        self.enrollment = enrollment
        self.secrets = secrets
        self.sessionID = sessionID
        self.status = status
        self.node = node
        self.pollAfterSeconds = pollAfterSeconds
        self.mirrors = mirrors
        self.boot = boot
        self.bootProblem = bootProblem
    }
}

public enum EventLevel: String, Codable, Hashable, Sendable, CaseIterable {
    case debug, info, warning, error
}

/// One step of a boot as the agent reports it, or one log line.
///
/// Phases the agent uses: `register`, `disks`, `image`, `plugins`, `bootloader`, `pivot`.
public struct AgentEvent: Codable, Hashable, Sendable {
    public var phase: String
    public var step: String?
    public var level: EventLevel
    public var message: String
    /// 0...1 when the step knows how far it is.
    public var progress: Double?
    /// The error chain when the step failed.
    public var error: String?
    /// How long the step took, when the event ends one (for `pivot`: seconds since power-on).
    public var seconds: Double?

    public init(
        phase: String, step: String? = nil, level: EventLevel = .info, message: String, progress: Double? = nil,
        error: String? = nil, seconds: Double? = nil
    ) {
        self.phase = phase
        self.step = step
        self.level = level
        self.message = message
        self.progress = progress
        self.error = error
        self.seconds = seconds
    }
}

/// `POST /api/v1/sessions/{id}/events`.
public struct EventBatch: Codable, Hashable, Sendable {
    public var events: [AgentEvent]
    public init(events: [AgentEvent]) { self.events = events }
}

/// An event as stored: numbered per session, stamped by the server.
public struct StoredEvent: Codable, Hashable, Sendable {
    public var seq: Int
    public var time: String
    public var event: AgentEvent

    public init(seq: Int, time: String, event: AgentEvent) {
        self.seq = seq
        self.time = time
        self.event = event
    }
}

public struct EventsAccepted: Codable, Hashable, Sendable {
    public var accepted: Int
    public var lastSeq: Int
    public init(accepted: Int, lastSeq: Int) {
        self.accepted = accepted
        self.lastSeq = lastSeq
    }
}

public enum SessionState: String, Codable, Hashable, Sendable, CaseIterable {
    /// Unassigned machine polling for an assignment.
    case waiting
    /// Assigned; the agent is working.
    case running
    case succeeded
    case failed
    /// A newer session of the same machine replaced it before it finished.
    case abandoned

    public var isFinished: Bool { self == .succeeded || self == .failed || self == .abandoned }
}

/// `POST /api/v1/sessions/{id}/finish`: the agent's last word before it pivots or gives up.
public struct SessionFinish: Codable, Hashable, Sendable {
    public var succeeded: Bool
    public var message: String?
    public init(succeeded: Bool, message: String? = nil) {
        self.succeeded = succeeded
        self.message = message
    }
}

// MARK: Admin API

/// One boot session as the admin sees it.
public struct SessionSummary: Codable, Hashable, Sendable {
    public var id: String
    public var node: String?
    public var macs: [String]
    public var state: SessionState
    public var openedAt: String
    public var updatedAt: String
    public var remoteAddress: String?
    public var lastPhase: String?
    public var lastMessage: String?
    public var eventCount: Int
    /// The node proved its identity in this session (its own certificate); false: only the
    /// shared bootstrap certificate opened it, so what it reported is unverified.
    public var verified: Bool

    public init(
        id: String, node: String?, macs: [String], state: SessionState, openedAt: String, updatedAt: String,
        remoteAddress: String?, lastPhase: String?, lastMessage: String?, eventCount: Int, verified: Bool = false
    ) {
        self.verified = verified
        self.id = id
        self.node = node
        self.macs = macs
        self.state = state
        self.openedAt = openedAt
        self.updatedAt = updatedAt
        self.remoteAddress = remoteAddress
        self.lastPhase = lastPhase
        self.lastMessage = lastMessage
        self.eventCount = eventCount
    }
}

public struct SessionDetail: Codable, Hashable, Sendable {
    public var session: SessionSummary
    public var facts: HardwareFacts
    public var events: [StoredEvent]
    public init(session: SessionSummary, facts: HardwareFacts, events: [StoredEvent]) {
        self.session = session
        self.facts = facts
        self.events = events
    }
}

/// A machine that opened a session but matches no node (`provisionerctl nodes pending`).
public struct PendingMachine: Codable, Hashable, Sendable {
    public var sessionID: String
    public var macs: [String]
    public var facts: HardwareFacts
    public var firstSeen: String
    public var lastSeen: String
    public var remoteAddress: String?

    public init(
        sessionID: String, macs: [String], facts: HardwareFacts, firstSeen: String, lastSeen: String,
        remoteAddress: String?
    ) {
        self.sessionID = sessionID
        self.macs = macs
        self.facts = facts
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.remoteAddress = remoteAddress
    }
}

/// `POST /api/v1/admin/pending/assign`: bind a waiting machine (by MAC or session id) to a node.
public struct AssignRequest: Codable, Hashable, Sendable {
    /// A MAC address or a session id.
    public var machine: String
    public var node: String
    public init(machine: String, node: String) {
        self.machine = machine
        self.node = node
    }
}

/// A node as stored, with its bookkeeping: `config` is the effective config (profiles merged),
/// `definition` what the admin wrote, `sources` where each effective field came from.
public struct NodeRecord: Codable, Hashable, Sendable {
    public var config: NodeConfig
    public var definition: NodeDefinition
    public var sources: [FieldSource]
    public var createdAt: String
    public var updatedAt: String
    public init(
        config: NodeConfig, definition: NodeDefinition? = nil, sources: [FieldSource] = [], createdAt: String,
        updatedAt: String
    ) {
        self.config = config
        self.definition = definition ?? NodeDefinition(config)
        self.sources = sources
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// A profile as stored, with the nodes and profiles that list it.
public struct ProfileRecord: Codable, Hashable, Sendable {
    public var profile: Profile
    public var usedBy: [String]
    public var createdAt: String
    public var updatedAt: String
    public init(profile: Profile, usedBy: [String], createdAt: String, updatedAt: String) {
        self.profile = profile
        self.usedBy = usedBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// `POST /api/v1/admin/nodes/bulk`: many nodes created, replaced or deleted in one transaction
/// with one audit entry that lists them.
public struct BulkNodesRequest: Codable, Hashable, Sendable {
    public enum Operation: String, Codable, Hashable, Sendable { case create, update, delete }
    public var operation: Operation
    /// For create and update: the whole definitions.
    public var nodes: [NodeDefinition]
    /// For delete: the names.
    public var names: [String]
    public init(operation: Operation, nodes: [NodeDefinition] = [], names: [String] = []) {
        self.operation = operation
        self.nodes = nodes
        self.names = names
    }
}

/// `POST /api/v1/admin/pending/assign-many`: the waiting machines, in the order they first
/// appeared, to these nodes in order.
public struct AssignManyRequest: Codable, Hashable, Sendable {
    public var nodes: [String]
    public init(nodes: [String]) { self.nodes = nodes }
}

/// What `assign-many` did: machine (session id) → node, in order.
public struct Assignment: Codable, Hashable, Sendable {
    public var sessionID: String
    public var macs: [String]
    public var node: String
    public init(sessionID: String, macs: [String], node: String) {
        self.sessionID = sessionID
        self.macs = macs
        self.node = node
    }
}

/// The result of importing a cluster file.
public struct ImportResult: Codable, Hashable, Sendable {
    public var created: [String]
    public var updated: [String]
    public var unchanged: [String]
    public var deleted: [String]
    public init(created: [String], updated: [String], unchanged: [String], deleted: [String]) {
        self.created = created
        self.updated = updated
        self.unchanged = unchanged
        self.deleted = deleted
    }
}

/// `POST /api/v1/admin/nodes/import`.
public struct ImportRequest: Codable, Hashable, Sendable {
    public var nodes: [NodeDefinition]
    /// Profiles created or replaced before the nodes (in the same transaction).
    public var profiles: [Profile]
    /// Delete nodes (and, with profiles given, profiles) that the file does not list.
    public var prune: Bool
    public init(nodes: [NodeDefinition], profiles: [Profile] = [], prune: Bool = false) {
        self.nodes = nodes
        self.profiles = profiles
        self.prune = prune
    }
    public init(nodes: [NodeConfig], prune: Bool = false) {
        self.init(nodes: nodes.map(NodeDefinition.init), prune: prune)
    }
    enum CodingKeys: String, CodingKey { case nodes, profiles, prune }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nodes = try c.decode([NodeDefinition].self, forKey: .nodes)
        profiles = try c.decodeIfPresent([Profile].self, forKey: .profiles) ?? []
        prune = try c.decodeIfPresent(Bool.self, forKey: .prune) ?? false
    }
}

/// One admin change: who, when, from where, what, before and after.
public struct AuditEntry: Codable, Hashable, Sendable {
    public var id: Int
    public var time: String
    /// The admin certificate's subject common name.
    public var actor: String
    public var remoteAddress: String?
    /// `node.create`, `node.update`, `node.delete`, `node.assign`, `session.delete`...
    public var action: String
    public var subject: String
    /// JSON of the object before and after the change (absent for create / delete).
    public var before: String?
    public var after: String?

    public init(
        id: Int, time: String, actor: String, remoteAddress: String?, action: String, subject: String,
        before: String?, after: String?
    ) {
        self.id = id
        self.time = time
        self.actor = actor
        self.remoteAddress = remoteAddress
        self.action = action
        self.subject = subject
        self.before = before
        self.after = after
    }
}

/// Every error response's body: `{"error": {"status": 404, "code": "unknown-session", "message": "..."}}`.
public struct ErrorBody: Codable, Hashable, Sendable, Error {
    public struct Detail: Codable, Hashable, Sendable {
        public var status: Int
        public var code: String
        public var message: String
        /// With 429 and 503: seconds after which the client may try again (also `Retry-After`).
        public var retryAfter: Int?
    }
    public var error: Detail

    public init(status: Int, code: String, message: String, retryAfter: Int? = nil) {
        self.error = Detail(status: status, code: code, message: message, retryAfter: retryAfter)
    }
}
