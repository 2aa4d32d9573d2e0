/// Maps the logical disks of a layout onto the real disks of a machine.
///
/// Pure: it sees only the layout and an inventory. The rules (docs/matching.md):
///
/// 1. A disk is a candidate for a logical disk when every criterion holds.
///    Read-only disks, removable disks (unless `removable: true`) and software
///    devices (md, dm, loop, ram, zram) are never candidates.
/// 2. Logical disks with identical criteria form a group (the two halves of a
///    mirror). A group of k logical disks needs exactly k candidates: fewer is
///    a miss, more is an ambiguity (which one is the bystander?). Both are errors.
/// 3. A disk that is a candidate for two groups is an error: one disk, one role.
/// 4. Within a group, candidates are ordered by serial, then WWN, then by-path,
///    then kernel name, and given to the logical disks in natural name order
///    (disk0, disk1, ..., disk10). Kernel enumeration order never matters.
///
/// Disks no logical disk matches are not in the result, so nothing uses them.
public enum DiskMatcher {
    /// Why one disk is not a candidate for one set of criteria.
    public static func mismatches(_ criteria: DiskCriteria, _ disk: Disk) -> [String] {
        var reasons: [String] = []
        if disk.isVirtualBlockDevice {
            reasons.append("is a \(disk.transport.rawValue) device, not a disk")
        }
        if disk.readOnly { reasons.append("is read-only") }
        if disk.removable && !criteria.removable {
            reasons.append("is removable (add removable: true to allow it)")
        }
        if !criteria.type.accepts(disk) {
            let kind = disk.rotational ? "rotational" : "solid state"
            reasons.append("type: is \(disk.transport.rawValue) \(kind), wanted \(criteria.type.rawValue)")
        }
        func check(_ field: String, _ glob: Glob?, _ value: String?) {
            guard let glob else { return }
            guard let value, !value.isEmpty else {
                reasons.append("\(field): none reported, wanted \"\(glob)\"")
                return
            }
            if !glob.matches(value) { reasons.append("\(field): \"\(value)\" does not match \"\(glob)\"") }
        }
        check("vendor", criteria.vendor, disk.vendor)
        check("model", criteria.model, disk.model)
        check("serial", criteria.serial, disk.serial)
        check("wwn", criteria.wwn, disk.wwn)
        if let glob = criteria.path {
            let names = ([disk.byPath].compactMap { $0 } + disk.byId)
            let hit = names.contains { name in
                glob.matches(name) || glob.matches(String(name.split(separator: "/").last ?? ""))
            }
            if !hit {
                reasons.append(
                    names.isEmpty
                        ? "path: no by-path or by-id names known, wanted \"\(glob)\""
                        : "path: none of its by-path/by-id names matches \"\(glob)\"")
            }
        }
        let range = criteria.sizeRange
        if !range.contains(disk.sizeBytes) {
            let have = ByteSize(bytes: disk.sizeBytes)
            if let size = criteria.size {
                let tol = criteria.tolerance ?? .defaultTolerance
                reasons.append(
                    "size: \(have) (\(disk.sizeBytes) bytes) is outside \(size) ± \(tol) "
                        + "(\(ByteSize(bytes: range.lowerBound)) to \(ByteSize(bytes: range.upperBound)))")
            } else if disk.sizeBytes < range.lowerBound {
                reasons.append("size: \(have) is below min \(ByteSize(bytes: range.lowerBound))")
            } else {
                reasons.append("size: \(have) is above max \(ByteSize(bytes: range.upperBound))")
            }
        }
        return reasons
    }

    /// The order in which identical candidates are handed out. Serial first:
    /// it follows the physical disk when it moves to another slot.
    public static func stableKey(_ disk: Disk) -> [String] {
        let last = "\u{10FFFF}"  // disks without a field sort after those with one
        return [
            disk.serial.flatMap { $0.isEmpty ? nil : $0 } ?? last,
            disk.wwn ?? last,
            disk.byPath ?? last,
            disk.name,
        ]
    }

    static func stableOrder(_ a: Disk, _ b: Disk) -> Bool {
        stableKey(a).lexicographicallyPrecedes(stableKey(b))
    }

    public static func match(_ logicalDisks: [LogicalDisk], inventory: Inventory) throws(MatchError) -> DiskAssignment {
        let disks = inventory.disks
        // Group logical disks by identical criteria, keeping natural name order.
        var groups: [(criteria: DiskCriteria, names: [String])] = []
        for logical in logicalDisks.sorted(by: { LogicalDisk.naturalOrder($0.name, $1.name) }) {
            if let index = groups.firstIndex(where: { $0.criteria == logical.criteria }) {
                groups[index].names.append(logical.name)
            } else {
                groups.append((logical.criteria, [logical.name]))
            }
        }

        var problems: [MatchProblem] = []
        var candidatesByGroup: [[Disk]] = []
        for group in groups {
            let candidates = disks.filter { mismatches(group.criteria, $0).isEmpty }.sorted(by: stableOrder)
            candidatesByGroup.append(candidates)
            let near = disks.filter { !candidates.contains($0) && !$0.isVirtualBlockDevice }
                .map { NearCandidate(disk: $0, reasons: mismatches(group.criteria, $0)) }
                .sorted {
                    $0.reasons.count != $1.reasons.count
                        ? $0.reasons.count < $1.reasons.count : stableOrder($0.disk, $1.disk)
                }
            if candidates.count < group.names.count {
                problems.append(
                    .notEnough(
                        logicalDisks: group.names, criteria: group.criteria, candidates: candidates, near: near))
            } else if candidates.count > group.names.count {
                problems.append(
                    .ambiguous(logicalDisks: group.names, criteria: group.criteria, candidates: candidates))
            }
        }

        // One disk, one role.
        for disk in disks {
            let roles = groups.indices.filter { candidatesByGroup[$0].contains(disk) }
            if roles.count > 1 {
                problems.append(.sharedDisk(disk: disk, logicalDisks: roles.flatMap { groups[$0].names }))
            }
        }

        guard problems.isEmpty else { throw MatchError(problems: problems) }

        var assignment: [String: Disk] = [:]
        for (group, candidates) in zip(groups, candidatesByGroup) {
            for (name, disk) in zip(group.names, candidates) { assignment[name] = disk }
        }
        return DiskAssignment(disks: assignment)
    }
}

/// The result of matching: logical disk name → real disk.
public struct DiskAssignment: Hashable, Sendable {
    public var disks: [String: Disk]

    public init(disks: [String: Disk]) { self.disks = disks }

    public var names: [String] { disks.keys.sorted(by: LogicalDisk.naturalOrder) }

    /// `{"disk0": "/dev/nvme1n1", ...}`
    public var paths: [String: String] { disks.mapValues(\.path) }
}

public struct NearCandidate: Hashable, Sendable {
    public var disk: Disk
    public var reasons: [String]
}

public enum MatchProblem: Hashable, Sendable, CustomStringConvertible {
    case notEnough(logicalDisks: [String], criteria: DiskCriteria, candidates: [Disk], near: [NearCandidate])
    case ambiguous(logicalDisks: [String], criteria: DiskCriteria, candidates: [Disk])
    case sharedDisk(disk: Disk, logicalDisks: [String])

    static func describe(_ disk: Disk) -> String {
        var facts = ["\(disk.transport.rawValue)", "\(ByteSize(bytes: disk.sizeBytes))"]
        if let model = disk.model { facts.append("model \"\(model)\"") }
        facts.append("serial \(disk.serial.map { "\"\($0)\"" } ?? "none")")
        return "\(disk.path) (\(facts.joined(separator: ", ")))"
    }

    public var description: String {
        switch self {
        case .notEnough(let names, let criteria, let candidates, let near):
            let who = names.joined(separator: ", ")
            var lines: [String]
            if candidates.isEmpty {
                lines = ["\(who): no disk matches \(criteria)"]
            } else {
                lines = [
                    "\(who): \(names.count) disks with \(criteria) are needed, but only \(candidates.count) match: "
                        + candidates.map(Self.describe).joined(separator: ", ")
                ]
            }
            if near.isEmpty {
                lines.append("  (the machine has no other disks)")
            }
            for n in near {
                lines.append("  \(Self.describe(n.disk)): \(n.reasons.joined(separator: "; "))")
            }
            return lines.joined(separator: "\n")
        case .ambiguous(let names, let criteria, let candidates):
            let who = names.joined(separator: ", ")
            let need = names.count == 1 ? "1 disk is" : "\(names.count) disks are"
            return "\(who): \(candidates.count) disks match \(criteria), but \(need) wanted; "
                + "add criteria (serial, path, size) to say which:\n"
                + candidates.map { "  \(Self.describe($0))" }.joined(separator: "\n")
        case .sharedDisk(let disk, let names):
            return "\(Self.describe(disk)) matches \(names.joined(separator: " and ")); "
                + "a disk can have only one role: make their criteria exclusive"
        }
    }
}

public struct MatchError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problems: [MatchProblem]
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}
