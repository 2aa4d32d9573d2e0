import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import Testing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Every row of docs/boot.md's boot decision table, matched by its id; no device, network or VM.
@Suite struct BootStateMachineTests {
    static let layoutYAML = """
        mirror:
          - { type: nvme, size: 4GB }
          - { type: nvme, size: 4GB }
        volumes:
          - { mount: /, size: 1536MiB }
          - { mount: /var, size: 512MiB, filesystem: xfs }
        wipe: if-different
        """

    static func settings(attempts: Int = 3, serverWait: Int = 20, fallback: Bool = true) -> BootSettings {
        var s = BootSettings()
        s.servers = ["https://10.0.2.2:8443"]
        s.mirrors = ["https://10.0.2.3:8443"]
        s.attempts = attempts
        s.serverWaitSeconds = serverWait
        s.retryDelaySeconds = 3
        s.fallback = fallback
        s.tmpfsSize = "2g"
        return s
    }

    static func node(
        mode: NodeMode = .stateful, layout: String? = layoutYAML, image: ImageRef? = ImageRef(name: "debian"),
        plugins: [PluginConfig] = [PluginConfig(name: "hostname")]
    ) -> NodeConfig {
        NodeConfig(name: "n1", image: image, layout: layout, mode: mode, plugins: plugins)
    }

    static func assigned(_ node: NodeConfig, mirrors: [String] = []) -> SessionResponse {
        SessionResponse(sessionID: "s1", status: .assigned, node: node, mirrors: mirrors)
    }

    static let esp = Activation.Mount(device: "/dev/md/esp", mountPoint: "/boot/efi", type: .vfat)
    static let root = Activation.Mount(device: "/dev/system/root", mountPoint: "/", type: .ext4)
    static let variable = Activation.Mount(device: "/dev/system/var", mountPoint: "/var", type: .xfs)
    static let activation = Activation(
        arrays: [.init(name: "esp", device: "/dev/md/esp", members: ["/dev/nvme0n1p1", "/dev/nvme1n1p1"], isAssembled: true)],
        volumeGroups: [.init(name: "system", devices: ["/dev/md/system"])],
        mounts: [root, esp, variable])

    /// A machine that has registered and been assigned `node`; returns the disks decision.
    static func assignedMachine(_ node: NodeConfig = node(), settings: BootSettings = settings())
        -> (BootStateMachine, BootDecision)
    {
        var machine = BootStateMachine(settings: settings)
        _ = machine.start()
        let decision = machine.serverAnswered(assigned(node))
        return (machine, decision)
    }

    /// A stateful machine whose disks are up: the sync decision.
    static func syncingMachine(_ node: NodeConfig = node(), settings: BootSettings = settings())
        -> (BootStateMachine, BootDecision)
    {
        var (machine, _) = assignedMachine(node, settings: settings)
        _ = machine.disksPlanned(LayoutPlan(activation: activation))
        let decision = machine.stepSucceeded(.disksReady(changes: 2, activation: activation))
        return (machine, decision)
    }

    // MARK: Registration

    @Test func R1_startRegisters() {
        var machine = BootStateMachine(settings: Self.settings())
        let d = machine.start()
        #expect(d.rules == [.R1])
        #expect(d.action == .register(attempt: 1, cleanRoot: false))
        #expect(machine.attempt == 1)
    }

    @Test(arguments: [
        (Optional<Int>.none, 30), (Optional(3), 3), (Optional(0), 1), (Optional(-5), 1), (Optional(9999), 300),
    ])
    func R2_unassignedPollsWithinBounds(pollAfter: Int?, wait: Int) {
        var machine = BootStateMachine(settings: Self.settings())
        _ = machine.start()
        let d = machine.serverAnswered(
            SessionResponse(sessionID: "s1", status: .unassigned, pollAfterSeconds: pollAfter), mac: "52:54:00:00:00:02")
        #expect(d.rules == [.R2])
        #expect(d.action == .poll(afterSeconds: wait, announce: true, mac: "52:54:00:00:00:02"))
        // Still unassigned at the next poll: no second announcement.
        let again = machine.serverAnswered(SessionResponse(sessionID: "s1", status: .unassigned, pollAfterSeconds: pollAfter))
        #expect(again.action == .poll(afterSeconds: wait, announce: false, mac: nil))
    }

    @Test func R3_failedPollPollsAgain() {
        var machine = BootStateMachine(settings: Self.settings())
        _ = machine.start()
        _ = machine.serverAnswered(SessionResponse(sessionID: "s1", status: .unassigned, pollAfterSeconds: 7))
        let d = machine.pollFailed()
        #expect(d.rules == [.R3])
        #expect(d.action == .poll(afterSeconds: 7, announce: false, mac: nil))
        // Then assigned: the node's steps follow.
        #expect(machine.serverAnswered(Self.assigned(Self.node())).rules == [.N1])
    }

    @Test func R4_backOffDoublesToFifteenAndNeverPassesTheDeadline() {
        var machine = BootStateMachine(settings: Self.settings(serverWait: 40))
        _ = machine.start()
        var waits: [Int] = []
        var fallbacks: [Int?] = []
        for waited in [0.0, 2, 6, 14, 29, 38.5] {
            let d = machine.serverUnreachable(waitedSeconds: waited, detail: "connection refused")
            #expect(d.rules == [.R4])
            guard case .backOff(let seconds, let fallbackIn) = d.action else {
                Issue.record("expected a back-off, got \(d)")
                return
            }
            waits.append(seconds)
            fallbacks.append(fallbackIn)
        }
        #expect(waits == [2, 4, 8, 15, 11, 2])
        #expect(fallbacks == [40, 38, 34, 26, 11, 2])
    }

    @Test func R4_withoutFallbackSaysNoFallback() {
        var machine = BootStateMachine(settings: Self.settings(fallback: false))
        _ = machine.start()
        #expect(machine.serverUnreachable(waitedSeconds: 0, detail: "x").action == .backOff(seconds: 2, fallbackInSeconds: nil))
    }

    @Test func R5_serverAwayForTheWaitFallsBack() {
        var machine = BootStateMachine(settings: Self.settings(serverWait: 20))
        _ = machine.start()
        let d = machine.serverUnreachable(waitedSeconds: 20.2, detail: "connection refused")
        #expect(d.rules == [.R5])
        #expect(d.action == .fallBack)
        #expect(d.warnings == ["the server did not answer for 20 s: connection refused"])
    }

    @Test func R6_serverAwayWithoutFallbackIsAFailureThatMayPass() {
        var machine = BootStateMachine(settings: Self.settings(serverWait: 20, fallback: false))
        _ = machine.start()
        let d = machine.serverUnreachable(waitedSeconds: 21, detail: "no route to host")
        #expect(d.rules == [.R6, .E1])
        #expect(
            d.action
                == .retry(
                    BootFailure(.register, .unreachable, "the server did not answer for 20 s: no route to host"),
                    afterSeconds: 3, attempt: 2))
    }

    @Test func R7_assignedWithoutAConfigIsAFailureThatMayPass() {
        var machine = BootStateMachine(settings: Self.settings())
        _ = machine.start()
        let d = machine.serverAnswered(SessionResponse(sessionID: "s1", status: .assigned))
        #expect(d.rules == [.R7, .E1])
        #expect(
            d.action
                == .retry(BootFailure(.register, .transient, "the server assigned no node config"), afterSeconds: 3, attempt: 2))
    }

    @Test func R8_busyServerIsWaitedForWithoutCountingTowardsTheFallback() {
        var machine = BootStateMachine(settings: Self.settings(serverWait: 20))
        _ = machine.start()
        // (Retry-After, wait): the server's word within 1–300 s, 30 s when it gives none.
        for (retryAfter, wait) in [(12, 12), (0, 1), (900, 300), (nil, 30)] as [(Int?, Int)] {
            let d = machine.serverBusy(retryAfterSeconds: retryAfter, detail: "HTTP 429: too many pending")
            #expect(d.rules == [.R8])
            #expect(d.action == .backOff(seconds: wait, fallbackInSeconds: nil))
            #expect(d.warnings == ["HTTP 429: too many pending"])
        }
        // Still registering: the next answer moves on as usual, and the server's silence now
        // counts from the registration's start as before (R4).
        #expect(machine.serverUnreachable(waitedSeconds: 5, detail: "x").rules == [.R4])
        #expect(machine.serverAnswered(Self.assigned(Self.node())).rules == [.N1])
    }

    // MARK: The node's steps

    @Test func N1_statefulNodePlansItsLayout() throws {
        let (_, d) = Self.assignedMachine()
        #expect(d.rules == [.N1])
        #expect(d.action == .runDisks(DiskTask(ramRootSize: nil, layout: try DiskLayout(parsing: Self.layoutYAML, source: "x"))))
    }

    /// N1: the layout's kernel modules load in the background from the disk step on, except those
    /// the kernel command line names (`provisioner.modules=`), which the initrd loaded already.
    @Test func N1_theDiskStepLoadsTheModulesTheInitrdDidNot() throws {
        guard case .runDisks(let all) = Self.assignedMachine().1.action else {
            Issue.record("expected the disk step")
            return
        }
        #expect(all.kernelModules == ["md_mod", "md-level-1", "dm_mod", "fs-vfat", "nls_cp437", "fs-ext4", "fs-xfs"])
        var settings = Self.settings()
        settings.modules = ["md_mod", "md-level-1", "dm_mod", "fs-xfs"]
        guard case .runDisks(let rest) = Self.assignedMachine(settings: settings).1.action else {
            Issue.record("expected the disk step")
            return
        }
        #expect(rest.kernelModules == ["fs-vfat", "nls_cp437", "fs-ext4"])
        guard case .runDisks(let stateless) = Self.assignedMachine(Self.node(mode: .stateless, layout: nil)).1.action else {
            Issue.record("expected the disk step")
            return
        }
        #expect(stateless.kernelModules.isEmpty)
    }

    @Test(arguments: [Optional<String>.none, Optional("mirror: [ { type: floppy } ]")])
    func N2_statefulNodeWithoutAUsableLayoutGivesUp(layout: String?) {
        let (_, d) = Self.assignedMachine(Self.node(layout: layout))
        #expect(d.rules == [.N2, .E3])
        guard case .giveUp(let failure, let attempts) = d.action else {
            Issue.record("expected to give up, got \(d)")
            return
        }
        #expect(failure.kind == .configuration)
        #expect(failure.phase == .disks)
        #expect(attempts == 1)
    }

    @Test func N3_statelessNodeGetsARAMRoot() throws {
        let (_, d) = Self.assignedMachine(Self.node(mode: .stateless, layout: nil))
        #expect(d.rules == [.N3])
        #expect(d.action == .runDisks(DiskTask(ramRootSize: "2g", layout: nil)))
        let withLayout = "disks:\n  disk0:\n    match: { type: nvme }\n    partitions:\n      - { name: scratch, size: rest, filesystem: { type: xfs, mount: /scratch } }\n"
        let (_, d2) = Self.assignedMachine(Self.node(mode: .stateless, layout: withLayout))
        #expect(d2.rules == [.N3])
        #expect(d2.action == .runDisks(DiskTask(ramRootSize: "2g", layout: try DiskLayout(parsing: withLayout, source: "x"))))
    }

    @Test func N4_refusedPlanGivesUpAtOnce() {
        var (machine, _) = Self.assignedMachine()
        let d = machine.disksPlanned(LayoutPlan(refusals: ["/dev/nvme0n1p2 is mounted on /mnt"], activation: Self.activation))
        #expect(d.rules == [.N4, .E3])
        guard case .giveUp(let failure, _) = d.action else {
            Issue.record("expected to give up, got \(d)")
            return
        }
        #expect(failure.kind == .refused)
    }

    @Test func N5_statefulPlanWithoutARootGivesUp() {
        var (machine, _) = Self.assignedMachine()
        let d = machine.disksPlanned(LayoutPlan(activation: Activation(mounts: [Self.variable])))
        #expect(d.rules == [.N5, .E3])
    }

    @Test func N6_statelessPlanMountingRootGivesUp() {
        let layout = "disks:\n  disk0:\n    match: { type: nvme }\n    partitions:\n      - { name: r, size: rest, filesystem: { type: ext4, mount: / } }\n"
        var (machine, _) = Self.assignedMachine(Self.node(mode: .stateless, layout: layout))
        let d = machine.disksPlanned(LayoutPlan(activation: Activation(mounts: [Self.root])))
        #expect(d.rules == [.N6, .E3])
    }

    @Test func N7_acceptedPlanIsApplied() {
        var (machine, _) = Self.assignedMachine()
        let plan = LayoutPlan(activation: Self.activation)
        let d = machine.disksPlanned(plan)
        #expect(d.rules == [.N7])
        #expect(d.action == .applyDisks(plan))
    }

    @Test func N8_syncLeavesTheNodesPathsAlone() {
        var settings = Self.settings()
        settings.preserve = ["etc/ssh"]
        let (_, d) = Self.syncingMachine(Self.node(image: ImageRef(name: "debian", version: "abc")), settings: settings)
        #expect(d.rules == [.N8])
        guard case .runSync(let task) = d.action else {
            Issue.record("expected a sync, got \(d)")
            return
        }
        #expect(task.image == "debian")
        #expect(task.version == "abc")
        #expect(task.verify == .metadata)
        #expect(task.mirrors == ["https://10.0.2.3:8443", "https://10.0.2.2:8443"])  // its own mirror first
        #expect(task.preferredMirrors == 1)
        #expect(task.mountPoints == ["boot/efi", "var"])
        #expect(
            task.preserved == BootStateMachine.nodeOwnedPaths + ["etc/ssh", "boot/efi/lost+found", "var/lost+found"])
        #expect(task.plugins.map(\.name) == ["hostname", "fstab"])
        #expect(d.warnings.isEmpty)
    }

    @Test func N8_commandLineVerifyWinsAndTheNodesOwnMirrorsComeFirst() {
        var settings = Self.settings()
        settings.verify = .content
        var machine = BootStateMachine(settings: settings)
        _ = machine.start()
        _ = machine.serverAnswered(
            Self.assigned(Self.node(mode: .stateless, layout: nil, image: ImageRef(name: "debian", branch: "main")),
                mirrors: ["https://m1:8443"]))
        let d = machine.stepSucceeded(.disksReady(changes: 0, activation: nil))
        #expect(d.rules == [.N8])
        guard case .runSync(let task) = d.action else {
            Issue.record("expected a sync, got \(d)")
            return
        }
        #expect(task.verify == .content)
        #expect(task.version == "latest")
        #expect(task.mirrors == ["https://10.0.2.3:8443", "https://m1:8443"])
        #expect(task.preferredMirrors == 1)
        #expect(task.mountPoints.isEmpty)
        #expect(task.plugins.map(\.name) == ["hostname"])
        #expect(d.warnings == ["image branches are not served by this server; following the latest version"])
    }

    @Test func N9_nodeWithoutImageGivesUp() {
        let (_, d) = Self.syncingMachine(Self.node(image: nil))
        #expect(d.rules == [.N9, .E3])
    }

    @Test func N10_pluginsRunAfterTheSync() {
        var (machine, _) = Self.syncingMachine(Self.node(plugins: [PluginConfig(name: "fstab"), PluginConfig(name: "network")]))
        let d = machine.stepSucceeded(.imageSynced(image: "debian", version: "abc", changedEntries: 0))
        #expect(d.rules == [.N10])
        #expect(d.action == .runPlugins([PluginConfig(name: "fstab"), PluginConfig(name: "network")]))
    }

    @Test func N11_statefulNodeGetsALocalBootPathOnItsESP() {
        var (machine, _) = Self.syncingMachine()
        _ = machine.stepSucceeded(.imageSynced(image: "debian", version: "abc", changedEntries: 0))
        let d = machine.stepSucceeded(.pluginsRan(changedFiles: []))
        #expect(d.rules == [.N11])
        #expect(
            d.action
                == .installLocalBoot(
                    LocalBootTask(
                        esp: Self.esp, espPartitions: ["/dev/nvme0n1p1", "/dev/nvme1n1p1"],
                        boot: BootStateMachine.namedBootFiles(Self.node()))))
    }

    @Test func N11_anESPOnAPlainPartitionIsItsOwnPartition() {
        var machine = BootStateMachine(settings: Self.settings())
        _ = machine.start()
        _ = machine.serverAnswered(Self.assigned(Self.node()))
        let esp = Activation.Mount(device: "/dev/sda1", mountPoint: "/efi", type: .vfat)
        let activation = Activation(mounts: [Self.root, esp])
        _ = machine.disksPlanned(LayoutPlan(activation: activation))
        _ = machine.stepSucceeded(.disksReady(changes: 0, activation: activation))
        _ = machine.stepSucceeded(.imageSynced(image: "debian", version: "abc", changedEntries: 0))
        let d = machine.stepSucceeded(.pluginsRan(changedFiles: []))
        guard case .installLocalBoot(let task) = d.action else {
            Issue.record("expected the local boot step, got \(d)")
            return
        }
        #expect(task.espPartitions == ["/dev/sda1"])
    }

    @Test func N12_statefulNodeWithoutESPPivotsWithAWarning() {
        var machine = BootStateMachine(settings: Self.settings())
        _ = machine.start()
        _ = machine.serverAnswered(Self.assigned(Self.node()))
        // vfat, but not where firmware boots from: not an ESP.
        let activation = Activation(mounts: [Self.root, .init(device: "/dev/sda1", mountPoint: "/data", type: .vfat)])
        _ = machine.disksPlanned(LayoutPlan(activation: activation))
        _ = machine.stepSucceeded(.disksReady(changes: 0, activation: activation))
        _ = machine.stepSucceeded(.imageSynced(image: "debian", version: "abc", changedEntries: 1))
        let d = machine.stepSucceeded(.pluginsRan(changedFiles: []))
        #expect(d.rules == [.N12])
        #expect(d.warnings.count == 1)
        guard case .pivot(let report) = d.action else {
            Issue.record("expected a pivot, got \(d)")
            return
        }
        #expect(report.touched == 1)
        #expect(machine.isFinished)
    }

    @Test func N13_statelessNodePivotsAfterItsPlugins() {
        var (machine, _) = Self.assignedMachine(Self.node(mode: .stateless, layout: nil))
        _ = machine.stepSucceeded(.disksReady(changes: 0, activation: nil))
        _ = machine.stepSucceeded(.imageSynced(image: "debian", version: "abcdef0123456789", changedEntries: 10620))
        let d = machine.stepSucceeded(.pluginsRan(changedFiles: ["/etc/hostname"]))
        #expect(d.rules == [.N13])
        #expect(
            d.action
                == .pivot(PivotReport(node: "n1", image: "debian", version: "abcdef0123456789", imageEntries: 10620, pluginFiles: 1)))
    }

    @Test func N14_pivotReportsEveryChange() {
        var (machine, _) = Self.syncingMachine()
        _ = machine.stepSucceeded(.imageSynced(image: "debian", version: "3f2a9c0011223344", changedEntries: 0))
        _ = machine.stepSucceeded(.pluginsRan(changedFiles: []))
        let d = machine.stepSucceeded(.localBootInstalled(changedFiles: []))
        #expect(d.rules == [.N14])
        guard case .pivot(let report) = d.action else {
            Issue.record("expected a pivot, got \(d)")
            return
        }
        #expect(report.layoutChanges == 2)
        #expect(
            report.summary(uptime: 29.61, agentSeconds: 3.2)
                == "n1 ready: 2 changes (layout 2, image entries 0, plugin files 0, boot files 0); switching root into "
                + "debian@3f2a9c001122 at 29.6 s after power-on (agent 3.2 s)")
        let quiet = PivotReport(node: "n1", image: "debian", version: "v")
        #expect(quiet.summary(uptime: 1, agentSeconds: 1).hasPrefix("n1 ready: nothing was rewritten (layout 0"))
    }

    // MARK: Failures

    @Test(arguments: [FailureKind.unreachable, .transient, .notInstalled])
    func E1_failuresThatMayPassRunTheFlowAgainFromACleanRoot(kind: FailureKind) {
        var (machine, _) = Self.syncingMachine()
        let failure = BootFailure(.image, kind, "fetching chunk 3f2a: connection reset")
        let d = machine.stepFailed(failure)
        #expect(d.rules == [.E1])
        #expect(d.action == .retry(failure, afterSeconds: 3, attempt: 2))
        #expect(machine.attempt == 2)
        // The next attempt registers again; its back-off starts over.
        #expect(machine.serverUnreachable(waitedSeconds: 0, detail: "x").action == .backOff(seconds: 2, fallbackInSeconds: 20))
    }

    @Test func E2_lastAttemptGivesUp() {
        var (machine, _) = Self.syncingMachine(settings: Self.settings(attempts: 2))
        let failure = BootFailure(.image, .transient, "fetching chunk 3f2a: connection reset")
        #expect(machine.stepFailed(failure).rules == [.E1])
        _ = machine.serverAnswered(Self.assigned(Self.node()))
        let d = machine.stepFailed(BootFailure(.disks, .transient, "mdadm --assemble /dev/md/system: exited 1"))
        #expect(d.rules == [.E2])
        #expect(d.action == .giveUp(BootFailure(.disks, .transient, "mdadm --assemble /dev/md/system: exited 1"), attempts: 2))
        #expect(machine.isFinished)
    }

    @Test(arguments: [FailureKind.configuration, .refused, .unmatched])
    func E3_failuresThatRepeatGiveUpAtOnce(kind: FailureKind) {
        var (machine, _) = Self.assignedMachine()
        let d = machine.stepFailed(BootFailure(.disks, kind, "the layout does not map onto this machine's disks"))
        #expect(d.rules == [.E3])
        #expect(d.action == .giveUp(BootFailure(.disks, kind, "the layout does not map onto this machine's disks"), attempts: 1))
    }

    @Test func everyFailureKindIsRetriedOrNot() {
        #expect(FailureKind.allCases.filter(\.mayPass) == [.unreachable, .transient, .notInstalled])
    }

    @Test func registrationFailuresAreRetriedToo() {
        var machine = BootStateMachine(settings: Self.settings(attempts: 1))
        _ = machine.start()
        let d = machine.stepFailed(BootFailure(.register, .transient, "POST /api/v1/sessions: HTTP 500"))
        #expect(d.rules == [.E2])
    }

    // MARK: The fallback

    static func fallingBack(settings: BootSettings = settings()) -> BootStateMachine {
        var machine = BootStateMachine(settings: settings)
        _ = machine.start()
        _ = machine.serverUnreachable(waitedSeconds: 25, detail: "connection refused")
        return machine
    }

    @Test func U1_savedStatefulNodeIsPlanned() throws {
        var machine = Self.fallingBack()
        let d = machine.savedNodeRead(Self.node())
        #expect(d.rules == [.U1])
        #expect(d.action == .planInstalled(try DiskLayout(parsing: Self.layoutYAML, source: "x")))
    }

    @Test(arguments: [Optional<NodeConfig>.none, Self.node(mode: .stateless, layout: nil), Self.node(layout: nil)])
    func U2_nothingInstalledIsAFailureThatMayPass(node: NodeConfig?) {
        var machine = Self.fallingBack()
        let d = machine.savedNodeRead(node)
        #expect(d.rules == [.U2, .E1])
    }

    @Test func U3_savedLayoutThatDoesNotParseGivesUp() {
        var machine = Self.fallingBack()
        #expect(machine.savedNodeRead(Self.node(layout: "mirror: 3")).rules == [.U3, .E3])
    }

    @Test func U4_convergedDisksAreMounted() {
        var machine = Self.fallingBack()
        _ = machine.savedNodeRead(Self.node())
        let d = machine.installedPlanned(LayoutPlan(activation: Self.activation))
        #expect(d.rules == [.U4])
        #expect(d.action == .activateInstalled(Self.activation))
    }

    @Test func U5_disksThatChangedAreNotBooted() {
        var machine = Self.fallingBack()
        _ = machine.savedNodeRead(Self.node())
        let plan = LayoutPlan(
            actions: [LayoutAction(.wipe(device: "/dev/nvme1n1"), reason: "D5")], activation: Self.activation)
        #expect(machine.installedPlanned(plan).rules == [.U5, .E1])
        var refused = Self.fallingBack()
        _ = refused.savedNodeRead(Self.node())
        #expect(refused.installedPlanned(LayoutPlan(refusals: ["busy"])).rules == [.U5, .E1])
    }

    @Test func U6_completedInstallBootsAsItIs() {
        var machine = Self.fallingBack()
        _ = machine.savedNodeRead(Self.node())
        _ = machine.installedPlanned(LayoutPlan(activation: Self.activation))
        let d = machine.stepSucceeded(.installedActivated(applied: "image debian, version 3f2a"))
        #expect(d.rules == [.U6])
        #expect(d.action == .pivotInstalled(node: "n1", image: "image debian, version 3f2a"))
        #expect(machine.isFinished)
    }

    @Test func U7_unfinishedInstallIsNotBooted() {
        var machine = Self.fallingBack(settings: Self.settings(attempts: 1))
        _ = machine.savedNodeRead(Self.node())
        _ = machine.installedPlanned(LayoutPlan(activation: Self.activation))
        let d = machine.stepSucceeded(.installedActivated(applied: nil))
        #expect(d.rules == [.U7, .E2])
    }

    // MARK: Whole flows

    @Test func aSecondBootWalksEveryStepOnce() {
        var machine = BootStateMachine(settings: Self.settings())
        var rules: [BootRule] = []
        rules += machine.start().rules
        rules += machine.serverUnreachable(waitedSeconds: 1, detail: "refused").rules
        rules += machine.serverAnswered(Self.assigned(Self.node())).rules
        rules += machine.disksPlanned(LayoutPlan(activation: Self.activation)).rules
        rules += machine.stepSucceeded(.disksReady(changes: 0, activation: Self.activation)).rules
        rules += machine.stepSucceeded(.imageSynced(image: "debian", version: "v", changedEntries: 0)).rules
        rules += machine.stepSucceeded(.pluginsRan(changedFiles: [])).rules
        rules += machine.stepSucceeded(.localBootInstalled(changedFiles: [])).rules
        #expect(rules == [.R1, .R4, .N1, .N7, .N8, .N10, .N11, .N14])
        #expect(machine.isFinished)
    }

    @Test func everyRowIsInTheTableOfDocsBoot() throws {
        // The rows the code knows are the rows the document lists, and the other way round.
        let file = "\(#filePath)"
        let path = file.components(separatedBy: "/Tests/")[0] + "/docs/boot.md"
        let data = try #require(FileManager.default.contents(atPath: path))
        let text = String(decoding: data, as: UTF8.self)
        let documented = Set(
            text.split(separator: "\n").compactMap { line -> String? in
                guard line.hasPrefix("| ") else { return nil }
                let id = line.dropFirst(2).prefix(while: { $0 != " " })
                return id.count <= 3 && ["R", "N", "I", "E", "U", "M"].contains(id.first) && id.dropFirst().allSatisfy(\.isNumber)
                    ? String(id) : nil
            })
        #expect(documented == Set(BootRule.allCases.map(\.rawValue)))
    }
}

@Suite struct UEFIBootOrderTests {
    @Test func entryIsNeededOnlyWithoutOurLabel() {
        #expect(LocalBoot.needsUEFIEntry(["0001": "UEFI PXEv4", "0002": "UEFI Shell"]))
        #expect(!LocalBoot.needsUEFIEntry(["0001": "UEFI PXEv4", "0003": LocalBoot.label]))
    }

    @Test func networkBootStaysFirst() {
        // efibootmgr --create put the new entries in front.
        let added = LocalBoot.addedEntries(before: ["0001", "0002"], after: ["0004", "0003", "0001", "0002"])
        #expect(added == ["0004", "0003"])
        #expect(LocalBoot.bootOrder(before: ["0001", "0002"], added: added) == ["0001", "0002", "0004", "0003"])
        #expect(LocalBoot.bootOrder(before: ["0001"], added: ["0001"]) == ["0001"])
    }
}
