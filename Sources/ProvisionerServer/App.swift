import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ProvisionerAPI
import ProvisionerPKI
import ServiceLifecycle

/// The mutual-TLS listener's routes. Tests build the very same router with `.fixed` authentication
/// and call it without sockets.
public func buildRouter(_ services: Services, authentication: PeerAuthentication = .mutualTLS) -> Router<
    ProvisionerContext
> {
    let router = Router(context: ProvisionerContext.self)
    router.add(middleware: RequestMetricsMiddleware(metrics: services.metrics, listener: "api"))
    router.add(middleware: ErrorMiddleware())
    router.add(
        middleware: IdentityMiddleware(
            authentication: authentication, certificates: services.certificates, store: services.store))
    router.get("health") { _, _ -> Response in json(["status": "ok"]) }
    router.group().add(middleware: RoleMiddleware(roles: [.admin])).get("metrics") { _, _ -> Response in
        try await services.metricsResponse()
    }
    let api = router.group("api/v1")
    let agent = api.group().add(middleware: RoleMiddleware(roles: [.node, .bootstrap, .admin]))
    services.addAgentRoutes(to: agent)
    services.addMulticastAgentRoutes(to: agent)
    let admin = api.group("admin").add(middleware: RoleMiddleware(roles: [.admin]))
    services.addAdminRoutes(to: admin)
    services.addImageAdminRoutes(to: admin)
    services.addImageBranchRoutes(to: admin)
    services.addKernelAdminRoutes(to: admin)
    services.addImageMaintenanceRoutes(to: admin)
    services.addIdentityAdminRoutes(to: admin)
    services.addMulticastAdminRoutes(to: admin)
    // Image objects and boot files: nodes that proved who they are, mirrors, admins; not the
    // bootstrap certificate every initramfs holds.
    services.addFileRoutes(to: router, roles: [.node, .mirror, .admin])
    services.addImageRoutes(to: router, roles: [.node, .mirror, .admin])
    return router
}

/// The plain-HTTP listener's routes: only what iPXE fetches (docs/threat-model.md).
public func buildBootRouter(_ services: Services) -> Router<ProvisionerContext> {
    let router = Router(context: ProvisionerContext.self)
    router.add(middleware: RequestMetricsMiddleware(metrics: services.metrics, listener: "boot"))
    router.add(middleware: ErrorMiddleware())
    router.get("health") { _, _ -> Response in json(["status": "ok"]) }
    services.addBootRoutes(to: router)
    return router
}

/// The server's TLS settings: its certificate, and client certificates required and checked
/// against the cluster CA (and nothing else).
public func makeServerTLSConfiguration(_ config: ServerConfig) throws -> TLSConfiguration {
    for (what, path) in [
        ("CA certificate", config.caPath), ("server certificate", config.certificatePath),
        ("server key", config.keyPath),
    ]
    where !FileManager.default.fileExists(atPath: path) {
        throw ServerSetupError(
            "the \(what) \(path) does not exist; create the cluster CA and certificates with "
                + "`provisionerctl ca init --dir \(config.tlsDirectory) --name HOST --ip ADDRESS` or set tls: in the config"
        )
    }
    do {
        let chain = try NIOSSLCertificate.fromPEMFile(config.certificatePath)
        let key = try NIOSSLPrivateKey(file: config.keyPath, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(config.caPath))
        // Requires a client certificate that chains to the cluster CA; host names are not checked
        // for clients (the role and name come from the certificate's subject).
        tls.certificateVerification = .noHostnameVerification
        tls.minimumTLSVersion = .tlsv12
        return tls
    } catch {
        throw ServerSetupError(
            "loading TLS files (\(config.certificatePath), \(config.keyPath), \(config.caPath)): \(error)")
    }
}

/// Which listener `onListening` reports.
public enum Listener: String, Sendable {
    case api, boot
}

/// A built server: both listeners, ready to `run()`.
public struct ServerInstance: Sendable {
    public let services: Services
    public let application: Application<RouterResponder<ProvisionerContext>>
    private let group: ServiceGroup

    init(services: Services, application: Application<RouterResponder<ProvisionerContext>>, logger: Logger) {
        self.services = services
        self.application = application
        self.group = ServiceGroup(
            configuration: .init(services: [application], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    }

    /// Runs until SIGTERM, SIGINT or `shutdown()` (graceful: requests in flight finish), then
    /// closes the database.
    public func run() async throws {
        // The store is closed outside this (possibly cancelled) task: closing must not be cancelled.
        let store = services.store
        let multicast = services.multicast
        do {
            try await group.run()
        } catch {
            await multicast.stopAll()
            await Task.detached { await store.close() }.value
            throw error
        }
        await multicast.stopAll()
        await Task.detached { await store.close() }.value
    }

    /// Stops both listeners gracefully; `run()` returns once they are down.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
    }
}

/// Builds the whole server from its configuration: state directory, database, TLS, both listeners.
public func buildApplication(
    _ config: ServerConfig, logger: Logger = Logger(label: "provisioner-server"),
    onListening: @escaping @Sendable (Listener, Int) async -> Void = { _, _ in }
) async throws -> ServerInstance {
    try prepareStateDirectory(config)
    let tls = try makeServerTLSConfiguration(config)
    let store = try await Store.open(path: config.databasePath, logger: logger)
    let services = Services(config: config, store: store)
    /// Every connection of both listeners gets the slow-client deadlines (docs/threat-model.md).
    func http1(_ listener: String) -> HTTPServerBuilder {
        let timeouts = config.timeouts
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [RequestTimeoutHandler(timeouts: timeouts, listener: listener, logger: logger)]
            ))
    }
    var extra: [any Service] = []
    if let bootHost = config.bootListenHost {
        extra.append(
            Application(
                router: buildBootRouter(services),
                server: http1("boot"),
                configuration: .init(address: .hostname(bootHost, port: config.bootListenPort), serverName: nil),
                onServerRunning: { channel in
                    services.bootPort.set(channel.localAddress?.port ?? 0)
                    await onListening(.boot, channel.localAddress?.port ?? 0)
                },
                logger: logger))
    }
    let app = Application(
        router: buildRouter(services),
        server: try .tls(http1("api"), tlsConfiguration: tls),
        configuration: .init(address: .hostname(config.listenHost, port: config.listenPort), serverName: nil),
        services: extra,
        onServerRunning: { channel in
            services.apiPort.set(channel.localAddress?.port ?? 0)
            await onListening(.api, channel.localAddress?.port ?? 0)
        },
        logger: logger)
    return ServerInstance(services: services, application: app, logger: logger)
}

/// Creates STATE and its subdirectories (files/kernels, files/initramfs, files/plugins, images).
public func prepareStateDirectory(_ config: ServerConfig) throws {
    let fm = FileManager.default
    do {
        try fm.createDirectory(
            atPath: config.stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        for kind in FileKind.allCases {
            try fm.createDirectory(
                atPath: config.filesDirectory + "/" + kind.rawValue, withIntermediateDirectories: true)
        }
        try fm.createDirectory(atPath: config.imagesDirectory, withIntermediateDirectories: true)
    } catch {
        throw ServerSetupError("preparing the state directory \(config.stateDir): \(error)")
    }
}
