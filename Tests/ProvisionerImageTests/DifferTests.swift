import ProvisionerImage
import Testing

/// The differ as a table: (manifest, observed tree) -> plan, no I/O.
@Suite struct DifferTests {
    static func entry(_ path: String, _ kind: EntryKind, mtime: Int64 = 100, size: UInt64 = 0) -> Entry {
        var e = Entry(path, kind)
        e.mode = kind == .directory ? 0o755 : 0o644
        e.mtimeSeconds = mtime
        if kind == .file {
            e.size = size
            e.chunks = size == 0 ? [] : [Chunk(length: UInt32(size), hash: .of([UInt8(size & 0xff)]))]
        }
        return e
    }

    static func seen(_ e: Entry, inode: UInt64 = 0, links: UInt64 = 1) -> Observed {
        var o = Observed(kind: e.kind)
        o.mode = e.mode
        o.uid = e.uid
        o.gid = e.gid
        o.mtimeSeconds = e.mtimeSeconds
        o.mtimeNanoseconds = e.mtimeNanoseconds
        o.size = e.size
        o.xattrs = e.xattrs
        o.target = e.target
        o.inode = inode
        o.links = links
        return o
    }

    static let base: [Entry] = [
        entry("", .directory), entry("a", .directory), entry("a/f", .file, size: 3), entry("b", .file, size: 5),
    ]

    static func observed(_ entries: [Entry]) -> ObservedTree {
        var out: ObservedTree = [:]
        for (i, e) in entries.enumerated() { out[TreePath(e.path)] = seen(e, inode: UInt64(i + 1)) }
        return out
    }

    static func p(_ s: String) -> [UInt8] { Array(s.utf8) }
    static func k(_ s: String) -> TreePath { TreePath(s) }

    @Test func identicalTreeNeedsNothing() {
        let plan = Differ.plan(manifest: Manifest(entries: Self.base), observed: Self.observed(Self.base))
        #expect(plan.isEmpty)
        #expect(plan.checkContent.isEmpty)
    }

    @Test func emptyTargetCreatesEverything() {
        let plan = Differ.plan(
            manifest: Manifest(entries: Self.base), observed: [TreePath([]): Self.seen(Self.base[0])])
        #expect(plan.createDirectories == [1])
        #expect(plan.writeFiles == [2, 3])
        #expect(plan.directoryMetadata == [1, 0])  // deepest first
    }

    @Test func contentLevelRehashesMatchingFiles() {
        let plan = Differ.plan(
            manifest: Manifest(entries: Self.base), observed: Self.observed(Self.base), verify: .content)
        #expect(plan.checkContent == [2, 3])
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var change: @Sendable (inout ObservedTree) -> Void
        var expect: @Sendable (SyncPlan) -> Bool
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "mtime differs: rewrite", change: { $0[k("b")]!.mtimeSeconds = 1 }, expect: { $0.writeFiles == [3] }),
        Case(
            name: "size differs: rewrite", change: { $0[k("a/f")]!.size = 9 },
            expect: { $0.writeFiles == [2] && $0.directoryMetadata == [1] }),
        Case(
            name: "mode differs: metadata only", change: { $0[k("b")]!.mode = 0o600 },
            expect: { $0.fixMetadata == [3] && $0.writeFiles.isEmpty }),
        Case(name: "owner differs: metadata only", change: { $0[k("b")]!.uid = 5 }, expect: { $0.fixMetadata == [3] }),
        Case(
            name: "extra xattr: metadata only", change: { $0[k("b")]!.xattrs = [Xattr("user.x", [1])] },
            expect: { $0.fixMetadata == [3] }),
        Case(
            name: "extra entry: deleted", change: { $0[k("a/extra")] = Observed(kind: .file) },
            expect: { $0.deletions == [p("a/extra")] && $0.directoryMetadata == [1] }),
        Case(
            name: "extra directory: deleted top-most only",
            change: {
                $0[k("x")] = Observed(kind: .directory)
                $0[k("x/y")] = Observed(kind: .file)
            }, expect: { $0.deletions == [p("x")] }),
        Case(
            name: "directory where a file goes: removed first",
            change: {
                $0[k("b")] = Observed(kind: .directory)
                $0[k("b/inner")] = Observed(kind: .file)
            }, expect: { $0.removals == [p("b")] && $0.writeFiles == [3] && $0.deletions.isEmpty }),
        Case(
            name: "file where a directory goes: removed, then created",
            change: {
                $0[k("a")] = Observed(kind: .file)
                $0[k("a/f")] = nil
            }, expect: { $0.removals == [p("a")] && $0.createDirectories == [1] && $0.writeFiles == [2] }),
        Case(
            name: "symlink where a file goes: replaced by rename, not removed",
            change: {
                var o = Observed(kind: .symlink)
                o.target = p("/etc")
                $0[k("b")] = o
            }, expect: { $0.removals.isEmpty && $0.writeFiles == [3] }),
        Case(
            name: "symlink where a directory goes: removed, then created",
            change: {
                var o = Observed(kind: .symlink)
                o.target = p("/etc")
                $0[k("a")] = o
                $0[k("a/f")] = nil
            }, expect: { $0.removals == [p("a")] && $0.createDirectories == [1] && $0.writeFiles == [2] }),
        Case(
            name: "a file shares its inode with another name: rewritten", change: { $0[k("b")]!.links = 2 },
            expect: { $0.writeFiles == [3] }),
        Case(
            name: "root metadata differs", change: { $0[TreePath([])]!.mode = 0o700 },
            expect: { $0.directoryMetadata == [0] }),
    ]

    @Test(arguments: cases)
    func changes(_ c: Case) {
        var observed = Self.observed(Self.base)
        c.change(&observed)
        let plan = Differ.plan(manifest: Manifest(entries: Self.base), observed: observed)
        #expect(c.expect(plan), "\(plan)")
    }

    @Test func preservedPathsAreLeftAlone() {
        var observed = Self.observed(Self.base)
        observed[Self.k("a/f")]!.mtimeSeconds = 1  // would be rewritten
        observed[Self.k("a/node-owned")] = Observed(kind: .file)  // would be deleted
        let plan = Differ.plan(
            manifest: Manifest(entries: Self.base), observed: observed,
            preserved: [Self.p("a/f"), Self.p("a/node-owned")])
        #expect(plan.isEmpty)
    }

    @Test func preservedPathInsideAnExtraDirectoryKeepsTheDirectory() {
        var observed = Self.observed(Self.base)
        observed[Self.k("var")] = Observed(kind: .directory)
        observed[Self.k("var/other")] = Observed(kind: .file)
        let plan = Differ.plan(
            manifest: Manifest(entries: Self.base), observed: observed, preserved: [Self.p("var/log")])
        #expect(plan.deletions == [Self.p("var/other")])
    }

    @Test func hardlinks() {
        var link = Entry("c", .hardlink)
        link.linkIndex = 3
        let entries = Self.base + [link]
        var observed = Self.observed(Self.base)
        observed[Self.k("b")]!.links = 2
        var same = observed[Self.k("b")]!
        same.inode = observed[Self.k("b")]!.inode
        observed[Self.k("c")] = same
        #expect(Differ.plan(manifest: Manifest(entries: entries), observed: observed).isEmpty)
        // A separate file where the link should be: linked again.
        observed[Self.k("c")]!.inode = 99
        observed[Self.k("b")]!.links = 1
        #expect(Differ.plan(manifest: Manifest(entries: entries), observed: observed).links == [4])
        // The primary is rewritten: the link follows.
        observed[Self.k("b")]!.mtimeSeconds = 1
        let plan = Differ.plan(manifest: Manifest(entries: entries), observed: observed)
        #expect(plan.writeFiles == [3] && plan.links == [4])
    }
}
