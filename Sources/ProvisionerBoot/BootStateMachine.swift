import ProvisionerAPI
import ProvisionerCore

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
    /// The node config the fallback found on the ESP (internal: BootFallback.swift sets it).
    var savedNode: NodeConfig?

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
            pollSeconds = min(
                max(response.pollAfterSeconds ?? Self.defaultPollSeconds, Self.pollBounds.lowerBound),
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

    /// A step finished.
    public mutating func stepSucceeded(_ outcome: StepOutcome) -> BootDecision {
        switch outcome {
        case .disksReady(let changes, let activation):
            expect([.planningDisks, .applyingDisks], "ready disks")
            run!.activation = activation
            run!.report.layoutChanges = changes
            if let offer = run!.enrollment {
                state = .enrolling
                return BootDecision(
                    .enroll(EnrollTask(node: offer.node, challenge: offer.challenge, keyStore: keyStore)), [.I1])
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
                    BootFailure(
                        .fallback, .notInstalled,
                        "the installed image of node \(node) is incomplete (its last sync did not finish)"),
                    [.U7])
            }
            state = .finished
            return BootDecision(.pivotInstalled(node: node, image: applied), [.U6])
        }
    }

    /// A step failed (E1–E3 decide whether the flow runs again).
    public mutating func stepFailed(_ failure: BootFailure) -> BootDecision {
        expect(
            [
                .registering, .unassigned, .planningDisks, .applyingDisks, .enrolling, .syncing, .runningPlugins,
                .installingLocalBoot,
                .fallingBack, .planningInstalled, .activatingInstalled,
            ],
            "a failure")
        return fail(failure, [])
    }

    // MARK: Decisions

    mutating func beginAttempt(_ rule: BootRule, cleanRoot: Bool) -> BootDecision {
        state = .registering
        backOffSeconds = Self.firstBackOffSeconds
        run = nil
        savedNode = nil
        return BootDecision(.register(attempt: attempt, cleanRoot: cleanRoot), [rule])
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
