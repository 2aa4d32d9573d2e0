import ArgumentParser
import ProvisionerAPI
import ProvisionerBoot
import ProvisionerClient
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

extension Agent {
    struct Boot: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Provision this node and mount its root for the initrd to switch into (docs/boot.md).",
            discussion: """
                Runs in the initramfs (provisioner-boot.service): register with the server by MAC, wait \
                while unassigned, prepare the disks (stateful) or a RAM root (stateless), sync the image, \
                run the plugins, install the fallback boot path, report, and exit 0 with the root mounted \
                on /sysroot. Settings come from the kernel command line (provisioner.server=, ...). \
                When the server stays unreachable, a stateful node boots its installed system as it is.
                """
        )

        @Option(help: "Read the kernel command line from this file instead of /proc/cmdline.")
        var cmdline = "/proc/cmdline"

        @Option(help: "CA certificate.") var ca = ImageCredentials().ca
        @Option(help: "Client certificate.") var cert = ImageCredentials().certificate
        @Option(help: "Client key.") var key = ImageCredentials().key

        func run() throws {
            let console = Console()
            let settings = try console.bootSettings(from: cmdline)
            for option in settings.unknownOptions { console.say("warning: unknown option \(option) ignored") }
            if settings.trace {
                Command.trace { command, status, seconds in
                    console.say("trace: \(command) exited \(status) in \(Int((seconds * 1000).rounded())) ms")
                }
            }
            guard !settings.servers.isEmpty else {
                console.say("ERROR no provisioner.server= on the kernel command line; nothing to provision from")
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            let runner = BootRunner(
                settings: settings, credentials: ImageCredentials(ca: ca, certificate: cert, key: key),
                console: console)
            guard runner.run() else { throw ExitCode(ExitStatus.failure.rawValue) }
        }
    }
}

/// Carries out what `BootStateMachine` decides (docs/boot.md, "The boot decision table"): each
/// action is done here, and how it went goes back to the machine as an event. Nothing here
/// decides what comes next.
final class BootRunner {
    let settings: BootSettings
    /// The bootstrap certificate until the node enrolls, then its own (in /run/provisioner/identity).
    var credentials: ImageCredentials
    let console: Console
    var machine: BootStateMachine
    private(set) var session: BootSession?
    let started = Console.uptime()
    /// This attempt's: the disks as read at its start, the MACs registered, the registration.
    var inventory: Inventory?
    var request: SessionOpenRequest?
    var registerStarted = 0.0
    var root: String { settings.root }
    /// The copy of the agent the booted system keeps, made while the boot goes on.
    let agentCopy = AgentCopy.start()
    /// The layout's kernel modules, loading in the background from the disk step on.
    var modulePreload: ModulePreload?
    /// The layout's filesystems as the plugins see them, read once, in the background, as soon as
    /// the disks are brought up (the sync and the plugins both need them).
    var mountedFilesystems: Background<PluginFiles.Mounted>?

    init(settings: BootSettings, credentials: ImageCredentials, console: Console) {
        self.settings = settings
        self.credentials = credentials
        self.console = console
        machine = BootStateMachine(settings: settings, hasTPM: settings.useTPM && TPMStore.isPresent)
    }

    /// Runs the flow to its end: true when the root is ready for the switch.
    func run() -> Bool {
        var decision = machine.start()
        while true {
            // What the last step said goes to the server in one request, before the next step.
            session?.flush()
            for warning in decision.warnings { warn(warning, phase: decision.action.phase) }
            for note in decision.notes { session?.event(decision.action.phase.rawValue, note) }
            switch decision.action {
            case .register(let attempt, let cleanRoot):
                decision = register(attempt: attempt, cleanRoot: cleanRoot)
            case .backOff(let seconds, _):
                sleep(UInt32(seconds))
                decision = open()
            case .poll(let seconds, let announce, let mac):
                if announce {
                    session?.event(
                        "register",
                        "this machine is not assigned to a node; waiting (provisionerctl nodes assign \(mac ?? "MAC") NODE); "
                            + "asking again every \(seconds) s")
                }
                sleep(UInt32(seconds))
                decision = poll()
            case .runDisks(let task): decision = runDisks(task)
            case .applyDisks(let plan): decision = applyDisks(plan)
            case .enroll(let task): decision = enroll(task)
            case .awaitApproval(let seconds, let message): decision = awaitApproval(seconds: seconds, message: message)
            case .askMulticast(let query): decision = askMulticast(query)
            case .waitForMulticast(let seconds, let reason):
                session?.event("image", "multicast: \(reason); asking again in \(seconds) s")
                sleep(UInt32(seconds))
                decision = machine.multicastWaitEnded()
            case .receiveMulticast(let task): decision = receiveMulticast(task)
            case .runSync(let task): decision = runSync(task)
            case .runPlugins(let configs): decision = runPlugins(configs)
            case .installLocalBoot(let task): decision = installLocalBoot(task)
            case .fallBack: decision = fallBack()
            case .planInstalled(let layout): decision = planInstalled(layout)
            case .activateInstalled(let activation): decision = activateInstalled(activation)
            case .retry(let failure, let seconds, let attempt):
                report(failure)
                console.say(
                    "trying again in \(seconds) s (attempt \(attempt) of \(settings.attempts); rule \(decision.rules.map(\.rawValue).joined(separator: ", ")))"
                )
                sleep(UInt32(seconds))
                decision = register(attempt: attempt, cleanRoot: true)
            case .giveUp(let failure, let attempts):
                report(failure)
                session?.finish(succeeded: false, message: failure.description)
                console.say(
                    "giving up after \(attempts) attempt\(attempts == 1 ? "" : "s") (rule "
                        + "\(decision.rules.map(\.rawValue).joined(separator: ", "))); the initrd's emergency policy follows"
                )
                return false
            case .pivot(let report):
                console.say(agentCopy.finish())
                let now = Console.uptime()
                let summary = report.summary(uptime: now, agentSeconds: now - started)
                session?.event("pivot", summary, seconds: now)
                session?.finish(succeeded: true, message: summary)
                return true
            case .pivotInstalled(let node, let image):
                console.say(agentCopy.finish())
                console.say(
                    "SERVER UNREACHABLE: booting node \(node) from its disks without provisioning (\(image)); "
                        + "it will be provisioned on the next boot that reaches the server; switching root into the "
                        + "installed system at \(ProgressText.seconds(Console.uptime())) after power-on")
                return true
            }
        }
    }

    func warn(_ message: String, phase: BootPhase) {
        if let session {
            session.event(phase.rawValue, message, level: .warning)
        } else {
            console.say("warning: \(message)")
        }
    }

    func report(_ failure: BootFailure) {
        console.say("ERROR \(failure)")
        session?.event(failure.phase.rawValue, failure.message, level: .error, quiet: true)
    }

    /// A step's failure, to the machine.
    func failed(_ phase: BootPhase, _ kind: FailureKind, _ message: String) -> BootDecision {
        machine.stepFailed(BootFailure(phase, kind, message))
    }

    /// `12.3 s` since `start`: each step's duration goes into its last event.
    func took(since start: Double) -> String { ProgressText.seconds(monotonicSeconds() - start) }

    /// Runs `body`; with `provisioner.trace`, says on the console how long `what` took.
    func traced<T>(_ what: String, _ body: () throws -> T) rethrows -> T {
        guard settings.trace else { return try body() }
        let start = monotonicSeconds()
        defer { console.say("trace: \(what) in \(Int(((monotonicSeconds() - start) * 1000).rounded())) ms") }
        return try body()
    }

    // MARK: Registration

    func register(attempt: Int, cleanRoot: Bool) -> BootDecision {
        // A retry starts from a clean root: whatever an earlier attempt mounted comes off.
        if cleanRoot {
            mountedFilesystems = nil
            for mountPoint in MountTable.read().mountPoints(under: root) {
                _ = try? Command.run(["umount", mountPoint])
            }
        }
        // The connection to the server is made while the machine's facts are read.
        session?.close()
        do {
            session = try traced("TLS set up") {
                try BootSession(servers: settings.servers, credentials: credentials, console: console)
            }
            session?.trace = settings.trace
            session?.connect()
        } catch {
            return failed(.register, .configuration, "\(error)")
        }
        inventory = traced("disks read") { readInventory(firstAttempt: attempt == 1) }
        let facts = traced("facts read") { MachineFacts.read(inventory: inventory) }
        var macs = facts.nics.map(\.mac)
        if let boot = settings.bootMAC {
            macs.removeAll { $0 == boot }
            macs.insert(boot, at: 0)
        }
        guard !macs.isEmpty else {
            return failed(.register, .transient, "this machine has no network interface with a MAC")
        }
        console.say("registering with \(settings.servers.joined(separator: ", ")) as \(macs.joined(separator: ", "))")
        request = SessionOpenRequest(macs: macs, facts: facts, agentVersion: agentVersion)
        registerStarted = Console.uptime()
        return open()
    }

    /// The machine's disks (`DiskInventoryReader.forBoot`: on the first attempt the reading made
    /// while the network came up, when nothing about the disks changed since).
    func readInventory(firstAttempt: Bool) -> Inventory? {
        let (inventory, note, reused) = DiskInventoryReader().forBoot(firstAttempt: firstAttempt)
        if let note { session?.event("disks", note, quiet: reused && !settings.trace) }
        return inventory
    }

    func open() -> BootDecision {
        guard let session, let request else { preconditionFailure("open() before register()") }
        do {
            let response = try session.open(request)
            session.event(
                "register",
                "session \(response.sessionID) opened" + (settings.localBoot ? " (booted from the local disk)" : ""))
            return answered(response)
        } catch  where isUnreachable(error) {
            let decision = machine.serverUnreachable(
                waitedSeconds: Console.uptime() - registerStarted, detail: "\(error)")
            if case .backOff(let seconds, let fallbackIn) = decision.action {
                console.say(
                    "the server does not answer (\(error)); trying again in \(seconds) s"
                        + (fallbackIn.map { ", booting from disk in \($0) s if it stays away" } ?? ""))
            }
            return decision
        } catch let error as ClientError where error.httpStatus == 429 {
            guard case .status(_, let body, _) = error else { return failed(.register, .transient, "\(error)") }
            let decision = machine.serverBusy(retryAfterSeconds: body?.error.retryAfter, detail: "\(error)")
            if case .backOff(let seconds, _) = decision.action {
                console.say("the server is busy (\(error)); registering again in \(seconds) s")
            }
            return decision
        } catch {
            return failed(.register, .transient, "\(error)")
        }
    }

    func poll() -> BootDecision {
        guard let session else { preconditionFailure("poll() before register()") }
        do {
            return answered(try session.poll())
        } catch {
            console.say("polling the session failed (\(error)); trying again")
            return machine.pollFailed()
        }
    }

    func answered(_ response: SessionResponse) -> BootDecision {
        if response.status == .assigned, let node = response.node {
            session?.event("register", "this machine is node \(node.name) (\(node.mode.rawValue))")
        }
        return machine.serverAnswered(response, mac: request?.macs.first)
    }
}

let agentVersion = "0.5.0"
