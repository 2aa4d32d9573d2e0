/// Which of a kernel's modules go into its provisioning initramfs: what the agent needs to find and
/// write disks and reach the server, on the hardware clusters run on — the same classes of driver
/// the kernel-bound initramfs of `initramfs/mkinitramfs.sh` carries, plus every module they depend on.
/// Everything else stays in the image and is loaded from its `/lib/modules` after the pivot.
public enum InitrdModules {
    /// Directories below `kernel/` whose every module goes in.
    public static let directories = [
        // disks: NVMe, SATA/AHCI/PATA, SCSI and SAS HBAs, virtio and other block devices
        "drivers/nvme", "drivers/ata", "drivers/scsi", "drivers/block", "drivers/virtio",
        // MD RAID and the device mapper (LVM)
        "drivers/md",
        // wired network: every Ethernet driver, their PHYs, bonding, and the hypervisors' NICs
        "drivers/net/ethernet", "drivers/net/phy", "drivers/net/mdio", "drivers/net/pcs", "drivers/net/bonding",
        "drivers/net/team", "drivers/net/hyperv", "drivers/net/vmxnet3", "drivers/hv",
        // the file systems layouts make, and the ESP's
        "fs/ext4", "fs/jbd2", "fs/xfs", "fs/fat", "fs/efivarfs",
    ]

    /// Single modules by name (`-` and `_` are the same, as modprobe treats them).
    public static let modules: Set<String> = [
        "virtio_net", "net_failover", "failover", "mii", "xen_netfront", "8021q",
        // code pages the ESP's vfat mounts with
        "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8",
        // checksums file systems and disks ask for by name, not by symbol (no modules.dep line)
        "crc32c_generic", "crc32c_intel", "crc32_pclmul", "crct10dif_generic", "crct10dif_pclmul", "crc64_rocksoft",
        "crc64_rocksoft_generic", "libcrc32c",
        // QEMU's firmware configuration (read by the VM tests' runner)
        "qemu_fw_cfg",
        // TPM 2.0 (a stateless node keeps its key there): TIS, CRB, and their core
        "tpm", "tpm_tis", "tpm_tis_core", "tpm_crb",
    ]

    /// The module name of a file: `kernel/drivers/md/raid1.ko.xz` → `raid1`; `-` becomes `_`.
    public static func name(ofModule path: String) -> String {
        var base = Substring(path.split(separator: "/").last ?? Substring(path))
        for suffix in [".xz", ".zst", ".gz"] where base.hasSuffix(suffix) { base = base.dropLast(suffix.count) }
        if base.hasSuffix(".ko") { base = base.dropLast(3) }
        return base.replacingOccurrences("-", "_")
    }

    /// `modules.dep`: each module's path (relative to the modules directory) → the paths it needs.
    public static func parseDependencies(_ text: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let module = String(line[..<colon]).trimmingSpaces
            guard !module.isEmpty else { continue }
            out[module] = line[line.index(after: colon)...].split(separator: " ").map(String.init)
        }
        return out
    }

    /// The modules to include, as paths relative to the modules directory (`kernel/...`), sorted:
    /// every one the rules name, and everything they need, transitively.
    public static func select(available: [String], dependencies: [String: [String]]) -> [String] {
        let prefixes = directories.map { "kernel/" + $0 + "/" }
        let present = Set(available)
        var chosen = Set<String>()
        var queue: [String] = []
        for path in available {
            if prefixes.contains(where: { path.hasPrefix($0) }) || modules.contains(name(ofModule: path)) {
                if chosen.insert(path).inserted { queue.append(path) }
            }
        }
        while let path = queue.popLast() {
            for dependency in dependencies[path] ?? [] where present.contains(dependency) {
                if chosen.insert(dependency).inserted { queue.append(dependency) }
            }
        }
        return chosen.sorted()
    }

    /// The firmware files to include for the names the chosen modules ask for (`modinfo -F firmware`):
    /// each name as it is, or compressed (`.xz`, `.zst`) as newer distributions ship firmware, when the
    /// image has it. `available` holds paths relative to `lib/firmware`. Names are kept inside it.
    public static func firmware(requested: [String], available: Set<String>) -> [String] {
        var out = Set<String>()
        for name in requested {
            let parts = name.split(separator: "/")
            guard !name.hasPrefix("/"), !parts.contains(".."), !parts.isEmpty else { continue }
            for candidate in [name, name + ".xz", name + ".zst"] where available.contains(candidate) {
                out.insert(candidate)
            }
        }
        return out.sorted()
    }
}

extension Substring {
    fileprivate func replacingOccurrences(_ a: Character, _ b: Character) -> String {
        String(map { $0 == a ? b : $0 })
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
