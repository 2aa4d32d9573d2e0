import Foundation
import ProvisionerImage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Rows K1–K4 of `KnownContent` (docs/images.md, "Capturing a node"), then a real tree: what a
/// capture reads again and what it takes from the kept manifest.
@Suite struct KnownContentTests {
    static let chunk = Chunk(length: 5, hash: ObjectHash.of(Array("hello".utf8)))
    static let manifest: Manifest = {
        var file = Entry("etc/motd", .file)
        file.size = 5
        file.mtimeSeconds = 1000
        file.mtimeNanoseconds = 7
        file.chunks = [chunk]
        var link = Entry("etc/motd.link", .hardlink)
        link.linkIndex = 1
        return Manifest(entries: [Entry("", .directory), file, link, Entry("etc", .directory)])
    }()
    static let known = KnownContent(manifest: manifest, before: (2000, 500), what: "img@test")

    static func seen(size: UInt64 = 5, mtime: (Int64, UInt32) = (1000, 7), ctime: (Int64, UInt32) = (1999, 0))
        -> Observed
    {
        var o = Observed(kind: .file)
        o.size = size
        (o.mtimeSeconds, o.mtimeNanoseconds) = mtime
        (o.ctimeSeconds, o.ctimeNanoseconds) = ctime
        return o
    }

    @Test(arguments: [
        ("K1 a path the manifest lacks", "etc/other", seen(), KnownContent.Decision.unknownPath),
        ("K1 a directory in the manifest", "etc", seen(), .unknownPath),
        ("K2 another size", "etc/motd", seen(size: 6), .metadataDiffers),
        ("K2 another mtime (seconds)", "etc/motd", seen(mtime: (1001, 7)), .metadataDiffers),
        ("K2 another mtime (nanoseconds)", "etc/motd", seen(mtime: (1000, 8)), .metadataDiffers),
        ("K3 ctime at the moment itself", "etc/motd", seen(ctime: (2000, 500)), .changedSince),
        ("K3 ctime after the moment", "etc/motd", seen(ctime: (2000, 501)), .changedSince),
        ("K3 ctime long after", "etc/motd", seen(ctime: (9000, 0)), .changedSince),
        ("K4 untouched since", "etc/motd", seen(ctime: (2000, 499)), .known([chunk])),
        ("K4 another name of the same file", "etc/motd.link", seen(), .known([chunk])),
    ])
    func rows(_ name: String, _ path: String, _ observed: Observed, _ expected: KnownContent.Decision) {
        #expect(Self.known.decide(Array(path.utf8), observed) == expected, "\(name)")
    }

    @Test func aSymlinkIsNeverKnownContent() {
        var o = Self.seen()
        o.kind = .symlink
        #expect(Self.known.decide(Array("etc/motd".utf8), o) == .unknownPath)
    }

    /// A tree hashed, a moment recorded, then: one file rewritten with its mtime put back (its
    /// ctime moves), one appended to, one left alone. The capture with the kept manifest equals a
    /// full rehash, and reads only the two that changed.
    @Test func aCaptureReadsOnlyWhatChangedSinceTheMoment() throws {
        let dir = try scratch("known")
        defer { _ = try? sh("rm -rf '\(dir)'") }
        _ = try sh(
            """
            cd '\(dir)' && mkdir -p root/etc root/usr/bin
            head -c 200000 /dev/urandom > root/usr/bin/tool
            echo 'kept as it was' > root/etc/kept
            echo 'before' > root/etc/rewritten
            echo 'short' > root/etc/grown
            ln root/usr/bin/tool root/usr/bin/tool-alias
            """)
        let root = dir + "/root"
        let first = try ImageImporter(hashingOnly: 2).manifest(ofDirectory: root, scanner: TreeScanner(threads: 2))
        // The moment: a file written after the tree, as the sync writes its record.
        usleep(20_000)
        _ = try sh("echo record > '\(dir)/record'")
        var st = stat()
        #expect(lstat(dir + "/record", &st) == 0)
        let moment = (Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec))
        usleep(20_000)
        _ = try sh(
            """
            cd '\(root)'
            touch -r etc/rewritten /tmp/.known-ref-$$ && echo 'after!' > etc/rewritten && touch -r /tmp/.known-ref-$$ etc/rewritten
            rm -f /tmp/.known-ref-$$
            echo 'more' >> etc/grown
            """)
        let known = KnownContent(manifest: first, before: moment, what: "test")
        let (again, sources) = try ImageImporter(hashingOnly: 2).manifestAndSources(
            ofDirectory: root, scanner: TreeScanner(threads: 2), known: known)
        let full = try ImageImporter(hashingOnly: 2).manifest(ofDirectory: root, scanner: TreeScanner(threads: 2))
        #expect(again == full)
        #expect(sources.hashedFiles == 2)  // rewritten (same size and mtime, but its ctime moved) and grown
        #expect(sources.knownFiles == 2)  // kept, and tool (its second name is a hardlink entry)
        #expect(sources.knownBytes == 200_000 + 15)
        let rewritten = try #require(again.entries.first { $0.pathString == "etc/rewritten" })
        #expect(rewritten.chunks == [Chunk(length: 7, hash: ObjectHash.of(Array("after!\n".utf8)))])

        // Known chunks are taken, not read: a manifest that lies about an untouched file is believed
        // (which is why the moment must come from the sync that wrote the tree).
        var lying = first
        let kept = try #require(lying.entries.firstIndex { $0.pathString == "etc/kept" })
        lying.entries[kept].chunks = [Chunk(length: 15, hash: ObjectHash.of(Array("something else\n".utf8)))]
        let believed = try ImageImporter(hashingOnly: 2).manifest(
            ofDirectory: root, scanner: TreeScanner(threads: 2),
            known: KnownContent(manifest: lying, before: moment, what: "test"))
        #expect(believed.entries.first { $0.pathString == "etc/kept" }?.chunks == lying.entries[kept].chunks)
    }
}
