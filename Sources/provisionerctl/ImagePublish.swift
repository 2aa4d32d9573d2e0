import Foundation
import ProvisionerAPI
import ProvisionerImage

/// Publishes a version through the server (docs/images.md): the manifest first, then only the
/// objects the server says it lacks, in packs of at most `packBytes`, then the commit. Every step
/// can be repeated: after a cut connection the next run sends only what is still missing.
struct ImagePublisher {
    let server: AdminClient
    /// The local store the tree was imported into (objects as stored: zstd frames).
    let staging: ImageStore
    var packBytes = 32 << 20

    struct Outcome {
        var move: BranchMove
        var objects: Int
        var sentObjects: Int
        var sentBytes: UInt64
    }

    func publish(image: String, branch: String?, version: ObjectHash) async throws -> Outcome {
        guard let manifest = try staging.manifestBytes(image: image, version: version) else {
            throw CtlFailure("the staging store \(staging.root) has no version \(version.hex) of \(image)")
        }
        let query = branch.map { "?branch=\($0)" } ?? ""
        var sentObjects = 0
        var sentBytes: UInt64 = 0
        var status: UploadStatus = try await server.post(
            "images/\(image)/uploads\(query)", bytes: manifest, contentType: "application/x-provisioner-manifest")
        // Two rounds: the second only when the server lost or refused something of the first.
        for _ in 0..<2 where !status.missing.isEmpty {
            var pack = PackEncoder.header()
            for hex in status.missing {
                guard let hash = ObjectHash(hex: hex), let stored = try staging.storedObject(hash) else {
                    throw CtlFailure("the server asks for object \(hex), which the staging store does not have")
                }
                pack += PackEncoder.object(hash, stored: stored)
                sentObjects += 1
                sentBytes += UInt64(stored.count)
                if pack.count >= packBytes {
                    try await send(pack + PackEncoder.end())
                    pack = PackEncoder.header()
                }
            }
            if pack.count > PackEncoder.header().count { try await send(pack + PackEncoder.end()) }
            status = try await server.post(
                "images/\(image)/uploads\(query)", bytes: manifest, contentType: "application/x-provisioner-manifest")
        }
        let move: BranchMove = try await server.post(
            "images/\(image)/uploads/\(status.upload)/commit", bytes: [], contentType: "application/json")
        return Outcome(move: move, objects: status.objects, sentObjects: sentObjects, sentBytes: sentBytes)
    }

    private func send(_ pack: [UInt8]) async throws {
        let _: ObjectsStored = try await server.post("objects", bytes: pack, contentType: "application/x-provisioner-pack")
    }
}
