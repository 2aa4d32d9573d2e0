/// A Linux MD array member's version-1 superblock (`struct mdp_superblock_1`, the kernel's
/// `include/uapi/linux/raid/md_p.h`), read without running `mdadm --examine`: the array's
/// UUID, name, level and size in devices. Pure: 4 KiB in, values out; the checksum is the
/// kernel's, so a stale or torn block is never taken for a superblock. Version 0.90 and the
/// external formats (IMSM, DDF) are left to mdadm.
public struct MDSuperblock: Hashable, Sendable {
    /// `1.0` (at the end of the device), `1.1` (at its start) or `1.2` (4 KiB in).
    public var version: String
    /// As mdadm prints it: four groups of eight hex digits joined by `:`.
    public var uuid: String
    /// The array's name as stored: `homehost:name`, or just the name.
    public var name: String
    /// mdadm's name of the level: `raid1`, `raid0`, `linear`, `raid10`, ...
    public var level: String
    public var raidDevices: Int
    public var events: UInt64

    public static let magic: UInt32 = 0xa92b_4efc
    /// The bytes a superblock (with its role table) can take.
    public static let blockSize = 4096

    /// Where each version's superblock would be on a device of `sizeBytes`, in bytes.
    public static func locations(deviceSizeBytes: UInt64) -> [(version: String, offset: UInt64)] {
        var result: [(String, UInt64)] = [("1.1", 0), ("1.2", 4096)]
        let sectors = deviceSizeBytes / 512
        if sectors >= 16 + 8 { result.append(("1.0", ((sectors - 16) & ~UInt64(7)) * 512)) }
        return result
    }

    /// Where a version 0.90 superblock would be (64 KiB-aligned, 64 KiB before the end): one
    /// there beside a version 1 superblock leaves the choice to mdadm.
    public static func version090Offset(deviceSizeBytes: UInt64) -> UInt64? {
        let sectors = deviceSizeBytes / 512
        guard sectors >= 256 else { return nil }
        return ((sectors & ~UInt64(127)) - 128) * 512
    }

    /// The block starts with the MD magic (any version).
    public static func hasMagic(_ block: [UInt8]) -> Bool { block.count >= 4 && le32(block, 0) == magic }

    static let levels: [Int32: String] = [
        -1: "linear", 0: "raid0", 1: "raid1", 4: "raid4", 5: "raid5", 6: "raid6", 10: "raid10", -4: "multipath",
        -5: "faulty",
    ]

    /// The superblock in `block` (read at `offset` bytes into the device), or nil when there is no
    /// valid one: wrong magic or version, a checksum that does not match, or one that says it lives
    /// elsewhere.
    public static func parse(_ block: [UInt8], at offset: UInt64, version: String) -> MDSuperblock? {
        guard block.count >= 256, le32(block, 0) == magic, le32(block, 4) == 1 else { return nil }
        guard le64(block, 144) * 512 == offset else { return nil }
        let maxDev = Int(le32(block, 220))
        let size = 256 + maxDev * 2
        guard maxDev <= (blockSize - 256) / 2, size <= block.count else { return nil }
        guard checksum(block, size: size) == le32(block, 216) else { return nil }
        guard let level = levels[Int32(bitPattern: le32(block, 72))] else { return nil }
        let hex = Array("0123456789abcdef")
        var uuid = ""
        for i in 16..<32 {
            if i > 16 && (i - 16) % 4 == 0 { uuid.append(":") }
            uuid.append(hex[Int(block[i] >> 4)])
            uuid.append(hex[Int(block[i] & 0xf)])
        }
        let nameBytes = block[32..<64].prefix(while: { $0 != 0 })
        return MDSuperblock(
            version: version, uuid: uuid, name: String(decoding: nameBytes, as: UTF8.self), level: level,
            raidDevices: Int(le32(block, 92)), events: le64(block, 200))
    }

    /// The kernel's `calc_sb_1_csum`: little-endian 32-bit words summed with the checksum field as
    /// zero, the carry folded back in once.
    public static func checksum(_ block: [UInt8], size: Int) -> UInt32 {
        var sum: UInt64 = 0
        var at = 0
        while at + 4 <= size {
            if at != 216 { sum += UInt64(le32(block, at)) }
            at += 4
        }
        if size - at == 2 { sum += UInt64(block[at]) | UInt64(block[at + 1]) << 8 }
        return UInt32(truncatingIfNeeded: (sum & 0xffff_ffff) + (sum >> 32))
    }

    /// What `mdadm --examine --export` says of the same member (the keys the observer reads).
    public var exported: [String: String] {
        [
            "MD_UUID": uuid, "MD_NAME": name, "MD_LEVEL": level, "MD_DEVICES": String(raidDevices),
            "MD_METADATA": version,
        ]
    }
}
