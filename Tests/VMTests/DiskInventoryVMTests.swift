import Foundation
import ProvisionerCore
import Testing
import VMHarness

/// The agent's inventory and matching on real (emulated) hardware: what the
/// agent reports must be what QEMU was told, and a layout must land on the
/// same physical disks when the devices move to other slots between boots.
@Suite(.serialized, .enabled(if: VMEnvironment.isConfigured, "needs the test initramfs: run `make test`"))
struct DiskInventoryVMTests {
    static let gb: UInt64 = 1_000_000_000

    /// The layout `make demo` and docs/matching.md show: the test proves the example works.
    static var layout: String {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let file = repo.appendingPathComponent("docs/examples/layout-mirror.yaml")
        return (try? String(contentsOf: file, encoding: .utf8)) ?? "missing: \(file.path)"
    }

    /// By size alone the layout is ambiguous: the SATA and the SCSI disk are both 8 GiB.
    static let ambiguousLayout = """
        disks:
          disk0:
            match: { size: 8GiB, tolerance: 1% }
        """

    static func script() -> String {
        """
        cat > /tmp/layout.yaml <<'EOF'
        \(layout)
        EOF
        cat > /tmp/ambiguous.yaml <<'EOF'
        \(ambiguousLayout)
        EOF
        step disks-json provisioner-agent disks --json
        step disks-table provisioner-agent disks
        step match provisioner-agent match --layout /tmp/layout.yaml --json
        step ambiguous provisioner-agent match --layout /tmp/ambiguous.yaml
        """
    }

    func disks(in dir: String, swapped: Bool) -> [VMDisk] {
        let nvmeA = VMDisk(id: "nvA", bus: .nvme, file: "\(dir)/nvme-a.img", sizeBytes: 20 * Self.gb, serial: "NVME-A")
        let nvmeB = VMDisk(
            id: "nvB", bus: .nvme, file: "\(dir)/nvme-b.img", sizeBytes: 20 * Self.gb + 4096, serial: "NVME-B")
        let sata = VMDisk(
            id: "sata", bus: .sata, file: "\(dir)/sata.img", sizeBytes: 8 << 30, serial: "SATA-0001",
            model: "PROV-SATA-HDD")
        let virtio = VMDisk(id: "vio", bus: .virtio, file: "\(dir)/virtio.img", sizeBytes: 4 << 30, serial: "VIRTIO-7")
        let scsi = VMDisk(
            id: "scsi", bus: .scsi, file: "\(dir)/scsi.img", sizeBytes: 8 << 30, serial: "SCSI-42", model: "PROVDISK",
            vendor: "ACME", rotationRate: 1)
        return swapped ? [scsi, virtio, nvmeB, sata, nvmeA] : [nvmeA, nvmeB, sata, virtio, scsi]
    }

    @Test func inventoryReportsWhatQEMUWasToldAndMatchingSurvivesSlotChanges() throws {
        let dir = try VMEnvironment.scratchDirectory("inventory")
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let first = try VMEnvironment.machine(disks: disks(in: dir, swapped: false)).run(
            script: Self.script(), name: "inventory-1")
        let second = try VMEnvironment.machine(disks: disks(in: dir, swapped: true)).run(
            script: Self.script(), name: "inventory-2")

        for run in [first, second] {
            let step = try run.step("disks-json")
            #expect(step.status == 0, "\(step)")
            let inventory = try JSONDecoder().decode(Inventory.self, from: Data(step.stdout.utf8))
            let bySerial = Dictionary(
                uniqueKeysWithValues: inventory.disks.compactMap { d in d.serial.map { ($0, d) } })
            #expect(inventory.disks.count == 5, "\(inventory.disks.map(\.name))")

            let a = try #require(bySerial["NVME-A"])
            #expect(a.transport == .nvme)
            #expect(a.name.hasPrefix("nvme"))
            #expect(a.sizeBytes == 20 * Self.gb)
            #expect(a.rotational == false)
            #expect(a.vendor == "QEMU")
            #expect(a.model == "QEMU NVMe Ctrl")
            #expect(a.logicalSectorSize == 512)
            #expect(a.byPath?.hasPrefix("/dev/disk/by-path/pci-") == true)
            #expect(a.byId.contains { $0.hasSuffix("_NVME-A") })
            #expect(a.partitionTable == nil && a.partitions.isEmpty && a.signatures.isEmpty)
            #expect(a.readOnly == false && a.removable == false)
            #expect(a.probeError == nil)
            #expect(try #require(bySerial["NVME-B"]).sizeBytes == 20 * Self.gb + 4096)

            let sata = try #require(bySerial["SATA-0001"])
            #expect(sata.transport == .sata)
            #expect(sata.name.hasPrefix("sd"))
            #expect(sata.model == "PROV-SATA-HDD")
            #expect(sata.sizeBytes == 8 << 30)
            #expect(sata.rotational == true)

            let virtio = try #require(bySerial["VIRTIO-7"])
            #expect(virtio.transport == .virtio)
            #expect(virtio.name.hasPrefix("vd"))
            #expect(virtio.sizeBytes == 4 << 30)

            let scsi = try #require(bySerial["SCSI-42"])
            #expect(scsi.transport == .scsi)
            #expect(scsi.vendor == "ACME")
            #expect(scsi.model == "PROVDISK")
            #expect(scsi.rotational == false)

            let table = try run.step("disks-table")
            #expect(table.status == 0)
            #expect(table.stdout.contains("NVME-A") && table.stdout.contains("PROV-SATA-HDD"))

            let ambiguous = try run.step("ambiguous")
            #expect(ambiguous.status == 3, "\(ambiguous)")
            #expect(ambiguous.stderr.contains("disk0: 2 disks match size 8.6 GB ± 1%"), "\(ambiguous.stderr)")
            #expect(ambiguous.stderr.contains("SATA-0001") && ambiguous.stderr.contains("SCSI-42"))
        }

        // Same physical disks in both boots, although slots (and kernel names) moved.
        func assignedSerials(_ run: VMRun) throws -> [String: String] {
            let inventory = try JSONDecoder().decode(Inventory.self, from: Data(try run.step("disks-json").stdout.utf8))
            let match = try run.step("match")
            #expect(match.status == 0, "\(match)")
            let paths = try JSONDecoder().decode([String: [String: String]].self, from: Data(match.stdout.utf8))
            let assignments = try #require(paths["assignments"])
            return assignments.mapValues { path in inventory.disks.first { $0.path == path }?.serial ?? "?" }
        }
        let expected = ["disk0": "NVME-A", "disk1": "NVME-B", "disk2": "SATA-0001"]
        #expect(try assignedSerials(first) == expected)
        #expect(try assignedSerials(second) == expected)

        // And the swap really moved them: NVME-A sits on another PCI path in the second boot.
        func path(_ run: VMRun, _ serial: String) throws -> String? {
            let inventory = try JSONDecoder().decode(Inventory.self, from: Data(try run.step("disks-json").stdout.utf8))
            return inventory.disks.first { $0.serial == serial }?.byPath
        }
        #expect(try path(first, "NVME-A") != path(second, "NVME-A"))
    }
}
