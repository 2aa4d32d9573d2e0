import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#endif

/// Reads an array member's version-1 superblock straight from the device (at most three 4 KiB
/// reads, no `mdadm --examine` run). nil when there is not exactly one valid superblock: the
/// caller asks mdadm, which knows every format and says what is wrong.
///
/// The reads bypass the page cache (`O_DIRECT`), as mdadm's do: the kernel writes superblocks to
/// the members underneath it, so a cached copy from earlier in the boot could be stale.
public enum MDSuperblockReader {
    /// Linux's `O_DIRECT` (Glibc's module leaves it out: it is a `_GNU_SOURCE` name).
    #if arch(arm64)
        static let directIO: Int32 = 0o200000
    #else
        static let directIO: Int32 = 0o40000
    #endif

    public static func examine(_ path: String) -> MDSuperblock? {
        guard let fd = try? OwnedDescriptor(opening: path, flags: O_RDONLY | directIO) else { return nil }
        let size = lseek(fd.rawValue, 0, SEEK_END)
        guard size > 0 else { return nil }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: MDSuperblock.blockSize, alignment: 4096)
        defer { buffer.deallocate() }
        var found: [MDSuperblock] = []
        for (version, offset) in MDSuperblock.locations(deviceSizeBytes: UInt64(size)) {
            guard offset + UInt64(MDSuperblock.blockSize) <= UInt64(size) else { continue }
            var n: Int
            repeat {
                n = pread(fd.rawValue, buffer.baseAddress, buffer.count, off_t(offset))
            } while n < 0 && errno == EINTR
            guard n == buffer.count,
                let superblock = MDSuperblock.parse(Array(buffer), at: offset, version: version)
            else { continue }
            found.append(superblock)
        }
        // A 0.90 superblock as well (a disk reused without `mdadm --zero-superblock`): mdadm decides.
        if let old = MDSuperblock.version090Offset(deviceSizeBytes: UInt64(size)),
            old + UInt64(MDSuperblock.blockSize) <= UInt64(size)
        {
            var n: Int
            repeat {
                n = pread(fd.rawValue, buffer.baseAddress, buffer.count, off_t(old))
            } while n < 0 && errno == EINTR
            if n != buffer.count || MDSuperblock.hasMagic(Array(buffer)) { return nil }
        }
        return found.count == 1 ? found[0] : nil
    }
}
