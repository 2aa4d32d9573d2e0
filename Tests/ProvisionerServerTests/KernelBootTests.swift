import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ProvisionerAPI
import ProvisionerImage
import Testing

@testable import ProvisionerServer

/// The image's own kernel (docs/boot.md): a published version's kernel gets its boot files made once,
/// with real modules of this machine's kernel run through the real `depmod` and `modinfo`, and nodes
/// boot it through iPXE and the session.
@Suite(.serialized) struct KernelBootTests {
    static let release = "9.9.9-provisioner-test"

    /// Four real modules of this machine's kernel: raid1 needs md-mod (both go in), tg3 (a NIC) asks
    /// for firmware, isofs is nothing a provisioning initramfs needs (stays out).
    static func hostModules() throws -> [(relative: String, content: [UInt8])] {
        let kver = try #require(
            (try? FileManager.default.contentsOfDirectory(atPath: "/lib/modules"))?.sorted().last,
            "this test needs a kernel's modules in /lib/modules (make test installs linux-image-amd64)")
        var out: [(String, [UInt8])] = []
        for relative in [
            "kernel/drivers/md/raid1.ko", "kernel/drivers/md/md-mod.ko", "kernel/fs/isofs/isofs.ko",
            "kernel/drivers/net/ethernet/broadcom/tg3.ko",
        ] {
            let found = ["", ".xz", ".zst"].lazy.compactMap {
                FileManager.default.contents(atPath: "/lib/modules/\(kver)/\(relative)\($0)").map { ($0, $0) }
            }.first
            let data = try #require(found, "/lib/modules/\(kver)/\(relative) is missing").0
            let suffix = ["", ".xz", ".zst"].first { FileManager.default.fileExists(atPath: "/lib/modules/\(kver)/\(relative)\($0)") }!
            out.append((relative + suffix, Array(data)))
        }
        return out
    }

    /// A merged-/usr root with a kernel, its modules and a motd (which the second version changes).
    static func image(motd: String, kernelBytes: [UInt8]) throws -> (manifest: [UInt8], objects: [(ObjectHash, [UInt8])]) {
        var entries: [Entry] = []
        var objects: [(ObjectHash, [UInt8])] = []
        func dir(_ path: String) {
            var e = Entry(path, .directory)
            e.mode = 0o755
            entries.append(e)
        }
        func file(_ path: String, _ content: [UInt8]) {
            var e = Entry(path, .file)
            e.mode = 0o644
            e.size = UInt64(content.count)
            if !content.isEmpty {
                e.chunks = [Chunk(length: UInt32(content.count), hash: .of(content))]
                objects.append((.of(content), content))
            }
            entries.append(e)
        }
        let modules = try hostModules()
        let m = "usr/lib/modules/\(release)"
        for d in [
            "", "boot", "etc", "usr", "usr/lib", "usr/lib/firmware", "usr/lib/firmware/tigon", "usr/lib/modules", m,
            m + "/kernel", m + "/kernel/drivers", m + "/kernel/drivers/md", m + "/kernel/drivers/net",
            m + "/kernel/drivers/net/ethernet", m + "/kernel/drivers/net/ethernet/broadcom", m + "/kernel/fs",
            m + "/kernel/fs/isofs",
        ] {
            dir(d)
        }
        // One of the files tg3 asks for; the others are not in the image, and that is not an error.
        file("usr/lib/firmware/tigon/tg3_tso5.bin", Array("firmware".utf8))
        var link = Entry("lib", .symlink)
        link.target = Array("usr/lib".utf8)
        entries.append(link)
        file("boot/vmlinuz-\(release)", kernelBytes)
        file("etc/motd", Array(motd.utf8))
        for (relative, content) in modules { file(m + "/" + relative, content) }
        let names = modules.map(\.relative)
        file(m + "/modules.dep", Array("\(names[0]): \(names[1])\n\(names[1]):\n\(names[2]):\n\(names[3]):\n".utf8))
        file(m + "/modules.order", Array(names.joined(separator: "\n").utf8))
        file(m + "/modules.builtin", [])
        entries.sort { pathLess($0.path, $1.path) }
        return (ManifestCodec.encode(Manifest(entries: entries)), objects)
    }

    static func publish(_ client: some TestClientProtocol, motd: String, kernel: [UInt8]) async throws -> String {
        let (manifest, objects) = try image(motd: motd, kernelBytes: kernel)
        let status = try decode(
            UploadStatus.self,
            try await client.execute(
                uri: "/api/v1/admin/images/debian/uploads", method: .post, headers: ImagePublishTests.manifestHeaders,
                body: ByteBuffer(bytes: manifest)))
        _ = try await client.execute(
            uri: "/api/v1/admin/objects", method: .post, headers: ImagePublishTests.packHeaders,
            body: ImagePublishTests.pack(objects))
        let commit = try await client.execute(
            uri: "/api/v1/admin/images/debian/uploads/\(status.upload)/commit", method: .post)
        #expect(commit.status == .ok)
        return try decode(BranchMove.self, commit).version
    }

    /// `zcat | cpio -t` of a modules initramfs.
    static func listing(_ path: String) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "zcat '\(path)' | cpio -t --quiet"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test func aVersionsKernelIsDerivedOnceAndBootedThroughIPXEAndTheSession() async throws {
        try await withServices { services, dir in
            let kernel = Array("not really a kernel, but its bytes are served as they are".utf8)
            let derived = services.config.filesDirectory + "/derived"
            try await app(services).test(.router) { client in
                let v1 = try await Self.publish(client, motd: "one\n", kernel: kernel)
                // Made at the commit: the kernel as it is, and a modules initramfs.
                let made = try FileManager.default.contentsOfDirectory(atPath: derived).sorted()
                #expect(made.count == 2)
                let info = try decode(
                    VersionKernels.self,
                    try await client.execute(uri: "/api/v1/admin/images/debian/kernels", method: .get))
                #expect(info.version == v1)
                let k = try #require(info.kernels.first)
                #expect(info.kernels.count == 1)
                #expect(k.release == Self.release)
                #expect(k.kernelPath == "boot/vmlinuz-\(Self.release)")
                #expect(k.modulesPath == "usr/lib/modules/\(Self.release)")
                #expect(k.moduleCount == 4)
                #expect(k.kernelFile == ObjectHash.of(kernel).hex)
                #expect(k.initrdModules == 3)
                #expect(k.initrdFirmware == 1)
                #expect(k.problem == nil)
                let list = try Self.listing(derived + "/" + (k.modulesFile ?? "?"))
                let m = "lib/modules/\(Self.release)"
                #expect(list.contains { $0.hasPrefix(m + "/kernel/drivers/md/raid1.ko") })
                #expect(list.contains { $0.hasPrefix(m + "/kernel/drivers/md/md-mod.ko") })
                #expect(!list.contains { $0.contains("isofs") })
                #expect(list.contains { $0.hasPrefix(m + "/kernel/drivers/net/ethernet/broadcom/tg3.ko") })
                #expect(list.contains("lib/firmware/tigon/tg3_tso5.bin"))
                #expect(list.contains(m + "/modules.dep"))
                #expect(list.contains(m + "/modules.alias"))
                // No entry for lib itself: it is a link to usr/lib in the base initramfs.
                #expect(!list.contains("lib"))
                #expect(list.first == "lib/firmware")

                // The version lists its kernel; a second version that only changes /etc/motd reuses the files.
                let record = try decode(ImageRecord.self, try await client.execute(uri: "/api/v1/admin/images/debian", method: .get))
                #expect(record.versions.map(\.kernels) == [[Self.release]])
                let cache = services.config.stateDir + "/boot-cache"
                let before = try FileManager.default.contentsOfDirectory(atPath: cache)
                _ = try await Self.publish(client, motd: "two\n", kernel: kernel)
                #expect(try FileManager.default.contentsOfDirectory(atPath: derived).sorted() == made)
                #expect(try FileManager.default.contentsOfDirectory(atPath: cache) == before)

                // A node of the image; pinning a kernel the image lacks is refused at once.
                var node = NodeConfig(name: "n1", macs: ["52:54:00:00:00:21"], image: ImageRef(name: "debian"))
                node.kernelRelease = "1.2.3-nope"
                expectJSONError(
                    try await client.execute(
                        uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(node)),
                    422, code: "unknown-kernel")
                node.kernelRelease = nil
                _ = try await client.execute(uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(node))

                // Without files/initramfs/base the node boots the server's kernel, and says why.
                let fallback = try decode(NodeBoot.self, try await client.execute(uri: "/api/v1/admin/nodes/n1/boot", method: .get))
                #expect(fallback.boot?.source == .serverDefault)
                #expect(fallback.boot?.warning?.contains("files/initramfs/base") == true)
            }
            try dir.write("files/initramfs/base", Array("base".utf8))
            try await app(services).test(.router) { client in
                let boot = try decode(NodeBoot.self, try await client.execute(uri: "/api/v1/admin/nodes/n1/boot", method: .get))
                #expect(boot.boot?.source == .image)
                #expect(boot.boot?.release == Self.release)
                #expect(boot.boot?.kernel == .derived(ObjectHash.of(kernel).hex))
            }
            let modulesFile = try decode(
                NodeBoot.self,
                try await app(services).test(.router) { try await $0.execute(uri: "/api/v1/admin/nodes/n1/boot", method: .get) }
            ).boot?.initrds.last?.name ?? "?"
            // What iPXE is told, and what it then fetches from the plain-HTTP listener.
            try await Application(router: buildBootRouter(services)).test(.router) { client in
                let script = String(buffer: try await client.execute(uri: "/boot/ipxe?mac=52:54:00:00:00:21", method: .get).body)
                #expect(script.contains("/boot/derived/\(ObjectHash.of(kernel).hex) initrd=initramfs initrd=modules root=provisioner"))
                #expect(script.contains("initrd --name initramfs http://localhost/boot/initramfs/base\n"))
                #expect(script.contains("initrd --name modules http://localhost/boot/derived/\(modulesFile)\n"))
                #expect(script.contains("kernel \(Self.release): the kernel of debian@"))
                let served = try await client.execute(uri: "/boot/derived/\(ObjectHash.of(kernel).hex)", method: .get)
                #expect(Array(served.body.readableBytesView) == kernel)
            }
            // The agent's session says the same, for the ESP.
            try await app(services, as: nodePeer).test(.router) { client in
                let response = try decode(
                    SessionResponse.self,
                    try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:21"]))))
                #expect(response.boot?.release == Self.release)
                #expect(response.boot?.initrds.map(\.apiPath) == ["/files/initramfs/base", "/files/derived/\(modulesFile)"])
                #expect(response.bootProblem == nil)
            }
        }
    }

    @Test func gcRemovesTheBootFilesOfKernelsNoVersionCarries() async throws {
        try await withServices { services, _ in
            let derived = services.config.filesDirectory + "/derived"
            try await app(services).test(.router) { client in
                let v1 = try await Self.publish(client, motd: "one\n", kernel: Array("kernel one".utf8))
                let v2 = try await Self.publish(client, motd: "two\n", kernel: Array("kernel two".utf8))
                // Two kernels, one modules initramfs: their modules are the same, and the archive is
                // made the same way every time (no timestamps), so both name one file.
                #expect(try FileManager.default.contentsOfDirectory(atPath: derived).count == 3)
                // A version without a kernel becomes the head; the two with kernels are deleted.
                _ = try await ImagePublishTests.publish(client, "three\n")
                for version in [v1, v2] {
                    let deleted = try await client.execute(uri: "/api/v1/admin/images/debian/versions/\(version)", method: .delete)
                    #expect(deleted.status == .ok)
                }
                let kept = try decode(
                    StoreMaintenance.GCReport.self, try await client.execute(uri: "/api/v1/admin/images/gc", method: .post))
                #expect(kept.bootFilesRemoved == 0)  // younger than the default hour of grace
                let report = try decode(
                    StoreMaintenance.GCReport.self,
                    try await client.execute(uri: "/api/v1/admin/images/gc?grace=0", method: .post))
                #expect(report.bootFilesRemoved == 3)
                #expect(try FileManager.default.contentsOfDirectory(atPath: derived).isEmpty)
            }
        }
    }

    @Test func anImageWithoutAKernelBootsTheServersWithAWarningInTheSession() async throws {
        try await withServices { services, dir in
            try dir.write("files/initramfs/base", Array("base".utf8))
            try await app(services).test(.router) { client in
                _ = try await ImagePublishTests.publish(client, "n1\n")
                let node = NodeConfig(name: "n2", macs: ["52:54:00:00:00:22"], image: ImageRef(name: "debian"))
                _ = try await client.execute(uri: "/api/v1/admin/nodes", method: .post, headers: jsonHeaders, body: try jsonBody(node))
            }
            let sessionID = try await app(services, as: peer(node: "n2")).test(.router) { client in
                let response = try decode(
                    SessionResponse.self,
                    try await client.execute(
                        uri: "/api/v1/sessions", method: .post, headers: jsonHeaders,
                        body: try jsonBody(SessionOpenRequest(macs: ["52:54:00:00:00:22"]))))
                #expect(response.boot?.source == .serverDefault)
                #expect(response.boot?.kernel == .kernel("default"))
                return response.sessionID
            }
            let detail = try await app(services).test(.router) { client in
                try decode(SessionDetail.self, try await client.execute(uri: "/api/v1/admin/sessions/\(sessionID)", method: .get))
            }
            #expect(detail.events.contains { $0.event.level == .warning && $0.event.message.contains("carries no kernel") })
        }
    }
}
