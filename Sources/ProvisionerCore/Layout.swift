/// The disk layout a node should have: which disks, and what goes on them.
///
/// There are two ways to write one (docs/layout.md has the full reference):
///
/// - **simple**: `disk:` or `mirror:`, then `volumes:` and `swap:`. It expands
///   to an advanced layout (ESP, RAID1 when mirrored, one LVM volume group);
///   `provisioner-agent layout expand` prints the expansion.
/// - **advanced**: `disks:` with GPT partitions, `arrays:` (MD RAID),
///   `volume-groups:` (LVM), and a filesystem on any of them.
///
/// A layout that only lists `disks:` with `match:` is valid: it names the
/// disks a node has without asking for anything on them.
public struct DiskLayout: Hashable, Sendable {
    public var disks: [LogicalDisk]
    public var arrays: [ArraySpec]
    public var volumeGroups: [VolumeGroupSpec]
    /// Whether existing content that differs from the layout may be destroyed.
    public var wipe: WipePolicy

    public init(
        disks: [LogicalDisk], arrays: [ArraySpec] = [], volumeGroups: [VolumeGroupSpec] = [],
        wipe: WipePolicy = .never
    ) {
        self.disks = disks
        self.arrays = arrays
        self.volumeGroups = volumeGroups
        self.wipe = wipe
    }
}

/// What may happen to content on the disks that the layout does not describe.
public enum WipePolicy: String, Hashable, Sendable, CaseIterable {
    /// Never destroy anything that is there: a differing disk is refused.
    case never
    /// Destroy what differs from the layout (but never a preserved volume).
    case ifDifferent = "if-different"
}

/// How big a partition or logical volume is.
public enum SizeSpec: Hashable, Sendable, CustomStringConvertible {
    case fixed(ByteSize)
    /// Hundredths of a percent of the disk or volume group (`12.5%` is 1250).
    case percent(basisPoints: Int)
    /// Whatever is left; at most one per disk or volume group.
    case rest

    public var description: String {
        switch self {
        case .fixed(let size): size.binaryDescription
        case .percent(let bp): bp % 100 == 0 ? "\(bp / 100)%" : "\(Double(bp) / 100)%"
        case .rest: "rest"
        }
    }

    static func parse(_ node: ConfigNode) throws(ConfigError) -> SizeSpec {
        let text = try node.string().trimmed
        if text == "rest" { return .rest }
        if text.hasSuffix("%") {
            let number = text.dropLast().trimmed
            guard let value = Double(number), value > 0, value <= 100 else {
                throw node.error("\"\(text)\" is not a percentage between 0% and 100%")
            }
            return .percent(basisPoints: Int((value * 100).rounded()))
        }
        let size = try node.size()
        guard size.bytes > 0 else { throw node.error("a size of zero leaves nothing to use") }
        return .fixed(size)
    }
}

public enum FilesystemType: String, Hashable, Sendable, CaseIterable {
    case ext4, xfs, vfat, swap

    /// The TYPE libblkid reports for a filesystem of this kind.
    public var blkidType: String { self.rawValue }
}

/// A filesystem (or swap area) on a partition, array or logical volume.
public struct FilesystemSpec: Hashable, Sendable {
    public var type: FilesystemType
    public var label: String?
    /// Where it is mounted, relative to the node's root; nil for unmounted filesystems and swap.
    public var mount: String?
    public var mkfsOptions: [String]
    public var mountOptions: [String]

    public init(
        type: FilesystemType, label: String? = nil, mount: String? = nil, mkfsOptions: [String] = [],
        mountOptions: [String] = []
    ) {
        self.type = type
        self.label = label
        self.mount = mount
        self.mkfsOptions = mkfsOptions
        self.mountOptions = mountOptions
    }
}

/// The GPT partition type, by role or by GUID.
public enum PartitionType: Hashable, Sendable, CustomStringConvertible {
    case esp, biosBoot, linux, raid, lvm, swap
    case guid(String)

    public var guid: String {
        switch self {
        case .esp: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        case .biosBoot: "21686148-6449-6E6F-744E-656564454649"
        case .linux: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        case .raid: "A19D880F-05FC-4D3B-A006-743F0F84911E"
        case .lvm: "E6D6D379-F507-44C2-A23C-238F2A3DF928"
        case .swap: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
        case .guid(let g): g.uppercased()
        }
    }

    public var description: String {
        switch self {
        case .esp: "esp"
        case .biosBoot: "bios-boot"
        case .linux: "linux"
        case .raid: "raid"
        case .lvm: "lvm"
        case .swap: "swap"
        case .guid(let g): g.uppercased()
        }
    }

    static let named: [String: PartitionType] = [
        "esp": .esp, "bios-boot": .biosBoot, "linux": .linux, "raid": .raid, "lvm": .lvm, "swap": .swap,
    ]

    static func parse(_ node: ConfigNode) throws(ConfigError) -> PartitionType {
        let text = try node.string().trimmed
        if let known = named[text.lowercased()] { return known }
        if isGUID(text) {
            let upper = text.uppercased()
            return named.values.first { $0.guid == upper } ?? .guid(upper)
        }
        throw node.error(
            "\"\(text)\" is not a partition type; use esp, bios-boot, linux, raid, lvm, swap or a GPT type GUID")
    }

    static func isGUID(_ text: String) -> Bool {
        let groups = text.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.map(\.count) == [8, 4, 4, 4, 12] else { return false }
        return groups.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }
}

public struct PartitionSpec: Hashable, Sendable {
    /// The GPT partition name; references use `disk/name`.
    public var name: String
    public var size: SizeSpec
    public var type: PartitionType
    public var filesystem: FilesystemSpec?
    /// Keep the content across re-layouts (refuse rather than destroy it).
    public var preserve: Bool

    public init(
        name: String, size: SizeSpec, type: PartitionType = .linux, filesystem: FilesystemSpec? = nil,
        preserve: Bool = false
    ) {
        self.name = name
        self.size = size
        self.type = type
        self.filesystem = filesystem
        self.preserve = preserve
    }
}

public enum RaidLevel: Int, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case raid0 = 0, raid1 = 1, raid5 = 5, raid6 = 6, raid10 = 10

    /// The fewest members an array of this level can be created with.
    public var minimumMembers: Int {
        switch self {
        case .raid0, .raid1, .raid10: 2
        case .raid5: 3
        case .raid6: 4
        }
    }

    public var description: String { "raid\(rawValue)" }
}

/// An MD RAID array. Its device is `/dev/md/<name>`.
public struct ArraySpec: Hashable, Sendable {
    public var name: String
    public var level: RaidLevel
    /// Member devices, as references (`disk0/system`).
    public var members: [DeviceRef]
    /// The superblock format: `1.2` (default) or `1.0` (at the end, for an ESP the firmware reads).
    public var metadata: String
    public var filesystem: FilesystemSpec?
    public var preserve: Bool

    public init(
        name: String, level: RaidLevel, members: [DeviceRef], metadata: String = "1.2",
        filesystem: FilesystemSpec? = nil, preserve: Bool = false
    ) {
        self.name = name
        self.level = level
        self.members = members
        self.metadata = metadata
        self.filesystem = filesystem
        self.preserve = preserve
    }
}

public struct VolumeGroupSpec: Hashable, Sendable {
    public var name: String
    /// Physical volumes, as references (a partition or an array).
    public var devices: [DeviceRef]
    public var volumes: [LogicalVolumeSpec]

    public init(name: String, devices: [DeviceRef], volumes: [LogicalVolumeSpec]) {
        self.name = name
        self.devices = devices
        self.volumes = volumes
    }
}

public struct LogicalVolumeSpec: Hashable, Sendable {
    public var name: String
    /// A percentage means a share of the whole volume group.
    public var size: SizeSpec
    public var filesystem: FilesystemSpec?
    public var preserve: Bool

    public init(name: String, size: SizeSpec, filesystem: FilesystemSpec? = nil, preserve: Bool = false) {
        self.name = name
        self.size = size
        self.filesystem = filesystem
        self.preserve = preserve
    }
}

/// A block device the layout defines: where a filesystem, an array member or
/// a physical volume goes.
public enum DeviceRef: Hashable, Sendable, Comparable, CustomStringConvertible {
    case partition(disk: String, name: String)
    case array(String)
    case logicalVolume(group: String, name: String)

    public var description: String {
        switch self {
        case .partition(let disk, let name): "\(disk)/\(name)"
        case .array(let name): name
        case .logicalVolume(let group, let name): "\(group)/\(name)"
        }
    }

    public static func < (a: DeviceRef, b: DeviceRef) -> Bool { a.description < b.description }
}

// MARK: - Reading

extension DiskLayout {
    /// Parses a layout from YAML or JSON text; `source` names it in errors.
    /// Simple layouts are expanded; the result is always validated.
    public init(parsing text: String, source: String) throws(ConfigError) {
        let root = try ConfigNode.parse(text, source: source).mapping()
        let isSimple = root.keys.contains("volumes") || root.keys.contains("disk") || root.keys.contains("mirror")
        if isSimple {
            self = try SimpleLayout(root).expanded()
        } else {
            self = try Self.parseAdvanced(root)
        }
        try validate()
    }

    static func parseAdvanced(_ root: ConfigMapping) throws(ConfigError) -> DiskLayout {
        let disksNode = try root.required("disks")
        let entries = try disksNode.mapping().all()
        guard !entries.isEmpty else { throw disksNode.error("lists no disks") }
        var disks: [LogicalDisk] = []
        for (name, node) in entries {
            try checkName(name, node, what: "disk")
            let fields = try node.mapping()
            let criteria = try DiskCriteria(config: try fields.required("match"))
            var partitions: [PartitionSpec] = []
            if let list = fields.optional("partitions") {
                for item in try list.list() { partitions.append(try parsePartition(item)) }
            }
            try fields.finish()
            disks.append(LogicalDisk(name: name, criteria: criteria, partitions: partitions))
        }
        var arrays: [ArraySpec] = []
        if let node = root.optional("arrays") {
            for (name, value) in try node.mapping().all() {
                try checkName(name, value, what: "array")
                arrays.append(try parseArray(name, value))
            }
        }
        var groups: [VolumeGroupSpec] = []
        if let node = root.optional("volume-groups") {
            for (name, value) in try node.mapping().all() {
                try checkName(name, value, what: "volume group")
                groups.append(try parseVolumeGroup(name, value))
            }
        }
        let wipe = try parseWipe(root.optional("wipe"))
        try root.finish()
        return DiskLayout(
            disks: disks.sorted { LogicalDisk.naturalOrder($0.name, $1.name) }, arrays: arrays,
            volumeGroups: groups, wipe: wipe)
    }

    static func checkName(_ name: String, _ node: ConfigNode, what: String) throws(ConfigError) {
        guard LogicalDisk.isValidName(name) else {
            throw node.error(
                "\"\(name)\" is not a valid \(what) name; use a letter then letters, digits, - or _")
        }
    }

    static func parseWipe(_ node: ConfigNode?) throws(ConfigError) -> WipePolicy {
        guard let node else { return .never }
        let text = try node.string()
        guard let policy = WipePolicy(rawValue: text) else {
            throw node.error("\"\(text)\" is not a wipe policy; use never or if-different")
        }
        return policy
    }

    static func parsePartition(_ node: ConfigNode) throws(ConfigError) -> PartitionSpec {
        let fields = try node.mapping()
        let nameNode = try fields.required("name")
        let name = try nameNode.string()
        try checkName(name, nameNode, what: "partition")
        guard name.utf16.count <= 36 else { throw nameNode.error("is longer than GPT's 36 characters") }
        let size = try SizeSpec.parse(try fields.required("size"))
        let type = try fields.optional("type").map { n throws(ConfigError) in try PartitionType.parse(n) }
        let filesystem = try fields.optional("filesystem").map { n throws(ConfigError) in try parseFilesystem(n) }
        let preserve = try fields.optional("preserve")?.bool() ?? false
        try fields.finish()
        let defaultType: PartitionType =
            switch filesystem?.type {
            case .swap: .swap
            case .vfat where filesystem?.mount == "/boot/efi": .esp
            default: .linux
            }
        return PartitionSpec(
            name: name, size: size, type: type ?? defaultType, filesystem: filesystem, preserve: preserve)
    }

    static func parseArray(_ name: String, _ node: ConfigNode) throws(ConfigError) -> ArraySpec {
        let fields = try node.mapping()
        let levelNode = try fields.required("level")
        var levelText = try levelNode.string().lowercased()
        if levelText.hasPrefix("raid") { levelText.removeFirst(4) }
        guard let number = Int(levelText), let level = RaidLevel(rawValue: number) else {
            throw levelNode.error("\"\(try levelNode.string())\" is not a RAID level; use 0, 1, 5, 6 or 10")
        }
        let membersNode = try fields.required("devices")
        let members = try membersNode.list().map { n throws(ConfigError) in try parseRef(n) }
        let metadataNode = fields.optional("metadata")
        let metadata = try metadataNode?.string() ?? "1.2"
        guard ["1.0", "1.1", "1.2"].contains(metadata) else {
            throw metadataNode!.error("\"\(metadata)\" is not a supported superblock format; use 1.0, 1.1 or 1.2")
        }
        let filesystem = try fields.optional("filesystem").map { n throws(ConfigError) in try parseFilesystem(n) }
        let preserve = try fields.optional("preserve")?.bool() ?? false
        try fields.finish()
        return ArraySpec(
            name: name, level: level, members: members, metadata: metadata, filesystem: filesystem,
            preserve: preserve)
    }

    static func parseVolumeGroup(_ name: String, _ node: ConfigNode) throws(ConfigError) -> VolumeGroupSpec {
        let fields = try node.mapping()
        let devices = try fields.required("devices").list().map { n throws(ConfigError) in try parseRef(n) }
        var volumes: [LogicalVolumeSpec] = []
        if let volumesNode = fields.optional("volumes") {
            for (lvName, value) in try volumesNode.mapping().all() {
                try checkName(lvName, value, what: "logical volume")
                let lv = try value.mapping()
                let size = try SizeSpec.parse(try lv.required("size"))
                let filesystem = try lv.optional("filesystem").map { n throws(ConfigError) in
                    try parseFilesystem(n)
                }
                let preserve = try lv.optional("preserve")?.bool() ?? false
                try lv.finish()
                volumes.append(LogicalVolumeSpec(name: lvName, size: size, filesystem: filesystem, preserve: preserve))
            }
        }
        try fields.finish()
        return VolumeGroupSpec(name: name, devices: devices, volumes: volumes)
    }

    /// `disk0/esp` (a partition or a logical volume) or `system` (an array);
    /// resolved against the layout's names by `validate()`.
    static func parseRef(_ node: ConfigNode) throws(ConfigError) -> DeviceRef {
        let text = try node.string().trimmed
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        switch parts.count {
        case 1 where LogicalDisk.isValidName(parts[0]):
            return .array(parts[0])
        case 2 where LogicalDisk.isValidName(parts[0]) && LogicalDisk.isValidName(parts[1]):
            // Which of the two it is, is settled once all names are known.
            return .partition(disk: parts[0], name: parts[1])
        default:
            throw node.error("\"\(text)\" is not a device reference; use disk/partition, group/volume or an array name")
        }
    }

    static func parseFilesystem(_ node: ConfigNode) throws(ConfigError) -> FilesystemSpec {
        // Shorthand: `filesystem: ext4`.
        if case .scalar = node.value { return FilesystemSpec(type: try parseFilesystemType(node)) }
        let fields = try node.mapping()
        let type = try parseFilesystemType(try fields.required("type"))
        let labelNode = fields.optional("label")
        let label = try labelNode?.string()
        if let label, let labelNode {
            let limit = type == .vfat ? 11 : (type == .xfs ? 12 : 16)
            guard label.utf8.count <= limit else {
                throw labelNode.error("\"\(label)\" is longer than the \(limit) bytes a \(type.rawValue) label holds")
            }
        }
        let mountNode = fields.optional("mount")
        let mount = try mountNode?.string()
        if let mount, let mountNode {
            guard mount.hasPrefix("/"), !mount.split(separator: "/").contains(where: { $0 == ".." || $0 == "." })
            else { throw mountNode.error("\"\(mount)\" is not an absolute mount point without . or ..") }
            guard type != .swap else { throw mountNode.error("swap is not mounted; remove mount") }
        }
        let mkfs = try fields.optional("mkfs-options")?.list().map { n throws(ConfigError) in try n.string() } ?? []
        let mountOptionsNode = fields.optional("mount-options")
        let mountOptions = try mountOptionsNode?.list().map { n throws(ConfigError) in try n.string() } ?? []
        if let mountOptionsNode {
            // Read as the mount will read them, so a refused one stops the layout before any disk.
            do { _ = try MountOptions(mountOptions) } catch { throw mountOptionsNode.error("\(error)") }
        }
        try fields.finish()
        return FilesystemSpec(
            type: type, label: label, mount: mount.map(normalizeMount), mkfsOptions: mkfs,
            mountOptions: mountOptions)
    }

    static func parseFilesystemType(_ node: ConfigNode) throws(ConfigError) -> FilesystemType {
        let text = try node.string()
        guard let type = FilesystemType(rawValue: text.lowercased()) else {
            throw node.error("\"\(text)\" is not a supported filesystem; use ext4, xfs, vfat or swap")
        }
        return type
    }

    static func normalizeMount(_ path: String) -> String {
        let parts = path.split(separator: "/")
        return "/" + parts.joined(separator: "/")
    }
}
