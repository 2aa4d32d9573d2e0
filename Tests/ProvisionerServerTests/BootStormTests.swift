import Foundation
import NIOHTTP1
import ProvisionerAPI
import ProvisionerClient
import Synchronization
import Testing

@testable import ProvisionerServer

/// A whole rack after a power cut (issue 17): 1,000 agents over real mutual TLS on 127.0.0.1
/// register, poll, post their phases with durations and finish at once, while an admin watches the
/// sessions and scrapes `/metrics`. Bounded in count and time. Reports memory and latency
/// percentiles; asserts no error and that the metrics count exactly what was done (no timing
/// assertions).
@Suite(.serialized) struct BootStormTests {
    static let agents = 1000
    static let phases = ["register", "disks", "image", "plugins", "bootloader"]

    @Test(.timeLimit(.minutes(10)))
    func aThousandAgentsBootWhileTheAdminWatches() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        let server = try await LiveServer.start(stateDir: dir.path) {
            $0.registration.perAddressPerMinute = 100_000
            // A node's first full config makes its SSH host keys (an RSA key costs about 1 s of
            // CPU with ssh-keygen here); that is not what this test measures.
            $0.sshHostKeys = false
        }
        let rssBefore = Self.residentKiB()
        let started = ContinuousClock.now
        var runs: [LoadTests.AgentRun] = []
        var watched = 0
        var scrapeDuringStorm = ""
        do {
            let admin = try pki.client(port: server.apiPort, credential: pki.admin)
            let nodes = (0..<Self.agents).map { NodeConfig(name: "node\($0)", macs: [LoadTests.mac($0)]) }
            let imported: ImportResult = try await admin.json(
                .POST, "/api/v1/admin/nodes/import", body: ImportRequest(nodes: nodes))
            #expect(imported.created.count == Self.agents)

            // Each agent with its own node certificate, as after its enrollment: only its own
            // certificate may report a successful boot (docs/certificates.md, A4).
            let clients = try (0..<Self.agents).map {
                try pki.client(port: server.apiPort, credential: try pki.enrolled("node\($0)"))
            }
            let done = ManagedFlag()
            async let watcher: (Int, String) = {
                // The admin: the session list and the metrics, again and again until the storm is over.
                var polls = 0
                var scrape = ""
                while !done.isSet {
                    let _: [SessionSummary] = try await admin.json(.GET, "/api/v1/admin/sessions?limit=50", body: Optional<Empty>.none)
                    scrape = try await admin.stream(.get("/metrics")) { _, body in
                        var text = ""
                        while let chunk = try await body.next() { text += String(buffer: chunk) }
                        return text
                    }
                    polls += 1
                    try await Task.sleep(for: .milliseconds(200))
                }
                return (polls, scrape)
            }()
            runs = await withTaskGroup(of: LoadTests.AgentRun.self) { group in
                for i in 0..<Self.agents {
                    let client = clients[i]
                    group.addTask {
                        do {
                            return try await client.withConnection { connection in
                                await Self.boot(agent: i, over: LoadTests.Shared(connection: connection))
                            }
                        } catch {
                            return LoadTests.AgentRun(errors: ["agent \(i) connect: \(error)"])
                        }
                    }
                }
                var all: [LoadTests.AgentRun] = []
                for await run in group { all.append(run) }
                return all
            }
            done.set()
            (watched, scrapeDuringStorm) = try await watcher

            // After the storm: the metrics count exactly what the agents did.
            let metrics = try await admin.stream(.get("/metrics")) { _, body in
                var text = ""
                while let chunk = try await body.next() { text += String(buffer: chunk) }
                return text
            }
            let n = Double(Self.agents)
            #expect(Self.value(metrics, #"provisioner_sessions_opened_total{source="agent"}"#) == n)
            #expect(Self.value(metrics, #"provisioner_sessions_finished_total{outcome="succeeded"}"#) == n)
            #expect(Self.value(metrics, #"provisioner_events_total{level="info"}"#) == n * Double(Self.phases.count + 1))
            #expect(Self.value(metrics, "provisioner_boot_to_pivot_seconds_count") == n)
            for phase in Self.phases {
                #expect(Self.value(metrics, #"provisioner_boot_phase_duration_seconds_count{phase="\#(phase)"}"#) == n)
            }
            #expect(Self.value(metrics, #"provisioner_sessions{state="succeeded",phase="pivot"}"#) == n)
            #expect(
                Self.value(
                    metrics,
                    #"provisioner_http_requests_total{listener="api",route="/api/v1/sessions",method="POST",code="201"}"#)
                    == n)
            #expect(!metrics.contains("provisioner_http_errors_total"))
            #expect(scrapeDuringStorm.contains("provisioner_sessions_opened_total"))
        } catch {
            await server.stop()
            throw error
        }
        let wall = ContinuousClock.now - started
        await server.stop()
        let rssAfter = Self.residentKiB()

        let errors = runs.flatMap(\.errors)
        let latencies = runs.flatMap(\.latencies).sorted()
        func pct(_ p: Double) -> String {
            guard !latencies.isEmpty else { return "-" }
            let d = latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
            return String(format: "%.1f ms", Double(d.components.attoseconds) / 1e15 + Double(d.components.seconds) * 1000)
        }
        print(
            "boot storm: \(Self.agents) agents, \(latencies.count) requests over mutual TLS in \(wall), errors \(errors.count); "
                + "latency p50 \(pct(0.5)), p99 \(pct(0.99)), max \(pct(1.0)); the admin polled \(watched) times meanwhile; "
                + "resident memory of the test process (server and clients) \(rssBefore / 1024) MiB before, \(rssAfter / 1024) MiB after")
        for error in errors.prefix(5) { print("boot storm error: \(error)") }
        #expect(errors.isEmpty)
        #expect(latencies.count == Self.agents * 4)
        #expect(watched > 0)
    }

    /// Open, poll, one event per phase with its duration plus the pivot, finish: 4 requests.
    static func boot(agent i: Int, over transport: some LoadTests.Transport) async -> LoadTests.AgentRun {
        var run = LoadTests.AgentRun()
        func timed<T>(_ what: String, _ body: () async throws -> T) async -> T? { await run.timed(i, what, body) }
        guard
            let session: SessionResponse = await timed(
                "open", { try await transport.json(.POST, "/api/v1/sessions", body: SessionOpenRequest(macs: [LoadTests.mac(i)])) })
        else { return run }
        if session.node?.name != "node\(i)" { run.errors.append("agent \(i): got node \(session.node?.name ?? "none")") }
        let id = session.sessionID
        let _: SessionResponse? = await timed("poll") {
            try await transport.json(.GET, "/api/v1/sessions/\(id)", body: Optional<Empty>.none)
        }
        let events = EventBatch(
            events: phases.enumerated().map { AgentEvent(phase: $1, message: "done", seconds: Double($0 + 1)) }
                + [AgentEvent(phase: "pivot", message: "ready", seconds: 42)])
        let _: EventsAccepted? = await timed("events") {
            try await transport.json(.POST, "/api/v1/sessions/\(id)/events", body: events)
        }
        let _: SessionSummary? = await timed("finish") {
            try await transport.json(.POST, "/api/v1/sessions/\(id)/finish", body: SessionFinish(succeeded: true))
        }
        return run
    }

    /// The value of one series in the Prometheus text format.
    static func value(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    static func residentKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
}

/// A flag set once, read from other tasks.
final class ManagedFlag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}
