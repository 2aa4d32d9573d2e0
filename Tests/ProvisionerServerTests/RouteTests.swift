import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore
import ProvisionerPKI
import Testing

@testable import ProvisionerServer

/// The routes through the very router the server runs, without sockets.
@Suite struct RouteTests {
    let layout = "disks:\n  disk0:\n    match: { type: nvme, size: 1TB }\n"

    @Test func unknownMachineWaitsThenMovesOnAfterAssign() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let open = SessionOpenRequest(
                    macs: ["52-54-00-AA-BB-01"], facts: HardwareFacts(dmi: DMIFacts(serial: "SER1", vendor: "QEMU")))
                let opened = try await client.execute(uri: "/api/v1/sessions", method: .post, headers: jsonHeaders, body: try jsonBody(open))
                #expect(opened.status == .created)
                let session = try decode(SessionResponse.self, opened)
                #expect(session.status == .unassigned)
                #expect(session.node == nil)
                #expect(session.pollAfterSeconds == 30)

                let pending = try decode(
                    [PendingMachine].self, try await client.execute(uri: "/api/v1/admin/pending", method: .get))
                #expect(pending.map(\.sessionID) == [session.sessionID])
                #expect(pending.first?.macs == ["52:54:00:aa:bb:01"])
                #expect(pending.first?.facts.dmi.serial == "SER1")

                // Still unassigned when it polls before the admin acts.
                let early = try decode(
                    SessionResponse.self,
                    try await client.execute(uri: "/api/v1/sessions/\(session.sessionID)", method: .get))
                #expect(early.status == .unassigned)

                let node = NodeConfig(name: "n1", layout: layout)
                #expect(
                    try await client.execute(uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(node)).status
                        == .created)
                let assigned = try await client.execute(
                    uri: "/api/v1/admin/pending/assign", method: .post, headers: jsonHeaders,
                    body: try jsonBody(AssignRequest(machine: session.sessionID, node: "n1")))
                #expect(assigned.status == .ok)
                #expect(try decode(NodeRecord.self, assigned).config.macs == ["52:54:00:aa:bb:01"])

                let polled = try decode(
                    SessionResponse.self,
                    try await client.execute(uri: "/api/v1/sessions/\(session.sessionID)", method: .get))
                #expect(polled.status == .assigned)
                #expect(polled.node?.name == "n1")
                #expect(polled.node?.layout == layout)
                #expect(
                    try decode(
                        [PendingMachine].self, try await client.execute(uri: "/api/v1/admin/pending", method: .get)
                    ).isEmpty)

                let everything = try decode(
                    [AuditEntry].self, try await client.execute(uri: "/api/v1/admin/audit", method: .get))
                // The full config the admin polled made the node's SSH host keys (by the server).
                #expect(everything.filter { $0.actor == "server" }.map(\.action) == Array(repeating: "secret.generate", count: 6))
                let audit = everything.filter { $0.actor != "server" }
                #expect(audit.map(\.action) == ["node.create", "node.assign"])
                #expect(audit.allSatisfy { $0.actor == "alice" && $0.subject == "node/n1" })
                #expect(audit[1].before?.contains("52:54:00:aa:bb:01") == false)
                #expect(audit[1].after?.contains("52:54:00:aa:bb:01") == true)
            }
        }
    }

    @Test func assignByMACAndKnownMachineGetsItsNodeAtOnce() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                try await client.execute(
                    uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(NodeConfig(name: "n2")))
                let first = try decode(
                    SessionResponse.self,
                    try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:02"]))))
                #expect(first.status == .unassigned)
                let assign = try await client.execute(
                    uri: "/api/v1/admin/pending/assign", method: .post, headers: jsonHeaders,
                    body: try jsonBody(AssignRequest(machine: "52:54:00:00:00:02", node: "n2")))
                #expect(assign.status == .ok)
                // A reboot opens a new session that is assigned at once and abandons the old one.
                let second = try decode(
                    SessionResponse.self,
                    try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:02"]))))
                #expect(second.status == .assigned)
                #expect(second.node?.name == "n2")
                let list = try decode(
                    [SessionSummary].self, try await client.execute(uri: "/api/v1/admin/sessions?node=n2", method: .get)
                )
                #expect(list.map(\.state) == [.running, .abandoned])
                let firstDetail = try decode(
                    SessionDetail.self,
                    try await client.execute(uri: "/api/v1/admin/sessions/\(first.sessionID)", method: .get))
                #expect(firstDetail.session.state == .abandoned)
            }
        }
    }

    @Test func eventsAreStoredInOrderUntilTheSessionFinishes() async throws {
        try await withServices { services, _ in
            try await app(services, as: bootstrapPeer).test(.router) { client in
                let session = try decode(
                    SessionResponse.self,
                    try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:03"]))))
                let batch = EventBatch(events: [
                    AgentEvent(phase: "disks", step: "plan", message: "3 actions"),
                    AgentEvent(phase: "image", step: "fetch", message: "40%", progress: 0.4),
                    AgentEvent(phase: "image", level: .error, message: "fetch failed", error: "HTTP 404"),
                ])
                let accepted = try decode(
                    EventsAccepted.self,
                    try await client.execute(
                        uri: "/api/v1/sessions/\(session.sessionID)/events", method: .post, headers: jsonHeaders, body: try jsonBody(batch)))
                #expect(accepted == EventsAccepted(accepted: 3, lastSeq: 3))
                let finished = try await client.execute(
                    uri: "/api/v1/sessions/\(session.sessionID)/finish", method: .post, headers: jsonHeaders,
                    body: try jsonBody(SessionFinish(succeeded: false, message: "image failed")))
                #expect(try decode(SessionSummary.self, finished).state == .failed)
                let late = try await client.execute(
                    uri: "/api/v1/sessions/\(session.sessionID)/events", method: .post, headers: jsonHeaders, body: try jsonBody(batch))
                expectJSONError(late, 409, code: "session-finished")
            }
            // The admin reads them back, and from a sequence number on (what watch does).
            try await app(services).test(.router) { client in
                let list = try decode(
                    [SessionSummary].self, try await client.execute(uri: "/api/v1/admin/sessions", method: .get))
                let id = try #require(list.first?.id)
                let all = try decode(
                    SessionDetail.self, try await client.execute(uri: "/api/v1/admin/sessions/\(id)", method: .get))
                #expect(all.events.map(\.seq) == [1, 2, 3])
                #expect(all.events.map(\.event.phase) == ["disks", "image", "image"])
                #expect(all.session.lastMessage == "image failed")
                let tail = try decode(
                    SessionDetail.self,
                    try await client.execute(uri: "/api/v1/admin/sessions/\(id)?after=2", method: .get))
                #expect(tail.events.map(\.seq) == [3])
            }
        }
    }

    @Test func nodeValidationAndConflicts() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let ok = NodeConfig(name: "web1", macs: ["52:54:00:00:10:01"], layout: layout)
                #expect(
                    try await client.execute(uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(ok)).status
                        == .created)
                let cases: [(NodeConfig, Int, String)] = [
                    (ok, 409, "conflict"),
                    (NodeConfig(name: "web2", macs: ["52:54:00:00:10:01"]), 409, "conflict"),
                    (NodeConfig(name: "web3", macs: ["not-a-mac"]), 422, "invalid-node"),
                    (NodeConfig(name: "-bad", macs: []), 422, "invalid-node"),
                    (
                        NodeConfig(name: "web4", layout: "disks:\n  disk0:\n    match: { size: 12XB }\n"), 422,
                        "invalid-node"
                    ),
                    (NodeConfig(name: "web5", layout: "disks: {}\n"), 422, "invalid-node"),
                    (NodeConfig(name: "web6", image: ImageRef(name: "../etc")), 422, "invalid-node"),
                ]
                for (node, status, code) in cases {
                    let response = try await client.execute(
                        uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(node))
                    expectJSONError(response, status, code: code)
                }
                // The layout error names the field.
                let bad = try await client.execute(
                    uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(cases[4].0))
                #expect(String(buffer: bad.body).contains("disks.disk0.match.size"))
                expectJSONError(
                    try await client.execute(uri: "/api/v1/admin/nodes/nope", method: .get), 404, code: "unknown-node")
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/nodes/web1", method: .put, headers: jsonHeaders, body: try jsonBody(NodeConfig(name: "other"))),
                    400)
                var changed = ok
                changed.mode = .stateless
                let put = try await client.execute(
                    uri: "/api/v1/admin/nodes/web1", method: .put, headers: jsonHeaders, body: try jsonBody(changed))
                #expect(try decode(NodeRecord.self, put).config.mode == .stateless)
                #expect(try await client.execute(uri: "/api/v1/admin/nodes/web1", method: .delete).status == .ok)
                let audit = try decode(
                    [AuditEntry].self, try await client.execute(uri: "/api/v1/admin/audit", method: .get))
                #expect(audit.map(\.action) == ["node.create", "node.update", "node.delete"])
                #expect(audit[2].after == nil && audit[2].before?.contains("stateless") == true)
            }
        }
    }

    @Test func importCreatesUpdatesAndPrunes() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let first = ImportRequest(nodes: [
                    NodeConfig(name: "a", macs: ["52:54:00:00:20:01"]),
                    NodeConfig(name: "b", macs: ["52:54:00:00:20:02"]),
                ])
                let r1 = try decode(
                    ImportResult.self,
                    try await client.execute(
                        uri: "/api/v1/admin/nodes/import", method: .post, headers: jsonHeaders, body: try jsonBody(first)))
                #expect(r1.created == ["a", "b"])
                // MACs move from a to c in the same import; b is pruned.
                let second = ImportRequest(
                    nodes: [NodeConfig(name: "a"), NodeConfig(name: "c", macs: ["52:54:00:00:20:01"])], prune: true)
                let r2 = try decode(
                    ImportResult.self,
                    try await client.execute(
                        uri: "/api/v1/admin/nodes/import", method: .post, headers: jsonHeaders, body: try jsonBody(second)))
                #expect(r2.created == ["c"])
                #expect(r2.updated == ["a"])
                #expect(r2.deleted == ["b"])
                let nodes = try decode(
                    [NodeRecord].self, try await client.execute(uri: "/api/v1/admin/nodes", method: .get))
                #expect(nodes.map(\.config.name) == ["a", "c"])
            }
        }
    }

    @Test func rolesAreEnforced() async throws {
        try await withServices { services, _ in
            try await app(services, as: nodePeer).test(.router) { client in
                expectJSONError(
                    try await client.execute(uri: "/api/v1/admin/nodes", method: .get), 403, code: "forbidden")
            }
            try await app(services, as: nil).test(.router) { client in
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:09"]))),
                    401, code: "no-certificate")
                expectJSONError(try await client.execute(uri: "/files/kernels/default", method: .get), 401)
            }
        }
    }

    @Test func badInputGetsA4xxJSONErrorNeverA500() async throws {
        try await withServices { services, dir in
            try dir.write("files/kernels/vmlinuz", Array("kernel".utf8))
            try dir.write("secret", Array("secret".utf8))
            try await app(services).test(.router) { client in
                let big = ByteBuffer(repeating: UInt8(ascii: "a"), count: 5 << 20)
                let cases: [(String, HTTPRequest.Method, ByteBuffer?, Int)] = [
                    ("/api/v1/sessions", .post, ByteBuffer(string: "{\"macs\": [\"52:54:00:00:00:01\""), 400),
                    ("/api/v1/sessions", .post, ByteBuffer(string: "[]"), 400),
                    ("/api/v1/sessions", .post, ByteBuffer(string: "{\"macs\": 5}"), 400),
                    ("/api/v1/sessions", .post, ByteBuffer(string: "{\"macs\": []}"), 400),
                    ("/api/v1/sessions", .post, ByteBuffer(string: "{\"macs\": [\"zz\"]}"), 400),
                    ("/api/v1/sessions", .post, nil, 400),
                    ("/api/v1/sessions", .post, big, 413),
                    ("/api/v1/admin/nodes/import", .post, ByteBuffer(string: "{\"nodes\": [{}]}"), 400),
                    ("/api/v1/sessions/00000000-dead-beef-0000-000000000000", .get, nil, 404),
                    ("/api/v1/sessions/nope/events", .post, ByteBuffer(string: "{\"events\": []}"), 404),
                    ("/api/v1/sessions/nope/finish", .post, ByteBuffer(string: "{\"succeeded\": true}"), 404),
                    ("/api/v1/admin/sessions/nope", .get, nil, 404),
                    ("/api/v1/admin/sessions?limit=-1", .get, nil, 400),
                    (
                        "/api/v1/admin/pending/assign", .post,
                        ByteBuffer(string: "{\"machine\": \"x\", \"node\": \"n\"}"), 404
                    ),
                    ("/files/kernels/..%2F..%2Fsecret", .get, nil, 400),
                    ("/files/kernels/%2E%2E", .get, nil, 400),
                    ("/files/kernels/.hidden", .get, nil, 400),
                    ("/files/../secret", .get, nil, 404),
                    ("/files/kernels/../../secret", .get, nil, 404),
                    ("/files/etc/passwd", .get, nil, 404),
                    ("/files/kernels/missing", .get, nil, 404),
                    ("/no/such/route", .get, nil, 404),
                ]
                for (uri, method, body, status) in cases {
                    let headers = method == .post ? jsonHeaders : [:]
                    let response = try await client.execute(uri: uri, method: method, headers: headers, body: body)
                    expectJSONError(response, status)
                    #expect(String(buffer: response.body) != "secret", "\(uri)")
                }
            }
        }
    }

    @Test func filesHaveStrongETagsAndRanges() async throws {
        try await withServices { services, dir in
            let content = Array(0..<200).map { UInt8($0) }
            try dir.write("files/initramfs/default", content)
            let etag = "\"sha256:\(SHA256.hash(data: content).map { String(format: "%02x", $0) }.joined())\""
            try await app(services, as: nodePeer).test(.router) { client in
                let full = try await client.execute(uri: "/files/initramfs/default", method: .get)
                #expect(full.status == .ok)
                #expect(Array(full.body.readableBytesView) == content)
                #expect(full.headers[.eTag] == etag)
                #expect(full.headers[.acceptRanges] == "bytes")

                let cases: [(String, HTTPResponse.Status, ArraySlice<UInt8>, String?)] = [
                    ("bytes=10-19", .partialContent, content[10...19], "bytes 10-19/200"),
                    ("bytes=190-", .partialContent, content[190...], "bytes 190-199/200"),
                    ("bytes=-5", .partialContent, content[195...], "bytes 195-199/200"),
                    ("bytes=150-999", .partialContent, content[150...], "bytes 150-199/200"),
                    ("bytes=0-0,5-6", .ok, content[...], nil),
                    ("items=1-2", .ok, content[...], nil),
                ]
                for (range, status, bytes, contentRange) in cases {
                    let r = try await client.execute(
                        uri: "/files/initramfs/default", method: .get, headers: [.range: range])
                    #expect(r.status == status, "\(range)")
                    #expect(Array(r.body.readableBytesView) == Array(bytes), "\(range)")
                    #expect(r.headers[.contentRange] == contentRange, "\(range)")
                }
                let unsatisfiable = try await client.execute(
                    uri: "/files/initramfs/default", method: .get, headers: [.range: "bytes=200-"])
                expectJSONError(unsatisfiable, 416)
                #expect(unsatisfiable.headers[.contentRange] == "bytes */200")

                let notModified = try await client.execute(
                    uri: "/files/initramfs/default", method: .get, headers: [.ifNoneMatch: etag])
                #expect(notModified.status == .notModified)
                let staleIfRange = try await client.execute(
                    uri: "/files/initramfs/default", method: .get,
                    headers: [.range: "bytes=0-1", .ifRange: "\"sha256:00\""])
                #expect(staleIfRange.status == .ok)
                #expect(staleIfRange.body.readableBytes == 200)
                let head = try await client.execute(uri: "/files/initramfs/default", method: .head)
                #expect(head.status == .ok)
                #expect(head.headers[.contentLength] == "200")
            }
            // Replacing the file changes the ETag.
            try dir.write("files/initramfs/default", Array(content.reversed()))
            try await app(services, as: nodePeer).test(.router) { client in
                let again = try await client.execute(uri: "/files/initramfs/default", method: .get)
                #expect(again.headers[.eTag] != etag)
            }
        }
    }

    @Test func iPXEScriptsPerMAC() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let node = NodeConfig(
                    name: "n7", macs: ["52:54:00:00:00:07"], kernelArgs: ["console=ttyS0"], kernel: "vmlinuz-6.1")
                try await client.execute(uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(node))
            }
            let boot = Application(router: buildBootRouter(services))
            try await boot.test(.router) { client in
                let known = String(
                    buffer: try await client.execute(uri: "/boot/ipxe?mac=52-54-00-00-00-07", method: .get).body)
                #expect(known.hasPrefix("#!ipxe\n"))
                #expect(
                    known.contains(
                        "/boot/kernels/vmlinuz-6.1 initrd=initramfs root=provisioner provisioner.server=https://"))
                #expect(known.contains("provisioner.mac=52:54:00:00:00:07 console=ttyS0"))
                #expect(known.contains("initrd --name initramfs "))
                let unknown = String(
                    buffer: try await client.execute(
                        uri: "/boot/ipxe?mac=52:54:00:00:00:08&serial=S8&manufacturer=Acme", method: .get
                    ).body)
                #expect(unknown.contains("sleep 30"))
                #expect(unknown.contains("chain "))
                #expect(!unknown.contains("kernel "))
                // Retrying keeps one pending entry.
                _ = try await client.execute(
                    uri: "/boot/ipxe?mac=52:54:00:00:00:08&serial=S8&manufacturer=Acme", method: .get)
                expectJSONError(try await client.execute(uri: "/boot/ipxe?mac=nope", method: .get), 400)
                expectJSONError(try await client.execute(uri: "/api/v1/admin/nodes", method: .get), 404)
            }
            let pending = try await services.store.pending()
            #expect(pending.count == 1)
            #expect(pending.first?.facts.dmi.vendor == "Acme")
        }
    }

    /// The kernel modules of the node's layout ride on its command line (provisioner.modules=), for
    /// the initrd to load while it waits for the network; a node without a layout gets none.
    @Test func iPXEScriptsNameTheLayoutsKernelModules() {
        let layout = """
            disks:
              d0:
                match: { type: nvme }
                partitions:
                  - { name: root, size: rest, filesystem: { type: xfs, mount: / } }
            """
        let files = BootFiles.serverDefault(reason: "test")
        func script(_ node: NodeConfig) -> String {
            IPXEScript.boot(
                node: node, files: files, mac: "52:54:00:00:00:07", bootBase: "http://b", serverURL: "https://s:1",
                mirrors: [])
        }
        let stateful = script(NodeConfig(name: "n7", macs: ["52:54:00:00:00:07"], layout: layout))
        #expect(stateful.contains("provisioner.mac=52:54:00:00:00:07 provisioner.modules=fs-xfs\n"))
        #expect(!script(NodeConfig(name: "n8", macs: ["52:54:00:00:00:07"])).contains("provisioner.modules"))
        // A layout that does not parse boots without the list: the agent reports the layout's error.
        #expect(!script(NodeConfig(name: "n9", macs: ["52:54:00:00:00:07"], layout: "disks: 7")).contains("provisioner.modules"))
    }
}

extension RouteTests {
    @Test func discoveryBootsUnknownMachinesIntoTheAgent() async throws {
        try await withServices(configure: {
            $0.unknownMachines = .discover
            $0.mirrors = ["https://m1:8443"]
            $0.serverURL = "https://prov:8443"
        }) { services, _ in
            try await Application(router: buildBootRouter(services)).test(.router) { client in
                let script = String(
                    buffer: try await client.execute(uri: "/boot/ipxe?mac=52:54:00:00:00:0a", method: .get).body)
                #expect(script.contains("unknown machine, discovery boot"))
                #expect(script.contains("/boot/kernels/default initrd=initramfs root=provisioner"))
                #expect(script.contains("provisioner.server=https://prov:8443"))
                #expect(script.contains("provisioner.mirrors=https://m1:8443"))
                let start = String(buffer: try await client.execute(uri: "/boot/start.ipxe", method: .get).body)
                #expect(start.contains("/boot/ipxe?mac=${net0/mac}"))
            }
            #expect(try await services.store.pending().map(\.macs) == [["52:54:00:00:00:0a"]])
        }
    }
}

/// Pure pieces, with tables.
@Suite struct PureTests {
    @Test func rangeParsing() {
        let cases: [(String, Int, FileServer.RangeRequest)] = [
            ("bytes=0-9", 100, .range(0...9)),
            ("bytes=90-", 100, .range(90...99)),
            ("bytes=-10", 100, .range(90...99)),
            ("bytes=-500", 100, .range(0...99)),
            ("bytes=50-10", 100, .none),
            ("bytes=100-", 100, .unsatisfiable),
            ("bytes=-0", 100, .unsatisfiable),
            ("bytes=0-1,3-4", 100, .multiple),
            ("bits=0-1", 100, .none),
            ("bytes=x-y", 100, .none),
        ]
        for (header, size, expected) in cases {
            #expect(FileServer.parseRange(header, size: size) == expected, "\(header)")
        }
    }

    @Test func macNormalization() {
        let cases: [(String, String?)] = [
            ("52:54:00:AB:CD:EF", "52:54:00:ab:cd:ef"), ("52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef"),
            ("5254.00ab.cdef", "52:54:00:ab:cd:ef"), ("525400abcdef", "52:54:00:ab:cd:ef"), ("52:54:00:ab:cd", nil),
            ("zz:54:00:ab:cd:ef", nil), ("", nil),
        ]
        for (text, expected) in cases { #expect(MACAddress.normalize(text) == expected, "\(text)") }
    }

    @Test func clusterFileRoundTrips() throws {
        let nodes = [
            NodeConfig(
                name: "a", macs: ["52:54:00:00:00:01"], image: ImageRef(name: "debian12", branch: "stable"),
                layout: "disks:\n  disk0:\n    match: { type: nvme, size: 1TB }\n", mode: .stateless,
                plugins: [
                    PluginConfig(name: "hostname"),
                    PluginConfig(name: "net", parameters: ["addr": "10.0.0.1/24", "q": "a \"b\""]),
                ],
                kernelArgs: ["console=ttyS0"], syncVerify: .content, kernel: "vmlinuz", initramfs: "initrd"),
            NodeConfig(name: "b", image: ImageRef(name: "x", version: String(repeating: "3", count: 64))),
        ]
        let text = ClusterFile.render(nodes)
        #expect(try ClusterFile.parse(text, source: "c.yaml") == nodes)
        #expect(try ClusterFile.parse(ClusterFile.render([]), source: "e.yaml") == [])
    }

    @Test func clusterFileErrorsNameFieldAndLine() {
        let cases: [(String, String)] = [
            ("nodes:\n  a:\n    macs: [x]\n", "nodes.a.macs[0]"),
            ("nodes:\n  a:\n    mode: sideways\n", "nodes.a.mode"),
            ("nodes:\n  a:\n    tolerence: 5\n", "nodes.a.tolerence"),
            ("nodes:\n  a:\n    layout: \"disks: {}\"\n", "nodes.a.layout"),
            ("nodes:\n  a:\n    layout: \"disks: {disk0: {match: {size: 1XB}}}\"\n", "nodes.a.layout"),
            ("nodez: {}\n", "nodez"),
        ]
        for (text, field) in cases {
            #expect {
                try ClusterFile.parse(text, source: "c.yaml")
            } throws: { error in
                (error as? ConfigError)?.field.hasPrefix(field) == true && (error as? ConfigError)?.location != nil
            }
        }
    }

    @Test func serverConfigIsStrict() throws {
        let config = try ServerConfig.parse(
            "listen: 127.0.0.1:9443\nbootListen: off\nstateDir: /srv/p\nmirrors: [https://m1:443]\npollAfterSeconds: 5\n",
            source: "s.yaml")
        #expect(config.listenPort == 9443 && config.listenHost == "127.0.0.1")
        #expect(config.bootListenHost == nil)
        #expect(config.databasePath == "/srv/p/provisioner.db")
        #expect(config.mirrors == ["https://m1:443"])
        #expect(throws: ConfigError.self) { try ServerConfig.parse("listn: 1\n", source: "s.yaml") }
        #expect(throws: ConfigError.self) { try ServerConfig.parse("stateDir: relative\n", source: "s.yaml") }
    }

    @Test func endpointParsing() throws {
        let cases: [(String, String, Int)] = [
            ("https://10.0.0.1:8443", "10.0.0.1", 8443), ("https://prov.example", "prov.example", 443),
            ("https://[fd00::1]:8443/", "fd00::1", 8443), ("prov:9000", "prov", 9000),
        ]
        for (text, host, port) in cases {
            let e = try Endpoint(parsing: text)
            #expect(e.host == host && e.port == port, "\(text)")
        }
        #expect(throws: (any Error).self) { try Endpoint(parsing: "http://x:1") }
        #expect(throws: (any Error).self) { try Endpoint(parsing: "https://x:99999") }
    }
}
