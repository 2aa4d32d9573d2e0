import ProvisionerAPI
import ProvisionerBoot
import ProvisionerClient
import ProvisionerCore
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

import Dispatch
import Synchronization

/// The boot console: one line per message, written straight to stdout (the unit sends it to
/// the journal and the console, which stamps each line with the time since power-on; stdio
/// buffering would hold lines back).
struct Console: Sendable {
    func say(_ message: String) {
        let line = Array("provisioner: \(message)\n".utf8)
        line.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = write(1, bytes.baseAddress! + offset, bytes.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }

    /// Seconds since the kernel started (`/proc/uptime`), the clock of boot-to-pivot times.
    static func uptime() -> Double {
        guard let data = FileManager.default.contents(atPath: "/proc/uptime"),
            let first = String(decoding: data, as: UTF8.self).split(separator: " ").first, let value = Double(first)
        else { return 0 }
        return value
    }

}

/// Waits for async work from the agent's synchronous code (the sync engine runs on threads).
func blocking<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    Task {
        do { box.set(.success(try await work())) } catch { box.set(.failure(error)) }
    }
    return try box.wait().get()
}

/// One result handed from a task to a waiting thread: the value under a `Mutex`, the wake-up a
/// semaphore's.
final class ResultBox<T: Sendable>: Sendable {
    private let result = Mutex<Result<T, any Error>?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    func set(_ value: sending Result<T, any Error>) {
        result.withLock { $0 = value }
        ready.signal()
    }

    func wait() -> Result<T, any Error> {
        ready.wait()
        ready.signal()  // a second wait returns at once too
        return result.withLock { $0! }
    }
}

/// What the machine is: NICs and DMI from sysfs, disks from the inventory.
enum MachineFacts {
    static func read(inventory: Inventory?) -> HardwareFacts {
        func sysfs(_ path: String) -> String? {
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            let text = String(decoding: data, as: UTF8.self).trimmed
            return text.isEmpty ? nil : text
        }
        let dmi = DMIFacts(
            serial: sysfs("/sys/class/dmi/id/product_serial"), uuid: sysfs("/sys/class/dmi/id/product_uuid"),
            vendor: sysfs("/sys/class/dmi/id/sys_vendor"), product: sysfs("/sys/class/dmi/id/product_name"))
        var nics: [NICFacts] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net"))?.sorted() ?? []
        for name in names where name != "lo" {
            let base = "/sys/class/net/\(name)"
            // Only NICs with a device behind them (no bridges, bonds or tunnels of the initrd).
            guard FileManager.default.fileExists(atPath: base + "/device"),
                let mac = sysfs(base + "/address").flatMap(MACAddress.normalize), mac != "00:00:00:00:00:00"
            else { continue }
            let driver = (try? FileManager.default.destinationOfSymbolicLink(atPath: base + "/device/driver"))
                .map { String($0.split(separator: "/").last ?? "") }
            let speed = sysfs(base + "/speed").flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil }
            nics.append(
                NICFacts(
                    name: name, mac: mac, driver: driver, speedMbps: speed,
                    linkUp: sysfs(base + "/operstate").map { $0 == "up" }))
        }
        return HardwareFacts(dmi: dmi, nics: nics, inventory: inventory)
    }
}

/// The server could not be reached at all (as opposed to answering with an error).
func isUnreachable(_ error: any Error) -> Bool {
    guard let error = error as? ClientError else { return false }
    if error.isConnectionLevel { return true }
    if case .allServersFailed = error { return true }
    return false
}

/// Writes `bytes` to `path` through a temporary file and a rename, after an fsync: a power cut
/// leaves the old file or the new one. Returns false (and writes nothing) when the content is
/// already there.
@discardableResult
func writeFileIfDifferent(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws -> Bool {
    if let existing = FileManager.default.contents(atPath: path), existing.elementsEqual(bytes) { return false }
    let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
    if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    let temporary = path + ".provisioner-new"
    do {
        let file = try OwnedDescriptor(opening: temporary, flags: O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: mode)
        try file.write(bytes)
        try file.sync()
    } catch {
        unlink(temporary)
        throw error
    }
    guard rename(temporary, path) == 0 else {
        let e = SystemError.fromErrno("renaming into place", path)
        unlink(temporary)
        throw e
    }
    return true
}


/// Where the booted system finds the agent: the initrd's /run moves into the new root at switch-root,
/// so a copy there outlives the initramfs (for `provisioner-agent capture` on the running node;
/// docs/images.md, "Capturing a running node"). It costs the binary's size in /run's tmpfs (~32 MB).
let agentCopyPath = "/run/provisioner/provisioner-agent"

/// Copies the running executable to `agentCopyPath` on a thread of its own, from the start of the
/// boot: in the kernel (`sendfile`, no pass through this process), while the boot waits for the
/// server and the disks. Under QEMU's TCG the copy took 2.8 s of a no-change boot when it ran
/// just before the pivot. Best effort: a full /run must not stop a boot, so `finish` returns the
/// line to print and never throws.
final class AgentCopy: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var line = ""

    /// Starts the copy (nothing when not in an initrd).
    static func start() -> AgentCopy {
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
    func finish() -> String {
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
