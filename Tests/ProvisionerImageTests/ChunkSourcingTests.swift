import ProvisionerImage
import Testing

/// The sync's decisions made before any I/O: where each chunk comes from, and the plan after the
/// content check. Tables, no files.
@Suite struct ChunkSourcingTests {
    static func hash(_ n: UInt8) -> ObjectHash { .of([n]) }

    static func file(_ path: String, _ chunks: [Chunk]) -> Entry {
        var e = Entry(path, .file)
        e.chunks = chunks
        e.size = chunks.reduce(0) { $0 + UInt64($1.length) }
        return e
    }

    static func chunk(_ n: UInt8, _ length: UInt32 = 100) -> Chunk { Chunk(length: length, hash: hash(n)) }

    @Test func newChunksAreStreamedOnceAndRepeatsReadBack() {
        let a = Self.file("a", [Self.chunk(1), Self.chunk(2), Self.chunk(1)])
        let b = Self.file("b", [Self.chunk(2), .hole(length: 4096), Self.chunk(3)])
        let s = Differ.sourceChunks([(a, nil), (b, nil)], local: [:])
        #expect(s.origins == [.stream, .stream, .earlier, .earlier, .hole, .stream])
        #expect(s.wanted == [Self.hash(1), Self.hash(2), Self.hash(3)])
        #expect(s.bases.isEmpty)
    }

    @Test func chunksOnTheNodeAreReadLocally() {
        let a = Self.file("usr/bin/a", [Self.chunk(1), Self.chunk(2), Self.chunk(1)])
        let local: [ObjectHash: (path: [UInt8], offset: UInt64)] = [Self.hash(1): (Array("usr/bin/old".utf8), 300)]
        let s = Differ.sourceChunks([(a, nil)], local: local)
        #expect(s.origins == [.local(path: Array("usr/bin/old".utf8), offset: 300), .stream, .earlier])
        #expect(s.wanted == [Self.hash(2)])
    }

    @Test func changedChunksOfAnOlderVersionNameTheOldChunkAtTheirOffset() {
        // Old: [1 @0, 2 @100, hole @200, 4 @4296]; new: [1 @0, 5 @100, 6 @200, 7 @300, 4 @400].
        let old = Self.file("var/lib/db", [Self.chunk(1), Self.chunk(2), .hole(length: 4096), Self.chunk(4)])
        let new = Self.file("var/lib/db", [Self.chunk(1), Self.chunk(5), Self.chunk(6), Self.chunk(7), Self.chunk(4)])
        let local: [ObjectHash: (path: [UInt8], offset: UInt64)] = [
            Self.hash(1): (Array("var/lib/db".utf8), 0), Self.hash(4): (Array("var/lib/db".utf8), 4296),
        ]
        let s = Differ.sourceChunks([(new, old)], local: local)
        #expect(
            s.origins == [
                .local(path: Array("var/lib/db".utf8), offset: 0), .stream, .stream, .stream,
                .local(path: Array("var/lib/db".utf8), offset: 4296),
            ])
        #expect(s.wanted == [Self.hash(5), Self.hash(6), Self.hash(7)])
        // 5 sits where 2 was; 6 and 7 sit in the old hole: no base (a hole is no delta base).
        #expect(s.bases == [Self.hash(5): DeltaBase(hash: Self.hash(2), path: Array("var/lib/db".utf8), offset: 100, length: 100)])
    }

    @Test func theSameChunkAtTheSameOffsetIsNoBaseForItself() {
        let old = Self.file("f", [Self.chunk(1)])
        let new = Self.file("f", [Self.chunk(1)])
        let s = Differ.sourceChunks([(new, old)], local: [:])
        #expect(s.origins == [.stream])
        #expect(s.bases.isEmpty)
    }

    // MARK: The plan after the content check

    static let manifest: Manifest = {
        var root = Entry("", .directory)
        root.mode = 0o755
        var etc = Entry("etc", .directory)
        etc.mode = 0o755
        let a = file("etc/a", [chunk(1)])
        let b = file("etc/b", [chunk(2)])
        var link = Entry("etc/c", .hardlink)
        link.linkIndex = 2
        let top = file("top", [chunk(3)])
        return Manifest(entries: [root, etc, a, b, link, top])
    }()

    @Test func nothingMismatchedLeavesThePlanAlone() {
        var plan = SyncPlan()
        plan.checkContent = [2, 3, 5]
        plan.fixMetadata = [3]
        #expect(Differ.rewrite(plan, manifest: Self.manifest, mismatched: []) == plan)
    }

    @Test func mismatchedFilesAreWrittenWithTheirOtherNamesAndParents() {
        var plan = SyncPlan()
        plan.writeFiles = [3]
        plan.checkContent = [2, 5]
        plan.fixMetadata = [2]
        let after = Differ.rewrite(plan, manifest: Self.manifest, mismatched: [5, 2])
        #expect(after.writeFiles == [2, 3, 5])
        #expect(after.links == [4])  // etc/c is another name of etc/a
        #expect(after.fixMetadata.isEmpty)
        // Deepest first: etc before the root.
        #expect(after.directoryMetadata == [1, 0])
        #expect(after.checkContent == plan.checkContent)
    }

    @Test func aParentAlreadyPlannedIsNotPlannedTwice() {
        var plan = SyncPlan()
        plan.directoryMetadata = [1]
        plan.links = [4]
        let after = Differ.rewrite(plan, manifest: Self.manifest, mismatched: [3, 2])
        #expect(after.directoryMetadata == [1])
        #expect(after.links == [4])
        #expect(after.writeFiles == [2, 3])
    }
}
