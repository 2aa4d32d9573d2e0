/// A layout plan as the admin reads it: which disk is which, each change with the row of the
/// decision table that made it, refusals, and what is brought up afterwards. `provisioner-agent
/// plan` prints it; the boot sends it to the session line by line.
public struct LayoutReport: Sendable {
    public var assignment: DiskAssignment
    public var plan: LayoutPlan
    /// What observing brought up to look inside, and whether it was taken down again.
    public var broughtUp: [BroughtUp]
    public var undone: Bool

    public init(assignment: DiskAssignment, plan: LayoutPlan, broughtUp: [BroughtUp] = [], undone: Bool = false) {
        self.assignment = assignment
        self.plan = plan
        self.broughtUp = broughtUp
        self.undone = undone
    }

    public var text: String {
        var lines: [String] = []
        for name in assignment.names {
            let d = assignment.disks[name]!
            lines.append("\(name) = \(d.path) (\(ByteSize(bytes: d.sizeBytes)), serial \(d.serial ?? "none"))")
        }
        if plan.actions.isEmpty {
            lines.append("No changes: the disks match the layout.")
        } else {
            let destructive = plan.actions.filter { !$0.destroys.isEmpty }.count
            lines.append(
                "\(plan.actions.count) change\(plan.actions.count == 1 ? "" : "s")"
                    + (destructive > 0 ? ", \(destructive) destroying data:" : ":"))
            for (i, action) in plan.actions.enumerated() {
                lines.append("  \(i + 1). \(action.summary)")
                lines.append("     why: \(action.reason)")
                for what in action.destroys { lines.append("     DESTROYS \(what)") }
            }
        }
        for note in plan.notes { lines.append("note: \(note)") }
        if !broughtUp.isEmpty {
            lines.append(
                "note: to look inside, observing brought up: " + broughtUp.map(\.description).joined(separator: "; ")
                    + (undone ? "; all taken down again" : ""))
        }
        if !plan.refusals.isEmpty {
            lines.append("REFUSED, nothing will be written:")
            for refusal in plan.refusals { lines.append("  - \(refusal)") }
        }
        let a = plan.activation
        var then: [String] = []
        then += a.arrays.map { "assemble \($0.name)" }
        then += a.volumeGroups.map { "activate \($0.name)" }
        then += a.mounts.map { "mount \($0.device) on \($0.mountPoint)" + ($0.grow ? " and grow it" : "") }
        if !then.isEmpty { lines.append("then: " + then.joined(separator: "; ")) }
        return lines.joined(separator: "\n")
    }

    /// `provisioner-agent plan --json`.
    public struct JSON: Encodable, Sendable {
        public struct Action: Encodable, Sendable {
            var summary: String
            var device: String
            var reason: String
            var destroys: [String]
        }
        public struct Mount: Encodable, Sendable {
            var device: String
            var mountPoint: String
            var type: String
            var options: [String]
        }
        var disks: [String: String]
        var converged: Bool
        var actions: [Action]
        var refusals: [String]
        var notes: [String]
        var mounts: [Mount]
        var swaps: [String]
        var broughtUp: [String]
        var undone: Bool
    }

    public var json: JSON {
        JSON(
            disks: assignment.paths, converged: plan.isConverged,
            actions: plan.actions.map {
                .init(summary: $0.summary, device: $0.device, reason: $0.reason, destroys: $0.destroys)
            },
            refusals: plan.refusals, notes: plan.notes,
            mounts: plan.activation.mounts.map {
                .init(device: $0.device, mountPoint: $0.mountPoint, type: $0.type.rawValue, options: $0.options)
            },
            swaps: plan.activation.swaps, broughtUp: broughtUp.map(\.description), undone: undone)
    }
}

/// A plan with refusals: nothing was written (exit status 4).
public struct LayoutRefused: Error, Hashable, Sendable, CustomStringConvertible {
    public var refusals: [String]

    public init(refusals: [String]) { self.refusals = refusals }

    public var description: String {
        "the layout is refused; nothing was written:\n  " + refusals.joined(separator: "\n  ")
    }
}
