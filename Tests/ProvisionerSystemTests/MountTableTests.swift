import ProvisionerSystem
import Testing

/// The one mount-table reader: parsing is pure, so any machine's table is a test.
@Suite struct MountTableTests {
    static let mountinfo = """
        22 1 0:21 / / rw,relatime - rootfs rootfs rw
        30 22 0:25 / /run rw,nosuid,nodev shared:2 - tmpfs tmpfs rw,mode=755
        41 22 253:0 / /sysroot rw,relatime shared:20 - ext4 /dev/mapper/system-root rw
        42 41 253:2 / /sysroot/var rw,relatime shared:21 - xfs /dev/mapper/system-var rw,attr2
        43 41 9:126 / /sysroot/boot/efi rw,relatime shared:22 - vfat /dev/md126 rw,fmask=0077
        44 41 253:1 / /sysroot/mnt/with\\040space rw - ext4 /dev/mapper/system-scratch rw
        45 22 0:26 / /sysroot2 rw - tmpfs tmpfs rw
        """

    @Test func readsEveryFieldTheProjectUses() {
        let entries = MountTable.parse(Self.mountinfo)
        #expect(entries.count == 7)
        #expect(
            entries[3]
                == MountEntry(devNumber: "253:2", mountPoint: "/sysroot/var", fsType: "xfs", source: "/dev/mapper/system-var"))
        #expect(entries[5].mountPoint == "/sysroot/mnt/with space")
        #expect(entries[1].source == "tmpfs" && entries[1].fsType == "tmpfs")
    }

    @Test func swapCountsAsAMountOfItsDevice() {
        let table = MountTable(entries: MountTable.parse(Self.mountinfo), swapDevNumbers: ["253:3"])
        #expect(table.mountpoints(devNumber: "253:3") == ["[SWAP]"])
        #expect(table.mountpoints(devNumber: "253:0") == ["/sysroot"])
        #expect(table.mountpoints(devNumber: nil) == [])
    }

    @Test func mountsUnderARootComeDeepestFirst() {
        let table = MountTable(entries: MountTable.parse(Self.mountinfo))
        #expect(
            table.mountPoints(under: "/sysroot")
                == ["/sysroot/mnt/with space", "/sysroot/boot/efi", "/sysroot/var", "/sysroot"])
        #expect(table.mountPoints(under: "/sysroot/") == table.mountPoints(under: "/sysroot"))
        #expect(table.mountPoints(under: "/nowhere").isEmpty)
        #expect(table.isMountPoint("/sysroot/var"))
        #expect(!table.isMountPoint("/sysroot/usr"))
    }

    @Test func mountinfoEscapes() {
        #expect(MountTable.unescape("/mnt/with\\040space") == "/mnt/with space")
        #expect(MountTable.unescape("/a\\134b") == "/a\\b")
    }
}
