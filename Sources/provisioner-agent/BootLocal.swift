import ProvisionerAPI
import ProvisionerBoot
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

/// The GPT type of an EFI system partition.
let espTypeUUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"

/// systemd-boot as the initramfs carries it.
let systemdBootPath = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

/// N11 and the fallback (U rows), carried out as `BootStateMachine` decided them.
extension BootRunner {
    /// N11: the fallback boot path on the ESP (`LocalBoot` lists the files). Every file is compared
    /// first and written only when it differs; the kernel and initramfs are fetched only when the
    /// server's ETag differs from the one recorded next to them.
    func installLocalBoot(_ task: LocalBootTask) -> BootDecision {
        guard let session else { preconditionFailure("installLocalBoot() without a session") }
        let start = monotonicSeconds()
        let dir = root + task.esp.mountPoint
        var changed: [String] = []
        func put(_ relative: String, _ bytes: [UInt8]) throws {
            do {
                if try writeFileIfDifferent(dir + "/" + relative, bytes) { changed.append(relative) }
            } catch {
                throw BootFailure(.bootloader, .transient, "\(error)")
            }
        }
        do {
            guard let loader = FileManager.default.contents(atPath: systemdBootPath) else {
                session.event(
                    "bootloader", "this initramfs has no \(systemdBootPath): no local boot path", level: .warning)
                return machine.stepSucceeded(.localBootInstalled(changedFiles: []))
            }
            try put(LocalBoot.removableLoader, Array(loader))
            try put(LocalBoot.loader, Array(loader))

            // The kernel and initrds the node boots, as the server named them (its image's kernel
            // with the provisioning and modules initramfs, or the server's kernel).
            if let problem = task.bootProblem {
                session.event(
                    "bootloader", "the kernel on the ESP is left as it is: \(problem)", level: .warning)
            } else {
                let boot = task.boot
                let recorded =
                    FileManager.default.contents(atPath: dir + "/" + LocalBoot.etags)
                    .map { LocalBoot.parseETags(String(decoding: $0, as: UTF8.self)) } ?? [:]
                let files = LocalBoot.files(boot)
                var current: [String: String] = [:]
                for file in files {
                    let etag: String?
                    do { etag = try session.etag(file.remote) } catch {
                        throw BootFailure(.bootloader, .transient, "asking for \(file.remote): \(error)")
                    }
                    guard let etag else {
                        session.event(
                            "bootloader", "the server has no \(file.remote): no local boot path", level: .warning)
                        return machine.stepSucceeded(.localBootInstalled(changedFiles: changed))
                    }
                    current[file.name] = etag
                }
                let present = Set(
                    (files.map(\.local) + (0..<8).map(LocalBoot.initrd)).filter {
                        FileManager.default.fileExists(atPath: dir + "/" + $0)
                    })
                let refresh = LocalBoot.refresh(files, current: current, recorded: recorded, present: present)
                for file in refresh.fetch {
                    try? FileManager.default.createDirectory(
                        atPath: dir + "/provisioner", withIntermediateDirectories: true)
                    if let got = try session.download(file.remote, to: dir + "/" + file.local) {
                        current[file.name] = got
                    }
                    changed.append(file.local)
                }
                for stale in refresh.remove {
                    try? FileManager.default.removeItem(atPath: dir + "/" + stale)
                    changed.append("-" + stale)
                }
                let etags = files.map { (name: $0.name, etag: current[$0.name]!) }
                try put(LocalBoot.etags, Array(LocalBoot.etagsText(etags).utf8))

                let cmdline = (try? readTextFile("/proc/cmdline", what: "kernel command line")) ?? ""
                try put(LocalBoot.loaderConf, Array(LocalBoot.loaderConfText().utf8))
                try put(
                    LocalBoot.entry,
                    Array(
                        LocalBoot.entryText(
                            node: currentNode.name, options: KernelCommandLine.forLocalBoot(cmdline),
                            release: boot.release,
                            initrds: boot.initrds.count
                        ).utf8))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try put(LocalBoot.nodeConfig, Array((try encoder.encode(currentNode)) + [0x0a]))
        } catch let failure as BootFailure {
            return machine.stepFailed(failure)
        } catch {
            return failed(.bootloader, .transient, "\(error)")
        }

        let entryNote = ensureUEFIEntry(partitions: task.espPartitions)
        let kernel =
            task.boot.release.map { "kernel \($0) (\(task.boot.reason))" }
            ?? "the server's kernel \(task.boot.kernel.name)"
        session.event(
            "bootloader",
            (changed.isEmpty
                ? "local boot path unchanged" : "local boot path written: \(changed.joined(separator: ", "))")
                + "; boots \(kernel); \(entryNote); in \(took(since: start))", seconds: monotonicSeconds() - start)
        return machine.stepSucceeded(.localBootInstalled(changedFiles: changed))
    }

    /// A UEFI boot entry for systemd-boot on every partition under the ESP, appended to the boot
    /// order (N11). Nothing to do when the machine did not boot through UEFI.
    func ensureUEFIEntry(partitions: [String]) -> String {
        guard FileManager.default.fileExists(atPath: "/sys/firmware/efi") else {
            return "not booted through UEFI: no boot entry written (firmware finds \(LocalBoot.removableLoader))"
        }
        let efivars = "/sys/firmware/efi/efivars"
        if !MountTable.read().isMountPoint(efivars) {
            _ = try? Command.run(["mount", "-t", "efivarfs", "efivarfs", efivars])
        }
        let listing: CommandResult
        do { listing = try Command.check(["efibootmgr"], doing: "listing", on: "UEFI boot entries") } catch {
            session?.event("bootloader", "\(error)", level: .warning)
            return "UEFI boot entries not readable"
        }
        let (order, entries) = LocalBoot.parseEFIBootManager(listing.stdout)
        guard LocalBoot.needsUEFIEntry(entries) else { return "UEFI boot entry present" }

        var added: [String] = []
        for partition in partitions {
            let name = String(realPath(partition).split(separator: "/").last ?? "")
            guard
                let number = (try? readTextFile("/sys/class/block/\(name)/partition", what: "partition number"))?
                    .trimmed,
                let disk = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/class/block/\(name)"))
                    .flatMap({ $0.split(separator: "/").dropLast().last.map(String.init) })
            else { continue }
            do {
                let after = try Command.check(
                    [
                        "efibootmgr", "--create", "--disk", "/dev/\(disk)", "--part", number, "--label",
                        LocalBoot.label,
                        "--loader", LocalBoot.loaderEFIPath,
                    ],
                    doing: "creating a UEFI boot entry for", on: "/dev/\(disk) partition \(number)")
                let now = LocalBoot.parseEFIBootManager(after.stdout).order
                added += LocalBoot.addedEntries(before: order + added, after: now)
            } catch {
                session?.event("bootloader", "\(error)", level: .warning)
            }
        }
        guard !added.isEmpty else { return "no UEFI boot entry could be written" }
        let newOrder = LocalBoot.bootOrder(before: order, added: added)
        _ = try? Command.run(["efibootmgr", "--bootorder", newOrder.joined(separator: ",")])
        return
            "UEFI boot entr\(added.count == 1 ? "y" : "ies") \(added.joined(separator: ", ")) added after the network boot"
    }

    // MARK: The fallback

    /// R5: the server stayed away; look for the config the last provisioning boot saved on an ESP.
    func fallBack() -> BootDecision {
        console.say("booting the installed system from its disks as it is (the server is unreachable)")
        let inventory: Inventory
        do { inventory = try DiskInventoryReader().read() } catch {
            return failed(.fallback, .transient, "\(error)")
        }
        return machine.savedNodeRead(savedNode(inventory))
    }

    /// The node config on an ESP (any copy of a mirrored one), nil when none holds one.
    func savedNode(_ inventory: Inventory) -> NodeConfig? {
        let mountPoint = "/run/provisioner/esp"
        try? FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        for disk in inventory.disks {
            for partition in disk.partitions where partition.typeUUID?.lowercased() == espTypeUUID {
                guard let path = partition.path,
                    (try? Command.run(["mount", "-t", "vfat", "-o", "ro,nodev,nosuid,noexec", path, mountPoint]))?
                        .status
                        == 0
                else { continue }
                let data = FileManager.default.contents(atPath: mountPoint + "/" + LocalBoot.nodeConfig)
                _ = try? Command.run(["umount", mountPoint])
                if let data, let node = try? JSONDecoder().decode(NodeConfig.self, from: data) {
                    console.say("found the saved config of node \(node.name) on \(path)")
                    return node
                }
            }
        }
        return nil
    }

    /// U1: the saved layout planned on the disks as they are; nothing is written.
    func planInstalled(_ layout: DiskLayout) -> BootDecision {
        do {
            return machine.installedPlanned(try LayoutSituation.inspect(layout, log: { _ in }).plan)
        } catch {
            let (status, message) = ExitStatus.of(error)
            return failed(.fallback, status == .unmatched ? .notInstalled : .transient, message)
        }
    }

    /// U4: the installed layout brought up on the root, and its image stamp read.
    func activateInstalled(_ activation: Activation) -> BootDecision {
        do {
            try LayoutApplier(log: { self.console.say("fallback: \($0)") }).activate(activation, root: root)
        } catch {
            return failed(.fallback, .transient, "\(error)")
        }
        let applied = FileManager.default.contents(atPath: root + "/.provisioner-state/applied").map {
            String(decoding: $0, as: UTF8.self).split(separator: "\n").map(String.init).joined(separator: ", ")
        }
        return machine.stepSucceeded(.installedActivated(applied: applied))
    }
}
