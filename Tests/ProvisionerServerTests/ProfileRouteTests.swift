import Foundation
import Hummingbird
import HummingbirdTesting
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore
import ProvisionerPKI
import Testing

@testable import ProvisionerServer

/// Profiles, overlays, node ranges and assign-many through the server's router, and over TLS.
@Suite struct ProfileRouteTests {
    func post<T: Encodable>(_ client: some TestClientProtocol, _ uri: String, _ body: T, method: HTTPRequest.Method = .post)
        async throws -> TestResponse
    {
        try await client.execute(uri: "/api/v1/admin/" + uri, method: method, headers: jsonHeaders, body: try jsonBody(body))
    }

    @Test func unknownFieldsOfNodesAndProfilesAreRefusedByName() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                for (uri, body) in [
                    ("nodes", #"{"name":"n1","kernelArg":["quiet"]}"#),
                    ("profiles", #"{"name":"p1","imgae":{"name":"debian"}}"#),
                    ("nodes/import", #"{"nodes":[{"name":"n2","mcas":["52:54:00:00:00:01"]}]}"#),
                ] {
                    let response = try await client.execute(
                        uri: "/api/v1/admin/" + uri, method: .post, headers: jsonHeaders, body: ByteBuffer(string: body))
                    expectJSONError(response, 400, code: "bad-json")
                    let message = String(buffer: response.body)
                    #expect(message.contains("has no field"), "\(message)")
                    #expect(message.contains("kernelArg") || message.contains("imgae") || message.contains("mcas"))
                }
                let nodes = try await client.execute(uri: "/api/v1/admin/nodes", method: .get)
                #expect(String(buffer: nodes.body) == "[]")
            }
        }
    }

    @Test func nodesTakeTheirProfilesFieldsAndOwnFieldsWin() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let compute = Profile(
                    name: "compute",
                    fields: NodeFields(mode: .stateless, kernelArgs: ["console=ttyS0"], vars: ["rack": "r1"]))
                #expect(try await post(client, "profiles", compute).status == .created)
                expectJSONError(try await post(client, "profiles", compute), 409)
                let nodes = try Hostlist.expand("n[001-003]").map {
                    NodeDefinition(name: $0, profiles: ["compute"], fields: NodeFields(vars: ["ip": "10.1.0.\($0.suffix(1))"]))
                }
                let bulk = try await post(client, "nodes/bulk", BulkNodesRequest(operation: .create, nodes: nodes))
                #expect(bulk.status == .ok)
                let n2 = try decode(NodeRecord.self, try await client.execute(uri: "/api/v1/admin/nodes/n002", method: .get))
                #expect(n2.config.mode == .stateless)
                #expect(n2.config.vars == ["rack": "r1", "ip": "10.1.0.2"])
                #expect(n2.sources.first { $0.field == "mode" }?.source == "profile compute")
                #expect(n2.sources.first { $0.field == "vars.ip" }?.source == "node")

                // A node's own field wins; a profile change reaches every node using it.
                var own = n2.definition
                own.fields.mode = .stateful
                #expect(try await post(client, "nodes/n002", own, method: .put).status == .ok)
                var changed = compute
                changed.fields.kernelArgs = ["quiet"]
                #expect(try await post(client, "profiles/compute", changed, method: .put).status == .ok)
                let all = try decode([NodeRecord].self, try await client.execute(uri: "/api/v1/admin/nodes", method: .get))
                #expect(all.map(\.config.kernelArgs) == [["quiet"], ["quiet"], ["quiet"]])
                #expect(all.map(\.config.mode) == [.stateless, .stateful, .stateless])

                // Deleting a profile in use is refused naming the nodes; a cycle is refused.
                let delete = try await client.execute(uri: "/api/v1/admin/profiles/compute", method: .delete)
                expectJSONError(delete, 409, code: "in-use")
                #expect(String(buffer: delete.body).contains("node n001, node n002, node n003"))
                #expect(try await post(client, "profiles", Profile(name: "a", profiles: ["compute"])).status == .created)
                expectJSONError(
                    try await post(client, "profiles/compute", Profile(name: "compute", profiles: ["a"]), method: .put), 422,
                    code: "invalid-profile")
                expectJSONError(
                    try await post(client, "nodes", NodeDefinition(name: "x1", profiles: ["nope"])), 422, code: "invalid-node")

                // One audit entry for the whole range.
                let audit = try decode(
                    [AuditEntry].self,
                    try await client.execute(uri: "/api/v1/admin/audit?subject=nodes/n%5B001-003%5D", method: .get))
                #expect(audit.map(\.action) == ["nodes.create"])
                #expect(audit.first?.after?.contains("n003") == true)

                // Bulk delete: one transaction; an unknown name deletes nothing.
                expectJSONError(
                    try await post(client, "nodes/bulk", BulkNodesRequest(operation: .delete, names: ["n001", "zz"])), 404)
                #expect(try decode([NodeRecord].self, try await client.execute(uri: "/api/v1/admin/nodes", method: .get)).count == 3)
            }
        }
    }

    @Test func overlaysRenderPerNodeAndBadOnesAreRefusedBeforeAnythingIsStored() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let site = Overlay(
                    name: "site",
                    files: [
                        OverlayFile(path: "/etc/motd", template: true, data: Data("node {{name}} rack {{vars.rack}}\n".utf8)),
                        OverlayFile(path: "/usr/local/sbin/setup.sh", mode: 0o755, data: Data("#!/bin/sh\n".utf8), run: PluginRun()),
                    ])
                #expect(try await post(client, "overlays", site).status == .created)
                let node = NodeDefinition(
                    name: "n1", macs: ["52:54:00:00:00:61"], fields: NodeFields(overlays: ["site", "hosts"], vars: ["rack": "r7", "ip": "10.0.0.1"]))
                #expect(try await post(client, "nodes", node).status == .created)
                let files = try decode(
                    [RenderedFile].self, try await client.execute(uri: "/api/v1/admin/nodes/n1/files", method: .get))
                #expect(files.map(\.path) == ["/etc/motd", "/usr/local/sbin/setup.sh", "/etc/hosts"])
                #expect(String(decoding: files[0].data, as: UTF8.self) == "node n1 rack r7\n")
                #expect(String(decoding: files[2].data, as: UTF8.self).contains("10.0.0.1\tn1"))

                // The agent gets the rendered files with its node.
                let opened = try await client.execute(
                    uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                    body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:61"])))
                #expect(try decode(SessionResponse.self, opened).node?.files?.count == 3)

                // A node without the variable the template needs: refused, naming node, overlay, file and field.
                let bad = try await post(client, "nodes", NodeDefinition(name: "n2", fields: NodeFields(overlays: ["site"])))
                expectJSONError(bad, 422, code: "invalid-overlay")
                #expect(String(buffer: bad.body).contains("overlay site, file /etc/motd: node n2: the template refers to vars.rack"))
                expectJSONError(try await client.execute(uri: "/api/v1/admin/nodes/n2", method: .get), 404)

                // Replacing the overlay with a template n1 cannot render: refused, the old one stays.
                var broken = site
                broken.files[0].data = Data("{{#x}}".utf8)
                expectJSONError(try await post(client, "overlays/site", broken, method: .put), 422, code: "invalid-overlay")
                #expect(try decode(Overlay.self, try await client.execute(uri: "/api/v1/admin/overlays/site", method: .get)) == site)

                // Paths out of the root, in-use deletes, built-ins.
                let escape = Overlay(name: "esc", files: [OverlayFile(path: "/etc/../../x", data: Data())])
                expectJSONError(try await post(client, "overlays", escape), 422, code: "invalid-overlay")
                expectJSONError(try await client.execute(uri: "/api/v1/admin/overlays/site", method: .delete), 409, code: "in-use")
                expectJSONError(try await client.execute(uri: "/api/v1/admin/overlays/hosts", method: .delete), 409)
                let list = try decode([OverlaySummary].self, try await client.execute(uri: "/api/v1/admin/overlays", method: .get))
                #expect(list.map(\.name) == ["hosts", "site"])
                #expect(list.map(\.usedBy) == [["node n1"], ["node n1"]])
            }
        }
    }

    @Test func assignManyBindsWaitingMachinesInOrderOfAppearance() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                var sessions: [String] = []
                for i in 1...3 {
                    let opened = try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:07:0\(i)"])))
                    sessions.append(try decode(SessionResponse.self, opened).sessionID)
                    try await Task.sleep(for: .milliseconds(5))
                }
                let nodes = ["c01", "c02"].map { NodeDefinition(name: $0) }
                #expect(try await post(client, "nodes/bulk", BulkNodesRequest(operation: .create, nodes: nodes)).status == .ok)
                expectJSONError(try await post(client, "pending/assign-many", AssignManyRequest(nodes: ["c01", "c02", "c03", "c04"])), 409)
                let done = try decode(
                    [Assignment].self, try await post(client, "pending/assign-many", AssignManyRequest(nodes: ["c01", "c02"])))
                #expect(done.map(\.sessionID) == Array(sessions.prefix(2)))
                #expect(done.map(\.node) == ["c01", "c02"])
                let c2 = try decode(NodeRecord.self, try await client.execute(uri: "/api/v1/admin/nodes/c02", method: .get))
                #expect(c2.config.macs == ["52:54:00:00:07:02"])
                let audit = try decode([AuditEntry].self, try await client.execute(uri: "/api/v1/admin/audit", method: .get))
                #expect(audit.last?.action == "nodes.assign")
                #expect(audit.last?.subject == "nodes/c[01-02]")
            }
        }
    }

    @Test func importTakesProfilesAndNodesInOneTransaction() async throws {
        try await withServices { services, _ in
            try await app(services).test(.router) { client in
                let file = """
                    profiles:
                      base: { mode: stateless, overlays: [hosts] }
                      compute: { profiles: [base], vars: { rack: r1 } }
                    nodes:
                      n001: { profiles: [compute], vars: { ip: 10.1.0.1 } }
                      n002: { profiles: [compute], mode: stateful }
                    """
                let cluster = try ClusterFile.parseCluster(file, source: "cluster.yaml")
                let request = ImportRequest(nodes: cluster.nodes, profiles: cluster.profiles)
                let result = try decode(ImportResult.self, try await post(client, "nodes/import", request))
                #expect(result.created == ["n001", "n002"])
                let again = try decode(ImportResult.self, try await post(client, "nodes/import", request))
                #expect(again.unchanged == ["n001", "n002"])
                let nodes = try decode([NodeRecord].self, try await client.execute(uri: "/api/v1/admin/nodes", method: .get))
                #expect(nodes.map(\.config.mode) == [.stateless, .stateful])
                // Export → parse gives the same definitions and profiles back.
                let profiles = try decode([ProfileRecord].self, try await client.execute(uri: "/api/v1/admin/profiles", method: .get))
                let text = ClusterFile.render(nodes.map(\.definition), profiles: profiles.map(\.profile))
                let back = try ClusterFile.parseCluster(text, source: "export")
                #expect(back.nodes == cluster.nodes)
                #expect(back.profiles.sorted { $0.name < $1.name } == cluster.profiles.sorted { $0.name < $1.name })

                // A cycle in the file: nothing is stored.
                let cyclic = ImportRequest(
                    nodes: [NodeDefinition(name: "n9", profiles: ["x"])],
                    profiles: [Profile(name: "x", profiles: ["y"]), Profile(name: "y", profiles: ["x"])])
                expectJSONError(try await post(client, "nodes/import", cyclic), 422)
                expectJSONError(try await client.execute(uri: "/api/v1/admin/nodes/n9", method: .get), 404)
            }
        }
    }

    @Test func profilesAndRangesOverTLS() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let admin = try pki.client(port: server.apiPort, credential: pki.admin)
            let _: ProfileRecord = try await admin.json(
                .POST, "/api/v1/admin/profiles", body: Profile(name: "gpu", fields: NodeFields(mode: .stateless)))
            let names = try Hostlist.expand("gpu[01-04,07]")
            let _: [String: [String]] = try await admin.json(
                .POST, "/api/v1/admin/nodes/bulk",
                body: BulkNodesRequest(operation: .create, nodes: names.map { NodeDefinition(name: $0, profiles: ["gpu"]) }))
            let nodes: [NodeRecord] = try await admin.json(.GET, "/api/v1/admin/nodes")
            #expect(nodes.map(\.config.name) == names)
            #expect(nodes.allSatisfy { $0.config.mode == .stateless })
            let audit: [AuditEntry] = try await admin.json(.GET, "/api/v1/admin/audit")
            #expect(audit.map(\.subject) == ["profile/gpu", "nodes/gpu[01-04,07]"])
            #expect(audit.map(\.actor) == ["alice", "alice"])
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }
}
