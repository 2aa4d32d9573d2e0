import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Reads what is above the partitions on the disks a layout covers: MD arrays
/// (their superblocks read directly, `mdadm --examine` for any other format),
/// LVM (labels and metadata read directly, or LVM's JSON reports for what that
/// does not describe, limited with `--devices` to these disks so that no other
/// disk's metadata is ever read or touched), and the filesystems on arrays and
/// logical volumes (libblkid).
///
/// To look inside arrays and volume groups it assembles the arrays whose
/// members are all on these disks and activates the volume groups whose
/// physical volumes all are. Neither writes to the disks' layout; apply needs
/// them up anyway.
public struct StorageObserver {
    public var log: (String) -> Void

    public init(log: @escaping (String) -> Void = { _ in }) { self.log = log }

    /// `disks` are the real disks the layout partitions (not merely matches). `readOnly`: arrays
    /// are assembled read-only, so looking inside them cannot write even their superblocks
    /// (`provisioner-agent plan`); the boot assembles them for writing, as apply needs them.
    public func observe(disks: [Disk], activate: Bool = true, readOnly: Bool = false) throws(SystemError)
        -> ObservedStorage
    {
        var observed = ObservedStorage()
        let mounts = MountTable.read()

        // In use before the agent did anything: mounted, swapped on, or held.
        for disk in disks {
            markInUse(&observed, disk.path, disk.mountpoints, disk.holders)
            for part in disk.partitions {
                markInUse(&observed, part.path ?? "", part.mountpoints, part.holders)
            }
        }

        // MD arrays: superblocks on the disks' partitions (and whole disks).
        var candidates: [String] = []
        for disk in disks {
            if disk.signatures.contains(where: { $0.type == "linux_raid_member" }) { candidates.append(disk.path) }
            for part in disk.partitions where part.signatures.contains(where: { $0.type == "linux_raid_member" }) {
                if let path = part.path { candidates.append(path) }
            }
        }
        let clock = ContinuousClock()
        let arraysStarted = clock.now
        let members = candidates
        // Each member's superblock read directly; mdadm examines whatever that does not describe.
        let examined = try concurrently(members.count) {
            i throws(SystemError) -> Result<[String: String], SystemError> in
            if let superblock = MDSuperblockReader.examine(members[i]) { return .success(superblock.exported) }
            let result = try Command.run(["mdadm", "--examine", "--export", members[i]])
            guard result.status == 0 else {
                return .failure(SystemError("examining", members[i], cause: result.lastMessage))
            }
            return .success(Self.keyValues(result.stdout))
        }
        var byUUID: [String: ObservedArray] = [:]
        var order: [String] = []
        var uuidOfMember: [String: String] = [:]
        for (path, result) in zip(candidates, examined) {
            let info: [String: String]
            switch result {
            case .success(let values): info = values
            case .failure(let error):
                log("mdadm --examine \(path): \(error.cause); treated as not an array member")
                continue
            }
            guard let uuid = info["MD_UUID"] else { continue }
            uuidOfMember[path] = uuid
            if byUUID[uuid] == nil {
                order.append(uuid)
                let rawName = info["MD_NAME"] ?? uuid
                let name = rawName.split(separator: ":").last.map(String.init) ?? rawName
                byUUID[uuid] = ObservedArray(
                    uuid: uuid, name: name, level: info["MD_LEVEL"] ?? "unknown", metadata: info["MD_METADATA"],
                    raidDevices: Int(info["MD_DEVICES"] ?? "") ?? 0, members: [])
            }
            byUUID[uuid]!.members.append(path)
        }
        let ourPaths = Set(disks.flatMap { [$0.path] + $0.partitions.compactMap(\.path) })
        var running = runningArrays(uuidOfMember: uuidOfMember)
        // Arrays that are down are assembled at once, from the members found on these disks: an
        // array that spans another disk is not ours to start.
        let down = activate ? order.filter { running[$0] == nil } : []
        let assembly = down.map { uuid in
            let array = byUUID[uuid]!
            let device = "/dev/md/\(LogicalDisk.isValidName(array.name) ? array.name : "agent-" + uuid.prefix(8))"
            return (
                device,
                ["mdadm", "--assemble", "--run"] + (readOnly ? ["--readonly"] : []) + [device, "--uuid=\(uuid)"]
                    + array.members
            )
        }
        // mdadm makes the array's node and /dev/md link itself instead of waiting for udev to make
        // them (up to 0.5 s an array under QEMU's TCG, where udev runs `mdadm --detail` for each):
        // what follows reads the array from sysfs and its /dev/mdN node, which the kernel makes.
        // udev still handles the arrays' events and makes the same links.
        let assembled = try concurrently(assembly.count) { i throws(SystemError) in
            try Command.run(assembly[i].1, environment: ["MDADM_NO_UDEV=1"])
        }
        for (uuid, ((device, _), result)) in zip(down, zip(assembly, assembled)) {
            let array = byUUID[uuid]!
            if result.status == 0 {
                log("assembled array \(array.name) (\(device)) from \(array.members.joined(separator: ", "))")
                observed.broughtUp.append(.array(name: array.name, device: device))
            } else {
                log("could not assemble array \(array.name): \(result.lastMessage)")
            }
        }
        if !down.isEmpty { running = runningArrays(uuidOfMember: uuidOfMember) }
        for uuid in order {
            guard var array = byUUID[uuid] else { continue }
            if let live = running[uuid] {
                array.device = live.device
                // Members the kernel lists that are not on our disks stay in the list: the planner refuses them.
                array.members = live.members
                array.componentSizeBytes = live.componentSizeBytes
            }
            byUUID[uuid] = array
            if let device = array.device {
                markInUse(&observed, device, mounts.mountpoints(ofDevice: device), [])
            }
        }
        log(
            "arrays: \(candidates.count) member(s) examined, \(order.count) array(s), \(observed.broughtUp.count) assembled, "
                + "in \(Self.seconds(clock.now - arraysStarted))")
        observed.arrays = order.compactMap { byUUID[$0] }
        try readContents(into: &observed, devices: observed.arrays.compactMap(\.device))

        // LVM, only on our devices.
        let lvmStarted = clock.now
        let lvmDevices = Array(ourPaths).sorted() + observed.arrays.compactMap(\.device)
        // Where LVM itself looks for labels: not in a disk with partitions, not in an array's member.
        let arrayMembers = Set(candidates)
        let labelled =
            disks.flatMap { disk in disk.partitions.isEmpty ? [disk.path] : disk.partitions.compactMap(\.path) }
            .filter { !arrayMembers.contains($0) } + observed.arrays.compactMap(\.device)
        let steps = try readLVM(
            into: &observed, devices: lvmDevices, labelled: labelled, activate: activate, mounts: mounts)
        log(
            "LVM: \(observed.volumeGroups.count) volume group(s) in \(Self.seconds(clock.now - lvmStarted))"
                + (steps.isEmpty ? "" : " (\(steps.joined(separator: ", ")))"))
        return observed
    }

    /// Takes down what `observe` brought up, last first: logical volumes deactivated, then arrays
    /// stopped, so the machine is as it was before anyone looked (`provisioner-agent plan`). An
    /// array that was down before cannot have held active volumes then: whatever udev activated on
    /// it since (event-based LVM activation) is deactivated before it stops.
    public func takeDown(_ observed: ObservedStorage) throws(SystemError) {
        for item in observed.broughtUp.reversed() {
            switch item {
            case .logicalVolumes(let group, let names, let devices):
                try Command.check(
                    ["lvm", "lvchange", "-an"] + Self.devicesArguments(devices) + names.map { "\(group)/\($0)" },
                    doing: "deactivating the logical volumes observing activated in", on: group)
                log("deactivated \(names.map { "\(group)/\($0)" }.joined(separator: ", ")) again")
            case .array(let name, let device):
                _ = try? Command.run(["udevadm", "settle", "--timeout=30"])
                let array = realPath(device)
                for group in observed.volumeGroups where group.physicalVolumes.contains(array) {
                    guard group.logicalVolumes.contains(where: { access($0.path, F_OK) == 0 }) else { continue }
                    try Command.check(
                        ["lvm", "vgchange", "-an"] + Self.devicesArguments(group.physicalVolumes) + [group.name],
                        doing:
                            "deactivating volume group \(group.name), activated on array \(name) since it was assembled,",
                        on: group.name)
                    log("deactivated volume group \(group.name) (udev had activated it) again")
                }
                try Command.check(
                    ["mdadm", "--stop", device], doing: "stopping array \(name), which observing assembled, at",
                    on: device)
                log("stopped array \(name) (\(device)) again")
            }
        }
    }

    func markInUse(_ observed: inout ObservedStorage, _ path: String, _ mountpoints: [String], _ holders: [String]) {
        guard !path.isEmpty else { return }
        if let mount = mountpoints.first {
            observed.inUse[path] = mount == "[SWAP]" ? "active swap" : "mounted on \(mount)"
        } else if !holders.isEmpty {
            observed.inUse[path] = "held by \(holders.joined(separator: ", ")) since before the agent ran"
        }
    }

    struct LiveArray {
        var device: String
        var members: [String]
        var componentSizeBytes: UInt64?
    }

    /// Arrays the kernel runs that hold an examined member, by UUID: read from sysfs (an array's
    /// UUID is its examined members'), with no tool run.
    func runningArrays(uuidOfMember: [String: String]) -> [String: LiveArray] {
        var result: [String: LiveArray] = [:]
        for name in Self.directory("/sys/block") where name.hasPrefix("md") {
            let sys = "/sys/block/\(name)"
            guard let state = readSysfs("\(sys)/md/array_state"), state != "clear", state != "inactive" else {
                continue
            }
            let members = Self.directory("\(sys)/slaves").filter { !$0.hasPrefix(".") }.map { "/dev/\($0)" }.sorted()
            guard let uuid = members.lazy.compactMap({ uuidOfMember[$0] }).first else { continue }
            let component = readSysfs("\(sys)/md/component_size").flatMap { UInt64($0) }.map { bytes($0, of: 1024) }
            result[uuid] = LiveArray(device: "/dev/\(name)", members: members, componentSizeBytes: component)
        }
        return result
    }

    /// The names in a directory; none when it cannot be read.
    static func directory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func seconds(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return "\(ms / 1000).\(String(ms % 1000 / 10).leftPadded(2)) s"
    }

    func readSysfs(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self).trimmed
    }

    /// What libblkid finds on each device, probed side by side (each probe waits on the device).
    func readContents(into observed: inout ObservedStorage, devices: [String]) throws(SystemError) {
        guard !devices.isEmpty else { return }
        let found = try concurrently(devices.count) { i throws(SystemError) in try Self.contents(devices[i]) }
        for (device, signatures) in zip(devices, found) { observed.contents[device] = signatures }
    }

    static func contents(_ device: String) throws(SystemError) -> [Signature] {
        try Blkid.signatures(path: device).filter { $0.usage != "partition_table" }
    }

    /// Waits until every path exists (polling every 10 ms), at most `seconds`: true when they all do.
    static func waitForPaths(_ paths: [String], seconds: Double) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while true {
            if paths.allSatisfy({ access($0, F_OK) == 0 }) { return true }
            if ContinuousClock.now >= deadline { return false }
            usleep(10_000)
        }
    }

    public static func keyValues(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            result[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return result
    }
}

/// The canonical path of a device node (`/dev/md/system` → `/dev/md127`).
public func realPath(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
}
