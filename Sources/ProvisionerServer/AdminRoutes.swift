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
            let config = try await decodeJSON(NodeConfig.self, from: request)
            try await self.checkKernelPin(config)
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
            let config = try await decodeJSON(NodeConfig.self, from: request)
            guard config.name == name else {
                throw APIError.badRequest("the body names node \(config.name) but the path names \(name)")
            }
            try await self.checkKernelPin(config)
            return json(try await store.updateNode(config, by: actor(context)))
        }
        group.delete("nodes/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            try await store.deleteNode(named: name, by: actor(context))
            return json(["deleted": name])
        }
        group.post("nodes/import") { request, context -> Response in
            let input = try await decodeJSON(ImportRequest.self, from: request, limit: 32 << 20)
            return json(try await store.importNodes(input.nodes, prune: input.prune, by: actor(context)))
        }
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
}
