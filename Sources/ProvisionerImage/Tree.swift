import CImageSys
import Dispatch
import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An entry as found on the target: what the differ compares with the manifest.
public struct Observed: Hashable, Sendable {
    public var kind: EntryKind
    public var mode: UInt32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var mtimeSeconds: Int64 = 0
    public var mtimeNanoseconds: UInt32 = 0
    public var size: UInt64 = 0
    public var xattrs: [Xattr] = []
    public var target: [UInt8] = []
    public var major: UInt32 = 0
    public var minor: UInt32 = 0
    /// Identity, for hardlinks.
    public var device: UInt64 = 0
    public var inode: UInt64 = 0
    public var links: UInt64 = 1
    /// False when the scan skipped the xattrs because the entry's ctime says nothing changed
    /// since the applied version was recorded (see `TreeScanner.unchangedBefore`).
    public var xattrsRead = true
    /// When the inode last changed (content, metadata, names): set by the kernel, never by user
    /// space, so `KnownContent` can tell a file untouched since a moment.
    public var ctimeSeconds: Int64 = 0
    public var ctimeNanoseconds: UInt32 = 0

    public init(kind: EntryKind) { self.kind = kind }
}

/// A relative path as a dictionary key: hashed as one block of bytes (an [UInt8] key would be
/// hashed byte by byte, which dominated a 100k-entry comparison).
public struct TreePath: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]
    @inlinable public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { bytes = Array(string.utf8) }
    @inlinable public func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
    @inlinable public static func == (a: TreePath, b: TreePath) -> Bool { a.bytes == b.bytes }
    public var description: String { displayPath(bytes) }
}

/// Every entry found on the target, by relative path ("" is the root).
public typealias ObservedTree = [TreePath: Observed]

/// Calls with a NUL-terminated copy of a name.
@inline(__always)
func withCName<T>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
    var z = name
    z.append(0)
    return try z.withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
}

func displayPath(_ path: [UInt8]) -> String { path.isEmpty ? "." : String(decoding: path, as: UTF8.self) }

extension Observed {
    /// From lstat-style results.
    init?(stat st: stat) {
        guard let kind = EntryKind(fileType: st.st_mode) else { return nil }
        self.init(kind: kind)
        mode = UInt32(st.st_mode & 0o7777)
        uid = st.st_uid
        gid = st.st_gid
        mtimeSeconds = Int64(st.st_mtim.tv_sec)
        mtimeNanoseconds = UInt32(st.st_mtim.tv_nsec)
        ctimeSeconds = Int64(st.st_ctim.tv_sec)
        ctimeNanoseconds = UInt32(st.st_ctim.tv_nsec)
        size = kind == .file ? UInt64(st.st_size) : 0
        if kind == .charDevice || kind == .blockDevice {
            major = CImageSys_major(UInt64(st.st_rdev))
            minor = CImageSys_minor(UInt64(st.st_rdev))
        }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        links = UInt64(st.st_nlink)
    }
}

/// Extended attributes, read and written relative to an open directory.
enum Xattrs {
    /// Parses a NUL-separated name list.
    static func names(_ list: UnsafeRawBufferPointer) -> [[UInt8]] {
        list.split(separator: 0).map { Array($0) }
    }

    /// Marks a lookup relative to the calling thread's working directory (see TreeScanner).
    static let relativeToWorkingDirectory: Int32 = -2

    /// All xattrs of `name` in `dirfd` (or of the open `fd` if given), sorted by name.
    static func read(dirfd: Int32, name: [UInt8], fd: Int32? = nil, path: [UInt8]) throws -> [Xattr] {
        var size = 256
        var list = [UInt8](repeating: 0, count: size)
        while true {
            let n = list.withUnsafeMutableBytes { buf in
                if let fd {
                    return CImageSys_flistxattr(fd, buf.baseAddress!.assumingMemoryBound(to: CChar.self), size)
                }
                let out = buf.baseAddress!.assumingMemoryBound(to: CChar.self)
                if dirfd == relativeToWorkingDirectory {
                    return withCName(name) { CImageSys_llistxattr($0, out, size) }
                }
                return withCName(name) { CImageSys_listxattrat(dirfd, $0, out, size) }
            }
            if n >= 0 {
                if n == 0 { return [] }
                list.removeSubrange(n...)
                break
            }
            if errno == ERANGE {
                size *= 4
                list = [UInt8](repeating: 0, count: size)
                continue
            }
            if errno == ENOTSUP { return [] }
            throw SystemError.fromErrno("listing extended attributes of", displayPath(path))
        }
        var out: [Xattr] = []
        for attr in list.withUnsafeBytes({ names($0) }) {
            var vsize = 256
            while true {
                var value = [UInt8](repeating: 0, count: vsize)
                let n = withCName(attr) { cattr in
                    value.withUnsafeMutableBytes { buf in
                        if let fd { return CImageSys_fgetxattr(fd, cattr, buf.baseAddress, vsize) }
                        if dirfd == relativeToWorkingDirectory {
                            return withCName(name) { CImageSys_lgetxattr($0, cattr, buf.baseAddress, vsize) }
                        }
                        return withCName(name) { CImageSys_getxattrat(dirfd, $0, cattr, buf.baseAddress, vsize) }
                    }
                }
                if n >= 0 {
                    value.removeSubrange(n...)
                    out.append(Xattr(name: attr, value: value))
                    break
                }
                if errno == ERANGE && vsize < 1 << 20 {
                    vsize *= 16
                    continue
                }
                if errno == ENODATA { break }  // removed meanwhile
                throw SystemError.fromErrno(
                    "reading extended attribute \(String(decoding: attr, as: UTF8.self)) of", displayPath(path))
            }
        }
        out.sort { pathLess($0.name, $1.name) }
        return out
    }

    /// Makes the xattrs of an entry exactly `wanted`, given what it has now.
    static func apply(
        _ wanted: [Xattr], current: [Xattr], dirfd: Int32, name: [UInt8], fd: Int32?, path: [UInt8]
    ) throws {
        if wanted == current { return }
        let keep = Set(wanted.map(\.name))
        for x in current where !keep.contains(x.name) {
            let r = withCName(x.name) { cattr in
                if let fd { return CImageSys_fremovexattr(fd, cattr) }
                return withCName(name) { CImageSys_removexattrat(dirfd, $0, cattr) }
            }
            if r != 0 && errno != ENODATA {
                throw SystemError.fromErrno(
                    "removing extended attribute \(String(decoding: x.name, as: UTF8.self)) of", displayPath(path))
            }
        }
        let have = Dictionary(current.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        for x in wanted where have[x.name] != x.value {
            let r = withCName(x.name) { cattr in
                x.value.withUnsafeBytes { v in
                    if let fd { return CImageSys_fsetxattr(fd, cattr, v.baseAddress, v.count) }
                    return withCName(name) { CImageSys_setxattrat(dirfd, $0, cattr, v.baseAddress, v.count) }
                }
            }
            if r != 0 {
                throw SystemError.fromErrno(
                    "setting extended attribute \(String(decoding: x.name, as: UTF8.self)) on", displayPath(path))
            }
        }
    }
}

/// Reads the target tree relative to an open directory, never following a symlink, on
/// several threads. Skips the state directory and preserved paths.
public struct TreeScanner {
    public var preserved: [[UInt8]]
    public var threads: Int
    /// When set, entries whose ctime is earlier are not asked for their xattrs: any xattr change
    /// would have moved the ctime. The engine passes the time the applied version was recorded,
    /// only when the wanted version is that one.
    public var unchangedBefore: (seconds: Int64, nanoseconds: Int64)?
    /// Asked for every entry (path, is it a directory) when set: a capture's scope
    /// (`CaptureScope.scanChoice`) leaves entries out, or keeps a directory without its contents.
    public var choose: (@Sendable ([UInt8], Bool) -> CaptureChoice)?

    public init(preserved: [[UInt8]] = [], threads: Int = 2) {
        self.preserved = preserved
        self.threads = threads
    }

    /// Every entry below `rootfd` by relative path; the root itself under "".
    public func scan(rootfd: Int32) throws -> ObservedTree {
        var st = stat()
        guard fstat(rootfd, &st) == 0, var root = Observed(stat: st) else {
            throw SystemError.fromErrno("reading", "the target directory")
        }
        root.xattrs = try Xattrs.read(dirfd: rootfd, name: [], fd: rootfd, path: [])
        // Opened anew, not dup'ed: a dup shares the directory's read position, which this scan
        // leaves at the end (a second scan of the same descriptor would see it empty).
        let dup = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dup >= 0 else { throw SystemError.fromErrno("opening", "the target directory") }
        return try scan(from: .init(path: [], fd: dup), first: (TreePath([]), root))
    }

    /// Every entry below the directory `path` of the target (relative, opened one component at a
    /// time without following a symlink), by its path from the target's root; `path` itself is
    /// not in the result. The preserved paths and `choose` apply as in a whole scan.
    public func scan(rootfd: Int32, below path: [UInt8]) throws -> ObservedTree {
        if path.isEmpty { return try scan(rootfd: rootfd) }
        let chain = DirectoryChain(rootfd: rootfd)
        let fd = openat(try chain.open(path), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.fromErrno("opening directory", displayPath(path)) }
        return try scan(from: .init(path: path, fd: fd), first: nil)
    }

    /// Scans from `start` (whose descriptor the scan owns), adding `first` to what it finds.
    private func scan(from start: Work.Item, first: (TreePath, Observed)?) throws -> ObservedTree {
        let threads = max(1, self.threads)
        let work = Work(threads: threads)
        if let first { work.results.withLock { $0.append([first]) } }
        work.push([start], finishedOne: false)
        let preserved = self.preserved
        let before = unchangedBefore
        let choose = self.choose
        runWorkers(threads) {
            // Each thread lists a directory from inside it: names are then looked up in one step
            // (through /proc/self/fd they would cost a procfs walk each, most of a scan).
            let saved = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            let relative = saved >= 0 && CImageSys_unshare_fs() == 0
            defer {
                if saved >= 0 {
                    _ = fchdir(saved)
                    close(saved)
                }
            }
            var local: [(TreePath, Observed)] = []
            while let item = work.next() {
                do {
                    let children = try Self.scanDirectory(
                        item.path, fd: item.fd, preserved: preserved, relative: relative, unchangedBefore: before,
                        choose: choose, into: &local)
                    work.push(children, finishedOne: true)
                } catch {
                    work.fail(error)
                }
            }
            let found = local
            work.results.withLock { $0.append(found) }
        }
        if let failure = work.failure.withLock({ $0 }) {
            work.queue.withLock { q in for item in q.items { close(item.fd) } }
            throw failure
        }
        let parts = work.results.withLock { $0 }
        var tree = ObservedTree(minimumCapacity: parts.reduce(0) { $0 + $1.count })
        for part in parts {
            for (path, o) in part { tree[path] = o }
        }
        return tree
    }

    /// Lists one directory (closing `fd`), returning its subdirectories (opened) to scan.
    static func scanDirectory(
        _ dirPath: [UInt8], fd: Int32, preserved: [[UInt8]], relative: Bool,
        unchangedBefore: (seconds: Int64, nanoseconds: Int64)?,
        choose: (@Sendable ([UInt8], Bool) -> CaptureChoice)? = nil, into out: inout [(TreePath, Observed)]
    ) throws -> [Work.Item] {
        if relative && fchdir(fd) != 0 {
            close(fd)
            throw SystemError.fromErrno("entering directory", displayPath(dirPath))
        }
        let xattrBase = relative ? Xattrs.relativeToWorkingDirectory : fd
        guard let dir = fdopendir(fd) else {
            close(fd)
            throw SystemError.fromErrno("listing", displayPath(dirPath))
        }
        defer { closedir(dir) }
        // The preserved paths that can be entries of this directory (usually none), so that each
        // entry is checked against those only.
        let preservedHere =
            dirPath.isEmpty
            ? preserved : preserved.filter { $0.count > dirPath.count && PathRules.isWithin($0, dirPath) }
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        var children: [Work.Item] = []
        while true {
            errno = 0
            guard let ent = readdir(dir) else {
                if errno != 0 { throw SystemError.fromErrno("listing", displayPath(dirPath)) }
                break
            }
            // The entry's name as the dirent holds it (NUL-terminated, valid until the next
            // readdir): the *at calls take it as it is, and only the path is built, once.
            let cname = UnsafeRawPointer(ent).advanced(by: nameOffset).assumingMemoryBound(to: CChar.self)
            let length = strlen(cname)
            if cname[0] == 0x2e && (length == 1 || (length == 2 && cname[1] == 0x2e)) { continue }
            let nameBytes = UnsafeRawBufferPointer(start: cname, count: length)
            if dirPath.isEmpty && nameBytes.elementsEqual(stateDirectoryName) { continue }
            var path: [UInt8] = []
            path.reserveCapacity(dirPath.count + 1 + length)
            path.append(contentsOf: dirPath)
            if !path.isEmpty { path.append(UInt8(ascii: "/")) }
            path.append(contentsOf: nameBytes)
            if !preservedHere.isEmpty && preservedHere.contains(where: { PathRules.isWithin(path, $0) }) { continue }
            var st = stat()
            if fstatat(fd, cname, &st, AT_SYMLINK_NOFOLLOW) != 0 {
                if errno == ENOENT { continue }
                throw SystemError.fromErrno("reading", displayPath(path))
            }
            guard var o = Observed(stat: st) else { continue }
            var descend = true
            if let choose {
                switch choose(path, o.kind == .directory) {
                case .include: break
                case .withoutContents: descend = false
                case .leaveOut: continue
                }
                if !descend && o.kind != .directory { continue }
            }
            // Xattrs are not asked for when the ctime says nothing changed since the applied
            // version was recorded (a directory's as a file's: setting one moves the ctime).
            let unchanged =
                unchangedBefore.map {
                    (Int64(st.st_ctim.tv_sec), Int64(st.st_ctim.tv_nsec)) < ($0.seconds, $0.nanoseconds)
                }
                ?? false
            if o.kind == .directory {
                let sub = openat(fd, cname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if sub < 0 { throw SystemError.fromErrno("opening directory", displayPath(path)) }
                if unchanged {
                    o.xattrsRead = false
                } else {
                    do {
                        o.xattrs = try Xattrs.read(dirfd: fd, name: Array(nameBytes), fd: sub, path: path)
                    } catch {
                        close(sub)
                        throw error
                    }
                }
                if descend { children.append(.init(path: path, fd: sub)) } else { close(sub) }
            } else {
                if unchanged {
                    o.xattrsRead = false
                } else {
                    o.xattrs = try Xattrs.read(dirfd: xattrBase, name: Array(nameBytes), path: path)
                }
                if o.kind == .symlink {
                    var buf = [UInt8](repeating: 0, count: 4096)
                    let n = buf.withUnsafeMutableBytes {
                        readlinkat(fd, cname, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 4096)
                    }
                    if n < 0 { throw SystemError.fromErrno("reading symlink", displayPath(path)) }
                    o.target = Array(buf[0..<n])
                }
            }
            out.append((TreePath(path), o))
        }
        return children
    }
}

/// Runs `body` on `count` threads (the calling thread included) and waits for all.
func runWorkers(_ count: Int, _ body: @escaping @Sendable () -> Void) {
    if count <= 1 {
        body()
        return
    }
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var threads: [pthread_t] = []
    for _ in 1..<count {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let r = pthread_create(
            &thread, nil,
            { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                box.body()
                return nil
            }, box)
        if r == 0 { threads.append(thread) } else { Unmanaged<Box>.fromOpaque(box).release() }
    }
    body()
    for t in threads { pthread_join(t, nil) }
}

extension EntryKind {
    /// The kind of a `st_mode` (or libarchive file type): its `S_IFMT` bits; nil for none we know.
    public init?(fileType mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .file
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symlink
        case S_IFCHR: self = .charDevice
        case S_IFBLK: self = .blockDevice
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        default: return nil
        }
    }
}
