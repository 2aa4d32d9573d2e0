import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ProvisionerAPI
import ProvisionerClient
import ProvisionerPKI
import Testing

@testable import ProvisionerServer

/// A fresh state directory under /tmp, removed by `remove()`.
struct TempDir {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "provisioner-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func write(_ relative: String, _ bytes: [UInt8]) throws {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: full, contents: Data(bytes)))
    }
}

/// A cluster CA with server, node and admin credentials written where the server expects them.
struct TestPKI {
    let ca: ClusterCA
    let caPEM: String
    /// The shared certificate of every initramfs (role bootstrap).
    let bootstrap: IssuedCredential
    let admin: IssuedCredential
    /// What the agent presents before it enrolls.
    var node: IssuedCredential { bootstrap }

    /// A node's own certificate, as enrollment issues it (role node, the node's name as CN).
    func enrolled(_ name: String = "n1") throws -> IssuedCredential {
        try ca.issue(role: .node, commonName: name)
    }

    /// `withCAKey`: the CA's key goes next to its certificate, so the server enrolls nodes.
    init(writingTo tlsDir: String? = nil, adminName: String = "alice", withCAKey: Bool = false) throws {
        ca = try ClusterCA.create()
        caPEM = try ca.certificatePEM
        bootstrap = try ca.issue(role: .bootstrap, commonName: "provisioner-bootstrap")
        admin = try ca.issue(role: .admin, commonName: adminName)
        if let tlsDir {
            let server = try ca.issue(
                role: .server, commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
            try FileManager.default.createDirectory(atPath: tlsDir, withIntermediateDirectories: true)
            for (name, text) in [
                ("ca.pem", caPEM), ("server.pem", server.certificatePEM), ("server-key.pem", server.privateKeyPEM),
            ] {
                try text.write(toFile: tlsDir + "/" + name, atomically: true, encoding: .utf8)
            }
            if withCAKey { try ca.privateKeyPEM.write(toFile: tlsDir + "/ca-key.pem", atomically: true, encoding: .utf8) }
        }
    }

    func client(port: Int, credential: IssuedCredential?, trusting caPEM: String? = nil) throws -> ProvisionerClient {
        try ProvisionerClient(
            ClientConfiguration(
                servers: [Endpoint(host: "127.0.0.1", port: port)],
                tls: try ClientTLS(
                    caPEM: caPEM ?? self.caPEM, certificatePEM: credential?.certificatePEM,
                    keyPEM: credential?.privateKeyPEM),
                connectTimeout: .seconds(10), readTimeout: .seconds(30)))
    }
}

/// Services on a temporary state directory, for router tests without sockets.
func withServices<T>(
    configure: (inout ServerConfig) -> Void = { _ in }, _ body: (Services, TempDir) async throws -> T
) async throws -> T {
    let dir = try TempDir()
    defer { dir.remove() }
    var config = ServerConfig(stateDir: dir.path)
    config.listenPort = 8443
    configure(&config)
    try prepareStateDirectory(config)
    let store = try await Store.open(path: config.databasePath, logger: Logger(label: "test"))
    let services = Services(config: config, store: store)
    do {
        let result = try await body(services, dir)
        await store.close()
        return result
    } catch {
        await store.close()
        throw error
    }
}

let adminPeer = PeerIdentity(role: .admin, name: "alice")
/// The shared bootstrap certificate, as routes see it.
let bootstrapPeer = PeerIdentity(role: .bootstrap, name: "provisioner-bootstrap")
/// Node n1's own certificate (issued at enrollment), as routes see it.
let nodePeer = PeerIdentity(role: .node, name: "n1")
/// Another node's own certificate.
func peer(node name: String) -> PeerIdentity { PeerIdentity(role: .node, name: name) }

func app(_ services: Services, as peer: PeerIdentity? = adminPeer) -> some ApplicationProtocol {
    Application(router: buildRouter(services, authentication: .fixed(peer)))
}

/// What our clients send with a JSON body (the API answers 415 to anything else).
let jsonHeaders: HTTPFields = [.contentType: "application/json"]

func jsonBody<T: Encodable>(_ value: T) throws -> ByteBuffer {
    ByteBuffer(bytes: try JSONEncoder().encode(value))
}

func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(response.body.readableBytesView))
}

/// Every error answer must be JSON with the status repeated inside.
func expectJSONError(
    _ response: TestResponse, _ status: Int, code: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        Int(response.status.code) == status, "body: \(String(buffer: response.body))", sourceLocation: sourceLocation)
    let body = try? JSONDecoder().decode(ErrorBody.self, from: Data(response.body.readableBytesView))
    #expect(body != nil, "not a JSON error: \(String(buffer: response.body))", sourceLocation: sourceLocation)
    #expect(body?.error.status == status, sourceLocation: sourceLocation)
    if let code { #expect(body?.error.code == code, sourceLocation: sourceLocation) }
}

/// A running server (both listeners on 127.0.0.1, ephemeral ports), stopped by `stop()`.
final class LiveServer: Sendable {
    let apiPort: Int
    let bootPort: Int
    let server: ServerInstance
    let task: Task<Void, any Error>

    private init(apiPort: Int, bootPort: Int, server: ServerInstance, task: Task<Void, any Error>) {
        self.apiPort = apiPort
        self.bootPort = bootPort
        self.server = server
        self.task = task
    }

    static func start(stateDir: String, configure: (inout ServerConfig) -> Void = { _ in }) async throws -> LiveServer {
        var config = ServerConfig(stateDir: stateDir)
        config.listenHost = "127.0.0.1"
        config.listenPort = 0
        config.bootListenHost = "127.0.0.1"
        config.bootListenPort = 0
        configure(&config)
        var logger = Logger(label: "test-server")
        logger.logLevel = .warning
        let ports = AsyncStream<(Listener, Int)>.makeStream()
        let server = try await buildApplication(config, logger: logger) { listener, port in
            ports.continuation.yield((listener, port))
        }
        let task = Task { try await server.run() }
        var api = 0
        var boot = 0
        for await (listener, port) in ports.stream {
            if listener == .api { api = port } else { boot = port }
            if api != 0 && boot != 0 { break }
        }
        return LiveServer(apiPort: api, bootPort: boot, server: server, task: task)
    }

    /// Graceful shutdown, and waits until both listeners and the database are closed.
    func stop() async {
        await server.shutdown()
        _ = try? await task.value
    }
}
