import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What an import made.
public struct ImportResult: Sendable {
    public var image: String
    public var version: ObjectHash
    public var entries: Int
    public var contentBytes: UInt64
    public var chunks: Int
    public var newObjects: Int
    public var newStoredBytes: UInt64
}

/// Builds image versions in a store: chunks content, stores each object once, publishes
/// the manifest. Directory trees are read here; tarballs are read by the caller (libarchive)
/// and fed through `storeContent`.
public final class ImageImporter: @unchecked Sendable {
    /// Where objects go; nil: content is only chunked and hashed (a capture, which reads the
    /// objects the server lacks again from the tree, `LiveTreeObjects`).
    public let store: ImageStore?
    public let threads: Int
    private let known = Mutex<Set<ObjectHash>>([])
    private let counters = Mutex<(chunks: Int, new: Int, stored: UInt64)>((0, 0, 0))

    public init(store: ImageStore, threads: Int = 2) {
        self.store = store
        self.threads = threads
    }

    /// An importer that hashes and stores nothing.
    public init(hashingOnly threads: Int = 2) {
        self.store = nil
        self.threads = threads
    }

    /// Chunks a stream of content (`read` fills a buffer and returns the byte count, 0 at the
    /// end), stores the new objects and returns the size and chunks.
    public func storeContent(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> (
        size: UInt64, chunks: [Chunk]
    ) {
        let capacity = 8 << 20
        var buffer = [UInt8](repeating: 0, count: capacity)
        var start = 0
        var end = 0
        var eof = false
        var chunks: [Chunk] = []
        var size: UInt64 = 0
        while true {
            if !eof && end - start < Chunker.maxSize {
                if start > 0 {
                    buffer.withUnsafeMutableBytes { b in
                        _ = memmove(b.baseAddress!, b.baseAddress! + start, end - start)
                    }
                    end -= start
                    start = 0
                }
                while end < capacity {
                    let n = try buffer.withUnsafeMutableBytes { b in
                        try read(UnsafeMutableRawBufferPointer(rebasing: b[end..<capacity]))
                    }
                    if n == 0 {
                        eof = true
                        break
                    }
                    end += n
                }
            }
            if start == end { break }
            try buffer.withUnsafeBytes { b in
                let window = UnsafeRawBufferPointer(rebasing: b[start..<end])
                let n = (eof || window.count >= Chunker.maxSize) ? Chunker.cut(window) : window.count
                let piece = UnsafeRawBufferPointer(rebasing: window[0..<n])
                let hash = ObjectHash.of(piece)
                try self.put(hash, piece)
                chunks.append(Chunk(length: UInt32(n), hash: hash))
                size += UInt64(n)
                start += n
            }
        }
        return (size, chunks)
    }

    /// Holes shorter than this are read as zeros (all-zero chunks are one object, and the sync
    /// leaves zero blocks unwritten anyway); longer ones become hole chunks, never read or hashed.
    static let minHole: UInt64 = 1 << 20

    /// Chunks an open regular file. Its long holes (`SEEK_HOLE`) become hole chunks, so a sparse
    /// file of a terabyte (a `lastlog` with large UIDs) costs what its data costs; the data
    /// between them is chunked and stored as usual.
    func storeFile(fd: Int32, path: [UInt8]) throws -> (size: UInt64, chunks: [Chunk]) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError.fromErrno("reading", displayPath(path)) }
        let size = UInt64(st.st_size)
        // The holes worth keeping, in order; none for most files (the first hole is the end).
        var holes: [(start: UInt64, end: UInt64)] = []
        var pos: UInt64 = 0
        while pos < size {
            let hole = lseek(fd, off_t(pos), FileIO.seekHole)
            guard hole >= 0, UInt64(hole) < size else { break }  // no more holes (or no SEEK_HOLE)
            let data = lseek(fd, off_t(hole), FileIO.seekData)
            let end = data < 0 ? size : min(UInt64(data), size)  // ENXIO: a hole up to the end
            if end - UInt64(hole) >= Self.minHole { holes.append((UInt64(hole), end)) }
            pos = end
        }
        var chunks: [Chunk] = []
        pos = 0
        for region in holes + [(size, size)] {
            if region.start > pos {  // data (or a short hole) up to the next long hole
                var at = pos
                let stop = region.start
                let (n, data) = try storeContent { buf in
                    let want = Int(min(UInt64(buf.count), stop - at))
                    if want == 0 { return 0 }
                    let n = FileIO.retrySize { pread(fd, buf.baseAddress, want, off_t(at)) }
                    if n < 0 { throw SystemError.fromErrno("reading", displayPath(path)) }
                    at += UInt64(n)
                    return n
                }
                guard n == stop - pos else {
                    throw SystemError("reading", displayPath(path), cause: "the file shrank while it was imported")
                }
                chunks += data
            }
            var h = region.start
            while h < region.end {
                let length = UInt32(min(UInt64(Chunk.maxHole), region.end - h))
                chunks.append(.hole(length: length))
                h += UInt64(length)
            }
            pos = region.end
        }
        return (size, chunks)
    }

    func put(_ hash: ObjectHash, _ content: UnsafeRawBufferPointer) throws {
        let isNew = known.withLock { $0.insert(hash).inserted }
        counters.withLock { $0.chunks += 1 }
        guard isNew, let store else { return }
        let (stored, new) = try store.putObject(hash, content: content)
        if new {
            counters.withLock {
                $0.new += 1; $0.stored += UInt64(stored)
            }
        }
    }

    /// Encodes, stores and publishes a manifest as the latest version of `image`.
    public func publish(image: String, manifest: Manifest, now: Int64) throws -> ImportResult {
        let encoded = ManifestCodec.encode(manifest)
        // Refuse to publish anything an agent would refuse.
        _ = try ManifestCodec.decode(encoded)
        guard let store else { throw SystemError("publishing image", image, cause: "this importer has no store") }
        let id = try store.publish(
            image: image, manifest: encoded, entries: manifest.entries.count, bytes: manifest.contentBytes, now: now)
        let c = counters.withLock { $0 }
        return ImportResult(
            image: image, version: id, entries: manifest.entries.count, contentBytes: manifest.contentBytes,
            chunks: c.chunks,
            newObjects: c.new, newStoredBytes: c.stored)
    }

    /// Imports a directory tree (as root, to read every owner and xattr faithfully).
    public func importDirectory(_ path: String, image: String, now: Int64) throws -> ImportResult {
        try publish(image: image, manifest: manifest(ofDirectory: path, scanner: TreeScanner(threads: threads)), now: now)
    }

    /// The manifest of a directory tree, its content chunked (and stored, with a store), read by
    /// `scanner` (a capture's scanner leaves paths out). Files `known` vouches for are not read
    /// (a capture's `KnownContent`; never with a store, which must hold what it lists).
    public func manifest(ofDirectory path: String, scanner: TreeScanner, known: KnownContent? = nil) throws -> Manifest {
        try manifestAndSources(ofDirectory: path, scanner: scanner, known: known).manifest
    }

    /// `manifest(ofDirectory:scanner:known:)` and how many files were read and hashed or known.
    public func manifestAndSources(ofDirectory path: String, scanner: TreeScanner, known: KnownContent? = nil) throws
        -> (manifest: Manifest, sources: ContentSources)
    {
        precondition(known == nil || store == nil, "known content is for hashing only: a store must hold what it lists")
        let rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootfd >= 0 else { throw SystemError.fromErrno("opening the directory to import", path) }
        defer { close(rootfd) }
        let observed = try scanner.scan(rootfd: rootfd)
        let paths = observed.keys.map(\.bytes).sorted(by: pathLess)
        var entries: [Entry] = []
        entries.reserveCapacity(paths.count)
        var firstOfInode: [UInt64: Int] = [:]  // hardlinks: (inode) -> index of the first name
        var sources = ContentSources()
        var files: [Int] = []
        for p in paths {
            let o = observed[TreePath(p)]!
            if p.isEmpty && o.kind != .directory { throw SystemError("importing", path, cause: "not a directory") }
            if !p.isEmpty, let problem = PathRules.problem(p) {
                throw SystemError("importing", displayPath(p), cause: problem)
            }
            if o.kind != .directory && o.links > 1 {
                if let first = firstOfInode[o.inode] {
                    var link = Entry(path: p, kind: .hardlink)
                    link.linkIndex = first
                    entries.append(link)
                    continue
                }
                firstOfInode[o.inode] = entries.count
            }
            var e = Entry(path: p, kind: o.kind)
            e.mode = o.mode
            e.uid = o.uid
            e.gid = o.gid
            e.mtimeSeconds = o.mtimeSeconds
            e.mtimeNanoseconds = o.mtimeNanoseconds
            e.xattrs = o.xattrs
            e.target = o.target
            e.major = o.major
            e.minor = o.minor
            e.size = o.size
            if o.kind == .file {
                if let known, case .known(let chunks) = known.decide(p, o) {
                    e.chunks = chunks
                    sources.knownFiles += 1
                    sources.knownBytes += o.size
                } else {
                    files.append(entries.count)
                }
            }
            entries.append(e)
        }
        // Contents on all threads.
        final class Shared: @unchecked Sendable {
            var entries: [Entry]
            let files: [Int]
            let next = Atomic<Int>(0)
            let failure = Mutex<(any Error)?>(nil)
            init(_ entries: [Entry], _ files: [Int]) {
                self.entries = entries
                self.files = files
            }
        }
        let shared = Shared(entries, files)
        let results = Mutex<[(Int, UInt64, [Chunk])]>([])
        runWorkers(threads) {
            let dirs = DirectoryChain(rootfd: rootfd)
            var mine: [(Int, UInt64, [Chunk])] = []
            while shared.failure.withLock({ $0 == nil }) {
                let k = shared.next.add(1, ordering: .relaxed).oldValue
                if k >= shared.files.count { break }
                let i = shared.files[k]
                let p = shared.entries[i].path
                do {
                    let dirfd = try dirs.open(PathRules.parent(p))
                    let fd = withCName(PathRules.name(p)) { openat(dirfd, $0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
                    guard fd >= 0 else { throw SystemError.fromErrno("opening", displayPath(p)) }
                    defer { close(fd) }
                    let (size, chunks) = try self.storeFile(fd: fd, path: p)
                    mine.append((i, size, chunks))
                } catch {
                    shared.failure.withLock { if $0 == nil { $0 = error } }
                }
            }
            let found = mine
            results.withLock { $0.append(contentsOf: found) }
        }
        if let error = shared.failure.withLock({ $0 }) { throw error }
        for (i, size, chunks) in results.withLock({ $0 }) {
            entries[i].size = size
            entries[i].chunks = chunks
            sources.hashedFiles += 1
            sources.hashedBytes += size
        }
        return (Manifest(entries: entries), sources)
    }
}
