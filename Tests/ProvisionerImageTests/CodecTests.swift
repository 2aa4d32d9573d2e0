import ProvisionerImage
import Testing

@Suite struct ManifestCodecTests {
    static func sample() -> Manifest {
        var root = Entry("", .directory)
        root.mode = 0o755
        var etc = Entry("etc", .directory)
        etc.mode = 0o755
        etc.xattrs = [Xattr("system.posix_acl_access", [2, 0, 0, 0]), Xattr("user.x", [1])]
        var passwd = Entry("etc/passwd", .file)
        passwd.mode = 0o644
        passwd.uid = 0
        passwd.gid = 42
        passwd.mtimeSeconds = -5
        passwd.mtimeNanoseconds = 999_999_999
        passwd.size = 10
        passwd.chunks = [Chunk(length: 4, hash: .of([1])), Chunk(length: 6, hash: .of([2]))]
        var sparse = Entry("etc/sparse", .file)  // a hole may be longer than any chunk
        sparse.size = (1 << 30) + 10
        sparse.chunks = [.hole(length: 1 << 30), Chunk(length: 10, hash: .of([3]))]
        var link = Entry("etc/passwd-", .hardlink)
        link.linkIndex = 2
        var sym = Entry("etc/sym", .symlink)
        sym.mode = 0o777
        sym.target = Array("../../outside".utf8)
        var dev = Entry("etc/zdev", .blockDevice)
        dev.major = 259
        dev.minor = 1 << 20
        return Manifest(entries: [root, etc, passwd, link, sparse, sym, dev, Entry("etc/zfifo", .fifo)])
    }

    @Test func roundTrip() throws {
        let m = Self.sample()
        let bytes = ManifestCodec.encode(m)
        #expect(try ManifestCodec.decode(bytes) == m)
        #expect(ManifestCodec.versionID(of: bytes) == ObjectHash.of(bytes))
    }

    /// Builds a manifest from entries without checks, for the refusal table.
    static func raw(_ entries: [Entry]) -> [UInt8] { ManifestCodec.encode(Manifest(entries: entries)) }

    static func file(_ path: String, size: UInt64 = 1, chunks: [Chunk]? = nil) -> Entry {
        var e = Entry(path, .file)
        e.size = size
        e.chunks = chunks ?? [Chunk(length: UInt32(size), hash: .of([0]))]
        return e
    }

    static let root = Entry("", .directory)

    static let refusals: [(String, [UInt8])] = [
        ("\"..\" component escapes", raw([root, file("../etc/shadow")])),
        ("\"..\" component escapes", raw([root, Entry("a", .directory), file("a/../../x")])),
        ("absolute path", raw([root, file("/etc/shadow")])),
        ("empty path component", raw([root, Entry("a", .directory), file("a//b")])),
        ("\".\" component", raw([root, file("./x")])),
        ("its parent directory is not an earlier entry", raw([root, file("missing/x")])),
        ("its parent directory is not an earlier entry", raw([root, file("f"), file("f/x")])),
        ("strictly increasing", raw([root, file("b"), file("a")])),
        ("strictly increasing", raw([root, file("a"), file("a")])),
        ("the first entry must be the root", raw([file("a")])),
        ("reserved name", raw([root, file(".provisioner-state")])),
        ("chunks add up to", raw([root, file("a", size: 100, chunks: [Chunk(length: 5, hash: .of([0]))])])),
        ("more than the", raw([root, file("a", size: 1 << 50, chunks: [])])),
        ("chunk of", raw([root, file("a", size: 8 << 20, chunks: [Chunk(length: 8 << 20, hash: .of([0]))])])),
        ("hole of", raw([root, file("a", size: 2 << 30, chunks: [.hole(length: 2 << 30)])])),
        ("name of 300 bytes", raw([root, file(String(repeating: "x", count: 300))])),
        (
            "not an earlier entry",
            {
                var l = Entry("a", .hardlink)
                l.linkIndex = 5
                return raw([root, l])
            }()
        ),
        (
            "hardlink to directory",
            {
                var l = Entry("b", .hardlink)
                l.linkIndex = 1
                return raw([root, Entry("a", .directory), l])
            }()
        ),
        ("not a manifest", Array("hello world".utf8)),
        ("truncated", Array(raw([root, file("a")]).dropLast(3))),
        ("left over", raw([root, file("a")]) + [0]),
        ("declares", Array("PIMG".utf8) + [1, 0xC0, 0x84, 0x3D]),
        (
            "mode",
            {
                var e = file("a")
                e.mode = 0o170000
                return raw([root, e])
            }()
        ),
    ]

    @Test(arguments: refusals.indices)
    func refusesMalicious(_ i: Int) {
        let (reason, bytes) = Self.refusals[i]
        do {
            _ = try ManifestCodec.decode(bytes)
            Issue.record("accepted a manifest that should fail with \(reason)")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }

    @Test func pathRules() {
        #expect(PathRules.problem(Array("a/b/c".utf8)) == nil)
        #expect(PathRules.problem(Array("a/..".utf8)) != nil)
        #expect(PathRules.isWithin(Array("var/log/x".utf8), Array("var/log".utf8)))
        #expect(!PathRules.isWithin(Array("var/logs".utf8), Array("var/log".utf8)))
        #expect(PathRules.parent(Array("a/b/c".utf8)) == Array("a/b".utf8))
    }
}

@Suite struct ChunkerTests {
    static func data(_ n: Int, seed: UInt64) -> [UInt8] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: s >> 33)
        }
    }

    @Test func boundsAndDeterminism() {
        let d = Self.data(3 << 20, seed: 1)
        let lengths = d.withUnsafeBytes { Chunker.lengths($0) }
        #expect(lengths.reduce(0, +) == d.count)
        #expect(lengths.dropLast().allSatisfy { $0 >= Chunker.minSize && $0 <= Chunker.maxSize })
        #expect(lengths == d.withUnsafeBytes { Chunker.lengths($0) })
        let average = d.count / lengths.count
        #expect(average > Chunker.minSize && average < Chunker.maxSize)
    }

    @Test func aFewChangedBytesChangeOnlyNearbyChunks() {
        let a = Self.data(4 << 20, seed: 2)
        var b = a
        b.insert(contentsOf: [1, 2, 3, 4, 5], at: 2_000_000)
        func hashes(_ d: [UInt8]) -> Set<ObjectHash> {
            d.withUnsafeBytes { buf in
                var out = Set<ObjectHash>()
                var off = 0
                for n in Chunker.lengths(buf) {
                    out.insert(ObjectHash.of(UnsafeRawBufferPointer(rebasing: buf[off..<(off + n)])))
                    off += n
                }
                return out
            }
        }
        let changed = hashes(b).subtracting(hashes(a))
        #expect(changed.count >= 1 && changed.count <= 2)
    }

    @Test func smallInputIsOneChunk() {
        #expect([UInt8](repeating: 7, count: 100).withUnsafeBytes { Chunker.lengths($0) } == [100])
        #expect([UInt8]().withUnsafeBytes { Chunker.lengths($0) } == [])
    }
}

@Suite struct PackTests {
    @Test func roundTripFedByteByByte() throws {
        let a = ObjectHash.of([1])
        let b = ObjectHash.of([2])
        let stream =
            PackEncoder.header() + PackEncoder.object(a, stored: [9, 8, 7]) + PackEncoder.missing(b)
            + PackEncoder.object(b, stored: []) + PackEncoder.delta(a, base: b, payload: [1, 2]) + PackEncoder.end()
        var decoder = PackDecoder()
        var frames: [PackFrame] = []
        for byte in stream {
            decoder.feed([byte])
            while let f = try decoder.next() { frames.append(f) }
        }
        try decoder.finish()
        #expect(
            frames == [
                .object(a, stored: [9, 8, 7]), .missing(b), .object(b, stored: []),
                .delta(a, base: b, payload: [1, 2]), .end,
            ])
    }

    @Test func truncatedAndGarbageAreRefused() throws {
        var d = PackDecoder()
        d.feed(PackEncoder.header() + Array(PackEncoder.object(.of([1]), stored: [1, 2, 3]).dropLast()))
        #expect(try d.next() == nil)
        #expect(throws: PackError.self) { try d.finish() }
        var g = PackDecoder()
        g.feed(PackEncoder.header() + [0x58])
        #expect(throws: PackError.self) { _ = try g.next() }
        var huge = PackDecoder()
        huge.feed(PackEncoder.header() + [0x4F] + ObjectHash.of([1]).rawBytes + [0xff, 0xff, 0xff, 0xff])
        #expect(throws: PackError.self) { _ = try huge.next() }
    }

    @Test func manifestDeltaIsSmallAndExact() throws {
        var m = ManifestCodecTests.sample()
        let old = ManifestCodec.encode(m)
        m.entries[2].uid = 7
        let new = ManifestCodec.encode(m)
        let delta = ManifestDelta.encode(old: old, new: new)
        #expect(try ManifestDelta.decode(old: old, delta: delta) == new)
    }

    @Test func hashHex() {
        let h = ObjectHash.of(Array("abc".utf8))
        #expect(h.hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ObjectHash(hex: h.hex) == h)
        #expect(ObjectHash(hex: "xyz") == nil)
    }
}

@Suite struct PosixACLTests {
    typealias E = PosixACL.Entry

    /// The value getfattr shows for `setfacl -m u:1000:rwx,g:100:r` on a 0644 file, from entries in any order.
    @Test func encodesTheKernelFormatSorted() {
        let entries = [
            E(.other, 4), E(.group, 4, id: 100), E(.mask, 7), E(.userObject, 6), E(.user, 7, id: 1000),
            E(.groupObject, 4),
        ]
        let hex = PosixACL.xattrValue(entries)!.map { String($0, radix: 16, uppercase: false) }
            .map { $0.count == 1 ? "0" + $0 : $0 }.joined()
        #expect(
            hex
                == "0200000001000600ffffffff02000700e803000004000400ffffffff080004006400000010000700ffffffff20000400ffffffff"
        )
    }

    @Test func maskOfAnXattr() {
        let withMask = PosixACL.xattrValue([
            E(.userObject, 6), E(.user, 7, id: 1), E(.groupObject, 4), E(.mask, 5), E(.other, 0),
        ])!
        #expect(PosixACL.maskPermissions(ofXattr: withMask) == 5)
        #expect(
            PosixACL.maskPermissions(
                ofXattr: PosixACL.xattrValue([E(.userObject, 6), E(.groupObject, 4), E(.other, 0)])!) == nil)
        #expect(PosixACL.maskPermissions(ofXattr: [1, 2, 3]) == nil)
    }

    static let invalid: [[E]] = [
        [E(.userObject, 6), E(.other, 4)],  // no group::
        [E(.userObject, 6), E(.userObject, 7), E(.groupObject, 4), E(.other, 4)],  // two user::
        [E(.userObject, 6), E(.groupObject, 4), E(.other, 4), E(.user, 7, id: 5)],  // named entry, no mask
        [E(.userObject, 6), E(.groupObject, 4), E(.other, 4), E(.mask, 7), E(.user, 7, id: 5), E(.user, 1, id: 5)],
    ]

    @Test(arguments: invalid.indices)
    func refusesInvalidACLs(index: Int) {
        #expect(PosixACL.xattrValue(Self.invalid[index]) == nil)
    }
}
