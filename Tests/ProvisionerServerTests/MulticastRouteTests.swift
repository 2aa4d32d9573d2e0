import Foundation
import ProvisionerAPI
import ProvisionerClient
import ProvisionerImage
import ProvisionerPKI
import Testing

@testable import ProvisionerServer

/// The multicast routes over real mutual TLS (docs/multicast.md): who may ask, the policy that
/// gathers nodes and starts a real udp-sender (on loopback, where it only waits), the admin's
/// view and stop. Sending and receiving on a network are scripts/multicast-test.sh's.
@Suite("Multicast routes", .serialized) struct MulticastRouteTests {
    typealias Cluster = IdentityTests.Cluster

    /// An image `debian` of a few files in the state directory's store.
    static func importImage(_ state: String) throws {
        let src = state + "/src"
        try FileManager.default.createDirectory(atPath: src + "/etc", withIntermediateDirectories: true)
        for i in 1...5 {
            try Data((0..<(i * 40_000)).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: "\(src)/etc/f\(i)"))
        }
        _ = try ImageImporter(store: ImageStore(root: state + "/images")).importDirectory(src, image: "debian", now: 1_700_000_000)
    }

    static func multicast(_ config: inout ServerConfig) {
        var settings = MulticastSettings(interface: "lo")
        settings.portBase = 2 * Int.random(in: 15_000...30_000)
        settings.policyMinNodes = 2
        settings.policyWaitSeconds = 30
        settings.timeLimitSeconds = 60
        config.multicast = settings
    }

    func ask(_ client: ProvisionerClient, _ session: String) async throws -> MulticastAnswer {
        try await client.json(
            .GET, "/api/v1/sessions/\(session)/multicast?image=debian&version=latest", body: Optional<Empty>.none)
    }

    @Test func thePolicyGathersTwoNodesThenStartsASessionTheAdminSeesAndStops() async throws {
        #expect(MulticastService.findProgram("udp-sender") != nil, "udp-sender is not installed (apt-get install udpcast)")
        let c = try await Cluster.start(policy: .auto, configure: Self.multicast, prepare: Self.importImage)
        defer { Task { await c.stop() } }
        let s1 = try await c.open("52:54:00:00:00:01")
        let s2 = try await c.open("52:54:00:00:00:02")
        let (_, n1) = try await c.enroll(s1, key: NodeKey())
        let (_, n2) = try await c.enroll(s2, key: NodeKey())

        // The node's own view says: ask before syncing. The bootstrap certificate may not ask.
        let view: SessionResponse = try await n1.json(.GET, "/api/v1/sessions/\(s1.sessionID)", body: Optional<Empty>.none)
        #expect(view.multicast == true)
        await IdentityTests().refused(403, "forbidden") { _ = try await ask(c.bootstrap, s1.sessionID) }
        // n1 may not ask in n2's session.
        await IdentityTests().refused(403, "not-your-session") { _ = try await ask(n1, s2.sessionID) }

        // MC4: one node waits; MC3: the second starts a session; MC1: the first joins it.
        let first = try await ask(n1, s1.sessionID)
        #expect(first.offer == nil)
        #expect(first.retryAfterSeconds == 5)
        #expect(first.reason.contains("1 of 2 nodes wait for debian@"))
        let second = try await ask(n2, s2.sessionID)
        let offer = try #require(second.offer, "\(second)")
        #expect(offer.network == "127.0.0.0/8")
        #expect(offer.image == "debian")
        #expect(second.reason.contains("MC1"))
        let again = try await ask(n1, s1.sessionID)
        #expect(again.offer?.session == offer.session)

        let sessions: [MulticastSessionInfo] = try await c.admin.json(.GET, "/api/v1/admin/multicast", body: Optional<Empty>.none)
        #expect(sessions.count == 1)
        #expect(sessions.first?.trigger == .policy)
        #expect(sessions.first?.state == .running)
        #expect(sessions.first?.nodes == "n[1-2]")
        #expect((sessions.first?.objects ?? 0) >= 5)  // five files, in chunks

        // One session per version; the stop ends it, and a node then syncs over HTTPS.
        await IdentityTests().refused(409, "multicast-running") {
            let _: MulticastSessionInfo = try await c.admin.json(
                .POST, "/api/v1/admin/images/debian/multicast", body: MulticastStartRequest(nodes: "n1"))
        }
        let stopped: [MulticastSessionInfo] = try await c.admin.json(
            .DELETE, "/api/v1/admin/images/debian/multicast", body: Optional<Empty>.none)
        #expect(stopped.map(\.id) == [offer.session])
        let after: [MulticastSessionInfo] = try await c.admin.json(.GET, "/api/v1/admin/multicast", body: Optional<Empty>.none)
        #expect(after.first?.state == .stopped)
        #expect(after.first?.detail == "stopped by the admin")
        let audit = try await c.audit()
        #expect(audit.contains { $0.action == "multicast.stop" && $0.subject == "image/debian" })
    }

    @Test func theAdminsRangeAndItsRefusals() async throws {
        let c = try await Cluster.start(policy: .auto, configure: { config in
            Self.multicast(&config)
            config.multicast?.policyMinNodes = 0
        }, prepare: Self.importImage)
        defer { Task { await c.stop() } }
        await IdentityTests().refused(400, "bad-nodes") {
            let _: MulticastSessionInfo = try await c.admin.json(
                .POST, "/api/v1/admin/images/debian/multicast", body: MulticastStartRequest(nodes: "n[3-1]"))
        }
        await IdentityTests().refused(404, "not-found") {
            let _: MulticastSessionInfo = try await c.admin.json(
                .POST, "/api/v1/admin/images/nosuch/multicast", body: MulticastStartRequest(nodes: "n1"))
        }
        let info: MulticastSessionInfo = try await c.admin.json(
            .POST, "/api/v1/admin/images/debian/multicast", body: MulticastStartRequest(nodes: "n1", maxWaitSeconds: 3))
        #expect(info.minReceivers == 1)
        #expect(info.maxWaitSeconds == 3)
        #expect(info.trigger == .admin)
        // n1 is in the range and joins; n2 is not told to ask at all.
        let s1 = try await c.open("52:54:00:00:00:01")
        let s2 = try await c.open("52:54:00:00:00:02")
        let (_, n1) = try await c.enroll(s1, key: NodeKey())
        let (_, n2) = try await c.enroll(s2, key: NodeKey())
        #expect(try await ask(n1, s1.sessionID).offer?.session == info.id)
        let view: SessionResponse = try await n2.json(.GET, "/api/v1/sessions/\(s2.sessionID)", body: Optional<Empty>.none)
        #expect(view.multicast == nil)
        let no = try await ask(n2, s2.sessionID)
        #expect(no.offer == nil && no.retryAfterSeconds == nil)
        #expect(no.reason.contains("no multicast session of debian@"))
    }

    @Test func aServerWithoutMulticastSaysSo() async throws {
        let c = try await Cluster.start(policy: .auto, prepare: Self.importImage)
        defer { Task { await c.stop() } }
        await IdentityTests().refused(409, "multicast-off") {
            let _: MulticastSessionInfo = try await c.admin.json(
                .POST, "/api/v1/admin/images/debian/multicast", body: MulticastStartRequest(nodes: "n1"))
        }
    }
}
