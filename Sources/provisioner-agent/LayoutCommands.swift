import ArgumentParser
import ProvisionerCore
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Reads a layout file, matches it to this machine's disks, looks at them and plans.
func inspectLayout(_ path: String, readOnly: Bool = false, log: @escaping (String) -> Void) throws -> LayoutSituation {
    let layout = try DiskLayout(parsing: try readTextFile(path, what: "layout"), source: path)
    return try LayoutSituation.inspect(layout, readOnly: readOnly, log: log)
}

extension Agent {
    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what apply would change on this machine's disks; change nothing.",
            discussion: """
                Changes nothing on the machine: arrays that looking inside needs are assembled (read-only) \
                and volumes activated, and taken down again before it exits (the plan says so). \
                Exits 0 when the plan can be applied (or nothing is to be done), 4 when it is refused, \
                3 when the layout does not map onto the disks, 2 for a bad layout.
                """
        )

        @Option(help: "The layout file (YAML or JSON).")
        var layout: String

        @OptionGroup var output: OutputOptions

        func run() throws {
            try reporting {
                let situation = try inspectLayout(layout, readOnly: true, log: { printError($0) })
                try situation.takeDown(log: { printError($0) })
                let report = situation.report(undone: true)
                if output.json { try printJSON(report.json) } else { print(report.text) }
                if !situation.plan.refusals.isEmpty { throw LayoutRefused(refusals: situation.plan.refusals) }
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
                let situation = try inspectLayout(layout, log: log)
                print(situation.report().text)
                guard situation.plan.refusals.isEmpty else { throw LayoutRefused(refusals: situation.plan.refusals) }
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

            /// Device path (canonical) → mount point, from the mount table.
            func currentMounts() -> [String: String] {
                var result: [String: String] = [:]
                for entry in MountTable.read().entries where entry.source.hasPrefix("/dev/") {
                    guard let mountPoint = relative(entry.mountPoint) else { continue }
                    let device = realPath(entry.source)
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
