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
        let reader = DiskInventoryReader(sysfs: "\(root)/sys", dev: "\(root)/dev", probeContents: false)
        let stamps = reader.stamps()
        #expect(
            stamps == [
                BlockDeviceStamp(name: "vda", device: "253:0", sectors: 41_943_040),
                BlockDeviceStamp(name: "vda1", device: "253:1", sectors: 2048, start: 2048),
                BlockDeviceStamp(name: "vda2", device: "253:2", sectors: 2048, start: 4096, holders: ["md127"]),
            ])
        #expect(reader.recordTimes(stamps, run: "\(root)/run") == ["253:0": 1000, "253:1": 1001.5])
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
}
