import ProvisionerCore

/// The image registry's wire types (docs/images.md): images with branches, one of them live, and
/// versions named by their manifest's hash. Objects and manifests themselves travel in the image
/// formats of docs/image-format.md.

extension ImageRef {
    /// Reads `NAME`, `NAME/BRANCH` or `NAME@VERSION` (the spellings of the CLI and of docs/images.md).
    public init(parsing text: String) throws(ConfigError) {
        var name = Substring(text)
        var version: String?
        var branch: String?
        if let at = name.firstIndex(of: "@") {
            version = String(name[name.index(after: at)...])
            name = name[..<at]
        }
        if let slash = name.firstIndex(of: "/") {
            branch = String(name[name.index(after: slash)...])
            name = name[..<slash]
        }
        guard ImageNames.isValid(String(name)) else {
            throw ConfigError(field: "image", problem: "\"\(name)\" is not an image name ([a-z0-9][a-z0-9._-]{0,63})")
        }
        if let branch, !ImageNames.isValid(branch) {
            throw ConfigError(field: "image", problem: "\"\(branch)\" is not a branch name ([a-z0-9][a-z0-9._-]{0,63})")
        }
        if let version, !ImageNames.isVersionID(version) {
            throw ConfigError(field: "image", problem: "\"\(version)\" is not a version id (64 lowercase hex digits)")
        }
        guard version == nil || branch == nil else {
            throw ConfigError(field: "image", problem: "\(text): name a branch or a version, not both")
        }
        self.init(name: String(name), version: version, branch: branch)
    }

    /// `NAME`, `NAME/BRANCH` or `NAME@VERSION`.
    public var spelled: String {
        if let version { return "\(name)@\(version)" }
        if let branch { return "\(name)/\(branch)" }
        return name
    }
}

/// Counts of what a version changes against the one before it on its branch.
public struct ChangeSummary: Codable, Hashable, Sendable {
    public var added: Int
    public var changed: Int
    public var removed: Int
    /// Bytes of file content that is new (added files, and files whose content changed).
    public var contentBytes: UInt64

    public init(added: Int = 0, changed: Int = 0, removed: Int = 0, contentBytes: UInt64 = 0) {
        self.added = added
        self.changed = changed
        self.removed = removed
        self.contentBytes = contentBytes
    }

    public var text: String { "+\(added) ~\(changed) -\(removed) entries, \(contentBytes) bytes of new content" }
}

/// One version as the registry records it.
public struct ImageVersionRecord: Codable, Hashable, Sendable {
    public var id: String
    /// The branch head it replaced when it was published (nil for a first version).
    public var parent: String?
    /// The branch it was published to.
    public var branch: String
    public var createdAt: String
    /// The admin certificate that published it.
    public var createdBy: String
    public var entries: Int
    public var contentBytes: UInt64
    public var summary: ChangeSummary
    /// The releases of the kernels it carries, newest (the default) first; nil when not looked at.
    public var kernels: [String]?

    public init(
        id: String, parent: String?, branch: String, createdAt: String, createdBy: String, entries: Int,
        contentBytes: UInt64, summary: ChangeSummary
    ) {
        self.id = id
        self.parent = parent
        self.branch = branch
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.entries = entries
        self.contentBytes = contentBytes
        self.summary = summary
    }
}

public struct ImageBranchRecord: Codable, Hashable, Sendable {
    public var name: String
    public var head: String
    public var updatedAt: String
    public init(name: String, head: String, updatedAt: String) {
        self.name = name
        self.head = head
        self.updatedAt = updatedAt
    }
}

/// An image: its live branch, its branches and every version (oldest first).
public struct ImageRecord: Codable, Hashable, Sendable {
    public var name: String
    public var live: String
    public var branches: [ImageBranchRecord]
    public var versions: [ImageVersionRecord]
    public init(name: String, live: String, branches: [ImageBranchRecord], versions: [ImageVersionRecord]) {
        self.name = name
        self.live = live
        self.branches = branches
        self.versions = versions
    }

    /// The version a node following `ref` boots, if there is one.
    public func resolve(_ ref: ImageRef) -> String? {
        if let version = ref.version { return versions.contains { $0.id == version } ? version : nil }
        let branch = ref.branch ?? live
        return branches.first { $0.name == branch }?.head
    }
}

/// `POST /api/v1/admin/images/NAME/uploads?branch=B` answers with the upload and the objects the
/// server lacks; the client sends those (`POST /api/v1/admin/objects`), then commits the upload.
public struct UploadStatus: Codable, Hashable, Sendable {
    /// The upload's id: the version id of its manifest (the same tree always resumes the same upload).
    public var upload: String
    public var image: String
    public var branch: String
    /// Distinct objects the manifest names (holes excluded).
    public var objects: Int
    /// Those the server does not have yet, as hex ids.
    public var missing: [String]

    public init(upload: String, image: String, branch: String, objects: Int, missing: [String]) {
        self.upload = upload
        self.image = image
        self.branch = branch
        self.objects = objects
        self.missing = missing
    }
}

/// What `POST /api/v1/admin/objects` stored.
public struct ObjectsStored: Codable, Hashable, Sendable {
    public var stored: Int
    public var alreadyPresent: Int
    public var bytes: UInt64
    public init(stored: Int, alreadyPresent: Int, bytes: UInt64) {
        self.stored = stored
        self.alreadyPresent = alreadyPresent
        self.bytes = bytes
    }
}

/// A branch head moved (publish, rollback): which version it left and which it names now.
public struct BranchMove: Codable, Hashable, Sendable {
    public var image: String
    public var branch: String
    public var previous: String?
    public var version: String
    public var summary: ChangeSummary
    public init(image: String, branch: String, previous: String?, version: String, summary: ChangeSummary) {
        self.image = image
        self.branch = branch
        self.previous = previous
        self.version = version
        self.summary = summary
    }
}

/// `POST /api/v1/admin/images/NAME/branches`: a new branch at `from` (a version id or a branch; the
/// live branch's head when absent).
public struct BranchCreateRequest: Codable, Hashable, Sendable {
    public var name: String
    public var from: String?
    public init(name: String, from: String? = nil) {
        self.name = name
        self.from = from
    }
}

/// `PUT /api/v1/admin/images/NAME/live`.
public struct LiveRequest: Codable, Hashable, Sendable {
    public var branch: String
    public init(branch: String) { self.branch = branch }
}

/// `POST /api/v1/admin/images/NAME/branches/BRANCH/rollback`: back to `to` (a version of the image),
/// or to the version the head replaced when absent.
public struct RollbackRequest: Codable, Hashable, Sendable {
    public var to: String?
    public init(to: String? = nil) { self.to = to }
}

/// `GET /api/v1/admin/images/NAME/diff?a=&b=`: what changes from version `from` to `to`.
public struct ImageDiff: Codable, Hashable, Sendable {
    public struct Entry: Codable, Hashable, Sendable {
        public var path: String
        /// `added`, `removed` or `changed`.
        public var change: String
        /// For `changed`: `kind`, `content`, `mode`, `owner`, `mtime`, `xattrs`, `target`, `device`, `link`.
        public var aspects: [String]
        public init(path: String, change: String, aspects: [String]) {
            self.path = path
            self.change = change
            self.aspects = aspects
        }
    }
    public var image: String
    public var from: String
    public var to: String
    public var summary: ChangeSummary
    /// At most 100,000 entries (the summary counts all).
    public var entries: [Entry]
    public init(image: String, from: String, to: String, summary: ChangeSummary, entries: [Entry]) {
        self.image = image
        self.from = from
        self.to = to
        self.summary = summary
        self.entries = entries
    }
}

/// `GET /api/v1/admin/images/NAME/kernels?version=REF`: the kernels a version carries, what the server
/// made of each, and which nodes boot which.
public struct VersionKernels: Codable, Hashable, Sendable {
    public var image: String
    public var version: String
    public var kernels: [KernelInfo]
    /// Kernel-like things that are not offered, and why.
    public var problems: [String]
    /// The nodes whose image resolves to this version, with what each boots.
    public var nodes: [NodeBoot]

    public init(image: String, version: String, kernels: [KernelInfo], problems: [String], nodes: [NodeBoot]) {
        self.image = image
        self.version = version
        self.kernels = kernels
        self.problems = problems
        self.nodes = nodes
    }
}

/// One kernel of an image version.
public struct KernelInfo: Codable, Hashable, Sendable {
    public var release: String
    public var kernelPath: String
    public var kernelSize: UInt64
    public var modulesPath: String
    public var moduleCount: Int
    /// The files made for it (`files/derived`), nil with `problem` when they could not be made.
    public var kernelFile: String?
    public var modulesFile: String?
    public var modulesFileSize: Int?
    /// Modules and firmware files in the modules initramfs, and how long making it took.
    public var initrdModules: Int?
    public var initrdFirmware: Int?
    public var seconds: Double?
    public var problem: String?

    public init(release: String, kernelPath: String, kernelSize: UInt64, modulesPath: String, moduleCount: Int) {
        self.release = release
        self.kernelPath = kernelPath
        self.kernelSize = kernelSize
        self.modulesPath = modulesPath
        self.moduleCount = moduleCount
    }
}

/// What one node boots, or why it cannot (`GET /api/v1/admin/nodes/NAME/boot`).
public struct NodeBoot: Codable, Hashable, Sendable {
    public var node: String
    /// `debian@0a1b2c3d4e5f` when the node has an image.
    public var image: String?
    public var boot: BootFiles?
    public var problem: String?

    public init(node: String, image: String?, boot: BootFiles?, problem: String?) {
        self.node = node
        self.image = image
        self.boot = boot
        self.problem = problem
    }
}
