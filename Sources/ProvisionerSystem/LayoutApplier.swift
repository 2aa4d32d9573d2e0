import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Carries out a plan's actions and brings the layout up under a root
/// directory. The thin layer: every decision was made by `LayoutPlanner`;
/// here each action becomes one or two tool invocations, logged as
/// `op(3/9): [started] ...` / `[finished] in 0.42 s`.
public struct LayoutApplier {
    public var log: (String) -> Void

    public init(log: @escaping (String) -> Void) { self.log = log }

    /// Runs the actions in order. Refuses the whole plan, writing nothing, if it has refusals.
    public func apply(_ plan: LayoutPlan) throws(SystemError) {
        guard plan.refusals.isEmpty else {
            throw SystemError(
                "applying the layout to", "the matched disks",
                cause: "the plan is refused: " + plan.refusals.joined(separator: "; "))
        }
        for (index, action) in plan.actions.enumerated() {
            try step("op(\(index + 1)/\(plan.actions.count))", action.summary) { () throws(SystemError) in
                try perform(action)
            }
        }
    }

    /// Assembles arrays, activates volume groups and mounts every filesystem under `root`.
    public func activate(_ activation: Activation, root: String) throws(SystemError) {
        settle()
        for array in activation.arrays where !array.isAssembled {
            if access(array.device, F_OK) == 0, isRunning(array.device) { continue }
            try step("activate", "assemble array \(array.name)") { () throws(SystemError) in
                try Command.check(
                    ["mdadm", "--assemble", "--run", array.device] + array.members,
                    doing: "assembling array \(array.name) as", on: array.device)
            }
        }
        for group in activation.volumeGroups {
            if !group.volumes.isEmpty && group.volumes.allSatisfy({ access("/dev/\(group.name)/\($0)", F_OK) == 0 }) {
                log("activate: volume group \(group.name) is active already")
                continue
            }
            try step("activate", "activate volume group \(group.name)") { () throws(SystemError) in
                try Command.check(
                    ["lvm", "vgchange", "-ay"] + StorageObserver.devicesArguments(group.devices) + [group.name],
                    doing: "activating volume group", on: group.name)
            }
            settle()
        }
        // Each wave of mounts at once: under emulation a mount costs mostly its process start and
        // the filesystem's own checks, which run side by side.
        let rootPath = root.hasSuffix("/") ? String(root.dropLast()) : root
        for wave in activation.mountWaves {
            let targets = wave.map { $0.mountPoint == "/" ? rootPath : rootPath + $0.mountPoint }
            for (mount, target) in zip(wave, targets) { log("mount: [started] \(mount.device) on \(target)") }
            let outcomes = try concurrently(wave.count) { i -> (Duration, SystemError?) in
                let clock = ContinuousClock()
                let start = clock.now
                do throws(SystemError) { try Self.mount(wave[i], on: targets[i]) } catch {
                    return (clock.now - start, error)
                }
                return (clock.now - start, nil)
            }
            for (mount, (target, (elapsed, failure))) in zip(wave, zip(targets, outcomes)) {
                if let failure {
                    log("mount: [failed] \(mount.device) on \(target): \(failure)")
                    throw failure
                }
                log("mount: [finished] \(mount.device) on \(target) in \(StorageObserver.seconds(elapsed))")
            }
        }
    }

    /// Mounts one filesystem (unless something is mounted there already) and grows it when asked.
    static func mount(_ mount: Activation.Mount, on target: String) throws(SystemError) {
        try makeDirectories(target)
        if !MountTable.read().isMountPoint(target) {
            try Mounter.mount(mount.device, on: target, type: mount.type.rawValue, options: mount.options)
        }
        if mount.grow {
            switch mount.type {
            case .ext4:
                try Command.check(["resize2fs", mount.device], doing: "growing the filesystem on", on: mount.device)
            case .xfs: try Command.check(["xfs_growfs", target], doing: "growing the filesystem on", on: target)
            case .vfat, .swap: break
            }
        }
    }

    func step(_ tag: String, _ what: String, _ body: () throws(SystemError) -> Void) throws(SystemError) {
        log("\(tag): [started] \(what)")
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try body()
        } catch {
            log("\(tag): [failed] \(what): \(error)")
            throw error
        }
        let elapsed = clock.now - start
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        log("\(tag): [finished] \(what) in \(ms / 1000).\(String(ms % 1000 / 10).leftPadded(2)) s")
    }

    func settle() { _ = try? Command.run(["udevadm", "settle", "--timeout=60"]) }

    func perform(_ action: LayoutAction) throws(SystemError) {
        let lvm = { (devices: [String]) in StorageObserver.devicesArguments(devices) }
        switch action.operation {
        case .deactivateVolumeGroup(let name, let devices):
            try Command.check(
                ["lvm", "vgchange", "-an"] + lvm(devices) + [name], doing: "deactivating volume group", on: name)
        case .stopArray(_, let device):
            try Command.check(["mdadm", "--stop", device], doing: "stopping array", on: device)
        case .failArrayMember(let array, let member):
            try Command.check(
                ["mdadm", array, "--fail", member, "--remove", member], doing: "removing \(member) from array",
                on: array)
        case .removeVolumeGroup(let name, let devices):
            try Command.check(
                ["lvm", "vgremove", "-ff", "-y"] + lvm(devices) + [name], doing: "removing volume group", on: name)
            try Command.check(
                ["lvm", "pvremove", "-ff", "-y"] + lvm(devices) + devices, doing: "removing physical volumes of",
                on: name)
        case .removeLogicalVolume(let group, let name, let devices):
            let path = "/dev/\(group)/\(name)"
            if access(path, F_OK) == 0 {
                try Command.check(["wipefs", "--all", "--force", path], doing: "wiping", on: path)
            }
            try Command.check(
                ["lvm", "lvremove", "-f", "-y"] + lvm(devices) + ["\(group)/\(name)"], doing: "removing logical volume",
                on: path)
        case .wipe(let device):
            guard access(device, F_OK) == 0 else { return }
            try Command.check(["wipefs", "--all", "--force", device], doing: "wiping signatures on", on: device)
        case .writePartitionTable(let disk, let partitions):
            let script = "label: gpt\n" + partitions.map { sfdiskLine($0, disk: disk) }.joined()
            try Command.check(
                ["sfdisk", "--wipe", "always", "--wipe-partitions", "always", disk], input: script,
                doing: "writing a GPT on", on: disk)
            try rereadPartitions(disk)
        case .addPartitions(let disk, let partitions):
            let script = partitions.map { sfdiskLine($0, disk: disk) }.joined()
            try Command.check(
                ["sfdisk", "--append", "--wipe-partitions", "always", disk], input: script,
                doing: "adding partitions to", on: disk)
            try rereadPartitions(disk)
        case .setPartitionName(let disk, let number, let name):
            try Command.check(
                ["sfdisk", "--part-label", disk, String(number), name], doing: "naming partition \(number) of", on: disk
            )
        case .setPartitionType(let disk, let number, let guid):
            try Command.check(
                ["sfdisk", "--part-type", disk, String(number), guid],
                doing: "setting the type of partition \(number) of", on: disk)
        case .createArray(let name, let level, let metadata, let members):
            try Command.check(
                [
                    "mdadm", "--create", "/dev/md/\(name)", "--run", "--level=\(level.rawValue)",
                    "--raid-devices=\(members.count)", "--metadata=\(metadata)", "--name=\(name)", "--homehost=any",
                ]
                    + members,
                doing: "creating array", on: "/dev/md/\(name)")
            settle()
        case .addArrayMember(_, let device, let member):
            _ = try? Command.run(["mdadm", "--readwrite", device])
            try Command.check(["mdadm", device, "--add", member], doing: "adding \(member) to array", on: device)
        case .createPhysicalVolume(let device):
            try Command.check(
                ["lvm", "pvcreate", "-y"] + lvm([device]) + [device], doing: "creating a physical volume on", on: device
            )
        case .createVolumeGroup(let name, let devices):
            try Command.check(
                ["lvm", "vgcreate", "-y"] + lvm(devices) + [name] + devices, doing: "creating volume group", on: name)
        case .createLogicalVolume(let group, let name, let size, let devices):
            try Command.check(
                ["lvm", "lvcreate", "-y", "--wipesignatures", "y", "--zero", "y", "-n", name]
                    + sizeArguments(size, extend: false)
                    + lvm(devices) + [group],
                doing: "creating logical volume", on: "/dev/\(group)/\(name)")
            settle()
        case .extendLogicalVolume(let group, let name, let size, let devices):
            try Command.check(
                ["lvm", "lvextend", "-y"] + sizeArguments(size, extend: true) + lvm(devices) + ["\(group)/\(name)"],
                doing: "extending logical volume", on: "/dev/\(group)/\(name)")
        case .makeFilesystem(let device, let fs):
            try Command.check(mkfsArguments(fs) + [device], doing: "making \(fs.type.rawValue) on", on: device)
        case .setLabel(let device, let type, let label):
            let argv: [String] =
                switch type {
                case .ext4: ["e2label", device, label]
                case .xfs: ["xfs_admin", "-L", label, device]
                case .vfat: ["fatlabel", device, label]
                case .swap: ["swaplabel", "-L", label, device]
                }
            try Command.check(argv, doing: "labelling", on: device)
        }
    }

    func sfdiskLine(_ p: PlannedPartition, disk: String) -> String {
        // Byte offsets (MiB-aligned), so the disk's sector size does not matter.
        "start=\(p.startBytes >> 20)MiB, size=\(p.sizeBytes >> 20)MiB, type=\(p.typeGUID), name=\"\(p.name)\"\n"
    }

    func rereadPartitions(_ disk: String) throws(SystemError) {
        _ = try? Command.run(["partx", "--update", disk])
        settle()
    }

    func sizeArguments(_ size: VolumeSize, extend: Bool) -> [String] {
        switch size {
        case .extents(let n): ["-l", String(n)]
        case .bytes(let b): ["-L", "\(b)b"]
        case .percentOfGroup(let bp): ["-l", "\(bp / 100)%VG"]
        case .allFree: ["-l", extend ? "+100%FREE" : "100%FREE"]
        }
    }

    func mkfsArguments(_ fs: FilesystemSpec) -> [String] {
        var argv: [String]
        switch fs.type {
        case .ext4:
            argv = ["mkfs.ext4", "-F", "-q"]
            if let label = fs.label { argv += ["-L", label] }
        case .xfs:
            argv = ["mkfs.xfs", "-f", "-q"]
            if let label = fs.label { argv += ["-L", label] }
        case .vfat:
            argv = ["mkfs.vfat"]
            if let label = fs.label { argv += ["-n", label] }
        case .swap:
            argv = ["mkswap", "-f"]
            if let label = fs.label { argv += ["-L", label] }
        }
        return argv + fs.mkfsOptions
    }

    func isRunning(_ device: String) -> Bool {
        let name = realPath(device).split(separator: "/").last.map(String.init) ?? ""
        guard let data = FileManager.default.contents(atPath: "/sys/block/\(name)/md/array_state") else { return false }
        let state = String(decoding: data, as: UTF8.self).trimmed
        return state != "clear" && state != "inactive"
    }

    static func makeDirectories(_ path: String) throws(SystemError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw .fromErrno("creating directory", current) }
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
