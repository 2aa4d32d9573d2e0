/// Checks a layout before anything is touched: every reference resolves,
/// every device has one use, sizes can fit, mount points are unique.
///
/// References written `a/b` are parsed as partitions; here they become logical
/// volumes when `a` is a volume group.
extension DiskLayout {
    /// GPT needs the first MiB (alignment, primary table) and 33 sectors at the end.
    public static let reservedBytesPerDisk: UInt64 = 2 << 20

    public mutating func validate() throws(ConfigError) {
        var owners: [String: String] = [:]
        for disk in disks { owners[disk.name] = "a disk" }
        for array in arrays {
            if let other = owners[array.name] {
                throw ConfigError(field: "arrays.\(array.name)", problem: "has the same name as \(other)")
            }
            owners[array.name] = "an array"
        }
        for group in volumeGroups {
            if let other = owners[group.name] {
                throw ConfigError(field: "volume-groups.\(group.name)", problem: "has the same name as \(other)")
            }
            owners[group.name] = "a volume group"
        }

        for disk in disks { try Self.validateDisk(disk) }

        // Resolve references, and give every device at most one use.
        var uses: [DeviceRef: String] = [:]
        func claim(_ ref: DeviceRef, by user: String, field: String) throws(ConfigError) {
            if let other = uses[ref] {
                throw ConfigError(field: field, problem: "\(ref) is already used by \(other)")
            }
            uses[ref] = user
        }
        for index in arrays.indices {
            let array = arrays[index]
            let field = "arrays.\(array.name).devices"
            var resolved: [DeviceRef] = []
            for ref in array.members {
                let device = try resolve(ref, field: field)
                if case .logicalVolume = device {
                    throw ConfigError(field: field, problem: "\(ref) is a logical volume; arrays are built from partitions")
                }
                if case .array = device {
                    throw ConfigError(field: field, problem: "\(ref) is an array; arrays of arrays are not supported")
                }
                try claim(device, by: "array \(array.name)", field: field)
                resolved.append(device)
            }
            if array.level == .raid1 && resolved.count < 2 {
                throw ConfigError(
                    field: field,
                    problem: "a mirror needs two or more devices, found \(resolved.count)")
            }
            if resolved.count < array.level.minimumMembers {
                throw ConfigError(
                    field: field,
                    problem: "\(array.level) needs at least \(array.level.minimumMembers) devices, found \(resolved.count)")
            }
            arrays[index].members = resolved
        }
        for index in volumeGroups.indices {
            let group = volumeGroups[index]
            let field = "volume-groups.\(group.name).devices"
            guard !group.devices.isEmpty else { throw ConfigError(field: field, problem: "lists no devices") }
            var resolved: [DeviceRef] = []
            for ref in group.devices {
                let device = try resolve(ref, field: field)
                if case .logicalVolume = device {
                    throw ConfigError(field: field, problem: "\(ref) is a logical volume; a volume group cannot be built on one")
                }
                try claim(device, by: "volume group \(group.name)", field: field)
                resolved.append(device)
            }
            volumeGroups[index].devices = resolved
            try Self.validateSizes(group.volumes.map(\.size), names: group.volumes.map(\.name),
                                   field: "volume-groups.\(group.name).volumes", capacity: nil)
        }

        // A device with a filesystem is not also a member or a physical volume.
        var mounts: [String: String] = [:]
        for (ref, fs, field) in filesystems {
            if fs.type == .xfs, case .fixed(let size)? = fixedSize(of: ref), size.bytes < Self.xfsMinimum {
                throw ConfigError(
                    field: field, problem: "xfs needs at least 300 MiB (mkfs.xfs refuses smaller); \(ref) is \(size.binaryDescription)")
            }
            if let user = uses[ref] {
                throw ConfigError(field: field, problem: "\(ref) has a filesystem but is also used by \(user)")
            }
            if let mount = fs.mount {
                if let other = mounts[mount] {
                    throw ConfigError(field: field + ".mount", problem: "\(mount) is also the mount point of \(other)")
                }
                mounts[mount] = ref.description
            }
        }
    }

    /// Every filesystem in the layout with the device it is on and its field path.
    public var filesystems: [(device: DeviceRef, filesystem: FilesystemSpec, field: String)] {
        var result: [(DeviceRef, FilesystemSpec, String)] = []
        for disk in disks {
            for (i, part) in disk.partitions.enumerated() {
                if let fs = part.filesystem {
                    result.append((.partition(disk: disk.name, name: part.name), fs, "disks.\(disk.name).partitions[\(i)].filesystem"))
                }
            }
        }
        for array in arrays {
            if let fs = array.filesystem { result.append((.array(array.name), fs, "arrays.\(array.name).filesystem")) }
        }
        for group in volumeGroups {
            for lv in group.volumes {
                if let fs = lv.filesystem {
                    result.append((.logicalVolume(group: group.name, name: lv.name), fs, "volume-groups.\(group.name).volumes.\(lv.name).filesystem"))
                }
            }
        }
        return result
    }

    /// mkfs.xfs (since xfsprogs 5.19) makes no filesystem smaller than this.
    static let xfsMinimum: UInt64 = 300 << 20

    func fixedSize(of ref: DeviceRef) -> SizeSpec? {
        switch ref {
        case .partition(let diskName, let name):
            disks.first { $0.name == diskName }?.partitions.first { $0.name == name }?.size
        case .logicalVolume(let groupName, let name):
            volumeGroups.first { $0.name == groupName }?.volumes.first { $0.name == name }?.size
        case .array: nil
        }
    }

    /// Whether the layout marks the device's content as preserved.
    public func isPreserved(_ ref: DeviceRef) -> Bool {
        switch ref {
        case .partition(let diskName, let name):
            disks.first { $0.name == diskName }?.partitions.first { $0.name == name }?.preserve ?? false
        case .array(let name):
            arrays.first { $0.name == name }?.preserve ?? false
        case .logicalVolume(let groupName, let name):
            volumeGroups.first { $0.name == groupName }?.volumes.first { $0.name == name }?.preserve ?? false
        }
    }

    func resolve(_ ref: DeviceRef, field: String) throws(ConfigError) -> DeviceRef {
        switch ref {
        case .array(let name):
            guard arrays.contains(where: { $0.name == name }) else {
                throw ConfigError(field: field, problem: "\(name) is not an array of this layout")
            }
            return ref
        case .partition(let owner, let name), .logicalVolume(let owner, let name):
            if let disk = disks.first(where: { $0.name == owner }) {
                guard disk.partitions.contains(where: { $0.name == name }) else {
                    throw ConfigError(field: field, problem: "disk \(owner) has no partition named \(name)")
                }
                return .partition(disk: owner, name: name)
            }
            if let group = volumeGroups.first(where: { $0.name == owner }) {
                guard group.volumes.contains(where: { $0.name == name }) else {
                    throw ConfigError(field: field, problem: "volume group \(owner) has no volume named \(name)")
                }
                return .logicalVolume(group: owner, name: name)
            }
            throw ConfigError(field: field, problem: "\(owner) is neither a disk nor a volume group of this layout")
        }
    }

    static func validateDisk(_ disk: LogicalDisk) throws(ConfigError) {
        let field = "disks.\(disk.name).partitions"
        var seen = Set<String>()
        for part in disk.partitions {
            guard seen.insert(part.name).inserted else {
                throw ConfigError(field: field, problem: "two partitions are named \(part.name)")
            }
        }
        guard disk.partitions.count <= 128 else {
            throw ConfigError(field: field, problem: "GPT holds 128 partitions, the layout lists \(disk.partitions.count)")
        }
        // The smallest disk the match admits, when the match says anything about size.
        let low = disk.criteria.sizeRange.lowerBound
        let capacity = low > reservedBytesPerDisk ? low - reservedBytesPerDisk : nil
        try validateSizes(disk.partitions.map(\.size), names: disk.partitions.map(\.name), field: field,
                          capacity: capacity)
    }

    /// At most one `rest`, percentages within 100%, and fixed sizes within the
    /// capacity when it is known.
    static func validateSizes(_ sizes: [SizeSpec], names: [String], field: String, capacity: UInt64?)
        throws(ConfigError)
    {
        let rests = zip(names, sizes).filter { $0.1 == .rest }.map(\.0)
        if rests.count > 1 {
            throw ConfigError(field: field, problem: "only one entry can take the rest, found \(rests.joined(separator: ", "))")
        }
        var fixed: UInt64 = 0
        var basisPoints = 0
        for size in sizes {
            switch size {
            case .fixed(let s): fixed += s.bytes
            case .percent(let bp): basisPoints += bp
            case .rest: break
            }
        }
        if basisPoints > 10_000 {
            throw ConfigError(field: field, problem: "percentages add up to \(SizeSpec.percent(basisPoints: basisPoints)), more than 100%")
        }
        if let capacity {
            let wanted = fixed + capacity / 10_000 * UInt64(basisPoints)
            if wanted > capacity {
                throw ConfigError(
                    field: field,
                    problem: "needs \(ByteSize(bytes: wanted).binaryDescription) but the smallest disk the match admits holds \(ByteSize(bytes: capacity).binaryDescription) for partitions")
            }
        }
    }
}
