import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Reads the machine's disks from sysfs, /dev/disk and libblkid.
///
/// No other tool's text output is parsed. The roots are parameters so a test
/// can point the reader at a copy of another machine's sysfs.
public struct DiskInventoryReader: Sendable {
    public var sysfs: String
    public var dev: String
    public var procMountInfo: String
    public var procSwaps: String
    /// Include ram, loop, zram, md and dm devices.
    public var includeVirtual: Bool
    /// Read what is on each disk with libblkid (needs read access to /dev).
    public var probeContents: Bool
    /// Where udev keeps its records (`udev/data` under it).
    public var run = "/run"

    public init(
        sysfs: String = "/sys", dev: String = "/dev", procMountInfo: String = "/proc/self/mountinfo",
        procSwaps: String = "/proc/swaps", includeVirtual: Bool = false, probeContents: Bool = true
    ) {
        self.sysfs = sysfs
        self.dev = dev
        self.procMountInfo = procMountInfo
        self.procSwaps = procSwaps
        self.includeVirtual = includeVirtual
        self.probeContents = probeContents
    }

    public func read() throws(SystemError) -> Inventory {
        let blockDir = "\(sysfs)/block"
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: blockDir).sorted()
        } catch {
            throw SystemError("listing", blockDir, cause: "\(error)")
        }
        let links = DiskLinks(dev: dev)
        let mounts = MountTable.read(mountInfo: procMountInfo, swaps: procSwaps)
        var disks: [Disk] = []
        for name in names {
            guard let disk = try describe(name: name, links: links, mounts: mounts) else { continue }
            disks.append(disk)
        }
        if probeContents {
            // The disks side by side: a probe waits on reads all over the disk (under QEMU's TCG
            // 60-70 ms a device, one after another 0.4 s for two disks of two partitions).
            let described = disks
            disks = try concurrently(described.count) { i in
                var disk = described[i]
                // One unreadable disk must not hide the others; it is marked and
                // later refused by anything that would write.
                do throws(SystemError) { try probe(&disk) } catch { disk.probeError = error.description }
                return disk
            }
        }
        return Inventory(disks: disks)
    }

    /// One whole disk from /sys/block/NAME, or nil when it is not to be listed.
    func describe(name: String, links: DiskLinks, mounts: MountTable) throws(SystemError) -> Disk? {
        let base = "\(sysfs)/block/\(name)"
        let attr = SysfsAttributes(base)
        let sectors = attr.uint("size") ?? 0
        let devicePath = attr.realPath("device") ?? attr.realPath("") ?? base
        let transport = Self.transport(name: name, devicePath: devicePath)
        let virtual = [.md, .dm, .loop, .ram, .zram].contains(transport)
        if virtual && !includeVirtual { return nil }
        if sectors == 0 && !includeVirtual { return nil }  // empty card readers, ejected media
        if name.hasPrefix("sr") && !includeVirtual { return nil }  // optical drives are not disks to provision

        var vendor = attr.string("device/vendor")
        var model = attr.string("device/model")
        var serial: String?
        var wwn: String?
        switch transport {
        case .nvme:
            // /sys/block/nvmeXnY/device is the controller; its device is the PCI function.
            vendor = attr.string("device/device/vendor").map(PCIVendors.name(forID:))
            serial = attr.string("device/serial")
            wwn = attr.string("wwid") ?? attr.string("device/wwid")
        case .virtio:
            vendor = nil
            model = nil
            serial = attr.string("serial")
        default:
            serial =
                attr.vpdSerial("device/vpd_pg80")
                ?? UdevDatabase(dev: dev, run: run).serial(devNumber: attr.string("dev"))
            if let id = attr.string("device/wwid"), id.hasPrefix("naa.") || id.hasPrefix("eui.") { wwn = id }
        }

        let (byId, byPath) = links.links(for: name)
        var partitions: [Partition] = []
        for partName in Self.partitionNames(of: base) {
            let p = SysfsAttributes("\(base)/\(partName)")
            let number = p.uint("partition").map(Int.init) ?? 0
            partitions.append(
                Partition(
                    number: number, name: partName, path: "\(dev)/\(partName)",
                    startBytes: bytes(p.uint("start") ?? 0, of: 512), sizeBytes: bytes(p.uint("size") ?? 0, of: 512),
                    holders: p.list("holders"), mountpoints: mounts.mountpoints(devNumber: p.string("dev"))))
        }

        return Disk(
            name: name, path: "\(dev)/\(name)", transport: transport, rotational: attr.uint("queue/rotational") == 1,
            vendor: vendor, model: model, serial: serial, wwn: wwn, sizeBytes: bytes(sectors, of: 512),
            logicalSectorSize: Int(attr.uint("queue/logical_block_size") ?? 512),
            physicalSectorSize: Int(attr.uint("queue/physical_block_size") ?? 512),
            readOnly: attr.uint("ro") == 1, removable: attr.uint("removable") == 1, byId: byId, byPath: byPath,
            sysfsPath: devicePath, partitions: partitions.sorted { $0.number < $1.number },
            holders: attr.list("holders"), mountpoints: mounts.mountpoints(devNumber: attr.string("dev")))
    }

    /// Adds what libblkid finds on the disk to what the kernel said about it.
    func probe(_ disk: inout Disk) throws(SystemError) {
        // The whole disk's signatures beside its partition table and each partition's.
        let path = disk.path
        let parts = try concurrently(2) { i throws(SystemError) -> ([Signature], PartitionTable?, [Partition]) in
            if i == 0 { return (try Blkid.signatures(path: path), nil, []) }
            let (table, found) = try Blkid.partitions(path: path)
            return ([], table, found)
        }
        disk.signatures = parts[0].0
        let (table, found) = (parts[1].1, parts[1].2)
        disk.partitionTable = table
        // Merge: the kernel knows names and holders, libblkid knows types and contents.
        var merged: [Partition] = []
        for var p in found {
            if let kernel = disk.partitions.first(where: { $0.number == p.number }) {
                p.name = kernel.name
                p.path = kernel.path
                p.holders = kernel.holders
                p.mountpoints = kernel.mountpoints
            }
            merged.append(p)
        }
        // Partitions the kernel has but the on-disk table no longer lists
        // (the table was rewritten and not yet re-read) stay visible.
        for kernel in disk.partitions where !merged.contains(where: { $0.number == kernel.number }) {
            merged.append(kernel)
        }
        disk.partitions = merged.sorted { $0.number < $1.number }
    }

    static func partitionNames(of base: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        return entries.filter { FileManager.default.fileExists(atPath: "\(base)/\($0)/partition") }.sorted()
    }

    /// How the disk is attached, from its kernel name and its place on the buses.
    public static func transport(name: String, devicePath: String) -> Transport {
        if name.hasPrefix("nvme") { return .nvme }
        if name.hasPrefix("vd") || name.hasPrefix("xvd") { return name.hasPrefix("vd") ? .virtio : .unknown }
        if name.hasPrefix("md") { return .md }
        if name.hasPrefix("dm-") { return .dm }
        if name.hasPrefix("loop") { return .loop }
        if name.hasPrefix("zram") { return .zram }
        if name.hasPrefix("ram") { return .ram }
        if name.hasPrefix("mmcblk") { return .mmc }
        let components = devicePath.split(separator: "/")
        if components.contains(where: { $0.hasPrefix("usb") }) { return .usb }
        if components.contains(where: { $0.hasPrefix("end_device-") || $0.hasPrefix("expander-") }) { return .sas }
        if components.contains(where: { $0.hasPrefix("ata") && $0.dropFirst(3).allSatisfy(\.isNumber) }) {
            return .sata
        }
        if components.contains(where: { $0.hasPrefix("virtio") }) { return .scsi }  // virtio-scsi
        if components.contains(where: { $0.hasPrefix("host") }) { return .scsi }
        return .unknown
    }
}

/// Reads attribute files under one sysfs directory. Absent files are nil:
/// which attributes exist depends on the driver.
struct SysfsAttributes {
    let base: String
    init(_ base: String) { self.base = base }

    func path(_ name: String) -> String { name.isEmpty ? base : "\(base)/\(name)" }

    func string(_ name: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path(name)) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmed
        return text.isEmpty ? nil : text
    }

    func uint(_ name: String) -> UInt64? { string(name).flatMap { UInt64($0) } }

    func realPath(_ name: String) -> String? {
        let p = path(name)
        guard FileManager.default.fileExists(atPath: p) else { return nil }
        return URL(fileURLWithPath: p).resolvingSymlinksInPath().path
    }

    func list(_ name: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path(name))) ?? []).sorted()
    }

    /// The unit serial number from SCSI VPD page 0x80 (libata provides it for
    /// SATA disks too): a 4-byte header, then the serial, space padded.
    func vpdSerial(_ name: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path(name)), data.count > 4 else { return nil }
        let bytes = [UInt8](data)
        guard bytes[1] == 0x80 else { return nil }
        let length = Int(bytes[2]) << 8 | Int(bytes[3])
        let body = bytes[4..<min(bytes.count, 4 + length)]
        let text = String(decoding: body, as: UTF8.self).trimmed
        return text.isEmpty ? nil : text
    }
}

/// udev's database under /run/udev/data, read for the serial of disks whose
/// driver does not publish one in sysfs.
struct UdevDatabase {
    let dev: String
    let run: String

    func serial(devNumber: String?) -> String? {
        guard let devNumber, let data = FileManager.default.contents(atPath: "\(run)/udev/data/b\(devNumber)") else {
            return nil
        }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("E:ID_SERIAL_SHORT=") {
            let value = line.dropFirst("E:ID_SERIAL_SHORT=".count)
            return value.isEmpty ? nil : String(value)
        }
        return nil
    }
}

/// The /dev/disk/by-id and by-path links, by the kernel name they point to.
struct DiskLinks {
    var byId: [String: [String]] = [:]
    var byPath: [String: [String]] = [:]

    init(dev: String) {
        byId = Self.scan("\(dev)/disk/by-id")
        byPath = Self.scan("\(dev)/disk/by-path")
    }

    static func scan(_ dir: String) -> [String: [String]] {
        var result: [String: [String]] = [:]
        let fm = FileManager.default
        for entry in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
            let link = "\(dir)/\(entry)"
            guard let target = try? fm.destinationOfSymbolicLink(atPath: link) else { continue }
            let name = String(target.split(separator: "/").last ?? "")
            result[name, default: []].append(link)
        }
        return result
    }

    func links(for name: String) -> (byId: [String], byPath: String?) {
        // Prefer the shortest by-path name: udev makes both `...-ata-1` and `...-ata-1.0`.
        let path = (byPath[name] ?? []).min { ($0.count, $0) < ($1.count, $1) }
        return (byId[name] ?? [], path)
    }
}

/// Names of the makers of NVMe controllers, by PCI vendor ID. NVMe has no
/// vendor string in sysfs; this is how lsblk-like tools name them too.
enum PCIVendors {
    static let names: [String: String] = [
        "0x144d": "Samsung", "0x8086": "Intel", "0x1344": "Micron", "0x15b7": "SanDisk",
        "0x1e0f": "Kioxia", "0x1179": "Toshiba", "0x1bb1": "Seagate", "0x1c5c": "SK hynix",
        "0x1cc1": "ADATA", "0x126f": "Silicon Motion", "0x1987": "Phison", "0x1e4b": "Maxio",
        "0x1d79": "Transcend", "0x1b4b": "Marvell", "0x1dbe": "INNOGRIT", "0x2646": "Kingston",
        "0x1c58": "HGST", "0x101c": "Western Digital", "0x1b96": "Western Digital", "0x025e": "Solidigm",
        "0x1cc4": "Union Memory", "0x1e49": "YMTC", "0x1b36": "QEMU", "0x1af4": "Red Hat", "0x1d0f": "Amazon",
    ]

    static func name(forID id: String) -> String { names[id.lowercased()] ?? id }
}

/// `count` units of `unit` bytes (sysfs counts 512-byte sectors, MD KiB), saturating: a value no
/// disk can have must not trap the agent.
func bytes(_ count: UInt64, of unit: UInt64) -> UInt64 {
    let (bytes, overflow) = count.multipliedReportingOverflow(by: unit)
    return overflow ? UInt64.max : bytes
}

extension DiskInventoryReader {
    /// Where `provisioner-agent disks --save` keeps the reading for the boot (the initrd's /run).
    public static let savedPath = "/run/provisioner/inventory.json"

    /// Reads the disks, with what `SavedInventory.problem` later checks: the time the reading began
    /// and the block devices the kernel listed.
    public func readForLater() throws(SystemError) -> SavedInventory {
        // The clock the kernel stamps files with (coarse: a record written just after this moment
        // must not carry an earlier time than it).
        var now = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &now)
        let devices = stamps()
        let inventory = try read()
        return SavedInventory(
            startedAt: Double(now.tv_sec) + Double(now.tv_nsec) / 1e9, devices: devices, inventory: inventory)
    }

    /// Reads the disks with `readForLater` and keeps the reading in `path` (written under a
    /// temporary name, flushed and renamed: the boot finds the whole file or none).
    @discardableResult
    public func save(to path: String = savedPath) throws(SystemError) -> SavedInventory {
        let saved = try readForLater()
        let bytes: [UInt8]
        do { bytes = Array(try JSONEncoder().encode(saved)) } catch {
            throw SystemError("encoding the disks read for", path, cause: "\(error)")
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let temporary = path + ".partial"
        do {
            let file = try OwnedDescriptor(
                opening: temporary, flags: O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600)
            try file.write(bytes)
            try file.sync()
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = SystemError.fromErrno("renaming into place", path)
            unlink(temporary)
            throw error
        }
        return saved
    }

    /// The disks for a boot's attempt: on the first, the reading kept in `path` when it can stand
    /// for a new one (`SavedInventory.problem`), else read now; later attempts always read now
    /// (the first may have written to the disks). The kept reading is removed: it is used once.
    /// `note` says which, for the session's events.
    public func forBoot(firstAttempt: Bool, savedAt path: String = savedPath) -> (
        inventory: Inventory?, note: String?, reused: Bool
    ) {
        defer { unlink(path) }
        var note: String?
        if firstAttempt {
            let (saved, problem) = saved(at: path)
            if let saved {
                return (
                    saved.inventory, "the disks as read while the network came up (nothing about them changed since)",
                    true
                )
            }
            note = problem.map { "the disks are read again: \($0)" }
        }
        return (try? read(), note, false)
    }

    /// A reading kept by `readForLater`, when it can stand for a new one; else why not (`nil` and
    /// the reason, or `nil` and nil when there is none).
    public func saved(at path: String = savedPath) -> (SavedInventory?, problem: String?) {
        guard let data = FileManager.default.contents(atPath: path) else { return (nil, nil) }
        let saved: SavedInventory
        do { saved = try JSONDecoder().decode(SavedInventory.self, from: data) } catch {
            return (nil, "\(path) cannot be read: \(error)")
        }
        let current = stamps()
        let mounts = MountTable.read(mountInfo: procMountInfo, swaps: procSwaps)
        let mounted = Set(current.map(\.device).filter { !mounts.mountpoints(devNumber: $0).isEmpty })
        if let problem = saved.problem(current: current, recordTimes: recordTimes(current), mounted: mounted) {
            return (nil, problem)
        }
        return (saved, nil)
    }

    /// Every block device under /sys/block and its partitions, as the kernel lists them now.
    public func stamps() -> [BlockDeviceStamp] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "\(sysfs)/block").sorted()) ?? []
        var result: [BlockDeviceStamp] = []
        for name in names {
            let base = "\(sysfs)/block/\(name)"
            let disk = SysfsAttributes(base)
            result.append(
                BlockDeviceStamp(
                    name: name, device: disk.string("dev") ?? "", sectors: disk.uint("size") ?? 0,
                    holders: disk.list("holders")))
            for part in Self.partitionNames(of: base) {
                let p = SysfsAttributes("\(base)/\(part)")
                result.append(
                    BlockDeviceStamp(
                        name: part, device: p.string("dev") ?? "", sectors: p.uint("size") ?? 0,
                        start: p.uint("start") ?? 0, holders: p.list("holders")))
            }
        }
        return result
    }

    /// When udev last wrote its record of each device (`/run/udev/data/bMAJOR:MINOR`).
    public func recordTimes(_ stamps: [BlockDeviceStamp]) -> [String: Double] {
        var times: [String: Double] = [:]
        for stamp in stamps where !stamp.device.isEmpty {
            var st = stat()
            guard stat("\(run)/udev/data/b\(stamp.device)", &st) == 0 else { continue }
            times[stamp.device] = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        }
        return times
    }
}
