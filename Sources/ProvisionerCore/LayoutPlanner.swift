/// Decides what to change so the disks match the layout. A pure function:
/// (layout, which disk is which, what is on them) → ordered actions.
///
/// It works bottom-up, disks → arrays → volume groups → filesystems, keeping
/// a projection of what each device will hold after the actions so far, and
/// follows the decision table in docs/layout.md (rows cited as D1, A2, ...).
public struct LayoutPlanner {
    public static let alignment: UInt64 = 1 << 20

    let layout: DiskLayout
    let assignment: DiskAssignment
    let observed: ObservedStorage

    var teardown: [LayoutAction] = []
    var actions: [LayoutAction] = []
    var refusals: [String] = []
    var notes: [String] = []
    /// Devices whose old content the plan ends: they hold nothing afterwards.
    var blank: Set<String> = []
    /// Devices the plan writes to (for the in-use check).
    var written: [(device: String, what: String)] = []
    /// Logical volumes that get bigger (their filesystems grow after mounting).
    var grown: Set<String> = []
    var arrayDevices: [String: String] = [:]
    var stopped: Set<String> = []
    var deactivated: Set<String> = []

    public static func plan(layout: DiskLayout, assignment: DiskAssignment, observed: ObservedStorage) -> LayoutPlan {
        var planner = LayoutPlanner(layout: layout, assignment: assignment, observed: observed)
        return planner.run()
    }

    init(layout: DiskLayout, assignment: DiskAssignment, observed: ObservedStorage) {
        self.layout = layout
        self.assignment = assignment
        self.observed = observed
    }

    mutating func run() -> LayoutPlan {
        for disk in layout.disks where !disk.partitions.isEmpty {
            guard let real = assignment.disks[disk.name] else {
                refusals.append("disk \(disk.name) is not assigned to a real disk")
                continue
            }
            planDisk(disk, real)
        }
        for array in layout.arrays { planArray(array) }
        for group in layout.volumeGroups { planVolumeGroup(group) }
        for (ref, fs, _) in layout.filesystems { planFilesystem(ref, fs) }
        checkInUse()
        checkPolicy()
        let all = teardown + actions
        return LayoutPlan(
            actions: all, refusals: refusals, notes: notes, activation: activation())
    }

    // MARK: Paths

    func diskSpec(_ name: String) -> LogicalDisk? { layout.disks.first { $0.name == name } }

    /// `/dev/nvme0n1` + 2 → `/dev/nvme0n1p2`; `/dev/sda` + 2 → `/dev/sda2`.
    public static func partitionPath(disk: String, number: Int) -> String {
        let needsP = disk.last.map { $0.isNumber } ?? false
        return disk + (needsP ? "p" : "") + String(number)
    }

    func path(of ref: DeviceRef) -> String {
        switch ref {
        case .partition(let diskName, let name):
            guard let spec = diskSpec(diskName), let disk = assignment.disks[diskName],
                let index = spec.partitions.firstIndex(where: { $0.name == name })
            else { return "/dev/unknown" }
            if let existing = disk.partitions.first(where: { $0.number == index + 1 }), let path = existing.path,
                !blank.contains(disk.path)
            {
                return path
            }
            return Self.partitionPath(disk: disk.path, number: index + 1)
        case .array(let name):
            return arrayDevices[name] ?? "/dev/md/\(name)"
        case .logicalVolume(let group, let name):
            return "/dev/\(group)/\(name)"
        }
    }

    /// What a device holds once the actions planned so far have run.
    func content(of path: String) -> [Signature] {
        if blank.contains(path) { return [] }
        for disk in assignment.disks.values {
            if disk.path == path { return disk.signatures.filter { $0.usage != "partition_table" } }
            if let part = disk.partitions.first(where: { $0.path == path }) {
                return blank.contains(disk.path) ? [] : part.signatures
            }
        }
        return observed.contents[path] ?? []
    }

    static func describe(_ signatures: [Signature], on path: String) -> String {
        signatures.map { sig in
            "\(sig.type)" + (sig.label.map { " \"\($0)\"" } ?? "") + " on \(path)"
        }.joined(separator: ", ")
    }

    mutating func write(_ device: String, _ what: String) { written.append((device, what)) }

    // MARK: Disks (rows D1–D5)

    mutating func planDisk(_ spec: LogicalDisk, _ disk: Disk) {
        let label = "disk \(spec.name) (\(disk.path)\(disk.serial.map { ", serial \($0)" } ?? ""))"
        if let error = disk.probeError {
            refusals.append("\(label): its contents could not be read (\(error)); nothing is written to it")
            return
        }
        if disk.readOnly {
            refusals.append("\(label) is read-only")
            return
        }
        let wanted: [PlannedPartition]
        do {
            wanted = try Self.geometry(spec.partitions, diskSize: disk.sizeBytes, sectorSize: disk.logicalSectorSize)
        } catch {
            refusals.append("\(label): \(error.message)")
            return
        }
        let wholeDisk = disk.signatures.filter { $0.usage != "partition_table" }
        // D1: blank disk → new table.
        if disk.partitionTable == nil && wholeDisk.isEmpty {
            actions.append(LayoutAction(.writePartitionTable(disk: disk.path, partitions: wanted), reason: "D1: \(label) is blank"))
            write(disk.path, "partitioned")
            blank.insert(disk.path)
            return
        }
        var differences: [String] = []
        if let table = disk.partitionTable, table.type != "gpt" {
            differences.append("it has a \(table.type) partition table, the layout wants GPT")
        }
        if !wholeDisk.isEmpty {
            differences.append("it holds \(Self.describe(wholeDisk, on: disk.path)) on the whole disk")
        }
        var fixes: [LayoutAction] = []
        var missing: [PlannedPartition] = []
        if differences.isEmpty {
            for part in wanted {
                guard let have = disk.partitions.first(where: { $0.number == part.number }) else {
                    missing.append(part)
                    continue
                }
                if let problem = Self.compare(have, part, isRest: spec.partitions[part.number - 1].size == .rest) {
                    differences.append("partition \(part.number) \(problem)")
                    continue
                }
                // D3: details that can change in place.
                if have.label != part.name {
                    fixes.append(LayoutAction(
                        .setPartitionName(disk: disk.path, number: part.number, name: part.name),
                        reason: "D3: partition \(part.number) is named \(have.label.map { "\"\($0)\"" } ?? "nothing")"))
                }
                if have.typeUUID?.uppercased() != part.typeGUID {
                    fixes.append(LayoutAction(
                        .setPartitionType(disk: disk.path, number: part.number, typeGUID: part.typeGUID),
                        reason: "D3: partition \(part.number) has type \(have.typeUUID ?? "none")"))
                }
            }
            for extra in disk.partitions where extra.number > wanted.count {
                differences.append("partition \(extra.number) is not in the layout")
            }
            if let firstMissing = missing.first?.number,
                disk.partitions.contains(where: { $0.number > firstMissing })
            {
                differences.append("partition \(firstMissing) is missing but later ones exist")
            }
        }
        if differences.isEmpty {
            // D2 (matches) with D3 fixes, or D4: only partitions at the end are missing.
            actions += fixes
            if !missing.isEmpty {
                actions.append(LayoutAction(
                    .addPartitions(disk: disk.path, partitions: missing),
                    reason: "D4: \(label) lacks partition\(missing.count > 1 ? "s" : "") \(missing.map { String($0.number) }.joined(separator: ", "))"))
                for part in missing { blank.insert(Self.partitionPath(disk: disk.path, number: part.number)) }
            }
            if !fixes.isEmpty || !missing.isEmpty { write(disk.path, "partition table changed") }
            return
        }
        // D5: differs → a new table, destroying what is there.
        var destroyed: [String] = []
        if let table = disk.partitionTable { destroyed.append("\(table.type) partition table on \(disk.path)") }
        destroyed += wholeDisk.map { "\($0.type) on \(disk.path)" }
        for part in disk.partitions {
            let path = part.path ?? Self.partitionPath(disk: disk.path, number: part.number)
            if !part.signatures.isEmpty { destroyed.append(Self.describe(part.signatures, on: path)) }
            if let index = spec.partitions.indices.first(where: { $0 == part.number - 1 }),
                spec.partitions[index].preserve, !part.signatures.isEmpty
            {
                refusals.append(
                    "\(label): partition \(spec.partitions[index].name) is preserved, but the disk must be re-partitioned (\(differences.joined(separator: "; ")))")
            }
            releaseMember(path)
        }
        let reason = "D5: \(label) differs: " + differences.joined(separator: "; ")
        for part in disk.partitions where !part.signatures.isEmpty {
            let path = part.path ?? Self.partitionPath(disk: disk.path, number: part.number)
            actions.append(LayoutAction(.wipe(device: path), reason: reason))
        }
        actions.append(LayoutAction(.wipe(device: disk.path), reason: reason))
        actions.append(LayoutAction(.writePartitionTable(disk: disk.path, partitions: wanted), reason: reason, destroys: destroyed))
        write(disk.path, "re-partitioned")
        for part in disk.partitions {
            write(part.path ?? Self.partitionPath(disk: disk.path, number: part.number), "re-partitioned")
        }
        blank.insert(disk.path)
    }

    /// A device whose content is going away may be held by an array the agent
    /// assembled: take it out of that array first (or stop the array).
    mutating func releaseMember(_ path: String) {
        for array in observed.arrays where array.members.contains(path) {
            guard let device = array.device, !stopped.contains(device) else { continue }
            let remaining = array.members.filter { $0 != path && !blank.contains($0) }
            if remaining.isEmpty {
                deactivateGroups(on: device)
                teardown.append(LayoutAction(.stopArray(name: array.name, device: device), reason: "its members are rewritten"))
                stopped.insert(device)
            } else {
                teardown.append(LayoutAction(.failArrayMember(array: device, member: path), reason: "\(path) is rewritten"))
            }
        }
    }

    mutating func deactivateGroups(on device: String) {
        for group in observed.volumeGroups where group.physicalVolumes.contains(device) {
            guard deactivated.insert(group.name).inserted else { continue }
            teardown.append(LayoutAction(
                .deactivateVolumeGroup(name: group.name, devices: group.physicalVolumes),
                reason: "it lives on \(device), which is rewritten"))
        }
    }

    public struct GeometryError: Error, Sendable { public var message: String }

    /// Where each partition goes on a disk of this size: 1 MiB aligned, from
    /// 1 MiB up to the last aligned byte before the backup GPT.
    public static func geometry(_ specs: [PartitionSpec], diskSize: UInt64, sectorSize: Int) throws(GeometryError)
        -> [PlannedPartition]
    {
        let sector = UInt64(max(sectorSize, 512))
        let backup = sector * (1 + (16_384 + sector - 1) / sector)
        guard diskSize > alignment + backup else { throw GeometryError(message: "the disk is too small for a GPT") }
        let end = (diskSize - backup) / alignment * alignment
        let capacity = end - alignment
        var sizes: [UInt64?] = []
        var used: UInt64 = 0
        for spec in specs {
            switch spec.size {
            case .fixed(let size):
                let s = (size.bytes + alignment - 1) / alignment * alignment
                sizes.append(s)
                used += s
            case .percent(let bp):
                let s = capacity / 10_000 * UInt64(bp) / alignment * alignment
                sizes.append(s)
                used += s
            case .rest:
                sizes.append(nil)
            }
        }
        guard used <= capacity else {
            throw GeometryError(
                message: "the partitions need \(ByteSize(bytes: used).binaryDescription) but the disk has \(ByteSize(bytes: capacity).binaryDescription) for partitions")
        }
        var start = alignment
        var result: [PlannedPartition] = []
        for (i, spec) in specs.enumerated() {
            let size = sizes[i] ?? (capacity - used)
            guard size > 0 else { throw GeometryError(message: "partition \(spec.name) would be empty") }
            result.append(PlannedPartition(number: i + 1, name: spec.name, startBytes: start, sizeBytes: size, typeGUID: spec.type.guid))
            start += size
        }
        return result
    }

    /// Nil when an existing partition is where the layout wants it, within alignment.
    static func compare(_ have: Partition, _ want: PlannedPartition, isRest: Bool) -> String? {
        func near(_ a: UInt64, _ b: UInt64) -> Bool { (a > b ? a - b : b - a) < alignment }
        if !near(have.startBytes, want.startBytes) {
            return "starts at \(have.startBytes) bytes, the layout wants \(want.startBytes)"
        }
        if !near(have.sizeBytes, want.sizeBytes) {
            return "is \(ByteSize(bytes: have.sizeBytes).binaryDescription), the layout wants \(ByteSize(bytes: want.sizeBytes).binaryDescription)\(isRest ? " (the rest of the disk)" : "")"
        }
        return nil
    }

    // MARK: Arrays (rows A1–A4)

    mutating func planArray(_ spec: ArraySpec) {
        let members = spec.members.map(path(of:))
        let memberSet = Set(members)
        // Arrays that own any wanted member, counting only members that keep their content.
        let candidates = observed.arrays.filter { array in
            array.members.contains { memberSet.contains($0) && !blank.contains($0) && !isBlankPartition($0) }
        }
        let blankMembers = members.filter { content(of: $0).isEmpty }
        if candidates.isEmpty && blankMembers.count == members.count {
            // A1: nothing there → create.
            actions.append(LayoutAction(
                .createArray(name: spec.name, level: spec.level, metadata: spec.metadata, members: members),
                reason: "A1: array \(spec.name) does not exist and its devices are blank"))
            members.forEach { write($0, "made an array member") }
            blank.insert("/dev/md/\(spec.name)")
            return
        }
        if candidates.count == 1, let array = candidates.first, array.name == spec.name,
            array.level == spec.level.description, array.raidDevices == members.count
        {
            let kept = array.members.filter { memberSet.contains($0) && !blank.contains($0) && !isBlankPartition($0) }
            let foreign = array.members.filter { !memberSet.contains($0) }
            let others = members.filter { !kept.contains($0) }
            if !foreign.isEmpty {
                refusals.append("array \(spec.name) also has \(foreign.joined(separator: ", ")), which the layout does not cover")
                return
            }
            if let device = array.device { arrayDevices[spec.name] = device }
            // A2: converged. A3: degraded, the missing members are blank → add them.
            for member in others {
                guard content(of: member).isEmpty else {
                    refusals.append(
                        "array \(spec.name) is missing \(member), which holds \(Self.describe(content(of: member), on: member)); wipe it or replace the disk")
                    continue
                }
                guard let device = array.device else {
                    refusals.append("array \(spec.name) is degraded but could not be assembled to repair it")
                    continue
                }
                if let need = array.componentSizeBytes, let have = plannedSize(member), have < need {
                    refusals.append(
                        "array \(spec.name) needs members of at least \(ByteSize(bytes: need).binaryDescription); \(member) would be \(ByteSize(bytes: have).binaryDescription)")
                    continue
                }
                actions.append(LayoutAction(
                    .addArrayMember(array: spec.name, device: device, member: member),
                    reason: "A3: array \(spec.name) is degraded (\(kept.count) of \(array.raidDevices) members)"))
                notes.append("array \(spec.name) is repaired with \(member); the data on \(kept.joined(separator: ", ")) is kept and resynced")
                write(member, "added to array \(spec.name)")
            }
            return
        }
        // A4: something else is there → recreate, destroying it.
        var destroyed: [String] = []
        var why: [String] = []
        for array in candidates {
            destroyed.append("\(array.level) array \(array.name) (\(array.uuid))")
            why.append("its devices belong to \(array.level) array \(array.name) of \(array.raidDevices) devices")
            if let device = array.device, !stopped.contains(device) {
                deactivateGroups(on: device)
                teardown.append(LayoutAction(.stopArray(name: array.name, device: device), reason: "A4: array \(spec.name) is recreated"))
                stopped.insert(device)
                write(device, "stopped")
            }
        }
        if spec.preserve {
            refusals.append("array \(spec.name) is preserved, but \(why.joined(separator: "; ")) and it would be recreated")
        }
        for member in members {
            let sigs = content(of: member)
            if !sigs.isEmpty {
                if !sigs.allSatisfy({ $0.type == "linux_raid_member" }) {
                    why.append("\(member) holds \(Self.describe(sigs, on: member))")
                    destroyed.append(Self.describe(sigs, on: member))
                }
                actions.append(LayoutAction(.wipe(device: member), reason: "A4"))
            }
        }
        actions.append(LayoutAction(
            .createArray(name: spec.name, level: spec.level, metadata: spec.metadata, members: members),
            reason: "A4: array \(spec.name) differs: \(why.joined(separator: "; "))", destroys: destroyed))
        members.forEach { write($0, "made an array member") }
        blank.insert("/dev/md/\(spec.name)")
        arrayDevices[spec.name] = nil
    }

    /// A partition the plan creates (so nothing observed applies to it).
    func isBlankPartition(_ path: String) -> Bool {
        for disk in assignment.disks.values where blank.contains(disk.path) && Self.isPartition(path, of: disk.path) {
            return true
        }
        return blank.contains(path)
    }

    func plannedSize(_ path: String) -> UInt64? {
        for (name, disk) in assignment.disks {
            guard let spec = diskSpec(name),
                let parts = try? Self.geometry(spec.partitions, diskSize: disk.sizeBytes, sectorSize: disk.logicalSectorSize)
            else { continue }
            for part in parts where Self.partitionPath(disk: disk.path, number: part.number) == path {
                return part.sizeBytes
            }
        }
        return nil
    }

    // MARK: Volume groups (rows V1–V4) and logical volumes (rows L1–L6)

    mutating func planVolumeGroup(_ spec: VolumeGroupSpec) {
        let devices = spec.devices.map(path(of:))
        let existing = observed.volumeGroups.first { $0.name == spec.name }
        if let group = existing, Set(group.physicalVolumes) == Set(devices),
            !devices.contains(where: { blank.contains($0) || isBlankPartition($0) })
        {
            // V1: the group is there on the right devices → reconcile its volumes.
            planVolumes(spec, group)
            return
        }
        var destroyed: [String] = []
        var why: [String] = []
        if let group = existing {
            // V3: the group exists on other devices, or its devices are rewritten.
            why.append("volume group \(group.name) is on \(group.physicalVolumes.joined(separator: ", "))")
            destroyed.append("volume group \(group.name) with \(group.logicalVolumes.map(\.name).joined(separator: ", "))")
            for lv in group.logicalVolumes {
                if let wanted = spec.volumes.first(where: { $0.name == lv.name }), wanted.preserve {
                    refusals.append("logical volume \(spec.name)/\(lv.name) is preserved, but volume group \(spec.name) must be recreated (\(why.joined(separator: "; ")))")
                }
                write(lv.path, "removed")
            }
            let stillThere = group.physicalVolumes.filter { !blank.contains($0) && !isBlankPartition($0) }
            if !stillThere.isEmpty {
                if !deactivated.contains(group.name) {
                    teardown.append(LayoutAction(.deactivateVolumeGroup(name: group.name, devices: group.physicalVolumes), reason: "V3"))
                    deactivated.insert(group.name)
                }
                actions.append(LayoutAction(
                    .removeVolumeGroup(name: group.name, devices: stillThere), reason: "V3: \(why.joined(separator: "; "))",
                    destroys: destroyed))
                for device in stillThere { blank.insert(device) }
            }
        }
        for device in devices {
            let sigs = content(of: device)
            guard !sigs.isEmpty else { continue }
            // V4: a device holds something else → wipe it.
            let owner = observed.physicalVolumes[device]
            let what = owner.map { $0.isEmpty ? "an unused LVM physical volume on \(device)" : "LVM physical volume of volume group \($0) on \(device)" }
                ?? Self.describe(sigs, on: device)
            actions.append(LayoutAction(.wipe(device: device), reason: "V4: \(device) holds \(what)", destroys: [what]))
            write(device, "wiped")
            blank.insert(device)
        }
        // V2: create.
        for device in devices {
            actions.append(LayoutAction(.createPhysicalVolume(device: device), reason: "V2: volume group \(spec.name) is created"))
            write(device, "made a physical volume")
        }
        actions.append(LayoutAction(.createVolumeGroup(name: spec.name, devices: devices), reason: "V2: volume group \(spec.name) does not exist"))
        // The rest goes last, so that it is what is left after the others.
        for lv in spec.volumes.filter({ $0.size != .rest }) + spec.volumes.filter({ $0.size == .rest }) {
            let size: VolumeSize =
                switch lv.size {
                case .fixed(let s): .bytes(s.bytes)
                case .percent(let bp): .percentOfGroup(basisPoints: bp)
                case .rest: .allFree
                }
            actions.append(LayoutAction(
                .createLogicalVolume(group: spec.name, name: lv.name, size: size, devices: devices),
                reason: "V2: volume group \(spec.name) is new"))
            blank.insert("/dev/\(spec.name)/\(lv.name)")
        }
    }

    /// Extents each volume wants in a group of `total` extents of `extentSize` bytes; nil for `rest`.
    public static func extents(for size: SizeSpec, total: UInt64, extentSize: UInt64) -> UInt64? {
        switch size {
        case .fixed(let s): (s.bytes + extentSize - 1) / extentSize
        case .percent(let bp): total * UInt64(bp) / 10_000
        case .rest: nil
        }
    }

    mutating func planVolumes(_ spec: VolumeGroupSpec, _ group: ObservedVolumeGroup) {
        let devices = group.physicalVolumes
        let total = group.extentCount
        let extent = group.extentSizeBytes
        var fixedTotal: UInt64 = 0
        for lv in spec.volumes {
            fixedTotal += Self.extents(for: lv.size, total: total, extentSize: extent) ?? 0
        }
        guard fixedTotal <= total else {
            refusals.append(
                "volume group \(spec.name) holds \(ByteSize(bytes: total * extent).binaryDescription); its volumes need \(ByteSize(bytes: fixedTotal * extent).binaryDescription)")
            return
        }
        let restExtents = total - fixedTotal
        var removals: [LayoutAction] = []
        var creations: [LayoutAction] = []
        var extensions: [LayoutAction] = []
        var restActions: [LayoutAction] = []
        // L5: volumes the layout no longer has.
        for lv in group.logicalVolumes where !spec.volumes.contains(where: { $0.name == lv.name }) {
            let sigs = content(of: lv.path)
            removals.append(LayoutAction(
                .removeLogicalVolume(group: spec.name, name: lv.name, devices: devices),
                reason: "L5: \(spec.name)/\(lv.name) is not in the layout",
                destroys: ["logical volume \(spec.name)/\(lv.name)" + (sigs.isEmpty ? "" : " with \(Self.describe(sigs, on: lv.path))")]))
            write(lv.path, "removed")
        }
        for lv in spec.volumes {
            let path = "/dev/\(spec.name)/\(lv.name)"
            let want = Self.extents(for: lv.size, total: total, extentSize: extent)
            guard let have = group.logicalVolumes.first(where: { $0.name == lv.name }) else {
                // L1: missing → create.
                let action = LayoutAction(
                    .createLogicalVolume(group: spec.name, name: lv.name, size: want.map(VolumeSize.extents) ?? .allFree, devices: devices),
                    reason: "L1: \(spec.name)/\(lv.name) does not exist")
                if want == nil { restActions.append(action) } else { creations.append(action) }
                blank.insert(path)
                continue
            }
            let haveExtents = have.sizeBytes / extent
            let target = want ?? restExtents
            if haveExtents + 1 >= target && haveExtents <= target + (want == nil ? 0 : 1) {
                // L2: the right size, within one extent.
                if lv.preserve { notes.append("\(spec.name)/\(lv.name) is preserved and unchanged") }
                continue
            }
            if haveExtents < target {
                // L3: too small → extend; the filesystem grows once mounted.
                let action = LayoutAction(
                    .extendLogicalVolume(group: spec.name, name: lv.name, size: want.map(VolumeSize.extents) ?? .allFree, devices: devices),
                    reason: "L3: \(spec.name)/\(lv.name) has \(haveExtents) extents, the layout wants \(target)")
                if want == nil { restActions.append(action) } else { extensions.append(action) }
                grown.insert(path)
                if lv.preserve { notes.append("\(spec.name)/\(lv.name) is preserved; it grows from \(ByteSize(bytes: haveExtents * extent).binaryDescription) to \(ByteSize(bytes: target * extent).binaryDescription) and keeps its data") }
                write(path, "extended")
                continue
            }
            // L4: too big → shrinking loses data: recreate, unless preserved.
            if lv.preserve {
                refusals.append(
                    "\(spec.name)/\(lv.name) is preserved but no longer fits: it has \(ByteSize(bytes: haveExtents * extent).binaryDescription), the layout leaves it \(ByteSize(bytes: target * extent).binaryDescription)")
                continue
            }
            let sigs = content(of: path)
            removals.append(LayoutAction(
                .removeLogicalVolume(group: spec.name, name: lv.name, devices: devices),
                reason: "L4: \(spec.name)/\(lv.name) has \(haveExtents) extents, the layout wants \(target)",
                destroys: ["logical volume \(spec.name)/\(lv.name)" + (sigs.isEmpty ? "" : " with \(Self.describe(sigs, on: path))")]))
            let action = LayoutAction(
                .createLogicalVolume(group: spec.name, name: lv.name, size: want.map(VolumeSize.extents) ?? .allFree, devices: devices),
                reason: "L4: recreated smaller")
            if want == nil { restActions.append(action) } else { creations.append(action) }
            write(path, "recreated")
            blank.insert(path)
        }
        actions += removals + creations + extensions + restActions
    }

    // MARK: Filesystems (rows F1–F4)

    mutating func planFilesystem(_ ref: DeviceRef, _ fs: FilesystemSpec) {
        let device = path(of: ref)
        let sigs = content(of: device)
        if sigs.isEmpty {
            // F1: nothing there → make it.
            actions.append(LayoutAction(.makeFilesystem(device: device, filesystem: fs), reason: "F1: \(device) is blank"))
            write(device, "formatted")
            return
        }
        if let sig = sigs.first, sigs.count == 1, sig.type == fs.type.blkidType {
            // F2: the right kind → keep; F3: fix the label in place.
            if let label = fs.label, sig.label != label {
                actions.append(LayoutAction(
                    .setLabel(device: device, type: fs.type, label: label),
                    reason: "F3: the \(fs.type.rawValue) on \(device) is labelled \(sig.label.map { "\"\($0)\"" } ?? "nothing")"))
                write(device, "relabelled")
            }
            if layout.isPreserved(ref) { notes.append("\(ref) is preserved: its \(fs.type.rawValue) filesystem is kept") }
            return
        }
        // F4: something else → make the filesystem, destroying it.
        let what = Self.describe(sigs, on: device)
        if layout.isPreserved(ref) {
            refusals.append("\(ref) is preserved but holds \(what), not \(fs.type.rawValue)")
            return
        }
        // Swap holds nothing worth keeping.
        let destroys = sigs.allSatisfy { $0.type == "swap" } ? [] : [what]
        actions.append(LayoutAction(
            .makeFilesystem(device: device, filesystem: fs), reason: "F4: \(device) holds \(what)", destroys: destroys))
        write(device, "formatted")
    }

    // MARK: Safety

    /// S1: nothing in use by anyone else is changed.
    mutating func checkInUse() {
        var reported = Set<String>()
        for (device, what) in written {
            for (busy, why) in observed.inUse where busy == device || Self.isPartition(busy, of: device) {
                guard reported.insert(busy).inserted else { continue }
                refusals.append("\(busy) is in use (\(why)); the plan would have it \(what)")
            }
        }
    }

    static func isPartition(_ path: String, of disk: String) -> Bool {
        guard path.hasPrefix(disk), path.count > disk.count else { return false }
        var rest = path.dropFirst(disk.count)
        // nvme0n1 → nvme0n1p2, but sda → sda2: a "p" exactly when the disk's name ends in a digit.
        if disk.last?.isNumber == true {
            guard rest.first == "p" else { return false }
            rest = rest.dropFirst()
        }
        return !rest.isEmpty && rest.allSatisfy(\.isNumber)
    }

    /// S2: destroying needs `wipe: if-different`.
    mutating func checkPolicy() {
        guard layout.wipe == .never else { return }
        for action in teardown + actions where !action.destroys.isEmpty {
            refusals.append(
                "\(action.summary) would destroy \(action.destroys.joined(separator: "; ")), and the layout's wipe policy is never (\(action.reason))")
        }
    }

    // MARK: Activation

    func activation() -> Activation {
        var result = Activation()
        for array in layout.arrays {
            let device = arrayDevices[array.name] ?? "/dev/md/\(array.name)"
            let assembled = arrayDevices[array.name] != nil
            result.arrays.append(.init(name: array.name, device: device, members: array.members.map(path(of:)), isAssembled: assembled))
        }
        for group in layout.volumeGroups {
            result.volumeGroups.append(
                .init(name: group.name, devices: group.devices.map(path(of:)), volumes: group.volumes.map(\.name)))
        }
        for (ref, fs, _) in layout.filesystems {
            let device = path(of: ref)
            if fs.type == .swap {
                result.swaps.append(device)
            } else if let mount = fs.mount {
                result.mounts.append(.init(device: device, mountPoint: mount, type: fs.type, options: fs.mountOptions, grow: grown.contains(device)))
            }
        }
        result.mounts.sort { a, b in
            let da = a.mountPoint == "/" ? 0 : a.mountPoint.split(separator: "/").count
            let db = b.mountPoint == "/" ? 0 : b.mountPoint.split(separator: "/").count
            return da != db ? da < db : a.mountPoint < b.mountPoint
        }
        return result
    }
}
