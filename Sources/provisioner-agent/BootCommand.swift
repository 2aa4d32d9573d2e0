import ArgumentParser
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
            let settings: BootSettings
            do {
                settings = try BootSettings.parse(try readTextFile(cmdline, what: "kernel command line"))
            } catch let error as ConfigError {
                console.say("ERROR kernel command line: \(error)")
                throw ExitCode(2)
            }
            for option in settings.unknownOptions { console.say("warning: unknown option \(option) ignored") }
            guard !settings.servers.isEmpty else {
                console.say("ERROR no provisioner.server= on the kernel command line; nothing to provision from")
                throw ExitCode(2)
            }
            let flow = BootFlow(
                settings: settings, credentials: ImageCredentials(ca: ca, certificate: cert, key: key),
                console: console)
            var attempt = 1
            while true {
                do {
                    try flow.run(attempt: attempt)
                    return
                } catch let failure as BootFailure {
                    console.say("ERROR \(failure)")
                    flow.session?.event(failure.phase, failure.message, level: .error, quiet: true)
                    guard failure.retryable, attempt < settings.attempts else {
                        flow.session?.finish(succeeded: false, message: failure.description)
                        console.say(
                            "giving up after \(attempt) attempt\(attempt == 1 ? "" : "s"); the initrd's emergency policy follows")
                        throw ExitCode(1)
                    }
                    console.say(
                        "trying again in \(settings.retryDelaySeconds) s (attempt \(attempt + 1) of \(settings.attempts))")
                    sleep(UInt32(settings.retryDelaySeconds))
                    attempt += 1
                }
            }
        }
    }
}

/// The boot flow (docs/boot.md): each step reports an event; a failure names its phase.
final class BootFlow {
    let settings: BootSettings
    let credentials: ImageCredentials
    let console: Console
    private(set) var session: BootSession?
    let started = Console.uptime()

    init(settings: BootSettings, credentials: ImageCredentials, console: Console) {
        self.settings = settings
        self.credentials = credentials
        self.console = console
    }

    func run(attempt: Int) throws {
        let root = settings.root
        // A retry starts from a clean /sysroot: whatever an earlier attempt mounted comes off.
        if attempt > 1 { unmountAll(under: root) }
        let inventory = try? DiskInventoryReader().read()
        let facts = MachineFacts.read(inventory: inventory)
        var macs = facts.nics.map(\.mac)
        if let boot = settings.bootMAC {
            macs.removeAll { $0 == boot }
            macs.insert(boot, at: 0)
        }
        guard !macs.isEmpty else {
            throw BootFailure(phase: "register", message: "this machine has no network interface with a MAC", retryable: true)
        }

        // 1. Register; an unreachable server leads to the installed system (bounded wait).
        console.say("registering with \(settings.servers.joined(separator: ", ")) as \(macs.joined(separator: ", "))")
        let session = try BootSession(servers: settings.servers, credentials: credentials, console: console)
        self.session = session
        var response: SessionResponse
        let deadline = Console.uptime() + Double(settings.serverWaitSeconds)
        var delay = 2.0
        while true {
            do {
                response = try session.open(SessionOpenRequest(macs: macs, facts: facts, agentVersion: agentVersion))
                break
            } catch where isUnreachable(error) {
                let left = deadline - Console.uptime()
                if left <= 0 {
                    if settings.fallback {
                        console.say("the server did not answer for \(settings.serverWaitSeconds) s: \(error)")
                        try LocalFallback(settings: settings, console: console).boot()
                        return
                    }
                    throw BootFailure(
                        phase: "register", message: "the server did not answer for \(settings.serverWaitSeconds) s: \(error)",
                        retryable: true)
                }
                console.say(
                    "the server does not answer (\(error)); trying again in \(Int(delay)) s"
                        + (settings.fallback ? ", booting from disk in \(Int(left)) s if it stays away" : ""))
                sleep(UInt32(min(delay, max(1, left))))
                delay = min(delay * 2, 15)
            } catch {
                throw BootFailure(phase: "register", message: "\(error)", retryable: true)
            }
        }
        session.event("register", "session \(response.sessionID) opened" + (settings.localBoot ? " (booted from the local disk)" : ""))

        // 2. Wait while nobody has said what this machine is.
        var announced = false
        while response.status == .unassigned {
            let wait = max(1, min(response.pollAfterSeconds ?? 30, 300))
            if !announced {
                session.event(
                    "register",
                    "this machine is not assigned to a node; waiting (provisionerctl nodes assign \(macs[0]) NODE); "
                        + "asking again every \(wait) s")
                announced = true
            }
            sleep(UInt32(wait))
            do { response = try session.poll() } catch {
                console.say("polling the session failed (\(error)); trying again")
            }
        }
        guard let node = response.node else {
            throw BootFailure(phase: "register", message: "the server assigned no node config", retryable: true)
        }
        session.event("register", "this machine is node \(node.name) (\(node.mode.rawValue))")
        let mirrors = response.mirrors.isEmpty ? settings.servers + settings.mirrors : response.mirrors

        // 3. Storage: the layout on the disks, or a RAM root.
        let storage = try StorageStep(node: node, settings: settings, session: session, inventory: inventory).run()

        // 4. The image.
        let sync = try ImageStep(
            node: node, settings: settings, session: session, mirrors: mirrors, credentials: credentials,
            storage: storage
        ).run()

        // 5. Plugins.
        let pluginsChanged = try PluginStep(node: node, root: root, storage: storage, session: session).run()

        // 6. Fallback boot path on the ESP (stateful).
        var bootloaderChanged: [String] = []
        if node.mode == .stateful {
            bootloaderChanged = try LocalBootInstaller(
                node: node, settings: settings, session: session, storage: storage
            ).install()
        }

        // 7. Report, then the initrd switches root into the image's systemd.
        let touched = storage.changes + sync.changedEntries + pluginsChanged.count + bootloaderChanged.count
        let seconds = Console.uptime()
        let summary =
            "\(node.name) ready: " + (touched == 0 ? "nothing was rewritten" : "\(touched) change\(touched == 1 ? "" : "s")")
            + " (layout \(storage.changes), image entries \(sync.changedEntries), plugin files \(pluginsChanged.count), "
            + "boot files \(bootloaderChanged.count)); switching root into \(sync.image)@\(sync.version.prefix(12)) "
            + "at \(ProgressText.seconds(seconds)) after power-on (agent \(ProgressText.seconds(seconds - started)))"
        session.event("pivot", summary)
        session.finish(succeeded: true, message: summary)
    }

    /// Unmounts everything at or under `root`, deepest first (a retry's clean start).
    func unmountAll(under root: String) {
        let mounts = currentMountPoints().filter { $0 == root || $0.hasPrefix(root + "/") }.sorted { $0.count > $1.count }
        for m in mounts { _ = try? Command.run(["umount", m]) }
    }
}

let agentVersion = "0.5.0"
