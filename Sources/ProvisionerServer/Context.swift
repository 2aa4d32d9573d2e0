import Hummingbird
import NIOCore
import NIOSSL
import ProvisionerPKI

/// The request context: who is calling (from the client certificate) and from where.
public struct ProvisionerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection's channel (TLS state lives in its pipeline).
    let channel: (any Channel)?
    public var remoteAddress: String?
    /// Set by `IdentityMiddleware`.
    public var peer: PeerIdentity?
    /// Set by the app per listener: bodies larger than this are refused with 413.
    public var maxUploadSize: Int { 4 << 20 }

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
        self.remoteAddress = source.channel.remoteAddress.flatMap { $0.ipAddress }
    }
}

/// How the server learns who the client is.
public enum PeerAuthentication: Sendable {
    /// From the TLS client certificate (production: the TLS layer already refused any client
    /// without a certificate from the cluster CA).
    case mutualTLS
    /// Every request is this identity. Only for tests that exercise routes without sockets;
    /// it cannot be chosen by configuration or flags.
    case fixed(PeerIdentity?)
}

/// Reads the peer certificate's role and name into the context, and refuses a revoked
/// certificate (401 `certificate-revoked`, in the audit log once per certificate and process).
struct IdentityMiddleware: RouterMiddleware {
    typealias Context = ProvisionerContext
    let authentication: PeerAuthentication
    let certificates: CertificateRegistry
    let store: Store

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        var context = context
        switch authentication {
        case .fixed(let identity):
            context.peer = identity
        case .mutualTLS:
            if let channel = context.channel,
                let certificate = try? await channel.nioSSL_peerCertificate().get()
            {
                context.peer = try? PeerIdentity(derEncoded: try certificate.toDERBytes())
            }
        }
        if let peer = context.peer, try await certificates.check(peer, store: store) {
            if await certificates.firstRefusal(peer.serial) {
                await store.auditRefusal(
                    Actor(name: "\(peer.role?.rawValue ?? "none"):\(peer.name)", remoteAddress: context.remoteAddress),
                    "certificate.refused", "certificate/\(peer.serial)", "revoked")
            }
            context.logger.notice("refused revoked certificate \(peer.serial) (\(peer.name)) from \(context.remoteAddress ?? "?")")
            throw APIError(
                .unauthorized, "certificate-revoked",
                "certificate \(peer.serial) (\(peer.name)) is revoked; a node enrolls again, an admin needs a new certificate")
        }
        return try await next(request, context)
    }
}

/// Lets through only callers whose certificate has one of `roles`.
struct RoleMiddleware: RouterMiddleware {
    typealias Context = ProvisionerContext
    let roles: Set<CertificateRole>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let peer = context.peer else {
            throw APIError(.unauthorized, "no-certificate", "this route needs a client certificate from the cluster CA")
        }
        guard let role = peer.role, roles.contains(role) else {
            let wanted = roles.map(\.rawValue).sorted().joined(separator: " or ")
            throw APIError.forbidden(
                "certificate \"\(peer.name)\" (role \(peer.role?.rawValue ?? "none")) may not use this route; it needs role \(wanted)"
            )
        }
        return try await next(request, context)
    }
}
