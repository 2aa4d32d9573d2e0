import Foundation
import Hummingbird
import ProvisionerAPI
import ProvisionerPKI

/// Who the caller is, as the server sees it (`GET /api/v1/admin/whoami`).
public struct WhoAmI: Codable, Sendable {
    public var name: String
    public var role: String?
    public var remoteAddress: String?
}

extension Services {
    /// Admin routes under /api/v1/admin: callers need an admin certificate. Every change is audited.
    func addAdminRoutes(to group: RouterGroup<ProvisionerContext>) {
        @Sendable func actor(_ context: ProvisionerContext) -> Actor {
            Actor(name: context.peer?.name ?? "unknown", remoteAddress: context.remoteAddress)
        }
        @Sendable func limit(_ request: Request, default value: Int, max: Int) throws -> Int {
            guard let text = request.uri.queryParameters["limit"] else { return value }
            guard let n = Int(text), n > 0 else { throw APIError.badRequest("limit must be a positive number") }
            return min(n, max)
        }

        group.get("whoami") { _, context -> Response in
            json(
                WhoAmI(
                    name: context.peer?.name ?? "unknown", role: context.peer?.role?.rawValue,
                    remoteAddress: context.remoteAddress))
        }
        group.get("nodes") { _, _ -> Response in
            json(try await store.nodes())
        }
        group.post("nodes") { request, context -> Response in
            let config = try await decodeJSON(NodeDefinition.self, from: request)
            try await self.checkKernelPin(try await store.effective(config))
            return json(try await store.createNode(config, by: actor(context)), status: .created)
        }
        group.get("nodes/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard let node = try await store.node(named: name) else {
                throw APIError.notFound("unknown-node", "no node named \(name)")
            }
            return json(node)
        }
        group.put("nodes/:name") { request, context -> Response in
            let name = try context.parameters.require("name")
            let config = try await decodeJSON(NodeDefinition.self, from: request)
            guard config.name == name else {
                throw APIError.badRequest("the body names node \(config.name) but the path names \(name)")
            }
            try await self.checkKernelPin(try await store.effective(config))
            return json(try await store.updateNode(config, by: actor(context)))
        }
        group.delete("nodes/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            try await store.deleteNode(named: name, by: actor(context))
            try await self.forgetNode(name, by: actor(context))
            return json(["deleted": name])
        }
        group.post("nodes/import") { request, context -> Response in
            let input = try await decodeJSON(ImportRequest.self, from: request, limit: 32 << 20)
            return json(
                try await store.importNodes(
                    input.nodes, profiles: input.profiles, prune: input.prune, by: actor(context)))
        }
        group.post("nodes/bulk") { request, context -> Response in
            let input = try await decodeJSON(BulkNodesRequest.self, from: request, limit: 32 << 20)
            return json(["nodes": try await store.bulkNodes(input, by: actor(context))])
        }
        group.post("pending/assign-many") { request, context -> Response in
            let input = try await decodeJSON(AssignManyRequest.self, from: request)
            return json(try await store.assignMany(to: input.nodes, by: actor(context)))
        }
        addProfileRoutes(to: group, actor: actor)
        group.get("pending") { _, _ -> Response in
            json(try await store.pending())
        }
        group.post("pending/assign") { request, context -> Response in
            let assign = try await decodeJSON(AssignRequest.self, from: request)
            return json(try await store.assign(machine: assign.machine, to: assign.node, by: actor(context)))
        }
        group.get("sessions") { request, _ -> Response in
            let node = request.uri.queryParameters["node"].map(String.init)
            return json(try await store.sessions(node: node, limit: try limit(request, default: 50, max: 1000)))
        }
        group.get("sessions/:id") { request, context -> Response in
            let id = try context.parameters.require("id")
            var after = 0
            if let text = request.uri.queryParameters["after"] {
                guard let n = Int(text), n >= 0 else { throw APIError.badRequest("after must be a number") }
                after = n
            }
            let max = try limit(request, default: 1000, max: 10000)
            // `wait=SECONDS` (at most 30): long poll, answer as soon as there is a newer event or
            // the session ends (what `provisionerctl sessions watch` uses).
            var waitSeconds = 0
            if let text = request.uri.queryParameters["wait"] {
                guard let n = Int(text), n >= 0 else { throw APIError.badRequest("wait must be a number of seconds") }
                waitSeconds = min(n, 30)
            }
            let deadline = ContinuousClock.now + .seconds(waitSeconds)
            var detail = try await store.session(id, afterSeq: after, limit: max)
            while detail.events.isEmpty && !detail.session.state.isFinished && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(250))
                detail = try await store.session(id, afterSeq: after, limit: max)
            }
            return json(detail)
        }
        group.get("audit") { request, _ -> Response in
            let subject = request.uri.queryParameters["subject"].map(String.init)
            return json(try await store.auditLog(limit: try limit(request, default: 100, max: 10000), subject: subject))
        }
    }

    /// Profiles and overlays (docs/server-api.md); every change audited.
    func addProfileRoutes(to group: RouterGroup<ProvisionerContext>, actor: @escaping @Sendable (ProvisionerContext) -> Actor) {
        group.get("profiles") { _, _ -> Response in
            json(try await store.profiles())
        }
        group.get("profiles/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard let record = try await store.profile(named: name) else {
                throw APIError.notFound("unknown-profile", "no profile named \(name)")
            }
            return json(record)
        }
        group.post("profiles") { request, context -> Response in
            let profile = try await decodeJSON(Profile.self, from: request)
            return json(try await store.saveProfile(profile, create: true, by: actor(context)), status: .created)
        }
        group.put("profiles/:name") { request, context -> Response in
            let name = try context.parameters.require("name")
            let profile = try await decodeJSON(Profile.self, from: request)
            guard profile.name == name else {
                throw APIError.badRequest("the body names profile \(profile.name) but the path names \(name)")
            }
            return json(try await store.saveProfile(profile, create: false, by: actor(context)))
        }
        group.delete("profiles/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            try await store.deleteProfile(named: name, by: actor(context))
            return json(["deleted": name])
        }
        group.get("overlays") { _, _ -> Response in
            json(try await store.overlays())
        }
        group.get("overlays/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard let overlay = try await store.overlay(named: name) else {
                throw APIError.notFound("unknown-overlay", "no overlay named \(name)")
            }
            return json(overlay)
        }
        group.post("overlays") { request, context -> Response in
            let overlay = try await decodeJSON(Overlay.self, from: request, limit: 32 << 20)
            return json(try await store.saveOverlay(overlay, create: true, by: actor(context)), status: .created)
        }
        group.put("overlays/:name") { request, context -> Response in
            let name = try context.parameters.require("name")
            let overlay = try await decodeJSON(Overlay.self, from: request, limit: 32 << 20)
            guard overlay.name == name else {
                throw APIError.badRequest("the body names overlay \(overlay.name) but the path names \(name)")
            }
            return json(try await store.saveOverlay(overlay, create: false, by: actor(context)))
        }
        group.delete("overlays/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            try await store.deleteOverlay(named: name, by: actor(context))
            return json(["deleted": name])
        }
        group.get("nodes/:name/files") { _, context -> Response in
            // The node's overlays as its agent gets them (what `overlays show --node` prints).
            let name = try context.parameters.require("name")
            guard let record = try await store.node(named: name) else {
                throw APIError.notFound("unknown-node", "no node named \(name)")
            }
            return json(try await store.withRenderedOverlays(record.config).files ?? [])
        }
    }
}
