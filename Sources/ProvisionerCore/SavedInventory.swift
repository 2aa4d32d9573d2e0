/// The machine's disks as read while the initrd waited for the network
/// (`provisioner-agent disks --save`, provisioner-inventory.service), kept for the boot to use
/// instead of reading them again: under QEMU's TCG the libblkid probes of two disks of two
/// partitions take 0.35 s of the boot, and the network wait leaves the CPU idle for seconds.
///
/// The boot takes it only when nothing about the disks can have changed since the reading began
/// (`problem`): the same block devices with the same numbers, sizes and partitions; none of them
/// held by an array or volume, or mounted, then or now; and udev's record of each one written
/// before the reading began. udev rewrites a device's record for every event it handles, and it
/// watches disks and partitions: a program that closes one it wrote makes a `change` event. So
/// anything written to a disk after the reading began, or any partition table re-read, shows.
public struct SavedInventory: Codable, Hashable, Sendable {
    /// When the reading began (seconds since the epoch, the clock udev's records are stamped by).
    public var startedAt: Double
    /// Every disk and partition the kernel listed then.
    public var devices: [BlockDeviceStamp]
    public var inventory: Inventory

    public init(startedAt: Double, devices: [BlockDeviceStamp], inventory: Inventory) {
        self.startedAt = startedAt
        self.devices = devices
        self.inventory = inventory
    }

    /// Why this reading cannot stand for a new one, or nil when it can. `current` is what the
    /// kernel lists now; `recordTimes`, the time of udev's record of each device (by `device`,
    /// absent when udev has none); `mounted`, the devices (`major:minor`) mounted now.
    public func problem(current: [BlockDeviceStamp], recordTimes: [String: Double], mounted: Set<String>) -> String? {
        let then = devices.sorted { $0.name < $1.name }
        let now = current.sorted { $0.name < $1.name }
        if then.map(\.name) != now.map(\.name) {
            let added = Set(now.map(\.name)).subtracting(then.map(\.name)).sorted()
            let gone = Set(then.map(\.name)).subtracting(now.map(\.name)).sorted()
            return "the block devices changed since"
                + (added.isEmpty ? "" : " (new: \(added.joined(separator: ", ")))")
                + (gone.isEmpty ? "" : " (gone: \(gone.joined(separator: ", ")))")
        }
        for (a, b) in zip(then, now) where a != b {
            return "\(b.name) changed since (\(a.describe) then, \(b.describe) now)"
        }
        // The disks and partitions read (a RAM disk or loop device in use says nothing of them).
        let read = Set(inventory.disks.flatMap { [$0.name] + $0.partitions.compactMap(\.name) })
        if let held = now.first(where: { read.contains($0.name) && !$0.holders.isEmpty }) {
            return "\(held.name) is held by \(held.holders.joined(separator: ", "))"
        }
        if let busy = now.first(where: { read.contains($0.name) && mounted.contains($0.device) }) {
            return "\(busy.name) is mounted"
        }
        for disk in inventory.disks {
            if !disk.mountpoints.isEmpty || disk.partitions.contains(where: { !$0.mountpoints.isEmpty }) {
                return "\(disk.name) was in use when it was read"
            }
            if disk.probeError != nil { return "\(disk.name) could not be read then" }
        }
        // The disks' own records (udev may keep none for a RAM disk or an unused loop device).
        for stamp in now where read.contains(stamp.name) {
            guard let written = recordTimes[stamp.device] else { return "udev has no record of \(stamp.name)" }
            if written >= startedAt { return "udev handled an event of \(stamp.name) since" }
        }
        return nil
    }
}

/// One disk or partition as the kernel lists it under /sys/class/block.
public struct BlockDeviceStamp: Codable, Hashable, Sendable {
    /// Kernel name: `nvme0n1`, `nvme0n1p2`.
    public var name: String
    /// `major:minor`.
    public var device: String
    public var sectors: UInt64
    /// Partitions: the first sector. Disks: nil.
    public var start: UInt64?
    public var holders: [String]

    public init(name: String, device: String, sectors: UInt64, start: UInt64? = nil, holders: [String] = []) {
        self.name = name
        self.device = device
        self.sectors = sectors
        self.start = start
        self.holders = holders
    }

    var describe: String {
        "device \(device), \(sectors) sectors" + (start.map { " from \($0)" } ?? "")
            + (holders.isEmpty ? "" : ", held by \(holders.joined(separator: ","))")
    }
}
