import Foundation
import ProvisionerAPI
import ProvisionerImage
import Testing

@testable import ProvisionerServer

/// `provisioner-agent capture` against a live server over mutual TLS, as an admin runs it on a
/// node (here with `--root` on a tree that stands for one): only what the server lacks travels, a
/// node certificate cannot publish, node-owned paths stay out.
@Suite(.serialized) struct CaptureCommandTests {
    struct Report: Decodable {
        var entries: Int
        var manifestBytes: Int
        var objects: Int?
        var sentObjects: Int?
        var sentBytes: UInt64?
        var requestBytes: UInt64?
        var move: BranchMove?
        var nodeOwnedFrom: String
        var deltaFrom: String?
    }

    static var agent: String { CtlTests.built("provisioner-agent") }

    @Test func captureSendsOnlyWhatTheServerLacksAndLeavesNodeOwnedPathsOut() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.agent), "\(Self.agent) missing")
        let dir = try TempDir()
        defer { dir.remove() }
        let tls = dir.path + "/tls"
        #expect(try await CtlTests.ctl(["ca", "init", "--dir", tls, "--name", "localhost", "--ip", "127.0.0.1"]).status == 0)
        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let url = "https://127.0.0.1:\(server.apiPort)"
            let root = dir.path + "/node"
            // A node's root: system files, 3 MB of content, and what the node owns.
            try dir.write("node/etc/os-release", Array("ID=debian\n".utf8))
            try dir.write("node/etc/motd", Array("welcome\n".utf8))
            try dir.write("node/usr/lib/big", (0..<3_000_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) })
            try dir.write("node/etc/machine-id", Array("0123456789abcdef0123456789abcdef\n".utf8))
            try dir.write("node/etc/hostname", Array("n1\n".utf8))
            try dir.write("node/etc/ssh/ssh_host_ed25519_key", Array("secret\n".utf8))
            try dir.write("node/etc/ssh/sshd_config", Array("Port 22\n".utf8))
            try dir.write("node/var/log/syslog", Array("log\n".utf8))
            try dir.write("node/.provisioner-state/applied", Array("image debian\nversion 00\n".utf8))
            try dir.write("node/.provisioner-state/node-owned", Array("etc/machine-id\nvar/log\netc/hostname\n".utf8))
            let admin = ["--server", url, "--tls-dir", tls, "--root", root, "--json"]

            // A node's certificate is refused: publishing is an admin action. Nothing is visible.
            let asNode = try await CtlTests.tool(
                Self.agent,
                ["capture", "captured", "--server", url, "--root", root, "--ca", tls + "/ca.pem", "--cert",
                 tls + "/client.pem", "--key", tls + "/client-key.pem"])
            #expect(asNode.status == 1)
            #expect(asNode.stderr.contains("HTTP 403"), "\(asNode.stderr)")
            let none = try await CtlTests.ctl(["image", "list", "--server", url, "--tls-dir", tls])
            #expect(!none.stdout.contains("captured"), "\(none.stdout)")

            // Bad flags are refused before anything is read, naming the flag.
            let badMount = try await CtlTests.tool(Self.agent, ["capture", "captured", "--include-mount", root + "/usr"] + admin)
            #expect(badMount.status == 2)
            #expect(badMount.stderr.contains("--include-mount: \(root)/usr is not a mount point below \(root)"), "\(badMount.stderr)")
            let noCert = try await CtlTests.tool(Self.agent, ["capture", "captured", "--server", url, "--root", root])
            #expect(noCert.status != 0)
            #expect(noCert.stderr.contains("--tls-dir"), "\(noCert.stderr)")

            let first = try await CtlTests.tool(Self.agent, ["capture", "captured"] + admin, timeout: 120)
            #expect(first.status == 0, "\(first.stderr)")
            let one = try JSONDecoder().decode(Report.self, from: Data(first.stdout.utf8))
            #expect(one.nodeOwnedFrom.contains("3 recorded by the last boot"))
            #expect(one.sentObjects == one.objects)
            #expect(one.deltaFrom == nil)  // the node's `applied` names no version: the whole manifest
            #expect(one.requestBytes == UInt64(one.manifestBytes) + 4 + UInt64(one.sentObjects ?? 0) * 37 + (one.sentBytes ?? 0) + 1)
            #expect(one.move?.previous == nil)
            #expect(one.move?.branch == "main")

            // The version the server holds: node-owned paths out, their directories kept empty.
            let store = ImageStore(root: dir.path + "/images")
            let version = try #require(one.move.flatMap { ObjectHash(hex: $0.version) })
            let manifest = try ManifestCodec.decode(try #require(try store.manifestBytes(image: "captured", version: version)))
            let paths = manifest.entries.map(\.pathString)
            #expect(paths == ["", "etc", "etc/motd", "etc/os-release", "etc/ssh", "etc/ssh/sshd_config", "usr", "usr/lib",
                              "usr/lib/big", "var", "var/log"])

            // A small change: only its object travels, and the manifest as a delta from the last capture.
            try dir.write("node/etc/motd", Array("welcome to the captured image\n".utf8))
            let second = try await CtlTests.tool(Self.agent, ["capture", "captured"] + admin, timeout: 120)
            #expect(second.status == 0, "\(second.stderr)")
            let two = try JSONDecoder().decode(Report.self, from: Data(second.stdout.utf8))
            #expect(two.sentObjects == 1)
            #expect((two.sentBytes ?? .max) < 100)
            #expect(two.deltaFrom?.hasPrefix("the last capture, captured@") == true, "\(two.deltaFrom ?? "none")")
            #expect(two.deltaFrom?.hasSuffix("(B1)") == true)
            let packBytes = UInt64(4 + 1 + 32 + 4 + 1) + (two.sentBytes ?? 0)
            #expect((two.requestBytes ?? .max) < packBytes + UInt64(two.manifestBytes) / 4, "\(two.requestBytes ?? 0)")
            #expect(two.move?.summary.changed == 1)
            #expect(two.move?.previous == one.move?.version)
            print(
                "capture measured: first \(one.entries) entries, \(one.sentObjects ?? 0) objects, \(one.sentBytes ?? 0) bytes of objects, "
                    + "\(one.requestBytes ?? 0) bytes of requests; after a one-file change: \(two.sentObjects ?? 0) object, "
                    + "\(two.sentBytes ?? 0) bytes of objects, \(two.requestBytes ?? 0) bytes of requests (manifest \(two.manifestBytes), sent as a delta)")

            // The same tree again: nothing to send, the branch already names it.
            let third = try await CtlTests.tool(Self.agent, ["capture", "captured"] + admin, timeout: 120)
            let three = try JSONDecoder().decode(Report.self, from: Data(third.stdout.utf8))
            #expect(three.sentObjects == 0)
            #expect(three.move?.version == two.move?.version)

            // A kept manifest whose version the server does not have (collected): 404, the whole manifest.
            let stranger = ManifestCodec.encode(Manifest(entries: [Entry("", .directory)]))
            try dir.write("node/.provisioner-state/captured-manifest", Zstd.compress(stranger))
            try dir.write(
                "node/.provisioner-state/captured",
                Array(KeptManifest.record(image: "captured", version: ObjectHash.of(stranger)).utf8))
            try dir.write("node/etc/motd", Array("welcome back\n".utf8))
            let fourth = try await CtlTests.tool(Self.agent, ["capture", "captured"] + admin, timeout: 120)
            #expect(fourth.status == 0, "\(fourth.stderr)")
            let four = try JSONDecoder().decode(Report.self, from: Data(fourth.stdout.utf8))
            #expect(four.deltaFrom == nil)
            #expect(fourth.stderr.contains("the whole manifest went"), "\(fourth.stderr)")
            #expect((four.requestBytes ?? 0) > UInt64(four.manifestBytes))
            #expect(four.move?.summary.changed == 1)

            let audit = try await CtlTests.ctl(["audit", "--server", url, "--tls-dir", tls])
            #expect(audit.stdout.contains("image.publish"), "\(audit.stdout)")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }
}
