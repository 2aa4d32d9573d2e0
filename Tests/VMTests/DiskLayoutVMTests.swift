import Foundation
import ProvisionerCore
import Testing
import VMHarness

/// Layout reconciliation on emulated disks, one boot per scenario, the disks
/// kept between boots:
///   (a) two blank NVMe disks → RAID1 + LVM with /, /var, swap, /scratch, mounted
///   (b) boot again → empty plan, GPTs and LVM metadata byte-identical
///   (c) the disks in another order on the QEMU command line → still converged
///   (d) one member replaced by a blank disk within tolerance → repaired, / intact
///   (g) /var changes → the preserved /scratch keeps its data
///   (e) a bystander disk is byte-identical after all of it
///   (f) a simple single-disk layout on a SATA disk (its own machine)
@Suite(.serialized, .enabled(if: VMEnvironment.isConfigured, "needs the test initramfs: run `make test`"))
struct DiskLayoutVMTests {
    static let gb: UInt64 = 1_000_000_000

    static func example(_ name: String) -> String {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let file = repo.appendingPathComponent("docs/examples/\(name)")
        return (try? String(contentsOf: file, encoding: .utf8)) ?? "missing: \(file.path)"
    }

    /// Metadata that must not change when nothing is to be done: both copies of
    /// each disk's GPT and the LVM label and metadata area of the physical volume.
    static let helpers = """
        disk_of() {
            lsblk -dno NAME,SERIAL | while read -r name serial; do
                [ "$serial" = "$1" ] && echo "/dev/$name"
            done
        }
        meta() {
            for serial in "$@"; do
                dev=$(disk_of "$serial")
                sectors=$(blockdev --getsz "$dev")
                echo "$serial gpt-primary $(dd if="$dev" bs=512 count=34 2>/dev/null | sha256sum | cut -d' ' -f1)"
                echo "$serial gpt-backup $(dd if="$dev" bs=512 skip=$((sectors - 33)) count=33 2>/dev/null | sha256sum | cut -d' ' -f1)"
            done
            echo "pv-metadata $(dd if=/dev/md/md-system bs=1M count=1 2>/dev/null | sha256sum | cut -d' ' -f1)"
            for lv in root var scratch swap; do echo "uuid $lv $(blkid -s UUID -o value /dev/system/$lv)"; done
        }
        # What plan must leave as it found it: running arrays, active volumes, and the metadata
        # regions of every partition (md superblocks sit in the first 4 KiB or the last MiB,
        # GPTs and LVM labels in the first MiB).
        state() {
            grep '^md' /proc/mdstat | sort
            dmsetup ls | sort
            for serial in "$@"; do
                dev=$(disk_of "$serial")
                for part in $(lsblk -lno NAME "$dev" | tail -n +2); do
                    size=$(blockdev --getsz "/dev/$part")
                    echo "$serial $part head $(dd if="/dev/$part" bs=1M count=1 2>/dev/null | sha256sum | cut -d' ' -f1)"
                    echo "$serial $part tail $(dd if="/dev/$part" bs=512 skip=$((size - 2048)) count=2048 2>/dev/null | sha256sum | cut -d' ' -f1)"
                done
            done
        }
        # What device-mapper and udev hold for each volume: the table, the flags udev decoded
        # from the activation's cookie, the links, the read-ahead (no device numbers of its own).
        dmstate() {
            udevadm settle
            for name in $(dmsetup ls | awk '{print $1}' | sort); do
                echo "$name $(dmsetup info -c --noheadings -o name,uuid,attr "$name")"
                echo "$name table $(dmsetup table "$name")"
                echo "$name read-ahead $(blockdev --getra "/dev/mapper/$name")"
                udevadm info --query=property "/dev/mapper/$name" \
                    | grep -E '^(DM_[A-Z_]*|ID_FS_UUID|ID_FS_TYPE)=' | grep -v '^DM_COOKIE=' | sed "s/^/$name /" | sort
                udevadm info --query=property "/dev/mapper/$name" | sed -n 's/^DEVLINKS=//p' | tr ' ' '\n' | sort \
                    | sed "s/^/$name link /"
            done
        }
        shutdown() {
            sync
            umount -R /sysroot
            lvm vgchange -an --devices "$(ls /dev/md/md-* | tr '\\n' ',')" system >/dev/null 2>&1 || true
            mdadm --stop --scan
        }
        """

    static func script(layout: String, extra: String = "", serials: [String]) -> String {
        """
        \(helpers)
        cat > /tmp/layout.yaml <<'EOF'
        \(layout)
        EOF
        step state-before state \(serials.joined(separator: " "))
        step plan provisioner-agent plan --layout /tmp/layout.yaml --json
        step state-after state \(serials.joined(separator: " "))
        step apply provisioner-agent apply --layout /tmp/layout.yaml --root /sysroot
        step replan provisioner-agent plan --layout /tmp/layout.yaml --json
        step mounts findmnt -rn -o TARGET,SOURCE,FSTYPE -R /sysroot
        \(extra)
        step meta meta \(serials.joined(separator: " "))
        step mdstat cat /proc/mdstat
        step dm dmsetup ls
        step shutdown shutdown
        """
    }

    struct PlanJSON: Decodable {
        struct Action: Decodable {
            var summary: String
            var destroys: [String]
        }
        var converged: Bool
        var actions: [Action]
        var refusals: [String]
        var notes: [String]
        var broughtUp: [String]
        var undone: Bool
    }

    /// `plan` changed nothing: the same arrays and volumes up, the same metadata bytes.
    static func expectPlanChangedNothing(_ run: VMRun) throws {
        let before = try run.step("state-before")
        let after = try run.step("state-after")
        #expect(before.status == 0 && after.status == 0, "\(before) \(after)")
        #expect(before.stdout == after.stdout, "before plan:\n\(before.stdout)\nafter plan:\n\(after.stdout)")
        #expect(before.stdout.contains(" head "), "no partition was checked:\n\(before.stdout)")
        let plan = try Self.plan(run, "plan")
        #expect(plan.broughtUp.isEmpty || plan.undone, "\(plan.broughtUp)")
    }

    static func plan(_ run: VMRun, _ step: String) throws -> PlanJSON {
        let result = try run.step(step)
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(PlanJSON.self, from: Data(result.stdout.utf8))
    }

    static func metadata(_ run: VMRun) throws -> [String] {
        let step = try run.step("meta")
        #expect(step.status == 0, "\(step)")
        return step.stdout.split(separator: "\n").map(String.init)
    }

    static func sha256(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }

    /// A disk with a filesystem and data on it that no layout covers.
    static func makeBystander(_ path: String) throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        #expect(truncate(path, 1 << 30) == 0)
        let mkfs = Process()
        mkfs.executableURL = URL(fileURLWithPath: "/sbin/mkfs.ext4")
        mkfs.arguments = ["-q", "-F", "-L", "bystander", path]
        try mkfs.run()
        mkfs.waitUntilExit()
        #expect(mkfs.terminationStatus == 0)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 512 << 20)
        try handle.write(contentsOf: Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }))
        try handle.close()
    }

    @Test func mirrorIsBuiltConvergesRepairsAndKeepsPreservedData() throws {
        let dir = try VMEnvironment.scratchDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = Self.example("layout-simple-mirror.yaml")
        let nvA = VMDisk(id: "nvA", bus: .nvme, file: "\(dir)/a.img", sizeBytes: 4 * Self.gb, serial: "NVME-A")
        let nvB = VMDisk(id: "nvB", bus: .nvme, file: "\(dir)/b.img", sizeBytes: 4 * Self.gb + 4096, serial: "NVME-B")
        // The replacement: another serial, 1 MB bigger, within the 5% tolerance.
        let nvC = VMDisk(
            id: "nvC", bus: .nvme, file: "\(dir)/c.img", sizeBytes: 4 * Self.gb + 1_000_000, serial: "NVME-C")
        let bystander = VMDisk(
            id: "by", bus: .virtio, file: "\(dir)/bystander.img", sizeBytes: 1 << 30, serial: "BYSTANDER")
        try Self.makeBystander(bystander.file)
        let bystanderBefore = try Self.sha256(bystander.file)

        // (a) blank disks → the whole stack, mounted; then data on / and /scratch.
        let writeData = """
            step write sh -c 'dd if=/dev/urandom of=/sysroot/root-data bs=1M count=4 2>/dev/null && sha256sum /sysroot/root-data > /sysroot/root-data.sha && dd if=/dev/urandom of=/sysroot/scratch/blob bs=1M count=8 2>/dev/null && sha256sum /sysroot/scratch/blob > /sysroot/scratch/blob.sha'
            """
        let checkData = """
            step check sh -c 'sha256sum -c /sysroot/root-data.sha && sha256sum -c /sysroot/scratch/blob.sha'
            """
        let first = try VMEnvironment.machine(disks: [nvA, nvB, bystander]).run(
            script: Self.script(layout: layout, extra: writeData, serials: ["NVME-A", "NVME-B"]), name: "layout-a")
        let planA = try Self.plan(first, "plan")
        #expect(planA.refusals == [])
        #expect(planA.actions.contains { $0.summary.hasPrefix("create raid1 array md-system") })
        #expect(planA.actions.allSatisfy { $0.destroys.isEmpty })
        let apply = try first.step("apply")
        #expect(apply.status == 0, "\(apply)")
        #expect(apply.stdout.contains("[finished] write a new GPT"))
        #expect(try Self.plan(first, "replan").converged, "after apply the plan must be empty")
        let mounts = try first.step("mounts").stdout
        for expected in [
            "/sysroot /dev/mapper/system-root ext4", "/sysroot/var /dev/mapper/system-var xfs",
            "/sysroot/scratch /dev/mapper/system-scratch ext4", "/sysroot/boot/efi /dev/md",
        ] {
            #expect(mounts.contains(expected), "\(expected) not in:\n\(mounts)")
        }
        #expect(try first.step("write").status == 0)
        #expect(try first.step("shutdown").status == 0)
        let metaA = try Self.metadata(first)

        // (b) boot again: nothing to do, nothing written. apply activated the volumes from the
        // metadata it read (device-mapper directly); vgchange activates them again, and both
        // leave the same devices, tables, udev flags, links and read-ahead.
        // The initramfs decodes that activation's cookie in its udev rules, without dmsetup.
        let cookie = UInt32(LVMView.udevFlags) << 16
        let reactivate = """
            step dm-rules grep -h 'DM_COOKIE}==\"\(cookie)\"\\|DM_COOKIE}!=\"\(cookie)\"' /etc/udev/rules.d/55-dm.rules /etc/udev/rules.d/95-dm-notify.rules
            step dm-ours dmstate
            step dm-vgchange sh -c 'devices=$(ls /dev/md/md-* | tr "\\n" ","); umount -R /sysroot && lvm vgchange -an --devices "$devices" system && lvm vgchange -ay --devices "$devices" system'
            step dm-lvm dmstate
            """
        let second = try VMEnvironment.machine(disks: [nvA, nvB, bystander]).run(
            script: Self.script(layout: layout, extra: checkData + "\n" + reactivate, serials: ["NVME-A", "NVME-B"]),
            name: "layout-b")
        let ours = try second.step("dm-ours")
        #expect(try second.step("apply").stdout.contains("activation (device-mapper)"), "apply used vgchange")
        #expect(try second.step("dm-vgchange").status == 0)
        let lvms = try second.step("dm-lvm")
        let rules = try second.step("dm-rules").stdout
        #expect(
            rules.contains(
                "ENV{DM_COOKIE}==\"\(cookie)\", ENV{DM_UDEV_DISABLE_LIBRARY_FALLBACK_FLAG}=\"1\", ENV{DM_UDEV_PRIMARY_SOURCE_FLAG}=\"1\""
            ), "\(rules)")
        #expect(rules.contains("ENV{DM_COOKIE}!=\"\(cookie)\", RUN+="), "\(rules)")
        #expect(ours.status == 0 && lvms.status == 0)
        #expect(
            ours.stdout.contains("system-root table 0 ") && ours.stdout.contains("DM_UDEV_PRIMARY_SOURCE_FLAG=1"),
            "\(ours.stdout)")
        #expect(ours.stdout == lvms.stdout, "ours:\n\(ours.stdout)\nLVM's:\n\(lvms.stdout)")
        let planB = try Self.plan(second, "plan")
        #expect(planB.converged && planB.actions.isEmpty, "\(planB.actions.map(\.summary))")
        // Looking inside needed the arrays and volumes up; plan took them down again.
        #expect(!planB.broughtUp.isEmpty, "the disks were expected to be down at boot")
        try Self.expectPlanChangedNothing(second)
        #expect(try second.step("apply").stdout.contains("No changes"))
        #expect(try Self.metadata(second) == metaA)
        #expect(try second.step("check").status == 0)
        // Only our arrays and volumes are up: the bystander's content was not touched.
        #expect(!(try second.step("dm").stdout.contains("bystander")))

        // (c) the disks in another order: still converged.
        let third = try VMEnvironment.machine(disks: [bystander, nvB, nvA]).run(
            script: Self.script(layout: layout, extra: checkData, serials: ["NVME-A", "NVME-B"]), name: "layout-c")
        #expect(try Self.plan(third, "plan").converged)
        try Self.expectPlanChangedNothing(third)
        #expect(try Self.metadata(third) == metaA)
        #expect(try third.step("check").status == 0)

        // (d) NVME-B dies; a blank NVME-C takes its place: repaired, NVME-A untouched.
        let fourth = try VMEnvironment.machine(disks: [nvA, nvC, bystander]).run(
            script: Self.script(
                layout: layout,
                extra: checkData + "\nstep detail mdadm --detail /dev/md/md-system",
                serials: ["NVME-A", "NVME-C"]),
            name: "layout-d")
        let planD = try Self.plan(fourth, "plan")
        #expect(planD.refusals == [])
        #expect(planD.actions.allSatisfy { $0.destroys.isEmpty })
        #expect(planD.actions.contains { $0.summary.contains("to array md-system") })
        #expect(planD.actions.contains { $0.summary.contains("to array md-esp") })
        // Only the new disk is partitioned; the survivor's GPT is checked byte for byte below.
        #expect(
            planD.actions.filter { $0.summary.hasPrefix("write a new GPT") }.count == 1,
            "\(planD.actions.map(\.summary))")
        let applyD = try fourth.step("apply")
        #expect(applyD.status == 0, "\(applyD)")
        #expect(try fourth.step("check").status == 0)
        let detail = try fourth.step("detail").stdout
        #expect(detail.contains("Raid Devices : 2"))
        // Both members are in the array: the survivor active, the new one rebuilding (or already in sync).
        #expect(detail.contains("Working Devices : 2"), "\(detail)")
        #expect(!detail.contains("removed"), "\(detail)")
        let metaD = try Self.metadata(fourth)
        #expect(metaD.filter { $0.hasPrefix("NVME-A") } == metaA.filter { $0.hasPrefix("NVME-A") })
        #expect(metaD.filter { $0.hasPrefix("uuid") } == metaA.filter { $0.hasPrefix("uuid") })

        // (g) /var shrinks to 384 MiB: var is recreated, the preserved /scratch keeps its data (and grows).
        let changed = layout.replacingOccurrences(
            of: "size: 512MiB, filesystem: xfs", with: "size: 384MiB, filesystem: xfs")
        #expect(changed != layout)
        let fifth = try VMEnvironment.machine(disks: [nvA, nvC, bystander]).run(
            script: Self.script(layout: changed, extra: checkData, serials: ["NVME-A", "NVME-C"]), name: "layout-g")
        let planG = try Self.plan(fifth, "plan")
        #expect(planG.refusals == [])
        #expect(planG.actions.contains { $0.summary == "remove logical volume system/var" })
        #expect(!planG.actions.contains { $0.summary.contains("scratch") && !$0.destroys.isEmpty })
        #expect(planG.notes.contains { $0.contains("system/scratch is preserved") })
        let applyG = try fifth.step("apply")
        #expect(applyG.status == 0, "\(applyG)")
        #expect(try fifth.step("check").status == 0)
        #expect(try Self.plan(fifth, "replan").converged)

        // (e) the bystander is byte-identical after all of the above.
        #expect(try Self.sha256(bystander.file) == bystanderBefore)
    }

    @Test func simpleLayoutOnOneSATADisk() throws {
        let dir = try VMEnvironment.scratchDirectory("layout-sata")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sata = VMDisk(
            id: "sata", bus: .sata, file: "\(dir)/sata.img", sizeBytes: 6 << 30, serial: "SATA-1", model: "PROV-SATA")
        let bystander = VMDisk(
            id: "by", bus: .virtio, file: "\(dir)/bystander.img", sizeBytes: 1 << 30, serial: "BYSTANDER")
        try Self.makeBystander(bystander.file)
        let before = try Self.sha256(bystander.file)
        let script = """
            cat > /tmp/layout.yaml <<'EOF'
            \(Self.example("layout-simple-sata.yaml"))
            EOF
            cat > /tmp/refused.yaml <<'EOF'
            disk: { type: virtio }
            volumes: [ { mount: /, size: rest } ]
            EOF
            step refused provisioner-agent apply --layout /tmp/refused.yaml --root /mnt/refused
            step apply provisioner-agent apply --layout /tmp/layout.yaml --root /sysroot
            step replan provisioner-agent plan --layout /tmp/layout.yaml --json
            step mounts findmnt -rn -o TARGET,SOURCE,FSTYPE -R /sysroot
            step swap blkid -s TYPE -o value /dev/system/swap
            step capture provisioner-agent layout capture --root /sysroot
            provisioner-agent layout capture --root /sysroot > /tmp/captured.yaml
            step captured-plan provisioner-agent plan --layout /tmp/captured.yaml --json
            step shutdown sh -c 'sync; umount -R /sysroot'
            """
        let run = try VMEnvironment.machine(disks: [sata, bystander]).run(script: script, name: "layout-f")
        // A layout that would overwrite the bystander's ext4 under wipe: never is refused, and writes nothing.
        let refused = try run.step("refused")
        #expect(refused.status == 4, "\(refused)")
        #expect(refused.stdout.contains("REFUSED") && refused.stdout.contains("wipe policy is never"), "\(refused)")
        let apply = try run.step("apply")
        #expect(apply.status == 0, "\(apply)")
        #expect(try Self.plan(run, "replan").converged)
        let mounts = try run.step("mounts").stdout
        #expect(mounts.contains("/sysroot /dev/mapper/system-root ext4"), "\(mounts)")
        #expect(mounts.contains("/sysroot/boot/efi /dev/sda1 vfat"), "\(mounts)")
        #expect(try run.step("swap").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "swap")
        // The captured layout describes this machine: it reads back and plans nothing.
        let captured = try run.step("capture")
        #expect(captured.status == 0, "\(captured)")
        let layout = try DiskLayout(parsing: captured.stdout, source: "captured")
        #expect(layout.disks.count == 1, "the bystander has no partition table and is left out:\n\(captured.stdout)")
        #expect(layout.disks.first?.criteria.serial?.pattern == "SATA-1")
        let volumes = layout.volumeGroups.first?.volumes ?? []
        #expect(volumes.first { $0.name == "root" }?.filesystem?.mount == "/", "\(captured.stdout)")
        #expect(volumes.first { $0.name == "swap" }?.filesystem?.type == .swap)
        #expect(layout.disks.first?.partitions.first?.filesystem?.mount == "/boot/efi")
        #expect(try Self.plan(run, "captured-plan").converged)
        #expect(try Self.sha256(bystander.file) == before)
    }
}
