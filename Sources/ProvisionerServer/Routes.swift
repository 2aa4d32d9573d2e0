import Foundation
import HTTPTypes
import Hummingbird
import Logging
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
    /// Signs node certificates at enrollment: the cluster CA, when the server holds its key.
    public let signer: ClusterCA?
    /// Revoked and known certificate serials.
    public let certificates: CertificateRegistry
    public let secrets: SecretVault
    /// Multicast sessions (udp-sender processes) and the policy's waiting nodes.
    public let multicast: MulticastService
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
        self.multicast = MulticastService(
            config: config, metrics: metrics, logger: Logger(label: "provisioner-server.multicast"))
        self.signer = Self.loadSigner(config)
        self.certificates = CertificateRegistry()
        self.secrets = SecretVault(
            keyPath: config.secretsKeyPath, scratch: config.stateDir, sshHostKeys: config.sshHostKeys)
    }

    /// The cluster CA with its key, when both files are there and belong together.
    static func loadSigner(_ config: ServerConfig) -> ClusterCA? {
        guard let certificate = try? String(contentsOfFile: config.caPath, encoding: .utf8),
            let key = try? String(contentsOfFile: config.caKeyPath, encoding: .utf8)
        else { return nil }
        return try? ClusterCA(certificatePEM: certificate, privateKeyPEM: key)
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
    /// Agent routes: sessions, events, enrollment. The caller's certificate decides what it gets
    /// (docs/certificates.md, "Authorization"): the shared bootstrap certificate registers, waits,
    /// reports and enrolls; only the node's own certificate (or an admin's) gets its whole config
    /// and its secrets.
    func addAgentRoutes(to group: RouterGroup<ProvisionerContext>) {
        group.post("sessions") { request, context -> Response in
            let caller = try Self.sessionCaller(context)
            let open = try await decodeJSON(SessionOpenRequest.self, from: request)
            try self.registrations.admit(
                address: context.remoteAddress, macs: open.macs.compactMap(MACAddress.normalize),
                what: "a registration", logger: context.logger)
            let (session, node) = try await self.refusalsAudited(context, "session.open", "sessions") {
                try await store.openSession(
                    macs: open.macs, facts: open.facts, remoteAddress: context.remoteAddress, source: "agent",
                    limits: config.registration, caller: caller)
            }
            self.metrics.sessionOpened(source: "agent")
            return json(try await self.sessionResponse(session, node, request, caller: caller), status: .created)
        }
        group.get("sessions/:id") { request, context -> Response in
            let caller = try Self.sessionCaller(context)
            let id = try context.parameters.require("id")
            let (session, node) = try await self.refusalsAudited(context, "session.poll", "session/\(id)") {
                try await store.pollSession(id, caller: caller)
            }
            return json(try await self.sessionResponse(session, node, request, caller: caller))
        }
        group.post("sessions/:id/events") { request, context -> Response in
            let caller = try Self.sessionCaller(context)
            let id = try context.parameters.require("id")
            let batch = try await decodeJSON(EventBatch.self, from: request, limit: 1 << 20)
            guard batch.events.count <= 1000 else {
                throw APIError(.contentTooLarge, "too-many-events", "at most 1000 events per request")
            }
            let accepted = try await self.refusalsAudited(context, "session.events", "session/\(id)") {
                try await store.addEvents(id, batch.events, caller: caller)
            }
            self.metrics.events(batch.events)
            return json(accepted)
        }
        group.post("sessions/:id/finish") { request, context -> Response in
            let caller = try Self.sessionCaller(context)
            let id = try context.parameters.require("id")
            let finish = try await decodeJSON(SessionFinish.self, from: request, limit: 64 << 10)
            let summary = try await self.refusalsAudited(context, "session.finish", "session/\(id)") {
                try await store.finishSession(id, finish, caller: caller)
            }
            self.metrics.sessionFinished(succeeded: finish.succeeded)
            return json(summary)
        }
        group.post("sessions/:id/enroll") { request, context -> Response in
            let caller = try Self.sessionCaller(context)
            let id = try context.parameters.require("id")
            let body = try await decodeJSON(EnrollRequest.self, from: request, limit: 64 << 10)
            return json(try await self.enroll(session: id, body, caller: caller, context: context))
        }
    }

    /// The caller of a session route: an admin, a node, or the bootstrap certificate.
    static func sessionCaller(_ context: ProvisionerContext) throws -> SessionCaller {
        guard let caller = SessionCaller(context.peer) else {
            throw APIError.forbidden("certificate \"\(context.peer?.name ?? "?")\" may not use boot sessions")
        }
        return caller
    }

    /// Runs `body`; a 403 it throws is written to the audit log (who, what, why) before it goes out.
    func refusalsAudited<T: Sendable>(
        _ context: ProvisionerContext, _ action: String, _ subject: String, _ body: () async throws -> T
    ) async throws -> T {
        do {
            return try await body()
        } catch let error as APIError where error.status == .forbidden {
            await store.auditRefusal(
                Actor(name: context.peer.map { "\($0.role?.rawValue ?? "none"):\($0.name)" } ?? "anonymous",
                    remoteAddress: context.remoteAddress),
                action + ".refused", subject, "\(error.code): \(error.message)")
            throw error
        }
    }

    /// `POST sessions/{id}/enroll`: checks the request against the session and the node's identity
    /// (`EnrollmentRules`), then issues a certificate for the node's own key.
    func enroll(session id: String, _ body: EnrollRequest, caller: SessionCaller, context: ProvisionerContext)
        async throws -> EnrollResult
    {
        let actor = Actor(
            name: context.peer.map { "\($0.role?.rawValue ?? "none"):\($0.name)" } ?? "anonymous",
            remoteAddress: context.remoteAddress)
        let csr: CheckedCertificateRequest
        do { csr = try CheckedCertificateRequest(pem: body.csr) } catch {
            await store.auditRefusal(actor, "node.enroll.refused", "session/\(id)", "bad-csr: \(error)")
            throw APIError(.badRequest, "bad-csr", "csr: \(error)")
        }
        let (session, challenge, identity, policy) = try await store.enrollmentFacts(session: id)
        let facts = EnrollmentFacts(
            sessionNode: session.node, sessionFinished: session.state.isFinished, sessionVerified: session.verified,
            challenge: challenge, caller: caller, identity: identity.state, enrolledKey: identity.key,
            revokedKeys: identity.revokedKeys, approvedBy: identity.approvedBy, policy: policy,
            canSign: signer != nil, requestName: csr.commonName, requestChallenge: csr.challenge,
            requestKey: csr.fingerprint)
        switch EnrollmentRules.decide(facts) {
        case .refuse(let rule, let status, let code, let message):
            await store.auditRefusal(
                actor, "node.enroll.refused", "node/\(session.node ?? "-")", "\(rule.rawValue) \(code): \(message)")
            throw APIError(.init(code: status), code, message)
        case .issue(let kind, let rule):
            guard let signer, let node = session.node else { throw APIError.conflict("enrollment: no signer") }
            let now = Date()
            let notAfter = now.addingTimeInterval(Double(config.nodeCertificateHours) * 3600)
            let certificate = try signer.sign(
                publicKey: csr.publicKey, role: .node, commonName: node, notBefore: now.addingTimeInterval(-3600),
                notAfter: notAfter)
            let serial = certificate.serialHex
            try await store.completeEnrollment(
                session: id, node: node, kind: kind, key: csr.fingerprint, serial: serial, notAfter: notAfter,
                actor: actor)
            await certificates.issued(serial)
            _ = try? await store.addEvents(
                id,
                [
                    AgentEvent(
                        phase: "register",
                        message: "server: node \(node) enrolled (\(kind.rawValue), rule \(rule.rawValue)); "
                            + "key \(csr.fingerprint), certificate \(serial) valid until \(Clock.iso(Int(notAfter.timeIntervalSince1970 * 1000)))")
                ])
            return EnrollResult(
                certificate: try certificate.serializeAsPEM().pemString, kind: kind,
                notAfter: Clock.iso(Int(notAfter.timeIntervalSince1970 * 1000)), serial: serial)
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
    /// A caller that has not proved it is the node (the bootstrap certificate) gets only the
    /// node's `bootstrapView` and the enrollment challenge.
    func sessionResponse(
        _ session: SessionSummary, _ stored: NodeConfig?, _ request: Request, caller: SessionCaller
    ) async throws -> SessionResponse {
        var response = SessionResponse(
            sessionID: session.id, status: stored == nil ? .unassigned : .assigned,
            pollAfterSeconds: stored == nil ? config.pollAfterSeconds : nil, mirrors: mirrors(for: request))
        guard let stored else { return response }
        guard caller.provesNode else {
            response.node = stored.bootstrapView
            if let challenge = try await store.challenge(of: session.id) {
                response.enrollment = EnrollmentOffer(
                    node: stored.name, challenge: challenge, certificateHours: config.nodeCertificateHours)
            }
            return response
        }
        guard let node = try await agentNode(stored) else { return response }
        response.node = node
        if await multicast.mayOffer(node: node.name) { response.multicast = true }
        response.secrets = try await secrets.delivery(for: node, store: store)
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
