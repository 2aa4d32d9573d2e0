import Foundation
import ProvisionerCore
import Testing

/// `DiskLayout.kernelModules`: what the initrd loads early for a layout (docs/boot.md).
@Suite struct LayoutModulesTests {
    @Test(arguments: [
        // One disk, no arrays, no LVM: only what is mounted (swap needs nothing); the ESP's options
        // name its code page and character set.
        ("""
        disks:
          d:
            match: { type: nvme }
            partitions:
              - { name: esp, size: 512MiB, type: esp, filesystem: { type: vfat, mount: /boot/efi, mount-options: [codepage=850, "iocharset=utf8"] } }
              - { name: swap, size: 1GiB, type: swap, filesystem: swap }
              - { name: root, size: rest, filesystem: { type: xfs, mount: / } }
        """, ["fs-vfat", "nls_cp850", "nls_utf8", "fs-xfs"]),
        // Levels in order, once each; a filesystem nobody mounts needs nothing at boot.
        ("""
        disks:
          a: { match: { type: nvme, size: 1TB }, partitions: [{ name: r, size: 100GiB, type: raid }, { name: s, size: rest, type: raid }] }
          b: { match: { type: nvme, size: 1TB }, partitions: [{ name: r, size: 100GiB, type: raid }, { name: s, size: rest, type: raid }] }
          c: { match: { type: nvme, size: 1TB }, partitions: [{ name: r, size: 100GiB, type: raid }, { name: s, size: rest, type: raid }] }
        arrays:
          fast: { level: 5, devices: [a/s, b/s, c/s], filesystem: { type: ext4 } }
          os: { level: 1, devices: [a/r, b/r], filesystem: { type: ext4, mount: / } }
        """, ["md_mod", "md-level-1", "md-level-5", "fs-ext4"]),
        // Disks matched and nothing on them: nothing to load.
        ("""
        disks:
          a: { match: { type: nvme } }
        """, []),
    ])
    func modulesOfALayout(yaml: String, expected: [String]) throws {
        let layout = try DiskLayout(parsing: yaml, source: "test")
        #expect(layout.kernelModules == expected)
    }

    /// The demo's layout (docs/examples): MD RAID1 for the ESP and the system, LVM, vfat for the
    /// ESP, ext4 and xfs; swap needs nothing.
    @Test func theDemosMirror() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../docs/examples/layout-simple-mirror.yaml").path
        let layout = try DiskLayout(parsing: try String(contentsOfFile: path, encoding: .utf8), source: path)
        #expect(layout.kernelModules == ["md_mod", "md-level-1", "dm_mod", "fs-vfat", "nls_cp437", "fs-ext4", "fs-xfs"])
    }

    @Test func aCharsetThatIsNotAModuleNameIsLeftToTheMount() throws {
        let layout = try DiskLayout(
            parsing: """
                disks:
                  d:
                    match: { type: nvme }
                    partitions:
                      - { name: esp, size: 512MiB, type: esp, filesystem: { type: vfat, mount: /, mount-options: ["iocharset=../x"] } }
                """, source: "test")
        #expect(layout.kernelModules == ["fs-vfat", "nls_cp437"])
    }
}
