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

/// Step 6: the fallback boot path on the ESP (`LocalBoot` lists the files). Every file is
/// compared first and written only when it differs; the kernel and initramfs are fetched only
/// when the server's ETag differs from the one recorded next to them.
struct LocalBootInstaller {
    let node: NodeConfig
    let settings: BootSettings
    let session: BootSession
    let storage: StorageResult

    static let systemdBoot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

    func install() throws -> [String] {
        guard let activation = storage.activation,
            let esp = activation.mounts.first(where: { $0.type == .vfat && ["/boot/efi", "/efi", "/boot"].contains($0.mountPoint) })
        else {
            session.event(
                "bootloader", "the layout has no EFI system partition (vfat on /boot/efi): no local boot path", level: .warning)
            return []
        }
        let dir = settings.root + esp.mountPoint
        var changed: [String] = []
        func put(_ relative: String, _ bytes: [UInt8]) throws {
            do {
                if try writeFileIfDifferent(dir + "/" + relative, bytes) { changed.append(relative) }
            } catch {
                throw BootFailure(phase: "bootloader", message: "\(error)", retryable: true)
            }
        }

        guard let loader = FileManager.default.contents(atPath: Self.systemdBoot) else {
            session.event("bootloader", "this initramfs has no \(Self.systemdBoot): no local boot path", level: .warning)
            return []
        }
        try put(LocalBoot.removableLoader, Array(loader))
        try put(LocalBoot.loader, Array(loader))

        // The node's kernel and initramfs, as the server serves them to iPXE.
        let recorded = FileManager.default.contents(atPath: dir + "/" + LocalBoot.etags)
            .map { LocalBoot.parseETags(String(decoding: $0, as: UTF8.self)) } ?? (kernel: nil, initramfs: nil)
        var etags: [String] = []
        for (remote, local, known) in [
            ("/files/kernels/\(node.kernel ?? "default")", LocalBoot.kernel, recorded.kernel),
            ("/files/initramfs/\(node.initramfs ?? "default")", LocalBoot.initramfs, recorded.initramfs),
        ] {
            let current: String?
            do { current = try session.etag(remote) } catch {
                throw BootFailure(phase: "bootloader", message: "asking for \(remote): \(error)", retryable: true)
            }
            guard let current else {
                session.event("bootloader", "the server has no \(remote): no local boot path", level: .warning)
                return changed
            }
            if current != known || !FileManager.default.fileExists(atPath: dir + "/" + local) {
                try? FileManager.default.createDirectory(atPath: dir + "/provisioner", withIntermediateDirectories: true)
                let got = try session.download(remote, to: dir + "/" + local)
                changed.append(local)
                etags.append(got ?? current)
            } else {
                etags.append(current)
            }
        }
        try put(LocalBoot.etags, Array(LocalBoot.etagsText(kernel: etags[0], initramfs: etags[1]).utf8))

        let cmdline = (try? readTextFile("/proc/cmdline", what: "kernel command line")) ?? ""
        try put(LocalBoot.loaderConf, Array(LocalBoot.loaderConfText().utf8))
        try put(LocalBoot.entry, Array(LocalBoot.entryText(node: node.name, options: KernelCommandLine.forLocalBoot(cmdline)).utf8))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try put(LocalBoot.nodeConfig, Array((try encoder.encode(node)) + [0x0a]))

        let entryNote = try ensureUEFIEntry(esp: esp, activation: activation)
        session.event(
            "bootloader",
            (changed.isEmpty ? "local boot path unchanged" : "local boot path written: \(changed.joined(separator: ", "))")
                + "; \(entryNote)")
        return changed
    }

    /// A UEFI boot entry for systemd-boot on every disk holding the ESP, appended to the boot
    /// order (network boot stays first). Nothing to do when the machine did not boot through UEFI.
    func ensureUEFIEntry(esp: Activation.Mount, activation: Activation) throws -> String {
        guard FileManager.default.fileExists(atPath: "/sys/firmware/efi") else {
            return "not booted through UEFI: no boot entry written (firmware finds \(LocalBoot.removableLoader))"
        }
        let efivars = "/sys/firmware/efi/efivars"
        if !isMountPoint(efivars) {
            _ = try? Command.run(["mount", "-t", "efivarfs", "efivarfs", efivars])
        }
        let listing: CommandResult
        do { listing = try Command.check(["efibootmgr"], doing: "listing", on: "UEFI boot entries") } catch {
            session.event("bootloader", "\(error)", level: .warning)
            return "UEFI boot entries not readable"
        }
        let (order, entries) = LocalBoot.parseEFIBootManager(listing.stdout)
        if entries.values.contains(LocalBoot.label) { return "UEFI boot entry present" }

        // The partitions under the ESP: the array's members, or the partition itself.
        let members = activation.arrays.first(where: { $0.device == esp.device || realPath($0.device) == realPath(esp.device) })?.members ?? [esp.device]
        var created: [String] = []
        for member in members {
            let name = String(realPath(member).split(separator: "/").last ?? "")
            guard let number = (try? readTextFile("/sys/class/block/\(name)/partition", what: "partition number"))?.trimmed,
                let disk = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/class/block/\(name)"))
                    .flatMap({ $0.split(separator: "/").dropLast().last.map(String.init) })
            else { continue }
            do {
                let after = try Command.check(
                    ["efibootmgr", "--create", "--disk", "/dev/\(disk)", "--part", number, "--label", LocalBoot.label,
                     "--loader", LocalBoot.loaderEFIPath],
                    doing: "creating a UEFI boot entry for", on: "/dev/\(disk) partition \(number)")
                let now = LocalBoot.parseEFIBootManager(after.stdout).order
                created += now.filter { !order.contains($0) && !created.contains($0) }
            } catch {
                session.event("bootloader", "\(error)", level: .warning)
            }
        }
        guard !created.isEmpty else { return "no UEFI boot entry could be written" }
        // efibootmgr puts a new entry first; network boot goes back in front.
        let newOrder = order + created
        _ = try? Command.run(["efibootmgr", "--bootorder", newOrder.joined(separator: ",")])
        return "UEFI boot entr\(created.count == 1 ? "y" : "ies") \(created.joined(separator: ", ")) added after the network boot"
    }
}

/// The server stayed unreachable: boot the installed system as it is, if there is one and the
/// disks still match the layout it was installed with. Nothing is written to any disk.
struct LocalFallback {
    let settings: BootSettings
    let console: Console

    func boot() throws {
        console.say("booting the installed system from its disks as it is (the server is unreachable)")
        let node = try savedNode()
        guard node.mode == .stateful, let text = node.layout else {
            throw BootFailure(phase: "fallback", message: "node \(node.name) is not installed on disk", retryable: true)
        }
        let layout: DiskLayout
        do { layout = try DiskLayout(parsing: text, source: "saved layout") } catch {
            throw BootFailure(phase: "fallback", message: "the saved layout: \(error)", retryable: false)
        }
        let situation: LayoutSituation
        do { situation = try LayoutSituation.make(layout: layout, log: { _ in }) } catch {
            throw BootFailure(phase: "fallback", message: "\(error)", retryable: true)
        }
        guard situation.plan.refusals.isEmpty, situation.plan.actions.isEmpty else {
            throw BootFailure(
                phase: "fallback",
                message: "the disks no longer match the layout node \(node.name) was installed with "
                    + "(\(situation.plan.actions.count) change(s) needed); not booting them without the server",
                retryable: true)
        }
        do {
            try LayoutApplier(log: { console.say("fallback: \($0)") }).activate(situation.plan.activation, root: settings.root)
        } catch {
            throw BootFailure(phase: "fallback", message: "\(error)", retryable: true)
        }
        guard let applied = FileManager.default.contents(atPath: settings.root + "/.provisioner-state/applied") else {
            throw BootFailure(
                phase: "fallback", message: "the installed image is incomplete (its last sync did not finish)", retryable: true)
        }
        let what = String(decoding: applied, as: UTF8.self).split(separator: "\n").map(String.init).joined(separator: ", ")
        console.say(
            "SERVER UNREACHABLE: booting node \(node.name) from its disks without provisioning (\(what)); "
                + "it will be provisioned on the next boot that reaches the server; switching root into the installed "
                + "system at \(ProgressText.seconds(Console.uptime())) after power-on")
    }

    /// The node config the last provisioning boot left on an ESP (any copy of a mirrored one).
    func savedNode() throws -> NodeConfig {
        let inventory: Inventory
        do { inventory = try DiskInventoryReader().read() } catch {
            throw BootFailure(phase: "fallback", message: "\(error)", retryable: true)
        }
        let mountPoint = "/run/provisioner/esp"
        try? FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        for disk in inventory.disks {
            for partition in disk.partitions where partition.typeUUID?.lowercased() == espTypeUUID {
                guard let path = partition.path,
                    (try? Command.run(["mount", "-t", "vfat", "-o", "ro,nodev,nosuid,noexec", path, mountPoint]))?.status == 0
                else { continue }
                let data = FileManager.default.contents(atPath: mountPoint + "/" + LocalBoot.nodeConfig)
                _ = try? Command.run(["umount", mountPoint])
                if let data, let node = try? JSONDecoder().decode(NodeConfig.self, from: data) {
                    console.say("found the saved config of node \(node.name) on \(path)")
                    return node
                }
            }
        }
        throw BootFailure(
            phase: "fallback", message: "no ESP holds \(LocalBoot.nodeConfig): this machine was never installed",
            retryable: true)
    }
}
