/// What a machine's disks are and what is on them, as the agent observed it.
///
/// This is the JSON of `provisioner-agent disks --json`; it is also what
/// `match --inventory` reads back, so a layout can be checked against a
/// captured machine. Field names are documented in docs/inventory.md.
public struct Inventory: Codable, Hashable, Sendable {
    public var disks: [Disk]

    public init(disks: [Disk]) { self.disks = disks }
}

/// How a disk is attached. Decides the `type` a layout can ask for.
public enum Transport: String, Codable, Hashable, Sendable, CaseIterable {
    case nvme, sata, sas, scsi, virtio, usb, mmc, ata, md, dm, loop, ram, zram, unknown

    /// Decoding never fails on a transport a newer agent knows and we do not.
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        self = Transport(rawValue: raw) ?? .unknown
    }
}

public struct Disk: Codable, Hashable, Sendable {
    /// Kernel name, e.g. `nvme0n1`. Not stable across boots: never match on it.
    public var name: String
    /// `/dev/<name>`.
    public var path: String
    public var transport: Transport
    public var rotational: Bool
    public var vendor: String?
    public var model: String?
    public var serial: String?
    public var wwn: String?
    public var sizeBytes: UInt64
    public var logicalSectorSize: Int
    public var physicalSectorSize: Int
    public var readOnly: Bool
    public var removable: Bool
    /// Full `/dev/disk/by-id/...` links to this disk, sorted.
    public var byId: [String]
    /// The `/dev/disk/by-path/...` link, if udev made one.
    public var byPath: String?
    /// The device's directory under /sys/devices (its place on the buses).
    public var sysfsPath: String?
    /// The partition table found on the disk, if any.
    public var partitionTable: PartitionTable?
    public var partitions: [Partition]
    /// Signatures on the whole disk itself (a filesystem, RAID member or LVM PV
    /// written straight onto the disk, or a partition table's magic).
    public var signatures: [Signature]
    /// Kernel devices stacked on this disk (e.g. `md127`, `dm-0`).
    public var holders: [String]
    public var mountpoints: [String]
    /// Why the disk's contents could not be read, when they could not. Nothing
    /// is ever written to a disk whose contents are unknown.
    public var probeError: String?

    public init(
        name: String, path: String, transport: Transport, rotational: Bool, vendor: String? = nil,
        model: String? = nil, serial: String? = nil, wwn: String? = nil, sizeBytes: UInt64,
        logicalSectorSize: Int = 512, physicalSectorSize: Int = 512, readOnly: Bool = false,
        removable: Bool = false, byId: [String] = [], byPath: String? = nil, sysfsPath: String? = nil,
        partitionTable: PartitionTable? = nil, partitions: [Partition] = [], signatures: [Signature] = [],
        holders: [String] = [], mountpoints: [String] = [], probeError: String? = nil
    ) {
        self.name = name
        self.path = path
        self.transport = transport
        self.rotational = rotational
        self.vendor = vendor
        self.model = model
        self.serial = serial
        self.wwn = wwn
        self.sizeBytes = sizeBytes
        self.logicalSectorSize = logicalSectorSize
        self.physicalSectorSize = physicalSectorSize
        self.readOnly = readOnly
        self.removable = removable
        self.byId = byId
        self.byPath = byPath
        self.sysfsPath = sysfsPath
        self.partitionTable = partitionTable
        self.partitions = partitions
        self.signatures = signatures
        self.holders = holders
        self.mountpoints = mountpoints
        self.probeError = probeError
    }

    enum CodingKeys: String, CodingKey {
        case name, path, transport, rotational, vendor, model, serial, wwn, sizeBytes, logicalSectorSize
        case physicalSectorSize, readOnly, removable, byId, byPath, sysfsPath, partitionTable, partitions
        case signatures, holders, mountpoints, probeError
    }

    // Optional collections default to empty so hand-written or older inventories load.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        path = try c.decodeIfPresent(String.self, forKey: .path) ?? "/dev/\(name)"
        transport = try c.decodeIfPresent(Transport.self, forKey: .transport) ?? .unknown
        rotational = try c.decodeIfPresent(Bool.self, forKey: .rotational) ?? false
        vendor = try c.decodeIfPresent(String.self, forKey: .vendor)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        serial = try c.decodeIfPresent(String.self, forKey: .serial)
        wwn = try c.decodeIfPresent(String.self, forKey: .wwn)
        sizeBytes = try c.decode(UInt64.self, forKey: .sizeBytes)
        logicalSectorSize = try c.decodeIfPresent(Int.self, forKey: .logicalSectorSize) ?? 512
        physicalSectorSize = try c.decodeIfPresent(Int.self, forKey: .physicalSectorSize) ?? 512
        readOnly = try c.decodeIfPresent(Bool.self, forKey: .readOnly) ?? false
        removable = try c.decodeIfPresent(Bool.self, forKey: .removable) ?? false
        byId = try c.decodeIfPresent([String].self, forKey: .byId) ?? []
        byPath = try c.decodeIfPresent(String.self, forKey: .byPath)
        sysfsPath = try c.decodeIfPresent(String.self, forKey: .sysfsPath)
        partitionTable = try c.decodeIfPresent(PartitionTable.self, forKey: .partitionTable)
        partitions = try c.decodeIfPresent([Partition].self, forKey: .partitions) ?? []
        signatures = try c.decodeIfPresent([Signature].self, forKey: .signatures) ?? []
        holders = try c.decodeIfPresent([String].self, forKey: .holders) ?? []
        mountpoints = try c.decodeIfPresent([String].self, forKey: .mountpoints) ?? []
        probeError = try c.decodeIfPresent(String.self, forKey: .probeError)
    }

    /// Solid state: not rotational. NVMe disks are solid state too.
    public var isSolidState: Bool { !rotational }

    /// Devices that are never a candidate unless the admin asks for them:
    /// software devices stacked on real disks, or living in memory.
    public var isVirtualBlockDevice: Bool {
        [.md, .dm, .loop, .ram, .zram].contains(transport)
    }
}

public struct PartitionTable: Codable, Hashable, Sendable {
    /// `gpt` or `dos`, as libblkid names them.
    public var type: String
    /// The disk GUID (GPT) or disk identifier (DOS).
    public var uuid: String?

    public init(type: String, uuid: String? = nil) {
        self.type = type
        self.uuid = uuid
    }
}

public struct Partition: Codable, Hashable, Sendable {
    public var number: Int
    /// Kernel name (e.g. `nvme0n1p1`) when the kernel knows the partition.
    public var name: String?
    public var path: String?
    public var startBytes: UInt64
    public var sizeBytes: UInt64
    /// GPT type GUID or DOS type code (`0x83`).
    public var typeUUID: String?
    /// GPT partition GUID.
    public var uuid: String?
    /// GPT partition name.
    public var label: String?
    public var signatures: [Signature]
    public var holders: [String]
    public var mountpoints: [String]

    public init(
        number: Int, name: String? = nil, path: String? = nil, startBytes: UInt64, sizeBytes: UInt64,
        typeUUID: String? = nil, uuid: String? = nil, label: String? = nil, signatures: [Signature] = [],
        holders: [String] = [], mountpoints: [String] = []
    ) {
        self.number = number
        self.name = name
        self.path = path
        self.startBytes = startBytes
        self.sizeBytes = sizeBytes
        self.typeUUID = typeUUID
        self.uuid = uuid
        self.label = label
        self.signatures = signatures
        self.holders = holders
        self.mountpoints = mountpoints
    }
}

/// Something libblkid recognised: a filesystem, a RAID member, an LVM PV, a
/// partition table's magic.
public struct Signature: Codable, Hashable, Sendable {
    /// libblkid's TYPE: `ext4`, `xfs`, `vfat`, `swap`, `linux_raid_member`, `LVM2_member`, `gpt`, ...
    public var type: String
    /// libblkid's USAGE: `filesystem`, `raid`, `crypto`, `other`, or `partition_table`.
    public var usage: String?
    public var label: String?
    public var uuid: String?
    /// For RAID members: the array's UUID is `uuid`, the member's own is here.
    public var subUUID: String?
    public var version: String?
    /// Byte offset of the magic from the start of the device.
    public var offset: UInt64?

    public init(
        type: String, usage: String? = nil, label: String? = nil, uuid: String? = nil,
        subUUID: String? = nil, version: String? = nil, offset: UInt64? = nil
    ) {
        self.type = type
        self.usage = usage
        self.label = label
        self.uuid = uuid
        self.subUUID = subUUID
        self.version = version
        self.offset = offset
    }
}

extension Disk {
    /// A short description of what is on the disk, for tables and errors:
    /// `gpt: 3 partitions`, `linux_raid_member`, `empty`.
    public var contentSummary: String {
        if let probeError { return "unreadable: \(probeError)" }
        var parts: [String] = []
        if let table = partitionTable {
            parts.append("\(table.type): \(partitions.count) partition\(partitions.count == 1 ? "" : "s")")
        }
        let whole = signatures.filter { $0.usage != "partition_table" }.map(\.type)
        parts.append(contentsOf: whole)
        if !holders.isEmpty { parts.append("held by \(holders.joined(separator: ","))") }
        if !mountpoints.isEmpty { parts.append("mounted on \(mountpoints.joined(separator: ","))") }
        return parts.isEmpty ? "empty" : parts.joined(separator: "; ")
    }
}
