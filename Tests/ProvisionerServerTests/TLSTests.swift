import Foundation
import NIOCore
import ProvisionerAPI
import ProvisionerClient
import ProvisionerPKI
import Testing

@testable import ProvisionerServer

/// The real server on 127.0.0.1 with ephemeral ports, and ProvisionerClient talking to it over TLS.
@Suite(.serialized) struct TLSTests {
    @Test func clientCertificatesAreRequiredAndCheckedBothWays() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        let server = try await LiveServer.start(stateDir: dir.path)
        let other = try TestPKI()  // another cluster's CA, with its own node certificate
        do {
            // A node certificate from the cluster CA: accepted.
            let good = try pki.client(port: server.apiPort, credential: pki.node)
            let session: SessionResponse = try await good.json(
                .POST, "/api/v1/sessions", body: SessionOpenRequest(macs: ["52:54:00:00:30:01"]))
            #expect(session.status == .unassigned)
            #expect(session.mirrors.first == "https://127.0.0.1:\(server.apiPort)")

            // A node certificate may not use the admin API.
            await #expect {
                let _: [NodeRecord] = try await good.json(.GET, "/api/v1/admin/nodes")
            } throws: { ($0 as? ClientError)?.httpStatus == 403 }

            // The admin certificate's name is what the audit records.
            let admin = try pki.client(port: server.apiPort, credential: pki.admin)
            let _: NodeRecord = try await admin.json(.POST, "/api/v1/admin/nodes", body: NodeConfig(name: "t1"))
            let audit: [AuditEntry] = try await admin.json(.GET, "/api/v1/admin/audit")
            #expect(audit.map(\.actor) == ["alice"])
            #expect(audit.first?.remoteAddress == "127.0.0.1")

            // No client certificate: the handshake is refused.
            let anonymous = try pki.client(port: server.apiPort, credential: nil)
            await #expect {
                let _: SessionResponse = try await anonymous.json(
                    .POST, "/api/v1/sessions", body: SessionOpenRequest(macs: ["52:54:00:00:30:02"]))
            } throws: { error in Self.isRefusedConnection(error) }

            // A client certificate from another CA: refused.
            let stranger = try pki.client(port: server.apiPort, credential: other.node)
            await #expect {
                let _: SessionResponse = try await stranger.json(
                    .POST, "/api/v1/sessions", body: SessionOpenRequest(macs: ["52:54:00:00:30:03"]))
            } throws: { error in Self.isRefusedConnection(error) }

            // The client refuses a server whose certificate is not from the CA it trusts.
            let misled = try pki.client(port: server.apiPort, credential: other.node, trusting: other.caPEM)
            await #expect {
                let _: SessionResponse = try await misled.json(
                    .POST, "/api/v1/sessions", body: SessionOpenRequest(macs: ["52:54:00:00:30:04"]))
            } throws: { error in
                guard case .tls = (error as? ClientError) else { return false }
                return true
            }
            // Nothing the refused clients sent was stored.
            let sessions: [SessionSummary] = try await admin.json(.GET, "/api/v1/admin/sessions")
            #expect(sessions.flatMap(\.macs) == ["52:54:00:00:30:01"])
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// The handshake fails (or the server closes before answering): never an HTTP answer.
    static func isRefusedConnection(_ error: any Error) -> Bool {
        guard let error = error as? ClientError else { return false }
        switch error {
        case .tls, .closedBeforeAnswer: return true
        case .allServersFailed(_, let failures): return !failures.isEmpty
        default: return false
        }
    }

    @Test func streamingRangedDownloadAndMirrorFailover() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        let content = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try dir.write("files/kernels/default", content)
        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let n1 = try pki.enrolled()
            // The first server in the list is a closed port: the client moves on to the live one.
            let closedPort = try await Self.closedPort()
            let client = try ProvisionerClient(
                ClientConfiguration(
                    servers: [
                        Endpoint(host: "127.0.0.1", port: closedPort),
                        Endpoint(host: "127.0.0.1", port: server.apiPort),
                    ],
                    tls: try ClientTLS(
                        caPEM: pki.caPEM, certificatePEM: n1.certificatePEM, keyPEM: n1.privateKeyPEM)))
            for _ in 0..<4 {  // random order: every attempt must end on the live server
                var received: [UInt8] = []
                let etag = try await client.stream(.get("/files/kernels/default", from: 1_000_000)) { head, body in
                    #expect(head.status == 206)
                    while let chunk = try await body.next() { received += chunk.readableBytesView }
                    return head.etag
                }
                #expect(received == Array(content[1_000_000...]))
                #expect(etag?.hasPrefix("\"sha256:") == true)
            }
            // Several requests over one connection.
            let sizes = try await client.withConnection { connection in
                var sizes: [Int] = []
                for start in [0, 100, 3 << 20 - 10] as [UInt64] {
                    try await connection.execute(.get("/files/kernels/default", from: start, through: start + 9)) {
                        head, body in
                        sizes.append(try await body.collect(upTo: 100).readableBytes)
                    }
                }
                return sizes
            }
            #expect(sizes == [10, 10, 10])
            // A 404 is an error with the server's JSON body, not a failover.
            await #expect {
                try await client.stream(.get("/files/kernels/missing")) { _, _ in }
            } throws: { ($0 as? ClientError)?.httpStatus == 404 }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// A port on 127.0.0.1 that nothing listens on (bound, then closed).
    static func closedPort() async throws -> Int {
        let channel = try await ServerBootstrapHelper.bindAndClose()
        return channel
    }

    @Test func restartKeepsNodesSessionsAndAudit() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        var sessionID = ""
        do {
            let server = try await LiveServer.start(stateDir: dir.path)
            let admin = try pki.client(port: server.apiPort, credential: pki.admin)
            let node = try pki.client(port: server.apiPort, credential: pki.node)
            let _: NodeRecord = try await admin.json(
                .POST, "/api/v1/admin/nodes",
                body: NodeConfig(name: "keep", macs: ["52:54:00:00:40:01"], mode: .stateless))
            let session: SessionResponse = try await node.json(
                .POST, "/api/v1/sessions", body: SessionOpenRequest(macs: ["52:54:00:00:40:01"]))
            sessionID = session.sessionID
            let _: EventsAccepted = try await node.json(
                .POST, "/api/v1/sessions/\(sessionID)/events",
                body: EventBatch(events: [AgentEvent(phase: "register", message: "hello")]))
            await server.stop()
        }
        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let admin = try pki.client(port: server.apiPort, credential: pki.admin)
            let nodes: [NodeRecord] = try await admin.json(.GET, "/api/v1/admin/nodes")
            #expect(nodes.map(\.config) == [NodeConfig(name: "keep", macs: ["52:54:00:00:40:01"], mode: .stateless)])
            let detail: SessionDetail = try await admin.json(.GET, "/api/v1/admin/sessions/\(sessionID)")
            #expect(detail.session.node == "keep")
            #expect(detail.events.map(\.event.message) == ["hello"])
            let audit: [AuditEntry] = try await admin.json(.GET, "/api/v1/admin/audit")
            #expect(audit.map(\.action) == ["node.create"])
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }
}
