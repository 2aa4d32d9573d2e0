import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
import ProvisionerAPI
import ProvisionerCore
import ProvisionerImage

/// Branches, the live branch, rollback and diff; deleting versions, collecting and checking the
/// store (docs/images.md). Every change is audited in the same transaction as the change.
extension Services {
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
                    summary: ChangeSummary(s),
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
            var report = try await NIOThreadPool.singleton.runIfActive {
                do {
                    return try StoreMaintenance.collect(store, graceSeconds: graceSeconds, now: now)
                } catch {
                    throw APIError(.internalServerError, "gc-failed", "\(error)")
                }
            }
            do {
                (report.bootFilesRemoved, report.bootFilesFreedBytes) = try await self.kernels.collect(
                    graceSeconds: graceSeconds, now: now)
            } catch {
                throw APIError(.internalServerError, "gc-failed", "boot files in files/derived: \(error)")
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
            return ChangeSummary(s)
        }
    }
}
