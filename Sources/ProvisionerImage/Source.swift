import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A failure to get something from a source, naming the source and the thing.
public struct SourceError: Error, Hashable, Sendable, CustomStringConvertible {
    public var source: String
    public var what: String
    public var cause: String
    public init(source: String, what: String, cause: String) {
        self.source = source
        self.what = what
        self.cause = cause
    }
    public var description: String { "fetching \(what) from \(source): \(cause)" }
}

/// One object as it arrived: a zstd frame of its bytes, or (with `base`) a zstd frame that needs
/// the base object's bytes as prefix.
public struct FetchedObject: Sendable {
    public var hash: ObjectHash
    public var stored: [UInt8]
    public var base: ObjectHash?
    public init(hash: ObjectHash, stored: [UInt8], base: ObjectHash? = nil) {
        self.hash = hash
        self.stored = stored
        self.base = base
    }
}

/// Objects in the order they were asked for. The consumer checks each against its hash.
public protocol ObjectStream {
    mutating func next() throws -> FetchedObject?
}

/// Where images come from: a local store, or a server over HTTPS (docs/image-format.md).
/// Every method may be called from several threads at once.
public protocol ObjectSource: AnyObject, Sendable {
    /// For messages: the store path or URL.
    var label: String { get }
    /// A version id for `version` ("latest" or 64 hex digits).
    func resolve(image: String, version: String) throws -> ObjectHash
    /// The encoded manifest (decompressed, not yet checked against its id). With `previous`,
    /// the source may send only the difference from it.
    func manifest(image: String, version: ObjectHash, previous: (id: ObjectHash, bytes: [UInt8])?) throws -> [UInt8]
    /// A stream of the objects, in this order (one request for all of them where the transport allows).
    func objects(_ hashes: [ObjectHash]) throws -> any ObjectStream
    /// The same, where the node has `bases[hash]` (an older object of the same place in the same
    /// file): the source may send such objects as deltas from their base.
    func objects(_ hashes: [ObjectHash], bases: [ObjectHash: ObjectHash]) throws -> any ObjectStream
    /// Bytes received so far (as the transport carries them, without TLS/HTTP framing).
    var bytesReceived: Int { get }
    /// One object again, after the copy from attempt `attempt - 1` was damaged (mirrors move on).
    func refetch(_ hash: ObjectHash, attempt: Int) throws -> any ObjectStream
}

extension ObjectSource {
    public func refetch(_ hash: ObjectHash, attempt: Int) throws -> any ObjectStream { try objects([hash]) }
    public func objects(_ hashes: [ObjectHash], bases: [ObjectHash: ObjectHash]) throws -> any ObjectStream {
        try objects(hashes)
    }
}

/// A store directory on this machine (tests, local mirrors, the benchmark).
///
/// It moves the same bytes the HTTPS transport would (stored objects with pack framing; a
/// manifest delta when the node has a previous manifest) and counts them the same way.
public final class LocalStoreSource: ObjectSource {
    public let store: ImageStore
    private let received = Atomic<Int>(0)

    public init(path: String) { store = ImageStore(root: path) }

    public var label: String { store.root }
    public var bytesReceived: Int { received.load(ordering: .relaxed) }

    public func resolve(image: String, version: String) throws -> ObjectHash {
        guard ImageStore.isValidName(image) else {
            throw SourceError(source: label, what: "image \(image)", cause: "not a valid image name")
        }
        if version == "latest" {
            guard FileIO.exists(store.root) else {
                throw SourceError(source: label, what: "image \(image)", cause: "the store does not exist")
            }
            guard let id = try store.latest(image: image) else {
                throw SourceError(source: label, what: "image \(image)", cause: "no such image")
            }
            received.add(65, ordering: .relaxed)
            return id
        }
        guard let id = ObjectHash(hex: version) else {
            throw SourceError(
                source: label, what: "image \(image)@\(version)", cause: "a version is \"latest\" or 64 hex digits")
        }
        return id
    }

    public func manifest(image: String, version: ObjectHash, previous: (id: ObjectHash, bytes: [UInt8])?) throws
        -> [UInt8]
    {
        guard let stored = try store.storedManifest(image: image, version: version) else {
            throw SourceError(source: label, what: "manifest \(image)@\(version.hex)", cause: "no such version")
        }
        let bytes = try stored.withUnsafeBytes {
            try Zstd.decompress($0, expectedSize: nil, subject: "manifest \(image)@\(version.hex)")
        }
        if let previous, previous.id != version {
            // What the server does for ?delta-from=, and what the agent does with the answer.
            let delta = ManifestDelta.encode(old: previous.bytes, new: bytes)
            if delta.count < stored.count {
                received.add(delta.count, ordering: .relaxed)
                return try ManifestDelta.decode(old: previous.bytes, delta: delta)
            }
        }
        received.add(stored.count, ordering: .relaxed)
        return bytes
    }

    public func objects(_ hashes: [ObjectHash]) throws -> any ObjectStream {
        try objects(hashes, bases: [:])
    }

    public func objects(_ hashes: [ObjectHash], bases: [ObjectHash: ObjectHash]) throws -> any ObjectStream {
        // The request the HTTPS source would send: {"objects":[...],"bases":{...}}.
        received.add(16 + hashes.count * 67 + bases.count * 134, ordering: .relaxed)
        return Stream(source: self, hashes: hashes, bases: bases)
    }

    struct Stream: ObjectStream {
        let source: LocalStoreSource
        let hashes: [ObjectHash]
        let bases: [ObjectHash: ObjectHash]
        var index = 0

        mutating func next() throws -> FetchedObject? {
            guard index < hashes.count else { return nil }
            let hash = hashes[index]
            index += 1
            guard let base = bases[hash] else {
                guard let stored = try source.store.storedObject(hash) else {
                    throw SourceError(
                        source: source.label, what: "object \(hash.hex)", cause: "the store does not have it")
                }
                source.received.add(stored.count + 37, ordering: .relaxed)  // an 'O' frame
                return FetchedObject(hash: hash, stored: stored)
            }
            // The same frame the server's pack route builds.
            let frame = try PackEncoder.frame(hash, base: base, from: source.store)
            source.received.add(frame.count, ordering: .relaxed)
            var decoder = PackDecoder()
            decoder.feed(PackEncoder.header() + frame)
            switch try decoder.next() {
            case .object(let h, let stored): return FetchedObject(hash: h, stored: stored)
            case .delta(let h, let base, let payload): return FetchedObject(hash: h, stored: payload, base: base)
            default:
                throw SourceError(source: source.label, what: "object \(hash.hex)", cause: "the store does not have it")
            }
        }
    }
}

/// Several sources with the same content (mirrors): one is picked at random, and a failing one
/// is left for the next.
public final class MirrorSource: ObjectSource {
    public let mirrors: [any ObjectSource]
    private let current: Atomic<Int>
    /// Where a failover is told (a mirror that failed, a damaged object).
    let warnings: WarningSink

    /// The first `preferred` mirrors (a node's own, its rack's cache) are picked from at random
    /// and tried before the others; with none preferred, all are alike.
    private let preferred: Int

    public init(
        _ mirrors: [any ObjectSource], preferred: Int = 0, start: Int? = nil, warnings: @escaping WarningSink = { _ in }
    ) {
        precondition(!mirrors.isEmpty)
        self.mirrors = mirrors
        self.warnings = warnings
        self.preferred = preferred > 0 && preferred < mirrors.count ? preferred : 0
        current = Atomic(start ?? Int.random(in: 0..<(self.preferred > 0 ? self.preferred : mirrors.count)))
    }

    /// The order to try them in from `first`: its own group (preferred or not) round from it, then
    /// the other group.
    public static func order(first: Int, count: Int, preferred: Int) -> [Int] {
        guard preferred > 0 else { return (0..<count).map { (first + $0) % count } }
        let (own, other) = first < preferred ? (0..<preferred, preferred..<count) : (preferred..<count, 0..<preferred)
        let size = own.count
        let start = first - own.lowerBound
        return (0..<size).map { own.lowerBound + (start + $0) % size } + Array(other)
    }

    public var label: String { mirrors.map(\.label).joined(separator: ",") }
    public var bytesReceived: Int { mirrors.reduce(0) { $0 + $1.bytesReceived } }

    /// Tries each mirror once, starting at the current one; moves on after a failure.
    func withFailover<T>(_ body: (any ObjectSource) throws -> T) throws -> T {
        var lastError: (any Error)?
        let first = current.load(ordering: .relaxed)
        for (step, index) in Self.order(first: first, count: mirrors.count, preferred: preferred).enumerated() {
            do {
                let result = try body(mirrors[index])
                if step > 0 { current.store(index, ordering: .relaxed) }
                return result
            } catch let error as ManifestError {
                throw error  // the same bytes everywhere: another mirror will not help
            } catch {
                lastError = error
                warnings("mirror \(mirrors[index].label) failed (\(error)); trying the next")
            }
        }
        throw lastError!
    }

    public func resolve(image: String, version: String) throws -> ObjectHash {
        try withFailover { try $0.resolve(image: image, version: version) }
    }

    public func manifest(image: String, version: ObjectHash, previous: (id: ObjectHash, bytes: [UInt8])?) throws
        -> [UInt8]
    {
        try withFailover { source in
            let bytes = try source.manifest(image: image, version: version, previous: previous)
            guard ObjectHash.of(bytes) == version else {
                throw SourceError(
                    source: source.label, what: "manifest \(image)@\(version.hex)",
                    cause: "damaged: its hash is not the version id")
            }
            return bytes
        }
    }

    public func objects(_ hashes: [ObjectHash]) throws -> any ObjectStream {
        try withFailover { try $0.objects(hashes) }
    }

    public func objects(_ hashes: [ObjectHash], bases: [ObjectHash: ObjectHash]) throws -> any ObjectStream {
        try withFailover { try $0.objects(hashes, bases: bases) }
    }

    /// A damaged object is asked for again from the current mirror (the damaged copy may have come
    /// from a stream opened before a switch), then from the next ones, which later requests use too.
    public func refetch(_ hash: ObjectHash, attempt: Int) throws -> any ObjectStream {
        if mirrors.count > 1 && attempt > 1 {
            let now = current.load(ordering: .relaxed)
            current.store((now + 1) % mirrors.count, ordering: .relaxed)
            warnings(
                "mirror \(mirrors[now].label) sent a damaged object; using \(mirrors[(now + 1) % mirrors.count].label)")
        }
        return try withFailover { try $0.objects([hash]) }
    }
}

/// Where the image library's warnings go: the caller's console or boot session. The library
/// never prints on its own.
public typealias WarningSink = @Sendable (String) -> Void
