import ArgumentParser
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
    /// The kernel command line's settings; a bad one is said on the console and exits 2.
    func bootSettings(from cmdline: String) throws -> BootSettings {
        do {
            return try BootSettings.parse(try readTextFile(cmdline, what: "kernel command line"))
        } catch {
            say("ERROR kernel command line: \(ExitStatus.of(error).1)")
            throw ExitCode(ExitStatus.badInput.rawValue)
        }
    }

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


