import ProvisionerAPI
import ProvisionerCore

// The node's identity in the boot (rows I1–I3 of docs/boot.md; docs/certificates.md): where its
// key lives, the enrollment step, and the events that follow it.

/// Where the node keeps its key (docs/certificates.md, "Where the key lives").
public enum KeyStore: Hashable, Sendable {
    /// A directory in the root, relative to it (stateful nodes: their own disk, root-only, a
    /// node-owned path the image sync never touches, not on the ESP).
    case rootDirectory(String)
    /// A TPM 2.0 NV index (stateless nodes with a TPM).
    case tpm(nvIndex: UInt32)
    /// Nowhere: a new key every boot (stateless nodes without a TPM; their policy decides).
    case none
}

/// The enrollment step.
public struct EnrollTask: Hashable, Sendable {
    public var node: String
    public var challenge: String
    public var keyStore: KeyStore
    /// The kept key was revoked: make a new one (kept once the server accepts it) (I2).
    public var newKey: Bool

    public init(node: String, challenge: String, keyStore: KeyStore, newKey: Bool = false) {
        self.node = node
        self.challenge = challenge
        self.keyStore = keyStore
        self.newKey = newKey
    }
}

extension BootStateMachine {
    /// The node enrolled: `response` is the session as its own certificate sees it, with the whole
    /// config (I3).
    public mutating func enrolled(_ response: SessionResponse) -> BootDecision {
        expect([.enrolling], "an enrolled node")
        guard response.status == .assigned, let node = response.node, response.enrollment == nil,
            node.name == run!.node.name
        else {
            return fail(
                BootFailure(.register, .transient, "after enrolling, the server did not give node \(run!.node.name)'s config"),
                [.I3])
        }
        // The layout was applied as the bootstrap view said; the whole config must agree.
        guard node.layout == run!.node.layout, node.mode == run!.node.mode else {
            return fail(
                BootFailure(.register, .transient, "node \(node.name)'s layout or mode changed while it enrolled"), [.I3])
        }
        run!.node = node
        run!.enrollment = nil
        run!.secrets = response.secrets ?? []
        run!.multicast = response.multicast ?? false
        if !response.mirrors.isEmpty { run!.mirrors = response.mirrors }
        run!.boot = response.boot ?? Self.namedBootFiles(node)
        run!.bootProblem = response.bootProblem
        return startSync(rules: [.I3])
    }

    /// The server wants the admin's approval for this key, or refuses it for good because it was
    /// revoked (I2): wait and ask again, in the same session; after a revoked key, with a new one.
    public mutating func enrollmentNeedsApproval(_ message: String, keyRevoked: Bool = false) -> BootDecision {
        expect([.enrolling], "an enrollment waiting for approval")
        if keyRevoked { run!.newKey = true }
        return BootDecision(.awaitApproval(afterSeconds: Self.approvalPollSeconds, message: message), [.I2])
    }

    /// After waiting for approval: enroll again.
    public mutating func approvalWaited() -> BootDecision {
        expect([.enrolling], "the end of a wait for approval")
        let offer = run!.enrollment!
        return BootDecision(
            .enroll(EnrollTask(node: offer.node, challenge: offer.challenge, keyStore: keyStore, newKey: run!.newKey)),
            [.I2])
    }

    /// I1: where the key lives.
    var keyStore: KeyStore {
        switch run!.node.mode {
        case .stateful: .rootDirectory(Self.identityDirectory)
        case .stateless: hasTPM ? .tpm(nvIndex: Self.tpmKeyIndex) : .none
        }
    }
}
