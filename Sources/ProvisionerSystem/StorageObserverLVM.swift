import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// The observer's LVM half: the groups on the layout's devices, from their labels and metadata
/// (`LVMReader`) or LVM's JSON reports, their volumes activated to look inside (device-mapper from
/// the metadata, or `vgchange`), and the volumes' filesystems. Every LVM run has `--devices`.
extension StorageObserver {
    struct Report<Row: Decodable>: Decodable {
        var report: [[String: [Row]]]
        var rows: [Row] { report.flatMap { $0.values.flatMap { $0 } } }
    }
    /// A physical volume and its group's facts (empty for a volume in no group).
    struct PVRow: Decodable {
        var pv_name: String
        var vg_name: String
        var vg_uuid: String
        var vg_extent_size: String
        var vg_extent_count: String
        var vg_free_count: String
    }
    struct LVRow: Decodable { var vg_name: String; var lv_name: String; var lv_size: String; var lv_path: String }

    static func lvmArguments(_ command: String, fields: String, devices: [String]) -> [String] {
        ["lvm", command, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields]
            + devicesArguments(devices)
    }

    func decodeReport<Row: Decodable>(_ result: CommandResult, _ command: String, devices: [String], as: Row.Type)
        throws(SystemError) -> [Row]
    {
        let subject = devices.joined(separator: ",")
        guard result.status == 0 else {
            throw SystemError(
                "reading LVM \(command) report of", subject,
                cause: "lvm exited with status \(result.status): \(result.lastMessage)")
        }
        do {
            return try JSONDecoder().decode(Report<Row>.self, from: Data(result.stdout.utf8)).rows
        } catch {
            throw SystemError("parsing the LVM \(command) report of", subject, cause: "\(error)")
        }
    }

    /// `--devices a,b,c`: LVM sees only these; everything else looks absent to it. `config`: more
    /// settings for the same `--config` (LVM reads one).
    public static func devicesArguments(_ devices: [String], config: [String] = []) -> [String] {
        [
            "--devices", devices.joined(separator: ","), "--config",
            (["devices/use_devicesfile=0"] + config).joined(separator: " "),
        ]
    }

    /// Returns how long each step took, for the log (`metadata 0.02 s`, `activation 0.45 s`, ...).
    /// `devices` are every device of these disks (LVM's `--devices`); `labelled`, those that can hold
    /// a physical volume as LVM sees them: no disk with partitions, no array member.
    func readLVM(
        into observed: inout ObservedStorage, devices: [String], labelled: [String], activate: Bool, mounts: MountTable
    ) throws(SystemError) -> [String] {
        let existing = devices.filter { access($0, F_OK) == 0 }
        guard !existing.isEmpty else { return [] }
        let clock = ContinuousClock()
        var mark = clock.now
        var steps: [String] = []
        func lap(_ what: String) {
            steps.append("\(what) \(Self.seconds(clock.now - mark))")
            mark = clock.now
        }
        let groups: [ObservedVolumeGroup]
        var view: LVMView?
        do {
            (groups, view) = try readMetadata(into: &observed, devices: labelled)
            lap("metadata")
        } catch {
            log("LVM: \(error.reason); asking lvm")
            groups = try readReports(into: &observed, devices: existing)
            lap("reports")
        }
        // Groups with a volume down are activated, to look inside the volumes.
        let inactive = groups.map { $0.logicalVolumes.filter { access($0.path, F_OK) != 0 } }
        let down = zip(groups, inactive).filter { !$0.1.isEmpty }.map(\.0.name)
        if activate && !down.isEmpty {
            var succeeded = false
            var how = "vgchange"
            do throws(SystemError) {
                try activateDirectly(inactive.joined().map(\.path), in: down, view: view)
                succeeded = true
                how = "device-mapper"
            } catch {
                log("LVM: \(error); activating with vgchange")
                // Without LVM's wait for udev, which it makes for one volume after another (most of a
                // 1.1 s activation of four volumes under TCG): LVM checks the volumes' nodes and links
                // once they are up and makes those udev has not made yet (its verify_udev_operations),
                // and udev makes the same ones when it gets to the volumes' events.
                let result = try Command.run(
                    ["lvm", "vgchange", "-ay", "--noudevsync"]
                        + Self.devicesArguments(existing, config: ["activation/verify_udev_operations=1"]) + down)
                if result.status != 0 {
                    log("could not activate volume group(s) \(down.joined(separator: ", ")): \(result.lastMessage)")
                }
                succeeded = result.status == 0
            }
            lap("activation (\(how))")
            // A failed activation makes no links to wait for: udev settles what it did make.
            let links = inactive.joined().map(\.path)
            if !succeeded || !Self.waitForPaths(links, seconds: 10) {
                _ = try? Command.run(["udevadm", "settle", "--timeout=30"])
            }
            for (group, volumes) in zip(groups, inactive) {
                let activated = volumes.filter { access($0.path, F_OK) == 0 }.map(\.name)
                if !activated.isEmpty {
                    observed.broughtUp.append(.logicalVolumes(group: group.name, names: activated, devices: existing))
                }
            }
            lap("udev's links")
        }
        let present = groups.flatMap(\.logicalVolumes).map(\.path).filter { access($0, F_OK) == 0 }
        try readContents(into: &observed, devices: present)
        lap("contents")
        for path in present { markInUse(&observed, path, mounts.mountpoints(ofDevice: path), []) }
        observed.volumeGroups = groups
        return steps
    }

    /// Loads the volumes at `paths` of the groups `names` into device-mapper from the metadata
    /// already read, as `vgchange -ay` would (`LVMView.deviceMapperVolumes`, `DeviceMapper`): three
    /// ioctls a volume instead of an LVM run that scans every device again. Throws, having undone
    /// what it made (or saying what it could not), for whatever it leaves to `vgchange`: no metadata
    /// read here, no udev to make the links, a volume LVM would load differently.
    func activateDirectly(_ paths: [String], in names: [String], view: LVMView?) throws(SystemError) {
        guard let view else {
            throw SystemError("activating", names.joined(separator: ", "), cause: "LVM's reports were used")
        }
        guard DeviceMapper.udevIsRunning else {
            throw SystemError(
                "activating", names.joined(separator: ", "), cause: "udev is not running to make the links")
        }
        var volumes: [DeviceMapperVolume] = []
        for name in names {
            do {
                volumes += try view.deviceMapperVolumes(of: name, number: DeviceMapper.number(of:))
                    .filter { paths.contains($0.path) }
            } catch {
                throw SystemError("activating volume group", name, cause: error.reason)
            }
        }
        try DeviceMapper.activate(volumes)
    }

    /// The groups from the volumes' labels and metadata, read from the devices themselves.
    func readMetadata(into observed: inout ObservedStorage, devices: [String]) throws(LVMView.Unsupported)
        -> ([ObservedVolumeGroup], LVMView)
    {
        let view = try LVMReader.read(devices.filter { access($0, F_OK) == 0 })
        for (device, group) in view.physicalVolumes { observed.physicalVolumes[realPath(device)] = group }
        let groups = view.groups.map { group in
            ObservedVolumeGroup(
                name: group.name, uuid: group.uuid, extentSizeBytes: group.extentSizeBytes,
                extentCount: group.extentCount, freeExtents: group.freeExtents,
                physicalVolumes: group.devices.map(realPath).sorted(),
                logicalVolumes: group.logicalVolumes.map {
                    ObservedLogicalVolume(name: $0.name, sizeBytes: $0.sizeBytes, path: "/dev/\(group.name)/\($0.name)")
                })
        }
        return (groups, view)
    }

    /// The groups from LVM's own reports (two at once: read-only, they share LVM's lock): the
    /// physical volumes with their group's facts, and the logical volumes.
    func readReports(into observed: inout ObservedStorage, devices existing: [String]) throws(SystemError)
        -> [ObservedVolumeGroup]
    {
        let reports = [
            ("pvs", "pv_name,vg_name,vg_uuid,vg_extent_size,vg_extent_count,vg_free_count"),
            ("lvs", "vg_name,lv_name,lv_size,lv_path"),
        ]
        let results = try concurrently(reports.count) { i throws(SystemError) in
            try Command.run(Self.lvmArguments(reports[i].0, fields: reports[i].1, devices: existing))
        }
        let pvs = try decodeReport(results[0], "pvs", devices: existing, as: PVRow.self)
        let lvs = try decodeReport(results[1], "lvs", devices: existing, as: LVRow.self)
        for pv in pvs { observed.physicalVolumes[realPath(pv.pv_name)] = pv.vg_name }
        var groups: [ObservedVolumeGroup] = []
        for vg in pvs where !vg.vg_name.isEmpty && !groups.contains(where: { $0.name == vg.vg_name }) {
            let members = pvs.filter { $0.vg_name == vg.vg_name }.map { realPath($0.pv_name) }.sorted()
            var group = ObservedVolumeGroup(
                name: vg.vg_name, uuid: vg.vg_uuid, extentSizeBytes: UInt64(vg.vg_extent_size) ?? 0,
                extentCount: UInt64(vg.vg_extent_count) ?? 0, freeExtents: UInt64(vg.vg_free_count) ?? 0,
                physicalVolumes: members, logicalVolumes: [])
            for lv in lvs where lv.vg_name == vg.vg_name {
                let path = lv.lv_path.isEmpty ? "/dev/\(vg.vg_name)/\(lv.lv_name)" : lv.lv_path
                group.logicalVolumes.append(
                    ObservedLogicalVolume(name: lv.lv_name, sizeBytes: UInt64(lv.lv_size) ?? 0, path: path))
            }
            groups.append(group)
        }
        return groups
    }
}
