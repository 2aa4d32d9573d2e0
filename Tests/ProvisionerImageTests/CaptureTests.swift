import Foundation
import ProvisionerImage
import ProvisionerSystem
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The capture scope as a table (mount table, node-owned paths, flags → what is kept, by rule),
/// then the hashing and re-reading of a real tree.
@Suite struct CaptureScopeTests {
    static func mount(_ point: String, _ type: String, _ source: String = "none") -> MountEntry {
        MountEntry(devNumber: "0:1", mountPoint: point, fsType: type, source: source)
    }

    /// A stateful node: ext4 root, the ESP, a data volume, the usual virtual filesystems.
    static let node: [MountEntry] = [
        mount("/", "ext4", "/dev/md0"), mount("/proc", "proc"), mount("/sys", "sysfs"), mount("/dev", "devtmpfs"),
        mount("/dev/pts", "devpts"), mount("/run", "tmpfs"), mount("/sys/fs/cgroup", "cgroup2"),
        mount("/boot/efi", "vfat", "/dev/md1"), mount("/scratch", "xfs", "/dev/vg0/scratch"),
        mount("/home", "nfs4", "fs:/home"), mount("/tmp", "tmpfs"),
    ]
    static let owned = ["etc/machine-id", "var/log", "var/lib/systemd", "tmp", "etc/hostname", "scratch/lost+found"]

    struct Row: Sendable, CustomTestStringConvertible {
        var path: String
        var isDirectory: Bool
        var want: CaptureChoice?
        var rule: CaptureRule?
        var testDescription: String { "\(path)" }
    }

    static let rows: [Row] = [
        Row(path: "proc", isDirectory: true, want: .withoutContents, rule: .C1),
        Row(path: "run", isDirectory: true, want: .withoutContents, rule: .C1),
        Row(path: "dev", isDirectory: true, want: .withoutContents, rule: .C1),
        Row(path: "tmp", isDirectory: true, want: .withoutContents, rule: .C1),  // tmpfs wins over C4
        Row(path: "boot/efi", isDirectory: true, want: .withoutContents, rule: .C2),
        Row(path: "home", isDirectory: true, want: .withoutContents, rule: .C2),
        Row(path: "scratch", isDirectory: true, want: nil, rule: nil),  // included: C3
        Row(path: "scratch/lost+found", isDirectory: true, want: .withoutContents, rule: .C4),
        Row(path: "var/log", isDirectory: true, want: .withoutContents, rule: .C4),
        Row(path: "var/lib/systemd", isDirectory: true, want: .withoutContents, rule: .C4),
        Row(path: "etc/machine-id", isDirectory: false, want: .leaveOut, rule: .C5),
        Row(path: "etc/hostname", isDirectory: false, want: .leaveOut, rule: .C5),
        Row(path: "etc/ssh/ssh_host_ed25519_key", isDirectory: false, want: .leaveOut, rule: .C6),
        Row(path: "etc/ssh/ssh_host_rsa_key.pub", isDirectory: false, want: .leaveOut, rule: .C6),
        Row(path: "etc/ssh/sshd_config", isDirectory: false, want: nil, rule: nil),
        Row(path: "etc/ssh/ssh_host_dir", isDirectory: true, want: nil, rule: nil),
        Row(path: "srv/cache", isDirectory: true, want: .leaveOut, rule: .C7),
        Row(path: "srv/cache.txt", isDirectory: false, want: nil, rule: nil),
        Row(path: "usr/bin/env", isDirectory: false, want: nil, rule: nil),
        Row(path: "var", isDirectory: true, want: nil, rule: nil),
    ]

    @Test(arguments: rows) func choice(_ row: Row) throws {
        let scope = try CaptureScope.plan(
            root: "/", mounts: Self.node, nodeOwned: Self.owned, includeMounts: ["/scratch"],
            excludes: ["/srv/cache"])
        let got = scope.choice(for: Array(row.path.utf8), isDirectory: row.isDirectory)
        #expect(got?.0 == row.want)
        #expect(got?.1 == row.rule)
    }

    @Test func notesNameEveryMountOnceAndNotWhatIsBelowASkippedOne() throws {
        let scope = try CaptureScope.plan(
            root: "/", mounts: Self.node, nodeOwned: Self.owned, includeMounts: ["/scratch"])
        #expect(scope.includedMounts == ["scratch"])
        // dev/pts and sys/fs/cgroup are below skipped mounts: not decided, not mentioned.
        #expect(scope.notes.count == 8)
        #expect(!scope.notes.contains { $0.hasPrefix("dev/pts") || $0.hasPrefix("sys/fs/cgroup") })
        #expect(scope.notes.contains("boot/efi: vfat /dev/md1 mounted here, kept empty (C2; --include-mount /boot/efi takes it)"))
    }

    @Test func aLaterMountOnTheSamePointHidesTheEarlierOne() throws {
        let mounts = [Self.mount("/", "ext4"), Self.mount("/data", "xfs", "/dev/sdb"), Self.mount("/data", "tmpfs")]
        let scope = try CaptureScope.plan(root: "/", mounts: mounts, nodeOwned: [])
        #expect(scope.choice(for: Array("data".utf8), isDirectory: true)?.1 == .C1)
        #expect(throws: CaptureScopeError.self) {
            try CaptureScope.plan(root: "/", mounts: mounts, nodeOwned: [], includeMounts: ["/data"])
        }
    }

    @Test func aRootBelowTheSystemRootSeesOnlyItsOwnMounts() throws {
        let mounts = [
            Self.mount("/", "ext4"), Self.mount("/sysroot", "tmpfs"), Self.mount("/sysroot/proc", "proc"),
            Self.mount("/sysroot2/x", "xfs"), Self.mount("/run", "tmpfs"),
        ]
        let scope = try CaptureScope.plan(root: "/sysroot/", mounts: mounts, nodeOwned: [], excludes: ["/sysroot/opt"])
        #expect(scope.choice(for: Array("proc".utf8), isDirectory: true)?.1 == .C1)
        #expect(scope.choice(for: Array("run".utf8), isDirectory: true) == nil)
        #expect(scope.choice(for: Array("x".utf8), isDirectory: true) == nil)
        #expect(scope.choice(for: Array("opt".utf8), isDirectory: true)?.1 == .C7)
        #expect(scope.notes == ["proc: proc mounted here, kept empty (C1)"])
    }

    @Test func aMountedFileIsLeftOut() throws {
        let mounts = [Self.mount("/", "ext4"), Self.mount("/etc/resolv.conf", "ext4", "/dev/sda1")]
        let scope = try CaptureScope.plan(root: "/", mounts: mounts, nodeOwned: [])
        #expect(scope.choice(for: Array("etc/resolv.conf".utf8), isDirectory: false)?.0 == .leaveOut)
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        var root = "/"
        var include: [String] = []
        var exclude: [String] = []
        var field: String
        var message: String
        var testDescription: String { "\(field) \(include + exclude)" }
    }

    static let refusals: [Refusal] = [
        Refusal(root: "sysroot", field: "--root", message: "sysroot is not absolute"),
        Refusal(include: ["scratch"], field: "--include-mount", message: "scratch is not an absolute path"),
        Refusal(
            include: ["/srv"], field: "--include-mount",
            message: "/srv is not a mount point below / (mounted there: /boot/efi, /home, /scratch)"),
        Refusal(
            include: ["/run"], field: "--include-mount",
            message: "/run is a tmpfs, a virtual filesystem with no data of the node's own"),
        Refusal(include: ["/"], field: "--include-mount", message: "/ is not a mount point below / (mounted there: /boot/efi, /home, /scratch)"),
        Refusal(exclude: ["var/../etc"], field: "--exclude", message: "var/../etc: \"..\" component escapes"),
        Refusal(exclude: ["/"], field: "--exclude", message: "/ is not below /"),
    ]

    @Test(arguments: refusals) func refused(_ row: Refusal) {
        do {
            _ = try CaptureScope.plan(
                root: row.root, mounts: Self.node, nodeOwned: [], includeMounts: row.include, excludes: row.exclude)
            Issue.record("accepted")
        } catch {
            #expect(error.field == row.field)
            #expect(error.message == row.message)
        }
    }

    @Test func theNodeOwnedRecordReadsBackAndSkipsWhatIsNotAPath() {
        let text = NodeOwnedRecord.encode(["etc/machine-id", "/var/log", "var/log", "", "etc/hostname"])
        #expect(text == "etc/machine-id\nvar/log\netc/hostname\n")
        #expect(NodeOwnedRecord.decode(text + "\n../etc\n/tmp\n") == ["etc/machine-id", "var/log", "etc/hostname", "tmp"])
    }
}

@Suite struct ChunkLocationTests {
    @Test func firstOccurrenceCountsEveryChunkBeforeItHolesIncluded() {
        let a = ObjectHash.of([1])
        let b = ObjectHash.of([2])
        let c = ObjectHash.of([3])
        var f = Entry("f", .file)
        f.chunks = [Chunk(length: 10, hash: a), .hole(length: 1000), Chunk(length: 20, hash: b)]
        f.size = 1030
        var g = Entry("g", .file)
        g.chunks = [Chunk(length: 20, hash: b), Chunk(length: 5, hash: c), Chunk(length: 10, hash: a)]
        g.size = 35
        let manifest = Manifest(entries: [Entry("", .directory), f, g])
        #expect(
            ChunkLocation.firstOccurrences(in: manifest) == [
                a: ChunkLocation(entry: 1, offset: 0, length: 10), b: ChunkLocation(entry: 1, offset: 1010, length: 20),
                c: ChunkLocation(entry: 2, offset: 20, length: 5),
            ])
        #expect(ChunkLocation.firstOccurrences(in: manifest, of: [c]) == [c: ChunkLocation(entry: 2, offset: 20, length: 5)])
    }
}

/// A real tree: the scope applied by the scanner, the objects read back from the live files.
@Suite struct LiveCaptureTests {
    @Test func hashesInPlaceAndReadsOnlyAskedObjectsBack() throws {
        let dir = try scratch("capture")
        defer { _ = try? sh("rm -rf '\(dir)'") }
        try sh(
            """
            cd '\(dir)'
            mkdir -p root/etc/ssh root/var/log/apt root/data root/tmp
            echo id > root/etc/machine-id
            echo key > root/etc/ssh/ssh_host_ed25519_key
            echo conf > root/etc/ssh/sshd_config
            echo log > root/var/log/apt/history.log
            echo secret > root/data/private
            head -c 300000 /dev/urandom > root/big
            mkdir -p root/.provisioner-state && echo x > root/.provisioner-state/applied
            """)
        let root = dir + "/root"
        let mounts = [MountEntry(devNumber: "0:9", mountPoint: root + "/data", fsType: "xfs", source: "/dev/sdz")]
        let scope = try CaptureScope.plan(root: root, mounts: mounts, nodeOwned: ["etc/machine-id", "var/log"])
        var scanner = TreeScanner(threads: 2)
        scanner.choose = { scope.scanChoice($0, $1) }
        let manifest = try ImageImporter(hashingOnly: 2).manifest(ofDirectory: root, scanner: scanner)
        let paths = manifest.entries.map(\.pathString)
        #expect(paths == ["", "big", "data", "etc", "etc/ssh", "etc/ssh/sshd_config", "tmp", "var", "var/log"])

        let objects = try LiveTreeObjects(root: root, manifest: manifest)
        let big = manifest.entries[1]
        #expect(big.chunks.count > 1)
        var content: [UInt8] = []
        for chunk in big.chunks {
            let stored = try #require(try objects.storedObject(chunk.hash))
            content += try stored.withUnsafeBytes { try Zstd.decompress($0, expectedSize: Int(chunk.length), subject: "t") }
        }
        #expect(content == Array(try Data(contentsOf: URL(fileURLWithPath: root + "/big"))))
        #expect(try objects.storedObject(ObjectHash.of([9, 9, 9])) == nil)

        // A file changed after hashing: named, never sent as if it were the hashed content.
        try sh("printf 'CHANGED' | dd of='\(root)/big' bs=1 seek=10 conv=notrunc status=none")
        do {
            _ = try objects.storedObject(big.chunks[0].hash)
            Issue.record("a changed file was read as the hashed content")
        } catch {
            #expect("\(error)".contains("\(root)/big"))
            #expect("\(error)".contains("changed since it was hashed"))
        }
    }
}

@Suite struct CaptureDeltaBaseTests {
    static let a = ObjectHash.of([1])
    static let b = ObjectHash.of([2])

    struct Row: Sendable, CustomTestStringConvertible {
        var target: String
        var kept: [KeptManifest]
        var want: KeptManifest?
        var rule: String?
        var testDescription: String { "\(target) from \(kept.map { "\($0.kind.rawValue) \($0.image)" })" }
    }

    static let lastOfTarget = KeptManifest(kind: .lastCapture, image: "captured", version: a)
    static let lastOfOther = KeptManifest(kind: .lastCapture, image: "other", version: a)
    static let applied = KeptManifest(kind: .applied, image: "debian", version: b)

    static let rows: [Row] = [
        Row(target: "captured", kept: [applied, lastOfTarget], want: lastOfTarget, rule: "B1"),
        Row(target: "captured", kept: [lastOfOther, applied], want: applied, rule: "B2"),
        Row(target: "captured", kept: [lastOfOther], want: lastOfOther, rule: "B3"),
        Row(target: "captured", kept: [], want: nil, rule: nil),
    ]

    @Test(arguments: rows) func choice(_ row: Row) {
        let got = KeptManifest.choose(for: row.target, from: row.kept)
        #expect(got?.0 == row.want)
        #expect(got?.rule == row.rule)
    }

    @Test func theRecordReadsBack() {
        let text = KeptManifest.record(image: "captured", version: Self.a)
        #expect(KeptManifest.parseRecord(text)?.image == "captured")
        #expect(KeptManifest.parseRecord(text)?.version == Self.a)
        #expect(KeptManifest.parseRecord("image x\nversion nothex\n") == nil)
    }
}
