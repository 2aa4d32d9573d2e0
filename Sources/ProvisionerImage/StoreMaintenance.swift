import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Garbage collection and checking of an image store (docs/images.md, "Deleting and collecting").
///
/// The roots are every manifest in the store: the versions of every image (`images/*/versions/*`)
/// and the uploads under way (`uploads/*/*`). An object no root names is removed, unless it is
/// younger than the grace period: an upload's objects may arrive before or while its manifest is
/// read, and an object written during the walk must never be lost.
public enum StoreMaintenance {
    /// One object file as found on disk.
    public struct ObjectFile: Hashable, Sendable {
        public var hash: ObjectHash
        public var bytes: UInt64
        /// Seconds since 1970 of its last change.
        public var modified: Int64
        public init(hash: ObjectHash, bytes: UInt64, modified: Int64) {
            self.hash = hash
            self.bytes = bytes
            self.modified = modified
        }
    }

    /// Which objects to remove: not referenced, and last changed before `cutoff`. Pure.
    public static func collectable(_ objects: [ObjectFile], referenced: Set<ObjectHash>, cutoff: Int64) -> [ObjectFile] {
        objects.filter { !referenced.contains($0.hash) && $0.modified < cutoff }
    }

    public struct GCReport: Codable, Hashable, Sendable {
        public var manifests: Int
        public var objects: Int
        public var removed: Int
        public var freedBytes: UInt64
        /// Unreferenced objects kept because they are younger than the grace period.
        public var keptYoung: Int
        /// Boot files the server made for kernels no version carries any more (`files/derived`),
        /// removed, and the bytes they held (nil from a store without a server).
        public var bootFilesRemoved: Int?
        public var bootFilesFreedBytes: UInt64?
        public init(manifests: Int, objects: Int, removed: Int, freedBytes: UInt64, keptYoung: Int) {
            self.manifests = manifests
            self.objects = objects
            self.removed = removed
            self.freedBytes = freedBytes
            self.keptYoung = keptYoung
        }
    }

    /// Every manifest of the store, as (path, expected id): versions and uploads.
    public static func manifestFiles(_ store: ImageStore) throws -> [(path: String, id: ObjectHash)] {
        var out: [(String, ObjectHash)] = []
        for image in try FileIO.list("\(store.root)/images") ?? [] where ImageStore.isValidName(image) {
            let dir = "\(store.root)/images/\(image)/versions"
            for name in try FileIO.list(dir) ?? [] { if let id = ObjectHash(hex: name) { out.append(("\(dir)/\(name)", id)) } }
        }
        for image in try FileIO.list("\(store.root)/uploads") ?? [] where ImageStore.isValidName(image) {
            let dir = "\(store.root)/uploads/\(image)"
            for name in try FileIO.list(dir) ?? [] { if let id = ObjectHash(hex: name) { out.append(("\(dir)/\(name)", id)) } }
        }
        return out
    }

    /// A stored manifest file, decompressed, checked against its id and decoded.
    public static func readManifest(path: String, id: ObjectHash) throws -> Manifest {
        guard let stored = try FileIO.read(path) else { throw SystemError("reading manifest", path, cause: "gone") }
        let bytes = try stored.withUnsafeBytes { try Zstd.decompress($0, expectedSize: nil, subject: "manifest \(path)") }
        guard ObjectHash.of(bytes) == id else {
            throw SystemError("reading manifest", path, cause: "its hash is not its id (damaged)")
        }
        return try ManifestCodec.decode(bytes)
    }

    /// Every object file, with its size and age.
    public static func objectFiles(_ store: ImageStore) throws -> [ObjectFile] {
        var out: [ObjectFile] = []
        for prefix in try FileIO.list("\(store.root)/objects") ?? [] {
            let dir = "\(store.root)/objects/\(prefix)"
            for name in try FileIO.list(dir) ?? [] {
                guard let hash = ObjectHash(hex: name) else { continue }
                var st = stat()
                guard lstat("\(dir)/\(name)", &st) == 0 else { continue }
                out.append(ObjectFile(hash: hash, bytes: UInt64(st.st_size), modified: Int64(st.st_mtim.tv_sec)))
            }
        }
        return out
    }

    public static func referenced(by manifest: Manifest, into set: inout Set<ObjectHash>) {
        for entry in manifest.entries where entry.kind == .file {
            for chunk in entry.chunks where !chunk.isHole { set.insert(chunk.hash) }
        }
    }

    /// Marks from every manifest, then removes what `collectable` names. A manifest that cannot be
    /// read stops the collection before anything is removed (its objects would look unreferenced).
    public static func collect(_ store: ImageStore, graceSeconds: Int64, now: Int64) throws -> GCReport {
        let manifests = try manifestFiles(store)
        var referenced = Set<ObjectHash>()
        for (path, id) in manifests {
            do {
                Self.referenced(by: try readManifest(path: path, id: id), into: &referenced)
            } catch {
                throw SystemError("collecting garbage", path, cause: "\(error); nothing was removed (run image fsck)")
            }
        }
        let objects = try objectFiles(store)
        let unreferenced = objects.filter { !referenced.contains($0.hash) }
        let doomed = collectable(objects, referenced: referenced, cutoff: now - graceSeconds)
        var freed: UInt64 = 0
        var removed = 0
        for object in doomed where unlink(store.objectPath(object.hash)) == 0 {
            freed += object.bytes
            removed += 1
        }
        return GCReport(
            manifests: manifests.count, objects: objects.count, removed: removed, freedBytes: freed,
            keptYoung: unreferenced.count - doomed.count)
    }

    public struct FsckReport: Codable, Hashable, Sendable {
        public var objects: Int
        public var manifests: Int
        /// Objects whose content does not hash to their name, or that do not decompress.
        public var damagedObjects: [String]
        /// Manifests that cannot be read, with why.
        public var damagedManifests: [String]
        /// Objects a manifest names that the store does not have, as "manifest: object".
        public var missingObjects: [String]
        public var isClean: Bool { damagedObjects.isEmpty && damagedManifests.isEmpty && missingObjects.isEmpty }
        public init(
            objects: Int, manifests: Int, damagedObjects: [String], damagedManifests: [String], missingObjects: [String]
        ) {
            self.objects = objects
            self.manifests = manifests
            self.damagedObjects = damagedObjects
            self.damagedManifests = damagedManifests
            self.missingObjects = missingObjects
        }
    }

    /// Reads and hashes every object, reads every manifest and checks each object it names is there.
    public static func check(_ store: ImageStore) throws -> FsckReport {
        let context = DecompressionContext()
        var damagedObjects: [String] = []
        let objects = try objectFiles(store)
        for object in objects {
            do {
                guard let stored = try store.storedObject(object.hash) else { continue }
                let content = try stored.withUnsafeBytes {
                    try Zstd.decompress(
                        $0, expectedSize: nil, limit: Int(ManifestLimits.maxChunk), subject: "object \(object.hash.hex)",
                        context: context)
                }
                if ObjectHash.of(content) != object.hash {
                    damagedObjects.append("\(object.hash.hex): content hashes to \(ObjectHash.of(content).hex)")
                }
            } catch {
                damagedObjects.append("\(object.hash.hex): \(error)")
            }
        }
        let present = Set(objects.map(\.hash))
        var damagedManifests: [String] = []
        var missing: [String] = []
        let manifests = try manifestFiles(store)
        for (path, id) in manifests {
            do {
                var names = Set<ObjectHash>()
                referenced(by: try readManifest(path: path, id: id), into: &names)
                for hash in names.subtracting(present).sorted() { missing.append("\(path): \(hash.hex)") }
            } catch {
                damagedManifests.append("\(path): \(error)")
            }
        }
        return FsckReport(
            objects: objects.count, manifests: manifests.count, damagedObjects: damagedObjects,
            damagedManifests: damagedManifests, missingObjects: missing)
    }

    /// Removes a version's manifest file (its objects go at the next collection).
    public static func removeVersion(_ store: ImageStore, image: String, id: ObjectHash) {
        _ = unlink(store.manifestPath(image: image, version: id))
    }
}
