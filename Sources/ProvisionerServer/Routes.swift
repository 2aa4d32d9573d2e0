import Foundation
import HTTPTypes
import Hummingbird
import ProvisionerAPI
import ProvisionerCore
import ProvisionerPKI
import Synchronization

/// What the routes share: the settings, the database and the file trees.
public struct Services: Sendable {
    public let config: ServerConfig
    public let store: Store
    public let files: FileServer
    public let digests: DigestCache
    public let registrations: RegistrationLimiter
    /// The kernels of image versions and the boot files made from them.
    public let kernels: KernelCatalog
    /// Prometheus metrics (`GET /metrics`).
    public let metrics: ServerMetrics
    /// The ports the listeners actually bound (differ from the config when it says 0).
    let apiPort: PortBox
    let bootPort: PortBox

    public init(config: ServerConfig, store: Store) {
        self.config = config
        self.apiPort = PortBox(config.listenPort)
        self.bootPort = PortBox(config.bootListenPort)
        self.store = store
        self.digests = DigestCache()
        self.registrations = RegistrationLimiter(config.registration)
        self.files = FileServer(root: config.filesDirectory, digests: digests)
        self.kernels = KernelCatalog(config: config)
        self.metrics = ServerMetrics()
    }

    /// Where agents reach the HTTPS listener: `serverURL`, else the host the request came to.
    func serverURL(for request: Request) -> String {
        if let url = config.serverURL { return url }
        let host = Self.hostOnly(Self.authority(of: request) ?? "localhost")
        return "https://\(host):\(apiPort.get())"
    }

    /// The request's `Host` when it is a plain `host[:port]` (letters, digits, `.-_:[]`), else nil:
    /// it is written into iPXE scripts and kernel command lines, where a space, a newline or a `$`
    /// would be another argument or another command.
    static func authority(of request: Request) -> String? {
        guard let authority = request.head.authority, !authority.isEmpty, authority.utf8.count <= 255 else {
            return nil
        }
        let allowed = authority.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                true
            case UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "["),
                UInt8(ascii: "]"):
                true
            default: false
            }
        }
        return allowed ? authority : nil
    }

    /// The mirror list for agents: this server first, then the configured mirrors.
    func mirrors(for request: Request) -> [String] {
        [serverURL(for: request)] + config.mirrors
    }

    static func hostOnly(_ hostHeader: String) -> String {
        if hostHeader.hasPrefix("["), let close = hostHeader.firstIndex(of: "]") {
            return String(hostHeader[...close])
        }
        if let colon = hostHeader.lastIndex(of: ":") { return String(hostHeader[..<colon]) }
        return hostHeader
    }
}

/// Reads a JSON body of at most `limit` bytes: another `Content-Type` than JSON is a 415, malformed
/// JSON a 400 naming the problem.
func decodeJSON<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = 4 << 20) async throws -> T {
    try requireJSONContentType(request)
    if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
        throw APIError(
            .contentTooLarge, "body-too-large", "the body has \(length) bytes; this route takes at most \(limit)")
    }
    let buffer: ByteBuffer
    do {
        buffer = try await request.body.collect(upTo: limit)
    } catch {
        throw APIError(.contentTooLarge, "body-too-large", "the body is larger than \(limit) bytes")
    }
    guard buffer.readableBytes > 0 else { throw APIError(.badRequest, "bad-json", "the body is empty; JSON expected") }
    return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
}

/// `application/json` (any parameters, such as `charset=utf-8`), or a 415 naming what was sent.
func requireJSONContentType(_ request: Request) throws {
    try requireContentType(request, "application/json")
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    APIError.jsonResponse(value, status: status)
}

extension Services {
    /// Agent routes: sessions, events, files. Callers need a node or admin certificate.
    func addAgentRoutes(to group: RouterGroup<ProvisionerContext>) {
        group.post("sessions") { request, context -> Response in
            let open = try await decodeJSON(SessionOpenRequest.self, from: request)
            try self.registrations.admit(
                address: context.remoteAddress, macs: open.macs.compactMap(MACAddress.normalize),
                what: "a registration", logger: context.logger)
            let (session, node) = try await store.openSession(
                macs: open.macs, facts: open.facts, remoteAddress: context.remoteAddress, source: "agent",
                limits: config.registration)
            self.metrics.sessionOpened(source: "agent")
            return json(try await self.sessionResponse(session, try await self.agentNode(node), request), status: .created)
        }
        group.get("sessions/:id") { request, context -> Response in
            let id = try context.parameters.require("id")
            let (session, node) = try await store.pollSession(id)
            return json(try await self.sessionResponse(session, try await self.agentNode(node), request))
        }
        group.post("sessions/:id/events") { request, context -> Response in
            let id = try context.parameters.require("id")
            let batch = try await decodeJSON(EventBatch.self, from: request, limit: 1 << 20)
            guard batch.events.count <= 1000 else {
                throw APIError(.contentTooLarge, "too-many-events", "at most 1000 events per request")
            }
            let accepted = try await store.addEvents(id, batch.events)
            self.metrics.events(batch.events)
            return json(accepted)
        }
        group.post("sessions/:id/finish") { request, context -> Response in
            let id = try context.parameters.require("id")
            let finish = try await decodeJSON(SessionFinish.self, from: request, limit: 64 << 10)
            let summary = try await store.finishSession(id, finish)
            self.metrics.sessionFinished(succeeded: finish.succeeded)
            return json(summary)
        }
    }

    /// The node's config as its agent gets it: an image that follows a branch (or the live one)
    /// names the version that branch is at now, so the node boots exactly what the registry says.
    /// An image only in the store directory (imported with `--store`) keeps following `latest`.
    /// What the agent's session gets: the node with its image resolved and its overlays rendered.
    func agentNode(_ node: NodeConfig?) async throws -> NodeConfig? {
        guard let node else { return nil }
        return try await resolved(try await store.withRenderedOverlays(node))
    }

    func resolved(_ node: NodeConfig?) async throws -> NodeConfig? {
        guard var node, let ref = node.image, ref.version == nil else { return node }
        if let record = try await store.image(named: ref.name) {
            guard let version = record.resolve(ref) else {
                throw APIError(
                    .conflict, "unknown-branch",
                    "node \(node.name) follows \(ref.spelled), but image \(ref.name) has no branch \(ref.branch ?? record.live)")
            }
            node.image = ImageRef(name: ref.name, version: version, branch: ref.branch ?? record.live)
        }
        return node
    }

    /// The answer to a session open or poll. An assigned node learns what it boots; when that is not
    /// what its image implies (a fallback to the server's kernel, a pinned kernel the image lacks),
    /// the session records why as a warning, so the admin sees it next to the boot.
    func sessionResponse(_ session: SessionSummary, _ node: NodeConfig?, _ request: Request) async throws
        -> SessionResponse
    {
        var response = SessionResponse(
            sessionID: session.id, status: node == nil ? .unassigned : .assigned, node: node,
            pollAfterSeconds: node == nil ? config.pollAfterSeconds : nil, mirrors: mirrors(for: request))
        guard let node else { return response }
        let choice = await bootFiles(for: node)
        var warning: String?
        switch choice.result {
        case .success(let files):
            response.boot = files
            warning = files.warning
        case .failure(let error):
            response.bootProblem = error.description
            warning = error.description
        }
        if let warning {
            _ = try? await store.addEvents(
                session.id, [AgentEvent(phase: "register", level: .warning, message: "server: \(warning)")])
        }
        return response
    }

    /// `/files/{kernels|initramfs|plugins}/{name}` for any caller with a cluster certificate.
    func addFileRoutes(to router: Router<ProvisionerContext>, roles: Set<CertificateRole>) {
        let files = router.group("files").add(middleware: RoleMiddleware(roles: roles))
        for method in [HTTPRequest.Method.get, .head] {
            files.on(":kind/:name", method: method) { request, context -> Response in
                let kind = try context.parameters.require("kind")
                guard FileKind(rawValue: kind) != nil else {
                    throw APIError.notFound("no-such-file", "no file tree \"\(kind)\" (kernels, initramfs, plugins, derived)")
                }
                return try await self.files.respond(
                    [kind, try context.parameters.require("name")], request: request, context: context)
            }
        }
    }
}

final class PortBox: Sendable {
    private let value: Mutex<Int>
    init(_ port: Int) { value = Mutex(port) }
    func get() -> Int { value.withLock { $0 } }
    func set(_ port: Int) { value.withLock { $0 = port } }
}

/// The file trees under STATE/files.
public enum FileKind: String, CaseIterable, Sendable {
    case kernels, initramfs, plugins
    /// Made by the server from image versions (their kernels and modules initramfs), named by SHA-256.
    case derived
}
