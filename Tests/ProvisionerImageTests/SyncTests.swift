import Foundation
import ProvisionerImage
import ProvisionerSystem
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// End-to-end: import real trees into a store, sync them into real directories, and compare a
/// canonical digest of source and target. Runs as root (owners, devices, security.* xattrs).
@Suite(.serialized) struct SyncTests {
    @Test func hardCasesConvergeThroughUpdates() throws {
        let root = try scratch("hard")
        defer { try? sh("rm -rf '\(root)'") }
        let src = "\(root)/src"
        let dst = "\(root)/dst"
        let store = "\(root)/store"
        try sh("mkdir -p '\(src)'")
        try makeHardTree(src)
        try importTree(src, store: store)
        let first = try sync(store, to: dst)
        #expect(!first.upToDate && first.filesWritten > 0)
        try expectSameTree(src, dst)
        // Sparse regions stay holes.
        let blocks = try sh("stat -c %b '\(dst)/var/sparse'").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(Int(blocks)! < 64, "5 MiB sparse file uses \(blocks) blocks")

        // Nothing changed: nothing written, at every level.
        for level in VerifyLevel.allCases {
            let again = try sync(store, to: dst) { $0.verify = level }
            #expect(again.upToDate, "\(level)")
            #expect(again.bytesWritten == 0)
        }

        // A node-side change to xattrs, mode and content only: found at the metadata level
        // (the ctime moves, so the xattrs are read again) and undone.
        try sh("setfattr -n user.evil -v 1 '\(dst)/usr/lib/big.bin' && setfattr -x user.color '\(dst)/etc/passwd'")
        try sh("chmod 600 '\(dst)/usr/bin/tool' && echo tampered >> '\(dst)/etc/machine-id'")
        let repaired = try sync(store, to: dst)
        #expect(!repaired.upToDate && repaired.metadataFixed >= 2 && repaired.filesWritten >= 1, "\(repaired)")
        try expectSameTree(src, dst)

        // Every kind of change, including type changes and a read-only directory.
        try changeHardTree(src)
        try importTree(src, store: store)
        let second = try sync(store, to: dst)
        #expect(!second.upToDate)
        #expect(second.chunksReused > 0, "the big file's unchanged chunks come from the node")
        try expectSameTree(src, dst)
        // Moved content (moved.bin is a copy of the 300 kB random big.bin) came from the node, not the store.
        #expect(second.bytesReceived < 150_000, "\(second)")
        // 7 bytes changed inside big.bin: its changed chunk came as a delta from the old one.
        try sh("head -c 7 /dev/urandom | dd of='\(src)/usr/lib/big.bin' bs=1 seek=90000 conv=notrunc status=none")
        try importTree(src, store: store)
        let third = try sync(store, to: dst)
        #expect(third.filesWritten >= 1 && third.chunksFetched >= 1)
        #expect(third.bytesReceived < 20_000, "a delta, not the 64 kB chunk: \(third)")
        try expectSameTree(src, dst)
    }

    @Test func preservedPathsAreKept() throws {
        let root = try scratch("preserve")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh("mkdir -p '\(src)'")
        try makeHardTree(src)
        try importTree(src, store: store)
        _ = try sync(store, to: dst)
        try sh(
            "echo node-b > '\(dst)/etc/machine-id' && mkdir -p '\(dst)/var/log' && echo mine > '\(dst)/var/log/node.log'"
        )
        try sh("echo image-new > '\(src)/etc/machine-id'")
        try importTree(src, store: store)
        _ = try sync(store, to: dst) { $0.preserved = [Array("etc/machine-id".utf8), Array("var/log".utf8)] }
        #expect(try sh("cat '\(dst)/etc/machine-id'") == "node-b\n")
        #expect(try sh("cat '\(dst)/var/log/node.log'") == "mine\n")
        try expectSameTree(src, dst, excluding: ["etc/machine-id", "var/log"])
    }

    @Test func mountPointsTheImageLacksAreLeftAlone() throws {
        let root = try scratch("mounts")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh("mkdir -p '\(src)'")
        try makeHardTree(src)
        try sh("mkdir -p '\(src)/var/lib' && echo image > '\(src)/var/lib/state'")
        try importTree(src, store: store)
        // The node's layout mounts /scratch (a data volume) and /var (which the image fills).
        try sh(
            "mkdir -p '\(dst)/scratch/job' '\(dst)/var' && echo results > '\(dst)/scratch/job/out' "
                + "&& echo stale > '\(dst)/var/stale'")
        let mounts = [Array("scratch".utf8), Array("var".utf8)]
        _ = try sync(store, to: dst) { $0.mountPoints = mounts }
        #expect(try sh("cat '\(dst)/scratch/job/out'") == "results\n")
        #expect(try sh("cat '\(dst)/var/lib/state'") == "image\n")
        #expect(try sh("test -e '\(dst)/var/stale' && echo kept || echo gone") == "gone\n")
        try expectSameTree(src, dst, excluding: ["scratch"])
        let again = try sync(store, to: dst) { $0.mountPoints = mounts }
        #expect(again.upToDate)
        // The running node makes a file it owns in /etc: the directory's new mtime is no change.
        try sh("echo x > '\(dst)/etc/.updated'")
        let stamped = try sync(store, to: dst) {
            $0.mountPoints = mounts
            $0.preserved = [Array("etc/.updated".utf8)]
        }
        #expect(stamped.upToDate, "\(stamped)")
    }

    @Test func neverFollowsSymlinksOutOfTheTarget() throws {
        let root = try scratch("escape")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store, outside) = ("\(root)/src", "\(root)/dst", "\(root)/store", "\(root)/outside")
        try sh(
            "mkdir -p '\(src)/etc' '\(dst)' '\(outside)' && echo image > '\(src)/etc/passwd' && echo victim > '\(outside)/passwd'"
        )
        try importTree(src, store: store)
        // The node has etc -> outside: the sync must replace the link, not write through it.
        try sh("ln -s '\(outside)' '\(dst)/etc'")
        _ = try sync(store, to: dst)
        #expect(try sh("cat '\(outside)/passwd'") == "victim\n")
        try expectSameTree(src, dst)
    }

    @Test func injectedInterruptionsAtEveryStepConverge() throws {
        let root = try scratch("interrupt")
        defer { try? sh("rm -rf '\(root)'") }
        let (a, b, store) = ("\(root)/a", "\(root)/b", "\(root)/store")
        try sh("mkdir -p '\(a)'")
        try makeHardTree(a)
        try sh("cp -a '\(a)' '\(b)'")
        try changeHardTree(b)
        let va = try importTree(a, store: store, image: "a")
        let vb = try importTree(b, store: store, image: "b")
        _ = (va, vb)
        var step = 0
        var interruptedOnce = false
        while true {
            let dst = "\(root)/dst-\(step)"
            _ = try sync(store, to: dst, image: "a")
            do {
                _ = try sync(store, to: dst, image: "b") {
                    $0.interruptAfter = step; $0.threads = 1
                }
                break  // got through: every earlier step was interrupted once
            } catch is SyncInterrupted {
                interruptedOnce = true
            }
            let recovered = try sync(store, to: dst, image: "b")
            #expect(recovered.recovered, "an interrupted sync makes the next one rehash")
            try expectSameTree(b, dst)
            try sh("rm -rf '\(dst)'")
            step += 1
        }
        #expect(interruptedOnce && step > 10)
    }

    /// Long holes are hole chunks: never read, hashed, stored, sent or written, on import or sync.
    @Test func sparseFilesMoveOnlyTheirData() throws {
        let root = try scratch("sparse")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh(
            """
            mkdir -p '\(src)' && cd '\(src)'
            truncate -s 1126M huge && printf head | dd of=huge conv=notrunc status=none
            printf middle | dd of=huge bs=1M seek=1088 conv=notrunc status=none && printf tail >> huge
            truncate -s 20M leading-hole && head -c 100000 /dev/urandom >> leading-hole
            truncate -s 5M only-hole
            head -c 70000 /dev/urandom > short-hole && truncate -s 200000 short-hole
            head -c 5000 /dev/urandom >> short-hole
            """)
        let version = try importTree(src, store: store)
        let manifest = try ManifestCodec.decode(
            try #require(try ImageStore(root: store).manifestBytes(image: "img", version: version)))
        func chunks(_ name: String) -> [Chunk] { manifest.entries.first { $0.pathString == name }?.chunks ?? [] }
        // 1.1 GiB: data, two holes (at most 1 GiB each) up to the middle, data, a hole, data.
        let huge = chunks("huge")
        #expect(huge.map(\.isHole) == [false, true, true, false, true, false], "\(huge)")
        #expect(huge.allSatisfy { !$0.isHole || $0.length <= Chunk.maxHole })
        #expect(chunks("leading-hole").first?.isHole == true)
        #expect(chunks("only-hole") == [.hole(length: 5 << 20)])
        #expect(!chunks("short-hole").contains { $0.isHole }, "a hole under 1 MiB is read as zeros")

        let first = try sync(store, to: dst)
        #expect(first.bytesWritten < 1 << 20, "\(first)")
        try expectSameTree(src, dst)
        let blocks = try sh("stat -c %b '\(dst)/huge' '\(dst)/only-hole'").split(separator: "\n").map { Int($0)! }
        #expect(blocks[0] < 1024 && blocks[1] == 0, "allocated 512-byte blocks: \(blocks)")

        // The data in the middle changes: the new chunk comes, the holes stay holes.
        try sh("printf MIDDLE | dd of='\(src)/huge' bs=1M seek=1088 conv=notrunc status=none")
        try importTree(src, store: store)
        let second = try sync(store, to: dst)
        #expect(second.filesWritten == 1 && second.bytesReceived < 100_000, "\(second)")
        try expectSameTree(src, dst)

        // After an interruption every file is rehashed: holes are checked by SEEK_DATA, not read;
        // data written into a hole on the node is found and undone.
        try sh("printf x | dd of='\(dst)/only-hole' bs=1 seek=3000000 conv=notrunc status=none")
        try sh("touch -r '\(src)/only-hole' '\(dst)/only-hole'")
        try sh("printf 'image img\\nversion x\\n' > '\(dst)/.provisioner-state/in-progress'")
        let recovered = try sync(store, to: dst)
        #expect(recovered.recovered && recovered.contentMismatches == 1, "\(recovered)")
        try expectSameTree(src, dst)
    }

    @Test func killedAgentConverges() throws {
        let agent = try builtBinary("provisioner-agent")
        let root = try scratch("kill")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, store) = ("\(root)/src", "\(root)/store")
        try sh("mkdir -p '\(src)' && for i in $(seq 1 300); do head -c $((i * 997)) /dev/urandom > '\(src)'/f$i; done")
        try makeHardTree(src)
        try importTree(src, store: store)
        for (n, delayMicroseconds) in [0, 2_000, 5_000, 10_000, 20_000, 40_000, 80_000].enumerated() {
            let dst = "\(root)/dst-\(n)"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: agent)
            p.arguments = ["sync", "--source", store, "--image", "img", "--to", dst]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t(delayMicroseconds))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            _ = try sync(store, to: dst)
            try expectSameTree(src, dst)
        }
    }

    /// A source that damages the first object it passes on, as a bad network or disk would.
    final class DamagingSource: ObjectSource, @unchecked Sendable {
        let inner: LocalStoreSource
        var damaged = false
        init(_ inner: LocalStoreSource) { self.inner = inner }
        var label: String { "damaging(\(inner.label))" }
        var bytesReceived: Int { inner.bytesReceived }
        func resolve(image: String, version: String) throws -> ObjectHash {
            try inner.resolve(image: image, version: version)
        }
        func manifest(image: String, version: ObjectHash, previous: (id: ObjectHash, bytes: [UInt8])?) throws -> [UInt8]
        {
            try inner.manifest(image: image, version: version, previous: previous)
        }
        func objects(_ hashes: [ObjectHash]) throws -> any ObjectStream {
            Stream(inner: try inner.objects(hashes), owner: self)
        }
        struct Stream: ObjectStream {
            var inner: any ObjectStream
            let owner: DamagingSource
            mutating func next() throws -> FetchedObject? {
                guard var o = try inner.next() else { return nil }
                if !owner.damaged && o.stored.count > 20 {
                    owner.damaged = true
                    o.stored[o.stored.count - 5] ^= 0xff
                }
                return o
            }
        }
    }

    @Test func damagedObjectInTransitIsRefusedAndFetchedAgain() throws {
        let root = try scratch("transit")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh("mkdir -p '\(src)' && head -c 100000 /dev/urandom > '\(src)/data'")
        try importTree(src, store: store)
        let source = DamagingSource(LocalStoreSource(path: store))
        var options = SyncOptions()
        options.threads = 1
        let report = try SyncEngine(target: dst, source: source, options: options).run(image: "img")
        #expect(source.damaged)
        #expect(report.objectsRefetched >= 1)
        try expectSameTree(src, dst)
    }

    @Test func damagedObjectInStoreFailsOverToAMirror() throws {
        let root = try scratch("mirror")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, good, bad) = ("\(root)/src", "\(root)/dst", "\(root)/good", "\(root)/bad")
        try sh("mkdir -p '\(src)' && head -c 100000 /dev/urandom > '\(src)/data'")
        try importTree(src, store: good)
        try sh("cp -a '\(good)' '\(bad)'")
        // Replace every object in the bad mirror with a valid zstd frame of the wrong bytes.
        try sh("for f in $(find '\(bad)/objects' -type f); do head -c 100000 /dev/zero | zstd -q -c > \"$f\"; done")
        // Only the bad store: a clear error, nothing half-written.
        #expect {
            _ = try SyncEngine(target: dst, source: LocalStoreSource(path: bad)).run(image: "img")
        } throws: { "\($0)".contains("damaged") }
        #expect(try sh("ls -A '\(dst)' | grep -v provisioner-state || true") == "")
        // The bad mirror first, then the good one: converges.
        let mirrors = MirrorSource([LocalStoreSource(path: bad), LocalStoreSource(path: good)], start: 0)
        let report = try SyncEngine(target: dst, source: mirrors).run(image: "img")
        #expect(report.objectsRefetched >= 1)
        try expectSameTree(src, dst)
    }

    @Test func unreachableSourceAndTruncatedManifestChangeNothing() throws {
        let root = try scratch("unreachable")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh("mkdir -p '\(src)' && echo a > '\(src)/a'")
        _ = try importTree(src, store: store)
        _ = try sync(store, to: dst)
        let before = try treeDigest(dst, excluding: [])
        #expect { _ = try sync("\(root)/no-such-store", to: dst) } throws: { "\($0)".contains("does not exist") }
        // A manifest cut short: refused before anything is touched, saying what is wrong with what.
        try sh("echo x >> '\(src)/a'")
        let id2 = try importTree(src, store: store)
        let path2 = ImageStore(root: store).manifestPath(image: "img", version: id2)
        try sh("head -c 20 '\(path2)' > '\(path2).cut' && mv '\(path2).cut' '\(path2)'")
        #expect { _ = try sync(store, to: dst) } throws: {
            "\($0)".contains("manifest img@\(id2.hex)") && "\($0)".contains("damaged or cut short")
        }
        #expect(try treeDigest(dst, excluding: []) == before)
    }

    @Test func tarballImportMatchesTheTree() throws {
        let ctl = try builtBinary("provisionerctl")
        let root = try scratch("tar")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        try sh(
            """
            mkdir -p '\(src)/etc/sub' && cd '\(src)' && echo hi > etc/a && ln etc/a etc/sub/b && ln -s ../a etc/sub/l
            mkfifo etc/p && mknod etc/n c 1 3 && setfattr -n user.k -v v etc/a && chown 5:6 etc/sub
            touch -d '2020-01-01 00:00:00.5' etc/a
            tar --format=posix --xattrs --xattrs-include='*' --numeric-owner -C '\(src)' -cpf '\(root)/root.tar' .
            '\(ctl)' image import tarred --from '\(root)/root.tar' --store '\(store)' >/dev/null
            '\(ctl)' image list --store '\(store)' | grep -q tarred
            """)
        _ = try sync(store, to: dst, image: "tarred")
        try expectSameTree(src, dst)
    }
}
