import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// How a node runs its image: installed on its disks, or unpacked into RAM on every boot.
public enum NodeMode: String, Codable, Hashable, Sendable, CaseIterable {
    case stateful, stateless
}

/// What the server does when a node asks for a certificate with a key other than the one it
/// enrolled with (docs/certificates.md, "Enrollment"). The first enrollment of a node is always
/// automatic; a node that presents its enrolled key is always renewed.
public enum EnrollmentPolicy: String, Codable, Hashable, Sendable, CaseIterable {
    /// A new key needs `provisionerctl nodes approve NAME` first (stateful nodes keep their key on
    /// their disk; stateless nodes with a TPM keep it there).
    case approve
    /// Any new key is accepted for a known MAC: stateless nodes without a TPM, which lose their key
    /// on every power cycle. Whoever holds the initramfs and can claim the MAC becomes the node.
    case auto
}

/// How hard the agent checks an installed image before it trusts it (docs/node-config.md).
public enum SyncVerify: String, Codable, Hashable, Sendable, CaseIterable {
    /// Trust the version stamp the agent wrote after the last complete sync.
    case stamp
    /// Compare sizes, modes, owners and mtimes of every file with the manifest.
    case metadata
    /// Also hash every file's content.
    case content
}

/// Which image a node boots: a name plus either a fixed version or a branch to follow.
public struct ImageRef: Codable, Hashable, Sendable {
    public var name: String
    /// A fixed version; wins over `branch`.
    public var version: String?
    /// A branch whose newest version the node follows (the image store's default when both are absent).
    public var branch: String?

    public init(name: String, version: String? = nil, branch: String? = nil) {
        self.name = name
        self.version = version
        self.branch = branch
    }
}

/// One plugin run for a node (hostname, network, mounts, keys, units...), with its parameters.
public struct PluginConfig: Codable, Hashable, Sendable {
    public var name: String
    public var parameters: [String: String]

    public init(name: String, parameters: [String: String] = [:]) {
        self.name = name
        self.parameters = parameters
    }
}

/// Everything the server says about one node. The agent receives it when its session opens;
/// the admin edits it with `provisionerctl nodes`. Fields: docs/node-config.md.
public struct NodeConfig: Codable, Hashable, Sendable {
    /// The node's name (a host name label: letters, digits, `-`).
    public var name: String
    /// MAC addresses that identify the node, normalised (`52:54:00:ab:cd:ef`).
    public var macs: [String]
    public var image: ImageRef?
    /// The disk layout as YAML or JSON text, as the admin wrote it (docs/matching.md). Kept as text
    /// so that the layout schema can grow without changing this type; `validate()` parses it.
    public var layout: String?
    public var mode: NodeMode
    public var plugins: [PluginConfig]
    /// Extra kernel command-line arguments, appended by the iPXE script.
    public var kernelArgs: [String]
    public var syncVerify: SyncVerify
    /// Kernel and initramfs file names under the server's files/kernels and files/initramfs
    /// (`default` when absent).
    public var kernel: String?
    public var initramfs: String?
    /// Pins the kernel release the node boots from its image (`uname -r`, for example
    /// `6.1.0-57-cloud-amd64`); absent: the newest kernel of the image version (docs/boot.md).
    public var kernelRelease: String?
    /// A new key: approval needed (default) or accepted (`auto`).
    public var enrollment: EnrollmentPolicy
    /// The profiles the node lists, in order (its fields above are already merged from them).
    public var profiles: [String]
    /// Overlays written into the root, in order (docs/node-config.md, "Overlays").
    public var overlays: [String]
    /// Values for overlay templates and plugin parameters (`{{vars.rack}}`).
    public var vars: [String: String]
    /// The node's overlays rendered for it, in order: set by the server in what the agent
    /// receives, never stored.
    public var files: [RenderedFile]?

    public init(
        name: String, macs: [String] = [], image: ImageRef? = nil, layout: String? = nil,
        mode: NodeMode = .stateful, plugins: [PluginConfig] = [], kernelArgs: [String] = [],
        syncVerify: SyncVerify = .metadata, kernel: String? = nil, initramfs: String? = nil,
        kernelRelease: String? = nil, enrollment: EnrollmentPolicy = .approve,
        profiles: [String] = [], overlays: [String] = [], vars: [String: String] = [:]
    ) {
        self.enrollment = enrollment
        self.profiles = profiles
        self.overlays = overlays
        self.vars = vars
        self.name = name
        self.macs = macs
        self.image = image
        self.layout = layout
        self.mode = mode
        self.plugins = plugins
        self.kernelArgs = kernelArgs
        self.syncVerify = syncVerify
        self.kernel = kernel
        self.initramfs = initramfs
        self.kernelRelease = kernelRelease
    }

    /// A node's effective config from its merged fields, with each unset field's default.
    public init(name: String, macs: [String] = [], profiles: [String] = [], fields f: NodeFields) {
        self.init(
            name: name, macs: macs, image: f.image, layout: f.layout, mode: f.mode ?? .stateful,
            plugins: f.plugins ?? [], kernelArgs: f.kernelArgs ?? [], syncVerify: f.syncVerify ?? .metadata,
            kernel: f.kernel, initramfs: f.initramfs, kernelRelease: f.kernelRelease,
            enrollment: f.enrollment ?? .approve, profiles: profiles,
            overlays: f.overlays ?? [],
            vars: f.vars ?? [:])
    }

    enum CodingKeys: String, CodingKey {
        case name, macs, image, layout, mode, plugins, kernelArgs, syncVerify, kernel, initramfs, kernelRelease
        case enrollment
        case profiles, overlays, vars, files
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(macs, forKey: .macs)
        try c.encodeIfPresent(image, forKey: .image)
        try c.encodeIfPresent(layout, forKey: .layout)
        try c.encode(mode, forKey: .mode)
        try c.encode(plugins, forKey: .plugins)
        try c.encode(kernelArgs, forKey: .kernelArgs)
        try c.encode(syncVerify, forKey: .syncVerify)
        try c.encodeIfPresent(kernel, forKey: .kernel)
        try c.encodeIfPresent(initramfs, forKey: .initramfs)
        try c.encodeIfPresent(kernelRelease, forKey: .kernelRelease)
        if enrollment != .approve { try c.encode(enrollment, forKey: .enrollment) }
        if !profiles.isEmpty { try c.encode(profiles, forKey: .profiles) }
        if !overlays.isEmpty { try c.encode(overlays, forKey: .overlays) }
        if !vars.isEmpty { try c.encode(vars, forKey: .vars) }
        try c.encodeIfPresent(files, forKey: .files)
    }

    /// Absent collections and settings take their defaults, so a hand-written config can be short.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        macs = try c.decodeIfPresent([String].self, forKey: .macs) ?? []
        image = try c.decodeIfPresent(ImageRef.self, forKey: .image)
        layout = try c.decodeIfPresent(String.self, forKey: .layout)
        mode = try c.decodeIfPresent(NodeMode.self, forKey: .mode) ?? .stateful
        plugins = try c.decodeIfPresent([PluginConfig].self, forKey: .plugins) ?? []
        kernelArgs = try c.decodeIfPresent([String].self, forKey: .kernelArgs) ?? []
        syncVerify = try c.decodeIfPresent(SyncVerify.self, forKey: .syncVerify) ?? .metadata
        kernel = try c.decodeIfPresent(String.self, forKey: .kernel)
        initramfs = try c.decodeIfPresent(String.self, forKey: .initramfs)
        kernelRelease = try c.decodeIfPresent(String.self, forKey: .kernelRelease)
        enrollment = try c.decodeIfPresent(EnrollmentPolicy.self, forKey: .enrollment) ?? .approve
        profiles = try c.decodeIfPresent([String].self, forKey: .profiles) ?? []
        overlays = try c.decodeIfPresent([String].self, forKey: .overlays) ?? []
        vars = try c.decodeIfPresent([String: String].self, forKey: .vars) ?? [:]
        files = try c.decodeIfPresent([RenderedFile].self, forKey: .files)
    }

    /// Checks every field and normalises the MAC addresses. Throws the first problem, naming the
    /// field (`nodes.n1.macs[0]: "zz" is not a MAC address`). `path` prefixes field names.
    public func validated(path: String = "") throws(ConfigError) -> NodeConfig {
        func field(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }
        var node = self
        guard Names.isHostLabel(name) else {
            throw ConfigError(
                field: field("name"),
                problem: "\"\(name)\" is not a valid node name; use 1-63 letters, digits or - (not first or last)")
        }
        var seen = Set<String>()
        node.macs = []
        for (i, mac) in macs.enumerated() {
            guard let normal = MACAddress.normalize(mac) else {
                throw ConfigError(field: field("macs[\(i)]"), problem: "\"\(mac)\" is not a MAC address")
            }
            guard seen.insert(normal).inserted else {
                throw ConfigError(field: field("macs[\(i)]"), problem: "\(normal) appears twice")
            }
            node.macs.append(normal)
        }
        if let image {
            guard ImageNames.isValid(image.name) else {
                throw ConfigError(
                    field: field("image.name"),
                    problem: "\"\(image.name)\" is not a valid image name ([a-z0-9][a-z0-9._-]{0,63})")
            }
            if let v = image.version, !ImageNames.isVersionID(v) && v != "latest" {
                throw ConfigError(
                    field: field("image.version"), problem: "\"\(v)\" is not a version id (64 lowercase hex digits)")
            }
            if let b = image.branch, !ImageNames.isValid(b) {
                throw ConfigError(
                    field: field("image.branch"), problem: "\"\(b)\" is not a valid branch name ([a-z0-9][a-z0-9._-]{0,63})")
            }
        }
        if let layout {
            do {
                try Self.validateLayout(layout, source: "layout")
            } catch {
                // "nodes.a.layout: disks.disk0.match.size: ... (layout:3)": the node's field, then the layout's.
                throw ConfigError(field: field("layout"), problem: error.description)
            }
        }
        for (i, plugin) in plugins.enumerated() where !Names.isSimpleName(plugin.name) {
            throw ConfigError(
                field: field("plugins[\(i)].name"), problem: "\"\(plugin.name)\" is not a valid plugin name")
        }
        for (i, arg) in kernelArgs.enumerated()
        where arg.isEmpty || arg.contains(where: { $0.isWhitespace || $0.isNewline || $0 == "\"" }) {
            throw ConfigError(
                field: field("kernelArgs[\(i)]"), problem: "\"\(arg)\" must be one word without spaces or quotes")
        }
        for (i, profile) in profiles.enumerated() where !Names.isHostLabel(profile) {
            throw ConfigError(field: field("profiles[\(i)]"), problem: "\"\(profile)\" is not a valid profile name")
        }
        for (i, overlay) in overlays.enumerated() where !Names.isHostLabel(overlay) {
            throw ConfigError(field: field("overlays[\(i)]"), problem: "\"\(overlay)\" is not a valid overlay name")
        }
        for key in vars.keys.sorted() where !Names.isVariable(key) {
            throw ConfigError(
                field: field("vars.\(key)"),
                problem: "\"\(key)\" is not a variable name (a letter or _, then letters, digits or _; at most 64)")
        }
        for (key, value) in [("kernel", kernel), ("initramfs", initramfs)] {
            if let value, !Names.isSimpleName(value) {
                throw ConfigError(field: field(key), problem: "\"\(value)\" is not a valid file name")
            }
        }
        if let kernelRelease, !Names.isKernelRelease(kernelRelease) {
            throw ConfigError(
                field: field("kernelRelease"),
                problem: "\"\(kernelRelease)\" is not a kernel release (uname -r: 1-128 of A-Z a-z 0-9 . _ + ~ -)")
        }
        return node
    }

    /// The one place a node's layout text is checked: through ProvisionerCore's layout parser,
    /// so whatever that schema grows to is checked the same way the agent reads it.
    public static func validateLayout(_ text: String, source: String) throws(ConfigError) {
        _ = try DiskLayout(parsing: text, source: source)
    }
}

/// Name rules shared by the server and the CLI.
public enum Names {
    /// A DNS label: 1-63 of [A-Za-z0-9-], not starting or ending with `-`.
    public static func isHostLabel(_ s: String) -> Bool {
        guard (1...63).contains(s.utf8.count), s.first != "-", s.last != "-" else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }

    /// A template variable: `[A-Za-z_][A-Za-z0-9_]{0,63}` (no dots: they separate names in templates).
    public static func isVariable(_ s: String) -> Bool {
        guard (1...64).contains(s.utf8.count), let first = s.first, first == "_" || (first.isASCII && first.isLetter)
        else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// A kernel release as `uname -r` prints it and `/lib/modules` names it: 1-128 of
    /// [A-Za-z0-9._+~-], not starting with `.` or `-`.
    public static func isKernelRelease(_ s: String) -> Bool {
        guard (1...128).contains(s.utf8.count), let first = s.first, first != ".", first != "-" else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._+~-".contains($0)) }
    }

    /// A name that is safe as one path component: [A-Za-z0-9._-], 1-128 long, not starting with `.` or `-`.
    public static func isSimpleName(_ s: String) -> Bool {
        guard (1...128).contains(s.utf8.count), let first = s.first, first != ".", first != "-" else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
    }
}

/// Ethernet MAC addresses in one spelling.
public enum MACAddress {
    /// `52-54-00-AB-CD-EF`, `5254.00ab.cdef`, `525400abcdef` → `52:54:00:ab:cd:ef`; nil if not a MAC.
    public static func normalize(_ text: String) -> String? {
        let hex = text.lowercased().filter { $0 != ":" && $0 != "-" && $0 != "." }
        guard hex.count == 12, hex.allSatisfy({ $0.isHexDigit && $0.isASCII }) else { return nil }
        let chars = Array(hex)
        return stride(from: 0, to: 12, by: 2).map { String(chars[$0...$0 + 1]) }.joined(separator: ":")
    }
}
