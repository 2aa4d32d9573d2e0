#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An open file descriptor that is ours: it cannot be copied, and it is closed exactly once,
/// when its owner is done with it (or earlier with `close()`). C calls borrow `rawValue`.
///
/// ```
/// let dir = try OwnedDescriptor(opening: "/sysroot", flags: O_RDONLY | O_DIRECTORY)
/// let state = try OwnedDescriptor(opening: ".provisioner-state", in: dir, flags: O_RDONLY | O_DIRECTORY)
/// ```
public struct OwnedDescriptor: ~Copyable {
    public let rawValue: Int32
    /// What was opened, for errors: `/sysroot/.provisioner-state`.
    public let path: String

    /// Takes ownership of a descriptor opened elsewhere (`O_TMPFILE`, a C helper).
    public init(adopting rawValue: Int32, path: String) {
        self.rawValue = rawValue
        self.path = path
    }

    /// Opens `path`; `O_CLOEXEC` is always added, EINTR retried. The corresponding C function is `open`.
    public init(opening path: String, flags: Int32, mode: mode_t = 0) throws(SystemError) {
        self.init(adopting: try Self.open(AT_FDCWD, path, flags, mode, shown: path), path: path)
    }

    /// Opens `name` relative to the directory `directory`. The corresponding C function is `openat`.
    public init(opening name: String, in directory: borrowing OwnedDescriptor, flags: Int32, mode: mode_t = 0)
        throws(SystemError)
    {
        let shown = "\(directory.path)/\(name)"
        self.init(adopting: try Self.open(directory.rawValue, name, flags, mode, shown: shown), path: shown)
    }

    static func open(_ base: Int32, _ path: String, _ flags: Int32, _ mode: mode_t, shown: String)
        throws(SystemError) -> Int32
    {
        var fd: Int32
        repeat {
            fd = openat(base, path, flags | O_CLOEXEC, mode)
        } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw .fromErrno("opening", shown) }
        return fd
    }

    /// Opens read-only.
    public init(readOnly path: String) throws(SystemError) {
        try self.init(opening: path, flags: O_RDONLY)
    }

    /// Writes all of `bytes` at the current offset, retrying short writes and EINTR.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(rawValue, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .fromErrno("writing", path) }
            offset += n
        }
    }

    public func write(_ bytes: [UInt8]) throws(SystemError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try write(raw) } }
        try result.get()
    }

    /// Flushes the file's data and metadata to the device. The corresponding C function is `fsync`.
    public func sync() throws(SystemError) {
        guard fsync(rawValue) == 0 else { throw .fromErrno("flushing", path) }
    }

    /// Closes now rather than at the end of the owner's scope: the value ends here, and with it
    /// the descriptor (its deinit).
    public consuming func close() {}

    deinit { _ = Glibc.close(rawValue) }
}
