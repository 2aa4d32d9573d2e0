import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a finished program printed and how it exited.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    /// The last non-empty line of stderr (or stdout), for one-line errors.
    public var lastMessage: String {
        for text in [stderr, stdout] {
            if let line = text.split(separator: "\n").last(where: { !$0.trimmed.isEmpty }) {
                return String(line).trimmed
            }
        }
        return "no output"
    }
}

/// Runs the system tools the agent drives (sfdisk, mdadm, lvm, mkfs.*),
/// without a shell: arguments go to the program exactly as given.
public enum Command {
    /// Told of every finished run: the command as shown, its exit status and its seconds
    /// (`provisioner.trace` puts them on the agent's console). Set once, before the tools run.
    public typealias Tracer = @Sendable (_ command: String, _ status: Int32, _ seconds: Double) -> Void
    private static let tracer = Mutex<Tracer?>(nil)
    public static func trace(with body: Tracer?) { tracer.withLock { $0 = body } }

    /// Tells the tracer of a call made without a tool (`mount(2) ...`), begun at `started`.
    public static func traced(_ shown: String, status: Int32, since started: ContinuousClock.Instant) {
        guard let trace = tracer.withLock({ $0 }) else { return }
        let elapsed = ContinuousClock.now - started
        trace(shown, status, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// Runs `argv` to completion, capturing stdout and stderr.
    /// The corresponding C functions are `posix_spawnp`, `poll` and `waitpid`.
    ///
    /// `input` is written before the output is read, so it must fit in a pipe
    /// (64 KiB): the scripts the agent feeds sfdisk are a few hundred bytes.
    ///
    /// With `output`, stdout goes to it piece by piece as it arrives (a receiver writing a stream
    /// of any length) and the result's `stdout` is empty. `environment` adds `NAME=value` settings
    /// for this program (`MDADM_NO_UDEV=1`).
    public static func run(
        _ argv: [String], input: String? = nil, environment extra: [String] = [],
        output: ((UnsafeRawBufferPointer) -> Void)? = nil
    ) throws(SystemError) -> CommandResult {
        precondition(!argv.isEmpty)
        let shown = argv.joined(separator: " ")
        if let input, input.utf8.count > 65_536 {
            throw SystemError("feeding input to", shown, cause: "\(input.utf8.count) bytes is more than a pipe holds")
        }
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        var inPipe: [Int32] = [0, 0]
        for i in 0..<3 {
            let ok = i == 0 ? pipe(&outPipe) : (i == 1 ? pipe(&errPipe) : pipe(&inPipe))
            guard ok == 0 else { throw .fromErrno("creating pipes for", shown) }
        }
        // Only the dup2'ed copies reach the child.
        for fd in outPipe + errPipe + inPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)

        // Tools must not ask questions, and their messages must be in English for our errors.
        let started = ContinuousClock.now
        var environment = ["LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LVM_SUPPRESS_FD_WARNINGS=1"]
        if let path = getenv("PATH").map({ String(cString: $0) }) { environment[1] = "PATH=\(path)" }
        environment += extra
        var pid: pid_t = 0
        let status = withCStrings(argv) { args in
            withCStrings(environment) { env in
                posix_spawnp(&pid, argv[0], &actions, nil, args, env)
            }
        }
        close(outPipe[1])
        close(errPipe[1])
        close(inPipe[0])
        guard status == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            close(inPipe[1])
            throw .fromErrno("starting", argv[0], status)
        }
        if let input {
            var bytes = Array(input.utf8)[...]
            while !bytes.isEmpty {
                let n = bytes.withUnsafeBytes { write(inPipe[1], $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                bytes = bytes.dropFirst(n)
            }
        }
        close(inPipe[1])

        var out: [UInt8] = []
        var err: [UInt8] = []
        var fds = [
            pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0),
            pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0),
        ]
        var open = 2
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open > 0 {
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if i == 0, let output {
                        buffer.withUnsafeBytes { output(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    } else if i == 0 {
                        out += buffer[0..<n]
                    } else {
                        err += buffer[0..<n]
                        if err.count > 1 << 20 { err.removeFirst(err.count - (1 << 20)) }  // the last MiB is enough
                    }
                } else if n == 0 || errno != EINTR {
                    close(fds[i].fd)
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        var wstatus: Int32 = 0
        while waitpid(pid, &wstatus, 0) < 0 && errno == EINTR {}
        let exit: Int32 = (wstatus & 0x7f) == 0 ? (wstatus >> 8) & 0xff : 128 + (wstatus & 0x7f)
        if let trace = tracer.withLock({ $0 }) {
            let elapsed = ContinuousClock.now - started
            trace(shown, exit, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        return CommandResult(
            status: exit, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    /// Runs `argv` and throws, naming the program and its message, unless it exits 0.
    @discardableResult
    public static func check(_ argv: [String], input: String? = nil, doing operation: String, on subject: String)
        throws(SystemError) -> CommandResult
    {
        let result = try run(argv, input: input)
        guard result.status == 0 else {
            throw SystemError(
                operation, subject,
                cause: "\(argv[0]) exited with status \(result.status): \(result.lastMessage)")
        }
        return result
    }

    static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        return body(pointers)
    }
}
