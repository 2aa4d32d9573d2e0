import ProvisionerAPI
import ProvisionerCore

/// What a plugin wants in the node's root: files with their content and mode,
/// and symbolic links. Computed purely from the node's config and what the
/// layout mounted; `PluginRunner` makes the root match, touching only what differs.
public enum RootEntry: Hashable, Sendable {
    case file(path: String, content: String, mode: UInt16)
    case symlink(path: String, target: String)
    /// A link the plugin owns that must not exist (a unit no longer enabled).
    case absent(path: String)
    /// An overlay's file: any bytes, with its owner.
    case ownedFile(path: String, content: [UInt8], mode: UInt16, uid: UInt32, gid: UInt32)

    public var path: String {
        switch self {
        case .file(let path, _, _), .symlink(let path, _), .absent(let path), .ownedFile(let path, _, _, _, _): path
        }
    }
}

/// A filesystem the layout mounts, with the UUID its fstab line uses.
public struct MountedFilesystem: Hashable, Sendable {
    public var device: String
    public var uuid: String?
    public var mountPoint: String
    public var type: FilesystemType
    public var options: [String]

    public init(device: String, uuid: String?, mountPoint: String, type: FilesystemType, options: [String]) {
        self.device = device
        self.uuid = uuid
        self.mountPoint = mountPoint
        self.type = type
        self.options = options
    }
}

public struct PluginError: Error, Hashable, Sendable, CustomStringConvertible {
    public var plugin: String
    public var problem: String
    public var description: String { "plugin \(plugin): \(problem)" }
}

/// The plugins every node can use without installing anything:
///
/// | name | parameters | writes |
/// |---|---|---|
/// | `hostname` | `name` (default: the node's name) | `/etc/hostname` |
/// | `network` | `interface` (a name, default: any) or `mac`; `address` (CIDR) or `dhcp` (`yes`, default when no address); `gateway`; `dns` (comma-separated); `file` (name of the .network file) | `/etc/systemd/network/10-provisioner-<file>.network`, and enables systemd-networkd |
/// | `fstab` | none | `/etc/fstab` from the layout's filesystems and swap, by UUID |
/// | `ssh-keys` | `keys` (one or more keys, separated by newlines or `;`), `user` (only `root`) | `/root/.ssh/authorized_keys` (0600) |
/// | `units` | `enable`, `mask` (comma-separated unit names) | links in `/etc/systemd/system` |
public enum BuiltinPlugins {
    public static let names = ["hostname", "network", "fstab", "ssh-keys", "units"]

    /// The entries `plugin` wants. `units` also needs the image's unit files (`wantedBy`).
    public static func entries(
        for plugin: PluginConfig, node: NodeConfig, mounts: [MountedFilesystem], swaps: [MountedFilesystem],
        wantedBy: (String) -> [String]?
    ) throws(PluginError) -> [RootEntry] {
        let p = plugin.parameters
        func fail(_ problem: String) -> PluginError { PluginError(plugin: plugin.name, problem: problem) }
        func checkKnown(_ known: Set<String>) throws(PluginError) {
            for key in p.keys.sorted() where !known.contains(key) {
                throw fail("unknown parameter \"\(key)\" (known: \(known.sorted().joined(separator: ", ")))")
            }
        }
        switch plugin.name {
        case "hostname":
            try checkKnown(["name"])
            let name = p["name"] ?? node.name
            guard isHostName(name) else { throw fail("\"\(name)\" is not a host name") }
            return [.file(path: "/etc/hostname", content: name + "\n", mode: 0o644)]

        case "network":
            return try NetworkPlugin.entries(plugin, wantedBy: wantedBy)

        case "fstab":
            try checkKnown([])
            var lines = ["# Written by the provisioner from the node's disk layout; changes here are replaced on boot.",
                         "# <file system> <mount point> <type> <options> <dump> <pass>"]
            for m in mounts {
                let source = m.uuid.map { "UUID=\($0)" } ?? m.device
                let options = m.options.isEmpty ? "defaults" : m.options.joined(separator: ",")
                let pass = m.mountPoint == "/" ? 1 : (m.type == .vfat || m.type == .xfs ? 0 : 2)
                lines.append("\(source) \(escapeFstab(m.mountPoint)) \(m.type.rawValue) \(options) 0 \(pass)")
            }
            for s in swaps {
                lines.append("\(s.uuid.map { "UUID=\($0)" } ?? s.device) none swap sw 0 0")
            }
            return [.file(path: "/etc/fstab", content: lines.joined(separator: "\n") + "\n", mode: 0o644)]

        case "ssh-keys":
            try checkKnown(["keys", "user"])
            guard (p["user"] ?? "root") == "root" else { throw fail("only user root is supported") }
            let keys = (p["keys"] ?? "").split(whereSeparator: { $0 == "\n" || $0 == ";" }).map { $0.trimmed }.filter { !$0.isEmpty }
            guard !keys.isEmpty else { throw fail("keys lists no key") }
            for key in keys where !(key.hasPrefix("ssh-") || key.hasPrefix("ecdsa-") || key.hasPrefix("sk-")) {
                throw fail("\"\(key.prefix(20))...\" does not look like an OpenSSH public key")
            }
            return [.file(path: "/root/.ssh/authorized_keys", content: keys.joined(separator: "\n") + "\n", mode: 0o600)]

        case "units":
            try checkKnown(["enable", "mask"])
            var result: [RootEntry] = []
            for unit in list(p["enable"]) {
                guard isUnitName(unit) else { throw fail("\"\(unit)\" is not a unit name") }
                result += try enable(unit, wantedBy: wantedBy, plugin: plugin.name)
            }
            for unit in list(p["mask"]) {
                guard isUnitName(unit) else { throw fail("\"\(unit)\" is not a unit name") }
                result.append(.symlink(path: "/etc/systemd/system/\(unit)", target: "/dev/null"))
            }
            return result

        default:
            throw fail("is not a built-in plugin (built in: \(names.joined(separator: ", ")))")
        }
    }

    /// `systemctl enable` without systemctl: a link in each target's `.wants`.
    static func enable(_ unit: String, wantedBy: (String) -> [String]?, plugin: String) throws(PluginError)
        -> [RootEntry]
    {
        guard let targets = wantedBy(unit) else {
            throw PluginError(plugin: plugin, problem: "the image has no unit \(unit)")
        }
        guard !targets.isEmpty else {
            throw PluginError(plugin: plugin, problem: "\(unit) has no WantedBy= in its [Install] section; it cannot be enabled")
        }
        return targets.map { .symlink(path: "/etc/systemd/system/\($0).wants/\(unit)", target: "/usr/lib/systemd/system/\(unit)") }
    }

    /// The `WantedBy=` targets of a unit file's `[Install]` section.
    public static func wantedBy(unitFile text: String) -> [String] {
        var inInstall = false
        var targets: [String] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmed
            if line.hasPrefix("[") { inInstall = line == "[Install]"; continue }
            guard inInstall, line.hasPrefix("WantedBy=") else { continue }
            targets += line.dropFirst("WantedBy=".count).split(separator: " ").map(String.init)
        }
        return targets
    }

    static func list(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { $0.trimmed }.filter { !$0.isEmpty }
    }

    static func isSimple(_ s: String) -> Bool {
        !s.isEmpty && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") } && s != "." && s != ".."
    }

    static func isUnitName(_ s: String) -> Bool {
        isSimple(s.replacing("@", with: "_")) && s.contains(".") && !s.hasPrefix(".")
    }

    static func isHostName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 63 && s.first != "-" && s.last != "-"
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }

    static func isMAC(_ s: String) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isHexDigit) }
    }

    static func isIP(_ s: String) -> Bool {
        let v4 = s.split(separator: ".", omittingEmptySubsequences: false)
        if v4.count == 4 { return v4.allSatisfy { UInt8($0) != nil && ($0.count == 1 || $0.first != "0") } }
        return s.contains(":") && s.allSatisfy { $0.isHexDigit || $0 == ":" } && s.count <= 39
    }

    static func isCIDR(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let bits = Int(parts[1]), isIP(String(parts[0])) else { return false }
        return bits >= 0 && bits <= (parts[0].contains(":") ? 128 : 32)
    }

    /// fstab separates fields by white space; spaces in mount points are written `\040`.
    static func escapeFstab(_ s: String) -> String {
        s.replacing("\\", with: "\\134").replacing(" ", with: "\\040")
            .replacing("\t", with: "\\011")
    }
}
