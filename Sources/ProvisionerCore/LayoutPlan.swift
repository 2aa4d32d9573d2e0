/// The result of comparing a layout with the disks: what to change, what is
/// refused, and how to bring the result up.
public struct LayoutPlan: Hashable, Sendable {
    /// Changes, in order. Empty when the disks already match the layout.
    public var actions: [LayoutAction]
    /// Why the plan must not be applied. When there is any, nothing is written.
    public var refusals: [String]
    /// Things the admin should know that change nothing (preserved volumes kept, repairs).
    public var notes: [String]
    /// Assembling, activating and mounting, done on every boot after the actions.
    public var activation: Activation

    public init(
        actions: [LayoutAction] = [], refusals: [String] = [], notes: [String] = [], activation: Activation = Activation()
    ) {
        self.actions = actions
        self.refusals = refusals
        self.notes = notes
        self.activation = activation
    }

    public var isConverged: Bool { actions.isEmpty && refusals.isEmpty }
    public var destroysData: Bool { actions.contains { !$0.destroys.isEmpty } }
}

/// One change to the disks. `destroys` says what existing content it ends.
public struct LayoutAction: Hashable, Sendable {
    public var operation: Operation
    /// Existing content this action ends, in words (`ext4 filesystem "var" on /dev/system/var`).
    public var destroys: [String]
    /// Why it is needed, in words; the decision table's row.
    public var reason: String

    public init(_ operation: Operation, reason: String, destroys: [String] = []) {
        self.operation = operation
        self.reason = reason
        self.destroys = destroys
    }

    public enum Operation: Hashable, Sendable {
        case deactivateVolumeGroup(name: String, devices: [String])
        case stopArray(name: String, device: String)
        case failArrayMember(array: String, member: String)
        case removeVolumeGroup(name: String, devices: [String])
        case removeLogicalVolume(group: String, name: String, devices: [String])
        /// Erases every signature libblkid knows (wipefs --all).
        case wipe(device: String)
        /// A new GPT with these partitions, replacing whatever table there was.
        case writePartitionTable(disk: String, partitions: [PlannedPartition])
        /// Appends partitions to an existing GPT, leaving the others alone.
        case addPartitions(disk: String, partitions: [PlannedPartition])
        case setPartitionName(disk: String, number: Int, name: String)
        case setPartitionType(disk: String, number: Int, typeGUID: String)
        case createArray(name: String, level: RaidLevel, metadata: String, members: [String])
        case addArrayMember(array: String, device: String, member: String)
        case createPhysicalVolume(device: String)
        case createVolumeGroup(name: String, devices: [String])
        case createLogicalVolume(group: String, name: String, size: VolumeSize, devices: [String])
        case extendLogicalVolume(group: String, name: String, size: VolumeSize, devices: [String])
        case makeFilesystem(device: String, filesystem: FilesystemSpec)
        case setLabel(device: String, type: FilesystemType, label: String)
    }

    /// `create raid1 array md-system from /dev/nvme0n1p2, /dev/nvme1n1p2`.
    public var summary: String {
        switch operation {
        case .deactivateVolumeGroup(let name, _): "deactivate volume group \(name)"
        case .stopArray(let name, let device): "stop array \(name) (\(device))"
        case .failArrayMember(let array, let member): "remove \(member) from array \(array)"
        case .removeVolumeGroup(let name, _): "remove volume group \(name)"
        case .removeLogicalVolume(let group, let name, _): "remove logical volume \(group)/\(name)"
        case .wipe(let device): "wipe all signatures on \(device)"
        case .writePartitionTable(let disk, let parts):
            "write a new GPT on \(disk): " + parts.map(\.summary).joined(separator: ", ")
        case .addPartitions(let disk, let parts):
            "add to the GPT on \(disk): " + parts.map(\.summary).joined(separator: ", ")
        case .setPartitionName(let disk, let number, let name): "name partition \(number) of \(disk) \"\(name)\""
        case .setPartitionType(let disk, let number, let guid): "set the type of partition \(number) of \(disk) to \(guid)"
        case .createArray(let name, let level, let metadata, let members):
            "create \(level) array \(name) (superblock \(metadata)) from \(members.joined(separator: ", "))"
        case .addArrayMember(let array, let device, let member): "add \(member) to array \(array) (\(device)) and resync"
        case .createPhysicalVolume(let device): "create LVM physical volume on \(device)"
        case .createVolumeGroup(let name, let devices): "create volume group \(name) on \(devices.joined(separator: ", "))"
        case .createLogicalVolume(let group, let name, let size, _):
            "create logical volume \(group)/\(name) of \(size)"
        case .extendLogicalVolume(let group, let name, let size, _):
            "extend logical volume \(group)/\(name) to \(size)"
        case .makeFilesystem(let device, let fs):
            "make \(fs.type.rawValue) on \(device)" + (fs.label.map { " labelled \"\($0)\"" } ?? "")
        case .setLabel(let device, let type, let label): "label the \(type.rawValue) on \(device) \"\(label)\""
        }
    }

    /// The device the action writes to, for logs and errors.
    public var device: String {
        switch operation {
        case .deactivateVolumeGroup(let name, _), .removeVolumeGroup(let name, _), .createVolumeGroup(let name, _):
            "/dev/\(name)"
        case .stopArray(_, let device), .wipe(let device), .createPhysicalVolume(let device),
            .makeFilesystem(let device, _), .setLabel(let device, _, _), .addArrayMember(_, let device, _):
            device
        case .failArrayMember(let array, _): array
        case .removeLogicalVolume(let group, let name, _), .createLogicalVolume(let group, let name, _, _),
            .extendLogicalVolume(let group, let name, _, _):
            "/dev/\(group)/\(name)"
        case .writePartitionTable(let disk, _), .addPartitions(let disk, _), .setPartitionName(let disk, _, _),
            .setPartitionType(let disk, _, _):
            disk
        case .createArray(let name, _, _, _): "/dev/md/\(name)"
        }
    }
}

/// How big a logical volume is made: exact in an existing group, by the
/// layout's words in a group that does not exist yet.
public enum VolumeSize: Hashable, Sendable, CustomStringConvertible {
    case extents(UInt64)
    case bytes(UInt64)
    case percentOfGroup(basisPoints: Int)
    case allFree

    public var description: String {
        switch self {
        case .extents(let n): "\(n) extents"
        case .bytes(let b): ByteSize(bytes: b).binaryDescription
        case .percentOfGroup(let bp): "\(SizeSpec.percent(basisPoints: bp)) of the group"
        case .allFree: "all free space"
        }
    }
}

public struct PlannedPartition: Hashable, Sendable {
    public var number: Int
    public var name: String
    public var startBytes: UInt64
    public var sizeBytes: UInt64
    public var typeGUID: String

    public var endBytes: UInt64 { startBytes + sizeBytes }

    public var summary: String {
        "\(number) \"\(name)\" \(ByteSize(bytes: sizeBytes).binaryDescription) at \(startBytes >> 20) MiB"
    }
}

/// Bringing the layout up: on every boot, after the actions.
public struct Activation: Hashable, Sendable {
    public struct ArrayAssembly: Hashable, Sendable {
        public var name: String
        /// `/dev/md/<name>`, or the kernel device when already assembled.
        public var device: String
        public var members: [String]
        public var isAssembled: Bool

        public init(name: String, device: String, members: [String], isAssembled: Bool) {
            self.name = name
            self.device = device
            self.members = members
            self.isAssembled = isAssembled
        }
    }
    public struct VolumeGroupActivation: Hashable, Sendable {
        public var name: String
        public var devices: [String]
        /// The layout's logical volumes in the group: when all are active, nothing is to be done.
        public var volumes: [String]

        public init(name: String, devices: [String], volumes: [String] = []) {
            self.name = name
            self.devices = devices
            self.volumes = volumes
        }
    }
    public struct Mount: Hashable, Sendable {
        public var device: String
        /// Relative to the node's root: `/`, `/var`.
        public var mountPoint: String
        public var type: FilesystemType
        public var options: [String]
        /// Grow the filesystem to its device once mounted (its volume was extended).
        public var grow: Bool

        public init(device: String, mountPoint: String, type: FilesystemType, options: [String] = [], grow: Bool = false) {
            self.device = device
            self.mountPoint = mountPoint
            self.type = type
            self.options = options
            self.grow = grow
        }
    }

    public var arrays: [ArrayAssembly] = []
    public var volumeGroups: [VolumeGroupActivation] = []
    /// Parents before children: `/` before `/var` before `/var/log`.
    public var mounts: [Mount] = []
    /// Swap devices, for fstab; not switched on in the initramfs.
    public var swaps: [String] = []

    /// The mounts in waves that can be mounted at once: each mount comes in the wave after the
    /// deepest mount it lies under (`/` first, then `/var`, `/scratch` and `/boot/efi` together,
    /// then `/var/log`).
    public var mountWaves: [[Mount]] {
        var waves: [[Mount]] = []
        var depth: [String: Int] = [:]
        for mount in mounts {  // parents before children
            let parents = mounts.filter { other in
                other.mountPoint != mount.mountPoint
                    && (other.mountPoint == "/" || mount.mountPoint.hasPrefix(other.mountPoint + "/"))
            }
            let wave = (parents.compactMap { depth[$0.mountPoint] }.max() ?? -1) + 1
            depth[mount.mountPoint] = wave
            if wave == waves.count { waves.append([]) }
            waves[wave].append(mount)
        }
        return waves
    }

    public init(
        arrays: [ArrayAssembly] = [], volumeGroups: [VolumeGroupActivation] = [], mounts: [Mount] = [],
        swaps: [String] = []
    ) {
        self.arrays = arrays
        self.volumeGroups = volumeGroups
        self.mounts = mounts
        self.swaps = swaps
    }
}
