import Foundation
import ProvisionerCore
import Testing

@testable import ProvisionerSystem

/// libblkid probing of real on-disk formats, made by the real tools in an image
/// file (partitions are probed by offset, so no loop partitions are needed).
@Suite struct BlkidTests {
    static func run(_ args: String...) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw SystemError("running", args.joined(separator: " "), cause: message)
        }
    }

    /// A 64 MiB image: GPT, partition 1 (root, ext4 "rootfs"), partition 2 (swap, "sw").
    static func makeImage() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blkid-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let image = dir.appendingPathComponent("disk.img").path
        let swap = dir.appendingPathComponent("swap.img").path
        try run("truncate", "-s", "64M", image)
        try run(
            "sgdisk", "-n1:1MiB:+20MiB", "-t1:8300", "-c1:root", "-n2:0:+10MiB", "-t2:8200", "-c2:swap", image)
        try run("mkfs.ext4", "-q", "-L", "rootfs", "-E", "offset=\(1 << 20)", image, "20M")
        try run("truncate", "-s", "10M", swap)
        try run("mkswap", "-L", "sw", swap)
        try run("dd", "if=\(swap)", "of=\(image)", "bs=1M", "seek=21", "conv=notrunc", "status=none")
        return image
    }

    @Test func readsPartitionTableAndContents() throws {
        let image = try Self.makeImage()
        defer { try? FileManager.default.removeItem(atPath: (image as NSString).deletingLastPathComponent) }

        let (table, partitions) = try Blkid.partitions(path: image)
        #expect(table?.type == "gpt")
        #expect(table?.uuid?.count == 36)
        #expect(partitions.count == 2)

        let root = try #require(partitions.first)
        #expect(root.number == 1)
        #expect(root.startBytes == 1 << 20)
        #expect(root.sizeBytes == 20 << 20)
        #expect(root.label == "root")
        #expect(root.typeUUID == "0fc63daf-8483-4772-8e79-3d69d8477de4")  // Linux filesystem
        #expect(root.signatures.map(\.type) == ["ext4"])
        #expect(root.signatures.first?.label == "rootfs")
        #expect(root.signatures.first?.usage == "filesystem")

        let swap = partitions[1]
        #expect(swap.number == 2)
        #expect(swap.startBytes == 21 << 20)
        #expect(swap.typeUUID == "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f")  // Linux swap
        #expect(swap.signatures.map(\.type) == ["swap"])
        #expect(swap.signatures.first?.label == "sw")
    }

    @Test func wholeDiskSignaturesIncludeThePartitionTable() throws {
        let image = try Self.makeImage()
        defer { try? FileManager.default.removeItem(atPath: (image as NSString).deletingLastPathComponent) }
        let signatures = try Blkid.signatures(path: image)
        #expect(signatures.contains { $0.type == "gpt" && $0.usage == "partition_table" })
    }

    @Test func blankImageHasNothing() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("blank-\(UUID().uuidString).img").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.run("truncate", "-s", "16M", path)
        #expect(try Blkid.signatures(path: path).isEmpty)
        let (table, partitions) = try Blkid.partitions(path: path)
        #expect(table == nil)
        #expect(partitions.isEmpty)
    }

    @Test func missingDeviceIsAClearError() {
        let error = #expect(throws: SystemError.self) { try Blkid.signatures(path: "/nonexistent/disk") }
        #expect(error?.description == "opening /nonexistent/disk: No such file or directory (errno 2)")
    }

    @Test(arguments: [
        ("nvme0n1", "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0", Transport.nvme),
        ("vda", "/sys/devices/pci0000:00/0000:00:02.0/virtio1", .virtio),
        ("sda", "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0", .sata),
        ("sdb", "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host2/target2:0:0/2:0:0:0", .scsi),
        ("sdc", "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0", .usb),
        (
            "sdd",
            "/sys/devices/pci0000:00/0000:03:00.0/host1/port-1:0/expander-1:0/port-1:0:3/end_device-1:0:3/target1:0:3/1:0:3:0",
            .sas
        ),
        ("md127", "/sys/devices/virtual/block/md127", .md),
        ("dm-0", "/sys/devices/virtual/block/dm-0", .dm),
        ("loop3", "/sys/devices/virtual/block/loop3", .loop),
    ])
    func transportFromThePlaceOnTheBuses(name: String, path: String, transport: Transport) {
        #expect(DiskInventoryReader.transport(name: name, devicePath: path) == transport)
    }
}
