import Testing

@testable import ProvisionerCore

/// Fixtures: two 4 GB NVMe disks and the simple mirror layout of docs/layout.md,
/// with the observed state that layout leaves behind.
enum LayoutFixture {
    static let size: UInt64 = 4_000_000_000
    static let extent: UInt64 = 4 << 20

    static let mirrorYAML = """
        mirror:
          - { type: nvme, size: 4GB }
          - { type: nvme, size: 4GB }
        volumes:
          - { mount: /, size: 1536MiB }
          - { mount: /var, size: 512MiB, filesystem: xfs }
          - { mount: /scratch, size: rest, preserve: true }
        swap: 256MiB
        wipe: if-different
        """

    static func layout(_ yaml: String = mirrorYAML) throws -> DiskLayout {
        try DiskLayout(parsing: yaml, source: "test.yaml")
    }

    static func disk(_ name: String, serial: String, size: UInt64 = size) -> Disk {
        Disk(name: name, path: "/dev/\(name)", transport: .nvme, rotational: false, serial: serial, sizeBytes: size)
    }

    static func blankAssignment() -> DiskAssignment {
        DiskAssignment(disks: ["disk0": disk("nvme0n1", serial: "A"), "disk1": disk("nvme1n1", serial: "B")])
    }

    static let espUUID = "11111111:11111111:11111111:11111111"
    static let systemUUID = "22222222:22222222:22222222:22222222"

    /// The disk as the layout leaves it: GPT with esp and system, both RAID members.
    static func partitioned(_ disk: Disk, layout: DiskLayout) throws -> Disk {
        var disk = disk
        let parts = try LayoutPlanner.geometry(layout.disks[0].partitions, diskSize: disk.sizeBytes, sectorSize: 512)
        disk.partitionTable = PartitionTable(type: "gpt", uuid: "disk-guid")
        disk.signatures = [Signature(type: "gpt", usage: "partition_table")]
        disk.partitions = parts.map { p in
            let uuid = p.number == 1 ? espUUID : systemUUID
            return Partition(
                number: p.number, name: "\(disk.name)p\(p.number)", path: "\(disk.path)p\(p.number)",
                startBytes: p.startBytes, sizeBytes: p.sizeBytes, typeUUID: p.typeGUID, label: p.name,
                signatures: [Signature(type: "linux_raid_member", usage: "raid", uuid: uuid)])
        }
        return disk
    }

    static func convergedAssignment() throws -> DiskAssignment {
        let l = try layout()
        return DiskAssignment(disks: [
            "disk0": try partitioned(disk("nvme0n1", serial: "A"), layout: l),
            "disk1": try partitioned(disk("nvme1n1", serial: "B"), layout: l),
        ])
    }

    static func convergedObserved(members: [String] = ["/dev/nvme0n1", "/dev/nvme1n1"]) -> ObservedStorage {
        let systemExtents: UInt64 = 3_459_000_000 / extent  // what md-system holds, in extents
        let fixed: UInt64 = (1536 + 512 + 256) / 4
        let lv: (String, UInt64, String, String?) -> (ObservedLogicalVolume, [Signature]) = { name, extents, type, label in
            (ObservedLogicalVolume(name: name, sizeBytes: extents * extent, path: "/dev/system/\(name)"),
             [Signature(type: type, usage: "filesystem", label: label)])
        }
        let volumes = [
            lv("root", 384, "ext4", nil), lv("var", 128, "xfs", nil), lv("swap", 64, "swap", nil),
            lv("scratch", systemExtents - fixed, "ext4", nil),
        ]
        var contents: [String: [Signature]] = ["/dev/md127": [Signature(type: "vfat", usage: "filesystem", label: "ESP")]]
        for (v, sigs) in volumes { contents[v.path] = sigs }
        return ObservedStorage(
            arrays: [
                ObservedArray(
                    uuid: espUUID, name: "md-esp", level: "raid1", metadata: "1.0", raidDevices: 2,
                    device: "/dev/md127", members: members.map { "\($0)p1" }, componentSizeBytes: 536_870_912 - 65536),
                ObservedArray(
                    uuid: systemUUID, name: "md-system", level: "raid1", metadata: "1.2", raidDevices: 2,
                    device: "/dev/md126", members: members.map { "\($0)p2" }, componentSizeBytes: 3_459_000_000),
            ],
            volumeGroups: [
                ObservedVolumeGroup(
                    name: "system", extentSizeBytes: extent, extentCount: systemExtents, freeExtents: 0,
                    physicalVolumes: ["/dev/md126"], logicalVolumes: volumes.map(\.0))
            ],
            physicalVolumes: ["/dev/md126": "system"], contents: contents)
    }

    static func kinds(_ plan: LayoutPlan) -> [String] {
        plan.actions.map { action in
            switch action.operation {
            case .deactivateVolumeGroup: "deactivate"
            case .stopArray: "stop"
            case .failArrayMember: "fail"
            case .removeVolumeGroup: "vgremove"
            case .removeLogicalVolume(_, let name, _): "lvremove \(name)"
            case .wipe(let device): "wipe \(device)"
            case .writePartitionTable(let disk, _): "gpt \(disk)"
            case .addPartitions(let disk, let parts): "append \(disk) \(parts.map(\.number))"
            case .setPartitionName(_, let n, _): "name \(n)"
            case .setPartitionType(_, let n, _): "type \(n)"
            case .createArray(let name, _, _, _): "mdcreate \(name)"
            case .addArrayMember(let name, _, let member): "mdadd \(name) \(member)"
            case .createPhysicalVolume(let d): "pvcreate \(d)"
            case .createVolumeGroup(let name, _): "vgcreate \(name)"
            case .createLogicalVolume(_, let name, let size, _): "lvcreate \(name) \(size)"
            case .extendLogicalVolume(_, let name, let size, _): "lvextend \(name) \(size)"
            case .makeFilesystem(let d, let fs): "mkfs \(fs.type.rawValue) \(d)"
            case .setLabel(let d, _, let label): "label \(d) \(label)"
            }
        }
    }
}

@Suite struct LayoutPlannerTests {
    typealias F = LayoutFixture

    @Test func blankDisksGetTheWholeStack() throws {
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: F.blankAssignment(), observed: .init())
        #expect(plan.refusals == [])
        #expect(!plan.destroysData)
        #expect(F.kinds(plan) == [
            "gpt /dev/nvme0n1", "gpt /dev/nvme1n1",
            "mdcreate md-esp", "mdcreate md-system",
            "pvcreate /dev/md/md-system", "vgcreate system",
            "lvcreate root 1.5 GiB", "lvcreate var 512.0 MiB", "lvcreate swap 256.0 MiB", "lvcreate scratch all free space",
            "mkfs vfat /dev/md/md-esp", "mkfs ext4 /dev/system/root", "mkfs xfs /dev/system/var",
            "mkfs ext4 /dev/system/scratch", "mkfs swap /dev/system/swap",
        ])
        // Parents before children.
        #expect(plan.activation.mounts.map(\.mountPoint) == ["/", "/scratch", "/var", "/boot/efi"])
        #expect(plan.activation.swaps == ["/dev/system/swap"])
    }

    @Test func convergedDisksGiveAnEmptyPlan() throws {
        let plan = LayoutPlanner.plan(
            layout: try F.layout(), assignment: try F.convergedAssignment(), observed: F.convergedObserved())
        #expect(plan.actions == [])
        #expect(plan.refusals == [])
        #expect(plan.isConverged)
        // Existing arrays are used by their kernel names.
        #expect(plan.activation.mounts.first { $0.mountPoint == "/boot/efi" }?.device == "/dev/md127")
        #expect(plan.notes.contains { $0.contains("system/scratch is preserved") })
    }

    @Test func detailsThatDoNotMatterCauseNoChange() throws {
        var assignment = try F.convergedAssignment()
        // Another tool ended the last partition at the last usable sector, not on a MiB boundary,
        // and the GUIDs differ: still converged.
        assignment.disks["disk0"]!.partitions[1].sizeBytes += 512 * 30
        assignment.disks["disk0"]!.partitions[1].uuid = "some-other-guid"
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: assignment, observed: F.convergedObserved())
        #expect(plan.actions == [])
    }

    @Test func replacedMirrorMemberIsRepairedWithoutTouchingItsTwin() throws {
        var assignment = try F.convergedAssignment()
        assignment.disks["disk1"] = F.disk("nvme2n1", serial: "C", size: F.size + 3_000_000)  // blank, a bit bigger
        let observed = F.convergedObserved(members: ["/dev/nvme0n1"])
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: assignment, observed: observed)
        #expect(plan.refusals == [])
        #expect(F.kinds(plan) == ["gpt /dev/nvme2n1", "mdadd md-esp /dev/nvme2n1p1", "mdadd md-system /dev/nvme2n1p2"])
        #expect(!plan.destroysData)
        #expect(!plan.actions.contains { $0.device.hasPrefix("/dev/nvme0n1") })
        #expect(plan.notes.contains { $0.contains("repaired") })
    }

    @Test func replacementDiskTooSmallForTheArrayIsRefused() throws {
        var assignment = try F.convergedAssignment()
        assignment.disks["disk1"] = F.disk("nvme2n1", serial: "C", size: F.size - 100_000_000)
        let plan = LayoutPlanner.plan(
            layout: try F.layout(), assignment: assignment, observed: F.convergedObserved(members: ["/dev/nvme0n1"]))
        #expect(plan.refusals.contains { $0.contains("md-system needs members of at least") })
    }

    @Test func foreignContentIsRefusedUnderWipeNever() throws {
        let yaml = F.mirrorYAML.replacingOccurrences(of: "wipe: if-different", with: "wipe: never")
        var assignment = F.blankAssignment()
        assignment.disks["disk0"]!.partitionTable = PartitionTable(type: "dos")
        assignment.disks["disk0"]!.partitions = [
            Partition(number: 1, path: "/dev/nvme0n1p1", startBytes: 1 << 20, sizeBytes: 1 << 30,
                      signatures: [Signature(type: "ext4", usage: "filesystem", label: "olddata")])
        ]
        let plan = LayoutPlanner.plan(layout: try F.layout(yaml), assignment: assignment, observed: .init())
        #expect(plan.refusals.count == 1)
        let refusal = try #require(plan.refusals.first)
        #expect(refusal.contains("/dev/nvme0n1"))
        #expect(refusal.contains("ext4 \"olddata\" on /dev/nvme0n1p1"))
        #expect(refusal.contains("wipe policy is never"))
    }

    @Test func foreignContentIsReplacedUnderIfDifferent() throws {
        var assignment = F.blankAssignment()
        assignment.disks["disk0"]!.partitionTable = PartitionTable(type: "dos")
        assignment.disks["disk0"]!.partitions = [
            Partition(number: 1, path: "/dev/nvme0n1p1", startBytes: 1 << 20, sizeBytes: 1 << 30,
                      signatures: [Signature(type: "ext4", usage: "filesystem")])
        ]
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: assignment, observed: .init())
        #expect(plan.refusals == [])
        #expect(Array(F.kinds(plan).prefix(3)) == ["wipe /dev/nvme0n1p1", "wipe /dev/nvme0n1", "gpt /dev/nvme0n1"])
        #expect(plan.actions[2].destroys.contains("dos partition table on /dev/nvme0n1"))
    }

    @Test func anythingInUseIsRefused() throws {
        var assignment = F.blankAssignment()
        assignment.disks["disk1"]!.signatures = [Signature(type: "ext4", usage: "filesystem")]
        let observed = ObservedStorage(inUse: ["/dev/nvme1n1": "mounted on /mnt"])
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: assignment, observed: observed)
        #expect(plan.refusals.contains { $0.contains("/dev/nvme1n1 is in use (mounted on /mnt)") })
    }

    @Test func unreadableDiskIsRefused() throws {
        var assignment = F.blankAssignment()
        assignment.disks["disk0"]!.probeError = "Permission denied"
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: assignment, observed: .init())
        #expect(plan.refusals.contains { $0.contains("could not be read") })
        #expect(!plan.actions.contains { $0.device == "/dev/nvme0n1" })
    }

    @Test func preservedVolumeSurvivesAChangeToTheOthers() throws {
        // /var shrinks from 512 MiB to 384 MiB: var is recreated, scratch keeps its data and grows.
        let yaml = F.mirrorYAML.replacingOccurrences(of: "size: 512MiB, filesystem: xfs", with: "size: 384MiB, filesystem: xfs")
        let plan = LayoutPlanner.plan(
            layout: try F.layout(yaml), assignment: try F.convergedAssignment(), observed: F.convergedObserved())
        #expect(plan.refusals == [])
        #expect(F.kinds(plan) == ["lvremove var", "lvcreate var 96 extents", "lvextend scratch all free space", "mkfs xfs /dev/system/var"])
        #expect(!plan.actions.contains { $0.device == "/dev/system/scratch" && !$0.destroys.isEmpty })
        #expect(plan.notes.contains { $0.contains("scratch is preserved; it grows") })
        #expect(plan.activation.mounts.first { $0.mountPoint == "/scratch" }?.grow == true)
    }

    @Test func preservedVolumeThatNoLongerFitsIsRefused() throws {
        let yaml = F.mirrorYAML.replacingOccurrences(of: "size: 1536MiB", with: "size: 2GiB")
        let plan = LayoutPlanner.plan(
            layout: try F.layout(yaml), assignment: try F.convergedAssignment(), observed: F.convergedObserved())
        #expect(plan.refusals.contains { $0.contains("system/scratch is preserved but no longer fits") })
    }

    @Test func growingAVolumeExtendsItAndItsFilesystem() throws {
        var observed = F.convergedObserved()
        // Scratch was made smaller by hand: there are free extents, and root is the right size.
        observed.volumeGroups[0].logicalVolumes[3].sizeBytes -= 100 * F.extent
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: try F.convergedAssignment(), observed: observed)
        #expect(F.kinds(plan) == ["lvextend scratch all free space"])
        #expect(!plan.destroysData)
    }

    @Test func missingVolumeIsCreatedAlone() throws {
        var observed = F.convergedObserved()
        observed.volumeGroups[0].logicalVolumes.removeAll { $0.name == "swap" }
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: try F.convergedAssignment(), observed: observed)
        #expect(F.kinds(plan) == ["lvcreate swap 64 extents", "mkfs swap /dev/system/swap"])
    }

    @Test func volumeNotInTheLayoutIsRemovedOnlyWithPermission() throws {
        var observed = F.convergedObserved()
        observed.volumeGroups[0].logicalVolumes.append(ObservedLogicalVolume(name: "old", sizeBytes: F.extent, path: "/dev/system/old"))
        let allowed = LayoutPlanner.plan(layout: try F.layout(), assignment: try F.convergedAssignment(), observed: observed)
        #expect(F.kinds(allowed) == ["lvremove old"])
        let never = try F.layout(F.mirrorYAML.replacingOccurrences(of: "wipe: if-different", with: "wipe: never"))
        let refused = LayoutPlanner.plan(layout: never, assignment: try F.convergedAssignment(), observed: observed)
        #expect(refused.refusals.contains { $0.contains("system/old") && $0.contains("wipe policy is never") })
    }

    @Test func labelAndPartitionNameAreFixedInPlace() throws {
        var assignment = try F.convergedAssignment()
        assignment.disks["disk1"]!.partitions[0].label = "EFI System"
        var observed = F.convergedObserved()
        observed.contents["/dev/md127"] = [Signature(type: "vfat", usage: "filesystem", label: "OLD")]
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: assignment, observed: observed)
        #expect(F.kinds(plan) == ["name 1", "label /dev/md127 ESP"])
        #expect(!plan.destroysData)
    }

    @Test func wrongFilesystemIsReplacedOrRefused() throws {
        var observed = F.convergedObserved()
        observed.contents["/dev/system/var"] = [Signature(type: "ext4", usage: "filesystem")]
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: try F.convergedAssignment(), observed: observed)
        #expect(F.kinds(plan) == ["mkfs xfs /dev/system/var"])
        #expect(plan.actions[0].destroys == ["ext4 on /dev/system/var"])
        observed.contents["/dev/system/scratch"] = [Signature(type: "xfs", usage: "filesystem")]
        let preserved = LayoutPlanner.plan(layout: try F.layout(), assignment: try F.convergedAssignment(), observed: observed)
        #expect(preserved.refusals.contains { $0.contains("system/scratch is preserved but holds xfs") })
    }

    @Test func missingPartitionsAtTheEndAreAppended() throws {
        let yaml = """
            disks:
              d:
                match: { type: nvme }
                partitions:
                  - { name: one, size: 1GiB, filesystem: { type: ext4, mount: /one } }
                  - { name: two, size: rest, filesystem: { type: xfs, mount: /two } }
            """
        var assignment = DiskAssignment(disks: ["d": F.disk("nvme0n1", serial: "A")])
        let parts = try LayoutPlanner.geometry(try F.layout(yaml).disks[0].partitions, diskSize: F.size, sectorSize: 512)
        assignment.disks["d"]!.partitionTable = PartitionTable(type: "gpt")
        assignment.disks["d"]!.partitions = [
            Partition(number: 1, path: "/dev/nvme0n1p1", startBytes: parts[0].startBytes, sizeBytes: parts[0].sizeBytes,
                      typeUUID: PartitionType.linux.guid, label: "one", signatures: [Signature(type: "ext4", usage: "filesystem")])
        ]
        let plan = LayoutPlanner.plan(layout: try F.layout(yaml), assignment: assignment, observed: .init())
        #expect(F.kinds(plan) == ["append /dev/nvme0n1 [2]", "mkfs xfs /dev/nvme0n1p2"])
        #expect(!plan.destroysData)
    }

    @Test func arrayWithAMemberOutsideTheLayoutIsRefused() throws {
        var observed = F.convergedObserved()
        observed.arrays[1].members.append("/dev/sdz1")  // a spare on a disk the layout does not cover
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: try F.convergedAssignment(), observed: observed)
        #expect(plan.refusals.contains { $0.contains("md-system also has /dev/sdz1") })
    }

    @Test func arrayOfAnotherLevelIsRecreatedOnlyWithPermission() throws {
        var observed = F.convergedObserved()
        observed.arrays[1].level = "raid0"
        let plan = LayoutPlanner.plan(layout: try F.layout(), assignment: try F.convergedAssignment(), observed: observed)
        #expect(F.kinds(plan).starts(with: ["deactivate", "stop"]))
        #expect(F.kinds(plan).contains("mdcreate md-system"))
        #expect(plan.destroysData)
    }

    @Test func partitionPathsFollowTheKernelsNaming() {
        #expect(LayoutPlanner.partitionPath(disk: "/dev/nvme0n1", number: 2) == "/dev/nvme0n1p2")
        #expect(LayoutPlanner.partitionPath(disk: "/dev/sda", number: 2) == "/dev/sda2")
        #expect(LayoutPlanner.isPartition("/dev/sda2", of: "/dev/sda"))
        #expect(LayoutPlanner.isPartition("/dev/nvme0n1p12", of: "/dev/nvme0n1"))
        #expect(!LayoutPlanner.isPartition("/dev/sdaa1", of: "/dev/sda"))
        #expect(!LayoutPlanner.isPartition("/dev/nvme0n10", of: "/dev/nvme0n1"))
    }

    @Test func geometryIsAlignedAndFillsTheDisk() throws {
        let specs = [
            PartitionSpec(name: "a", size: .fixed(ByteSize(bytes: 100_000_000))),
            PartitionSpec(name: "b", size: .percent(basisPoints: 2500)),
            PartitionSpec(name: "c", size: .rest),
        ]
        let parts = try LayoutPlanner.geometry(specs, diskSize: F.size, sectorSize: 512)
        #expect(parts[0].startBytes == 1 << 20)
        #expect(parts.allSatisfy { $0.startBytes % (1 << 20) == 0 && $0.sizeBytes % (1 << 20) == 0 })
        #expect(parts[0].sizeBytes == 96 << 20)  // 100 MB rounded up to whole MiB
        #expect(parts[1].startBytes == parts[0].endBytes && parts[2].startBytes == parts[1].endBytes)
        #expect(F.size - parts[2].endBytes < (1 << 20) + 16_896)
        #expect(throws: LayoutPlanner.GeometryError.self) {
            try LayoutPlanner.geometry([PartitionSpec(name: "a", size: .fixed(ByteSize(bytes: F.size)))], diskSize: F.size, sectorSize: 512)
        }
    }
}

@Suite struct LayoutSchemaTests {
    @Test func simpleSingleDiskExpands() throws {
        let layout = try DiskLayout(parsing: """
            disk: { type: sata, size: 8GiB }
            volumes:
              - { mount: /, size: rest }
            swap: 512MiB
            """, source: "t")
        #expect(layout.arrays == [])
        #expect(layout.disks[0].partitions.map(\.name) == ["esp", "system"])
        #expect(layout.disks[0].partitions[0].filesystem?.mount == "/boot/efi")
        #expect(layout.disks[0].partitions[1].type == .lvm)
        #expect(layout.volumeGroups[0].devices == [.partition(disk: "disk0", name: "system")])
        #expect(layout.wipe == .never)
    }

    @Test func expansionReadsBackAsTheSameLayout() throws {
        let layout = try LayoutFixture.layout()
        let again = try DiskLayout(parsing: layout.yaml, source: "expanded")
        #expect(again == layout)
    }

    @Test(arguments: [
        ("mirror:\n  - { size: 4GB }\nvolumes: []", "mirror", "a mirror is two disks, found 1"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB }] }\narrays:\n  m: { level: 1, devices: [a/p] }",
         "arrays.m.devices", "a mirror needs two or more devices, found 1"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB, filesystem: zfs }] }",
         "disks.a.partitions[0].filesystem", "\"zfs\" is not a supported filesystem"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB, filesystem: { type: ext4, mount: /x } }, { name: q, size: 1GiB, filesystem: { type: xfs, mount: /x } }] }",
         "disks.a.partitions[1].filesystem.mount", "/x is also the mount point of a/p"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB }] }\nvolume-groups:\n  vg: { devices: [a/nope] }",
         "volume-groups.vg.devices", "disk a has no partition named nope"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB }] }\nvolume-groups:\n  vg: { devices: [md9] }",
         "volume-groups.vg.devices", "md9 is not an array of this layout"),
        ("disks:\n  a: { match: { size: 10GB }, partitions: [{ name: p, size: 12GB }] }",
         "disks.a.partitions", "but the smallest disk the match admits holds"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: rest }, { name: q, size: rest }] }",
         "disks.a.partitions", "only one entry can take the rest, found p, q"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 60% }, { name: q, size: 50% }] }",
         "disks.a.partitions", "more than 100%"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB, filesystem: ext4 }] }\nvolume-groups:\n  vg: { devices: [a/p] }",
         "disks.a.partitions[0].filesystem", "a/p has a filesystem but is also used by volume group vg"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 256MiB, filesystem: xfs }] }",
         "disks.a.partitions[0].filesystem", "xfs needs at least 300 MiB"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB, filesystem: { type: ext4, mount: /x, mount-options: [noatime, bind] } }] }",
         "disks.a.partitions[0].filesystem.mount-options", "mount option \"bind\" is not for mounting a filesystem"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB }] }\nwipe: always",
         "wipe", "\"always\" is not a wipe policy"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB, filesystem: { type: swap, mount: /s } }] }",
         "disks.a.partitions[0].filesystem.mount", "swap is not mounted"),
        ("disks:\n  a: { match: {}, partitions: [{ name: p, size: 1GiB }] }\narrays:\n  m: { level: 5, devices: [a/p, a/p] }",
         "arrays.m.devices", "a/p is already used by array m"),
    ])
    func badLayoutsNameTheFieldAndTheProblem(yaml: String, field: String, problem: String) throws {
        let error = try #require(throws: ConfigError.self) { try DiskLayout(parsing: yaml, source: "t") }
        #expect(error.field == field, "\(error)")
        #expect(error.problem.contains(problem), "\(error)")
    }
}
