import Foundation
import ProvisionerAPI
import ProvisionerClient
import ProvisionerPKI
import Testing

@testable import ProvisionerServer

/// provisionerctl as an admin uses it: the built binary, certificates from its own `ca init`,
/// against a live server on 127.0.0.1.
@Suite(.serialized) struct CtlTests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The provisionerctl built next to the test bundle (`swift build --build-tests` builds it).
    static var ctlPath: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("provisionerctl").path
    }

    /// Runs provisionerctl with a deadline; the process is ended by its pid if it overstays.
    /// Waits by sleeping the task, never blocking a thread of the cooperative pool: the server
    /// under test answers provisionerctl from that same pool (2 threads on 2 cores).
    static func ctl(_ arguments: [String], timeout: Double = 60) async throws -> Run {
        try await tool(ctlPath, arguments, timeout: timeout)
    }

    /// Another executable of this package built next to the test bundle (provisioner-agent).
    static func built(_ name: String) -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Runs an executable as `ctl` does.
    static func tool(_ path: String, _ arguments: [String], timeout: Double = 60, stdin: String? = nil) async throws -> Run {
        // Output goes to files (no pipe can fill up and block the child).
        let base = NSTemporaryDirectory() + "ctl-" + UUID().uuidString
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
            try? FileManager.default.removeItem(atPath: base + ".in")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let stdin {
            FileManager.default.createFile(atPath: base + ".in", contents: Data(stdin.utf8))
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: base + ".in"))
        }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "")
    }

    /// DMI strings as a hostile machine might report them: a title-setting OSC, a screen clear, a CR.
    static let hostile = "Acme\u{1B}]0;owned\u{07}\u{1B}[2J\rfake"

    @Test func caInitNodesPendingAssignWatchAndAudit() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.ctlPath), "\(Self.ctlPath) missing")
        let dir = try TempDir()
        defer { dir.remove() }
        let tls = dir.path + "/tls"
        let initRun = try await Self.ctl([
            "ca", "init", "--dir", tls, "--name", "localhost", "--ip", "127.0.0.1", "--admin", "carol",
        ])
        #expect(initRun.status == 0, "\(initRun.stderr)")
        for key in ["ca-key.pem", "server-key.pem", "client-key.pem", "admin-key.pem"] {
            let mode = try FileManager.default.attributesOfItem(atPath: tls + "/" + key)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(key)")
        }
        #expect(try await Self.ctl(["ca", "init", "--dir", tls]).status == 1)  // refuses to replace the CA

        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let common = ["--server", "https://127.0.0.1:\(server.apiPort)", "--tls-dir", tls]
            try """
            nodes:
              web1:
                macs: ["52:54:00:00:50:01"]
                image: { name: debian12, branch: stable }
                layout: |
                  disks:
                    disk0: { match: { type: nvme, size: 1TB } }
              web2:
                mode: stateless
                kernelArgs: [console=ttyS0]
            """.write(toFile: dir.path + "/cluster.yaml", atomically: true, encoding: .utf8)
            let imported = try await Self.ctl(["nodes", "import", dir.path + "/cluster.yaml"] + common)
            #expect(imported.status == 0, "\(imported.stderr)")
            #expect(imported.stdout.contains("created 2"))

            let exported = try await Self.ctl(["nodes", "export"] + common)
            let nodes = try ClusterFile.parse(exported.stdout, source: "export")
            #expect(nodes.map(\.name) == ["web1", "web2"])
            #expect(nodes.first?.layout == "disks:\n  disk0: { match: { type: nvme, size: 1TB } }\n")
            let again = try await Self.ctl(["nodes", "import", dir.path + "/cluster.yaml", "--json"] + common)
            #expect(
                try JSONDecoder().decode(ImportResult.self, from: Data(again.stdout.utf8)).unchanged == [
                    "web1", "web2",
                ])

            // The node certificate ca init made opens a session for an unknown machine.
            let agent = try ProvisionerClient(
                ClientConfiguration(
                    servers: [Endpoint(host: "127.0.0.1", port: server.apiPort)],
                    tls: try ClientTLS(
                        caFile: tls + "/ca.pem", certificateFile: tls + "/client.pem", keyFile: tls + "/client-key.pem")
                ))
            let session: SessionResponse = try await agent.json(
                .POST, "/api/v1/sessions",
                body: SessionOpenRequest(
                    macs: ["52:54:00:00:50:02"],
                    facts: HardwareFacts(dmi: DMIFacts(serial: "XYZ", vendor: Self.hostile, product: "P\u{202E}X"))))
            #expect(session.status == .unassigned)

            let pending = try await Self.ctl(["nodes", "pending", "--json"] + common)
            let machines = try JSONDecoder().decode([PendingMachine].self, from: Data(pending.stdout.utf8))
            #expect(machines.map(\.sessionID) == [session.sessionID])
            #expect(machines.first?.facts.dmi.vendor == Self.hostile)  // --json keeps the exact bytes
            let plain = try await Self.ctl(["nodes", "pending"] + common).stdout
            #expect(plain.contains("XYZ"))
            // Plain output shows what the machine sent, escaped: no terminal control reaches the admin.
            #expect(plain.contains("Acme\\e]0;owned\\x07\\e[2J\\rfake"), "\(plain)")
            #expect(plain.contains("P\\u{202E}X"))
            #expect(!plain.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })

            let assign = try await Self.ctl(["nodes", "assign", session.sessionID, "web2"] + common)
            #expect(assign.status == 0, "\(assign.stderr)")
            // The shared certificate learns only what the disks need, and an enrollment offer.
            let offered: SessionResponse = try await agent.json(.GET, "/api/v1/sessions/\(session.sessionID)")
            #expect(offered.node?.name == "web2")
            #expect(offered.node?.kernelArgs == [])
            let offer = try #require(offered.enrollment)
            // The node makes its key, enrolls, and from then on speaks with its own certificate.
            let key = NodeKey()
            let enrolled: EnrollResult = try await agent.json(
                .POST, "/api/v1/sessions/\(session.sessionID)/enroll",
                body: EnrollRequest(csr: try key.certificateRequest(node: offer.node, challenge: offer.challenge)))
            try enrolled.certificate.write(toFile: tls + "/web2.pem", atomically: true, encoding: .utf8)
            try key.pemRepresentation.write(toFile: tls + "/web2-key.pem", atomically: true, encoding: .utf8)
            let node = try ProvisionerClient(
                ClientConfiguration(
                    servers: [Endpoint(host: "127.0.0.1", port: server.apiPort)],
                    tls: try ClientTLS(
                        caFile: tls + "/ca.pem", certificateFile: tls + "/web2.pem", keyFile: tls + "/web2-key.pem")
                ))
            let polled: SessionResponse = try await node.json(.GET, "/api/v1/sessions/\(session.sessionID)")
            #expect(polled.node?.name == "web2")
            #expect(polled.node?.kernelArgs == ["console=ttyS0"])
            #expect(polled.enrollment == nil)

            // The boot, then watch shows it and ends with the session.
            let _: EventsAccepted = try await node.json(
                .POST, "/api/v1/sessions/\(session.sessionID)/events",
                body: EventBatch(events: [
                    AgentEvent(phase: "disks", step: "apply", message: "2 partitions", progress: 0.5),
                    AgentEvent(phase: "pivot", message: "switching root"),
                    AgentEvent(phase: "plugins", message: "done\u{1B}[1A\rforged line"),
                ]))
            let _: SessionSummary = try await node.json(
                .POST, "/api/v1/sessions/\(session.sessionID)/finish", body: SessionFinish(succeeded: true))
            let watch = try await Self.ctl(["sessions", "watch", "web2"] + common)
            #expect(watch.status == 0, "\(watch.stderr)")
            #expect(watch.stdout.contains("disks/apply 50%: 2 partitions"))
            #expect(watch.stdout.contains("pivot: switching root"))
            #expect(watch.stdout.contains("succeeded"))
            #expect(watch.stdout.contains("plugins: done\\e[1A\\rforged line"))
            #expect(!watch.stdout.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })

            let bad = try await Self.ctl(["nodes", "add", "web3", "--mac", "zz"] + common)
            #expect(bad.status == 1)
            #expect(bad.stderr.contains("macs[0]"))
            let missing = try await Self.ctl(["nodes", "show", "nope"] + common)
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("no node named nope"))

            let audit = try await Self.ctl(["audit", "--json"] + common)
            let entries = try JSONDecoder().decode([AuditEntry].self, from: Data(audit.stdout.utf8))
            let admins = entries.filter { $0.actor == "carol" }
            #expect(admins.map(\.action) == ["node.create", "node.create", "node.assign"])
            #expect(admins.allSatisfy { $0.remoteAddress == "127.0.0.1" })
            #expect(entries.contains { $0.action == "node.enroll" && $0.subject == "node/web2" }, "\(entries.map(\.action))")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// Publishing through the server with the real binary, mutual TLS and the admin certificate of
    /// `ca init`: a second run sends nothing, a change sends only its object, rollback and diff work.
    @Test func imagePublishBranchRollbackThroughTheServer() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let tls = dir.path + "/tls"
        #expect(try await Self.ctl(["ca", "init", "--dir", tls, "--name", "localhost", "--ip", "127.0.0.1"]).status == 0)
        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let common = ["--server", "https://127.0.0.1:\(server.apiPort)", "--tls-dir", tls]
            try dir.write("tree/etc/hostname", Array("one\n".utf8))
            try dir.write("tree/usr/lib/big", (0..<700_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })
            func publish(_ name: String) async throws -> BranchMove {
                let run = try await Self.ctl(["image", "import", name, "--from", dir.path + "/tree", "--json"] + common)
                #expect(run.status == 0, "\(run.stderr)")
                return try JSONDecoder().decode(BranchMove.self, from: Data(run.stdout.utf8))
            }
            let first = try await publish("demo")
            #expect(first.previous == nil)
            #expect(first.branch == "main")
            let plain = try await Self.ctl(["image", "import", "demo", "--from", dir.path + "/tree"] + common)
            #expect(plain.stdout.contains("sent 0 of"), "\(plain.stdout)")  // everything is already there
            try dir.write("tree/etc/hostname", Array("two\n".utf8))
            let second = try await Self.ctl(["image", "import", "demo/test", "--from", dir.path + "/tree"] + common)
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stdout.contains("sent 1 of"), "\(second.stdout)")  // only the changed file's object
            #expect(second.stdout.contains("demo/test@"))

            let list = try await Self.ctl(["image", "list"] + common)
            #expect(list.stdout.contains("main (live)"), "\(list.stdout)")
            #expect(list.stdout.contains("test"))
            let moved = try await publish("demo")  // the changed tree on main too
            #expect(moved.summary.changed == 1)
            let diff = try await Self.ctl(["image", "diff", "demo", first.version, "main"] + common)
            #expect(diff.stdout.contains("~ etc/hostname (content, mtime)"), "\(diff.stdout)")
            let rollback = try await Self.ctl(["image", "rollback", "demo", "--json"] + common)
            #expect(rollback.status == 0, "\(rollback.stderr)")
            #expect(try JSONDecoder().decode(BranchMove.self, from: Data(rollback.stdout.utf8)).version == first.version)
            let bad = try await Self.ctl(["image", "import", "Bad/..", "--from", dir.path + "/tree"] + common)
            #expect(bad.status != 0)
            let unknown = try await Self.ctl(["image", "rollback", "demo/nope"] + common)
            #expect(unknown.status == 1)
            #expect(unknown.stderr.contains("no branch nope"), "\(unknown.stderr)")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// What `image show --json` prints: the record and the kernels of the version shown.
    struct Shown: Decodable {
        var image: ImageRecord
    }

    /// `image build`: a Debian root from mmdebstrap (the machine's apt mirror), published through
    /// the server; a refused distribution publishes nothing.
    @Test func imageBuildFromDebianPublishesAndExecEditsIt() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mmdebstrap") else {
            Issue.record("mmdebstrap is not installed (make test installs it)")
            return
        }
        let dir = try TempDir()
        defer { dir.remove() }
        let tls = dir.path + "/tls"
        #expect(try await Self.ctl(["ca", "init", "--dir", tls, "--name", "localhost", "--ip", "127.0.0.1"]).status == 0)
        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let common = ["--server", "https://127.0.0.1:\(server.apiPort)", "--tls-dir", tls]
            let refused = try await Self.ctl(["image", "build", "built", "--distro", "rocky:9"] + common)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("dnf --installroot"), "\(refused.stderr)")
            let keep = dir.path + "/root"
            let built = try await Self.ctl(
                ["image", "build", "built/test", "--distro", "debian:bookworm", "--packages", "hello", "--keep", keep]
                    + common, timeout: 600)
            #expect(built.status == 0, "\(built.stderr)")
            #expect(built.stdout.contains("built/test@"), "\(built.stdout)")
            #expect(FileManager.default.fileExists(atPath: keep + "/usr/bin/hello"))
            #expect(FileManager.default.fileExists(atPath: keep + "/sbin/mdadm"))
            #expect(!FileManager.default.fileExists(atPath: keep + "/etc/machine-id"))
            let image = try await Self.ctl(["image", "show", "built", "--json"] + common)
            // `image show --json` prints {image, kernels} since the image's own kernel (issue 13).
            let record = try JSONDecoder().decode(ImageShown.self, from: Data(image.stdout.utf8)).image
            #expect(record.branches.map(\.name) == ["test"])
            #expect((record.versions.first?.entries ?? 0) > 5000)

            // Edit in place: a command that fails publishes nothing; one that succeeds publishes
            // the working copy on the same branch, and the diff shows exactly its changes.
            let failed = try await Self.ctl(["image", "exec", "built/test"] + common + ["--", "sh", "-c", "touch /x; exit 3"])
            #expect(failed.status == 1)
            #expect(failed.stderr.contains("exited 3; nothing was published"), "\(failed.stderr)")
            let edited = try await Self.ctl(
                ["image", "exec", "built/test"] + common
                    + ["--", "sh", "-c", "echo edited > /etc/exec-test && rm /usr/bin/hello && test -r /proc/self/status"],
                timeout: 600)
            #expect(edited.status == 0, "\(edited.stderr)")
            #expect(edited.stdout.contains("+1 ~"), "\(edited.stdout)")
            let after = try JSONDecoder().decode(
                ImageShown.self, from: Data(try await Self.ctl(["image", "show", "built", "--json"] + common).stdout.utf8)
            ).image
            #expect(after.versions.count == 2)
            let diff = try await Self.ctl(["image", "diff", "built", record.versions[0].id, "test"] + common)
            #expect(diff.stdout.contains("+ etc/exec-test"), "\(diff.stdout)")
            #expect(diff.stdout.contains("- usr/bin/hello"))
            #expect(!diff.stdout.contains("provisioner-state"))

            // image shell, driven by a script on its input: exit 0 publishes exactly the edit, any
            // other status nothing. Chrooted, then in systemd-nspawn when it is installed.
            func shell(_ with: String, _ script: String) async throws -> Run {
                try await Self.tool(
                    Self.ctlPath, ["image", "shell", "built/test", "--with", with] + common, timeout: 600, stdin: script)
            }
            let thrownAway = try await shell("chroot", "echo never > /etc/shell-never\nexit 4\n")
            #expect(thrownAway.status == 1)
            #expect(thrownAway.stderr.contains("exited 4; nothing was published"), "\(thrownAway.stderr)")
            let chrooted = try await shell("chroot", "test -r /proc/self/status && echo chroot > /etc/shell-test\n")
            #expect(chrooted.status == 0, "\(chrooted.stderr)")
            #expect(chrooted.stdout.contains("+1 ~0 -0 entries"), "\(chrooted.stdout)")
            if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-nspawn") {
                let spawned = try await shell("nspawn", "echo nspawn >> /etc/shell-test\nexit 0\n")
                #expect(spawned.status == 0, "\(spawned.stderr)")
                // Nothing but the edit: nspawn registered nothing and left resolv.conf, the time zone
                // and the journal of the image alone.
                #expect(spawned.stdout.contains("+0 ~1 -0 entries"), "\(spawned.stdout)")
            } else {
                Issue.record("systemd-nspawn is not installed (make test installs systemd-container)")
            }
            let shells = try JSONDecoder().decode(
                Shown.self, from: Data(try await Self.ctl(["image", "show", "built", "--json"] + common).stdout.utf8)).image
            let last = try #require(shells.versions.last?.id)
            let edits = try await Self.ctl(["image", "diff", "built", after.versions[1].id, last] + common)
            #expect(edits.stdout.contains("+ etc/shell-test"), "\(edits.stdout)")
            #expect(!edits.stdout.contains("shell-never"))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }
}

/// What `image show --json` prints: the registry record (and the version's kernels, not read here).
private struct ImageShown: Decodable {
    var image: ImageRecord
}
