import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ProvisionerAPI
import ProvisionerImage
import Testing

@testable import ProvisionerServer

/// The image routes on a store whose filesystem is really full: a small tmpfs mounted over the
/// server's image directory (root only; `make test` runs as root). Every write that fails answers
/// 500 `store-failed` naming what was written where and why; nothing partial becomes visible; once
/// there is room again the same upload commits and `image fsck` finds nothing wrong.
@Suite(.serialized) struct DiskFullTests {
    /// A file of `chunks` incompressible 192 KiB chunks.
    static func tree(chunks: Int, seed: UInt64) -> (manifest: [UInt8], objects: [(ObjectHash, [UInt8])]) {
        var state = seed
        var objects: [(ObjectHash, [UInt8])] = []
        for _ in 0..<chunks {
            var content = [UInt8](repeating: 0, count: 192 << 10)
            for i in content.indices {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                content[i] = UInt8(truncatingIfNeeded: state >> 33)
            }
            objects.append((ObjectHash.of(content), content))
        }
        var root = Entry("", .directory)
        root.mode = 0o755
        var file = Entry("data", .file)
        file.mode = 0o644
        file.size = UInt64(objects.count * (192 << 10))
        file.chunks = objects.map { Chunk(length: UInt32($0.1.count), hash: $0.0) }
        return (ManifestCodec.encode(Manifest(entries: [root, file])), objects)
    }

    static func mount(_ options: String, _ dir: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/mount")
        p.arguments = ["-t", "tmpfs", "-o", options, "tmpfs", dir]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestError("mount -o \(options) tmpfs \(dir) failed") }
    }

    static func unmount(_ dir: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/umount")
        p.arguments = [dir]
        try? p.run()
        p.waitUntilExit()
    }

    /// Fills the filesystem of `dir` with one file until a write fails; returns its path.
    static func fill(_ dir: String) -> String {
        let path = dir + "/filler"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let block = [UInt8](repeating: 0xA5, count: 4096)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)
        return path
    }

    /// Temporary files an interrupted write could have left behind anywhere under `dir`.
    static func leftovers(_ dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter { $0.contains(".tmp-") }
    }

    static let manifestHeaders: HTTPFields = [.contentType: "application/x-provisioner-manifest"]
    static let packHeaders: HTTPFields = [.contentType: "application/x-provisioner-pack"]

    static func pack(_ objects: [(ObjectHash, [UInt8])]) -> ByteBuffer {
        var bytes = PackEncoder.header()
        for (hash, content) in objects { bytes += PackEncoder.object(hash, stored: Zstd.compress(content)) }
        return ByteBuffer(bytes: bytes + PackEncoder.end())
    }

    static func message(_ response: TestResponse) -> String {
        (try? JSONDecoder().decode(ErrorBody.self, from: Data(response.body.readableBytesView)))?.error.message ?? ""
    }

    @Test(.enabled(if: getuid() == 0, "mounting a small tmpfs needs root (make test runs as root)"))
    func aFullStoreAnswersStoreFailedAndLeavesNothingPartial() async throws {
        try await withServices { services, _ in
            let images = services.config.imagesDirectory
            try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
            try Self.mount("size=512k,mode=0755", images)
            defer { Self.unmount(images) }
            let (manifest, objects) = Self.tree(chunks: 4, seed: 7)  // 768 KiB that does not compress
            try await app(services).test(.router) { client in
                let started = try await client.execute(
                    uri: "/api/v1/admin/images/full/uploads", method: .post, headers: Self.manifestHeaders,
                    body: ByteBuffer(bytes: manifest))
                #expect(started.status == .created, "\(String(buffer: started.body))")
                let upload = try decode(UploadStatus.self, started).upload

                // 1. Objects that do not fit: 500 store-failed naming the object, the file and the cause.
                let sent = try await client.execute(
                    uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders, body: Self.pack(objects))
                expectJSONError(sent, 500, code: "store-failed")
                let said = Self.message(sent)
                #expect(said.contains("storing object "), "\(said)")
                #expect(said.contains(images + "/objects/"), "\(said)")
                #expect(said.contains("No space left on device"), "\(said)")
                #expect(Self.leftovers(images).isEmpty, "\(Self.leftovers(images))")
                // The commit is refused and no image appears.
                expectJSONError(
                    try await client.execute(uri: "/api/v1/admin/images/full/uploads/\(upload)/commit", method: .post),
                    409, code: "objects-missing")
                #expect(try await services.store.images().isEmpty)

                // 2. Room for the objects, none for the version's manifest: the commit fails, nothing moves.
                try Self.mount("remount,size=2m", images)
                let stored = try await client.execute(
                    uri: "/api/v1/admin/objects", method: .post, headers: Self.packHeaders, body: Self.pack(objects))
                #expect(stored.status == .ok, "\(String(buffer: stored.body))")
                let filler = Self.fill(images)
                let commit = try await client.execute(
                    uri: "/api/v1/admin/images/full/uploads/\(upload)/commit", method: .post)
                expectJSONError(commit, 500, code: "store-failed")
                #expect(Self.message(commit).contains("writing the version's manifest"), "\(Self.message(commit))")
                #expect(Self.message(commit).contains("No space left on device"), "\(Self.message(commit))")
                #expect(try await services.store.images().isEmpty)
                #expect(!FileManager.default.fileExists(atPath: images + "/images/full/latest"))
                #expect(Self.leftovers(images).isEmpty, "\(Self.leftovers(images))")

                // 3. A new manifest cannot be kept either.
                let other = Self.tree(chunks: 1, seed: 8).manifest
                let refused = try await client.execute(
                    uri: "/api/v1/admin/images/other/uploads", method: .post, headers: Self.manifestHeaders,
                    body: ByteBuffer(bytes: other))
                expectJSONError(refused, 500, code: "store-failed")
                #expect(Self.message(refused).contains("keeping the upload's manifest"), "\(Self.message(refused))")

                // 4. Room again: the same upload commits, and the store checks clean.
                try FileManager.default.removeItem(atPath: filler)
                let done = try await client.execute(
                    uri: "/api/v1/admin/images/full/uploads/\(upload)/commit", method: .post)
                #expect(done.status == .ok, "\(String(buffer: done.body))")
                #expect(try decode(BranchMove.self, done).version == upload)
                let fsck = try await client.execute(uri: "/api/v1/admin/images/fsck", method: .get)
                #expect(fsck.status == .ok)
                let report = String(buffer: fsck.body)
                let checked = try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any]
                for problem in ["damagedObjects", "damagedManifests", "missingObjects"] {
                    #expect((checked?[problem] as? [Any])?.isEmpty ?? ((checked?[problem] as? Int) == 0), "\(report)")
                }
                #expect((checked?["objects"] as? Int) == 4, "\(report)")
            }
        }
    }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
