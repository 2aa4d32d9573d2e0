import Dispatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Where the booted system finds the agent: the initrd's /run moves into the new root at switch-root,
/// so a copy there outlives the initramfs (for `provisioner-agent capture` on the running node;
/// docs/images.md, "Capturing a running node"). It costs the binary's size in /run's tmpfs (~32 MB).
public let agentCopyPath = "/run/provisioner/provisioner-agent"

/// Copies the running executable to `agentCopyPath` on a thread of its own, from the start of the
/// boot: in the kernel (`sendfile`, no pass through this process), while the boot waits for the
/// server and the disks. Under QEMU's TCG the copy took 2.8 s of a no-change boot when it ran
/// just before the pivot. Best effort: a full /run must not stop a boot, so `finish` returns the
/// line to print and never throws.
public final class AgentCopy: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var line = ""

    /// Starts the copy (nothing when not in an initrd).
    public static func start() -> AgentCopy {
        let copy = AgentCopy()
        guard access("/etc/initrd-release", F_OK) == 0 else {
            copy.line = "not in an initrd: no copy of the agent left in /run"
            copy.done.signal()
            return copy
        }
        DispatchQueue.global(qos: .utility).async {
            copy.line = Self.copy()
            copy.done.signal()
        }
        return copy
    }

    /// Waits for the copy; what to say about it.
    public func finish() -> String {
        done.wait()
        done.signal()  // a second call returns at once
        return line
    }

    private static func copy() -> String {
        let temporary = agentCopyPath + ".partial"
        let source = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)
        guard source >= 0 else {
            return "warning: could not open /proc/self/exe (\(String(cString: strerror(errno)))): no copy of the agent "
                + "left at \(agentCopyPath) (capture needs one)"
        }
        defer { close(source) }
        var st = stat()
        mkdir("/run/provisioner", 0o755)
        let target = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard fstat(source, &st) == 0, target >= 0 else {
            let why = String(cString: strerror(errno))
            if target >= 0 { close(target) }
            return "warning: no copy of the agent left at \(agentCopyPath) (capture needs one): \(temporary): \(why)"
        }
        var left = Int(st.st_size)
        while left > 0 {
            let n = sendfile(target, source, nil, left)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let why = n == 0 ? "the executable ended early" : String(cString: strerror(errno))
                close(target)
                unlink(temporary)
                return "warning: no copy of the agent left at \(agentCopyPath) (capture needs one): writing \(temporary): \(why)"
            }
            left -= n
        }
        fchmod(target, 0o755)
        close(target)
        guard rename(temporary, agentCopyPath) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temporary)
            return "warning: no copy of the agent left at \(agentCopyPath) (capture needs one): renaming \(temporary): \(why)"
        }
        return "a copy of the agent (\(st.st_size) bytes) is at \(agentCopyPath) for capture"
    }
}
