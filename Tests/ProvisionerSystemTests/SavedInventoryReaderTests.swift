import Foundation
import ProvisionerCore
import ProvisionerSystem
import Testing

/// What the boot checks a saved reading of the disks against, read from a copy of sysfs and of
/// udev's records: the devices the kernel lists and when udev last wrote about each.
@Suite struct SavedInventoryReaderTests {
    func sh(_ script: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(script)")
    }

    @Test func stampsAndRecordTimesFromSysfsAndUdev() throws {
        let root = NSTemporaryDirectory() + "saved-inventory-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try sh(
            """
            set -e
            cd '\(root)' 2>/dev/null || mkdir -p '\(root)' && cd '\(root)'
            mkdir -p sys/block/vda/holders sys/block/vda/vda1/holders sys/block/vda/vda2/holders run/udev/data
            echo 253:0 > sys/block/vda/dev; echo 41943040 > sys/block/vda/size
            for n in 1 2; do
              echo $n > sys/block/vda/vda$n/partition; echo 253:$n > sys/block/vda/vda$n/dev
              echo $((n * 2048)) > sys/block/vda/vda$n/start; echo 2048 > sys/block/vda/vda$n/size
            done
            touch sys/block/vda/vda2/holders/md127
            touch -d @1000 run/udev/data/b253:0; touch -d @1001.5 run/udev/data/b253:1
            """)
        var reader = DiskInventoryReader(sysfs: "\(root)/sys", dev: "\(root)/dev", probeContents: false)
        reader.run = "\(root)/run"
        let stamps = reader.stamps()
        #expect(
            stamps == [
                BlockDeviceStamp(name: "vda", device: "253:0", sectors: 41_943_040),
                BlockDeviceStamp(name: "vda1", device: "253:1", sectors: 2048, start: 2048),
                BlockDeviceStamp(name: "vda2", device: "253:2", sectors: 2048, start: 4096, holders: ["md127"]),
            ])
        #expect(reader.recordTimes(stamps) == ["253:0": 1000, "253:1": 1001.5])
    }

    @Test func aMissingOrDamagedSavedReadingIsNotUsed() throws {
        let path = NSTemporaryDirectory() + "saved-inventory-\(getpid()).json"
        defer { unlink(path) }
        let (none, why) = DiskInventoryReader().saved(at: path)
        #expect(none == nil && why == nil)
        try Data("{\"startedAt\": 1".utf8).write(to: URL(fileURLWithPath: path))
        let (damaged, problem) = DiskInventoryReader().saved(at: path)
        #expect(damaged == nil)
        #expect(problem?.hasPrefix("\(path) cannot be read") == true, "\(problem ?? "")")
    }

    /// Kept while the network comes up, used once by the boot's first attempt when nothing changed;
    /// read again when udev handled an event of a partition since, and on every later attempt.
    @Test func aKeptReadingIsUsedOnceAndOnlyWhileNothingChanged() throws {
        let root = NSTemporaryDirectory() + "saved-inventory-boot-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try sh(
            """
            set -e
            mkdir -p '\(root)/sys/block/vda/holders' '\(root)/sys/block/vda/vda1/holders' '\(root)/run/udev/data' '\(root)/dev'
            echo 253:0 > '\(root)/sys/block/vda/dev'; echo 41943040 > '\(root)/sys/block/vda/size'
            echo 1 > '\(root)/sys/block/vda/vda1/partition'; echo 253:1 > '\(root)/sys/block/vda/vda1/dev'
            echo 2048 > '\(root)/sys/block/vda/vda1/start'; echo 2048 > '\(root)/sys/block/vda/vda1/size'
            touch -d @1000 '\(root)/run/udev/data/b253:0' '\(root)/run/udev/data/b253:1'
            : > '\(root)/mountinfo'; : > '\(root)/swaps'
            """)
        var reader = DiskInventoryReader(
            sysfs: "\(root)/sys", dev: "\(root)/dev", procMountInfo: "\(root)/mountinfo", procSwaps: "\(root)/swaps",
            probeContents: false)
        reader.run = "\(root)/run"
        let path = "\(root)/kept/inventory.json"
        let kept = try reader.save(to: path)
        #expect(kept.inventory.disks.map(\.name) == ["vda"])
        #expect(kept.devices.map(\.name) == ["vda", "vda1"])

        let first = reader.forBoot(firstAttempt: true, savedAt: path)
        #expect(first.reused && first.inventory == kept.inventory, "\(first.note ?? "")")
        #expect(!FileManager.default.fileExists(atPath: path), "used once")

        try reader.save(to: path)
        try sh("touch '\(root)/run/udev/data/b253:1'")  // udev handled an event of vda1 since
        let changed = reader.forBoot(firstAttempt: true, savedAt: path)
        #expect(!changed.reused && changed.note == "the disks are read again: udev handled an event of vda1 since")
        #expect(changed.inventory?.disks.map(\.name) == ["vda"])

        try sh("touch -d @1000 '\(root)/run/udev/data/b253:1'")
        try reader.save(to: path)
        let retry = reader.forBoot(firstAttempt: false, savedAt: path)
        #expect(!retry.reused && retry.note == nil)
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
