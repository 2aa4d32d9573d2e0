import Foundation
import ProvisionerImage
import Synchronization
import Testing

/// The HTTP image source against the store routes, in-process (no sockets): every route of
/// docs/image-format.md that the agent uses, the manifest delta, the static-mirror fallback and
/// failover between mirrors.
@Suite(.serialized) struct HTTPSourceTests {
    /// A transport that cannot reach its server.
    final class Unreachable: HTTPTransport, @unchecked Sendable {
        let label = "https://unreachable.invalid"
        func request(method: String, path: String, contentType: String?, body: [UInt8]?) throws -> HTTPReply {
            throw SourceError(source: label, what: path, cause: "connection refused")
        }
    }

    /// A mirror that serves files only (like nginx over the store): no pack route, no deltas.
    final class StaticMirror: HTTPTransport, @unchecked Sendable {
        let inner: InProcessTransport
        var packRequests = 0
        init(_ inner: InProcessTransport) { self.inner = inner }
        var label: String { "static(\(inner.label))" }
        func request(method: String, path: String, contentType: String?, body: [UInt8]?) throws -> HTTPReply {
            if method == "POST" {
                packRequests += 1
                return HTTPReply(status: 405, headers: [:], body: BufferedBody([]))
            }
            let plain = path.split(separator: "?").first.map(String.init) ?? path
            return try inner.request(method: method, path: plain, contentType: contentType, body: body)
        }
    }

    @Test func syncsOverTheRoutesWithDeltasAndFallbacks() throws {
        let root = try scratch("http")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh("mkdir -p '\(src)'")
        try makeHardTree(src)
        try sh("for i in $(seq 1 200); do echo file $i > '\(src)'/many-$i; done")
        try importTree(src, store: store)
        let transport = InProcessTransport(store: ImageStore(root: store), label: "https://server")
        let first = try SyncEngine(target: dst, source: HTTPObjectSource(transport: transport)).run(image: "img")
        #expect(first.filesWritten > 200)
        try expectSameTree(src, dst)

        // An update: the manifest comes as a delta from the applied one.
        try sh("echo changed > '\(src)/many-7'")
        let v2 = try importTree(src, store: store)
        let full = try #require(try ImageStore(root: store).storedManifest(image: "img", version: v2)).count
        let http = HTTPObjectSource(transport: transport)
        let second = try SyncEngine(target: dst, source: http).run(image: "img")
        #expect(second.filesWritten == 1)
        #expect(http.bytesReceived < full, "delta \(http.bytesReceived) bytes against a \(full)-byte manifest")
        try expectSameTree(src, dst)

        // A static mirror (no pack, no delta) after an unreachable server: one GET per object.
        try sh("echo again > '\(src)/many-8' && echo new > '\(src)/brand-new'")
        try importTree(src, store: store)
        let mirror = StaticMirror(transport)
        let mirrors = MirrorSource(
            [HTTPObjectSource(transport: Unreachable()), HTTPObjectSource(transport: mirror)], start: 0)
        let third = try SyncEngine(target: dst, source: mirrors).run(image: "img")
        #expect(third.filesWritten == 2)
        #expect(mirror.packRequests >= 1)
        try expectSameTree(src, dst)
    }

    /// A caching mirror's answer to packs (405), with a round trip per object: counts the packs
    /// asked for and the most GETs in flight at once.
    final class CachingMirror: HTTPTransport, @unchecked Sendable {
        let inner: InProcessTransport
        let packs = Atomic<Int>(0)
        let inFlight = Atomic<Int>(0)
        let most = Atomic<Int>(0)
        init(_ inner: InProcessTransport) { self.inner = inner }
        var label: String { "caching(\(inner.label))" }
        func request(method: String, path: String, contentType: String?, body: [UInt8]?) throws -> HTTPReply {
            if method == "POST" {
                packs.add(1, ordering: .relaxed)
                return HTTPReply(status: 405, headers: [:], body: BufferedBody([]))
            }
            let now = inFlight.add(1, ordering: .relaxed).newValue
            defer { inFlight.subtract(1, ordering: .relaxed) }
            var seen = most.load(ordering: .relaxed)
            while now > seen {
                let (exchanged, original) = most.compareExchange(expected: seen, desired: now, ordering: .relaxed)
                if exchanged { break }
                seen = original
            }
            usleep(2000)  // the round trip
            return try inner.request(method: method, path: path, contentType: contentType, body: body)
        }
    }

    @Test func throughACachingMirrorOnePackRefusalThenGETsInFlightTogether() throws {
        let root = try scratch("caching")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh("mkdir -p '\(src)' && for i in $(seq 1 300); do head -c 2000 /dev/urandom > '\(src)'/f-$i; done")
        try importTree(src, store: store)
        let mirror = CachingMirror(InProcessTransport(store: ImageStore(root: store), label: "https://mirror"))
        var options = SyncOptions()
        options.threads = 1
        let report = try SyncEngine(target: dst, source: HTTPObjectSource(transport: mirror), options: options).run(image: "img")
        try expectSameTree(src, dst)
        #expect(report.chunksFetched == 300)
        #expect(mirror.packs.load(ordering: .relaxed) == 1)  // refused once, not once per batch
        #expect(mirror.most.load(ordering: .relaxed) > 1)  // several GETs at once, even from one worker
    }

    @Test func routesRefuseBadInput() throws {
        let root = try scratch("routes")
        defer { try? sh("rm -rf '\(root)'") }
        try sh("mkdir -p '\(root)/src' && echo a > '\(root)/src/a'")
        try importTree("\(root)/src", store: "\(root)/store")
        let routes = StoreRoutes(store: ImageStore(root: "\(root)/store"))
        #expect(try routes.handle(method: "GET", path: "/v1/objects/../../etc/passwd", body: nil).status == 404)
        #expect(try routes.handle(method: "GET", path: "/v1/objects/XYZ", body: nil).status == 400)
        #expect(try routes.handle(method: "GET", path: "/v1/images/..%2f/latest", body: nil).status == 404)
        #expect(try routes.handle(method: "POST", path: "/v1/objects/pack", body: Array("nope".utf8)).status == 400)
        var list = try routes.handle(method: "GET", path: "/v1/images", body: nil)
        let json = try list.body.collect(limit: 1 << 20, what: "list")
        let images = try JSONDecoder().decode([ImageInfo].self, from: Data(json))
        #expect(images.map(\.name) == ["img"])
        // A pack of a present and a missing object decodes to one object and one missing frame.
        let id = try #require(try ImageStore(root: "\(root)/store").latest(image: "img"))
        let manifest = try ManifestCodec.decode(
            try #require(try ImageStore(root: "\(root)/store").manifestBytes(image: "img", version: id)))
        let present = try #require(manifest.entries.first { $0.kind == .file }?.chunks.first?.hash)
        let request = try JSONEncoder().encode(PackRequest(objects: [present.hex, ObjectHash.zero.hex]))
        var pack = try routes.handle(method: "POST", path: "/v1/objects/pack", body: Array(request))
        var decoder = PackDecoder()
        decoder.feed(try pack.body.collect(limit: 1 << 20, what: "pack"))
        var frames: [PackFrame] = []
        while let f = try decoder.next() { frames.append(f) }
        #expect(frames.count == 3)
        #expect(frames.last == .end)
        #expect(frames[1] == .missing(.zero))
    }
}
