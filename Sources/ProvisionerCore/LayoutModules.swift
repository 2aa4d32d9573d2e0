/// The kernel modules a layout needs, by the names the kernel itself asks modprobe for, in the
/// order the boot needs them: MD first (arrays are assembled first), then device-mapper (LVM),
/// then each filesystem type that is mounted.
///
/// The agent loads them in the background as soon as it knows the layout (docs/boot.md, "The
/// no-change boot"), so that a mount does not wait for its module: under QEMU's TCG loading
/// `xfs.ko` (3 MB, signature checked) took 1.3 s of a 7.6 s boot, all of it on the path to the
/// pivot. A module that is built in or absent costs nothing: the mount that needs it fails as it
/// would have, with its own error.
extension DiskLayout {
    public var kernelModules: [String] {
        var modules: [String] = []
        func add(_ name: String) { if !modules.contains(name) { modules.append(name) } }
        if !arrays.isEmpty {
            add("md_mod")
            // md asks for "md-level-N" when it starts an array (raid456 answers to 4, 5 and 6).
            for level in arrays.map(\.level).sorted(by: { $0.rawValue < $1.rawValue }) { add("md-level-\(level.rawValue)") }
        }
        if !volumeGroups.isEmpty { add("dm_mod") }
        for filesystem in mountedFilesystems {
            switch filesystem.type {
            case .swap: continue
            case .ext4, .xfs: add("fs-\(filesystem.type.rawValue)")
            case .vfat:
                add("fs-vfat")
                // The code page and character set vfat loads at mount: the kernel's defaults
                // (437 everywhere; the I/O set varies by distribution) unless the options name them.
                let codepage = Self.optionValue("codepage", in: filesystem.mountOptions) ?? "437"
                add("nls_cp\(codepage)")
                if let charset = Self.optionValue("iocharset", in: filesystem.mountOptions) { add("nls_\(charset)") }
            }
        }
        return modules
    }

    /// Every filesystem the layout mounts, in the layout's order (partitions, arrays, volumes).
    var mountedFilesystems: [FilesystemSpec] {
        let all =
            disks.flatMap { $0.partitions.compactMap(\.filesystem) } + arrays.compactMap(\.filesystem)
            + volumeGroups.flatMap { $0.volumes.compactMap(\.filesystem) }
        return all.filter { $0.mount != nil }
    }

    /// `value` of `name=value` among mount options (the last one wins, as in the kernel's parser).
    static func optionValue(_ name: String, in options: [String]) -> String? {
        let values = options.flatMap { $0.split(separator: ",") }.compactMap { option -> String? in
            guard option.hasPrefix(name + "=") else { return nil }
            let value = option.dropFirst(name.count + 1)
            // A module name: letters, digits, '-' and '_' only, and short (the value came from a
            // layout; `provisioner.modules=` takes names of at most 64 characters).
            guard !value.isEmpty, value.count <= 32, value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                return nil
            }
            return String(value)
        }
        return values.last
    }
}
