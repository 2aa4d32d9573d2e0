import ProvisionerCore
import Testing

@testable import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// The agent's own reading of array superblocks against `mdadm --examine`, on superblocks mdadm
/// wrote (a RAID1 ESP with metadata 1.0 and a RAID1 system array with 1.2, from a make demo
/// node's disk) and on variants of them: other levels, sizes, version 1.1, a damaged block.
/// mdadm examines loop devices without the md driver.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root for loop devices"))
struct MDSuperblockTests {
    /// 512 bytes each: the superblock and its role table (max_dev 128).
    static let esp10 = Array(
        Data(
            base64Encoded:
                "/E4rqQEAAAAAAAAAAAAAAKX3HvEJnsX+x7upQWQCVb5hbnk6bWQtZXNwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAODxFWsAAAAAAQAAAAAAAACA/w8AAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAOD/DwAAAAAA8P8PAAAAAAAAAAAAAAAAAAAAAAAAAAAAoCCfqeFjqdXCrI0D2TAylwAACAD4////lPIVawAAAAARAAAAAAAAAP//////////iywjKYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQD///////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////8="
        )!)
    static let system12 = Array(
        Data(
            base64Encoded:
                "/E4rqQEAAAAAAAAAAAAAANkqa4F7SmZ3OCw46X8tBkJhbnk6bWQtc3lzdGVtAAAAAAAAAAAAAAAAAAAAAAAAAOLxFWsAAAAAAQAAAAAAAAAAEGcAAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGAAAAAAAAAAQZwAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABnff/2LClhqem2ocjfeMVwAACAAQAAAAl/IVawAAAABNAAAAAAAAAP//////////tk7HRYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQD///////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////8="
        )!)
    /// The ESP partition's size: a 1.0 superblock's place follows from it.
    static let espBytes: UInt64 = 1_048_576 * 512

    /// A sparse file of `size` with `block` at `offset`, on a read-only loop device: what
    /// `body` gets.
    func onLoop(size: UInt64, block: [UInt8], at offset: UInt64, _ body: (String) throws -> Void) throws {
        let file = "/tmp/md-superblock-\(getpid()).img"
        let fd = open(file, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        try #require(fd >= 0)
        #expect(ftruncate(fd, off_t(size)) == 0)
        #expect(block.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) } == block.count)
        close(fd)
        defer { unlink(file) }
        let loop = try Command.run(["losetup", "--find", "--show", "--read-only", file])
        try #require(loop.status == 0, "losetup: \(loop.lastMessage)")
        let device = loop.stdout.trimmed
        defer { _ = try? Command.run(["losetup", "--detach", device]) }
        try body(device)
    }

    func mdadm(_ device: String) throws -> [String: String]? {
        let result = try Command.run(["mdadm", "--examine", "--export", device])
        return result.status == 0 ? StorageObserver.keyValues(result.stdout) : nil
    }

    /// The keys the observer reads, from both; MD_METADATA only where mdadm prints it.
    func expectSame(_ device: String, version: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let ours = try #require(MDSuperblockReader.examine(device), sourceLocation: sourceLocation)
        let theirs = try #require(try mdadm(device), "mdadm sees no superblock", sourceLocation: sourceLocation)
        for key in ["MD_UUID", "MD_NAME", "MD_LEVEL", "MD_DEVICES"] {
            #expect(ours.exported[key] == theirs[key], "\(key)", sourceLocation: sourceLocation)
        }
        #expect(ours.version == version, sourceLocation: sourceLocation)
        if let metadata = theirs["MD_METADATA"] { #expect(metadata == version, sourceLocation: sourceLocation) }
    }

    /// The block with a field changed and the checksum made right again.
    static func patched(_ block: [UInt8], _ changes: [(Int, UInt32)]) -> [UInt8] {
        var b = block
        for (at, value) in changes {
            for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
        }
        let sum = MDSuperblock.checksum(b, size: b.count)
        for i in 0..<4 { b[216 + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt32(i))) }
        return b
    }

    @Test func readsWhatMdadmWrote() throws {
        let place = MDSuperblock.locations(deviceSizeBytes: Self.espBytes).first { $0.version == "1.0" }!.offset
        try onLoop(size: Self.espBytes, block: Self.esp10, at: place) { device in
            try expectSame(device, version: "1.0")
            #expect(MDSuperblockReader.examine(device)?.name == "any:md-esp")
        }
        try onLoop(size: 64 << 20, block: Self.system12, at: 4096) { device in
            try expectSame(device, version: "1.2")
            #expect(MDSuperblockReader.examine(device)?.level == "raid1")
        }
    }

    /// Level, devices and layout (raid10's "near 2" is 0x102; mdadm refuses a raid10 without one).
    static let levels: [(UInt32, UInt32, UInt32)] = [
        (0, 2, 0), (5, 3, 2), (6, 4, 2), (10, 4, 0x102), (4, 3, 0), (UInt32(bitPattern: -1), 2, 0),
    ]

    @Test(arguments: levels)
    func otherLevels(level: UInt32, devices: UInt32, layout: UInt32) throws {
        let block = Self.patched(Self.system12, [(72, level), (76, layout), (92, devices)])
        try onLoop(size: 64 << 20, block: block, at: 4096) { device in try expectSame(device, version: "1.2") }
    }

    /// Version 1.1: the same superblock at the device's start, saying so.
    @Test func versionOnePointOne() throws {
        let block = Self.patched(Self.system12, [(144, 0), (148, 0)])
        try onLoop(size: 64 << 20, block: block, at: 0) { device in try expectSame(device, version: "1.1") }
    }

    /// A superblock that fails its checksum, or that says it lives elsewhere, is not one: the
    /// observer then asks mdadm, which reports the damage.
    @Test func damagedBlocksAreNotSuperblocks() throws {
        var torn = Self.system12
        torn[40] ^= 0xff
        try onLoop(size: 64 << 20, block: torn, at: 4096) { device in
            #expect(MDSuperblockReader.examine(device) == nil)
        }
        try onLoop(size: 64 << 20, block: Self.system12, at: 0) { device in
            #expect(MDSuperblockReader.examine(device) == nil)
        }
    }

    /// A leftover 0.90 superblock beside a version 1 one: mdadm chooses, not the agent.
    @Test func aLeftoverVersion090SuperblockIsLeftToMdadm() throws {
        let size: UInt64 = 64 << 20
        let old = try #require(MDSuperblock.version090Offset(deviceSizeBytes: size))
        #expect(old == size - 65536)
        let magic = (0..<4).map { UInt8(truncatingIfNeeded: MDSuperblock.magic >> (8 * UInt32($0))) }
        let file = "/tmp/md-superblock-090-\(getpid()).img"
        let fd = open(file, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        #expect(ftruncate(fd, off_t(size)) == 0)
        _ = Self.system12.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4096) }
        _ = magic.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4, off_t(old)) }
        close(fd)
        defer { unlink(file) }
        let loop = try Command.run(["losetup", "--find", "--show", "--read-only", file])
        try #require(loop.status == 0)
        defer { _ = try? Command.run(["losetup", "--detach", loop.stdout.trimmed]) }
        #expect(MDSuperblockReader.examine(loop.stdout.trimmed) == nil)
    }
}
