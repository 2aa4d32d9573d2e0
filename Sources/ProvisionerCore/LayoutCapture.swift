/// Describes what is on a machine's disks as a layout, the way an admin
/// captures a configured node to stamp out more like it.
///
/// Disks are matched by serial (or by-path when they have none) and exact
/// size; partitions, arrays and volumes get their current sizes, and the last
/// partition of a disk (or the largest volume of a group) that fills the rest
/// becomes `rest`. Filesystems come with their labels and current mount points.
public enum LayoutCapture {
    public static func capture(disks: [Disk], observed: ObservedStorage, mounts: [String: String]) -> DiskLayout {
        var names: [String: DeviceRef] = [:]  // device path → reference
        var logical: [LogicalDisk] = []
        let used = disks.filter { $0.partitionTable != nil || !$0.partitions.isEmpty }
        for (index, disk) in used.enumerated() {
            let name = "disk\(index)"
            var criteria = DiskCriteria(size: ByteSize(bytes: disk.sizeBytes), tolerance: .percent(basisPoints: 100))
            if let serial = disk.serial {
                criteria.serial = try? Glob(Glob.escape(serial))
            } else if let byPath = disk.byPath {
                criteria.path = try? Glob(Glob.escape(byPath))
            }
            var partitions: [PartitionSpec] = []
            let sorted = disk.partitions.sorted { $0.number < $1.number }
            var taken = Set<String>()
            for (i, part) in sorted.enumerated() {
                var partName = part.label.flatMap { LogicalDisk.isValidName($0) && $0.utf16.count <= 36 ? $0 : nil } ?? "part\(part.number)"
                if !taken.insert(partName).inserted { partName = "part\(part.number)" }
                let isLast = i == sorted.count - 1
                let end = part.startBytes + part.sizeBytes
                let fillsDisk = isLast && disk.sizeBytes - min(disk.sizeBytes, end) < 2 * LayoutPlanner.alignment
                let size: SizeSpec = fillsDisk ? .rest : .fixed(ByteSize(bytes: part.sizeBytes / LayoutPlanner.alignment * LayoutPlanner.alignment))
                let type = part.typeUUID.map { guid in
                    PartitionType.named.values.first { $0.guid == guid.uppercased() } ?? .guid(guid)
                } ?? .linux
                let path = part.path ?? LayoutPlanner.partitionPath(disk: disk.path, number: part.number)
                let fs = filesystem(part.signatures, mount: mounts[path])
                partitions.append(PartitionSpec(name: partName, size: size, type: type, filesystem: fs))
                names[path] = .partition(disk: name, name: partName)
            }
            logical.append(LogicalDisk(name: name, criteria: criteria, partitions: partitions))
        }
        var arrays: [ArraySpec] = []
        for array in observed.arrays {
            guard let level = RaidLevel(rawValue: Int(array.level.dropFirst(4)) ?? -1) else { continue }
            let members = array.members.compactMap { names[$0] }
            guard members.count == array.members.count, !members.isEmpty else { continue }
            let name = LogicalDisk.isValidName(array.name) ? array.name : "md\(arrays.count)"
            let device = array.device ?? "/dev/md/\(name)"
            let fs = filesystem(observed.contents[device] ?? [], mount: mounts[device])
            arrays.append(ArraySpec(name: name, level: level, members: members, metadata: array.metadata ?? "1.2", filesystem: fs))
            names[device] = .array(name)
        }
        var groups: [VolumeGroupSpec] = []
        for group in observed.volumeGroups {
            let devices = group.physicalVolumes.compactMap { names[$0] }
            guard devices.count == group.physicalVolumes.count, !devices.isEmpty else { continue }
            let largest = group.logicalVolumes.max { $0.sizeBytes < $1.sizeBytes }
            let full = group.freeExtents * group.extentSizeBytes < 2 * group.extentSizeBytes
            var volumes: [LogicalVolumeSpec] = []
            for lv in group.logicalVolumes {
                let size: SizeSpec = full && lv.name == largest?.name ? .rest : .fixed(ByteSize(bytes: lv.sizeBytes))
                let fs = filesystem(observed.contents[lv.path] ?? [], mount: mounts[lv.path])
                volumes.append(LogicalVolumeSpec(name: lv.name, size: size, filesystem: fs))
            }
            groups.append(VolumeGroupSpec(name: group.name, devices: devices, volumes: volumes))
        }
        return DiskLayout(disks: logical, arrays: arrays, volumeGroups: groups, wipe: .never)
    }

    static func filesystem(_ signatures: [Signature], mount: String?) -> FilesystemSpec? {
        guard let sig = signatures.first(where: { FilesystemType(rawValue: $0.type) != nil }),
            let type = FilesystemType(rawValue: sig.type)
        else { return nil }
        return FilesystemSpec(type: type, label: sig.label, mount: type == .swap ? nil : mount)
    }
}
