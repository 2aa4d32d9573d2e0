import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ProvisionerAPI
import ProvisionerClient
import ProvisionerPKI
import Testing

@testable import ProvisionerServer

/// Enrollment, authorization by identity, revocation and secrets, over real mutual TLS
/// (docs/certificates.md). Each refusal is checked for its status, its code and its audit entry.
@Suite("Identity") struct IdentityTests {
    /// A live server whose TLS directory holds the CA key (so it can enroll nodes), with node n1
    /// (MAC …:01) and n2 (…:02) defined.
    struct Cluster {
        let dir: TempDir
        let pki: TestPKI
        let server: LiveServer
        let admin: ProvisionerClient
        let bootstrap: ProvisionerClient

        static func start(
            policy: EnrollmentPolicy = .approve, configure: (inout ServerConfig) -> Void = { _ in },
            prepare: (String) throws -> Void = { _ in }
        ) async throws -> Cluster {
            let dir = try TempDir()
            let pki = try TestPKI(writingTo: dir.path + "/tls", withCAKey: true)
            try prepare(dir.path)
            let server = try await LiveServer.start(stateDir: dir.path, configure: configure)
            let admin = try pki.client(port: server.apiPort, credential: pki.admin)
            let bootstrap = try pki.client(port: server.apiPort, credential: pki.bootstrap)
            for (name, mac) in [("n1", "52:54:00:00:00:01"), ("n2", "52:54:00:00:00:02")] {
                let node = NodeConfig(
                    name: name, macs: [mac], image: ImageRef(name: "debian"), mode: .stateless,
                    plugins: [PluginConfig(name: "hostname")], kernelArgs: ["console=ttyS0"], enrollment: policy)
                let _: NodeRecord = try await admin.json(.POST, "/api/v1/admin/nodes", body: NodeDefinition(node))
            }
            return Cluster(dir: dir, pki: pki, server: server, admin: admin, bootstrap: bootstrap)
        }

        func stop() async {
            await server.stop()
            dir.remove()
        }

        func open(_ mac: String, with client: ProvisionerClient? = nil) async throws -> SessionResponse {
            try await (client ?? bootstrap).json(
                .POST, "/api/v1/sessions", body: SessionOpenRequest(macs: [mac], facts: HardwareFacts(), agentVersion: "t"))
        }

        /// Enrolls `key` in `session` and returns a client with the node's new certificate.
        func enroll(_ session: SessionResponse, key: NodeKey, name: String? = nil, challenge: String? = nil)
            async throws -> (EnrollResult, ProvisionerClient)
        {
            let offer = try #require(session.enrollment)
            let csr = try key.certificateRequest(node: name ?? offer.node, challenge: challenge ?? offer.challenge)
            let result: EnrollResult = try await bootstrap.json(
                .POST, "/api/v1/sessions/\(session.sessionID)/enroll", body: EnrollRequest(csr: csr))
            let client = try pki.client(
                port: server.apiPort,
                credential: IssuedCredential(certificatePEM: result.certificate, privateKeyPEM: key.pemRepresentation))
            return (result, client)
        }

        func audit() async throws -> [AuditEntry] {
            try await admin.json(.GET, "/api/v1/admin/audit?limit=500", body: Optional<Empty>.none)
        }
    }

    /// Expects a refusal with `status` and `code`.
    func refused(
        _ status: Int, _ code: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
    ) async {
        do {
            try await body()
            Issue.record("expected \(status) \(code), but the request succeeded", sourceLocation: sourceLocation)
        } catch let error as ClientError {
            guard case .status(let got, let errorBody, _) = error else {
                Issue.record("expected \(status) \(code), got \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(got == status, "\(error)", sourceLocation: sourceLocation)
            #expect(errorBody?.error.code == code, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected \(status) \(code), got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func bootstrapGetsOnlyTheDisksViewThenTheNodeEnrollsAndGetsItsConfigAndSecrets() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        let secretText = "munge-key-\(UUID().uuidString)"
        let _: [SecretInfo] = try await c.admin.json(
            .PUT, "/api/v1/admin/secrets/n1/munge.key",
            body: SecretWrite(path: "/etc/munge/munge.key", mode: 0o400, uid: 101, gid: 102, data: Data(secretText.utf8)))

        let first = try await c.open("52:54:00:00:00:01")
        #expect(first.status == .assigned)
        #expect(first.node?.name == "n1")
        #expect(first.node?.image == nil, "the bootstrap certificate must not learn the image")
        #expect(first.node?.plugins.isEmpty == true)
        #expect(first.node?.kernelArgs.isEmpty == true)
        #expect(first.secrets == nil)
        let offer = try #require(first.enrollment)
        #expect(offer.node == "n1" && offer.challenge.count == 32)

        let key = NodeKey()
        let (result, node) = try await c.enroll(first, key: key)
        #expect(result.kind == .first)
        let full: SessionResponse = try await node.json(
            .GET, "/api/v1/sessions/\(first.sessionID)", body: Optional<Empty>.none)
        #expect(full.enrollment == nil)
        #expect(full.node?.image?.name == "debian")
        #expect(full.node?.kernelArgs == ["console=ttyS0"])
        let secrets = full.secrets ?? []
        let munge = try #require(secrets.first { $0.name == "munge.key" })
        #expect(String(decoding: munge.data, as: UTF8.self) == secretText)
        #expect(munge.mode == 0o400 && munge.uid == 101 && munge.gid == 102)
        // SSH host keys, made once by ssh-keygen and the same on the next delivery.
        let hostKey = try #require(secrets.first { $0.name == "ssh_host_ed25519_key" })
        #expect(String(decoding: hostKey.data, as: UTF8.self).contains("OPENSSH PRIVATE KEY"))
        #expect(secrets.contains { $0.name == "ssh_host_ed25519_key.pub" && $0.mode == 0o644 })
        let again: SessionResponse = try await node.json(
            .GET, "/api/v1/sessions/\(first.sessionID)", body: Optional<Empty>.none)
        #expect(again.secrets?.first { $0.name == "ssh_host_ed25519_key" }?.data == hostKey.data)

        // The second boot: the same key renews without the admin.
        let second = try await c.open("52:54:00:00:00:01")
        let (renewed, _) = try await c.enroll(second, key: key)
        #expect(renewed.kind == .renewed)
        #expect(renewed.serial != result.serial)

        // No secret value in the audit log, the session's events or the admin's secret list.
        let audit = try await c.audit()
        #expect(audit.contains { $0.action == "node.enroll" && $0.subject == "node/n1" })
        let everything = try JSONEncoder().encode(audit)
        #expect(!String(decoding: everything, as: UTF8.self).contains(secretText))
        let list: [SecretInfo] = try await c.admin.json(.GET, "/api/v1/admin/secrets", body: Optional<Empty>.none)
        #expect(!String(decoding: try JSONEncoder().encode(list), as: UTF8.self).contains(secretText))
        let detail: SessionDetail = try await c.admin.json(
            .GET, "/api/v1/admin/sessions/\(first.sessionID)", body: Optional<Empty>.none)
        #expect(!String(decoding: try JSONEncoder().encode(detail), as: UTF8.self).contains(secretText))
        // At rest: sealed, not in the database file.
        let database = try Data(contentsOf: URL(fileURLWithPath: c.dir.path + "/provisioner.db"))
        #expect(database.range(of: Data(secretText.utf8)) == nil)
        #expect(FileManager.default.fileExists(atPath: c.dir.path + "/secrets.key"))
    }

    @Test func aNodeCertificateCannotReadOrWriteAnotherNodesSession() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        let s1 = try await c.open("52:54:00:00:00:01")
        let (_, n1) = try await c.enroll(s1, key: NodeKey())
        let s2 = try await c.open("52:54:00:00:00:02")
        let (_, n2) = try await c.enroll(s2, key: NodeKey())
        await refused(403, "not-your-session") {
            let _: SessionResponse = try await n2.json(.GET, "/api/v1/sessions/\(s1.sessionID)", body: Optional<Empty>.none)
        }
        await refused(403, "not-your-session") {
            let _: EventsAccepted = try await n2.json(
                .POST, "/api/v1/sessions/\(s1.sessionID)/events",
                body: EventBatch(events: [AgentEvent(phase: "pivot", message: "forged")]))
        }
        await refused(403, "not-your-session") {
            let _: SessionSummary = try await n2.json(
                .POST, "/api/v1/sessions/\(s1.sessionID)/finish", body: SessionFinish(succeeded: true, message: "forged"))
        }
        // Claiming n1's MAC with n2's certificate opens nothing.
        await refused(403, "not-your-node") { _ = try await c.open("52:54:00:00:00:01", with: n2) }
        // n1's own certificate works, and the refusals are in the audit log.
        let _: EventsAccepted = try await n1.json(
            .POST, "/api/v1/sessions/\(s1.sessionID)/events", body: EventBatch(events: [AgentEvent(phase: "image", message: "ok")]))
        let audit = try await c.audit()
        #expect(audit.filter { $0.action.hasSuffix(".refused") && $0.actor == "node:n2" }.count >= 4)
    }

    @Test func theBootstrapCertificateCannotTakeOverANodesBoot() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        let real = try await c.open("52:54:00:00:00:01")
        let (_, n1) = try await c.enroll(real, key: NodeKey())
        // Someone with the initramfs claims n1's MAC: the real session goes on.
        let claim = try await c.open("52:54:00:00:00:01")
        let summary: SessionDetail = try await c.admin.json(
            .GET, "/api/v1/admin/sessions/\(real.sessionID)", body: Optional<Empty>.none)
        #expect(summary.session.state == .running)
        #expect(summary.session.verified)
        // It may not report success, nor use the verified session.
        await refused(403, "unverified-success") {
            let _: SessionSummary = try await c.bootstrap.json(
                .POST, "/api/v1/sessions/\(claim.sessionID)/finish", body: SessionFinish(succeeded: true, message: "x"))
        }
        await refused(403, "session-verified") {
            let _: SessionResponse = try await c.bootstrap.json(
                .GET, "/api/v1/sessions/\(real.sessionID)", body: Optional<Empty>.none)
        }
        // Its own key needs approval (n1 enrolled with another); a CSR for n2's name is refused.
        await refused(403, "enrollment-needs-approval") { _ = try await c.enroll(claim, key: NodeKey()) }
        await refused(403, "csr-name-mismatch") { _ = try await c.enroll(claim, key: NodeKey(), name: "n2") }
        // Image objects and boot files are not for the bootstrap certificate.
        await refused(403, "forbidden") {
            _ = try await c.bootstrap.json(.GET, "/v1/images/debian/versions/" + String(repeating: "0", count: 64), body: Optional<Empty>.none) as [String: String]
        }
        // The real node finishes its boot.
        let _: SessionSummary = try await n1.json(
            .POST, "/api/v1/sessions/\(real.sessionID)/finish", body: SessionFinish(succeeded: true, message: "ok"))
    }

    @Test func aReplayedEnrollmentAndAnotherSessionsChallengeAreRefused() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        let s1 = try await c.open("52:54:00:00:00:01")
        let key = NodeKey()
        let csr = try key.certificateRequest(node: "n1", challenge: try #require(s1.enrollment).challenge)
        let _: EnrollResult = try await c.bootstrap.json(
            .POST, "/api/v1/sessions/\(s1.sessionID)/enroll", body: EnrollRequest(csr: csr))
        await refused(409, "already-enrolled") {
            let _: EnrollResult = try await c.bootstrap.json(
                .POST, "/api/v1/sessions/\(s1.sessionID)/enroll", body: EnrollRequest(csr: csr))
        }
        let s2 = try await c.open("52:54:00:00:00:01")
        await refused(403, "challenge-mismatch") {
            let _: EnrollResult = try await c.bootstrap.json(
                .POST, "/api/v1/sessions/\(s2.sessionID)/enroll", body: EnrollRequest(csr: csr))
        }
        await refused(400, "bad-csr") {
            let _: EnrollResult = try await c.bootstrap.json(
                .POST, "/api/v1/sessions/\(s2.sessionID)/enroll", body: EnrollRequest(csr: "not a csr"))
        }
        let audit = try await c.audit()
        #expect(audit.contains { $0.action == "node.enroll.refused" && ($0.after ?? "").contains("already-enrolled") })
    }

    @Test func revokeRefusesTheNodeAtOnceAndANewKeyNeedsApproval() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        let s1 = try await c.open("52:54:00:00:00:01")
        let key = NodeKey()
        let (_, n1) = try await c.enroll(s1, key: key)
        let result: RevokeResult = try await c.admin.json(
            .POST, "/api/v1/admin/nodes/n1/revoke", body: Optional<Empty>.none)
        #expect(result.revoked.count == 1)
        await refused(401, "certificate-revoked") {
            let _: SessionResponse = try await n1.json(.GET, "/api/v1/sessions/\(s1.sessionID)", body: Optional<Empty>.none)
        }
        // The old key stays refused, a new key waits for approval, then goes through once.
        let s2 = try await c.open("52:54:00:00:00:01")
        await refused(403, "key-revoked") { _ = try await c.enroll(s2, key: key) }
        let newKey = NodeKey()
        await refused(403, "enrollment-needs-approval") { _ = try await c.enroll(s2, key: newKey) }
        let _: NodeIdentityInfo = try await c.admin.json(.POST, "/api/v1/admin/nodes/n1/approve", body: Optional<Empty>.none)
        let (approved, _) = try await c.enroll(s2, key: newKey)
        #expect(approved.kind == .approved)
        let audit = try await c.audit()
        #expect(audit.contains { $0.action == "node.revoke" })
        #expect(audit.contains { $0.action == "certificate.refused" })
    }

    @Test func autoPolicyAcceptsANewKeyForAKnownMAC() async throws {
        let c = try await Cluster.start(policy: .auto)
        defer { Task { await c.stop() } }
        let s1 = try await c.open("52:54:00:00:00:01")
        _ = try await c.enroll(s1, key: NodeKey())
        let s2 = try await c.open("52:54:00:00:00:01")
        let (result, _) = try await c.enroll(s2, key: NodeKey())
        #expect(result.kind == .reenrolled)
    }

    @Test func anExpiredOrRevokedAdminCertificateIsRefused() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        // Expired: the TLS handshake itself fails.
        let expired = try c.pki.ca.issue(
            role: .admin, commonName: "old", notBefore: Date().addingTimeInterval(-7200),
            notAfter: Date().addingTimeInterval(-3600))
        let old = try c.pki.client(port: c.server.apiPort, credential: expired)
        do {
            let _: [NodeRecord] = try await old.json(.GET, "/api/v1/admin/nodes", body: Optional<Empty>.none)
            Issue.record("an expired certificate was accepted")
        } catch let error as ClientError {
            #expect(error.httpStatus == nil, "refused in the handshake, not by a route: \(error)")
        }
        // Revoked by name once the server has seen it.
        let bobCredential = try c.pki.ca.issue(role: .admin, commonName: "bob")
        let bob = try c.pki.client(port: c.server.apiPort, credential: bobCredential)
        let _: [NodeRecord] = try await bob.json(.GET, "/api/v1/admin/nodes", body: Optional<Empty>.none)
        let result: RevokeResult = try await c.admin.json(
            .POST, "/api/v1/admin/admins/bob/revoke", body: Optional<Empty>.none)
        #expect(result.revoked.count == 1)
        await refused(401, "certificate-revoked") {
            let _: [NodeRecord] = try await bob.json(.GET, "/api/v1/admin/nodes", body: Optional<Empty>.none)
        }
        // And by file, one it never used.
        let carol = try c.pki.ca.issue(role: .admin, commonName: "carol")
        let _: RevokeResult = try await c.admin.json(
            .POST, "/api/v1/admin/certificates/revoke", body: RevokeRequest(certificate: carol.certificatePEM))
        await refused(401, "certificate-revoked") {
            let _: [NodeRecord] = try await c.pki.client(port: c.server.apiPort, credential: carol).json(
                .GET, "/api/v1/admin/nodes", body: Optional<Empty>.none)
        }
    }

    @Test func theIPXEScriptDoesNotNameTheNode() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(c.server.bootPort)/boot/ipxe?mac=52:54:00:00:00:01")!)
        request.timeoutInterval = 10
        let (data, _) = try await URLSession.shared.data(for: request)
        let script = String(decoding: data, as: UTF8.self)
        #expect(script.hasPrefix("#!ipxe"))
        #expect(!script.contains("n1"), "\(script)")
    }

    @Test func secretsAreRefusedWithBadFieldsAndNeedAKnownOwner() async throws {
        let c = try await Cluster.start()
        defer { Task { await c.stop() } }
        await refused(422, "bad-secret") {
            let _: [SecretInfo] = try await c.admin.json(
                .PUT, "/api/v1/admin/secrets/n1/x", body: SecretWrite(path: "relative/path", data: Data("v".utf8)))
        }
        await refused(422, "bad-secret") {
            let _: [SecretInfo] = try await c.admin.json(
                .PUT, "/api/v1/admin/secrets/n1/x", body: SecretWrite(path: "/etc/x", mode: 0o77777, data: Data("v".utf8)))
        }
        await refused(404, "unknown-owner") {
            let _: [SecretInfo] = try await c.admin.json(
                .PUT, "/api/v1/admin/secrets/nobody/x", body: SecretWrite(path: "/etc/x", data: Data("v".utf8)))
        }
        await refused(403, "forbidden") {
            let _: [SecretInfo] = try await c.bootstrap.json(.GET, "/api/v1/admin/secrets", body: Optional<Empty>.none)
        }
    }
}
