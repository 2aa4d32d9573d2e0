import ProvisionerAPI
import ProvisionerCore

/// Rows N1-N14 of docs/boot.md: the node's disks, its image, its plugins and its local boot path,
/// in that order, once the server has said which node this machine is.
extension BootStateMachine {
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
                BootFailure(
                    .disks, .configuration, "the layout mounts nothing on /; a stateful node needs its root there"),
                [.N5])
        }
        if node.mode == .stateless && mountsRoot {
            return fail(
                BootFailure(
                    .disks, .configuration, "a stateless node's root is a RAM disk; its layout must not mount /"),
                [.N6])
        }
        state = .applyingDisks
        return BootDecision(.applyDisks(plan), [.N7])
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
                    BootFailure(
                        .disks, .configuration,
                        "node \(node.name) is stateful but has no layout (provisionerctl nodes set)"),
                    [.N2])
            }
            return BootDecision(
                .runDisks(DiskTask(ramRootSize: nil, layout: layout, loadedEarly: settings.modules)), [.N1])
        case .stateless:
            return BootDecision(
                .runDisks(DiskTask(ramRootSize: settings.tmpfsSize, layout: layout, loadedEarly: settings.modules)),
                [.N3])
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

    /// N11–N13: the fallback boot path, when the node is stateful and its layout has an ESP.
    mutating func startLocalBoot() -> BootDecision {
        let run = self.run!
        guard run.node.mode == .stateful else {
            state = .finished
            return BootDecision(.pivot(run.report), [.N13])
        }
        guard let activation = run.activation,
            let esp = activation.mounts.first(where: { $0.type == .vfat && Self.espMountPoints.contains($0.mountPoint) }
            )
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
}
