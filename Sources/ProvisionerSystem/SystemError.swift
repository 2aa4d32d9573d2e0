#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A failure while touching the system, saying what was being done to which
/// device or path, and why it failed:
/// `probing signatures on /dev/nvme0n1: Permission denied (errno 13)`.
public struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What was being done: `opening`, `probing partitions on`, `reading`.
    public var operation: String
    /// The device or path it was done to.
    public var subject: String
    public var cause: String
    public var errno: Int32?

    public init(_ operation: String, _ subject: String, cause: String, errno: Int32? = nil) {
        self.operation = operation
        self.subject = subject
        self.cause = cause
        self.errno = errno
    }

    /// From the current `errno`, for a libc or libblkid call that just failed.
    public static func fromErrno(_ operation: String, _ subject: String, _ code: Int32 = Glibc.errno) -> SystemError {
        let text = String(cString: strerror(code))
        return SystemError(operation, subject, cause: "\(text) (errno \(code))", errno: code)
    }

    public var description: String { "\(operation) \(subject): \(cause)" }
}
