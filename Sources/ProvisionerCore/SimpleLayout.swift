/// The short form of a layout, for the common case: one disk or a RAID1
/// mirror of two, LVM behind the scenes, and a list of volumes.
///
/// ```yaml
/// mirror:
///   - { type: nvme, size: 20GB }
///   - { type: nvme, size: 20GB }
/// volumes:
///   - { mount: /, size: 8GiB }
///   - { mount: /var, size: 4GiB, filesystem: xfs }
///   - { mount: /scratch, size: rest, preserve: true }
/// swap: 1GiB
/// ```
///
/// It expands to: on every disk an ESP (`esp:` sets its size, 512 MiB by
/// default) and a `system` partition with the rest; when mirrored, two RAID1
/// arrays (`esp` with the superblock at the end so firmware reads it as a plain
/// FAT filesystem, and `system`); a volume group `system` with one logical
/// volume per entry of `volumes` (named after its mount point) and `swap`.
struct SimpleLayout {
    static let groupName = "system"
    static let defaultESP = ByteSize(bytes: 512 << 20)

    var disks: [LogicalDisk] = []
    var esp = defaultESP
    var volumes: [LogicalVolumeSpec] = []
    var wipe: WipePolicy = .never

    init(_ root: ConfigMapping) throws(ConfigError) {
        let diskNode = root.optional("disk")
        let mirrorNode = root.optional("mirror")
        switch (diskNode, mirrorNode) {
        case (let node?, nil):
            disks = [LogicalDisk(name: "disk0", criteria: try DiskCriteria(config: node))]
        case (nil, let node?):
            let items = try node.list()
            guard items.count == 2 else {
                throw node.error("a mirror is two disks, found \(items.count)")
            }
            for (i, item) in items.enumerated() {
                disks.append(LogicalDisk(name: "disk\(i)", criteria: try DiskCriteria(config: item)))
            }
        case (_?, _?):
            throw root.node.error("has both disk and mirror; a simple layout uses one of them")
        case (nil, nil):
            throw root.node.error("a simple layout needs disk (one disk) or mirror (two disks)")
        }
        if let node = root.optional("esp") { esp = try node.size() }

        let volumesNode = try root.required("volumes")
        var names = Set<String>()
        for item in try volumesNode.list() {
            let fields = try item.mapping()
            let mountNode = try fields.required("mount")
            let mount = DiskLayout.normalizeMount(try mountNode.string())
            guard (try mountNode.string()).hasPrefix("/") else { throw mountNode.error("is not an absolute path") }
            let size = try SizeSpec.parse(try fields.required("size"))
            let type = try fields.optional("filesystem").map { n throws(ConfigError) in
                try DiskLayout.parseFilesystemType(n)
            } ?? .ext4
            guard type != .swap, type != .vfat else {
                throw item.error("volumes hold ext4 or xfs; use swap: for swap")
            }
            let nameNode = fields.optional("name")
            let name = try nameNode?.string() ?? Self.volumeName(mount)
            try DiskLayout.checkName(name, nameNode ?? item, what: "volume")
            guard names.insert(name).inserted else { throw item.error("a second volume is named \(name)") }
            let label = try fields.optional("label")?.string()
            let options = try fields.optional("mount-options")?.list().map { n throws(ConfigError) in
                try n.string()
            } ?? []
            let preserve = try fields.optional("preserve")?.bool() ?? false
            try fields.finish()
            let fs = FilesystemSpec(type: type, label: label, mount: mount, mountOptions: options)
            volumes.append(LogicalVolumeSpec(name: name, size: size, filesystem: fs, preserve: preserve))
        }
        if let node = root.optional("swap") {
            guard !names.contains("swap") else { throw node.error("a volume is already named swap") }
            let size = try SizeSpec.parse(node)
            volumes.append(LogicalVolumeSpec(name: "swap", size: size, filesystem: FilesystemSpec(type: .swap)))
        }
        wipe = try DiskLayout.parseWipe(root.optional("wipe"))
        try root.finish()
    }

    /// `/` is `root`; `/var/log` is `var-log`.
    static func volumeName(_ mount: String) -> String {
        mount == "/" ? "root" : mount.split(separator: "/").joined(separator: "-")
    }

    func expanded() -> DiskLayout {
        let mirrored = disks.count == 2
        let espFilesystem = FilesystemSpec(type: .vfat, label: "ESP", mount: "/boot/efi")
        var logical: [LogicalDisk] = []
        for disk in disks {
            let partitions = [
                PartitionSpec(
                    name: "esp", size: .fixed(esp), type: .esp, filesystem: mirrored ? nil : espFilesystem),
                PartitionSpec(name: Self.groupName, size: .rest, type: mirrored ? .raid : .lvm),
            ]
            logical.append(LogicalDisk(name: disk.name, criteria: disk.criteria, partitions: partitions))
        }
        var arrays: [ArraySpec] = []
        let physical: DeviceRef
        if mirrored {
            arrays = [
                ArraySpec(
                    name: "md-esp", level: .raid1, members: logical.map { .partition(disk: $0.name, name: "esp") },
                    metadata: "1.0", filesystem: espFilesystem),
                ArraySpec(
                    name: "md-system", level: .raid1,
                    members: logical.map { .partition(disk: $0.name, name: Self.groupName) }),
            ]
            physical = .array("md-system")
        } else {
            physical = .partition(disk: logical[0].name, name: Self.groupName)
        }
        let group = VolumeGroupSpec(name: Self.groupName, devices: [physical], volumes: volumes)
        return DiskLayout(disks: logical, arrays: arrays, volumeGroups: [group], wipe: wipe)
    }
}
