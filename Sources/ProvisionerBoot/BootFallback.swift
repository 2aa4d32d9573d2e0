import ProvisionerAPI
import ProvisionerCore

/// Rows U1-U7 of docs/boot.md: the server stayed away, and a stateful node boots what is on its
/// disks, unchanged, if the config its last provisioning boot saved on the ESP still matches them.
extension BootStateMachine {
    /// The fallback looked for the config the last provisioning boot saved on an ESP; nil when no
    /// ESP holds one.
    public mutating func savedNodeRead(_ node: NodeConfig?) -> BootDecision {
        expect([.fallingBack], "a saved node config")
        guard let node else {
            return fail(
                BootFailure(
                    .fallback, .notInstalled, "no ESP holds \(LocalBoot.nodeConfig): this machine was never installed"),
                [.U2])
        }
        savedNode = node
        guard node.mode == .stateful, let text = node.layout else {
            return fail(BootFailure(.fallback, .notInstalled, "node \(node.name) is not installed on disk"), [.U2])
        }
        do {
            let layout = try DiskLayout(parsing: text, source: "the layout saved for node \(node.name)")
            state = .planningInstalled
            return BootDecision(.planInstalled(layout), [.U1])
        } catch {
            return fail(BootFailure(.fallback, .configuration, "the saved layout: \(error)"), [.U3])
        }
    }

    /// The fallback planned the saved layout on the disks as they are.
    public mutating func installedPlanned(_ plan: LayoutPlan) -> BootDecision {
        expect([.planningInstalled], "the installed layout's plan")
        let node = savedNode!.name
        guard plan.isConverged else {
            let changes = plan.refusals.isEmpty ? "\(plan.actions.count) change(s) needed" : "the plan is refused"
            return fail(
                BootFailure(
                    .fallback, .notInstalled,
                    "the disks no longer match the layout node \(node) was installed with (\(changes)); "
                        + "not booting them without the server"),
                [.U5])
        }
        state = .activatingInstalled
        return BootDecision(.activateInstalled(plan.activation), [.U4])
    }
}
