import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
import ProvisionerAPI
import ProvisionerImage

/// Publishing images through the server (docs/images.md): an admin sends the manifest first and
/// learns which objects the server lacks, sends those in packs (each checked against its hash, so a
/// cut connection resumes by asking again), and commits. Only a commit whose every object is present
/// moves a branch; the move and its audit entry are one transaction.
extension Services {
    static let manifestType = "application/x-provisioner-manifest"
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

        group.get("images") { _, _ -> Response in json(try await self.store.images()) }
        group.get("images/:name") { _, context -> Response in
            let name = try imageName(context)
            guard let record = try await self.store.image(named: name) else {
                throw APIError.notFound("unknown-image", "no image named \(name)")
            }
            return json(record)
        }

        // 1. The manifest: validated, kept as the upload, answered with the objects still missing.
        group.post("images/:name/uploads") { request, context -> Response in
            let name = try imageName(context)
            let branch = try await self.branchParameter(request, image: name)
            try requireContentType(request, Self.manifestType)
            let body = try await collectBody(request, limit: 512 << 20, what: "a manifest")
            let (manifest, encoded) = try await NIOThreadPool.singleton.runIfActive {
                do {
                    return (try ManifestCodec.decode(body), body)
                } catch {
                    throw APIError(.unprocessableContent, "bad-manifest", "\(error)")
                }
            }
            let id = try await NIOThreadPool.singleton.runIfActive { try store.saveUpload(image: name, manifest: encoded) }
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

    func addImageBranchRoutes(to group: RouterGroup<ProvisionerContext>) {
        let store = ImageStore(root: config.imagesDirectory)
        @Sendable func actor(_ context: ProvisionerContext) -> Actor {
            Actor(name: context.peer?.name ?? "unknown", remoteAddress: context.remoteAddress)
        }
        @Sendable func names(_ context: ProvisionerContext, branch: Bool) throws -> (String, String) {
            let name = try context.parameters.require("name")
            let branchName = branch ? try context.parameters.require("branch") : ImageNames.defaultBranch
            for (what, text) in [("an image", name), ("a branch", branchName)] where !ImageNames.isValid(text) {
                throw APIError(.badRequest, "bad-name", "\"\(text.terminalSafe)\" is not \(what) name ([a-z0-9][a-z0-9._-]{0,63})")
            }
            return (name, branchName)
        }
        @Sendable func record(_ name: String) async throws -> ImageRecord {
            guard let record = try await self.store.image(named: name) else {
                throw APIError.notFound("unknown-image", "no image named \(name)")
            }
            return record
        }

        group.put("images/:name/live") { request, context -> Response in
            let (name, _) = try names(context, branch: false)
            let input = try await decodeJSON(LiveRequest.self, from: request)
            let updated = try await self.store.setLive(image: name, branch: input.branch, by: actor(context))
            try await self.updateLatest(image: name, store: store)
            return json(updated)
        }
        group.post("images/:name/branches") { request, context -> Response in
            let (name, _) = try names(context, branch: false)
            let input = try await decodeJSON(BranchCreateRequest.self, from: request)
            guard ImageNames.isValid(input.name) else {
                throw APIError(.badRequest, "bad-name", "\"\(input.name.terminalSafe)\" is not a branch name")
            }
            let image = try await record(name)
            let from = input.from ?? image.live
            let version =
                ImageNames.isVersionID(from)
                ? from : image.branches.first { $0.name == from }?.head
            guard let version else {
                throw APIError.notFound("unknown-branch", "image \(name) has no branch \(from.terminalSafe)")
            }
            return json(
                try await self.store.moveBranch(
                    image: name, branch: input.name, to: version, create: true, action: "image.branch.create",
                    summary: ChangeSummary(), by: actor(context)), status: .created)
        }
        group.delete("images/:name/branches/:branch") { _, context -> Response in
            let (name, branch) = try names(context, branch: true)
            try await self.store.deleteBranch(image: name, branch: branch, by: actor(context))
            return json(["deleted": "\(name)/\(branch)"])
        }
        group.post("images/:name/branches/:branch/rollback") { request, context -> Response in
            let (name, branch) = try names(context, branch: true)
            let input = try await decodeJSON(RollbackRequest.self, from: request)
            let image = try await record(name)
            guard let head = image.branches.first(where: { $0.name == branch })?.head else {
                throw APIError.notFound("unknown-branch", "image \(name) has no branch \(branch)")
            }
            let previous = try await self.store.rollbackTarget(image: name, branch: branch)
            guard let target = input.to ?? previous else {
                throw APIError.conflict("\(name)/\(branch) is at its first version; name one with --to")
            }
            let summary = try await self.summary(image: name, from: head, to: target, store: store)
            let move = try await self.store.moveBranch(
                image: name, branch: branch, to: target, create: false, action: "image.rollback", summary: summary,
                by: actor(context))
            try await self.updateLatest(image: name, store: store)
            return json(move)
        }
        group.get("images/:name/diff") { request, context -> Response in
            let (name, _) = try names(context, branch: false)
            let image = try await record(name)
            func version(_ key: String) throws -> String {
                guard let text = request.uri.queryParameters[Substring(key)].map(String.init) else {
                    throw APIError.badRequest("diff needs ?a=&b= (versions or branches)")
                }
                let ref = ImageNames.isVersionID(text) ? ImageRef(name: name, version: text) : ImageRef(name: name, branch: text)
                guard let id = image.resolve(ref) else {
                    throw APIError.notFound("unknown-version", "image \(name) has no version or branch \(text.terminalSafe)")
                }
                return id
            }
            let (a, b) = (try version("a"), try version("b"))
            let differences = try await NIOThreadPool.singleton.runIfActive {
                let old = try Self.manifest(image: name, version: a, store: store)
                let new = try Self.manifest(image: name, version: b, store: store)
                return ManifestComparison.compare(old: old, new: new)
            }
            let s = differences.summary
            return json(
                ImageDiff(
                    image: name, from: a, to: b,
                    summary: ChangeSummary(added: s.added, changed: s.changed, removed: s.removed, contentBytes: s.contentBytes),
                    entries: differences.differences.prefix(100_000).map {
                        ImageDiff.Entry(path: $0.pathString, change: $0.change.rawValue, aspects: $0.aspects)
                    }))
        }
    }

    func addImageMaintenanceRoutes(to group: RouterGroup<ProvisionerContext>) {
        let store = ImageStore(root: config.imagesDirectory)
        @Sendable func actor(_ context: ProvisionerContext) -> Actor {
            Actor(name: context.peer?.name ?? "unknown", remoteAddress: context.remoteAddress)
        }
        group.delete("images/:name/versions/:id") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard ImageNames.isValid(name) else {
                throw APIError(.badRequest, "bad-name", "\"\(name.terminalSafe)\" is not an image name")
            }
            let id = try Self.hash(try context.parameters.require("id"), what: "a version")
            try await self.store.deleteVersion(image: name, id: id.hex, by: actor(context))
            try await NIOThreadPool.singleton.runIfActive { StoreMaintenance.removeVersion(store, image: name, id: id) }
            return json(["deleted": "\(name)@\(id.hex)"])
        }
        // Safe while nodes sync and admins upload: uploads under way are roots, and objects younger
        // than `grace` seconds (default 3600) are kept whatever names them.
        group.post("images/gc") { request, context -> Response in
            var grace: Int64 = 3600
            if let text = request.uri.queryParameters["grace"] {
                guard let n = Int64(text), (0...30 * 86400).contains(n) else {
                    throw APIError.badRequest("grace is 0 to 2592000 seconds")
                }
                grace = n
            }
            let now = Int64(Date().timeIntervalSince1970)
            let graceSeconds = grace
            let report = try await NIOThreadPool.singleton.runIfActive {
                do {
                    return try StoreMaintenance.collect(store, graceSeconds: graceSeconds, now: now)
                } catch {
                    throw APIError(.internalServerError, "gc-failed", "\(error)")
                }
            }
            try await self.store.auditCollection(StoredJSONValue(text: StoredJSON.encode(report)), by: actor(context))
            return json(report)
        }
        group.get("images/fsck") { _, _ -> Response in
            json(try await NIOThreadPool.singleton.runIfActive { try StoreMaintenance.check(store) })
        }
    }

    static func manifest(image: String, version: String, store: ImageStore) throws -> Manifest {
        guard let id = ObjectHash(hex: version), let bytes = try store.manifestBytes(image: image, version: id) else {
            throw APIError.notFound("unknown-version", "the store has no manifest \(version) of \(image)")
        }
        return try ManifestCodec.decode(bytes)
    }

    func summary(image: String, from: String, to: String, store: ImageStore) async throws -> ChangeSummary {
        try await NIOThreadPool.singleton.runIfActive {
            let s = ManifestComparison.summary(
                old: try Self.manifest(image: image, version: from, store: store),
                new: try Self.manifest(image: image, version: to, store: store))
            return ChangeSummary(added: s.added, changed: s.changed, removed: s.removed, contentBytes: s.contentBytes)
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
        let id = try await NIOThreadPool.singleton.runIfActive { try store.addVersion(image: image, manifest: encoded) }
        let move = try await self.store.publish(
            image: image, branch: branch, version: id.hex, expectedHead: previousHead,
            entries: manifest.entries.count, contentBytes: manifest.contentBytes,
            summary: ChangeSummary(
                added: summary.added, changed: summary.changed, removed: summary.removed,
                contentBytes: summary.contentBytes),
            by: actor)
        try await updateLatest(image: image, store: store)
        try await NIOThreadPool.singleton.runIfActive { store.removeUpload(image: image, id: id) }
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

/// A zstd context for one request's objects (used on the thread pool, one batch at a time).
final class DecompressionContextBox: @unchecked Sendable {
    let value = DecompressionContext()
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
