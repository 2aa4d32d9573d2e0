import CImageSys
import Dispatch
import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

public struct SyncOptions: Sendable {
    public var verify: VerifyLevel = .metadata
    /// Relative paths the node owns: never created, changed or deleted.
    public var preserved: [[UInt8]] = []
    /// Relative paths the image seeds and the node then owns: created from the image when the node
    /// does not have them, and left alone once it does (`/etc/resolv.conf`, which the running
    /// system's network stack rewrites).
    public var seeded: [[UInt8]] = []
    public var threads = 2
    /// Threads that walk the target. More than the cores: on a cold cache (every boot) the walk
    /// waits on the disk for each directory and inode-table block, and each thread keeps one such
    /// read in flight (docs/boot.md, "The no-change boot"); idle ones sleep.
    public var scanThreads = 8
    /// Tests: stop with `SyncInterrupted` after this many changes to the target.
    public var interruptAfter: Int?
    /// Mount points inside the target (relative paths), for example the other filesystems of a
    /// node's layout. One the image has nothing at or under is left alone like a preserved path
    /// (a data volume such as /scratch, or the ESP on /boot/efi); one the image has content for
    /// (/var) is synced like any directory.
    public var mountPoints: [[UInt8]] = []
    /// Counters a caller may read from another thread while the sync runs (console progress).
    public var progress: SyncProgress?
    /// Where warnings go (an object that came damaged and was fetched again).
    public var warnings: WarningSink = { _ in }
    public init() {}
}

/// How far the file-content phase is: planned versus done. Read from any thread.
public final class SyncProgress: Sendable {
    public let filesPlanned = Atomic<Int>(0)
    public let filesDone = Atomic<Int>(0)
    /// Sum of the sizes of the files to write (apparent sizes, holes included).
    public let bytesPlanned = Atomic<Int>(0)
    public let bytesDone = Atomic<Int>(0)
    public init() {}
}

/// Thrown by the injected interruption point (tests).
public struct SyncInterrupted: Error, CustomStringConvertible {
    public var description: String { "sync interrupted on purpose (test)" }
}

public struct SyncReport: Sendable {
    public var image = ""
    public var version = ObjectHash.zero
    public var upToDate = false
    public var verify = VerifyLevel.metadata
    /// The previous sync was interrupted, so file contents were rehashed.
    public var recovered = false
    public var entries = 0
    public var removed = 0
    public var directoriesCreated = 0
    public var filesWritten = 0
    public var othersCreated = 0
    public var linksMade = 0
    public var metadataFixed = 0
    public var deleted = 0
    public var contentMismatches = 0
    public var bytesWritten: UInt64 = 0
    public var bytesReceived = 0
    public var chunksFetched = 0
    public var chunksReused = 0
    public var objectsRefetched = 0
    public var conflicts: [String] = []
    /// Seconds spent in each phase, in order (resolve, fetch, decode, scan, diff, rehash, apply, record).
    public var phases: [(String, Double)] = []
    public init() {}
}

func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Makes a target directory identical to an image version (docs/image-format.md).
///
/// Works relative to an open descriptor of the target and of each directory in it, opening
/// every component with O_NOFOLLOW, so a symlink on the target is never followed. Files are
/// written under a temporary name and renamed into place. The applied-version record is
/// removed before the first change and written after everything else is on disk.
public final class SyncEngine: @unchecked Sendable {
    public let target: String
    public let source: any ObjectSource
    public let options: SyncOptions
    private let changes = Atomic<Int>(0)

    public init(target: String, source: any ObjectSource, options: SyncOptions = SyncOptions()) {
        self.target = target
        self.source = source
        self.options = options
    }

    static let stateName = String(decoding: stateDirectoryName, as: UTF8.self)

    /// Counts a change and fails at the injected point.
    func step() throws {
        let n = changes.add(1, ordering: .relaxed).newValue
        if let limit = options.interruptAfter, n > limit { throw SyncInterrupted() }
    }

    public func run(image: String, version: String = "latest") throws -> SyncReport {
        var report = SyncReport()
        report.image = image
        report.verify = options.verify
        for p in options.preserved {
            if let problem = PathRules.problem(p) {
                throw SystemError("preserving", displayPath(p), cause: problem)
            }
        }
        // The target and its state directory stay open (owned here) until the sync returns.
        if access(target, F_OK) != 0 && errno == ENOENT { try FileIO.makeDirectories(target) }
        let root = try OwnedDescriptor(opening: target, flags: O_RDONLY | O_DIRECTORY)
        let rootfd = root.rawValue
        let state = try StateDirectory(root: root, target: target)

        var mark = monotonicNow()
        var phases: [(String, Double)] = []
        func phase(_ name: String) {
            let t = monotonicNow()
            phases.append((name, t - mark))
            mark = t
        }
        let id = try source.resolve(image: image, version: version)
        report.version = id
        phase("resolve")  // over HTTPS this includes the TLS handshake of the first request
        let applied = state.applied()
        let interrupted = state.exists("in-progress")
        if options.verify == .stamp && !interrupted && applied.map { $0.0 == image && $0.1 == id } == true {
            report.upToDate = true
            report.bytesReceived = source.bytesReceived
            return report
        }

        // The manifest is fetched and decoded on a thread of its own while the target is walked:
        // the walk waits on the disk, the decode on the CPU. Only the filesystems mounted in the
        // target wait for the manifest, which says whether the image has anything there.
        let kept = state.keptManifest()
        let source = self.source
        let fetched = Background { () throws -> (previous: (id: ObjectHash, bytes: [UInt8])?, ManifestFetch) in
            let started = monotonicNow()
            let previous = kept.flatMap(Self.unpackKept)
            var fetch = try Self.manifest(image: image, id: id, source: source, previous: previous)
            fetch.fetch += monotonicNow() - started - fetch.fetch - fetch.decode  // the kept one's unpacking too
            return (previous, fetch)
        }

        var verify = options.verify == .stamp ? VerifyLevel.metadata : options.verify
        if interrupted && verify == .metadata {
            verify = .content  // a cut write may have left right metadata over wrong bytes
            report.recovered = true
        }
        var preserved = options.preserved
        preserved += Differ.seededNow(options.seeded) { path in
            var st = stat()
            return String(decoding: path, as: UTF8.self).withCString { fstatat(rootfd, $0, &st, AT_SYMLINK_NOFOLLOW) }
                == 0
        }
        let mountPoints = options.mountPoints.filter { !$0.isEmpty }
        var scanner = TreeScanner(preserved: preserved, threads: options.scanThreads)
        if !interrupted, applied.map({ $0.0 == image && $0.1 == id }) == true, let recorded = state.appliedTime() {
            scanner.unchangedBefore = recorded  // xattrs set by that sync are still there unless the ctime moved
        }
        if !mountPoints.isEmpty {
            let deferred = Set(mountPoints)
            scanner.choose = { path, isDirectory in
                isDirectory && deferred.contains(path) ? .withoutContents : .include
            }
        }
        let scanStarted = monotonicNow()
        let walked = Result { try scanner.scan(rootfd: rootfd) }
        let walkSeconds = monotonicNow() - scanStarted
        let (previous, (bytes, manifest, fetchSeconds, decodeSeconds)) = try fetched.wait()
        var observed = try walked.get()
        report.entries = manifest.entries.count
        phases.append(("fetch", fetchSeconds))
        phases.append(("decode", decodeSeconds))

        // The mounted filesystems, outermost first: one the image has nothing at or under is left
        // alone like a preserved path (a data volume, the ESP); one it has content for is walked.
        let mountStarted = monotonicNow()
        for mount in mountPoints.sorted(by: { $0.count < $1.count }) {
            let imageHasIt = manifest.entries.contains { PathRules.isWithin($0.path, mount) }
            if !imageHasIt {
                if !preserved.contains(mount) { preserved.append(mount) }
                observed[TreePath(mount)] = nil
            } else if observed[TreePath(mount)]?.kind == .directory {
                scanner.preserved = preserved
                let below = try scanner.scan(rootfd: rootfd, below: mount)
                observed.merge(below) { _, found in found }
            }
        }
        phases.append(("scan", walkSeconds + monotonicNow() - mountStarted))
        mark = monotonicNow()
        var plan = Differ.plan(manifest: manifest, observed: observed, preserved: preserved, verify: verify)
        phase("diff")
        report.conflicts = plan.conflicts

        let run = Run(engine: self, rootfd: rootfd, manifest: manifest, observed: observed, report: report)
        if !plan.checkContent.isEmpty {
            let bad = try run.checkContent(plan.checkContent)
            run.report.contentMismatches = bad.count
            plan = Differ.rewrite(plan, manifest: manifest, mismatched: bad)
        }
        if !plan.checkContent.isEmpty { phase("rehash") }
        if plan.isEmpty && applied.map { $0.0 == image && $0.1 == id } == true && !interrupted {
            run.report.upToDate = true
            run.report.phases = phases
            run.report.bytesReceived = source.bytesReceived
            return run.report
        }

        // From here on the target changes: first say so, durably.
        try state.write("in-progress", Array(KeptManifest.record(image: image, version: id).utf8))
        try state.remove("applied")
        try state.sync()

        // The previous manifest says where content already on the node is (moved or copied files).
        let previousManifest: Manifest? =
            plan.writeFiles.isEmpty || previous?.id == id
            ? nil : previous.flatMap { try? ManifestCodec.decode($0.bytes) }
        try run.apply(plan, previous: previousManifest)
        phase("apply")

        // Durable before the record says so: the root's filesystem and each one mounted in it (a
        // layout's /var is its own filesystem; syncfs flushes one). Without this, a node cut off
        // after the pivot lost what went to /var while its record said the version was applied.
        guard CImageSys_syncfs(root.rawValue) == 0 else {
            throw SystemError.fromErrno("flushing the filesystem of", target)
        }
        for mount in options.mountPoints where !mount.isEmpty {
            let path = String(decoding: mount, as: UTF8.self)
            let fd = openat(root.rawValue, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }  // not there: nothing was written into it
            defer { close(fd) }
            guard CImageSys_syncfs(fd) == 0 else {
                throw SystemError.fromErrno("flushing the filesystem of", target + "/" + path)
            }
        }
        try state.write("manifest", Zstd.compress(bytes, level: 3))
        try state.write("applied", Array(KeptManifest.record(image: image, version: id).utf8))
        try state.remove("in-progress")
        try state.sync()
        phase("record")
        run.report.phases = phases
        run.report.bytesReceived = source.bytesReceived
        return run.report
    }
}

extension SyncEngine {
    /// A manifest's bytes, decoded, and the seconds its fetch and its decode took.
    typealias ManifestFetch = (bytes: [UInt8], manifest: Manifest, fetch: Double, decode: Double)

    /// The kept manifest's bytes and their hash (its version id); nil when it is damaged.
    static func unpackKept(_ stored: [UInt8]) -> (id: ObjectHash, bytes: [UInt8])? {
        guard
            let bytes = try? stored.withUnsafeBytes({
                try Zstd.decompress($0, expectedSize: nil, subject: "the previous manifest")
            })
        else { return nil }
        return (ObjectHash.of(bytes), bytes)
    }

    /// The version's manifest, checked against its id and decoded: the kept one when it is that
    /// version (no transfer), else from the source, as a delta from the kept one when there is one.
    static func manifest(
        image: String, id: ObjectHash, source: any ObjectSource, previous: (id: ObjectHash, bytes: [UInt8])?
    ) throws -> ManifestFetch {
        let started = monotonicNow()
        let bytes =
            previous?.id == id ? previous!.bytes : try source.manifest(image: image, version: id, previous: previous)
        let fetched = monotonicNow()
        guard ObjectHash.of(bytes) == id else {
            throw SourceError(
                source: source.label, what: "manifest \(image)@\(id.hex)",
                cause: "damaged: its hash is not the version id")
        }
        let manifest: Manifest
        do { manifest = try ManifestCodec.decode(bytes) } catch {
            throw SourceError(source: source.label, what: "manifest \(image)@\(id.hex)", cause: "\(error)")
        }
        return (bytes, manifest, fetched - started, monotonicNow() - fetched)
    }
}

/// `.provisioner-state/` in the target, open for as long as the sync runs.
struct StateDirectory: ~Copyable {
    let dir: OwnedDescriptor
    var fd: Int32 { dir.rawValue }
    var path: String { dir.path }

    init(root: borrowing OwnedDescriptor, target: String) throws {
        if mkdirat(root.rawValue, SyncEngine.stateName, 0o700) != 0 && errno != EEXIST {
            throw SystemError.fromErrno("creating", "\(target)/\(SyncEngine.stateName)")
        }
        do {
            dir = try OwnedDescriptor(
                opening: SyncEngine.stateName, in: root, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        } catch {
            throw SystemError(
                "opening (it must be a directory, not a symlink)", "\(target)/\(SyncEngine.stateName)",
                cause: error.cause, errno: error.errno)
        }
    }

    func read(_ name: String) -> [UInt8]? {
        let file: OwnedDescriptor
        do { file = try OwnedDescriptor(opening: name, in: dir, flags: O_RDONLY | O_NOFOLLOW) } catch { return nil }
        return try? FileIO.readAll(fd: file.rawValue, path: file.path)
    }

    func exists(_ name: String) -> Bool {
        var st = stat()
        return fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// When `applied` was written (its mtime): everything the sync set was set before.
    func appliedTime() -> (seconds: Int64, nanoseconds: Int64)? {
        var st = stat()
        guard fstatat(fd, "applied", &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return (Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec))
    }

    /// The image and version last applied completely.
    func applied() -> (String, ObjectHash)? {
        guard let bytes = read("applied") else { return nil }
        return KeptManifest.parseRecord(String(decoding: bytes, as: UTF8.self)).map { ($0.image, $0.version) }
    }

    /// The manifest applied last (kept for deltas and for reusing content already on the node),
    /// as stored: `KeptManifest.unpack` makes it usable.
    func keptManifest() -> [UInt8]? { read("manifest") }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        let tmp = "\(name).tmp"
        unlinkat(fd, tmp, 0)
        let file = try OwnedDescriptor(
            opening: tmp, in: dir, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        try bytes.withUnsafeBytes { (b) throws in try FileIO.writeAll(fd: file.rawValue, b, at: 0, path: file.path) }
        try file.sync()
        file.close()
        guard renameat(fd, tmp, fd, name) == 0 else {
            throw SystemError.fromErrno("renaming into place", "\(path)/\(name)")
        }
    }

    func remove(_ name: String) throws {
        if unlinkat(fd, name, 0) != 0 && errno != ENOENT { throw SystemError.fromErrno("removing", "\(path)/\(name)") }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw SystemError.fromErrno("flushing", path) }
    }
}
