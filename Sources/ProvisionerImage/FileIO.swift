import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Small POSIX helpers shared by the store and the sync engine. Every failure is a
/// SystemError naming the call's purpose and the path.
enum FileIO {
    /// lseek's SEEK_DATA and SEEK_HOLE (Linux values; Glibc hides them behind _GNU_SOURCE).
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// Runs a call that returns -1 on failure, retrying on EINTR.
    @inline(__always)
    static func retry(_ call: () -> Int32) -> Int32 {
        var r: Int32
        repeat { r = call() } while r < 0 && errno == EINTR
        return r
    }

    @inline(__always)
    static func retrySize(_ call: () -> Int) -> Int {
        var r: Int
        repeat { r = call() } while r < 0 && errno == EINTR
        return r
    }

    /// Reads a whole file (at most `limit` bytes); nil if it does not exist.
    static func read(_ path: String, limit: Int = 1 << 30) throws -> [UInt8]? {
        let fd = retry { open(path, O_RDONLY | O_CLOEXEC) }
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError.fromErrno("opening", path)
        }
        defer { close(fd) }
        return try readAll(fd: fd, path: path, limit: limit)
    }

    static func readAll(fd: Int32, path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError.fromErrno("reading the size of", path) }
        guard Int(st.st_size) <= limit else {
            throw SystemError("reading", path, cause: "\(st.st_size) bytes, more than the \(limit) allowed")
        }
        let size = Int(st.st_size)
        var failure: Int32 = 0
        // Uninitialized: the bytes are read straight in (no zero fill of every object first).
        let out = [UInt8](unsafeUninitializedCapacity: size) { buf, initialized in
            var done = 0
            while done < size {
                let n = retrySize { pread(fd, buf.baseAddress! + done, size - done, off_t(done)) }
                if n < 0 {
                    failure = errno
                    break
                }
                if n == 0 { break }
                done += n
            }
            initialized = done
        }
        if failure != 0 { throw SystemError.fromErrno("reading", path, failure) }
        return out
    }

    static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = retrySize { pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            if n < 0 { throw SystemError.fromErrno("writing", path) }
            done += n
        }
    }

    /// Writes `bytes` to `path` through a temporary name in the same directory and a rename,
    /// so that readers see the old file or the new one, never a part.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], sync: Bool = true) throws {
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = retry { open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw SystemError.fromErrno("creating", tmp) }
        var isOpen = true
        do {
            try bytes.withUnsafeBytes { (buf) throws in try writeAll(fd: fd, buf, at: 0, path: tmp) }
            if sync && fsync(fd) != 0 { throw SystemError.fromErrno("flushing", tmp) }
            isOpen = false
            if close(fd) != 0 { throw SystemError.fromErrno("closing", tmp) }  // NFS and full disks report here
            guard rename(tmp, path) == 0 else { throw SystemError.fromErrno("renaming into place", path) }
        } catch {
            if isOpen { close(fd) }  // never twice: the number may already be another thread's file
            unlink(tmp)
            throw error
        }
    }

    /// mkdir -p.
    static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        var st = stat()
        if stat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw SystemError("creating directory", path, cause: "exists and is not a directory")
            }
            return
        }
        let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !parent.isEmpty && parent != path { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw SystemError.fromErrno("creating directory", path) }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Names in a directory (without . and ..); nil if it does not exist.
    static func list(_ path: String) throws -> [String]? {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return nil }
            throw SystemError.fromErrno("listing", path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}
