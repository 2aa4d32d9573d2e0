/// One file a boot needs, in one of the server's file trees (`STATE/files/TREE/NAME`): served to iPXE
/// at `/boot/TREE/NAME` and to agents at `/files/TREE/NAME`.
public struct BootFile: Codable, Hashable, Sendable {
    /// `kernels`, `initramfs` (what the admin put there) or `derived` (made from image versions,
    /// named by their SHA-256).
    public var tree: String
    public var name: String

    public init(_ tree: String, _ name: String) {
        self.tree = tree
        self.name = name
    }

    public static func kernel(_ name: String) -> BootFile { BootFile("kernels", name) }
    public static func initramfs(_ name: String) -> BootFile { BootFile("initramfs", name) }
    public static func derived(_ hash: String) -> BootFile { BootFile("derived", hash) }

    /// The path on the agents' HTTPS listener.
    public var apiPath: String { "/files/\(tree)/\(name)" }
    /// The path on the plain-HTTP boot listener.
    public var bootPath: String { "/boot/\(tree)/\(name)" }
}

/// What a node boots: a kernel and the initrds the kernel unpacks in order (our kernel-independent
/// initramfs first, then the modules of that kernel), and why (docs/boot.md, "Which kernel boots").
public struct BootFiles: Codable, Hashable, Sendable {
    public enum Source: String, Codable, Hashable, Sendable {
        /// The newest kernel of the node's image version.
        case image
        /// The kernel release the node pins (`kernelRelease`).
        case pinned
        /// Kernel and initramfs files the node names (`kernel`, `initramfs`).
        case files
        /// The server's default kernel: an unknown machine, a node without an image, or (with a warning)
        /// an image that carries no kernel.
        case serverDefault = "default"
    }

    public var kernel: BootFile
    public var initrds: [BootFile]
    /// The kernel's release when it comes from the image.
    public var release: String?
    public var source: Source
    /// One line saying why: `newest of 2 kernels in debian@0a1b2c3d4e5f`.
    public var reason: String
    /// Set when the node boots something other than what its image implies; goes into its session.
    public var warning: String?

    public init(
        kernel: BootFile, initrds: [BootFile], release: String? = nil, source: Source, reason: String,
        warning: String? = nil
    ) {
        self.kernel = kernel
        self.initrds = initrds
        self.release = release
        self.source = source
        self.reason = reason
        self.warning = warning
    }

    /// The server's own kernel and its full initramfs (`files/kernels/default`, `files/initramfs/default`).
    public static func serverDefault(reason: String, warning: String? = nil) -> BootFiles {
        BootFiles(
            kernel: .kernel("default"), initrds: [.initramfs("default")], source: .serverDefault, reason: reason,
            warning: warning)
    }
}

/// A kernel of an image version as the server can boot it.
public struct KernelOffer: Codable, Hashable, Sendable {
    public var release: String
    /// The derived kernel file and modules initramfs (SHA-256 names in `files/derived`); nil with
    /// `problem` when they could not be made.
    public var kernelFile: String?
    public var modulesFile: String?
    public var problem: String?

    public init(release: String, kernelFile: String?, modulesFile: String?, problem: String? = nil) {
        self.release = release
        self.kernelFile = kernelFile
        self.modulesFile = modulesFile
        self.problem = problem
    }
}

/// Why a node cannot boot: its pinned kernel is not in its image version.
public struct BootSelectionError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Which kernel a node boots (docs/boot.md, rows K1–K8). Pure: the server gives what the image
/// offers, newest first.
public enum BootSelection {
    /// The kernel-independent provisioning initramfs every image kernel boots with.
    public static let base = BootFile.initramfs("base")

    /// - Parameters:
    ///   - image: how the image version is named in messages (`debian@0a1b2c3d4e5f`), nil when the
    ///     node has none.
    ///   - kernels: the version's bootable kernels, newest first; nil when the server cannot read the
    ///     version (an image outside the registry).
    ///   - hasBase: whether the server has `files/initramfs/base`.
    public static func choose(node: NodeConfig?, image: String?, kernels: [KernelOffer]?, hasBase: Bool)
        throws(BootSelectionError) -> BootFiles
    {
        guard let node else {  // K1
            return .serverDefault(reason: "not a node yet: the server's default kernel")
        }
        if node.kernel != nil || node.initramfs != nil {  // K2
            return BootFiles(
                kernel: .kernel(node.kernel ?? "default"), initrds: [.initramfs(node.initramfs ?? "default")],
                source: .files, reason: "the node names its kernel and initramfs files")
        }
        guard let image, let kernels else {  // K3
            return .serverDefault(reason: image == nil ? "the node has no image" : "the image is not in the registry")
        }
        let offered = kernels.map(\.release).joined(separator: ", ")
        let chosen: KernelOffer
        let source: BootFiles.Source
        let reason: String
        if let pin = node.kernelRelease {  // K4, K5
            guard let offer = kernels.first(where: { $0.release == pin }) else {
                throw BootSelectionError(
                    description: "node \(node.name) pins kernel \(pin), which \(image) does not carry"
                        + (kernels.isEmpty ? " (it has no kernel)" : " (it has \(offered))"))
            }
            (chosen, source, reason) = (offer, .pinned, "pinned by the node (kernelRelease)")
        } else if let newest = kernels.first {  // K6
            (chosen, source, reason) = (
                newest, .image,
                kernels.count == 1 ? "the kernel of \(image)" : "newest of \(kernels.count) kernels in \(image)"
            )
        } else {  // K7
            return .serverDefault(
                reason: "\(image) carries no kernel",
                warning: "\(image) carries no kernel (boot/vmlinuz-RELEASE with lib/modules/RELEASE): booting the "
                    + "server's default kernel, whose modules the image does not have")
        }
        guard hasBase, let kernelFile = chosen.kernelFile, let modulesFile = chosen.modulesFile else {  // K8
            let why =
                !hasBase
                ? "the server has no files/initramfs/base (make initramfs-base)"
                : "its boot files could not be made: \(chosen.problem ?? "unknown")"
            return .serverDefault(
                reason: "\(chosen.release) of \(image) cannot boot",
                warning: "kernel \(chosen.release) of \(image) cannot boot: \(why); booting the server's default kernel")
        }
        return BootFiles(
            kernel: .derived(kernelFile), initrds: [base, .derived(modulesFile)], release: chosen.release,
            source: source, reason: reason)
    }
}
