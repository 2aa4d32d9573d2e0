import CImageSys
import CZstd
import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

private let temporaryCounter = Atomic<UInt64>(0)

/// One thread's tools: its directory chains, buffers and zstd context.
final class Worker {
    let run: Run
    let writeDirs: DirectoryChain
    let readDirs: DirectoryChain
    let zstd = DecompressionContext()
    var buffer = [UInt8](repeating: 0, count: Int(ManifestLimits.maxChunk))
    /// Chunks known to be all zeros (never read back: they are holes).
    var zeroChunks = Set<ObjectHash>()
    /// The last file opened to read chunks from.
    var readFile: (path: [UInt8], fd: Int32)?

    init(run: Run) {
        self.run = run
        writeDirs = DirectoryChain(rootfd: run.rootfd)
        readDirs = DirectoryChain(rootfd: run.rootfd)
    }

    deinit { if let readFile { close(readFile.fd) } }

    var source: any ObjectSource { run.engine.source }

    /// A name for a new entry before it is renamed into place; left-overs of an interrupted
    /// sync are not in any manifest, so the next sync deletes them.
    func temporaryName() -> [UInt8] {
        let n = temporaryCounter.add(1, ordering: .relaxed).newValue
        return Array(".prov-tmp.\(getpid()).\(n)".utf8)
    }

    // MARK: files

    func writeBatch(_ batch: [Int], local: [ObjectHash: (path: [UInt8], offset: UInt64)]) throws {
        let entries = run.manifest.entries
        // Where every chunk comes from was decided first (Differ.sourceChunks); here it is carried out.
        let sourcing = Differ.sourceChunks(batch.map { (entries[$0], run.previousFile(entries[$0].path)) }, local: local)
        let (origins, wanted, bases) = (sourcing.origins, sourcing.wanted, sourcing.bases)
        let baseHashes = bases.mapValues(\.hash)
        var stream: (any ObjectStream)? =
            wanted.isEmpty
            ? nil : try (baseHashes.isEmpty ? source.objects(wanted) : source.objects(wanted, bases: baseHashes))
        // Where each chunk was written in this batch: (path or the open temporary file, offset).
        var written: [ObjectHash: (path: [UInt8], offset: UInt64)] = [:]
        var k = 0
        for i in batch {
            try run.engine.step()
            let e = entries[i]
            let dirfd = try writeDirs.open(PathRules.parent(e.path))
            // A name the target does not have gets an unnamed file that is linked in when complete
            // (no temporary name, no rename); a name that exists is replaced by a rename.
            var tmp: [UInt8]? = nil
            var fd: Int32 = -1
            if run.unnamedFiles.load(ordering: .relaxed), run.observed[TreePath(e.path)] == nil {
                fd = CImageSys_open_tmpfile(dirfd)
                if fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
                    run.unnamedFiles.store(false, ordering: .relaxed)  // this filesystem cannot
                }
            }
            if fd < 0 {
                let name = temporaryName()
                tmp = name
                fd = withCName(name) { openat(dirfd, $0, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
            }
            guard fd >= 0 else { throw SystemError.fromErrno("creating a temporary file for", e.pathString) }
            var inFile: [ObjectHash: UInt64] = [:]
            var bytesWritten: UInt64 = 0
            do {
                var end: UInt64 = 0  // where the last byte written ends
                var offset: UInt64 = 0
                for c in e.chunks {
                    let origin = origins[k]
                    k += 1
                    let length = Int(c.length)
                    var got = false
                    switch origin {
                    case .hole:  // the file is new: left unwritten, the range stays a hole
                        offset += UInt64(length)
                        continue
                    case .local(let path, let at):
                        got = try readLocal(c, path: path, offset: at)
                        if got { run.stats.withLock { $0.reused += 1 } }
                    case .earlier:
                        if zeroChunks.contains(c.hash) {
                            buffer.withUnsafeMutableBytes { _ = memset($0.baseAddress!, 0, length) }
                            got = true
                        } else if let at = inFile[c.hash] {
                            got = try readFrom(fd: fd, c, offset: at)
                        } else if let ref = written[c.hash] {
                            got = try readLocal(c, path: ref.path, offset: ref.offset)
                        }
                    case .stream:
                        guard let object = try stream?.next() else {
                            throw SourceError(source: source.label, what: "objects", cause: "the stream ended early")
                        }
                        guard object.hash == c.hash else {
                            throw SourceError(
                                source: source.label, what: "object \(c.hash.hex)",
                                cause: "sent \(object.hash.hex) instead")
                        }
                        if let base = object.base {
                            guard let b = bases[c.hash], b.hash == base else {
                                throw SourceError(
                                    source: source.label, what: "object \(c.hash.hex)",
                                    cause: "a delta from an unexpected base")
                            }
                            got = try decodeDelta(object.stored, c, base: b)
                        } else {
                            got = decodeVerified(object.stored, c)
                        }
                        if got { run.stats.withLock { $0.fetched += 1 } }
                    }
                    if !got {
                        if case .stream = origin { try refetch(c) } else { try fetchOne(c) }
                    }
                    let n = try buffer.withUnsafeBytes { b in
                        try writeSparse(
                            fd: fd, UnsafeRawBufferPointer(rebasing: b[0..<length]), at: Int(offset),
                            path: e.pathString, dataEnd: &end)
                    }
                    if n == 0 { zeroChunks.insert(c.hash) }
                    bytesWritten += UInt64(n)
                    if inFile[c.hash] == nil { inFile[c.hash] = offset }
                    offset += UInt64(length)
                }
                // A trailing hole (or an empty file written as holes) still needs its size.
                if end < e.size {
                    guard ftruncate(fd, off_t(e.size)) == 0 else {
                        throw SystemError.fromErrno("setting the size of", e.pathString)
                    }
                }
                try setMetadata(fd: fd, e, fresh: true)
                let name = PathRules.name(e.path)
                if tmp == nil && withCName(name, { CImageSys_link_fd(fd, dirfd, $0) }) != 0 {
                    guard errno == EEXIST else { throw SystemError.fromErrno("linking into place", e.pathString) }
                    // The name appeared since the scan: link under a temporary name and rename over it.
                    let t = temporaryName()
                    guard withCName(t, { CImageSys_link_fd(fd, dirfd, $0) }) == 0 else {
                        throw SystemError.fromErrno("linking into place", e.pathString)
                    }
                    tmp = t
                }
                if let tmp {
                    guard withCName(tmp, { t in withCName(name) { renameat(dirfd, t, dirfd, $0) } }) == 0 else {
                        throw SystemError.fromErrno("renaming into place", e.pathString)
                    }
                }
            } catch {
                close(fd)
                if let tmp { _ = withCName(tmp) { unlinkat(dirfd, $0, 0) } }
                throw error
            }
            close(fd)
            if let open = readFile, open.path == e.path {  // it held the replaced inode
                close(open.fd)
                readFile = nil
            }
            var offset: UInt64 = 0
            for c in e.chunks {
                if !c.isHole && written[c.hash] == nil { written[c.hash] = (e.path, offset) }
                offset += UInt64(c.length)
            }
            run.stats.withLock { $0.written += bytesWritten }
            if let progress = run.engine.options.progress {
                progress.filesDone.add(1, ordering: .relaxed)
                progress.bytesDone.add(Int(e.size), ordering: .relaxed)
            }
        }
        // A stream must be drained to its end (a truncated one is an error even if we are done).
        if var s = stream, try s.next() != nil {
            throw SourceError(source: source.label, what: "objects", cause: "sent more objects than asked for")
        }
        stream = nil
    }

    /// Decompresses a stored object into `buffer` and checks it; false if it is damaged.
    func decodeVerified(_ stored: [UInt8], _ c: Chunk) -> Bool {
        let length = Int(c.length)
        do {
            try stored.withUnsafeBytes { (src) throws in
                try buffer.withUnsafeMutableBytes { (dst) throws in
                    try Zstd.decompress(
                        src, into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<length]),
                        subject: "object \(c.hash.hex)",
                        context: zstd)
                }
            }
        } catch {
            return false
        }
        return buffer.withUnsafeBytes { ObjectHash.of(UnsafeRawBufferPointer(rebasing: $0[0..<length])) } == c.hash
    }

    /// Rebuilds an object from a delta and its base (read from the node and checked), into `buffer`.
    func decodeDelta(
        _ payload: [UInt8], _ c: Chunk, base: DeltaBase
    ) throws -> Bool {
        guard try readLocal(Chunk(length: UInt32(base.length), hash: base.hash), path: base.path, offset: base.offset)
        else {
            return false
        }
        let baseBytes = Array(buffer[0..<base.length])
        let length = Int(c.length)
        let n = payload.withUnsafeBytes { src in
            baseBytes.withUnsafeBytes { prefix in
                buffer.withUnsafeMutableBytes { dst in
                    CZstd_decompress_with_prefix(
                        dst.baseAddress, length, src.baseAddress, src.count, prefix.baseAddress, prefix.count)
                }
            }
        }
        guard CZstd_is_error(n) == 0, n == length else { return false }
        return buffer.withUnsafeBytes { ObjectHash.of(UnsafeRawBufferPointer(rebasing: $0[0..<length])) } == c.hash
    }

    /// Fetches one object that was expected on the node but was not there (or not the same).
    func fetchOne(_ c: Chunk) throws {
        var s = try source.objects([c.hash])
        if let object = try s.next(), object.hash == c.hash, decodeVerified(object.stored, c) {
            run.stats.withLock { $0.fetched += 1 }
            return
        }
        try refetch(c)
    }

    /// Fetches one object again after a damaged copy; tries twice more (a mirror source moves
    /// on to the next mirror on failure) before giving up.
    func refetch(_ c: Chunk) throws {
        for attempt in 1...3 {
            run.stats.withLock { $0.refetched += 1 }
            var s = try source.refetch(c.hash, attempt: attempt)
            if let object = try s.next(), object.hash == c.hash, decodeVerified(object.stored, c) {
                run.engine.options.warnings("object \(c.hash.hex) was damaged; fetched it again")
                return
            }
        }
        throw SourceError(
            source: source.label, what: "object \(c.hash.hex)", cause: "damaged (its content does not match its hash)")
    }

    /// Reads a chunk from a file on the target into `buffer`; false if it is not there or wrong.
    func readLocal(_ c: Chunk, path: [UInt8], offset: UInt64) throws -> Bool {
        if readFile?.path != path {
            if let readFile { close(readFile.fd) }
            readFile = nil
            guard let dirfd = try? readDirs.open(PathRules.parent(path)) else { return false }
            let fd = withCName(PathRules.name(path)) {
                openat(dirfd, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            }
            if fd < 0 { return false }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                close(fd)
                return false
            }
            readFile = (path, fd)
        }
        return try readFrom(fd: readFile!.fd, c, offset: offset)
    }

    func readFrom(fd: Int32, _ c: Chunk, offset: UInt64) throws -> Bool {
        let length = Int(c.length)
        var done = 0
        while done < length {
            let n = buffer.withUnsafeMutableBytes { b in
                FileIO.retrySize { pread(fd, b.baseAddress! + done, length - done, off_t(offset) + off_t(done)) }
            }
            if n <= 0 { return false }
            done += n
        }
        return buffer.withUnsafeBytes { ObjectHash.of(UnsafeRawBufferPointer(rebasing: $0[0..<length])) } == c.hash
    }

    /// True if `length` bytes at `from` read as zeros: holes are skipped (`SEEK_DATA`), data is read.
    func isZero(fd: Int32, from: UInt64, length: UInt64) throws -> Bool {
        var pos = from
        let end = from + length
        while pos < end {
            let data = lseek(fd, off_t(pos), FileIO.seekData)
            if data < 0 { return errno == ENXIO }  // a hole to the end of the file (its size is checked)
            if UInt64(data) >= end { return true }
            let hole = lseek(fd, off_t(data), FileIO.seekHole)
            let stop = hole < 0 ? end : min(UInt64(hole), end)
            pos = UInt64(data)
            while pos < stop {
                let want = Int(min(UInt64(buffer.count), stop - pos))
                let n = buffer.withUnsafeMutableBytes { b in
                    FileIO.retrySize { pread(fd, b.baseAddress!, want, off_t(pos)) }
                }
                if n <= 0 { return false }
                if !buffer.withUnsafeBytes({ allZero(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) { return false }
                pos += UInt64(n)
            }
        }
        return true
    }

    /// True if a file on the target has exactly the manifest's content.
    func contentMatches(_ e: Entry) throws -> Bool {
        guard let dirfd = try? readDirs.open(PathRules.parent(e.path)) else { return false }
        let fd = withCName(PathRules.name(e.path)) { openat(dirfd, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        if fd < 0 { return false }
        defer { close(fd) }
        var offset: UInt64 = 0
        for c in e.chunks {
            if c.isHole {
                if try !isZero(fd: fd, from: offset, length: UInt64(c.length)) { return false }
            } else if try !readFrom(fd: fd, c, offset: offset) {
                return false
            }
            offset += UInt64(c.length)
        }
        var st = stat()
        return fstat(fd, &st) == 0 && UInt64(st.st_size) == e.size
    }

    // MARK: metadata

    /// Owner, xattrs, mode, mtime, in that order: chown clears setuid bits and file
    /// capabilities, so those come after it.
    func setMetadata(fd: Int32, _ e: Entry, fresh: Bool) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError.fromErrno("reading", e.pathString) }
        if st.st_uid != e.uid || st.st_gid != e.gid {
            guard fchown(fd, e.uid, e.gid) == 0 else {
                throw SystemError.fromErrno("changing the owner of", e.pathString)
            }
        }
        let current = try Xattrs.read(dirfd: -1, name: [], fd: fd, path: e.path)
        try Xattrs.apply(e.xattrs, current: current, dirfd: -1, name: [], fd: fd, path: e.path)
        guard fchmod(fd, mode_t(e.mode)) == 0 else { throw SystemError.fromErrno("changing the mode of", e.pathString) }
        guard CImageSys_futimens_mtime(fd, e.mtimeSeconds, Int(e.mtimeNanoseconds)) == 0 else {
            throw SystemError.fromErrno("setting the mtime of", e.pathString)
        }
    }

    /// The same for an entry that cannot be opened (symlink, device, fifo, socket), by name.
    func setMetadata(dirfd: Int32, name: [UInt8], _ e: Entry) throws {
        try withCName(name) { (cname) throws in
            guard fchownat(dirfd, cname, e.uid, e.gid, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw SystemError.fromErrno("changing the owner of", e.pathString)
            }
            let current = try Xattrs.read(dirfd: dirfd, name: name, path: e.path)
            try Xattrs.apply(e.xattrs, current: current, dirfd: dirfd, name: name, fd: nil, path: e.path)
            if e.kind != .symlink {
                guard fchmodat(dirfd, cname, mode_t(e.mode), 0) == 0 else {
                    throw SystemError.fromErrno("changing the mode of", e.pathString)
                }
            }
            guard CImageSys_utimensat_mtime(dirfd, cname, e.mtimeSeconds, Int(e.mtimeNanoseconds)) == 0 else {
                throw SystemError.fromErrno("setting the mtime of", e.pathString)
            }
        }
    }

    func fixMetadata(_ e: Entry) throws {
        let dirfd = try writeDirs.open(PathRules.parent(e.path))
        let name = PathRules.name(e.path)
        if e.kind == .file {
            let fd = withCName(name) { openat(dirfd, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
            guard fd >= 0 else { throw SystemError.fromErrno("opening", e.pathString) }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                throw SystemError("changing metadata of", e.pathString, cause: "it is no longer a regular file")
            }
            try setMetadata(fd: fd, e, fresh: false)
        } else {
            try setMetadata(dirfd: dirfd, name: name, e)
        }
    }

    func setDirectoryMetadata(_ e: Entry) throws {
        if e.path.isEmpty {
            try setMetadata(fd: run.rootfd, e, fresh: false)
            return
        }
        let dirfd = try writeDirs.open(PathRules.parent(e.path))
        let fd = withCName(PathRules.name(e.path)) {
            openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        guard fd >= 0 else { throw SystemError.fromErrno("opening directory", e.pathString) }
        defer { close(fd) }
        try setMetadata(fd: fd, e, fresh: false)
    }

    // MARK: other entries

    /// Creates a symlink, device, fifo or socket under a temporary name and renames it into place.
    func createOther(_ e: Entry) throws {
        let dirfd = try writeDirs.open(PathRules.parent(e.path))
        let tmp = temporaryName()
        let r: Int32 = withCName(tmp) { t in
            switch e.kind {
            case .symlink:
                return withCName(e.target) { symlinkat($0, dirfd, t) }
            case .charDevice:
                return mknodat(dirfd, t, S_IFCHR | 0o600, dev_t(CImageSys_makedev(e.major, e.minor)))
            case .blockDevice:
                return mknodat(dirfd, t, S_IFBLK | 0o600, dev_t(CImageSys_makedev(e.major, e.minor)))
            case .fifo:
                return mknodat(dirfd, t, S_IFIFO | 0o600, 0)
            case .socket:
                return mknodat(dirfd, t, S_IFSOCK | 0o600, 0)
            default:
                errno = EINVAL
                return -1
            }
        }
        guard r == 0 else { throw SystemError.fromErrno("creating \(e.kind.name)", e.pathString) }
        do {
            try setMetadata(dirfd: dirfd, name: tmp, e)
            guard withCName(tmp, { t in withCName(PathRules.name(e.path)) { renameat(dirfd, t, dirfd, $0) } }) == 0
            else {
                throw SystemError.fromErrno("renaming into place", e.pathString)
            }
        } catch {
            _ = withCName(tmp) { unlinkat(dirfd, $0, 0) }
            throw error
        }
    }

    /// Makes `e` another name of `primary`'s inode; false if it already was.
    func link(_ e: Entry, to primary: Entry) throws -> Bool {
        let pdir = try readDirs.open(PathRules.parent(primary.path))
        let dirfd = try writeDirs.open(PathRules.parent(e.path))
        var ps = stat()
        var hs = stat()
        guard withCName(PathRules.name(primary.path), { fstatat(pdir, $0, &ps, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            throw SystemError.fromErrno("reading the first name of hardlink", e.pathString)
        }
        if withCName(PathRules.name(e.path), { fstatat(dirfd, $0, &hs, AT_SYMLINK_NOFOLLOW) }) == 0
            && hs.st_dev == ps.st_dev && hs.st_ino == ps.st_ino
        {
            return false
        }
        let tmp = temporaryName()
        guard withCName(PathRules.name(primary.path), { p in withCName(tmp) { linkat(pdir, p, dirfd, $0, 0) } }) == 0
        else {
            throw SystemError.fromErrno("linking \(primary.pathString) as", e.pathString)
        }
        guard withCName(tmp, { t in withCName(PathRules.name(e.path)) { renameat(dirfd, t, dirfd, $0) } }) == 0 else {
            _ = withCName(tmp) { unlinkat(dirfd, $0, 0) }
            throw SystemError.fromErrno("renaming into place", e.pathString)
        }
        return true
    }

    // MARK: removal

    /// Removes an entry and, for a directory, everything below it, never following a symlink.
    func removeTree(_ path: [UInt8]) throws {
        let dirfd = try writeDirs.open(PathRules.parent(path))
        try Self.remove(dirfd: dirfd, name: PathRules.name(path), path: path)
    }

    static func remove(dirfd: Int32, name: [UInt8], path: [UInt8]) throws {
        var st = stat()
        guard withCName(name, { fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            if errno == ENOENT { return }
            throw SystemError.fromErrno("reading", displayPath(path))
        }
        if st.st_mode & S_IFMT == S_IFDIR {
            let fd = withCName(name) { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else { throw SystemError.fromErrno("opening directory", displayPath(path)) }
            guard let dir = fdopendir(fd) else {
                close(fd)
                throw SystemError.fromErrno("listing", displayPath(path))
            }
            var names: [[UInt8]] = []
            while let ent = readdir(dir) {
                let child: [UInt8] = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
                if child != [0x2e] && child != [0x2e, 0x2e] { names.append(child) }
            }
            defer { closedir(dir) }
            for child in names {
                try remove(dirfd: Glibc.dirfd(dir), name: child, path: path + [UInt8(ascii: "/")] + child)
            }
            guard withCName(name, { unlinkat(dirfd, $0, AT_REMOVEDIR) }) == 0 else {
                throw SystemError.fromErrno("removing directory", displayPath(path))
            }
        } else {
            guard withCName(name, { unlinkat(dirfd, $0, 0) }) == 0 else {
                if errno == ENOENT { return }
                throw SystemError.fromErrno("removing", displayPath(path))
            }
        }
    }
}

/// Writes `bytes` at `offset`, leaving 4 KiB blocks (aligned in the file) that are all zeros
/// unwritten, so they stay holes in the fresh file. Returns the bytes written; raises `dataEnd` to
/// where the last byte written ends.
func writeSparse(
    fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String, dataEnd: inout UInt64
) throws
    -> Int
{
    let block = 4096
    var written = 0
    var runStart = -1
    var i = 0
    while i < bytes.count {
        let end = min(bytes.count, (offset + i) / block * block + block - offset)
        let zero = allZero(UnsafeRawBufferPointer(rebasing: bytes[i..<end]))
        if !zero && runStart < 0 { runStart = i }
        if zero && runStart >= 0 {
            try FileIO.writeAll(
                fd: fd, UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]), at: offset + runStart, path: path)
            written += i - runStart
            dataEnd = max(dataEnd, UInt64(offset + i))
            runStart = -1
        }
        i = end
    }
    if runStart >= 0 {
        try FileIO.writeAll(
            fd: fd, UnsafeRawBufferPointer(rebasing: bytes[runStart..<bytes.count]), at: offset + runStart, path: path)
        written += bytes.count - runStart
        dataEnd = max(dataEnd, UInt64(offset + bytes.count))
    }
    return written
}

/// True if every byte is zero (such regions are left as holes).
@inline(__always)
func allZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let n = bytes.count
    let base = bytes.baseAddress!
    while i + 8 <= n {
        if base.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
        i += 8
    }
    while i < n {
        if base.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
        i += 1
    }
    return true
}
