import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import ProvisionerAPI
import ProvisionerCore
import Testing

@testable import ProvisionerServer

/// Hostile and unlucky input (issue 11): each case stopped the server or reached too far before.
@Suite struct HardeningTests {
    /// An empty kernel file killed the server (`0...(size - 1)` with size 0) on the plain-HTTP
    /// boot listener and on /files.
    @Test func emptyFilesAreServedAndTheirRangesAreUnsatisfiable() async throws {
        try await withServices { services, dir in
            try dir.write("files/kernels/empty", [])
            try dir.write("files/initramfs/empty", [])
            let boot = Application(router: buildBootRouter(services))
            for (application, uri) in [
                (AnyApp(boot), "/boot/kernels/empty"), (AnyApp(boot), "/boot/initramfs/empty"),
                (AnyApp(app(services, as: nodePeer)), "/files/kernels/empty"),
            ] {
                try await application.test { client in
                    let get = try await client.execute(uri: uri, method: .get)
                    #expect(get.status == .ok, "\(uri)")
                    #expect(get.body.readableBytes == 0)
                    #expect(get.headers[.contentLength] == "0")
                    #expect(get.headers[.eTag] != nil)
                    let head = try await client.execute(uri: uri, method: .head)
                    #expect(head.status == .ok)
                    #expect(head.headers[.contentLength] == "0")
                    for range in ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=5-9"] {
                        let r = try await client.execute(uri: uri, method: .get, headers: [.range: range])
                        expectJSONError(r, 416)
                        #expect(r.headers[.contentRange] == "bytes */0", "\(range)")
                    }
                    // Not a byte range, or several: the whole (empty) file.
                    for range in ["items=0-1", "bytes=0-1,3-4"] {
                        let r = try await client.execute(uri: uri, method: .get, headers: [.range: range])
                        #expect(r.status == .ok, "\(range)")
                    }
                }
            }
        }
    }

    /// A 5 KB node definition whose layout nested 2,500 levels crashed the server (SIGSEGV).
    @Test func deeplyNestedDocumentsAreRefusedWithTheLimit() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let deep = String(repeating: "[", count: 2500) + String(repeating: "]", count: 2500)
                let node = NodeConfig(name: "n1", layout: "disks:\n  disk0:\n    match: " + deep + "\n")
                let r = try await client.execute(
                    uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(node))
                // 422 like every invalid layout, naming the limit and where it was crossed.
                expectJSONError(r, 422)
                #expect(String(buffer: r.body).contains("nests deeper than 64 levels"), "\(String(buffer: r.body))")

                // Deep YAML mappings, through the cluster file import.
                var yaml = ""
                for level in 0..<200 { yaml += String(repeating: " ", count: level) + "k\(level):\n" }
                let imported = try await client.execute(
                    uri: "/api/v1/admin/nodes/import", method: .post, headers: jsonHeaders,
                    body: try jsonBody(ImportRequest(nodes: [NodeConfig(name: "n2", layout: yaml)])))
                expectJSONError(imported, 422)
                #expect(String(buffer: imported.body).contains("k63.k64: nests deeper than 64 levels"))

                // The JSON body itself nested 100,000 levels deep.
                let body = "{\"name\": \"n3\", \"x\": " + String(repeating: "[", count: 100_000)
                    + String(repeating: "]", count: 100_000) + "}"
                let r2 = try await client.execute(
                    uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: ByteBuffer(string: body))
                expectJSONError(r2, 400)
            }
        }
    }

    @Test func jsonRoutesRefuseOtherContentTypes() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let body = try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:01"]))
                for headers: HTTPFields in [
                    [.contentType: "text/plain"], [:], [.contentType: "application/x-www-form-urlencoded"],
                    [.contentType: "application/jsonx"],
                ] {
                    let r = try await client.execute(uri: "/api/v1/sessions", method: .post, headers: headers, body: body)
                    expectJSONError(r, 415, code: "unsupported-media-type")
                }
                for type in ["application/json", "application/json; charset=utf-8", "Application/JSON"] {
                    let r = try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: [.contentType: type], body: body)
                    #expect(r.status == .created, "\(type)")
                }
            }
        }
    }

    @Test func pendingMachinesAreCappedAndExpire() async throws {
        try await withServices(configure: {
            $0.registration.maxPending = 2
            $0.registration.pendingExpirySeconds = 10
        }) { services, _ in
            try await app(services, as: bootstrapPeer).test(.router) { client in
                func open(_ mac: String) async throws -> TestResponse {
                    try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: [mac])))
                }
                #expect(try await open("52:54:00:00:01:01").status == .created)
                #expect(try await open("52:54:00:00:01:02").status == .created)
                let third = try await open("52:54:00:00:01:03")
                expectJSONError(third, 429, code: "too-many-pending")
                #expect(third.headers[.retryAfter] == "60")
                // The agent reads the wait from the body too (docs/boot.md R8).
                #expect(try decode(ErrorBody.self, third).error.retryAfter == 60)
                // A pending machine that registers again replaces its own entry.
                #expect(try await open("52:54:00:00:01:02").status == .created)
            }
            try await Application(router: buildBootRouter(services)).test(.router) { client in
                // iPXE of a new MAC is refused the same way; of a pending one, refreshes it.
                expectJSONError(
                    try await client.execute(uri: "/boot/ipxe?mac=52:54:00:00:01:04", method: .get), 429,
                    code: "too-many-pending")
            }
            #expect(try await services.store.pending().count == 2)
            // Entries older than the expiry no longer count.
            _ = try await services.store.transaction {
                try await services.store.query("UPDATE sessions SET updated_at = updated_at - 60000")
            }
            try await app(services, as: bootstrapPeer).test(.router) { client in
                let r = try await client.execute(
                    uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                    body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:01:05"])))
                #expect(r.status == .created)
            }
            #expect(try await services.store.pending().map(\.macs) == [["52:54:00:00:01:05"]])
        }
    }

    @Test func sessionOpensAreRateLimitedPerMAC() async throws {
        try await withServices(configure: { $0.registration.perMACPerMinute = 3 }) { services, _ in
            try await Application(router: buildBootRouter(services)).test(.router) { client in
                for _ in 0..<3 {
                    #expect(try await client.execute(uri: "/boot/ipxe?mac=52:54:00:00:02:01", method: .get).status == .ok)
                }
                let limited = try await client.execute(uri: "/boot/ipxe?mac=52:54:00:00:02:01", method: .get)
                expectJSONError(limited, 429, code: "rate-limited")
                #expect(limited.headers[.retryAfter] == "20")
                // Another MAC is not affected.
                #expect(try await client.execute(uri: "/boot/ipxe?mac=52:54:00:00:02:02", method: .get).status == .ok)
            }
        }
    }

    @Test func limitsAreConfigurableAndChecked() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("server/provisioner-server.yaml")
        let config = try ServerConfig.parse(try String(contentsOf: example, encoding: .utf8), source: "example")
        #expect(config.timeouts == ConnectionTimeouts())
        #expect(config.registration == RegistrationLimits())
        let set = try ServerConfig.parse(
            "limits: { headerTimeout: 5, idleTimeout: 7, maxPending: 3, registrationsPerMAC: 2 }", source: "s")
        #expect(set.timeouts.header == .seconds(5))
        #expect(set.timeouts.idle == .seconds(7))
        #expect(set.registration.maxPending == 3)
        #expect(set.registration.perMACPerMinute == 2)
        let bad: [(String, String)] = [
            ("limits: { headerTimeout: 0 }", "limits.headerTimeout: must be 1 to 3600 seconds, not 0"),
            ("limits: { maxPending: lots }", "limits.maxPending: expected a whole number"),
            ("limits: { headerTimout: 5 }", "limits.headerTimout: is not a known field here"),
        ]
        for (text, message) in bad {
            #expect(throws: ConfigError.self) { try ServerConfig.parse(text, source: "s") }
            do { _ = try ServerConfig.parse(text, source: "s") } catch {
                #expect(error.description.hasPrefix(message), "\(error)")
            }
        }
    }

    @Test func tokenBuckets() {
        var buckets = TokenBuckets(perMinute: 6, maxKeys: 2)
        let t0 = Duration.seconds(1000)
        // (key, seconds after t0, expected)
        let steps: [(String, Int, TokenBuckets.Decision)] = [
            ("a", 0, .allowed), ("a", 0, .allowed), ("a", 0, .allowed), ("a", 0, .allowed), ("a", 0, .allowed),
            ("a", 0, .allowed),
            ("a", 0, .limited(retryAfter: 10, first: true)),  // 6 a minute: a token every 10 s
            ("a", 5, .limited(retryAfter: 5, first: false)),
            ("a", 10, .allowed),
            ("a", 10, .limited(retryAfter: 10, first: true)),
            ("b", 10, .allowed),
            ("c", 10, .limited(retryAfter: 60, first: false)),  // two keys in use, no room for a third
            ("c", 80, .allowed),  // a's and b's buckets refilled: forgotten, room again
        ]
        for (i, (key, seconds, expected)) in steps.enumerated() {
            #expect(buckets.take(key, now: t0 + .seconds(seconds)) == expected, "step \(i): \(key) at +\(seconds) s")
        }
        #expect(buckets.keyCount == 1)
    }

    @Test func requestDeadlines() {
        var t = ConnectionTimeouts()
        t.header = .seconds(20)
        t.idle = .seconds(60)
        t.body = .seconds(20)
        t.bodyMinRate = 1000
        t.write = .seconds(30)
        var d = RequestDeadlines(timeouts: t, now: .seconds(100))
        #expect(d.deadline?.at == .seconds(120))
        #expect(d.deadline?.rule == .header)
        #expect(!d.expired(now: .seconds(119)))
        #expect(d.expired(now: .seconds(120)))
        d.headReceived(now: .seconds(105))
        #expect(d.deadline?.rule == .body)
        #expect(d.deadline?.at == .seconds(125))
        d.bodyReceived(bytes: 5000, now: .seconds(110))
        #expect(d.deadline?.at == .seconds(130))  // 5 s more for 5000 bytes at 1000 B/s
        d.requestEnded(now: .seconds(111))
        #expect(d.deadline == nil)  // the server is answering
        d.writabilityChanged(writable: false, now: .seconds(112))
        #expect(d.deadline?.rule == .write)
        #expect(d.deadline?.at == .seconds(142))
        d.writabilityChanged(writable: false, now: .seconds(120))  // still the first stall
        #expect(d.deadline?.at == .seconds(142))
        d.writabilityChanged(writable: true, now: .seconds(121))
        #expect(d.deadline == nil)
        d.responseEnded(now: .seconds(122))
        #expect(d.deadline?.rule == .idle)
        #expect(d.deadline?.at == .seconds(182))
        // Pipelining: a second request arrives before the first is answered.
        d.headReceived(now: .seconds(130))
        d.requestEnded(now: .seconds(130))
        d.headReceived(now: .seconds(131))
        d.responseEnded(now: .seconds(132))
        #expect(d.deadline?.rule == .body)  // the second request is still being read
        d.requestEnded(now: .seconds(133))
        d.responseEnded(now: .seconds(134))
        #expect(d.deadline?.rule == .idle)
        #expect(d.inFlight == 0)
    }

    @Test func bootQueryParsing() throws {
        let ok: [(String, String, DMIFacts)] = [
            ("mac=52:54:00:12:34:56", "52:54:00:12:34:56", DMIFacts()),
            ("mac=52%3A54%3A00%3A12%3A34%3A56&serial=SN+1", "52:54:00:12:34:56", DMIFacts(serial: "SN 1")),
            ("serial=%20%20&mac=525400123456&mac=ignored", "52:54:00:12:34:56", DMIFacts()),
            ("mac=52-54-00-12-34-56&manufacturer=%E2%9C%93&product=%zz", "52:54:00:12:34:56",
             DMIFacts(vendor: "✓", product: "%zz")),
            ("&&mac=5254.0012.3456&uuid=%FF", "52:54:00:12:34:56", DMIFacts(uuid: "\u{FFFD}")),
        ]
        for (query, mac, dmi) in ok {
            let parsed = try BootQuery.parse(Substring(query))
            #expect(parsed.mac == mac, "\(query)")
            #expect(parsed.dmi == dmi, "\(query)")
        }
        let long = try BootQuery.parse(Substring("mac=525400123456&serial=" + String(repeating: "é", count: 300)))
        #expect(long.dmi.serial?.utf8.count == 256)
        let bad: [(String, String)] = [
            ("", "needs ?mac="), ("mac=", "needs ?mac="), ("serial=x", "needs ?mac="),
            ("mac=zz", "\"zz\" is not a MAC address"),
            (String(repeating: "a=1&", count: 65) + "mac=525400123456", "more than 64 query parameters"),
        ]
        for (query, message) in bad {
            #expect(throws: BootQueryError.self, "\(query)") { try BootQuery.parse(Substring(query)) }
            do {
                _ = try BootQuery.parse(Substring(query))
            } catch {
                #expect(error.description.contains(message), "\(query): \(error)")
            }
        }
    }

    /// The Host header goes into iPXE scripts and kernel command lines only when it is a plain
    /// host[:port]; anything else could add a script command or a kernel argument.
    @Test func hostHeaderCannotInjectScriptLines() async throws {
        try await withServices { services, _ in
            let cases: [(String, String?)] = [
                ("10.0.0.1:8080", "10.0.0.1:8080"), ("[fe80::1]:8080", "[fe80::1]:8080"), ("boot.example", "boot.example"),
                ("evil boot http://x", nil), ("a\tb", nil), ("x${net0/mac}", nil), ("a;b", nil), ("", nil),
                (String(repeating: "a", count: 300), nil),
            ]
            for (host, expected) in cases {
                let request = Request(
                    head: HTTPRequest(method: .get, scheme: "http", authority: host, path: "/boot/start.ipxe"),
                    body: .init(buffer: ByteBuffer()))
                #expect(Services.authority(of: request) == expected, "\(host)")
                let base = services.bootBase(request)
                #expect(base == "http://" + (expected ?? "localhost:\(services.config.bootListenPort)"), "\(host)")
            }
        }
    }
}

/// Lets one loop test applications of different router types.
struct AnyApp {
    let test: (@Sendable (any TestClientProtocol) async throws -> Void) async throws -> Void
    init(_ application: some ApplicationProtocol) {
        test = { body in try await application.test(.router) { client in try await body(client) } }
    }
}
