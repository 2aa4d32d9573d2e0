import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ProvisionerAPI
import ProvisionerImage
import Testing

@testable import ProvisionerServer

/// Publishing through the server (docs/images.md): manifest first, then the missing objects, then a
/// commit that moves a branch; nothing partial is ever visible.
@Suite struct ImagePublishTests {
    /// A small image: two files (one object each) under /etc.
    static func tree(_ hostname: String) -> (manifest: [UInt8], objects: [(ObjectHash, [UInt8])]) {
        let contents = [Array(hostname.utf8), Array("motd\n".utf8)]
        let objects = contents.map { (ObjectHash.of($0), $0) }
        func file(_ path: String, _ content: [UInt8]) -> Entry {
            var e = Entry(path, .file)
            e.mode = 0o644
            e.size = UInt64(content.count)
            e.chunks = [Chunk(length: UInt32(content.count), hash: .of(content))]
            return e
        }
        var root = Entry("", .directory)
        root.mode = 0o755
        var etc = Entry("etc", .directory)
        etc.mode = 0o755
        let manifest = Manifest(entries: [root, etc, file("etc/hostname", contents[0]), file("etc/motd", contents[1])])
        return (ManifestCodec.encode(manifest), objects)
    }

    static func pack(_ objects: [(ObjectHash, [UInt8])], end: Bool = true) -> ByteBuffer {
        var bytes = PackEncoder.header()
        for (hash, content) in objects { bytes += PackEncoder.object(hash, stored: Zstd.compress(content)) }
        if end { bytes += PackEncoder.end() }
        return ByteBuffer(bytes: bytes)
    }

    static let manifestHeaders: HTTPFields = [.contentType: "application/x-provisioner-manifest"]
    static let packHeaders: HTTPFields = [.contentType: "application/x-provisioner-pack"]

    @Test func publishAskSendCommitAndFollowBranches() async throws {
        try await withServices { services, _ in
            let (manifest, objects) = Self.tree("n1\n")
            try await app(services).test(.router) { client in
                // Refusals before anything is kept.
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/uploads", method: .post, headers: jsonHeaders,
                        body: ByteBuffer(bytes: manifest)), 415, code: "unsupported-media-type")
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/..%2Fetc/uploads", method: .post, headers: Self.manifestHeaders,
                        body: ByteBuffer(bytes: manifest)), 400, code: "bad-name")
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/uploads", method: .post, headers: Self.manifestHeaders,
                        body: ByteBuffer(bytes: Array(manifest.dropLast(3)))), 422, code: "bad-manifest")
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/uploads?branch=a/b", method: .post,
                        headers: Self.manifestHeaders, body: ByteBuffer(bytes: manifest)), 400, code: "bad-name")

                // Ask: both objects are missing.
                let started = try await client.execute(
                    uri: "/api/v1/admin/images/debian/uploads", method: .post, headers: Self.manifestHeaders,
                    body: ByteBuffer(bytes: manifest))
                #expect(started.status == .created)
                let status = try decode(UploadStatus.self, started)
                #expect(status.branch == "main")
                #expect(status.objects == 2)
                #expect(Set(status.missing) == Set(objects.map(\.0.hex)))

                // A commit with objects missing is refused; no image becomes visible.
                let early = try await client.execute(
                    uri: "/api/v1/admin/images/debian/uploads/\(status.upload)/commit", method: .post)
                expectJSONError(early, 409, code: "objects-missing")
                #expect(try await services.store.images().isEmpty)

                // A mislabelled object is refused; a pack cut short keeps the objects before the cut.
                let wrong = try await client.execute(
                    uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders,
                    body: Self.pack([(objects[0].0, Array("forged".utf8))]))
                expectJSONError(wrong, 422, code: "hash-mismatch")
                let cut = try await client.execute(
                    uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders,
                    body: Self.pack([objects[0]], end: false))
                expectJSONError(cut, 400, code: "bad-pack")
                let again = try decode(
                    UploadStatus.self,
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/uploads", method: .post, headers: Self.manifestHeaders,
                        body: ByteBuffer(bytes: manifest)))
                #expect(again.missing == [objects[1].0.hex])  // resumes: only what is still missing
                let sent = try decode(
                    ObjectsStored.self,
                    try await client.execute(
                        uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders, body: Self.pack(objects)))
                #expect(sent.stored == 1)
                #expect(sent.alreadyPresent == 1)

                let committed = try await client.execute(
                    uri: "/api/v1/admin/images/debian/uploads/\(status.upload)/commit", method: .post)
                #expect(committed.status == .ok, "\(String(buffer: committed.body))")
                let move = try decode(BranchMove.self, committed)
                #expect(move.previous == nil)
                #expect(move.version == status.upload)
                #expect(move.summary == ChangeSummary(added: 4, contentBytes: 8))

                // A second version on another branch; main stays live.
                let (manifest2, objects2) = Self.tree("n2\n")
                let status2 = try decode(
                    UploadStatus.self,
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/uploads?branch=test", method: .post,
                        headers: Self.manifestHeaders, body: ByteBuffer(bytes: manifest2)))
                #expect(status2.missing == [objects2[0].0.hex])
                _ = try await client.execute(
                    uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders,
                    body: Self.pack([objects2[0]]))
                let move2 = try decode(
                    BranchMove.self,
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/uploads/\(status2.upload)/commit", method: .post))
                #expect(move2.branch == "test")

                let record = try decode(
                    ImageRecord.self, try await client.execute(uri: "/api/v1/admin/images/debian", method: .get))
                #expect(record.live == "main")
                #expect(record.branches.map(\.name) == ["main", "test"])
                #expect(record.resolve(ImageRef(name: "debian")) == status.upload)
                #expect(record.resolve(ImageRef(name: "debian", branch: "test")) == status2.upload)
                #expect(record.versions.map(\.createdBy) == ["alice", "alice"])

                // Nodes get the version their branch names now.
                for (node, ref, expected) in [
                    ("n1", ImageRef(name: "debian"), status.upload),
                    ("n2", ImageRef(name: "debian", branch: "test"), status2.upload),
                ] {
                    let mac = node == "n1" ? "52:54:00:00:09:01" : "52:54:00:00:09:02"
                    _ = try await client.execute(
                        uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders,
                        body: try jsonBody(NodeConfig(name: node, macs: [mac], image: ref, mode: .stateless)))
                    let session = try decode(
                        SessionResponse.self,
                        try await client.execute(
                            uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                            body: try jsonBody(SessionOpenRequest(macs: [mac]))))
                    #expect(session.node?.image?.version == expected, "\(node)")
                }

                let audit = try decode(
                    [AuditEntry].self, try await client.execute(uri: "/api/v1/admin/audit", method: .get))
                let publishes = audit.filter { $0.action == "image.publish" }
                #expect(publishes.map(\.subject) == ["image/debian/main", "image/debian/test"])
            }
            // The store's `latest` follows the live branch.
            let latest = try ImageStore(root: services.config.imagesDirectory).latest(image: "debian")
            #expect(latest?.hex == Self.tree("n1\n").manifest.withUnsafeBytes { ObjectHash.of($0) }.hex)
        }
    }
}

extension ImagePublishTests {
    /// Publishes the tree for `hostname` on `branch`; returns the version id.
    static func publish(_ client: some TestClientProtocol, _ hostname: String, branch: String = "main") async throws
        -> String
    {
        let (manifest, objects) = tree(hostname)
        let status = try decode(
            UploadStatus.self,
            try await client.execute(
                uri: "/api/v1/admin/images/debian/uploads?branch=\(branch)", method: .post, headers: manifestHeaders,
                body: ByteBuffer(bytes: manifest)))
        _ = try await client.execute(
            uri: "/api/v1/admin/objects", method: .post, headers: packHeaders, body: pack(objects))
        let move = try decode(
            BranchMove.self,
            try await client.execute(
                uri: "/api/v1/admin/images/debian/uploads/\(status.upload)/commit", method: .post))
        return move.version
    }

    @Test func branchesLiveRollbackDiffAndRefusals() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let v1 = try await Self.publish(client, "one\n")
                let v2 = try await Self.publish(client, "two\n")
                func image() async throws -> ImageRecord {
                    try decode(ImageRecord.self, try await client.execute(uri: "/api/v1/admin/images/debian", method: .get))
                }
                #expect(try await image().versions.map(\.parent) == [nil, v1])

                // A branch from the live one, another from a version.
                let created = try await client.execute(
                    uri: "/api/v1/admin/images/debian/branches", method: .post, headers: jsonHeaders,
                    body: try jsonBody(BranchCreateRequest(name: "test")))
                #expect(created.status == .created)
                #expect(try decode(BranchMove.self, created).version == v2)
                _ = try await client.execute(
                    uri: "/api/v1/admin/images/debian/branches", method: .post, headers: jsonHeaders,
                    body: try jsonBody(BranchCreateRequest(name: "old", from: v1)))
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/branches", method: .post, headers: jsonHeaders,
                        body: try jsonBody(BranchCreateRequest(name: "test"))), 409)
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/branches", method: .post, headers: jsonHeaders,
                        body: try jsonBody(BranchCreateRequest(name: "x", from: "nope"))), 404, code: "unknown-branch")

                // Rollback moves main back to v1 and says what changes; the store's latest follows.
                let back = try decode(
                    BranchMove.self,
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/branches/main/rollback", method: .post, headers: jsonHeaders,
                        body: try jsonBody(RollbackRequest())))
                #expect(back.previous == v2)
                #expect(back.version == v1)
                #expect(back.summary == ChangeSummary(changed: 1, contentBytes: 4))
                let store = ImageStore(root: services.config.imagesDirectory)
                #expect(try store.latest(image: "debian")?.hex == v1)
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/branches/main/rollback", method: .post, headers: jsonHeaders,
                        body: try jsonBody(RollbackRequest())), 409)  // v1 is the first version
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/images/debian/branches/main/rollback", method: .post, headers: jsonHeaders,
                        body: try jsonBody(RollbackRequest(to: String(repeating: "0", count: 64)))), 404,
                    code: "unknown-version")

                // Live moves to test; main can then be deleted unless a node follows it.
                let live = try await client.execute(
                    uri: "/api/v1/admin/images/debian/live", method: .put, headers: jsonHeaders,
                    body: try jsonBody(LiveRequest(branch: "test")))
                #expect(try decode(ImageRecord.self, live).live == "test")
                #expect(try store.latest(image: "debian")?.hex == v2)
                expectJSONError(
                    try await client.execute(uri: "/api/v1/admin/images/debian/branches/test", method: .delete), 409)
                _ = try await client.execute(
                    uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders,
                    body: try jsonBody(NodeConfig(name: "n5", image: ImageRef(name: "debian", branch: "main"))))
                // A node may only name what the image has.
                let nope = try await client.execute(
                    uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders,
                    body: try jsonBody(NodeConfig(name: "n6", image: ImageRef(name: "debian", branch: "nope"))))
                expectJSONError(nope, 422)
                #expect(String(buffer: nope.body).contains("n6.image.branch: image debian has no branch nope"))
                let refused = try await client.execute(uri: "/api/v1/admin/images/debian/branches/main", method: .delete)
                expectJSONError(refused, 409)
                #expect(String(buffer: refused.body).contains("n5"))
                #expect(
                    try await client.execute(uri: "/api/v1/admin/images/debian/branches/old", method: .delete).status == .ok)
                #expect(try await image().branches.map(\.name) == ["main", "test"])

                // Diff between versions or branches.
                let diff = try decode(
                    ImageDiff.self,
                    try await client.execute(uri: "/api/v1/admin/images/debian/diff?a=main&b=\(v2)", method: .get))
                #expect(diff.from == v1)
                #expect(diff.entries == [ImageDiff.Entry(path: "etc/hostname", change: "changed", aspects: ["content"])])
                expectJSONError(
                    try await client.execute(uri: "/api/v1/admin/images/debian/diff?a=main", method: .get), 400)

                let actions = try decode(
                    [AuditEntry].self, try await client.execute(uri: "/api/v1/admin/audit", method: .get)
                ).map(\.action).filter { $0.hasPrefix("image.") }
                #expect(
                    actions == [
                        "image.publish", "image.publish", "image.branch.create", "image.branch.create", "image.rollback",
                        "image.live", "image.branch.delete",
                    ])
            }
        }
    }
}

extension ImagePublishTests {
    @Test func deleteCollectAndCheck() async throws {
        try await withServices { services, _ in
            let store = ImageStore(root: services.config.imagesDirectory)
            try await app(services).test(.router) { client in
                let v1 = try await Self.publish(client, "one\n")
                let v2 = try await Self.publish(client, "two\n")
                let oneObject = ObjectHash.of(Array("one\n".utf8))
                #expect(store.hasObject(oneObject))

                // The head cannot go, nor a version a node is pinned to.
                let head = try await client.execute(uri: "/api/v1/admin/images/debian/versions/\(v2)", method: .delete)
                expectJSONError(head, 409)
                #expect(String(buffer: head.body).contains("head of debian/main"))
                _ = try await client.execute(
                    uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders,
                    body: try jsonBody(NodeConfig(name: "p1", image: ImageRef(name: "debian", version: v1))))
                let pinned = try await client.execute(uri: "/api/v1/admin/images/debian/versions/\(v1)", method: .delete)
                expectJSONError(pinned, 409)
                #expect(String(buffer: pinned.body).contains("p1"))
                _ = try await client.execute(uri: "/api/v1/admin/nodes/p1", method: .delete)

                // An upload under way keeps its objects; so does the grace period.
                let (pending, pendingObjects) = Self.tree("three\n")
                _ = try await client.execute(
                    uri: "/api/v1/admin/images/debian/uploads", method: .post, headers: Self.manifestHeaders,
                    body: ByteBuffer(bytes: pending))
                _ = try await client.execute(
                    uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders, body: Self.pack(pendingObjects))

                #expect(
                    try await client.execute(uri: "/api/v1/admin/images/debian/versions/\(v1)", method: .delete).status
                        == .ok)
                let young = try decode(
                    StoreMaintenance.GCReport.self,
                    try await client.execute(uri: "/api/v1/admin/images/gc", method: .post))
                #expect(young.removed == 0)
                #expect(young.keptYoung == 1)  // v1's own object, now unreferenced but just written
                try await Task.sleep(for: .milliseconds(1100))  // file times have whole seconds here
                let now = try decode(
                    StoreMaintenance.GCReport.self,
                    try await client.execute(uri: "/api/v1/admin/images/gc?grace=0", method: .post))
                #expect(now.removed == 1)
                #expect(now.freedBytes > 0)
                #expect(!store.hasObject(oneObject))
                #expect(store.hasObject(pendingObjects[0].0))  // named by the upload under way
                #expect(store.hasObject(ObjectHash.of(Array("two\n".utf8))))

                // fsck: clean, then a damaged object and a missing one are named.
                var report = try decode(
                    StoreMaintenance.FsckReport.self, try await client.execute(uri: "/api/v1/admin/images/fsck", method: .get))
                #expect(report.isClean)
                let motd = ObjectHash.of(Array("motd\n".utf8))
                _ = unlink(store.objectPath(motd))
                try Data(Zstd.compress(Array("forged".utf8))).write(to: URL(fileURLWithPath: store.objectPath(motd)))
                let two = ObjectHash.of(Array("two\n".utf8))
                _ = unlink(store.objectPath(two))
                report = try decode(
                    StoreMaintenance.FsckReport.self, try await client.execute(uri: "/api/v1/admin/images/fsck", method: .get))
                #expect(report.damagedObjects.count == 1)
                #expect(report.damagedObjects.first?.hasPrefix(motd.hex) == true)
                #expect(report.missingObjects.contains { $0.hasSuffix(two.hex) })
                expectJSONError(
                    try await client.execute(uri: "/api/v1/admin/images/gc?grace=-1", method: .post), 400)

                let actions = try decode(
                    [AuditEntry].self, try await client.execute(uri: "/api/v1/admin/audit", method: .get)
                ).map(\.action).filter { $0.hasPrefix("image.") }
                #expect(actions == ["image.publish", "image.publish", "image.version.delete", "image.gc", "image.gc"])
            }
        }
    }
}

extension ImagePublishTests {
    static let deltaHeaders: HTTPFields = [.contentType: "application/x-provisioner-manifest-delta"]

    /// A manifest sent as a delta from a version the server has: the upload is the whole manifest
    /// (its id is the full manifest's hash); bad parameters, an unknown base or a delta that does not
    /// decode are refused, each naming the problem.
    @Test func aManifestDeltaFromAKnownVersion() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let v1 = try await Self.publish(client, "one\n")
                let old = Self.tree("one\n").manifest
                let (new, objects) = Self.tree("two\n")
                let delta = ManifestDelta.encode(old: old, new: new)
                #expect(delta.count < new.count)
                func upload(_ query: String, _ body: [UInt8]) async throws -> TestResponse {
                    try await client.execute(
                        uri: "/api/v1/admin/images/copy/uploads?\(query)", method: .post, headers: Self.deltaHeaders,
                        body: ByteBuffer(bytes: body))
                }
                expectJSONError(try await upload("", delta), 400, code: "bad-request")
                expectJSONError(try await upload("delta-from=12ab", delta), 400, code: "bad-request")
                expectJSONError(try await upload("delta-from=\(v1)&delta-image=A/B", delta), 400, code: "bad-name")
                expectJSONError(try await upload("delta-from=\(v1)", delta), 404, code: "unknown-version")  // not copy's
                expectJSONError(
                    try await upload("delta-from=\(v1)&delta-image=debian", Array(delta.dropLast(4))), 422, code: "bad-manifest")
                expectJSONError(
                    try await upload("delta-from=\(v1)&delta-image=debian", ManifestDelta.encode(old: old, new: [1, 2, 3])),
                    422, code: "bad-manifest")
                #expect(try await services.store.image(named: "copy") == nil)

                let started = try await upload("delta-from=\(v1)&delta-image=debian", delta)
                #expect(started.status == .created, "\(String(buffer: started.body))")
                let status = try decode(UploadStatus.self, started)
                #expect(status.upload == ObjectHash.of(new).hex)
                #expect(status.missing == [objects[0].0.hex])  // motd is already there
                _ = try await client.execute(
                    uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders, body: Self.pack([objects[0]]))
                let move = try decode(
                    BranchMove.self,
                    try await client.execute(uri: "/api/v1/admin/images/copy/uploads/\(status.upload)/commit", method: .post))
                #expect(move.version == status.upload)
            }
        }
    }
}
