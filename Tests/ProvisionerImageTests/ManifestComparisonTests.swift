import ProvisionerImage
import Testing

/// `image diff` and the publish summary as a table: (old, new) -> differences, no I/O.
@Suite struct ManifestComparisonTests {
    static func entry(_ path: String, _ kind: EntryKind, size: UInt64 = 0, fill: UInt8 = 1) -> Entry {
        DifferTests.entry(path, kind, size: size).with { e in
            if kind == .file && size > 0 { e.chunks = [Chunk(length: UInt32(size), hash: .of([fill]))] }
        }
    }

    static let old: [Entry] = [
        entry("", .directory), entry("bin", .directory), entry("bin/sh", .file, size: 10),
        entry("etc", .directory), entry("etc/hostname", .file, size: 5), entry("etc/motd", .file, size: 7),
        Entry("etc/sh", .hardlink).with { $0.linkIndex = 2 },
    ]

    @Test func tableOfChanges() {
        let cases: [(String, (inout [Entry]) -> Void, [String], ManifestComparison.Summary)] = [
            ("nothing", { _ in }, [], .init()),
            (
                "content", { $0[4] = Self.entry("etc/hostname", .file, size: 6, fill: 2) },
                ["changed etc/hostname content"], .init(changed: 1, contentBytes: 6)
            ),
            (
                "mode and owner", { $0[5].mode = 0o600; $0[5].uid = 7 },
                ["changed etc/motd mode,owner"], .init(changed: 1)
            ),
            ("mtime of a file", { $0[5].mtimeSeconds = 9 }, ["changed etc/motd mtime"], .init(changed: 1)),
            ("mtime of a directory alone is not a change", { $0[3].mtimeSeconds = 9 }, [], .init()),
            (
                "added and removed", { $0.remove(at: 5); $0.insert(Self.entry("etc/new", .file, size: 3), at: 5) },
                ["removed etc/motd", "added etc/new"], .init(added: 1, removed: 1, contentBytes: 3)
            ),
            (
                "a file becomes a symlink",
                { $0[5] = Entry("etc/motd", .symlink).with { $0.target = Array("x".utf8) } },
                ["changed etc/motd kind"], .init(changed: 1)
            ),
            (
                "a hardlink to another file",
                { $0[6].linkIndex = 4 },
                ["changed etc/sh link"], .init(changed: 1)
            ),
        ]
        for (name, change, expected, summary) in cases {
            var new = Self.old
            change(&new)
            let (differences, counted) = ManifestComparison.compare(
                old: Manifest(entries: Self.old), new: Manifest(entries: new))
            let shown = differences.map { d in
                "\(d.change.rawValue) \(d.pathString)" + (d.aspects.isEmpty ? "" : " " + d.aspects.joined(separator: ","))
            }
            #expect(shown == expected, "\(name)")
            #expect(counted == summary, "\(name)")
        }
    }

    @Test func aFirstVersionIsAllAdded() {
        let s = ManifestComparison.summary(old: nil, new: Manifest(entries: Self.old))
        #expect(s.added == Self.old.count)
        #expect(s.contentBytes == 22)
    }
}

extension Entry {
    func with(_ change: (inout Entry) -> Void) -> Entry {
        var copy = self
        change(&copy)
        return copy
    }
}

extension ManifestComparison.Summary {
    init(added: Int = 0, changed: Int = 0, removed: Int = 0, contentBytes: UInt64 = 0) {
        self.init()
        self.added = added
        self.changed = changed
        self.removed = removed
        self.contentBytes = contentBytes
    }
}
