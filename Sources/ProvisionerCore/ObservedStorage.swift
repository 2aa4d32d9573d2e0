/// What is on a node's matched disks above the partition level: MD arrays,
/// LVM, and the contents of assembled arrays and active logical volumes.
/// Disks and partitions themselves come from the `Inventory`.
///
/// The agent's system layer fills this in (mdadm --examine/--detail, LVM's
/// JSON reports, libblkid); the planner only reads it.
public struct ObservedStorage: Codable, Hashable, Sendable {
    public var arrays: [ObservedArray]
    public var volumeGroups: [ObservedVolumeGroup]
    /// Physical volumes on the matched disks: device path → volume group name ("" when in none).
    public var physicalVolumes: [String: String]
    /// Signatures on assembled arrays and active logical volumes, by device path.
    public var contents: [String: [Signature]]
    /// Devices used by something other than the agent, with how:
    /// `/dev/md127` → `mounted on /data`. Nothing here is ever changed.
    public var inUse: [String: String]
    /// What observing brought up to look inside (arrays assembled, logical volumes activated) that
    /// was not up before, in the order it was done. `provisioner-agent plan` takes it down again.
    public var broughtUp: [BroughtUp]

    public init(
        arrays: [ObservedArray] = [], volumeGroups: [ObservedVolumeGroup] = [],
        physicalVolumes: [String: String] = [:], contents: [String: [Signature]] = [:],
        inUse: [String: String] = [:], broughtUp: [BroughtUp] = []
    ) {
        self.arrays = arrays
        self.volumeGroups = volumeGroups
        self.physicalVolumes = physicalVolumes
        self.contents = contents
        self.inUse = inUse
        self.broughtUp = broughtUp
    }
}

/// One thing observing brought up that was down before it looked.
public enum BroughtUp: Codable, Hashable, Sendable, CustomStringConvertible {
    /// An array assembled from its members: `/dev/md/system`.
    case array(name: String, device: String)
    /// Logical volumes of a group activated (`system/root`), on these devices only.
    case logicalVolumes(group: String, names: [String], devices: [String])

    public var description: String {
        switch self {
        case .array(let name, let device): "array \(name) (\(device)) assembled"
        case .logicalVolumes(let group, let names, _):
            "logical volume\(names.count == 1 ? "" : "s") \(names.map { "\(group)/\($0)" }.joined(separator: ", ")) activated"
        }
    }
}

public struct ObservedArray: Codable, Hashable, Sendable {
    public var uuid: String
    /// The array's name without the `homehost:` prefix mdadm may add.
    public var name: String
    /// `raid1`, as mdadm reports it.
    public var level: String
    public var metadata: String?
    /// How many members the array is meant to have.
    public var raidDevices: Int
    /// The kernel device (`/dev/md127`) when the array is assembled.
    public var device: String?
    /// Member devices found, by path.
    public var members: [String]
    /// Bytes of each member the array uses; a new member must be at least this big.
    public var componentSizeBytes: UInt64?

    public init(
        uuid: String, name: String, level: String, metadata: String? = nil, raidDevices: Int,
        device: String? = nil, members: [String], componentSizeBytes: UInt64? = nil
    ) {
        self.uuid = uuid
        self.name = name
        self.level = level
        self.metadata = metadata
        self.raidDevices = raidDevices
        self.device = device
        self.members = members
        self.componentSizeBytes = componentSizeBytes
    }

    public var isDegraded: Bool { members.count < raidDevices }
}

public struct ObservedVolumeGroup: Codable, Hashable, Sendable {
    public var name: String
    public var uuid: String?
    public var extentSizeBytes: UInt64
    public var extentCount: UInt64
    public var freeExtents: UInt64
    public var physicalVolumes: [String]
    public var logicalVolumes: [ObservedLogicalVolume]

    public init(
        name: String, uuid: String? = nil, extentSizeBytes: UInt64, extentCount: UInt64, freeExtents: UInt64,
        physicalVolumes: [String], logicalVolumes: [ObservedLogicalVolume]
    ) {
        self.name = name
        self.uuid = uuid
        self.extentSizeBytes = extentSizeBytes
        self.extentCount = extentCount
        self.freeExtents = freeExtents
        self.physicalVolumes = physicalVolumes
        self.logicalVolumes = logicalVolumes
    }
}

public struct ObservedLogicalVolume: Codable, Hashable, Sendable {
    public var name: String
    public var sizeBytes: UInt64
    /// `/dev/<group>/<name>`.
    public var path: String

    public init(name: String, sizeBytes: UInt64, path: String) {
        self.name = name
        self.sizeBytes = sizeBytes
        self.path = path
    }
}
