import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A response body read piece by piece (so a pack of gigabytes is never held whole).
public protocol HTTPBodyStream {
    /// The next piece, or nil at the end.
    mutating func next() throws -> [UInt8]?
}

public struct HTTPReply {
    public var status: Int
    /// Header names in lowercase.
    public var headers: [String: String]
    public var body: any HTTPBodyStream
    public init(status: Int, headers: [String: String], body: any HTTPBodyStream) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// What the image source needs from an HTTP client: one blocking request. The agent's mTLS
/// client (ProvisionerClient) is wrapped in this in one file; tests use `StoreRoutes` directly.
public protocol HTTPTransport: AnyObject, Sendable {
    var label: String { get }
    func request(method: String, path: String, contentType: String?, body: [UInt8]?) throws -> HTTPReply
}

/// A body already in memory.
public struct BufferedBody: HTTPBodyStream {
    var pieces: [[UInt8]]
    public init(_ bytes: [UInt8]) { pieces = bytes.isEmpty ? [] : [bytes] }
    public init(pieces: [[UInt8]]) { self.pieces = pieces.reversed() }
    public mutating func next() throws -> [UInt8]? { pieces.popLast() }
}

extension HTTPBodyStream {
    /// The whole body, refusing more than `limit` bytes.
    public mutating func collect(limit: Int, what: String) throws -> [UInt8] {
        var out: [UInt8] = []
        while let piece = try next() {
            out.append(contentsOf: piece)
            guard out.count <= limit else {
                throw SourceError(source: "server", what: what, cause: "more than \(limit) bytes")
            }
        }
        return out
    }
}

/// The image routes of docs/image-format.md served from a store directory, as a function of the
/// request: the server mounts these routes by calling this, and tests call it without sockets.
public struct StoreRoutes: Sendable {
    public let store: ImageStore
    public init(store: ImageStore) { self.store = store }

    static func text(_ status: Int, _ message: String) -> HTTPReply {
        HTTPReply(
            status: status, headers: ["content-type": "text/plain"], body: BufferedBody(Array("\(message)\n".utf8)))
    }

    /// Handles one request; `path` may carry a query string.
    public func handle(method: String, path fullPath: String, body: [UInt8]?) throws -> HTTPReply {
        let (path, query) = Self.split(fullPath)
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // ["", "v1", ...]
        guard parts.count >= 3, parts[0] == "", parts[1] == "v1" else { return Self.text(404, "no such route") }
        switch (method, Array(parts.dropFirst(2))) {
        case ("GET", ["images"]):
            let json = try JSONEncoder().encode(try store.listImages())
            return HTTPReply(
                status: 200, headers: ["content-type": "application/json"], body: BufferedBody(Array(json)))
        case ("GET", let p) where p.count == 3 && p[0] == "images" && p[2] == "latest":
            guard let id = try store.latest(image: p[1]) else { return Self.text(404, "no image \(p[1])") }
            return HTTPReply(
                status: 200, headers: ["content-type": "text/plain", "cache-control": "no-cache"],
                body: BufferedBody(Array("\(id.hex)\n".utf8)))
        case ("GET", let p) where p.count == 4 && p[0] == "images" && p[2] == "versions":
            guard let id = ObjectHash(hex: p[3]), p[3] == id.hex else {
                return Self.text(400, "a version is 64 lowercase hex digits")
            }
            guard let stored = try store.storedManifest(image: p[1], version: id) else {
                return Self.text(404, "no version \(p[3]) of \(p[1])")
            }
            var headers = [
                "content-type": "application/x-provisioner-manifest", "etag": "\"\(id.hex)\"",
                "cache-control": "public, max-age=31536000, immutable", "provisioner-manifest-encoding": "full",
            ]
            if let old = query["delta-from"].flatMap({ ObjectHash(hex: $0) }), old != id,
                let oldBytes = try? store.manifestBytes(image: p[1], version: old),
                let newBytes = try? store.manifestBytes(image: p[1], version: id)
            {
                let delta = ManifestDelta.encode(old: oldBytes, new: newBytes)
                if delta.count < stored.count {
                    headers["provisioner-manifest-encoding"] = "delta"
                    headers["etag"] = "\"\(id.hex)-from-\(old.hex)\""
                    return HTTPReply(status: 200, headers: headers, body: BufferedBody(delta))
                }
            }
            return HTTPReply(status: 200, headers: headers, body: BufferedBody(stored))
        case ("GET", let p) where p.count == 2 && p[0] == "objects":
            guard let hash = ObjectHash(hex: p[1]), p[1] == hash.hex else {
                return Self.text(400, "an object is 64 lowercase hex digits")
            }
            guard let stored = try store.storedObject(hash) else { return Self.text(404, "no object \(p[1])") }
            return HTTPReply(
                status: 200,
                headers: [
                    "content-type": "application/octet-stream", "etag": "\"\(hash.hex)\"",
                    "cache-control": "public, max-age=31536000, immutable",
                ], body: BufferedBody(stored))
        case ("POST", ["objects", "pack"]):
            let request: PackRequest
            do { request = try JSONDecoder().decode(PackRequest.self, from: Data(body ?? [])) } catch {
                return Self.text(400, "the body must be {\"objects\": [hash, ...]}")
            }
            guard request.objects.count <= PackRequest.maxObjects else {
                return Self.text(400, "at most \(PackRequest.maxObjects) objects per pack")
            }
            var hashes: [ObjectHash] = []
            for h in request.objects {
                guard let hash = ObjectHash(hex: h), h == hash.hex else { return Self.text(400, "\(h) is not a hash") }
                hashes.append(hash)
            }
            var bases: [ObjectHash: ObjectHash] = [:]
            for (h, b) in request.bases ?? [:] {
                guard let hash = ObjectHash(hex: h), let base = ObjectHash(hex: b) else {
                    return Self.text(400, "bases: \(h) -> \(b) is not a pair of hashes")
                }
                bases[hash] = base
            }
            return HTTPReply(
                status: 200, headers: ["content-type": "application/x-provisioner-pack"],
                body: PackBody(store: store, hashes: hashes, bases: bases))
        default:
            return Self.text(404, "no such route")
        }
    }

    static func split(_ full: String) -> (String, [String: String]) {
        guard let q = full.firstIndex(of: "?") else { return (full, [:]) }
        var query: [String: String] = [:]
        for pair in full[full.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { query[String(kv[0])] = String(kv[1]) }
        }
        return (String(full[..<q]), query)
    }

    /// A pack produced as the body is read, in pieces of about 1 MiB of whole frames (fewer
    /// pieces for the server to hand on; objects are read straight into the piece).
    struct PackBody: HTTPBodyStream {
        static let pieceSize = 1 << 20
        let store: ImageStore
        let hashes: [ObjectHash]
        let bases: [ObjectHash: ObjectHash]
        var index = -1

        mutating func next() throws -> [UInt8]? {
            if index > hashes.count { return nil }
            var out: [UInt8] = []
            if index == -1 {
                out = PackEncoder.header()
                index = 0
            }
            while index < hashes.count && out.count < Self.pieceSize {
                // A run of plain objects is read in one go; a delta or a missing object is its own frame.
                var run: [ObjectHash] = []
                var planned = 0
                while index + run.count < hashes.count && planned < Self.pieceSize {
                    let hash = hashes[index + run.count]
                    if bases[hash] != nil { break }
                    run.append(hash)
                    planned += 8 << 10
                }
                if run.isEmpty {
                    let hash = hashes[index]
                    out += try PackEncoder.frame(hash, base: bases[hash], from: store)
                    index += 1
                    continue
                }
                let (frames, done) = try PackEncoder.objectFrames(run, from: store)
                if out.isEmpty { out = frames } else { out += frames }
                index += done
                if done < run.count {  // the next one is missing (or grew): the general path names it
                    let hash = hashes[index]
                    out += try PackEncoder.frame(hash, base: bases[hash], from: store)
                    index += 1
                }
            }
            if index == hashes.count {
                out += PackEncoder.end()
                index += 1
            }
            return out
        }
    }
}

/// The body of `POST /v1/objects/pack`.
public struct PackRequest: Codable, Sendable {
    public static let maxObjects = 100_000
    public var objects: [String]
    /// Optional: object -> an older object the node has, to send the object as a delta from.
    public var bases: [String: String]?
    public init(objects: [String], bases: [String: String]? = nil) {
        self.objects = objects
        self.bases = bases
    }
}

/// An image source over HTTP(S): the server's routes (docs/image-format.md) through any transport.
public final class HTTPObjectSource: ObjectSource, @unchecked Sendable {
    public let transport: any HTTPTransport
    private let counter = ByteCounter()
    /// The source answered a pack with 404 or 405 (a caching or static mirror): objects are asked
    /// for one by one from then on, without a pack request first each time.
    private let packsRefused = Atomic<Bool>(false)

    public init(transport: any HTTPTransport) { self.transport = transport }

    public var label: String { transport.label }
    public var bytesReceived: Int { counter.value }

    func get(_ path: String, what: String, limit: Int = 1 << 30) throws -> (headers: [String: String], body: [UInt8]) {
        var reply = try transport.request(method: "GET", path: path, contentType: nil, body: nil)
        let body = try reply.body.collect(limit: limit, what: what)
        counter.add(body.count + path.utf8.count + 64)
        guard reply.status == 200 else {
            let message = String(decoding: body.prefix(200), as: UTF8.self)
            throw SourceError(source: label, what: what, cause: "HTTP \(reply.status) \(message)")
        }
        return (reply.headers, body)
    }

    public func resolve(image: String, version: String) throws -> ObjectHash {
        guard ImageStore.isValidName(image) else {
            throw SourceError(source: label, what: "image \(image)", cause: "not a valid image name")
        }
        if version != "latest" {
            guard let id = ObjectHash(hex: version) else {
                throw SourceError(
                    source: label, what: "image \(image)@\(version)", cause: "a version is \"latest\" or 64 hex digits")
            }
            return id
        }
        let (_, body) = try get("/v1/images/\(image)/latest", what: "the latest version of \(image)", limit: 4096)
        let text = String(decoding: body, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? ""
        guard let id = ObjectHash(hex: text) else {
            throw SourceError(
                source: label, what: "the latest version of \(image)", cause: "the answer is not a version id")
        }
        return id
    }

    public func manifest(image: String, version: ObjectHash, previous: (id: ObjectHash, bytes: [UInt8])?) throws
        -> [UInt8]
    {
        var path = "/v1/images/\(image)/versions/\(version.hex)"
        if let previous, previous.id != version { path += "?delta-from=\(previous.id.hex)" }
        let what = "manifest \(image)@\(version.hex)"
        let (headers, body) = try get(path, what: what)
        if headers["provisioner-manifest-encoding"] == "delta", let previous {
            return try ManifestDelta.decode(old: previous.bytes, delta: body)
        }
        return try body.withUnsafeBytes { try Zstd.decompress($0, expectedSize: nil, subject: what) }
    }

    public func objects(_ hashes: [ObjectHash]) throws -> any ObjectStream {
        try objects(hashes, bases: [:])
    }

    public func objects(_ hashes: [ObjectHash], bases: [ObjectHash: ObjectHash]) throws -> any ObjectStream {
        if packsRefused.load(ordering: .relaxed) { return SingleObjects(source: self, hashes: hashes) }
        let baseList = bases.isEmpty ? nil : Dictionary(uniqueKeysWithValues: bases.map { ($0.key.hex, $0.value.hex) })
        let body = try JSONEncoder().encode(PackRequest(objects: hashes.map(\.hex), bases: baseList))
        counter.add(body.count + 64)
        let reply = try transport.request(
            method: "POST", path: "/v1/objects/pack", contentType: "application/json", body: Array(body))
        if reply.status == 404 || reply.status == 405 {
            packsRefused.store(true, ordering: .relaxed)
            return SingleObjects(source: self, hashes: hashes)  // a mirror: one GET per object
        }
        guard reply.status == 200 else {
            var b = reply.body
            let message = String(decoding: (try? b.collect(limit: 4096, what: "error")) ?? [], as: UTF8.self)
            throw SourceError(
                source: label, what: "a pack of \(hashes.count) objects", cause: "HTTP \(reply.status) \(message)")
        }
        return PackStream(source: self, body: reply.body, expected: hashes)
    }

    struct PackStream: ObjectStream {
        let source: HTTPObjectSource
        var body: any HTTPBodyStream
        let expected: [ObjectHash]
        var decoder = PackDecoder()
        var index = 0

        init(source: HTTPObjectSource, body: any HTTPBodyStream, expected: [ObjectHash]) {
            self.source = source
            self.body = body
            self.expected = expected
        }

        mutating func next() throws -> FetchedObject? {
            while true {
                if let frame = try decoder.next() {
                    switch frame {
                    case .object(let hash, let stored):
                        guard index < expected.count, hash == expected[index] else {
                            throw SourceError(source: source.label, what: "a pack", cause: "objects out of order")
                        }
                        index += 1
                        return FetchedObject(hash: hash, stored: stored)
                    case .delta(let hash, let base, let payload):
                        guard index < expected.count, hash == expected[index] else {
                            throw SourceError(source: source.label, what: "a pack", cause: "objects out of order")
                        }
                        index += 1
                        return FetchedObject(hash: hash, stored: payload, base: base)
                    case .missing(let hash):
                        throw SourceError(
                            source: source.label, what: "object \(hash.hex)", cause: "the server does not have it")
                    case .end:
                        guard index == expected.count else {
                            throw SourceError(
                                source: source.label, what: "a pack",
                                cause: "ended after \(index) of \(expected.count) objects")
                        }
                        return nil
                    }
                }
                guard let piece = try body.next() else {
                    try decoder.finish()
                    return nil
                }
                source.counter.add(piece.count)
                decoder.feed(piece)
            }
        }
    }

    /// One GET per object, `window` of them in flight at once (each waits a round trip through the
    /// mirror, and on a miss through it to the server: one at a time, a rack of small files would
    /// wait on latency, not bandwidth). Objects come out in the order asked.
    struct SingleObjects: ObjectStream {
        static let window = 16
        let source: HTTPObjectSource
        let hashes: [ObjectHash]
        var index = 0
        var ready: [FetchedObject] = []
        var readyIndex = 0

        mutating func next() throws -> FetchedObject? {
            if readyIndex == ready.count {
                guard index < hashes.count else { return nil }
                let batch = Array(hashes[index..<min(index + Self.window, hashes.count)])
                index += batch.count
                ready = try Self.fetch(batch, from: source)
                readyIndex = 0
            }
            defer { readyIndex += 1 }
            return ready[readyIndex]
        }

        static func fetch(_ batch: [ObjectHash], from source: HTTPObjectSource) throws -> [FetchedObject] {
            if batch.count == 1 { return [try fetchOne(batch[0], from: source)] }
            // Threads of our own: each mostly waits for its answer, and a shared pool sized to the
            // cores would run them two at a time.
            let results = Mutex<[Int: Result<FetchedObject, any Error>]>([:])
            let next = Atomic<Int>(0)
            runWorkers(batch.count) {
                while true {
                    let i = next.add(1, ordering: .relaxed).oldValue
                    guard i < batch.count else { return }
                    let result = Result { try fetchOne(batch[i], from: source) }
                    results.withLock { $0[i] = result }
                }
            }
            return try results.withLock { all in try batch.indices.map { try all[$0]!.get() } }
        }

        static func fetchOne(_ hash: ObjectHash, from source: HTTPObjectSource) throws -> FetchedObject {
            let (_, body) = try source.get(
                "/v1/objects/\(hash.hex)", what: "object \(hash.hex)", limit: PackFormat.maxObject)
            return FetchedObject(hash: hash, stored: body)
        }
    }
}

/// A counter several threads add to.
final class ByteCounter: Sendable {
    private let total = Atomic<Int>(0)
    func add(_ n: Int) { total.add(n, ordering: .relaxed) }
    var value: Int { total.load(ordering: .relaxed) }
}

/// Serves `StoreRoutes` in-process: the whole HTTP source and route logic without sockets.
public final class InProcessTransport: HTTPTransport, @unchecked Sendable {
    public let routes: StoreRoutes
    public let label: String
    public init(store: ImageStore, label: String = "in-process") {
        routes = StoreRoutes(store: store)
        self.label = label
    }
    public func request(method: String, path: String, contentType: String?, body: [UInt8]?) throws -> HTTPReply {
        try routes.handle(method: method, path: path, body: body)
    }
}
