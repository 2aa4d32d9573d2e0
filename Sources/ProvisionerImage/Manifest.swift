/// What kind of filesystem entry a manifest entry is. The raw values are the manifest encoding.
public enum EntryKind: UInt8, Sendable, CaseIterable {
    case file = 1
    case directory = 2
    case symlink = 3
    /// Another name of an earlier entry (same inode).
    case hardlink = 4
    case charDevice = 5
    case blockDevice = 6
    case fifo = 7
    case socket = 8

    public var name: String {
        switch self {
        case .file: "file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .hardlink: "hardlink"
        case .charDevice: "character device"
        case .blockDevice: "block device"
        case .fifo: "fifo"
        case .socket: "socket"
        }
    }
}

/// One piece of a file's content: `length` bytes whose SHA-256 is `hash`.
public struct Chunk: Hashable, Sendable {
    public var length: UInt32
    public var hash: ObjectHash
    public init(length: UInt32, hash: ObjectHash) {
        self.length = length
        self.hash = hash
    }

    /// A hole of `length` zero bytes: no object, nothing stored, sent or written (the target
    /// file keeps it as a hole). The importer makes these from the holes of sparse files.
    public static func hole(length: UInt32) -> Chunk { Chunk(length: length, hash: .hole) }
    public var isHole: Bool { hash == .hole }

    /// Hole chunks are at most 1 GiB (a 1 TiB sparse file is 1024 of them).
    public static let maxHole: UInt32 = 1 << 30
}

/// An extended attribute, name and value as raw bytes.
public struct Xattr: Hashable, Sendable {
    public var name: [UInt8]
    public var value: [UInt8]
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
    public init(_ name: String, _ value: [UInt8]) { self.init(name: Array(name.utf8), value: value) }
}

/// One entry of an image version: everything needed to recreate it bit for bit.
public struct Entry: Hashable, Sendable {
    /// "/"-separated, relative to the image root; "" is the root directory itself. Raw bytes.
    public var path: [UInt8]
    public var kind: EntryKind
    /// Permission bits with setuid, setgid and sticky (st_mode & 07777).
    public var mode: UInt32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var mtimeSeconds: Int64 = 0
    public var mtimeNanoseconds: UInt32 = 0
    /// Sorted by name.
    public var xattrs: [Xattr] = []
    /// Files: the size and the chunks, in order.
    public var size: UInt64 = 0
    public var chunks: [Chunk] = []
    /// Symlinks: the target, never interpreted.
    public var target: [UInt8] = []
    /// Hardlinks: the index of the entry this is another name of.
    public var linkIndex: Int = 0
    /// Devices.
    public var major: UInt32 = 0
    public var minor: UInt32 = 0

    public init(path: [UInt8], kind: EntryKind) {
        self.path = path
        self.kind = kind
    }

    public init(_ path: String, _ kind: EntryKind) { self.init(path: Array(path.utf8), kind: kind) }

    public var pathString: String { String(decoding: path, as: UTF8.self) }
}

/// An image version: every entry, sorted by path byte-wise, the root directory first.
public struct Manifest: Hashable, Sendable {
    public var entries: [Entry]
    public init(entries: [Entry]) { self.entries = entries }

    /// Total bytes of regular file content.
    public var contentBytes: UInt64 { entries.reduce(0) { $0 + ($1.kind == .file ? $1.size : 0) } }
}

/// Compares two paths the way the manifest sorts them (byte-wise).
@inlinable
public func pathLess(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.lexicographicallyPrecedes(b)
}

/// The reserved name of the node-side state directory at the root of a target.
public let stateDirectoryName: [UInt8] = Array(".provisioner-state".utf8)
