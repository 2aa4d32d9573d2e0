import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import Testing

/// Rows M1–M5 of docs/boot.md: a node whose server multicasts asks before it syncs.
@Suite struct BootMulticastTests {
    typealias T = BootStateMachineTests

    static let offer = MulticastOffer(
        session: "mc-1", image: "debian", version: String(repeating: "ab", count: 32), portBase: 9000,
        network: "10.0.2.0/24", startTimeoutSeconds: 60, receiveTimeoutSeconds: 15, streamBytes: 1000, objects: 3)

    /// Assigned with the multicast hint, disks up: the decision before the sync.
    static func asking(_ multicast: Bool = true) -> (BootStateMachine, BootDecision) {
        var machine = BootStateMachine(settings: T.settings())
        _ = machine.start()
        var answer = T.assigned(T.node())
        answer.multicast = multicast
        _ = machine.serverAnswered(answer)
        _ = machine.disksPlanned(LayoutPlan(activation: T.activation))
        let decision = machine.stepSucceeded(.disksReady(changes: 0, activation: T.activation))
        return (machine, decision)
    }

    static func sync(_ d: BootDecision) -> SyncTask? {
        if case .runSync(let task) = d.action { return task }
        return nil
    }

    @Test func M1_aNodeTheServerMayMulticastToAsksFirst() {
        let (_, d) = Self.asking()
        #expect(d.rules == [.N8, .M1])
        #expect(d.action == .askMulticast(MulticastQuery(image: "debian", version: "latest")))
    }

    @Test func withoutTheHintTheSyncStartsAtOnce() {
        let (_, d) = Self.asking(false)
        #expect(d.rules == [.N8])
        #expect(Self.sync(d) != nil)
    }

    @Test func M2_anOfferIsReceivedIntoTheStateDirectory() {
        var (machine, _) = Self.asking()
        let d = machine.multicastAnswered(MulticastAnswer(offer: Self.offer, reason: "rule MC1"))
        #expect(d.rules == [.M2])
        #expect(d.action == .receiveMulticast(MulticastTask(offer: Self.offer, directory: "/sysroot/.provisioner-state/received")))
    }

    @Test func M4_anOfferOfAnotherImageIsRefused() {
        var (machine, _) = Self.asking()
        var other = Self.offer
        other.image = "rocky"
        let d = machine.multicastAnswered(MulticastAnswer(offer: other, reason: "?"))
        #expect(d.rules == [.M4])
        #expect(Self.sync(d)?.received == nil)
        #expect(d.warnings.count == 1)
    }

    @Test func M3_waitsThenAsksAgainBoundedInAll() {
        var (machine, _) = Self.asking()
        let wait = machine.multicastAnswered(MulticastAnswer(retryAfterSeconds: 500, reason: "1 of 8 nodes wait"))
        #expect(wait.rules == [.M3])
        #expect(wait.action == .waitForMulticast(afterSeconds: 30, reason: "1 of 8 nodes wait"))  // at most 30 s a time
        let again = machine.multicastWaitEnded()
        #expect(again.rules == [.M3, .M1])
        // A server that says "wait" for ever: the node stops waiting after the longest total wait.
        var last = again
        var waits = 1
        while case .askMulticast = last.action, waits < 100 {
            last = machine.multicastAnswered(MulticastAnswer(retryAfterSeconds: 30, reason: "still waiting"))
            if case .waitForMulticast = last.action { last = machine.multicastWaitEnded() }
            waits += 1
        }
        #expect(last.rules == [.M3, .M4])
        #expect(Self.sync(last) != nil)
        #expect(waits == BootStateMachine.longestMulticastWaitSeconds / 30 + 1)  // 20 waits of 30 s, then the answer that ends them
    }

    @Test func M4_noOfferOrNoAnswerSyncsOverHTTPS() {
        var (machine, _) = Self.asking()
        let d = machine.multicastAnswered(MulticastAnswer(reason: "no session includes n1"))
        #expect(d.rules == [.M4])
        #expect(d.notes == ["no multicast: no session includes n1"])
        #expect(Self.sync(d)?.received == nil)

        var (other, _) = Self.asking()
        let failed = other.multicastUnavailable("connection refused")
        #expect(failed.rules == [.M4])
        #expect(failed.warnings.count == 1)
        #expect(Self.sync(failed) != nil)
    }

    @Test(arguments: [(3, nil as String?, true), (1, "udp-receiver exited with status 1", true), (0, "timed out", false)])
    func M5_whateverArrivedGoesToTheSync(objects: Int, problem: String?, used: Bool) {
        var (machine, _) = Self.asking()
        _ = machine.multicastAnswered(MulticastAnswer(offer: Self.offer, reason: "rule MC1"))
        let d = machine.multicastReceived(objects: objects, problem: problem)
        #expect(d.rules == [.M5])
        #expect(Self.sync(d)?.received == (used ? "/sysroot/.provisioner-state/received" : nil))
        #expect(d.warnings.count == (problem == nil ? 0 : 1))
        // The rest of the flow is unchanged.
        let plugins = machine.stepSucceeded(.imageSynced(image: "debian", version: "v", changedEntries: 1))
        #expect(plugins.rules == [.N10])
    }
}
