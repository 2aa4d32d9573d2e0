import Foundation
import ProvisionerCore
import ProvisionerAPI
import ProvisionerPKI

/// Who is calling a session route, from the certificate's role and name.
public enum SessionCaller: Hashable, Sendable, CustomStringConvertible {
    case admin(String)
    /// A node's own certificate: CN is the node's name.
    case node(String)
    /// The shared certificate of every initramfs.
    case bootstrap

    init?(_ peer: PeerIdentity?) {
        switch peer?.role {
        case .admin?: self = .admin(peer!.name)
        case .node?: self = .node(peer!.name)
        case .bootstrap?: self = .bootstrap
        default: return nil
        }
    }

    /// An admin, or the node itself: what it says about a session is verified.
    var provesNode: Bool { self != .bootstrap }

    public var description: String {
        switch self {
        case .admin(let name): "admin \(name)"
        case .node(let name): "node certificate \(name)"
        case .bootstrap: "the shared bootstrap certificate"
        }
    }
}

/// What a caller does with a session.
public enum SessionUse: Hashable, Sendable {
    case poll, events, enroll
    case finish(succeeded: Bool)
}

/// Who may use which session (rows A1–A5 of docs/certificates.md, "Authorization"). Pure: the
/// store calls it inside the transaction that reads the session.
public enum SessionAccess {
    public enum Rule: String, Sendable { case A1, A2, A3, A4, A5 }

    /// nil: allowed. Otherwise the refusal and the row that made it.
    public static func refusal(caller: SessionCaller, session: SessionSummary, use: SessionUse) -> (Rule, APIError)? {
        switch caller {
        case .admin:
            return nil  // A1
        case .node(let name):
            guard session.node == name else {  // A2
                return (
                    .A2,
                    APIError.forbidden(
                        "the certificate of node \(name) may not use session \(session.id)"
                            + (session.node.map { " (it belongs to node \($0))" } ?? " (it belongs to no node)"),
                        code: "not-your-session")
                )
            }
            return nil
        case .bootstrap:
            if session.verified {  // A3
                return (
                    .A3,
                    APIError.forbidden(
                        "session \(session.id) was verified by node \(session.node ?? "?")'s own certificate; "
                            + "the shared bootstrap certificate may no longer use it",
                        code: "session-verified")
                )
            }
            if case .finish(succeeded: true) = use {  // A4
                return (
                    .A4,
                    APIError.forbidden(
                        "only the node's own certificate may report a successful boot; this session was never verified",
                        code: "unverified-success")
                )
            }
            return nil  // A5: its own unverified session (the id is known only to who opened it)
        }
    }
}

/// What the server knows when a node asks for a certificate.
public struct EnrollmentFacts: Hashable, Sendable {
    /// The session's node (nil: unassigned).
    public var sessionNode: String?
    public var sessionFinished: Bool
    public var sessionVerified: Bool
    /// The challenge the session offered (nil once used).
    public var challenge: String?
    public var caller: SessionCaller
    /// The node's identity record.
    public var identity: NodeIdentityInfo.State
    public var enrolledKey: String?
    public var revokedKeys: Set<String>
    public var approvedBy: String?
    public var policy: EnrollmentPolicy
    /// Whether the server holds the CA key.
    public var canSign: Bool
    /// From the request.
    public var requestName: String
    public var requestChallenge: String?
    public var requestKey: String

    public init(
        sessionNode: String?, sessionFinished: Bool = false, sessionVerified: Bool = false, challenge: String?,
        caller: SessionCaller = .bootstrap, identity: NodeIdentityInfo.State = .none, enrolledKey: String? = nil,
        revokedKeys: Set<String> = [], approvedBy: String? = nil, policy: EnrollmentPolicy = .approve,
        canSign: Bool = true, requestName: String, requestChallenge: String?, requestKey: String
    ) {
        self.sessionNode = sessionNode
        self.sessionFinished = sessionFinished
        self.sessionVerified = sessionVerified
        self.challenge = challenge
        self.caller = caller
        self.identity = identity
        self.enrolledKey = enrolledKey
        self.revokedKeys = revokedKeys
        self.approvedBy = approvedBy
        self.policy = policy
        self.canSign = canSign
        self.requestName = requestName
        self.requestChallenge = requestChallenge
        self.requestKey = requestKey
    }
}

/// The enrollment decision table (docs/certificates.md, "Enrollment"): C rows check the request,
/// I rows decide on the key. Pure, tested row by row.
public enum EnrollmentRules {
    public enum Rule: String, Sendable, CaseIterable {
        case C1, C2, C3, C4, C5, C6, C7
        case I1, I2, I3, I4, I5, I6
    }

    public enum Verdict: Hashable, Sendable {
        case issue(EnrollmentKind, Rule)
        case refuse(Rule, status: Int, code: String, message: String)

        public var rule: Rule {
            switch self {
            case .issue(_, let rule), .refuse(let rule, _, _, _): rule
            }
        }
    }

    public static func decide(_ f: EnrollmentFacts) -> Verdict {
        guard f.canSign else {
            return .refuse(
                .C1, status: 503, code: "enrollment-unavailable",
                message: "this server has no CA key to issue node certificates (tls.caKey, docs/certificates.md)")
        }
        guard let node = f.sessionNode, !f.sessionFinished else {
            return .refuse(
                .C2, status: 409, code: "not-assigned",
                message: f.sessionFinished ? "the session is finished" : "the session's machine is not assigned to a node")
        }
        if case .node(let name) = f.caller, name != node {
            return .refuse(
                .C3, status: 403, code: "not-your-session",
                message: "the certificate of node \(name) may not enroll for node \(node)")
        }
        guard !f.sessionVerified, let challenge = f.challenge else {
            return .refuse(
                .C4, status: 409, code: "already-enrolled",
                message: "this session already enrolled; a replayed enrollment is refused (open a new session)")
        }
        guard f.requestName == node else {
            return .refuse(
                .C5, status: 403, code: "csr-name-mismatch",
                message: "the certificate request names \"\(f.requestName.terminalSafe)\", but this session is node \(node)")
        }
        guard f.requestChallenge == challenge else {
            return .refuse(
                .C6, status: 403, code: "challenge-mismatch",
                message: f.requestChallenge == nil
                    ? "the certificate request carries no challengePassword (the session's enrollment challenge)"
                    : "the certificate request's challenge is not this session's (a request made for another session)")
        }
        // A revoked key is never accepted again, approved or not: whoever holds it may not be the node.
        if f.revokedKeys.contains(f.requestKey) {
            return .refuse(
                .C7, status: 403, code: "key-revoked",
                message: "the key \(f.requestKey) of node \(node) was revoked and is never accepted again; the node makes "
                    + "a new key, which needs provisionerctl nodes approve \(node) (or the node's enrollment policy auto)")
        }
        switch f.identity {
        case .none:
            return .issue(.first, .I1)
        case .active where f.enrolledKey == f.requestKey:
            return .issue(.renewed, .I2)
        case .active, .revoked:
            if f.approvedBy != nil { return .issue(.approved, .I3) }
            if f.policy == .auto { return .issue(.reenrolled, .I4) }
            if f.identity == .revoked {
                return .refuse(
                    .I6, status: 403, code: "enrollment-needs-approval",
                    message: "node \(node)'s identity was revoked; a new key needs provisionerctl nodes approve \(node)")
            }
            return .refuse(
                .I5, status: 403, code: "enrollment-needs-approval",
                message: "node \(node) enrolled with another key (\(f.enrolledKey ?? "?")); this key (\(f.requestKey)) "
                    + "needs provisionerctl nodes approve \(node), or the node's enrollment policy auto")
        }
    }
}

/// The certificates the server refuses (revoked) and the ones it has seen, cached from the
/// database so a request costs a set lookup. Revocation takes effect at the next request.
public actor CertificateRegistry {
    private var revoked: Set<String> = []
    private var seen: Set<String> = []
    private var loaded = false
    private var refusalsAudited: Set<String> = []

    public init() {}

    func load(_ store: Store) async throws {
        guard !loaded else { return }
        revoked = try await store.revokedSerials()
        seen = try await store.knownSerials()
        loaded = true
    }

    /// Whether `peer`'s certificate is revoked; records a certificate seen for the first time.
    func check(_ peer: PeerIdentity, store: Store) async throws -> Bool {
        try await load(store)
        guard !peer.serial.isEmpty else { return false }
        if revoked.contains(peer.serial) { return true }
        if seen.insert(peer.serial).inserted {
            // Out of the request's path: a rack of new certificates at once must not queue
            // behind a thousand inserts; a lost one is recorded again after a restart.
            Task { try? await store.recordSeen(peer) }
        }
        return false
    }

    /// True the first time a revoked serial is refused in this process (its audit entry).
    func firstRefusal(_ serial: String) -> Bool { refusalsAudited.insert(serial).inserted }

    func revoke(_ serials: [String]) {
        revoked.formUnion(serials)
    }

    func issued(_ serial: String) {
        seen.insert(serial)
    }
}
