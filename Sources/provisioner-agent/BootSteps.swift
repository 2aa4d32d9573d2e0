import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import ProvisionerImage
import ProvisionerPlugins
import ProvisionerSystem
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// The node's steps (docs/boot.md, rows N1–N14), carried out as `BootStateMachine` decided them.
extension BootRunner {
    var currentNode: NodeConfig { machine.node! }
    var activation: Activation? { machine.activation }

    /// N1/N3: a RAM root when stateless, then the layout matched, observed and planned.
    func runDisks(_ task: DiskTask) -> BootDecision {
        let start = monotonicSeconds()
        if modulePreload == nil && !task.kernelModules.isEmpty { modulePreload = ModulePreload(task.kernelModules) }
        if let size = task.ramRootSize {
            if !MountTable.read().isMountPoint(root) {
                try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
                do {
                    try Command.check(
                        ["mount", "-t", "tmpfs", "-o", "mode=0755,size=\(size)", "tmpfs", root],
                        doing: "mounting a RAM root on", on: root)
                } catch {
                    return failed(.disks, .transient, "\(error)")
                }
            }
            session?.event("disks", "stateless: the root is a RAM disk (tmpfs, size \(size)) on \(root)")
        }
        guard let layout = task.layout else { return machine.stepSucceeded(.disksReady(changes: 0, activation: nil)) }
        let situation: LayoutSituation
        do {
            situation = try LayoutSituation.inspect(
                layout, inventory: inventory, log: { self.session?.event("disks", $0, step: "observe") })
        } catch {
            let (status, message) = ExitStatus.of(error)
            return failed(.disks, status == .unmatched ? .unmatched : .transient, message)
        }
        for line in situation.report().text.split(separator: "\n") {
            session?.event("disks", String(line), step: "plan")
        }
        session?.event(
            "disks", "matched, observed and planned in \(took(since: start))", step: "plan",
            seconds: monotonicSeconds() - start)
        return machine.disksPlanned(situation.plan)
    }

    /// The layout's filesystems with their UUIDs (read in the background from `applyDisks` on).
    func mounted() -> PluginFiles.Mounted {
        if mountedFilesystems == nil { readMountedFilesystems(activation) }
        let pending = mountedFilesystems!
        let activation = self.activation
        return traced("waited for the filesystems' UUIDs") {
            (try? pending.wait()) ?? PluginFiles.mounted(activation)  // (it does not throw)
        }
    }

    /// Starts reading the filesystems' UUIDs while the boot goes on (a probe each).
    func readMountedFilesystems(_ activation: Activation?) {
        mountedFilesystems = Background { PluginFiles.mounted(activation) }
    }

    /// N7: the plan carried out, the layout brought up under the root.
    func applyDisks(_ plan: LayoutPlan) -> BootDecision {
        let start = monotonicSeconds()
        mountedFilesystems = nil
        let applier = LayoutApplier(log: { self.session?.event("disks", $0, step: "apply") })
        do {
            try applier.apply(plan)
            try applier.activate(plan.activation, root: root)
        } catch {
            return failed(.disks, .transient, "\(error)")
        }
        session?.event(
            "disks",
            (plan.actions.isEmpty
                ? "the disks already match the layout: nothing written"
                : "\(plan.actions.count) layout change(s) applied") + "; brought up in \(took(since: start))",
            step: "apply", seconds: monotonicSeconds() - start)
        if let line = modulePreload?.status, !line.isEmpty { session?.event("disks", line, step: "apply") }
        readMountedFilesystems(plan.activation)
        return machine.stepSucceeded(.disksReady(changes: plan.actions.count, activation: plan.activation))
    }

    /// N8: the root made identical to the node's image version, moving only what differs.
    func runSync(_ task: SyncTask) -> BootDecision {
        let sources: [any ObjectSource]
        do {
            sources = try traced("image sources set up") {
                try task.mirrors.map { try makeHTTPSource(url: $0, credentials: credentials) }
            }
        } catch {
            return failed(.image, .configuration, "\(error)")
        }
        var options = SyncOptions()
        options.verify = VerifyLevel(rawValue: task.verify.rawValue) ?? .metadata
        options.threads = 2
        let (mounts, swaps) = mounted()
        let preserved =
            task.preserved
            + PluginRunner(root: root).ownedPaths(task.plugins, node: currentNode, mounts: mounts, swaps: swaps)
        options.preserved = preserved.map { Array($0.utf8) }
        options.seeded = task.seeded.map { Array($0.utf8) }
        options.mountPoints = task.mountPoints.map { Array($0.utf8) }
        let progress = SyncProgress()
        options.progress = progress
        // The library's warnings: on the console at once (from any thread), to the session after.
        let warned = WarningQueue()
        let console = self.console
        let sink: WarningSink = { message in
            console.say("image: warning: \(message)")
            warned.append(message)
        }
        options.warnings = sink
        defer { for message in warned.drain() { session?.event("image", message, level: .warning, quiet: true) } }
        session?.event(
            "image",
            "syncing \(task.image)@\(task.version) from \(task.mirrors.joined(separator: ", ")) (verify \(options.verify.rawValue))"
        )

        let network = MirrorSource(sources, preferred: task.preferredMirrors, warnings: sink)
        // Objects that came by multicast first (M5); the rest, and any damaged copy, over HTTPS.
        let received = task.received.map { ReceivedObjectsSource(received: ImageStore(root: $0), source: network) }
        defer { if let dir = task.received { removeTree(dir) } }
        let source: any ObjectSource = received ?? network
        let engine = SyncEngine(target: root, source: source, options: options)
        let reporter = session.map { ProgressReporter(progress: progress, source: source, session: $0) }
        reporter?.start()
        let started = monotonicSeconds()
        let report: SyncReport
        do {
            report = try engine.run(image: task.image, version: task.version)
        } catch {
            reporter?.stop()
            return failed(.image, .transient, "\(error)")
        }
        reporter?.stop()
        let seconds = monotonicSeconds() - started
        if let received {
            session?.event(
                "image",
                "multicast: \(received.servedFromReceived) objects came from the multicast, "
                    + "\(received.fetchedFromNetwork) over HTTPS"
                    + (received.damagedReceived > 0
                        ? " (\(received.damagedReceived) received copies were damaged and fetched again)" : ""))
        }
        for (i, line) in report.summary(seconds: seconds).split(separator: "\n").enumerated() {
            session?.event("image", String(line), progress: 1, seconds: i == 0 ? seconds : nil)
        }
        var changed = report.changedEntries
        do {
            if try ensureMachineID() { changed += 1 }
            // What this node owns, for a later `provisioner-agent capture` on the running system
            // (docs/images.md, "Capturing a running node", rows C4-C5): written only when it differs.
            try writeFileIfDifferent(
                root + "/" + NodeOwnedRecord.path, Array(NodeOwnedRecord.encode(preserved).utf8))
        } catch {
            return failed(.image, .transient, "\(error)")
        }
        return machine.stepSucceeded(
            .imageSynced(image: task.image, version: report.version.hex, changedEntries: changed))
    }

    /// A node gets its own machine id once, on its first install (the image's is not synced).
    func ensureMachineID() throws -> Bool {
        let path = root + "/etc/machine-id"
        if let data = FileManager.default.contents(atPath: path),
            MachineID.isValid(String(decoding: data, as: UTF8.self))
        {
            return false
        }
        // The system's CSPRNG (getrandom).
        let text = MachineID.text(random: (0..<16).map { _ in UInt8.random(in: 0...255) })
        try writeFileIfDifferent(path, Array(text.utf8), mode: 0o444)
        session?.event("image", "new machine id \(text.dropLast()) written to /etc/machine-id")
        return true
    }

    /// N10: the node's plugins, writing only what differs.
    func runPlugins(_ configs: [PluginConfig]) -> BootDecision {
        let start = monotonicSeconds()
        let runner = PluginRunner(root: root)
        let (mounts, swaps) = mounted()
        var entries: [RootEntry] = []
        for config in configs {
            do {
                entries += try BuiltinPlugins.entries(
                    for: config, node: currentNode, mounts: mounts, swaps: swaps, wantedBy: runner.wantedBy)
            } catch {
                return failed(.plugins, .configuration, "\(error)")
            }
        }
        let files = currentNode.files ?? []
        // The node's secrets: written like overlay files, reported by path only.
        let secrets = machine.secrets.map(\.asFile)
        do {
            entries += try OverlayFiles.entries(files)
            entries += try OverlayFiles.entries(secrets)
        } catch {
            return failed(.plugins, .configuration, "\(error)")
        }
        let report: PluginRunner.Report
        do { report = try runner.apply(entries) } catch {
            return failed(.plugins, .transient, "\(error)")
        }
        for line in report.fileLines(
            overlays: currentNode.overlays, overlayFiles: files.map(\.path), secretFiles: secrets.map(\.path))
        {
            session?.event("plugins", line)
        }
        if let failure = runAdminPlugins(files, runner: runner) { return failure }
        session?.event(
            "plugins", report.summary(plugins: configs.map(\.name), took: took(since: start)),
            seconds: monotonicSeconds() - start)
        return machine.stepSucceeded(.pluginsRan(changedFiles: report.changed))
    }
}

extension BootRunner {
    /// The admin's plugins from the node's overlays, chrooted into the root, each within its time
    /// limit; a failure fails the boot with the plugin's name and its last line of output.
    func runAdminPlugins(_ files: [RenderedFile], runner: PluginRunner) -> BootDecision? {
        var stamps: [String: String] = [:]
        for file in files where file.run != nil {
            let stamp = AdminPlugins.stampPath(for: file.path)
            stamps[stamp] = runner.read(stamp)
        }
        let environment = AdminPlugins.environment(currentNode)
        for plugin in AdminPlugins.plan(files, node: currentNode, stamps: stamps) {
            guard let reason = plugin.reason else {
                session?.event(
                    "plugins", "plugin \(plugin.path) (overlay \(plugin.overlay)): skipped, inputs unchanged")
                continue
            }
            let start = monotonicSeconds()
            // What the run writes is found by its time: a marker made just before, outside the root.
            let marker = "/run/provisioner/plugin-started"
            try? FileManager.default.createDirectory(atPath: "/run/provisioner", withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            let result: CommandResult
            do {
                result = try Command.run(AdminPlugins.command(root: root, plugin: plugin, environment: environment))
            } catch {
                return failed(.plugins, .configuration, "plugin \(plugin.path) (overlay \(plugin.overlay)): \(error)")
            }
            let output = (result.stdout + result.stderr).split(separator: "\n").suffix(20).joined(separator: "\n")
            if !output.isEmpty { session?.event("plugins", "plugin \(plugin.path) output:\n\(output)") }
            guard result.status == 0 else {
                let why =
                    result.status == 124
                    ? "timed out after \(plugin.timeoutSeconds) s" : "exited with status \(result.status)"
                return failed(
                    .plugins, .configuration,
                    "plugin \(plugin.path) (overlay \(plugin.overlay)) \(why): \(result.lastMessage)")
            }
            let written = filesChanged(since: marker)
            do {
                _ = try runner.apply([
                    .file(
                        path: AdminPlugins.outputsPath,
                        content: AdminPlugins.mergeOutputs(
                            recorded: runner.read(AdminPlugins.outputsPath), written: written),
                        mode: 0o600),
                    .file(path: plugin.stampPath, content: plugin.digest + "\n", mode: 0o600),
                ])
            } catch {
                return failed(.plugins, .transient, "\(error)")
            }
            session?.event(
                "plugins", "plugin \(plugin.path) (overlay \(plugin.overlay)) ran (\(reason)) in \(took(since: start))")
        }
        return nil
    }
}

extension BootRunner {
    /// Files under the root (relative to it) changed after `marker`, the virtual and node-owned
    /// trees left out: what an admin plugin wrote.
    func filesChanged(since marker: String) -> [String] {
        var argv = ["find", root]
        for skip in AdminPlugins.notOutputs { argv += ["-path", root + "/" + skip, "-prune", "-o"] }
        // Files and links only: a directory's time changes with every name added to it, and a
        // directory kept as the node's would keep the image out of all of it.
        argv += ["!", "-type", "d", "-newer", marker, "-print"]
        guard let result = try? Command.run(argv), result.status == 0 else { return [] }
        return result.stdout.split(separator: "\n").compactMap { line in
            line.hasPrefix(root + "/") ? String(line.dropFirst(root.count + 1)) : nil
        }
    }
}

/// Warnings from the sync's threads, kept for the session.
final class WarningQueue: Sendable {
    private let messages = Mutex<[String]>([])
    func append(_ message: String) { messages.withLock { $0.append(message) } }
    func drain() -> [String] {
        messages.withLock { m in
            defer { m.removeAll() }; return m
        }
    }
}

/// The plugins' view of what the layout mounted (each filesystem's UUID read with libblkid).
enum PluginFiles {
    typealias Mounted = (mounts: [MountedFilesystem], swaps: [MountedFilesystem])

    static func mounted(_ activation: Activation?) -> Mounted {
        let mountList = activation?.mounts ?? []
        let swapList = activation?.swaps ?? []
        let devices = mountList.map(\.device) + swapList
        // The probes side by side; one that fails leaves that UUID out (fstab then names the device).
        let uuids =
            (try? concurrently(devices.count) { i in
                (try? Blkid.signatures(path: devices[i]))?.first(where: { $0.uuid != nil })?.uuid
            }) ?? devices.map { _ in nil }
        let mounts = mountList.enumerated().map { i, mount in
            MountedFilesystem(
                device: mount.device, uuid: uuids[i], mountPoint: mount.mountPoint, type: mount.type,
                options: mount.options)
        }
        let swaps = swapList.enumerated().map { i, device in
            MountedFilesystem(
                device: device, uuid: uuids[mountList.count + i], mountPoint: "none", type: .swap, options: [])
        }
        return (mounts, swaps)
    }
}

/// Prints and reports the sync's progress every few seconds while files are written.
final class ProgressReporter: @unchecked Sendable {
    let progress: SyncProgress
    let source: any ObjectSource
    let session: BootSession
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
