import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import Testing

/// Which phase an action's events and warnings go under (the console's and the session's).
@Suite struct BootActionTests {
    static let failure = BootFailure(.image, .transient, "mirror down")

    static let cases: [(BootAction, BootPhase)] = [
        (.register(attempt: 1, cleanRoot: false), .register),
        (.backOff(seconds: 2, fallbackInSeconds: nil), .register),
        (.poll(afterSeconds: 10, announce: true, mac: nil), .register),
        (.fallBack, .register),
        (.awaitApproval(afterSeconds: 30, message: "approve"), .register),
        (.runDisks(DiskTask(ramRootSize: nil, layout: nil)), .disks),
        (.applyDisks(LayoutPlan(activation: Activation())), .disks),
        (.waitForMulticast(afterSeconds: 5, reason: "busy"), .image),
        (.runPlugins([]), .plugins),
        (.activateInstalled(Activation()), .fallback),
        (.pivotInstalled(node: "n1", image: "debian"), .fallback),
        (.retry(failure, afterSeconds: 10, attempt: 2), .image),
        (.giveUp(failure, attempts: 3), .image),
    ]

    @Test(arguments: cases)
    func eachActionHasItsPhase(action: BootAction, phase: BootPhase) {
        #expect(action.phase == phase)
    }
}
