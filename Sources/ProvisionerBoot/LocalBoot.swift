import ProvisionerCore

/// The fallback boot path on a stateful node's ESP (docs/boot.md, "Fallback boot"):
///
/// ```
/// EFI/BOOT/BOOTX64.EFI                 systemd-boot (the firmware's removable-media path)
/// EFI/systemd/systemd-bootx64.efi      systemd-boot (what the UEFI boot entry names)
/// loader/loader.conf                   default entry, no menu delay
/// loader/entries/provisioner.conf      our kernel + initramfs + this boot's command line
/// provisioner/vmlinuz                  the node's kernel, as the server serves it
/// provisioner/initramfs.img            the node's initramfs (the agent inside)
/// provisioner/node.json                the node's config, for a boot without the server
/// provisioner/files.etag               ETags of the two files above, so an unchanged file is not fetched
/// ```
///
/// The loader entry boots the same initramfs, so a node started from its disk still asks the
/// server first; only when the server stays unreachable does the agent boot the installed
/// system as it is.
public enum LocalBoot {
    public static let removableLoader = "EFI/BOOT/BOOTX64.EFI"
    public static let loader = "EFI/systemd/systemd-bootx64.efi"
    /// The same path as UEFI writes it in a boot entry.
    public static let loaderEFIPath = "\\EFI\\systemd\\systemd-bootx64.efi"
    public static let loaderConf = "loader/loader.conf"
    public static let entry = "loader/entries/provisioner.conf"
    public static let kernel = "provisioner/vmlinuz"
    public static let initramfs = "provisioner/initramfs.img"
    public static let nodeConfig = "provisioner/node.json"
    public static let etags = "provisioner/files.etag"
    /// The UEFI boot entry's label.
    public static let label = "provisioner (local disk)"

    /// systemd-boot's loader.conf: our entry, no menu (hold a key at power-on to see it).
    public static func loaderConfText() -> String {
        "# Written by provisioner-agent; replaced on every provisioning boot.\ndefault provisioner.conf\ntimeout 0\neditor no\n"
    }

    /// The loader entry (Boot Loader Specification, type 1).
    public static func entryText(node: String, options: String) -> String {
        """
        # Written by provisioner-agent; replaced on every provisioning boot.
        title   Provisioner: \(node) (local boot)
        linux   /\(kernel)
        initrd  /\(initramfs)
        options \(options)

        """
    }

    /// `files.etag`: `kernel <etag>` and `initramfs <etag>` lines.
    public static func etagsText(kernel: String, initramfs: String) -> String {
        "kernel \(kernel)\ninitramfs \(initramfs)\n"
    }

    public static func parseETags(_ text: String) -> (kernel: String?, initramfs: String?) {
        var kernel: String?
        var initramfs: String?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            if parts[0] == "kernel" { kernel = parts[1] }
            if parts[0] == "initramfs" { initramfs = parts[1] }
        }
        return (kernel, initramfs)
    }

    /// `efibootmgr` output → (boot order, entries by number with their labels).
    public static func parseEFIBootManager(_ text: String) -> (order: [String], entries: [String: String]) {
        var order: [String] = []
        var entries: [String: String] = [:]
        for raw in text.split(separator: "\n") {
            let line = String(raw)
            if line.hasPrefix("BootOrder:") {
                order = line.dropFirst("BootOrder:".count).split(separator: ",").map { String($0).trimmed }
            } else if line.hasPrefix("Boot"), line.count > 9 {
                let number = String(line.dropFirst(4).prefix(4))
                guard number.allSatisfy({ $0.isHexDigit }) else { continue }
                var rest = line.dropFirst(8)
                if rest.first == "*" { rest = rest.dropFirst() }
                // "Boot0003* label\tHD(...)": the label ends at a tab (newer efibootmgr) or is all.
                let label = rest.split(separator: "\t", maxSplits: 1).first.map { String($0).trimmed } ?? ""
                entries[number] = label
            }
        }
        return (order, entries)
    }

    /// Whether the firmware needs our UEFI boot entry: none of its entries has our label yet.
    public static func needsUEFIEntry(_ entries: [String: String]) -> Bool {
        !entries.values.contains(label)
    }

    /// The entries `efibootmgr --create` added: in the order after, not in the order before.
    public static func addedEntries(before: [String], after: [String]) -> [String] {
        var added: [String] = []
        for entry in after where !before.contains(entry) && !added.contains(entry) { added.append(entry) }
        return added
    }

    /// The boot order to set after adding entries: efibootmgr puts a new entry first, but the
    /// network boot stays in front and the local disk comes after everything the firmware had.
    public static func bootOrder(before: [String], added: [String]) -> [String] {
        before + added.filter { !before.contains($0) }
    }
}
