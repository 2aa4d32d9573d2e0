import ProvisionerCore
import Testing

/// The plan as the admin reads it (`provisioner-agent plan`, the boot's disk events).
@Suite struct LayoutReportTests {
    static let assignment = DiskAssignment(disks: [
        "disk0": Disk(name: "nvme0n1", path: "/dev/nvme0n1", transport: .nvme, rotational: false, serial: "A", sizeBytes: 4_000_000_000),
        "disk1": Disk(name: "nvme1n1", path: "/dev/nvme1n1", transport: .nvme, rotational: false, serial: nil, sizeBytes: 4_000_000_000),
    ])

    @Test func convergedPlanSaysSoAndWhatObservingBroughtUp() {
        let plan = LayoutPlan(
            notes: ["system/scratch is preserved and unchanged"],
            activation: Activation(
                arrays: [.init(name: "md-system", device: "/dev/md127", members: [], isAssembled: true)],
                volumeGroups: [.init(name: "system", devices: ["/dev/md127"])],
                mounts: [.init(device: "/dev/system/root", mountPoint: "/", type: .ext4)]))
        let report = LayoutReport(
            assignment: Self.assignment, plan: plan,
            broughtUp: [
                .array(name: "md-system", device: "/dev/md/md-system"),
                .logicalVolumes(group: "system", names: ["root", "var"], devices: ["/dev/md127"]),
            ],
            undone: true)
        #expect(
            report.text.split(separator: "\n").map(String.init) == [
                "disk0 = /dev/nvme0n1 (4.0 GB, serial A)",
                "disk1 = /dev/nvme1n1 (4.0 GB, serial none)",
                "No changes: the disks match the layout.",
                "note: system/scratch is preserved and unchanged",
                "note: to look inside, observing brought up: array md-system (/dev/md/md-system) assembled; "
                    + "logical volumes system/root, system/var activated; all taken down again",
                "then: assemble md-system; activate system; mount /dev/system/root on /",
            ])
    }

    @Test func changesNameTheirRowAndWhatTheyDestroyAndRefusalsComeLast() {
        let plan = LayoutPlan(
            actions: [LayoutAction(.wipe(device: "/dev/nvme1n1"), reason: "D5: another table type", destroys: ["ext4 \"old\""])],
            refusals: ["/dev/nvme1n1 is mounted on /mnt"])
        let lines = LayoutReport(assignment: Self.assignment, plan: plan).text.split(separator: "\n").map(String.init)
        #expect(
            Array(lines.dropFirst(2)) == [
                "1 change, 1 destroying data:",
                "  1. wipe all signatures on /dev/nvme1n1",
                "     why: D5: another table type",
                "     DESTROYS ext4 \"old\"",
                "REFUSED, nothing will be written:",
                "  - /dev/nvme1n1 is mounted on /mnt",
            ])
        #expect(LayoutRefused(refusals: plan.refusals).description.hasSuffix("\n  /dev/nvme1n1 is mounted on /mnt"))
    }
}
