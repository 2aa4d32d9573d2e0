import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import ProvisionerImage
import ProvisionerPlugins
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// What the storage step left: the plan it carried out (stateful, or a stateless node's scratch
/// disks) and how many changes it made.
struct StorageResult {
    var situation: LayoutSituation?
    var changes = 0
    var activation: Activation? { situation?.plan.activation }
}

/// Step 3: the node's disks as its layout says, mounted under the root; or a tmpfs root.
struct StorageStep {
    let node: NodeConfig
    let settings: BootSettings
    let session: BootSession
    /// Read once at the start of the boot (nil when that failed: read again, with its error).
    let inventory: Inventory?

    func run() throws -> StorageResult {
        let root = settings.root
        var result = StorageResult()
        if node.mode == .stateless {
            if !isMountPoint(root) {
                try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
                try runChecked(
                    ["mount", "-t", "tmpfs", "-o", "mode=0755,size=\(settings.tmpfsSize)", "tmpfs", root],
                    doing: "mounting a RAM root on", on: root)
            }
            session.event("disks", "stateless: the root is a RAM disk (tmpfs, size \(settings.tmpfsSize)) on \(root)")
        }
        guard let text = node.layout else {
            if node.mode == .stateful {
                throw BootFailure(
                    phase: "disks", message: "node \(node.name) is stateful but has no layout (provisionerctl nodes set)",
                    retryable: false)
            }
            return result
        }
        let layout: DiskLayout
        do { layout = try DiskLayout(parsing: text, source: "node \(node.name) layout") } catch {
            throw BootFailure(phase: "disks", message: "the node's layout: \(error)", retryable: false)
        }
        let situation: LayoutSituation
        do {
            situation = try LayoutSituation.make(layout: layout, inventory: inventory, log: { self.session.event("disks", $0, level: .debug, quiet: true) })
        } catch let failure as AgentFailure {
            throw BootFailure(phase: "disks", message: failure.message, retryable: failure.exitCode != 3)
        } catch {
            throw BootFailure(phase: "disks", message: "\(error)", retryable: true)
        }
        for line in situation.report.split(separator: "\n") { session.event("disks", String(line), step: "plan") }
        guard situation.plan.refusals.isEmpty else {
            throw BootFailure(
                phase: "disks",
                message: "the layout is refused; nothing was written:\n  " + situation.plan.refusals.joined(separator: "\n  "),
                retryable: false)
        }
        let mountsRoot = situation.plan.activation.mounts.contains { $0.mountPoint == "/" }
        if node.mode == .stateful && !mountsRoot {
            throw BootFailure(phase: "disks", message: "the layout mounts nothing on /; a stateful node needs its root there", retryable: false)
        }
        if node.mode == .stateless && mountsRoot {
            throw BootFailure(phase: "disks", message: "a stateless node's root is a RAM disk; its layout must not mount /", retryable: false)
        }
        let applier = LayoutApplier(log: { self.session.event("disks", $0, step: "apply") })
        do {
            try applier.apply(situation.plan)
            try applier.activate(situation.plan.activation, root: root)
        } catch {
            throw BootFailure(phase: "disks", message: "\(error)", retryable: true)
        }
        result.situation = situation
        result.changes = situation.plan.actions.count
        session.event(
            "disks",
            situation.plan.actions.isEmpty
                ? "the disks already match the layout: nothing written"
                : "\(situation.plan.actions.count) layout change(s) applied")
        return result
    }
}

/// What the image step did.
struct SyncResult {
    var image: String
    var version: String
    var changedEntries: Int
}

/// Step 4: the root made identical to the node's image version, moving only what differs.
struct ImageStep {
    let node: NodeConfig
    let settings: BootSettings
    let session: BootSession
    let mirrors: [String]
    let credentials: ImageCredentials
    let storage: StorageResult

    /// Paths every node owns and the image sync leaves alone: its identity, and what the running
    /// system writes (logs, systemd's state and update stamps, temporary directories), so that a
    /// re-sync neither throws away a node's logs nor rewrites files on every boot.
    static let nodeOwned = [
        "etc/machine-id", "etc/.updated", "var/.updated", "var/lib/systemd", "var/log", "var/tmp", "tmp",
        "lost+found",
    ]

    func run() throws -> SyncResult {
        guard let ref = node.image else {
            throw BootFailure(phase: "image", message: "node \(node.name) has no image", retryable: false)
        }
        let version = ref.version ?? "latest"
        if ref.branch != nil && ref.version == nil {
            session.event("image", "image branches are not served by this server; following the latest version", level: .warning)
        }
        let sources: [any ObjectSource]
        do { sources = try mirrors.map { try makeHTTPSource(url: $0, credentials: credentials) } } catch {
            throw BootFailure(phase: "image", message: "\(error)", retryable: false)
        }
        var options = SyncOptions()
        let verify = settings.verify ?? node.syncVerify
        options.verify = VerifyLevel(rawValue: verify.rawValue) ?? .metadata
        options.threads = 2
        let preserved = Self.nodeOwned + settings.preserve + PluginStep.ownedPaths(node: node, root: settings.root, storage: storage)
        options.preserved = preserved.map { Array($0.utf8) }
        // The layout's other filesystems: synced where the image has content (/var), left alone
        // where it has none (a data volume, the ESP).
        let mountPoints = (storage.activation?.mounts ?? []).map { String($0.mountPoint.drop(while: { $0 == "/" })) }
            .filter { !$0.isEmpty }
        options.mountPoints = mountPoints.map { Array($0.utf8) }
        // Each filesystem's own lost+found (mke2fs makes one; fsck needs it).
        options.preserved += mountPoints.map { Array(($0 + "/lost+found").utf8) }
        let progress = SyncProgress()
        options.progress = progress
        session.event("image", "syncing \(ref.name)@\(version) from \(mirrors.joined(separator: ", ")) (verify \(options.verify.rawValue))")

        let source = MirrorSource(sources)
        let engine = SyncEngine(target: settings.root, source: source, options: options)
        let reporter = ProgressReporter(progress: progress, source: source, session: session)
        reporter.start()
        let started = monotonicSeconds()
        let report: SyncReport
        do {
            report = try engine.run(image: ref.name, version: version)
        } catch {
            reporter.stop()
            throw BootFailure(phase: "image", message: "\(error)", retryable: true)
        }
        reporter.stop()
        let seconds = monotonicSeconds() - started
        for line in Agent.Sync.summary(report, seconds: seconds).split(separator: "\n") {
            session.event("image", String(line), progress: 1)
        }
        var changed =
            report.upToDate
            ? 0
            : report.filesWritten + report.directoriesCreated + report.othersCreated + report.linksMade
                + report.metadataFixed + report.deleted + report.removed
        if try ensureMachineID() { changed += 1 }
        return SyncResult(image: ref.name, version: report.version.hex, changedEntries: changed)
    }

    /// A node gets its own machine id once, on its first install (the image's is not synced).
    func ensureMachineID() throws -> Bool {
        let path = settings.root + "/etc/machine-id"
        if let data = FileManager.default.contents(atPath: path) {
            let text = String(decoding: data, as: UTF8.self).trimmed
            if text.count == 32 && text.allSatisfy({ $0.isHexDigit }) { return false }
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }  // the system's CSPRNG (getrandom)
        let hex = bytes.map { b in String(b, radix: 16).count == 1 ? "0" + String(b, radix: 16) : String(b, radix: 16) }.joined()
        do { try writeFileIfDifferent(path, Array((hex + "\n").utf8), mode: 0o444) } catch {
            throw BootFailure(phase: "image", message: "\(error)", retryable: true)
        }
        session.event("image", "new machine id \(hex) written to /etc/machine-id")
        return true
    }
}

/// Prints and reports the sync's progress every few seconds while files are written.
final class ProgressReporter: @unchecked Sendable {
    let progress: SyncProgress
    let source: any ObjectSource
    let session: BootSession
    private let done = ResultBox<Bool>()
    private var task: Task<Void, Never>?

    init(progress: SyncProgress, source: any ObjectSource, session: BootSession) {
        self.progress = progress
        self.source = source
        self.session = session
    }

    func start() {
        let progress = self.progress
        let source = self.source
        let console = session.console
        task = Task.detached {
            var lastBytes = source.bytesReceived
            var lastTime = monotonicSeconds()
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(3))
                if Task.isCancelled { break }
                let planned = progress.filesPlanned.load(ordering: .relaxed)
                guard planned > 0 else { continue }
                let now = monotonicSeconds()
                let received = source.bytesReceived
                let rate = Double(received - lastBytes) / max(0.001, now - lastTime)
                (lastBytes, lastTime) = (received, now)
                let (_, text) = ProgressText.sync(
                    filesDone: progress.filesDone.load(ordering: .relaxed), filesPlanned: planned,
                    bytesDone: progress.bytesDone.load(ordering: .relaxed),
                    bytesPlanned: progress.bytesPlanned.load(ordering: .relaxed), bytesPerSecond: rate)
                console.say("image: \(text)")
            }
        }
    }

    /// Stops printing; the last progress also goes to the server as an event.
    func stop() {
        task?.cancel()
        let planned = progress.filesPlanned.load(ordering: .relaxed)
        if planned > 0 {
            let (fraction, text) = ProgressText.sync(
                filesDone: progress.filesDone.load(ordering: .relaxed), filesPlanned: planned,
                bytesDone: progress.bytesDone.load(ordering: .relaxed),
                bytesPlanned: progress.bytesPlanned.load(ordering: .relaxed), bytesPerSecond: 0)
            session.event("image", "files written: \(text)", progress: fraction, quiet: true)
        }
    }
}

/// Step 5: the node's plugins, writing only what differs.
struct PluginStep {
    let node: NodeConfig
    let root: String
    let storage: StorageResult
    let session: BootSession

    /// The plugins to run: the node's, plus `fstab` for a node whose layout mounts anything.
    static func configs(node: NodeConfig, storage: StorageResult) -> [PluginConfig] {
        var configs = node.plugins
        let mounts = storage.activation?.mounts ?? []
        if !mounts.isEmpty && !configs.contains(where: { $0.name == "fstab" }) {
            configs.append(PluginConfig(name: "fstab"))
        }
        return configs
    }

    static func mounted(_ storage: StorageResult) -> (mounts: [MountedFilesystem], swaps: [MountedFilesystem]) {
        func uuid(_ device: String) -> String? {
            (try? Blkid.signatures(path: device))?.first(where: { $0.uuid != nil })?.uuid
        }
        let mounts = (storage.activation?.mounts ?? []).map {
            MountedFilesystem(device: $0.device, uuid: uuid($0.device), mountPoint: $0.mountPoint, type: $0.type, options: $0.options)
        }
        let swaps = (storage.activation?.swaps ?? []).map {
            MountedFilesystem(device: $0, uuid: uuid($0), mountPoint: "none", type: .swap, options: [])
        }
        return (mounts, swaps)
    }

    /// The paths the plugins write, relative to the root, so that the image sync leaves them to
    /// the plugins (a plugin's file rewritten by the sync and back by the plugin on every boot
    /// would be two needless writes). Best effort before the image is there: a plugin that needs
    /// the image's unit files to know its paths contributes what it can.
    static func ownedPaths(node: NodeConfig, root: String, storage: StorageResult) -> [String] {
        let runner = PluginRunner(root: root)
        let (mounts, swaps) = mounted(storage)
        var paths: [String] = []
        for config in configs(node: node, storage: storage) {
            guard let entries = try? BuiltinPlugins.entries(for: config, node: node, mounts: mounts, swaps: swaps, wantedBy: runner.wantedBy)
            else { continue }
            paths += entries.map { String($0.path.drop(while: { $0 == "/" })) }
        }
        return paths
    }

    func run() throws -> [String] {
        let runner = PluginRunner(root: root)
        let (mounts, swaps) = Self.mounted(storage)
        var entries: [RootEntry] = []
        let configs = Self.configs(node: node, storage: storage)
        for config in configs {
            do {
                entries += try BuiltinPlugins.entries(for: config, node: node, mounts: mounts, swaps: swaps, wantedBy: runner.wantedBy)
            } catch {
                throw BootFailure(phase: "plugins", message: "\(error)", retryable: false)
            }
        }
        let report: PluginRunner.Report
        do { report = try runner.apply(entries) } catch {
            throw BootFailure(phase: "plugins", message: "\(error)", retryable: true)
        }
        let names = configs.map(\.name).joined(separator: ", ")
        if report.changed.isEmpty {
            session.event("plugins", "\(names): nothing to change (\(report.unchanged.count) file(s) already right)")
        } else {
            session.event("plugins", "\(names): wrote \(report.changed.joined(separator: ", "))")
        }
        return report.changed
    }
}
