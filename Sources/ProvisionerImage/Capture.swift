import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Where publishing reads the objects the server asks for, in their stored form (zstd frames).
public protocol StoredObjectSource: Sendable {
    /// The object as stored, nil when this source does not have it.
    func storedObject(_ hash: ObjectHash) throws -> [UInt8]?
}

extension ImageStore: StoredObjectSource {}

/// Where a chunk's bytes are in a tree described by a manifest: an entry (a regular file) and an
/// offset in it.
public struct ChunkLocation: Hashable, Sendable {
    public var entry: Int
    public var offset: UInt64
    public var length: Int

    public init(entry: Int, offset: UInt64, length: Int) {
        self.entry = entry
        self.offset = offset
        self.length = length
    }

    /// The first place each object of `wanted` (every object when nil) appears in the manifest:
    /// its file and the offset there (the sum of the chunks before it, holes included).
    public static func firstOccurrences(in manifest: Manifest, of wanted: Set<ObjectHash>? = nil) -> [ObjectHash: ChunkLocation] {
        var found: [ObjectHash: ChunkLocation] = [:]
        for (i, entry) in manifest.entries.enumerated() where entry.kind == .file {
            var offset: UInt64 = 0
            for chunk in entry.chunks {
                defer { offset += UInt64(chunk.length) }
                if chunk.isHole || found[chunk.hash] != nil { continue }
                if let wanted, !wanted.contains(chunk.hash) { continue }
                found[chunk.hash] = ChunkLocation(entry: i, offset: offset, length: Int(chunk.length))
            }
        }
        return found
    }
}

/// The objects of a captured tree, read again from the live files (nothing was stored when the
/// tree was hashed): each chunk is read where the manifest says, checked against its hash and
/// compressed as the store would. A file that changed since it was hashed is an error naming it,
/// so a version never names content the server did not get.
public final class LiveTreeObjects: StoredObjectSource, @unchecked Sendable {
    public let root: String
    let manifest: Manifest
    let locations: [ObjectHash: ChunkLocation]
    let rootfd: Int32

    public init(root: String, manifest: Manifest) throws {
        self.root = root
        self.manifest = manifest
        self.locations = ChunkLocation.firstOccurrences(in: manifest)
        rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootfd >= 0 else { throw SystemError.fromErrno("opening the captured root", root) }
    }

    deinit { close(rootfd) }

    public func storedObject(_ hash: ObjectHash) throws -> [UInt8]? {
        guard let at = locations[hash] else { return nil }
        let path = manifest.entries[at.entry].path
        let shown = root == "/" ? "/" + displayPath(path) : root + "/" + displayPath(path)
        let fd = withCName(path) { openat(rootfd, $0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw SystemError.fromErrno("opening again to send its content", shown) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: at.length)
        var done = 0
        while done < at.length {
            let n = bytes.withUnsafeMutableBytes { b in
                FileIO.retrySize { pread(fd, b.baseAddress! + done, at.length - done, off_t(at.offset) + off_t(done)) }
            }
            if n < 0 { throw SystemError.fromErrno("reading", shown) }
            if n == 0 {
                throw SystemError(
                    "reading", shown, cause: "the file shrank since it was hashed (nothing was committed; capture again)")
            }
            done += n
        }
        guard ObjectHash.of(bytes) == hash else {
            throw SystemError(
                "reading", shown,
                cause: "its content at offset \(at.offset) changed since it was hashed (nothing was committed; capture again)")
        }
        return Zstd.compress(bytes, level: 3)
    }
}

/// A manifest a node keeps in its state directory, whose version the server has: what a capture's
/// manifest is sent as a delta from (docs/images.md, "Capturing a running node", rows B1-B4).
public struct KeptManifest: Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// `.provisioner-state/captured` and `captured-manifest`: written after each capture.
        case lastCapture = "the last capture"
        /// `.provisioner-state/applied` and `manifest`: written by each image sync.
        case applied = "the version the node runs"
    }
    public var kind: Kind
    public var image: String
    public var version: ObjectHash

    public init(kind: Kind, image: String, version: ObjectHash) {
        self.kind = kind
        self.image = image
        self.version = version
    }

    /// Where the record and the manifest of each kind are, relative to the root.
    public static func files(_ kind: Kind) -> (record: String, manifest: String) {
        switch kind {
        case .lastCapture: (".provisioner-state/captured", ".provisioner-state/captured-manifest")
        case .applied: (".provisioner-state/applied", ".provisioner-state/manifest")
        }
    }

    /// `image NAME\nversion ID\n` (the format of `applied`) back to its two fields.
    public static func parseRecord(_ text: String) -> (image: String, version: ObjectHash)? {
        var image: String?
        var version: ObjectHash?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("image ") { image = String(line.dropFirst(6)) }
            if line.hasPrefix("version ") { version = ObjectHash(hex: String(line.dropFirst(8))) }
        }
        guard let image, let version else { return nil }
        return (image, version)
    }

    public static func record(image: String, version: ObjectHash) -> String { "image \(image)\nversion \(version.hex)\n" }

    /// B1: the last capture into the same image (the closest tree: a small change since is a small
    /// delta); B2: the version the node runs, of any image (a first capture of a node differs from
    /// it by what the node changed); B3: the last capture into another image; B4: none, the whole
    /// manifest is sent.
    public static func choose(for target: String, from kept: [KeptManifest]) -> (KeptManifest, rule: String)? {
        if let m = kept.first(where: { $0.kind == .lastCapture && $0.image == target }) { return (m, "B1") }
        if let m = kept.first(where: { $0.kind == .applied }) { return (m, "B2") }
        if let m = kept.first(where: { $0.kind == .lastCapture }) { return (m, "B3") }
        return nil
    }
}
