import CImageSys
import ProvisionerCore
import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One version of an image, as the store's log records it.
public struct ImageVersionInfo: Codable, Hashable, Sendable {
    public var id: String
    /// Unix seconds of the import.
    public var created: Int64
    public var entries: Int
    public var bytes: UInt64
}

/// An image and its versions, oldest first.
public struct ImageInfo: Codable, Hashable, Sendable {
    public var name: String
    public var latest: String?
    public var versions: [ImageVersionInfo]
}

/// The image store on disk (docs/image-format.md, "Store layout"): content-addressed objects
/// and per-image manifests. Objects and manifests are immutable and written atomically.
public struct ImageStore: Sendable {
    public let root: String

    public init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// Image names: [a-z0-9][a-z0-9._-]{0,63} (`ImageNames`, the registry's rule).
    public static func isValidName(_ name: String) -> Bool { ImageNames.isValid(name) }

    public func objectPath(_ hash: ObjectHash) -> String {
        let hex = hash.hex
        return "\(root)/objects/\(hex.prefix(2))/\(hex)"
    }

    func imageDirectory(_ name: String) -> String { "\(root)/images/\(name)" }

    public func manifestPath(image: String, version: ObjectHash) -> String {
        "\(imageDirectory(image))/versions/\(version.hex)"
    }

    public func hasObject(_ hash: ObjectHash) -> Bool { FileIO.exists(objectPath(hash)) }

    /// The object as stored (a zstd frame), nil if the store does not have it.
    public func storedObject(_ hash: ObjectHash) throws -> [UInt8]? {
        try FileIO.read(objectPath(hash), limit: PackFormat.maxObject)
    }

    /// Stores an object (its uncompressed bytes) unless already there; returns the stored size
    /// and whether it was new. Objects are not fsynced one by one: `publish` syncs the filesystem
    /// before a manifest can name them.
    @discardableResult
    public func putObject(_ hash: ObjectHash, content: UnsafeRawBufferPointer) throws -> (stored: Int, new: Bool) {
        let path = objectPath(hash)
        var st = stat()
        if lstat(path, &st) == 0 { return (Int(st.st_size), false) }
        let compressed = Zstd.compress(content, level: 3)
        let dir = String(path[..<path.lastIndex(of: "/")!])
        try FileIO.makeDirectories(dir)
        try FileIO.writeAtomically(path, compressed, sync: false)
        return (compressed.count, true)
    }

    /// Adds a version of `image` (creating the image) and makes it the latest. Returns its id.
    public func publish(image: String, manifest encoded: [UInt8], entries: Int, bytes: UInt64, now: Int64) throws
        -> ObjectHash
    {
        guard Self.isValidName(image) else {
            throw SystemError("publishing image", image, cause: "not a valid image name ([a-z0-9][a-z0-9._-]{0,63})")
        }
        let id = ManifestCodec.versionID(of: encoded)
        let dir = imageDirectory(image)
        try FileIO.makeDirectories("\(dir)/versions")
        // Every object the manifest names must be on disk before the manifest is.
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = CImageSys_syncfs(fd)
            close(fd)
        }
        let path = manifestPath(image: image, version: id)
        if !FileIO.exists(path) {
            try FileIO.writeAtomically(path, Zstd.compress(encoded, level: 9))
        }
        var log = try FileIO.read("\(dir)/log") ?? []
        log.append(contentsOf: Array("\(id.hex) \(now) \(entries) \(bytes)\n".utf8))
        try FileIO.writeAtomically("\(dir)/log", log)
        try FileIO.writeAtomically("\(dir)/latest", Array("\(id.hex)\n".utf8))
        return id
    }

    /// Stores an object received in its stored form (a zstd frame, as packs carry it) after checking
    /// that it decompresses to at most one chunk's bytes whose SHA-256 is `hash`. Returns whether it
    /// was new. A damaged or mislabelled object is refused and nothing is written.
    @discardableResult
    public func putStoredObject(_ hash: ObjectHash, stored: [UInt8], context: DecompressionContext) throws -> Bool {
        guard hash != .hole else { throw SystemError("storing object", hash.hex, cause: "the hole id is not an object") }
        if hasObject(hash) { return false }
        let content = try stored.withUnsafeBytes {
            try Zstd.decompress(
                $0, expectedSize: nil, limit: Int(ManifestLimits.maxChunk), subject: "object \(hash.hex)",
                context: context)
        }
        guard ObjectHash.of(content) == hash else {
            throw ObjectMismatch(expected: hash, actual: ObjectHash.of(content))
        }
        let path = objectPath(hash)
        try FileIO.makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
        try FileIO.writeAtomically(path, stored, sync: false)
        return true
    }

    /// An object whose bytes do not hash to the id it was sent under.
    public struct ObjectMismatch: Error, CustomStringConvertible {
        public var expected: ObjectHash
        public var actual: ObjectHash
        public var description: String {
            "object \(expected.hex): its content hashes to \(actual.hex) (damaged or mislabelled)"
        }
    }

    /// Writes a version's manifest (after syncing the objects it names) without moving `latest`:
    /// the server's registry decides which version a branch names.
    public func addVersion(image: String, manifest encoded: [UInt8]) throws -> ObjectHash {
        guard Self.isValidName(image) else {
            throw SystemError("adding a version to image", image, cause: "not a valid image name")
        }
        let id = ManifestCodec.versionID(of: encoded)
        try FileIO.makeDirectories("\(imageDirectory(image))/versions")
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = CImageSys_syncfs(fd)
            close(fd)
        }
        let path = manifestPath(image: image, version: id)
        if !FileIO.exists(path) { try FileIO.writeAtomically(path, Zstd.compress(encoded, level: 9)) }
        return id
    }

    /// Points `latest` (what `GET /v1/images/NAME/latest` answers) at a version.
    public func setLatest(image: String, version: ObjectHash) throws {
        guard Self.isValidName(image) else { return }
        try FileIO.makeDirectories(imageDirectory(image))
        try FileIO.writeAtomically("\(imageDirectory(image))/latest", Array("\(version.hex)\n".utf8))
    }

    /// Where an upload's manifest waits for its objects (STATE/images/uploads/IMAGE/ID).
    public func uploadPath(image: String, id: ObjectHash) -> String { "\(root)/uploads/\(image)/\(id.hex)" }

    public func saveUpload(image: String, manifest encoded: [UInt8]) throws -> ObjectHash {
        let id = ManifestCodec.versionID(of: encoded)
        try FileIO.makeDirectories("\(root)/uploads/\(image)")
        try FileIO.writeAtomically(uploadPath(image: image, id: id), Zstd.compress(encoded, level: 3))
        return id
    }

    /// An upload's manifest, checked against its id; nil if there is no such upload.
    public func uploadManifest(image: String, id: ObjectHash) throws -> [UInt8]? {
        guard Self.isValidName(image), let stored = try FileIO.read(uploadPath(image: image, id: id)) else { return nil }
        let bytes = try stored.withUnsafeBytes { try Zstd.decompress($0, expectedSize: nil, subject: "upload \(id.hex)") }
        guard ObjectHash.of(bytes) == id else {
            throw SystemError("reading upload", uploadPath(image: image, id: id), cause: "its hash is not its id (damaged)")
        }
        return bytes
    }

    public func removeUpload(image: String, id: ObjectHash) {
        _ = unlink(uploadPath(image: image, id: id))
    }

    /// The latest version of an image; nil if the image does not exist.
    public func latest(image: String) throws -> ObjectHash? {
        guard Self.isValidName(image) else { return nil }
        guard let text = try FileIO.read("\(imageDirectory(image))/latest", limit: 4096) else { return nil }
        let line = String(decoding: text, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? ""
        guard let id = ObjectHash(hex: line) else {
            throw SystemError("reading", "\(imageDirectory(image))/latest", cause: "does not hold a version id")
        }
        return id
    }

    /// The stored manifest (a zstd frame), nil if there is no such version.
    public func storedManifest(image: String, version: ObjectHash) throws -> [UInt8]? {
        guard Self.isValidName(image) else { return nil }
        return try FileIO.read(manifestPath(image: image, version: version))
    }

    /// The encoded manifest of a version, decompressed and checked against its id.
    public func manifestBytes(image: String, version: ObjectHash) throws -> [UInt8]? {
        guard let stored = try storedManifest(image: image, version: version) else { return nil }
        let bytes = try stored.withUnsafeBytes {
            try Zstd.decompress($0, expectedSize: nil, subject: "manifest \(image)@\(version.hex)")
        }
        guard ObjectHash.of(bytes) == version else {
            throw SystemError(
                "reading manifest", manifestPath(image: image, version: version),
                cause: "its hash is not its version id (damaged)")
        }
        return bytes
    }

    /// Every image with its versions (`GET /v1/images`).
    public func listImages() throws -> [ImageInfo] {
        var out: [ImageInfo] = []
        for name in try FileIO.list("\(root)/images") ?? [] where Self.isValidName(name) {
            var info = ImageInfo(name: name, latest: try latest(image: name)?.hex, versions: [])
            let log = try FileIO.read("\(imageDirectory(name))/log") ?? []
            for line in String(decoding: log, as: UTF8.self).split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count == 4, ObjectHash(hex: f[0]) != nil else { continue }
                info.versions.append(
                    ImageVersionInfo(
                        id: String(f[0]), created: Int64(f[1]) ?? 0, entries: Int(f[2]) ?? 0, bytes: UInt64(f[3]) ?? 0))
            }
            out.append(info)
        }
        return out
    }
}
