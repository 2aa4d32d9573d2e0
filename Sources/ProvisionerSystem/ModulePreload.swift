import Dispatch
import Synchronization

/// Loads kernel modules on a thread of its own (`modprobe -q -a`), while the boot goes on: the
/// modules a layout needs (`DiskLayout.kernelModules`) are in the kernel before the first mount
/// asks for them. A mount that comes while its module is still loading waits for that load in
/// the kernel, as it would for its own. Best effort: a module that cannot be loaded is the
/// mount's error to report, so `status` only says how it went.
public final class ModulePreload: Sendable {
    public let modules: [String]
    private let outcome = Mutex<String?>(nil)
    private let started = ContinuousClock.now

    /// Starts loading `modules` (nothing to do for none).
    public init(_ modules: [String]) {
        self.modules = modules
        guard !modules.isEmpty else {
            outcome.withLock { $0 = "" }
            return
        }
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            let line: String
            do {
                let result = try Command.run(["modprobe", "-q", "-a"] + modules)
                let took = StorageObserver.seconds(ContinuousClock.now - started)
                line =
                    result.status == 0
                    ? "kernel modules for the layout loaded in the background in \(took): \(modules.joined(separator: " "))"
                    : "kernel modules for the layout: modprobe exited with status \(result.status) after \(took) "
                        + "(\(result.lastMessage)); each mount loads what it needs itself"
            } catch {
                line = "kernel modules for the layout not preloaded: \(error); each mount loads what it needs itself"
            }
            outcome.withLock { $0 = line }
        }
    }

    /// What to say about the load: nil while it still runs, empty when there was nothing to load.
    public var status: String? { outcome.withLock { $0 } }
}
