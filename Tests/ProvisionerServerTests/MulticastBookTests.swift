import ProvisionerAPI
import ProvisionerCore
import ProvisionerServer
import Testing

/// Rows MC1–MC6 of docs/multicast.md: what the server tells a node about to sync.
@Suite struct MulticastBookTests {
    static let v = String(repeating: "cd", count: 32)

    static func settings(minNodes: Int = 0, wait: Int = 30, maxSessions: Int = 4) -> MulticastSettings {
        var s = MulticastSettings(interface: "br-prov")
        s.policyMinNodes = minNodes
        s.policyWaitSeconds = wait
        s.maxSessions = maxSessions
        return s
    }

    static func adminSession(_ nodes: Set<String>, running: Bool = true) -> MulticastBook.Session {
        MulticastBook.Session(id: "mc-a", image: "debian", version: v, trigger: .admin, nodes: nodes, running: running)
    }

    @Test func MC1_aNodeInARunningSessionJoins() {
        var book = MulticastBook()
        book.sessions = [Self.adminSession(["n1", "n2"])]
        let (d, rule) = book.answer(node: "n1", image: "debian", version: Self.v, now: 100, settings: Self.settings())
        #expect(rule == .MC1)
        #expect(d == .join(sessionID: "mc-a"))
    }

    @Test(arguments: [
        ("n3", "debian", v, true),  // not in the range
        ("n1", "rocky", v, true),  // another image
        ("n1", "debian", String(repeating: "ef", count: 32), true),  // another version
        ("n1", "debian", v, false),  // the session stopped
    ])
    func MC2_otherwiseWithoutAPolicyHTTPS(node: String, image: String, version: String, running: Bool) {
        var book = MulticastBook()
        book.sessions = [Self.adminSession(["n1", "n2"], running: running)]
        let (d, rule) = book.answer(node: node, image: image, version: version, now: 100, settings: Self.settings())
        #expect(rule == .MC2)
        if case .unicast = d {} else { Issue.record("\(d)") }
    }

    @Test func MC4_MC3_thePolicyGathersNodesThenStartsForThem() {
        var book = MulticastBook()
        let s = Self.settings(minNodes: 3, wait: 30)
        let (first, r1) = book.answer(node: "n1", image: "debian", version: Self.v, now: 100, settings: s)
        #expect(r1 == .MC4)
        #expect(first == .wait(seconds: 5, reason: "1 of 3 nodes wait for debian@cdcdcdcdcdcd"))
        _ = book.answer(node: "n2", image: "debian", version: Self.v, now: 110, settings: s)
        let (again, r2) = book.answer(node: "n1", image: "debian", version: Self.v, now: 112, settings: s)
        #expect(r2 == .MC4)  // asking again does not count twice
        #expect(again == .wait(seconds: 5, reason: "2 of 3 nodes wait for debian@cdcdcdcdcdcd"))
        let (start, r3) = book.answer(node: "n3", image: "debian", version: Self.v, now: 115, settings: s)
        #expect(r3 == .MC3)
        #expect(start == .start(nodes: ["n1", "n2", "n3"]))
        #expect(book.waiting[Self.v] == nil)
        // Once the service started it, the others join; so does any later node of that version.
        book.sessions = [MulticastBook.Session(id: "mc-p", image: "debian", version: Self.v, trigger: .policy, nodes: ["n1", "n2", "n3"])]
        #expect(book.answer(node: "n2", image: "debian", version: Self.v, now: 116, settings: s).0 == .join(sessionID: "mc-p"))
        #expect(book.answer(node: "n9", image: "debian", version: Self.v, now: 130, settings: s).0 == .join(sessionID: "mc-p"))
    }

    @Test func MC6_tooFewWithinTheWindowSyncOverHTTPS() {
        var book = MulticastBook()
        let s = Self.settings(minNodes: 3, wait: 30)
        _ = book.answer(node: "n1", image: "debian", version: Self.v, now: 100, settings: s)
        let (d, rule) = book.answer(node: "n1", image: "debian", version: Self.v, now: 130, settings: s)
        #expect(rule == .MC6)
        if case .unicast(let reason) = d { #expect(reason.contains("fewer than 3 nodes")) } else { Issue.record("\(d)") }
        #expect(book.waiting[Self.v]?["n1"] == nil)
    }

    @Test func MC3_nodesThatAskedLongAgoDoNotCount() {
        var book = MulticastBook()
        let s = Self.settings(minNodes: 2, wait: 30)
        _ = book.answer(node: "n1", image: "debian", version: Self.v, now: 100, settings: s)
        let (d, rule) = book.answer(node: "n2", image: "debian", version: Self.v, now: 140, settings: s)
        #expect(rule == .MC4)  // n1 asked 40 s before: outside the 30 s window
        if case .wait = d {} else { Issue.record("\(d)") }
    }

    @Test func MC5_noFreeSessionMeansHTTPS() {
        var book = MulticastBook()
        book.sessions = [MulticastBook.Session(id: "mc-x", image: "other", version: Self.v, trigger: .admin, nodes: ["x"], slot: 0)]
        let s = Self.settings(minNodes: 1 + 1, maxSessions: 1)
        _ = book.answer(node: "n1", image: "debian", version: Self.v, now: 100, settings: s)
        let (d, rule) = book.answer(node: "n2", image: "debian", version: Self.v, now: 101, settings: s)
        #expect(rule == .MC5)
        if case .unicast = d {} else { Issue.record("\(d)") }
        #expect(book.freeSlot(s) == nil)
    }

    @Test func aStoppedSessionKeepsItsPortsUntilItsSenderExits() {
        var book = MulticastBook()
        var session = Self.adminSession(["n1"], running: false)
        session.slot = 0
        book.sessions = [session]
        #expect(book.freeSlot(Self.settings()) == 1)
        book.sessions[0].senderAlive = false
        #expect(book.freeSlot(Self.settings()) == 0)
    }

    @Test(arguments: [("300m", 300_000_000), ("5000k", 5_000_000), ("1g", 1_000_000_000), ("80000000", 80_000_000)])
    func bitRates(text: String, bits: Int) { #expect(MulticastSettings.bitsPerSecond(text) == bits) }

    @Test(arguments: ["", "m", "0", "-5m", "3.5m", "300 m", "300mb", "9999999999999g"])
    func badBitRates(text: String) { #expect(MulticastSettings.bitsPerSecond(text) == nil) }

    @Test func aReceiverWaitsForTheSendersWaitARoundAndAMargin() {
        // 30 MB at 40 Mbit/s is 6 s a round: 5 + 9 + 30.
        #expect(MulticastBook.startTimeout(streamBytes: 30_000_000, maxWaitSeconds: 5, bitsPerSecond: 40_000_000) == 44)
    }

    @Test(arguments: [
        ("multicast: {}", "interface: is required"),
        ("multicast: {interface: \"a b\"}", "is not an interface name"),
        ("multicast: {interface: br0, maxBitrate: fast}", "is not a bit rate"),
        ("multicast: {interface: br0, portBase: 9001}", "must be even"),
        ("multicast: {interface: br0, portBase: 80}", "must be 1024 to 65000"),
        ("multicast: {interface: br0, policy: {waitSeconds: 5}}", "minNodes: is required"),
        ("multicast: {interface: br0, policy: {minNodes: 1}}", "must be 2 to 100000"),
        ("multicast: {interface: br0, colour: blue}", "colour"),
    ])
    func badConfigsNameTheField(yaml: String, problem: String) {
        #expect(throws: ConfigError.self) { try ServerConfig.parse(yaml, source: "server.yaml") }
        do {
            _ = try ServerConfig.parse(yaml, source: "server.yaml")
        } catch {
            #expect("\(error)".contains(problem), "\(error)")
        }
    }

    @Test func aWholeConfig() throws {
        let config = try ServerConfig.parse(
            """
            multicast:
              interface: br-prov
              maxBitrate: 500m
              portBase: 9100
              maxSessions: 2
              timeLimitSeconds: 600
              maxWaitSeconds: 10
              policy:
                minNodes: 8
                waitSeconds: 20
            """, source: "server.yaml")
        var expected = MulticastSettings(interface: "br-prov")
        expected.maxBitrate = "500m"
        expected.portBase = 9100
        expected.maxSessions = 2
        expected.timeLimitSeconds = 600
        expected.maxWaitSeconds = 10
        expected.policyMinNodes = 8
        expected.policyWaitSeconds = 20
        #expect(config.multicast == expected)
    }
}
