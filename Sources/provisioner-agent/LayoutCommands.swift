import ArgumentParser
import ProvisionerCore
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The disks a layout is about, and what is on them: shared by plan and apply.
struct LayoutSituation {
    var layout: DiskLayout
    var assignment: DiskAssignment
    var observed: ObservedStorage
    var plan: LayoutPlan

    /// Reads the layout, matches it to this machine's disks, looks at them and plans.
    static func read(layoutPath: String, log: @escaping (String) -> Void) throws -> LayoutSituation {
        let layout = try DiskLayout(parsing: try readTextFile(layoutPath, what: "layout"), source: layoutPath)
        return try make(layout: layout, log: log)
    }

    /// Matches a parsed layout to this machine's disks, looks at them and plans.
    static func make(layout: DiskLayout, inventory: Inventory? = nil, log: @escaping (String) -> Void) throws
        -> LayoutSituation
    {
        let inventory = try inventory ?? DiskInventoryReader().read()
        let assignment: DiskAssignment
        do {
            assignment = try DiskMatcher.match(layout.disks, inventory: inventory)
        } catch {
            throw AgentFailure(message: "the layout does not map onto this machine's disks:\n\(error)", exitCode: 3)
        }
        let written = layout.disks.filter { !$0.partitions.isEmpty }.compactMap { assignment.disks[$0.name] }
        let observed = try StorageObserver(log: log).observe(disks: written)
        let plan = LayoutPlanner.plan(layout: layout, assignment: assignment, observed: observed)
        return LayoutSituation(layout: layout, assignment: assignment, observed: observed, plan: plan)
    }

    var report: String {
        var lines: [String] = []
        for name in assignment.names {
            let d = assignment.disks[name]!
            lines.append("\(name) = \(d.path) (\(ByteSize(bytes: d.sizeBytes)), serial \(d.serial ?? "none"))")
        }
        if plan.actions.isEmpty {
            lines.append("No changes: the disks match the layout.")
        } else {
            let destructive = plan.actions.filter { !$0.destroys.isEmpty }.count
            lines.append("\(plan.actions.count) change\(plan.actions.count == 1 ? "" : "s")"
                + (destructive > 0 ? ", \(destructive) destroying data:" : ":"))
            for (i, action) in plan.actions.enumerated() {
                lines.append("  \(i + 1). \(action.summary)")
                lines.append("     why: \(action.reason)")
                for what in action.destroys { lines.append("     DESTROYS \(what)") }
            }
        }
        for note in plan.notes { lines.append("note: \(note)") }
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

    struct JSONPlan: Encodable {
        struct Action: Encodable {
            var summary: String
            var device: String
            var reason: String
            var destroys: [String]
        }
        struct Mount: Encodable {
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
    }

    var json: JSONPlan {
        JSONPlan(
            disks: assignment.paths, converged: plan.isConverged,
            actions: plan.actions.map { .init(summary: $0.summary, device: $0.device, reason: $0.reason, destroys: $0.destroys) },
            refusals: plan.refusals, notes: plan.notes,
            mounts: plan.activation.mounts.map { .init(device: $0.device, mountPoint: $0.mountPoint, type: $0.type.rawValue, options: $0.options) },
            swaps: plan.activation.swaps)
    }
}

extension Agent {
    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what apply would change on this machine's disks; change nothing.",
            discussion: """
                Assembles existing arrays and activates existing volume groups on the matched disks to look \
                inside them, but writes no partition table, superblock, volume or filesystem. \
                Exits 0 when the plan can be applied (or nothing is to be done), 4 when it is refused, \
                3 when the layout does not map onto the disks, 2 for a bad layout.
                """
        )

        @Option(help: "The layout file (YAML or JSON).")
        var layout: String

        @OptionGroup var output: OutputOptions

        func run() throws {
            try reporting {
                let situation = try LayoutSituation.read(layoutPath: layout, log: { printError($0) })
                if output.json { try printJSON(situation.json) } else { print(situation.report) }
                if !situation.plan.refusals.isEmpty { throw ExitCode(4) }
            }
        }
    }

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make this machine's disks match a layout, then mount it under a root directory.",
            discussion: """
                Plans first; a refused plan writes nothing (exit 4). Destroying existing content needs the \
                layout's `wipe: if-different`. Each step is logged with its duration.
                """
        )

        @Option(help: "The layout file (YAML or JSON).")
        var layout: String

        @Option(help: "Where to mount the layout's filesystems, e.g. /sysroot.")
        var root: String

        func run() throws {
            try reporting {
                let log: (String) -> Void = { print($0) }
                let situation = try LayoutSituation.read(layoutPath: layout, log: log)
                print(situation.report)
                guard situation.plan.refusals.isEmpty else { throw ExitCode(4) }
                let applier = LayoutApplier(log: log)
                try applier.apply(situation.plan)
                try applier.activate(situation.plan.activation, root: root)
                print("layout applied: \(situation.plan.actions.count) change(s), \(situation.plan.activation.mounts.count) filesystem(s) mounted under \(root)")
            }
        }
    }

    struct Layout: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Work with layout files.",
            subcommands: [Expand.self, Capture.self]
        )

        struct Expand: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Print a layout in the advanced schema (a simple layout shows its expansion)."
            )

            @Option(help: "The layout file (YAML or JSON).")
            var layout: String

            func run() throws {
                try reporting {
                    let parsed = try DiskLayout(parsing: try readTextFile(layout, what: "layout"), source: layout)
                    print(parsed.yaml, terminator: "")
                }
            }
        }

        struct Capture: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Print the layout of this machine's disks in the advanced schema.",
                discussion: """
                    Covers every partitioned disk; assembles arrays and activates volume groups on them to \
                    look inside. Disks are matched by serial and size (1% tolerance). Review it, set wipe, \
                    and use it for nodes like this one.
                    """
            )

            @Option(help: "Report mount points relative to this directory (e.g. /sysroot in the initramfs).")
            var root: String = "/"

            func run() throws {
                try reporting {
                    let inventory = try DiskInventoryReader().read()
                    let disks = inventory.disks.filter { $0.partitionTable != nil && $0.probeError == nil }
                    let observed = try StorageObserver(log: { printError($0) }).observe(disks: disks)
                    let mounts = currentMounts()
                    let layout = LayoutCapture.capture(disks: disks, observed: observed, mounts: mounts)
                    let text = layout.yaml
                    // What we print must be a layout we read back.
                    do { _ = try DiskLayout(parsing: text, source: "captured layout") } catch {
                        printError("warning: the captured layout does not read back: \(error)")
                    }
                    print(text, terminator: "")
                }
            }

            /// Device path (canonical) → mount point, from /proc/self/mountinfo.
            func currentMounts() -> [String: String] {
                guard let data = FileManager.default.contents(atPath: "/proc/self/mountinfo") else { return [:] }
                var result: [String: String] = [:]
                for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                    let fields = line.split(separator: " ")
                    guard let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
                    let source = String(fields[dash + 2])
                    guard source.hasPrefix("/dev/") else { continue }
                    guard let mountPoint = relative(String(fields[4])) else { continue }
                    let device = realPath(source)
                    if result[device] == nil { result[device] = mountPoint }
                    for alias in lvmAliases(device) where result[alias] == nil { result[alias] = mountPoint }
                }
                return result
            }

            /// `/sysroot/var` → `/var` with `--root /sysroot`; nil outside the root.
            func relative(_ mountPoint: String) -> String? {
                let base = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
                if base == "/" { return mountPoint }
                if mountPoint == base { return "/" }
                return mountPoint.hasPrefix(base + "/") ? String(mountPoint.dropFirst(base.count)) : nil
            }

            /// `/dev/dm-3` is also `/dev/<vg>/<lv>`: the name LVM reports.
            func lvmAliases(_ device: String) -> [String] {
                guard device.hasPrefix("/dev/dm-"),
                    let data = FileManager.default.contents(atPath: "/sys/block/\(device.dropFirst(5))/dm/name")
                else { return [] }
                let name = String(decoding: data, as: UTF8.self).trimmed
                // dm names double dashes inside VG and LV names: vg--a-lv--b.
                var parts: [String] = []
                var current = ""
                var chars = Array(name)[...]
                while let c = chars.popFirst() {
                    if c == "-" {
                        if chars.first == "-" {
                            current.append("-")
                            chars.removeFirst()
                        } else {
                            parts.append(current)
                            current = ""
                        }
                    } else {
                        current.append(c)
                    }
                }
                parts.append(current)
                return parts.count == 2 ? ["/dev/\(parts[0])/\(parts[1])"] : []
            }
        }
    }
}
