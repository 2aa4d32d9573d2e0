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
