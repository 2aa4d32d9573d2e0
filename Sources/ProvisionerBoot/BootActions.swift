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
extension BootAction {
    /// The phase an action's events and warnings belong to (a failure's own phase for a retry).
    public var phase: BootPhase {
        switch self {
        case .register, .backOff, .poll, .fallBack, .enroll, .awaitApproval: .register
        case .runDisks, .applyDisks: .disks
        case .askMulticast, .waitForMulticast, .receiveMulticast, .runSync: .image
        case .runPlugins: .plugins
        case .installLocalBoot: .bootloader
        case .planInstalled, .activateInstalled, .pivotInstalled: .fallback
        case .retry(let failure, _, _), .giveUp(let failure, _): failure.phase
        case .pivot: .bootloader
        }
    }
}

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
