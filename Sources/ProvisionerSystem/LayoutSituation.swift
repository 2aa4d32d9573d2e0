import ProvisionerCore

/// The layout pipeline: read the disks, match the layout to them, observe what is on them, plan.
/// Shared by `plan`, `apply`, the boot and its fallback; only observing touches the machine, and
/// `takeDown()` undoes what it brought up.
public struct LayoutSituation: Sendable {
    public var layout: DiskLayout
    public var assignment: DiskAssignment
    public var observed: ObservedStorage
    public var plan: LayoutPlan

    /// Matches a parsed layout to this machine's disks (`inventory`, or read now), looks at them
    /// and plans. Throws `MatchError` when the layout does not map, `SystemError` when the disks
    /// cannot be read. `readOnly`: arrays brought up to look inside are assembled read-only (for a
    /// plan that is taken down again, not applied).
    public static func inspect(
        _ layout: DiskLayout, inventory: Inventory? = nil, readOnly: Bool = false, log: @escaping (String) -> Void
    ) throws -> LayoutSituation {
        let inventory = try inventory ?? DiskInventoryReader().read()
        let assignment = try DiskMatcher.match(layout.disks, inventory: inventory)
        let written = layout.disks.filter { !$0.partitions.isEmpty }.compactMap { assignment.disks[$0.name] }
        let observed = try StorageObserver(log: log).observe(disks: written, readOnly: readOnly)
        let plan = LayoutPlanner.plan(layout: layout, assignment: assignment, observed: observed)
        return LayoutSituation(layout: layout, assignment: assignment, observed: observed, plan: plan)
    }

    /// Takes down what observing brought up (arrays, logical volumes), leaving the machine as it
    /// was: what `plan` does after planning.
    public func takeDown(log: @escaping (String) -> Void) throws(SystemError) {
        try StorageObserver(log: log).takeDown(observed)
    }

    public func report(undone: Bool = false) -> LayoutReport {
        LayoutReport(assignment: assignment, plan: plan, broughtUp: observed.broughtUp, undone: undone)
    }
}
