import ProvisionerCore
import Testing

/// When the disks read while the network came up may stand for a new reading: one row for each
/// reason they may not, and the one where they may.
struct SavedInventoryTests {
    static let disk = BlockDeviceStamp(name: "nvme0n1", device: "259:0", sectors: 7_812_500)
    static let part1 = BlockDeviceStamp(name: "nvme0n1p1", device: "259:1", sectors: 1_048_576, start: 2048)
    static let part2 = BlockDeviceStamp(name: "nvme0n1p2", device: "259:2", sectors: 6_760_448, start: 1_050_624)
    static let ram = BlockDeviceStamp(name: "ram0", device: "1:0", sectors: 8192)

    static func saved(mountpoint: String? = nil, probeError: String? = nil) -> SavedInventory {
        var disk = Disk(
            name: "nvme0n1", path: "/dev/nvme0n1", transport: .nvme, rotational: false, sizeBytes: 4_000_000_000,
            partitions: [
                Partition(
                    number: 1, name: "nvme0n1p1", path: "/dev/nvme0n1p1", startBytes: 1 << 20, sizeBytes: 512 << 20),
                Partition(
                    number: 2, name: "nvme0n1p2", path: "/dev/nvme0n1p2", startBytes: 513 << 20, sizeBytes: 3 << 30),
            ])
        if let mountpoint { disk.partitions[1].mountpoints = [mountpoint] }
        disk.probeError = probeError
        return SavedInventory(
            startedAt: 1000, devices: [disk0, part1, part2, ram].map { $0 }, inventory: Inventory(disks: [disk]))
    }
    static var disk0: BlockDeviceStamp { disk }

    /// Every record written before the reading began.
    static let quiet: [String: Double] = ["259:0": 990, "259:1": 991, "259:2": 992]

    struct Row: CustomTestStringConvertible {
        var name: String
        var saved = SavedInventoryTests.saved()
        var current = [disk, part1, part2, ram]
        var times = SavedInventoryTests.quiet
        var mounted: Set<String> = []
        var problem: String?
        var testDescription: String { name }
    }

    static let rows: [Row] = {
        var grown = part2
        grown.sectors += 2048
        var moved = part1
        moved.start = 4096
        var held = part2
        held.holders = ["md127"]
        var laterRecord = quiet
        laterRecord["259:2"] = 1000.5
        var noRecord = quiet
        noRecord["259:1"] = nil
        return [
            Row(name: "nothing changed: the reading stands (a RAM disk without a record of its own)"),
            Row(
                name: "a disk came",
                current: [disk, part1, part2, ram, BlockDeviceStamp(name: "sda", device: "8:0", sectors: 1)],
                problem: "the block devices changed since (new: sda)"),
            Row(
                name: "a partition went", current: [disk, part1, ram],
                problem: "the block devices changed since (gone: nvme0n1p2)"),
            Row(
                name: "a partition grew", current: [disk, part1, grown, ram],
                problem: "nvme0n1p2 changed since (device 259:2, 6760448 sectors from 1050624 then, "
                    + "device 259:2, 6762496 sectors from 1050624 now)"),
            Row(
                name: "a partition moved", current: [disk, moved, part2, ram],
                problem: "nvme0n1p1 changed since (device 259:1, 1048576 sectors from 2048 then, "
                    + "device 259:1, 1048576 sectors from 4096 now)"),
            Row(
                name: "an array holds a partition now", current: [disk, part1, held, ram],
                problem: "nvme0n1p2 changed since (device 259:2, 6760448 sectors from 1050624 then, "
                    + "device 259:2, 6760448 sectors from 1050624, held by md127 now)"),
            Row(
                name: "held then and now",
                saved: {
                    var s = saved(); s.devices[2] = held; return s
                }(),
                current: [disk, part1, held, ram], problem: "nvme0n1p2 is held by md127"),
            Row(name: "mounted now", mounted: ["259:1"], problem: "nvme0n1p1 is mounted"),
            Row(name: "a RAM disk mounted says nothing of the disks", mounted: ["1:0"]),
            Row(name: "mounted then", saved: saved(mountpoint: "/mnt"), problem: "nvme0n1 was in use when it was read"),
            Row(name: "unreadable then", saved: saved(probeError: "EIO"), problem: "nvme0n1 could not be read then"),
            Row(
                name: "udev handled an event of a partition since (something wrote to it)", times: laterRecord,
                problem: "udev handled an event of nvme0n1p2 since"),
            Row(
                name: "udev keeps no record of a partition", times: noRecord, problem: "udev has no record of nvme0n1p1"
            ),
        ]
    }()

    @Test(arguments: rows) func reuse(_ row: Row) {
        #expect(row.saved.problem(current: row.current, recordTimes: row.times, mounted: row.mounted) == row.problem)
    }

    @Test func theOrderOfTheListingDoesNotMatter() {
        #expect(
            Self.saved().problem(
                current: [Self.ram, Self.part2, Self.disk, Self.part1], recordTimes: Self.quiet, mounted: []) == nil)
    }
}
