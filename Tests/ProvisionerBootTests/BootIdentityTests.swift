import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Rows I1–I3 of docs/boot.md: the node proves its identity after its disks are up.
@Suite struct BootIdentityTests {
    typealias T = BootStateMachineTests

    static let offer = EnrollmentOffer(node: "n1", challenge: "c0ffee", certificateHours: 168)

    /// Assigned through the bootstrap certificate: the disks view and an enrollment offer.
    static func bootstrapAnswer(_ node: NodeConfig) -> SessionResponse {
        SessionResponse(sessionID: "s1", status: .assigned, node: node.bootstrapView, enrollment: offer)
    }

    static func enrollingMachine(_ node: NodeConfig, hasTPM: Bool = false) -> (BootStateMachine, BootDecision) {
        var machine = BootStateMachine(settings: T.settings(), hasTPM: hasTPM)
        _ = machine.start()
        let disks = machine.serverAnswered(bootstrapAnswer(node))
        if case .runDisks = disks.action {} else { Issue.record("expected the disks first, got \(disks)") }
        if node.mode == .stateful { _ = machine.disksPlanned(LayoutPlan(activation: T.activation)) }
        let activation: Activation? = node.mode == .stateful ? T.activation : nil
        let enroll = machine.stepSucceeded(.disksReady(changes: 0, activation: activation))
        return (machine, enroll)
    }

    @Test(arguments: [
        (NodeMode.stateful, false, KeyStore.rootDirectory("var/lib/provisioner/identity")),
        (NodeMode.stateful, true, KeyStore.rootDirectory("var/lib/provisioner/identity")),
        (NodeMode.stateless, true, KeyStore.tpm(nvIndex: BootStateMachine.tpmKeyIndex)),
        (NodeMode.stateless, false, KeyStore.none),
    ])
    func I1_enrollAfterTheDisksWithTheKeyWhereTheModeSays(mode: NodeMode, tpm: Bool, store: KeyStore) {
        let node = T.node(mode: mode, layout: mode == .stateful ? T.layoutYAML : nil)
        let (_, d) = Self.enrollingMachine(node, hasTPM: tpm)
        #expect(d.rules == [.I1])
        #expect(d.action == .enroll(EnrollTask(node: "n1", challenge: "c0ffee", keyStore: store)))
    }

    @Test func I1_theIdentityDirectoryIsTheNodes() {
        #expect(BootStateMachine.nodeOwnedPaths.contains(BootStateMachine.identityDirectory))
    }

    @Test func I2_approvalNeededWaitsThenEnrollsAgainInTheSameSession() {
        var (machine, _) = Self.enrollingMachine(T.node())
        let wait = machine.enrollmentNeedsApproval("needs provisionerctl nodes approve n1")
        #expect(wait.rules == [.I2])
        #expect(wait.action == .awaitApproval(afterSeconds: BootStateMachine.approvalPollSeconds, message: "needs provisionerctl nodes approve n1"))
        let again = machine.approvalWaited()
        #expect(again.rules == [.I2])
        if case .enroll(let task) = again.action { #expect(task.challenge == "c0ffee") } else { Issue.record("\(again)") }
    }

    @Test func I2_aRevokedKeyIsReplacedByANewOne() {
        var (machine, _) = Self.enrollingMachine(T.node())
        _ = machine.enrollmentNeedsApproval("the key was revoked", keyRevoked: true)
        guard case .enroll(let task) = machine.approvalWaited().action else { Issue.record("expected an enrollment"); return }
        #expect(task.newKey)
        // Still waiting for the admin with the new key: it stays new until the server accepts one.
        _ = machine.enrollmentNeedsApproval("needs approval")
        guard case .enroll(let again) = machine.approvalWaited().action else { Issue.record("expected an enrollment"); return }
        #expect(again.newKey)
    }

    @Test func I3_theWholeConfigThenTheSyncWithTheSecretsPreserved() {
        let node = T.node()
        var (machine, _) = Self.enrollingMachine(node)
        let secret = DeliveredSecret(name: "munge.key", path: "/etc/munge/munge.key", mode: 0o400, uid: 0, gid: 0, data: Data("k".utf8))
        let full = SessionResponse(sessionID: "s1", status: .assigned, node: node, mirrors: ["https://a:1"], secrets: [secret])
        let d = machine.enrolled(full)
        #expect(d.rules == [.I3, .N8])
        guard case .runSync(let task) = d.action else { Issue.record("\(d)"); return }
        #expect(task.image == "debian")
        #expect(task.preserved.contains("etc/munge/munge.key"))
        #expect(task.mirrors == ["https://10.0.2.3:8443", "https://a:1"])  // the node's own mirror first
        #expect(machine.secrets == [secret])
    }

    @Test func I3_aConfigThatIsNotTheNodesOrChangedItsLayoutIsRetried() {
        var (machine, _) = Self.enrollingMachine(T.node())
        var other = T.node()
        other.layout = "mirror: []"
        let d = machine.enrolled(SessionResponse(sessionID: "s1", status: .assigned, node: other))
        #expect(d.rules.first == .I3)
        if case .retry = d.action {} else { Issue.record("expected a retry, got \(d)") }
        var (again, _) = Self.enrollingMachine(T.node())
        let stillOffered = again.enrolled(Self.bootstrapAnswer(T.node()))
        if case .retry = stillOffered.action {} else { Issue.record("expected a retry, got \(stillOffered)") }
    }

    @Test func aVerifiedSessionSkipsEnrollment() {
        var machine = BootStateMachine(settings: T.settings())
        _ = machine.start()
        _ = machine.serverAnswered(T.assigned(T.node()))
        _ = machine.disksPlanned(LayoutPlan(activation: T.activation))
        let d = machine.stepSucceeded(.disksReady(changes: 0, activation: T.activation))
        #expect(d.rules == [.N8])
    }
}
