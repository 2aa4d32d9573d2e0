import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ProvisionerAPI
import ProvisionerClient
import ProvisionerImage
import Testing

@testable import ProvisionerServer

/// The image routes of docs/image-format.md, served from STATE/images.
@Suite struct ImageRouteTests {
    /// Imports a small tree as image `img` (twice, with a change) into the server's store.
    func importTwoVersions(_ services: Services, _ dir: TempDir) throws -> (ObjectHash, ObjectHash) {
        let src = dir.path + "/src"
        try dir.write("src/etc/hostname", Array("node\n".utf8))
        try dir.write("src/usr/bin/tool", (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        let importer = ImageImporter(store: ImageStore(root: services.config.imagesDirectory))
        let v1 = try importer.importDirectory(src, image: "img", now: 1_700_000_000).version
        try dir.write("src/etc/hostname", Array("other\n".utf8))
        let v2 = try importer.importDirectory(src, image: "img", now: 1_700_000_100).version
        return (v1, v2)
    }

    /// Every object file in the store, by hash.
    func objectHashes(_ services: Services) throws -> [ObjectHash] {
        let root = services.config.imagesDirectory + "/objects"
        return try FileManager.default.contentsOfDirectory(atPath: root).flatMap { prefix in
            try FileManager.default.contentsOfDirectory(atPath: root + "/" + prefix).compactMap { ObjectHash(hex: $0) }
        }.sorted()
    }

    @Test func imagesManifestsObjectsAndPacks() async throws {
        try await withServices { services, dir in
            let (v1, v2) = try importTwoVersions(services, dir)
            let store = ImageStore(root: services.config.imagesDirectory)
            let hashes = try objectHashes(services)
            #expect(!hashes.isEmpty)
            try await app(services, as: nodePeer).test(.router) { client in
                let list = try await client.execute(uri: "/v1/images", method: .get)
                #expect(list.status == .ok)
                let images = try JSONDecoder().decode([ImageInfo].self, from: Data(list.body.readableBytesView))
                #expect(images.map(\.name) == ["img"])
                #expect(images.first?.latest == v2.hex)

                let latest = try await client.execute(uri: "/v1/images/img/latest", method: .get)
                #expect(String(buffer: latest.body) == "\(v2.hex)\n")
                #expect(latest.headers[.cacheControl] == "no-cache")

                let manifest = try await client.execute(uri: "/v1/images/img/versions/\(v2.hex)", method: .get)
                #expect(manifest.status == .ok)
                #expect(Array(manifest.body.readableBytesView) == (try store.storedManifest(image: "img", version: v2)))
                #expect(manifest.headers[.eTag] == "\"\(v2.hex)\"")
                #expect(manifest.headers[HTTPField.Name("Provisioner-Manifest-Encoding")!] == "full")
                #expect(manifest.headers[.cacheControl] == "public, max-age=31536000, immutable")

                let delta = try await client.execute(
                    uri: "/v1/images/img/versions/\(v2.hex)?delta-from=\(v1.hex)", method: .get)
                #expect(delta.status == .ok)
                let encoding = delta.headers[HTTPField.Name("Provisioner-Manifest-Encoding")!]
                #expect(encoding == "delta" || encoding == "full")

                let object = hashes[0]
                let stored = try #require(try store.storedObject(object))
                let whole = try await client.execute(uri: "/v1/objects/\(object.hex)", method: .get)
                #expect(Array(whole.body.readableBytesView) == stored)
                #expect(whole.headers[.eTag] == "\"\(object.hex)\"")
                #expect(whole.headers[.cacheControl] == "public, max-age=31536000, immutable")
                let part = try await client.execute(
                    uri: "/v1/objects/\(object.hex)", method: .get, headers: [.range: "bytes=1-4"])
                #expect(part.status == .partialContent)
                #expect(Array(part.body.readableBytesView) == Array(stored[1...4]))
                let cached = try await client.execute(
                    uri: "/v1/objects/\(object.hex)", method: .get, headers: [.ifNoneMatch: "\"\(object.hex)\""])
                #expect(cached.status == .notModified)

                // A pack: the objects asked for in order, a missing one as such, then the end.
                let missing = ObjectHash(hex: String(repeating: "ab", count: 32))!
                let wanted = [hashes.last!, missing, hashes[0]]
                let body = ByteBuffer(
                    bytes: try JSONEncoder().encode(["objects": wanted.map(\.hex)]))
                let pack = try await client.execute(uri: "/v1/objects/pack", method: .post, body: body)
                #expect(pack.status == .ok)
                #expect(pack.headers[.contentType] == "application/x-provisioner-pack")
                var decoder = PackDecoder()
                decoder.feed(Array(pack.body.readableBytesView))
                var frames: [PackFrame] = []
                while let frame = try decoder.next() { frames.append(frame) }
                try decoder.finish()
                #expect(
                    frames == [
                        .object(wanted[0], stored: try store.storedObject(wanted[0])!), .missing(missing),
                        .object(wanted[2], stored: stored), .end,
                    ])
            }
        }
    }

    @Test func badImageRequestsGetJSONErrors() async throws {
        try await withServices { services, dir in
            _ = try importTwoVersions(services, dir)
            try await app(services, as: nodePeer).test(.router) { client in
                let absent = String(repeating: "0", count: 64)
                let cases: [(String, HTTPRequest.Method, ByteBuffer?, Int)] = [
                    ("/v1/objects/XYZ", .get, nil, 400),
                    ("/v1/objects/\(String(repeating: "A", count: 64))", .get, nil, 400),
                    ("/v1/objects/\(absent)", .get, nil, 404),
                    ("/v1/objects/..%2F..%2Fetc", .get, nil, 400),
                    ("/v1/images/nope/latest", .get, nil, 404),
                    ("/v1/images/img/versions/\(absent)", .get, nil, 404),
                    ("/v1/images/..%2Fimg/versions/\(absent)", .get, nil, 400),
                    ("/v1/objects/pack", .post, ByteBuffer(string: "{\"objects\": [\"zz\"]}"), 400),
                    ("/v1/objects/pack", .post, ByteBuffer(string: "not json"), 400),
                ]
                for (uri, method, body, status) in cases {
                    expectJSONError(try await client.execute(uri: uri, method: method, body: body), status)
                }
            }
            try await app(services, as: nil).test(.router) { client in
                expectJSONError(try await client.execute(uri: "/v1/images", method: .get), 401)
            }
        }
    }
}
