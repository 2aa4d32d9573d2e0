import Dispatch
import Synchronization

/// Runs `body(0..<count)` on the machine's cores at once and returns the results in index order;
/// the first failure (by index) is thrown once all are done. For independent tool runs and
/// mounts, whose cost under emulation is mostly starting a process.
public func concurrently<R: Sendable>(
    _ count: Int, _ body: @Sendable (Int) throws(SystemError) -> R
) throws(SystemError) -> [R] {
    if count == 1 { return [try body(0)] }
    let results = Mutex<[Int: Result<R, SystemError>]>([:])
    DispatchQueue.concurrentPerform(iterations: count) { i in
        let result: Result<R, SystemError>
        do throws(SystemError) { result = .success(try body(i)) } catch { result = .failure(error) }
        results.withLock { $0[i] = result }
    }
    return try results.withLock { all throws(SystemError) in
        try (0..<count).map { i throws(SystemError) in try all[i]!.get() }
    }
}

/// Work started on another thread at once, its result waited for later: what one step can do
/// while the next one goes on (the sync's manifest while the target is walked).
public final class Background<T: Sendable>: Sendable {
    private let result = Mutex<Result<T, any Error>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    public init(_ work: @escaping @Sendable () throws -> T) {
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            let outcome = Result { try work() }
            self.result.withLock { $0 = outcome }
            self.done.signal()
        }
    }

    /// The work's result (its error thrown); every call after the first returns at once.
    public func wait() throws -> T {
        done.wait()
        done.signal()
        return try result.withLock { $0! }.get()
    }
}
