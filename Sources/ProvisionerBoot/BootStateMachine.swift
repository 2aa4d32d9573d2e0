import ProvisionerAPI
import ProvisionerCore

/// The rows of the boot decision table in docs/boot.md. Every decision of `BootStateMachine`
/// cites the rows that made it, so the console and the tests name the rule, not its wording.
public enum BootRule: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    // Registration.
    case R1, R2, R3, R4, R5, R6, R7, R8
    // The node's steps.
    case N1, N2, N3, N4, N5, N6, N7, N8, N9, N10, N11, N12, N13, N14
    // The node's identity: enroll after the disks, wait for approval, then the whole config.
    case I1, I2, I3
    // Multicast: ask the server, wait, receive, then sync what is still missing.
    case M1, M2, M3, M4, M5
    // Failures: retried or not.
    case E1, E2, E3
    // The fallback: the server stayed away, the installed system boots as it is.
    case U1, U2, U3, U4, U5, U6, U7

    public var description: String { rawValue }
}

/// What the agent does next. Each action is carried out by the executable, which then tells the
/// machine how it went (an event); the machine answers with the next action.
public enum BootAction: Hashable, Sendable {
    /// Open a boot session with the machine's MACs and facts. `cleanRoot`: an earlier attempt may
    /// have mounted things under the root; unmount them first.
    case register(attempt: Int, cleanRoot: Bool)
    /// Wait, then open the session again. `fallbackInSeconds`: when the fallback follows if the
    /// server stays away (nil: no fallback, the attempt fails instead).
    case backOff(seconds: Int, fallbackInSeconds: Int?)
    /// Wait, then ask the server again whether the machine was assigned. `announce`: say first that
    /// the machine waits, and how to assign it.
    case poll(afterSeconds: Int, announce: Bool, mac: String?)
    /// Prepare the root: a RAM disk (stateless), then match, observe and plan the layout if any.
    case runDisks(DiskTask)
    /// Carry out the accepted plan and bring the layout up under the root.
    case applyDisks(LayoutPlan)
    /// Prove the node's identity: its kept key (or a new one) signs a certificate request with
    /// the session's challenge; with the certificate, ask for the node's whole config.
    case enroll(EnrollTask)
    /// The server wants the admin's approval for a new key: wait, then ask again.
    case awaitApproval(afterSeconds: Int, message: String)
    /// Ask the server whether the image comes by multicast (M1).
    case askMulticast(MulticastQuery)
    /// The server counts nodes waiting for the same version: ask again after this wait (M3).
    case waitForMulticast(afterSeconds: Int, reason: String)
    /// Receive the session's objects into `task.directory` (M2).
    case receiveMulticast(MulticastTask)
    /// Make the root identical to the node's image version.
    case runSync(SyncTask)
    /// Write the plugins' files into the root.
    case runPlugins([PluginConfig])
    /// Keep the fallback boot path on the ESP and the UEFI boot entry.
    case installLocalBoot(LocalBootTask)
    /// Find the node config the last provisioning boot saved on an ESP.
    case fallBack
    /// Match, observe and plan the saved layout (nothing is written).
    case planInstalled(DiskLayout)
    /// Assemble, activate and mount the installed layout, then read the applied image stamp.
    case activateInstalled(Activation)
    /// The failure may pass: wait, then run the whole flow again from a clean root.
    case retry(BootFailure, afterSeconds: Int, attempt: Int)
    /// Stop with exit status 1: the initrd's emergency policy follows.
    case giveUp(BootFailure, attempts: Int)
    /// Report the session's end and exit 0: the initrd switches root into the image.
    case pivot(PivotReport)
    /// Exit 0 without a session: the initrd switches root into the installed system as it is.
    case pivotInstalled(node: String, image: String)
}

/// One decision: the action, the table rows that led to it, and warnings to show with it.
public struct BootDecision: Hashable, Sendable, CustomStringConvertible {
    public var action: BootAction
    /// The rows that decided, in order: `[.R7, .E1]` is "assigned without a config, which is a
    /// failure that may pass, so try again".
    public var rules: [BootRule]
    public var warnings: [String]
    /// Lines to show and report as information (why the image comes over HTTPS after all).
    public var notes: [String]

    public init(_ action: BootAction, _ rules: [BootRule], warnings: [String] = [], notes: [String] = []) {
        self.action = action
        self.rules = rules
        self.warnings = warnings
        self.notes = notes
    }

    public var rule: BootRule { rules.last! }
    public var description: String { "\(rules.map(\.rawValue).joined(separator: "→")): \(action)" }
}

/// The disks step: a RAM root first when the node is stateless, then the layout if there is one.
public struct DiskTask: Hashable, Sendable {
    /// `mount -o size=` of a stateless node's tmpfs root; nil for a stateful node.
    public var ramRootSize: String?
    public var layout: DiskLayout?
    /// Kernel modules to load in the background while the disks are read (the layout's, in the
    /// order it needs them), so that no mount waits for one: those the kernel command line does
    /// not name already (`provisioner.modules=`, loaded early by the initrd).
    public var kernelModules: [String]

    public init(ramRootSize: String?, layout: DiskLayout?, loadedEarly: [String] = []) {
        self.ramRootSize = ramRootSize
        self.layout = layout
        kernelModules = (layout?.kernelModules ?? []).filter { !loadedEarly.contains($0) }
    }
}

/// The image step: what to sync, from where, and what the sync leaves alone.
public struct SyncTask: Hashable, Sendable {
    public var image: String
    /// A version id, or `latest`.
    public var version: String
    public var verify: SyncVerify
    /// Where objects come from: the node's own `provisioner.mirrors=` first (`preferredMirrors` of
    /// them: a rack's cache), then the server's list (itself and its `mirrors:`).
    public var mirrors: [String]
    public var preferredMirrors = 0
    /// Paths relative to the root the node owns (N8): never rewritten or deleted by the sync.
    public var preserved: [String]
    /// Paths the image seeds and the node then owns (N8): created when missing, then left alone.
    public var seeded: [String] = BootStateMachine.nodeSeededPaths
    /// The layout's other filesystems, relative to the root (`var`, `boot/efi`).
    public var mountPoints: [String]
    /// The plugins that run after the sync: the files they write are the node's too.
    public var plugins: [PluginConfig]
    /// A store directory of objects received by multicast (M5): used before the network, and
    /// removed after the sync.
    public var received: String? = nil
}

/// The local boot step: the ESP and the disks' partitions it lives on.
public struct LocalBootTask: Hashable, Sendable {
    public var esp: Activation.Mount
    /// The partitions holding the ESP: the members of its RAID1, or the partition itself. Each
    /// gets a UEFI boot entry.
    public var espPartitions: [String]
    /// The kernel and initrds the node boots, as the server named them in the session.
    public var boot: BootFiles
    /// Set when the server could not say what the node boots (its pinned kernel is not in its
    /// image): the kernel and initrds on the ESP are then left as they are.
    public var bootProblem: String?

    public init(esp: Activation.Mount, espPartitions: [String], boot: BootFiles, bootProblem: String? = nil) {
        self.esp = esp
        self.espPartitions = espPartitions
        self.boot = boot
        self.bootProblem = bootProblem
    }
}

/// What a step did, as the executable reports it.
public enum StepOutcome: Hashable, Sendable {
    /// The root is ready: `changes` layout actions carried out; `activation` is what is mounted
    /// (nil for a stateless node without a layout).
    case disksReady(changes: Int, activation: Activation?)
    case imageSynced(image: String, version: String, changedEntries: Int)
    case pluginsRan(changedFiles: [String])
    case localBootInstalled(changedFiles: [String])
    /// The installed layout is mounted; `applied` is the image stamp its last sync left
    /// (`.provisioner-state/applied`), nil when there is none.
    case installedActivated(applied: String?)
}

/// The last line of a provisioning boot: what changed, and into what the root switches.
public struct PivotReport: Hashable, Sendable {
    public var node: String
    public var image: String
    public var version: String
    public var layoutChanges = 0
    public var imageEntries = 0
    public var pluginFiles = 0
    public var bootFiles = 0

    public init(
        node: String, image: String, version: String, layoutChanges: Int = 0, imageEntries: Int = 0,
        pluginFiles: Int = 0, bootFiles: Int = 0
    ) {
        self.node = node
        self.image = image
        self.version = version
        self.layoutChanges = layoutChanges
        self.imageEntries = imageEntries
        self.pluginFiles = pluginFiles
        self.bootFiles = bootFiles
    }

    public var touched: Int { layoutChanges + imageEntries + pluginFiles + bootFiles }

    /// `n1 ready: nothing was rewritten (layout 0, ...); switching root into debian@3f2a… at 30.1 s after
    /// power-on (agent 12.0 s)`.
    public func summary(uptime: Double, agentSeconds: Double) -> String {
        "\(node) ready: " + (touched == 0 ? "nothing was rewritten" : "\(touched) change\(touched == 1 ? "" : "s")")
            + " (layout \(layoutChanges), image entries \(imageEntries), plugin files \(pluginFiles), "
            + "boot files \(bootFiles)); switching root into \(image)@\(version.prefix(12)) "
            + "at \(ProgressText.seconds(uptime)) after power-on (agent \(ProgressText.seconds(agentSeconds)))"
    }
}

/// The boot flow of docs/boot.md as a state machine: events in, actions out, no I/O.
///
/// ```
/// var machine = BootStateMachine(settings: settings)
/// var decision = machine.start()                       // R1: register
/// decision = machine.serverAnswered(response)          // R2: poll, or N1/N3: the disks
/// decision = machine.disksPlanned(plan)                // N7: apply it, or N4: refused, give up
/// decision = machine.stepSucceeded(.disksReady(...))   // N8: sync the image
/// ```
///
/// Every decision of the flow is made here, citing its row of the table: whether the node is
/// stateful or stateless, which paths the node owns, which plugins run, which partition is the
/// ESP, and whether a failure is tried again. An event the current state does not expect is a
/// programming error of the executable and stops it.
public struct BootStateMachine: Sendable {
    /// Paths every node owns and the image sync leaves alone: its identity, and what the running
    /// system writes (logs, systemd's state and update stamps, temporary directories, the network
    /// stacks' state: NetworkManager's secret key and timestamps, DHCP leases), so that a re-sync
    /// neither throws away a node's logs nor rewrites files on every boot.
    public static let nodeOwnedPaths = [
        "etc/machine-id", "etc/.updated", "var/.updated", "var/lib/systemd", "var/log", "var/tmp", "tmp",
        "lost+found", "var/lib/NetworkManager", "var/lib/dhcp", BootStateMachine.identityDirectory,
    ]
    /// Where a stateful node keeps its key, relative to its root (I1).
    public static let identityDirectory = "var/lib/provisioner/identity"
    /// The TPM NV index a stateless node keeps its key in (owner hierarchy, I1).
    public static let tpmKeyIndex: UInt32 = 0x0150_0170
    /// How often a node whose new key waits for approval asks again (I2).
    public static let approvalPollSeconds = 10
    /// Paths the image seeds and the node then owns: the running system's network stack rewrites
    /// `/etc/resolv.conf` (NetworkManager, dhclient), so a re-sync must not put the image's back on
    /// every boot; a node that has none gets the image's.
    public static let nodeSeededPaths = ["etc/resolv.conf"]
    /// Where a layout may mount the ESP for the fallback boot path (N11).
    public static let espMountPoints = ["/boot/efi", "/efi", "/boot"]
    /// The first back-off after an unanswered registration, and the longest (R4).
    public static let firstBackOffSeconds = 2
    public static let longestBackOffSeconds = 15
    /// Bounds of the server's `pollAfterSeconds` (R2), and the wait when it gives none.
    public static let pollBounds = 1...300
    public static let defaultPollSeconds = 30

    enum State: Hashable, Sendable {
        case idle
        case registering
        case unassigned
        case planningDisks
        case applyingDisks
        case enrolling
        case multicasting
        case syncing
        case runningPlugins
        case installingLocalBoot
        case fallingBack
        case planningInstalled
        case activatingInstalled
        case finished
    }

    /// What the node's steps learned so far in this attempt.
    struct Run: Hashable, Sendable {
        var node: NodeConfig
        var mirrors: [String]
        var activation: Activation?
        var report: PivotReport
        /// What the node boots (N11 installs it on the ESP), and why the server could not say.
        var boot: BootFiles
        var bootProblem: String?
        /// Set until the node proved its identity in this session (I1).
        var enrollment: EnrollmentOffer?
        /// The server refused the kept key as revoked: enroll with a new one.
        var newKey = false
        var secrets: [DeliveredSecret] = []
        /// The server may send the image by multicast: ask before syncing (M1).
        var multicast = false
        /// The sync waiting for the multicast steps, and how long the node waited so far (M3).
        var pendingSync: SyncTask?
        var multicastWaited = 0

        init(node: NodeConfig, mirrors: [String], report: PivotReport, boot: BootFiles, bootProblem: String?) {
            self.node = node
            self.mirrors = mirrors
            self.report = report
            self.boot = boot
            self.bootProblem = bootProblem
        }
    }

    public let settings: BootSettings
    /// The machine has a TPM 2.0 (`/dev/tpmrm0`): where a stateless node keeps its key.
    public let hasTPM: Bool
    /// Internal (not private): the identity and multicast events in their own files move it too.
    var state = State.idle
    /// The attempt of the whole flow, from 1 (E1 starts the next).
    public private(set) var attempt = 0
    private var backOffSeconds = BootStateMachine.firstBackOffSeconds
    private var pollSeconds = BootStateMachine.defaultPollSeconds
    /// The node being booted (internal: the identity events in BootIdentity.swift read it too).
    var run: Run?
    /// The node config the fallback found on the ESP.
    private var savedNode: NodeConfig?

    public init(settings: BootSettings, hasTPM: Bool = false) {
        self.settings = settings
        self.hasTPM = hasTPM
    }

    public var isFinished: Bool { state == .finished }
    /// The node this attempt provisions, once the server assigned it.
    public var node: NodeConfig? { run?.node }
    /// What the disks step mounted under the root (nil before it, and for a bare RAM root).
    public var activation: Activation? { run?.activation }
    /// The node's secrets, as the server delivered them to its own certificate.
    public var secrets: [DeliveredSecret] { run?.secrets ?? [] }

    // MARK: Events

    /// The agent starts (R1).
    public mutating func start() -> BootDecision {
        expect([.idle], "start")
        attempt = 1
        return beginAttempt(.R1, cleanRoot: false)
    }

    /// The server answered the registration or a poll.
    public mutating func serverAnswered(_ response: SessionResponse, mac: String? = nil) -> BootDecision {
        expect([.registering, .unassigned], "the server's answer")
        switch response.status {
        case .unassigned:
            let announce = state == .registering
            pollSeconds = min(max(response.pollAfterSeconds ?? Self.defaultPollSeconds, Self.pollBounds.lowerBound),
                Self.pollBounds.upperBound)
            state = .unassigned
            return BootDecision(.poll(afterSeconds: pollSeconds, announce: announce, mac: mac), [.R2])
        case .assigned:
            guard let node = response.node else {
                return fail(BootFailure(.register, .transient, "the server assigned no node config"), [.R7])
            }
            let mirrors = response.mirrors.isEmpty ? settings.servers + settings.mirrors : response.mirrors
            run = Run(
                node: node, mirrors: mirrors, report: PivotReport(node: node.name, image: "", version: ""),
                boot: response.boot ?? Self.namedBootFiles(node), bootProblem: response.bootProblem)
            run!.enrollment = response.enrollment
            run!.secrets = response.secrets ?? []
            run!.multicast = response.multicast ?? false
            return startNode(node)
        }
    }

    /// Asking whether the machine was assigned failed; the session stays open (R3).
    public mutating func pollFailed() -> BootDecision {
        expect([.unassigned], "a failed poll")
        return BootDecision(.poll(afterSeconds: pollSeconds, announce: false, mac: nil), [.R3])
    }

    /// The server did not answer the registration; `waitedSeconds` since this attempt first asked.
    public mutating func serverUnreachable(waitedSeconds: Double, detail: String) -> BootDecision {
        expect([.registering], "an unreachable server")
        let left = Double(settings.serverWaitSeconds) - waitedSeconds
        if left > 0 {
            let wait = Int(min(Double(backOffSeconds), max(1, left.rounded(.up))))
            backOffSeconds = min(backOffSeconds * 2, Self.longestBackOffSeconds)
            let fallbackIn = settings.fallback ? Int(left.rounded(.up)) : nil
            return BootDecision(.backOff(seconds: wait, fallbackInSeconds: fallbackIn), [.R4])
        }
        let message = "the server did not answer for \(settings.serverWaitSeconds) s: \(detail)"
        guard settings.fallback else { return fail(BootFailure(.register, .unreachable, message), [.R6]) }
        state = .fallingBack
        return BootDecision(.fallBack, [.R5], warnings: [message])
    }

    /// The server answered the registration with 429 (too many machines pending, or this machine
    /// asked too often): it is there, so this does not count towards the fallback; wait what it
    /// says, within 1–300 s, and register again (R8).
    public mutating func serverBusy(retryAfterSeconds: Int?, detail: String) -> BootDecision {
        expect([.registering], "a busy server")
        let wait = min(max(retryAfterSeconds ?? Self.defaultPollSeconds, 1), 300)
        return BootDecision(.backOff(seconds: wait, fallbackInSeconds: nil), [.R8], warnings: [detail])
    }

    /// The disks step planned the node's layout (nothing was written yet).
    public mutating func disksPlanned(_ plan: LayoutPlan) -> BootDecision {
        expect([.planningDisks], "a disk plan")
        let node = run!.node
        if !plan.refusals.isEmpty {
            return fail(
                BootFailure(
                    .disks, .refused,
                    "the layout is refused; nothing was written:\n  " + plan.refusals.joined(separator: "\n  ")),
                [.N4])
        }
        let mountsRoot = plan.activation.mounts.contains { $0.mountPoint == "/" }
        if node.mode == .stateful && !mountsRoot {
            return fail(
                BootFailure(.disks, .configuration, "the layout mounts nothing on /; a stateful node needs its root there"),
                [.N5])
        }
        if node.mode == .stateless && mountsRoot {
            return fail(
                BootFailure(.disks, .configuration, "a stateless node's root is a RAM disk; its layout must not mount /"),
                [.N6])
        }
        state = .applyingDisks
        return BootDecision(.applyDisks(plan), [.N7])
    }

    /// A step finished.
    public mutating func stepSucceeded(_ outcome: StepOutcome) -> BootDecision {
        switch outcome {
        case .disksReady(let changes, let activation):
            expect([.planningDisks, .applyingDisks], "ready disks")
            run!.activation = activation
            run!.report.layoutChanges = changes
            if let offer = run!.enrollment {
                state = .enrolling
                return BootDecision(.enroll(EnrollTask(node: offer.node, challenge: offer.challenge, keyStore: keyStore)), [.I1])
            }
            return startSync()
        case .imageSynced(let image, let version, let changed):
            expect([.syncing], "a finished sync")
            run!.report.image = image
            run!.report.version = version
            run!.report.imageEntries = changed
            state = .runningPlugins
            return BootDecision(.runPlugins(Self.plugins(node: run!.node, activation: run!.activation)), [.N10])
        case .pluginsRan(let changed):
            expect([.runningPlugins], "finished plugins")
            run!.report.pluginFiles = changed.count
            return startLocalBoot()
        case .localBootInstalled(let changed):
            expect([.installingLocalBoot], "an installed local boot path")
            run!.report.bootFiles = changed.count
            state = .finished
            return BootDecision(.pivot(run!.report), [.N14])
        case .installedActivated(let applied):
            expect([.activatingInstalled], "the installed system mounted")
            let node = savedNode!.name
            guard let applied, !applied.isEmpty else {
                return fail(
                    BootFailure(.fallback, .notInstalled, "the installed image of node \(node) is incomplete (its last sync did not finish)"),
                    [.U7])
            }
            state = .finished
            return BootDecision(.pivotInstalled(node: node, image: applied), [.U6])
        }
    }

    /// A step failed (E1–E3 decide whether the flow runs again).
    public mutating func stepFailed(_ failure: BootFailure) -> BootDecision {
        expect(
            [.registering, .unassigned, .planningDisks, .applyingDisks, .enrolling, .syncing, .runningPlugins,
             .installingLocalBoot,
             .fallingBack, .planningInstalled, .activatingInstalled],
            "a failure")
        return fail(failure, [])
    }

    /// The fallback looked for the config the last provisioning boot saved on an ESP; nil when no
    /// ESP holds one.
    public mutating func savedNodeRead(_ node: NodeConfig?) -> BootDecision {
        expect([.fallingBack], "a saved node config")
        guard let node else {
            return fail(
                BootFailure(
                    .fallback, .notInstalled, "no ESP holds \(LocalBoot.nodeConfig): this machine was never installed"),
                [.U2])
        }
        savedNode = node
        guard node.mode == .stateful, let text = node.layout else {
            return fail(BootFailure(.fallback, .notInstalled, "node \(node.name) is not installed on disk"), [.U2])
        }
        do {
            let layout = try DiskLayout(parsing: text, source: "the layout saved for node \(node.name)")
            state = .planningInstalled
            return BootDecision(.planInstalled(layout), [.U1])
        } catch {
            return fail(BootFailure(.fallback, .configuration, "the saved layout: \(error)"), [.U3])
        }
    }

    /// The fallback planned the saved layout on the disks as they are.
    public mutating func installedPlanned(_ plan: LayoutPlan) -> BootDecision {
        expect([.planningInstalled], "the installed layout's plan")
        let node = savedNode!.name
        guard plan.isConverged else {
            let changes = plan.refusals.isEmpty ? "\(plan.actions.count) change(s) needed" : "the plan is refused"
            return fail(
                BootFailure(
                    .fallback, .notInstalled,
                    "the disks no longer match the layout node \(node) was installed with (\(changes)); "
                        + "not booting them without the server"),
                [.U5])
        }
        state = .activatingInstalled
        return BootDecision(.activateInstalled(plan.activation), [.U4])
    }

    // MARK: Decisions

    mutating func beginAttempt(_ rule: BootRule, cleanRoot: Bool) -> BootDecision {
        state = .registering
        backOffSeconds = Self.firstBackOffSeconds
        run = nil
        savedNode = nil
        return BootDecision(.register(attempt: attempt, cleanRoot: cleanRoot), [rule])
    }

    /// N1–N3: what the node's disks are.
    mutating func startNode(_ node: NodeConfig) -> BootDecision {
        var layout: DiskLayout?
        if let text = node.layout {
            do { layout = try DiskLayout(parsing: text, source: "node \(node.name) layout") } catch {
                return fail(BootFailure(.disks, .configuration, "the node's layout: \(error)"), [.N2])
            }
        }
        state = .planningDisks
        switch node.mode {
        case .stateful:
            guard let layout else {
                return fail(
                    BootFailure(.disks, .configuration, "node \(node.name) is stateful but has no layout (provisionerctl nodes set)"),
                    [.N2])
            }
            return BootDecision(.runDisks(DiskTask(ramRootSize: nil, layout: layout, loadedEarly: settings.modules)), [.N1])
        case .stateless:
            return BootDecision(.runDisks(DiskTask(ramRootSize: settings.tmpfsSize, layout: layout, loadedEarly: settings.modules)), [.N3])
        }
    }

    /// N8–N9: the image sync, and what it leaves to the node.
    mutating func startSync(rules: [BootRule] = []) -> BootDecision {
        let run = self.run!
        guard let ref = run.node.image else {
            return fail(BootFailure(.image, .configuration, "node \(run.node.name) has no image"), [.N9])
        }
        var warnings: [String] = []
        if ref.branch != nil && ref.version == nil {
            warnings.append("image branches are not served by this server; following the latest version")
        }
        let mountPoints = (run.activation?.mounts ?? []).map { String($0.mountPoint.drop(while: { $0 == "/" })) }
            .filter { !$0.isEmpty }
        // Each filesystem's own lost+found (mke2fs makes one; fsck needs it); the node's secrets.
        let preserved =
            Self.nodeOwnedPaths + settings.preserve + mountPoints.map { $0 + "/lost+found" }
            + run.secrets.map { String($0.path.drop(while: { $0 == "/" })) }
        // The node's own mirrors (its command line) first, so a rack's cache carries the objects and
        // the server only what the caches do not have; the server's list if they all fail.
        let own = settings.mirrors
        var task = SyncTask(
            image: ref.name, version: ref.version ?? "latest", verify: settings.verify ?? run.node.syncVerify,
            mirrors: own + run.mirrors.filter { !own.contains($0) }, preserved: preserved, mountPoints: mountPoints,
            plugins: Self.plugins(node: run.node, activation: run.activation))
        task.preferredMirrors = own.count
        if run.multicast {
            state = .multicasting
            self.run!.pendingSync = task
            return BootDecision(
                .askMulticast(MulticastQuery(image: task.image, version: task.version)), rules + [.N8, .M1],
                warnings: warnings)
        }
        state = .syncing
        return BootDecision(.runSync(task), rules + [.N8], warnings: warnings)
    }

    /// N10: the node's plugins, plus `fstab` for a layout that mounts anything.
    /// What a node boots when the server's answer does not say (a server older than `BootFiles`):
    /// the files the node names, or the server's default.
    public static func namedBootFiles(_ node: NodeConfig) -> BootFiles {
        BootFiles(
            kernel: .kernel(node.kernel ?? "default"), initrds: [.initramfs(node.initramfs ?? "default")],
            source: node.kernel == nil && node.initramfs == nil ? .serverDefault : .files,
            reason: "the server did not say; the node's named files")
    }

    static func plugins(node: NodeConfig, activation: Activation?) -> [PluginConfig] {
        var configs = node.plugins
        if !(activation?.mounts ?? []).isEmpty && !configs.contains(where: { $0.name == "fstab" }) {
            configs.append(PluginConfig(name: "fstab"))
        }
        return configs
    }

    /// N11–N13: the fallback boot path, when the node is stateful and its layout has an ESP.
    mutating func startLocalBoot() -> BootDecision {
        let run = self.run!
        guard run.node.mode == .stateful else {
            state = .finished
            return BootDecision(.pivot(run.report), [.N13])
        }
        guard let activation = run.activation,
            let esp = activation.mounts.first(where: { $0.type == .vfat && Self.espMountPoints.contains($0.mountPoint) })
        else {
            state = .finished
            return BootDecision(
                .pivot(run.report), [.N12],
                warnings: ["the layout has no EFI system partition (vfat on /boot/efi): no local boot path"])
        }
        let partitions = activation.arrays.first(where: { $0.device == esp.device })?.members ?? [esp.device]
        state = .installingLocalBoot
        return BootDecision(
            .installLocalBoot(
                LocalBootTask(esp: esp, espPartitions: partitions, boot: run.boot, bootProblem: run.bootProblem)),
            [.N11])
    }

    /// E1–E3: try the whole flow again, or stop.
    mutating func fail(_ failure: BootFailure, _ rules: [BootRule]) -> BootDecision {
        guard failure.kind.mayPass else {
            state = .finished
            return BootDecision(.giveUp(failure, attempts: attempt), rules + [.E3])
        }
        guard attempt < settings.attempts else {
            state = .finished
            return BootDecision(.giveUp(failure, attempts: attempt), rules + [.E2])
        }
        attempt += 1
        let decision = beginAttempt(.E1, cleanRoot: true)
        return BootDecision(
            .retry(failure, afterSeconds: settings.retryDelaySeconds, attempt: attempt), rules + decision.rules)
    }

    func expect(_ states: Set<State>, _ event: String) {
        precondition(states.contains(state), "boot state machine: \(event) is not expected in state \(state)")
    }
}
