import ProvisionerAPI
import ProvisionerCore

/// The fallback boot path on a stateful node's ESP (docs/boot.md, "Fallback boot"):
///
/// ```
/// EFI/BOOT/BOOTX64.EFI                 systemd-boot (the firmware's removable-media path)
/// EFI/systemd/systemd-bootx64.efi      systemd-boot (what the UEFI boot entry names)
/// loader/loader.conf                   default entry, no menu delay
/// loader/entries/provisioner.conf      our kernel + initramfs + this boot's command line
/// provisioner/vmlinuz                  the node's kernel (its image's, docs/boot.md), as the server serves it
/// provisioner/initramfs.img            the provisioning initramfs (the agent inside)
/// provisioner/modules.img              the kernel's modules initramfs, when the kernel is the image's
/// provisioner/node.json                the node's config, for a boot without the server
/// provisioner/files.etag               ETags of the files above, so an unchanged file is not fetched
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

    /// Where the `index`th initrd of the boot goes on the ESP: the provisioning initramfs, then the
    /// kernel's modules (`initrd-N.img` after that, should a boot ever name more).
    public static func initrd(_ index: Int) -> String {
        switch index {
        case 0: initramfs
        case 1: modules
        default: "provisioner/initrd-\(index).img"
        }
    }

    public static let modules = "provisioner/modules.img"

    /// The loader entry (Boot Loader Specification, type 1): the kernel, its initrds in order, and
    /// the kernel release in the title so the menu says what boots.
    public static func entryText(node: String, options: String, release: String? = nil, initrds: Int = 1) -> String {
        let title = "Provisioner: \(node) (local boot\(release.map { ", kernel \($0)" } ?? ""))"
        let lines = (0..<max(initrds, 1)).map { "initrd  /\(initrd($0))\n" }.joined()
        return """
            # Written by provisioner-agent; replaced on every provisioning boot.
            title   \(title)
            linux   /\(kernel)
            \(lines)options \(options)

            """
    }

    /// A boot file as it lives on the ESP: its name in `files.etag`, the server's path for it and
    /// where it goes under the ESP.
    public struct ESPFile: Hashable, Sendable {
        public var name: String
        public var remote: String
        public var local: String
        public init(name: String, remote: String, local: String) {
            self.name = name
            self.remote = remote
            self.local = local
        }
    }

    /// The kernel and the initrds of a boot, in order.
    public static func files(_ boot: BootFiles) -> [ESPFile] {
        [ESPFile(name: "kernel", remote: boot.kernel.apiPath, local: kernel)]
            + boot.initrds.enumerated().map {
                ESPFile(name: "initrd\($0.offset)", remote: $0.element.apiPath, local: initrd($0.offset))
            }
    }

    /// What a boot changes among the ESP's boot files (N11): the files whose ETag on the server
    /// differs from the one recorded next to them, or that are missing, are fetched again; the
    /// initrds an earlier boot named and this one does not (the modules of an image kernel, when
    /// the node now boots the server's) are removed.
    public struct Refresh: Hashable, Sendable {
        public var fetch: [ESPFile]
        public var remove: [String]
    }

    /// `current`: the server's ETag of each file by name; `recorded`: `files.etag`'s; `present`:
    /// which of the ESP's boot files (relative paths) exist.
    public static func refresh(
        _ files: [ESPFile], current: [String: String], recorded: [String: String], present: Set<String>
    ) -> Refresh {
        let fetch = files.filter { current[$0.name] != recorded[$0.name] || !present.contains($0.local) }
        // Slots past the last one named (a server naming more than 8 initrds leaves none to clear).
        let named = min(max(files.count - 1, 0), 8)
        let remove = (named..<8).map(initrd).filter { present.contains($0) }
        return Refresh(fetch: fetch, remove: remove)
    }

    /// `files.etag`: one `NAME ETAG` line per file (`kernel`, `initrd0`, `initrd1`...).
    public static func etagsText(_ etags: [(name: String, etag: String)]) -> String {
        etags.map { "\($0.name) \($0.etag)\n" }.joined()
    }

    /// The ETags recorded by `etagsText`; an older agent's `initramfs` line is `initrd0`.
    public static func parseETags(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            out[parts[0] == "initramfs" ? "initrd0" : parts[0]] = parts[1]
        }
        return out
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
