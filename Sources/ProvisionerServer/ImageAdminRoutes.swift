import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
import ProvisionerAPI
import ProvisionerCore
import ProvisionerImage

/// Publishing images through the server (docs/images.md): an admin sends the manifest first and
/// learns which objects the server lacks, sends those in packs (each checked against its hash, so a
/// cut connection resumes by asking again), and commits. Only a commit whose every object is present
/// moves a branch; the move and its audit entry are one transaction.
extension Services {
    static let manifestType = "application/x-provisioner-manifest"
    /// A manifest sent as a zstd frame compressed with an earlier version's manifest as prefix
    /// (`ManifestDelta`), named by `?delta-from=VERSION` (and `&delta-image=NAME` when that version is
    /// another image's): a capture after a small change sends a few hundred bytes, not the whole list.
    static let manifestDeltaType = "application/x-provisioner-manifest-delta"
    static let packType = "application/x-provisioner-pack"

    func addImageAdminRoutes(to group: RouterGroup<ProvisionerContext>) {
        let store = ImageStore(root: config.imagesDirectory)
        @Sendable func actor(_ context: ProvisionerContext) -> Actor {
            Actor(name: context.peer?.name ?? "unknown", remoteAddress: context.remoteAddress)
        }
        @Sendable func imageName(_ context: ProvisionerContext) throws -> String {
            let name = try context.parameters.require("name")
            guard ImageNames.isValid(name) else {
                throw APIError(.badRequest, "bad-name", "\"\(name.terminalSafe)\" is not an image name ([a-z0-9][a-z0-9._-]{0,63})")
            }
            return name
        }

        group.get("images") { _, _ -> Response in
            var records: [ImageRecord] = []
            for record in try await self.store.images() { records.append(await self.withKernels(record)) }
            return json(records)
        }
        group.get("images/:name") { _, context -> Response in
            let name = try imageName(context)
            guard let record = try await self.store.image(named: name) else {
                throw APIError.notFound("unknown-image", "no image named \(name)")
            }
            return json(await self.withKernels(record))
        }

        // 1. The manifest: validated, kept as the upload, answered with the objects still missing.
        group.post("images/:name/uploads") { request, context -> Response in
            let name = try imageName(context)
            let branch = try await self.branchParameter(request, image: name)
            let isDelta = mediaType(request) == Self.manifestDeltaType
            if !isDelta { try requireContentType(request, Self.manifestType) }
            let base = isDelta ? try Self.deltaBase(request, image: name) : nil
            let body = try await collectBody(request, limit: 512 << 20, what: "a manifest")
            let (manifest, encoded) = try await NIOThreadPool.singleton.runIfActive {
                var bytes = body
                if let base {
                    guard let old = try store.manifestBytes(image: base.image, version: base.version) else {
                        throw APIError.notFound(
                            "unknown-version", "no version \(base.version.hex) of image \(base.image) to take the delta from")
                    }
                    do { bytes = try ManifestDelta.decode(old: old, delta: body, limit: 512 << 20) } catch {
                        throw APIError(.unprocessableContent, "bad-manifest", "the manifest delta: \(error)")
                    }
                }
                do {
                    return (try ManifestCodec.decode(bytes), bytes)
                } catch {
                    throw APIError(.unprocessableContent, "bad-manifest", "\(error)")
                }
            }
            let id = try await storing("keeping the upload's manifest") { try store.saveUpload(image: name, manifest: encoded) }
            try await self.store.beginUpload(image: name, id: id.hex, branch: branch, by: actor(context))
            let (objects, missing) = try await NIOThreadPool.singleton.runIfActive { Self.missingObjects(manifest, store) }
            return json(
                UploadStatus(
                    upload: id.hex, image: name, branch: branch, objects: objects, missing: missing.map(\.hex)),
                status: .created)
        }

        // 2. Objects, as a pack stream of object frames: each is checked before it is stored.
        group.post("objects") { request, _ -> Response in
            try requireContentType(request, Self.packType)
            var decoder = PackDecoder()
            var result = ObjectsStored(stored: 0, alreadyPresent: 0, bytes: 0)
            let context = DecompressionContextBox()
            for try await buffer in request.body {
                decoder.feed(Array(buffer.readableBytesView))
                var frames: [(ObjectHash, [UInt8])] = []
                do {
                    while let frame = try decoder.next() {
                        switch frame {
                        case .object(let hash, let stored): frames.append((hash, stored))
                        case .end: break
                        case .delta, .missing:
                            throw APIError(.badRequest, "bad-pack", "an upload carries object frames only")
                        }
                    }
                } catch let error as PackError {
                    throw APIError(.badRequest, "bad-pack", error.description)
                }
                guard !frames.isEmpty else { continue }
                let batch = frames
                let (stored, present, bytes) = try await NIOThreadPool.singleton.runIfActive {
                    var stored = 0
                    var present = 0
                    var bytes: UInt64 = 0
                    for (hash, frame) in batch {
                        do {
                            if try store.putStoredObject(hash, stored: frame, context: context.value) {
                                stored += 1
                                bytes += UInt64(frame.count)
                            } else {
                                present += 1
                            }
                        } catch let mismatch as ImageStore.ObjectMismatch {
                            throw APIError(.unprocessableContent, "hash-mismatch", mismatch.description)
                        } catch let error as CompressionError {
                            throw APIError(.unprocessableContent, "bad-object", "object \(hash.hex): \(error)")
                        } catch {
                            // A full disk, a read-only store: the admin sees which path and why.
                            throw APIError(.internalServerError, "store-failed", "storing object \(hash.hex): \(error)")
                        }
                    }
                    return (stored, present, bytes)
                }
                result.stored += stored
                result.alreadyPresent += present
                result.bytes += bytes
            }
            do {
                try decoder.finish()
            } catch {
                throw APIError(.badRequest, "bad-pack", "\(error) (the objects before the cut were kept)")
            }
            return json(result)
        }

        // 3. Commit: every object present, then the version is written and the branch moves.
        group.post("images/:name/uploads/:id/commit") { _, context -> Response in
            let name = try imageName(context)
            let id = try Self.hash(try context.parameters.require("id"), what: "an upload id")
            guard let branch = try await self.store.upload(image: name, id: id.hex),
                let encoded = try await NIOThreadPool.singleton.runIfActive({
                    try store.uploadManifest(image: name, id: id)
                })
            else {
                throw APIError.notFound("unknown-upload", "no upload \(id.hex) of image \(name); send the manifest first")
            }
            return json(try await self.commit(image: name, branch: branch, encoded: encoded, store: store, by: actor(context)))
        }
    }

    /// The branch an upload goes to: `?branch=`, else the image's live branch, else `main`.
    func branchParameter(_ request: Request, image: String) async throws -> String {
        if let text = request.uri.queryParameters["branch"] {
            let branch = String(text)
            guard ImageNames.isValid(branch) else {
                throw APIError(.badRequest, "bad-name", "\"\(branch.terminalSafe)\" is not a branch name ([a-z0-9][a-z0-9._-]{0,63})")
            }
            return branch
        }
        return try await store.image(named: image)?.live ?? ImageNames.defaultBranch
    }

    /// The version a manifest delta is taken from: `?delta-from=VERSION[&delta-image=NAME]`.
    static func deltaBase(_ request: Request, image: String) throws -> (image: String, version: ObjectHash) {
        guard let text = request.uri.queryParameters["delta-from"].map(String.init) else {
            throw APIError(.badRequest, "bad-request", "a manifest delta needs ?delta-from=VERSION (the version it is taken from)")
        }
        guard ImageNames.isVersionID(text), let version = ObjectHash(hex: text) else {
            throw APIError(.badRequest, "bad-request", "delta-from: \"\(text.terminalSafe)\" is not a version id (64 lowercase hex digits)")
        }
        let baseImage = request.uri.queryParameters["delta-image"].map(String.init) ?? image
        guard ImageNames.isValid(baseImage) else {
            throw APIError(.badRequest, "bad-name", "delta-image: \"\(baseImage.terminalSafe)\" is not an image name ([a-z0-9][a-z0-9._-]{0,63})")
        }
        return (baseImage, version)
    }

    /// Distinct objects a manifest names (holes excluded), and those the store lacks.
    static func missingObjects(_ manifest: Manifest, _ store: ImageStore) -> (Int, [ObjectHash]) {
        var seen = Set<ObjectHash>()
        var missing: [ObjectHash] = []
        for entry in manifest.entries where entry.kind == .file {
            for chunk in entry.chunks where !chunk.isHole && seen.insert(chunk.hash).inserted {
                if !store.hasObject(chunk.hash) { missing.append(chunk.hash) }
            }
        }
        return (seen.count, missing)
    }

    /// Publishes an encoded manifest on a branch once every object it names is in the store.
    func commit(image: String, branch: String, encoded: [UInt8], store: ImageStore, by actor: Actor) async throws
        -> BranchMove
    {
        let record = try await self.store.image(named: image)
        let previousHead = record?.branches.first { $0.name == branch }?.head
        // A new branch is compared with the live branch it usually starts from.
        let base = previousHead ?? record?.resolve(ImageRef(name: image))
        let (manifest, summary, missing) = try await NIOThreadPool.singleton.runIfActive {
            let manifest = try ManifestCodec.decode(encoded)
            let (_, missing) = Self.missingObjects(manifest, store)
            let previous = try base.flatMap { ObjectHash(hex: $0) }.flatMap {
                try store.manifestBytes(image: image, version: $0)
            }.map { try ManifestCodec.decode($0) }
            return (manifest, ManifestComparison.summary(old: previous, new: manifest), missing)
        }
        guard missing.isEmpty else {
            throw APIError(
                .conflict, "objects-missing",
                "\(missing.count) objects of this version are not on the server yet (first: \(missing[0].hex)); send them and commit again"
            )
        }
        let id = try await storing("writing the version's manifest") { try store.addVersion(image: image, manifest: encoded) }
        let move = try await self.store.publish(
            image: image, branch: branch, version: id.hex, expectedHead: previousHead,
            entries: manifest.entries.count, contentBytes: manifest.contentBytes,
            summary: ChangeSummary(summary),
            by: actor)
        try await updateLatest(image: image, store: store)
        try await NIOThreadPool.singleton.runIfActive { store.removeUpload(image: image, id: id) }
        // The boot files of the version's kernels are made now, once per kernel (a version that does
        // not change its kernel finds them made), so no boot waits for them. A failure is not the
        // commit's: it is shown by `image show` and makes the node boot the server's kernel, with a warning.
        _ = try? await kernels.offers(image: image, version: id.hex)
        return move
    }

    /// Keeps the store's `latest` file (served at /v1/images/NAME/latest) on the live branch's head.
    func updateLatest(image: String, store: ImageStore) async throws {
        guard let record = try await self.store.image(named: image),
            let head = record.resolve(ImageRef(name: image)), let id = ObjectHash(hex: head)
        else { return }
        try await NIOThreadPool.singleton.runIfActive { try store.setLatest(image: image, version: id) }
    }
}

extension ChangeSummary {
    /// The wire form of a comparison's counts.
    init(_ s: ManifestComparison.Summary) {
        self.init(added: s.added, changed: s.changed, removed: s.removed, contentBytes: s.contentBytes)
    }
}

/// Runs a store write on the thread pool; a failure (a full disk, a read-only store) becomes a 500
/// `store-failed` that says what was written where and why, instead of an anonymous internal error.
func storing<T: Sendable>(_ what: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    do {
        return try await NIOThreadPool.singleton.runIfActive(body)
    } catch let error as APIError {
        throw error
    } catch {
        throw APIError(.internalServerError, "store-failed", "\(what): \(error)")
    }
}

/// A zstd context for one request's objects (used on the thread pool, one batch at a time).
final class DecompressionContextBox: @unchecked Sendable {
    let value = DecompressionContext()
}

/// The request's media type, lowercased, without parameters; nil without a `Content-Type`.
func mediaType(_ request: Request) -> String? {
    request.headers[.contentType].map {
        ($0.split(separator: ";", maxSplits: 1).first.map(String.init) ?? "").trimmingCharacters(in: .whitespaces)
            .lowercased()
    }
}

/// Any `Content-Type` but `type` (parameters aside) is a 415 naming what was sent.
func requireContentType(_ request: Request, _ type: String) throws {
    let sent = request.headers[.contentType]
    let media = sent.map { $0.split(separator: ";", maxSplits: 1).first.map(String.init) ?? "" }
    guard let media, media.trimmingCharacters(in: .whitespaces).lowercased() == type else {
        throw APIError(
            .unsupportedMediaType, "unsupported-media-type",
            "this route takes Content-Type: \(type), not \(sent.map { "\"\($0.terminalSafe)\"" } ?? "none")")
    }
}

/// The whole body, at most `limit` bytes (413 past it).
func collectBody(_ request: Request, limit: Int, what: String) async throws -> [UInt8] {
    if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
        throw APIError(.contentTooLarge, "body-too-large", "\(what) of \(length) bytes; at most \(limit)")
    }
    do {
        return Array(try await request.body.collect(upTo: limit).readableBytesView)
    } catch {
        throw APIError(.contentTooLarge, "body-too-large", "\(what) larger than \(limit) bytes")
    }
}
