import CImageSys
import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Opens directories of the target below its root, one component at a time with O_NOFOLLOW,
/// keeping the chain of the last one open (work runs in path order, so neighbours share it).
final class DirectoryChain {
    let rootfd: Int32
    private var names: [[UInt8]] = []
    private var fds: [Int32] = []

    init(rootfd: Int32) { self.rootfd = rootfd }
    deinit { reset() }

    func reset() {
        for fd in fds { close(fd) }
        names = []
        fds = []
    }

    /// A descriptor of the directory `path` (relative; "" is the root). Valid until the next call.
    func open(_ path: [UInt8]) throws -> Int32 {
        if path.isEmpty { return rootfd }
        let parts = path.split(separator: UInt8(ascii: "/")).map { Array($0) }
        var keep = 0
        while keep < names.count && keep < parts.count && names[keep] == parts[keep] { keep += 1 }
        while fds.count > keep {
            close(fds.removeLast())
            names.removeLast()
        }
        while fds.count < parts.count {
            let parent = fds.last ?? rootfd
            let name = parts[fds.count]
            let fd = withCName(name) { openat(parent, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else {
                let here = parts[0...fds.count].joined(separator: [UInt8(ascii: "/")])
                throw SystemError.fromErrno("opening directory (symlinks are not followed)", displayPath(Array(here)))
            }
            fds.append(fd)
            names.append(name)
        }
        return fds.last!
    }
}

/// One sync's application of a plan.
final class Run: @unchecked Sendable {
    let engine: SyncEngine
    let rootfd: Int32
    let manifest: Manifest
    let observed: ObservedTree
    var report: SyncReport
    /// The manifest applied before (sorted by path), for content already on the node.
    var previous: Manifest?
    let stats = Mutex<(written: UInt64, fetched: Int, reused: Int, refetched: Int)>((0, 0, 0, 0))
    /// New names get unnamed (O_TMPFILE) files linked in when complete, until the filesystem refuses.
    let unnamedFiles = Atomic<Bool>(true)

    init(engine: SyncEngine, rootfd: Int32, manifest: Manifest, observed: ObservedTree, report: SyncReport) {
        self.engine = engine
        self.rootfd = rootfd
        self.manifest = manifest
        self.observed = observed
        self.report = report
    }

    var threads: Int { max(1, engine.options.threads) }

    final class Shared: @unchecked Sendable {
        let next = Atomic<Int>(0)
        let failure = Mutex<(any Error)?>(nil)
        let body: (Worker, Int) throws -> Void
        init(_ body: @escaping (Worker, Int) throws -> Void) { self.body = body }
    }

    /// Runs `body(worker, i)` for i in 0..<count on all threads, stopping at the first error.
    func parallel(_ count: Int, _ body: @escaping (Worker, Int) throws -> Void) throws {
        if count == 0 { return }
        let shared = Shared(body)
        runWorkers(min(threads, count)) {
            let worker = Worker(run: self)
            while shared.failure.withLock({ $0 == nil }) {
                let i = shared.next.add(1, ordering: .relaxed).oldValue
                if i >= count { break }
                do { try shared.body(worker, i) } catch {
                    shared.failure.withLock { if $0 == nil { $0 = error } }
                }
            }
        }
        if let error = shared.failure.withLock({ $0 }) { throw error }
    }

    /// Rehashes files whose metadata matches; returns those whose content does not.
    func checkContent(_ indices: [Int]) throws -> [Int] {
        let bad = Mutex<[Int]>([])
        let batches = stride(from: 0, to: indices.count, by: 256).map {
            Array(indices[$0..<min($0 + 256, indices.count)])
        }
        try parallel(batches.count) { worker, b in
            for i in batches[b] where try !worker.contentMatches(self.manifest.entries[i]) {
                bad.withLock { $0.append(i) }
            }
        }
        return bad.withLock { $0 }.sorted()
    }

    func apply(_ plan: SyncPlan, previous: Manifest?) throws {
        self.previous = previous
        let entries = manifest.entries
        let main = Worker(run: self)

        // 1. Entries in the way of a different type.
        for path in plan.removals {
            try engine.step()
            try main.removeTree(path)
            report.removed += 1
        }
        main.writeDirs.reset()

        // 2. Directories, parents first (final metadata at the end).
        for i in plan.createDirectories {
            try engine.step()
            let e = entries[i]
            let dirfd = try main.writeDirs.open(PathRules.parent(e.path))
            let r = withCName(PathRules.name(e.path)) { mkdirat(dirfd, $0, 0o700) }
            if r != 0 && errno != EEXIST { throw SystemError.fromErrno("creating directory", e.pathString) }
            report.directoriesCreated += 1
        }
        main.writeDirs.reset()

        // 3. File contents, on all threads, in batches that each take one stream of objects.
        let local = localIndex(plan: plan, previous: previous)
        let batches = makeBatches(plan.writeFiles)
        if let progress = engine.options.progress {
            progress.filesPlanned.store(plan.writeFiles.count, ordering: .relaxed)
            let bytes = plan.writeFiles.reduce(0) { $0 + Int(entries[$1].size) }
            progress.bytesPlanned.store(bytes, ordering: .relaxed)
        }
        try parallel(batches.count) { worker, b in try worker.writeBatch(batches[b], local: local) }
        report.filesWritten = plan.writeFiles.count

        // 4. Symlinks, devices, fifos, sockets; then other names of hardlinked entries.
        for i in plan.createOthers {
            try engine.step()
            try main.createOther(entries[i])
        }
        report.othersCreated = plan.createOthers.count
        for i in plan.links {
            try engine.step()
            if try main.link(entries[i], to: entries[entries[i].linkIndex]) { report.linksMade += 1 }
        }

        // 5. Metadata of entries whose content was already right.
        for i in plan.fixMetadata {
            try engine.step()
            try main.fixMetadata(entries[i])
        }
        report.metadataFixed = plan.fixMetadata.count

        // 6. What the image no longer has (last, so that its content could be reused above).
        for path in plan.deletions {
            try engine.step()
            try main.removeTree(path)
            report.deleted += 1
        }
        main.writeDirs.reset()

        // 7. Directory metadata, deepest first, the root last.
        for i in plan.directoryMetadata {
            try engine.step()
            try main.setDirectoryMetadata(entries[i])
        }
        let s = stats.withLock { $0 }
        report.bytesWritten = s.written
        report.chunksFetched = s.fetched
        report.chunksReused = s.reused
        report.objectsRefetched = s.refetched
    }

    /// Chunks already on the target: in files of this manifest that stay as they are, and in
    /// files of the previous manifest whose size and mtime still match (moved or copied content).
    /// Every read is checked against the hash, so a wrong guess only costs a fetch.
    func localIndex(plan: SyncPlan, previous: Manifest?) -> [ObjectHash: (path: [UInt8], offset: UInt64)] {
        var index: [ObjectHash: (path: [UInt8], offset: UInt64)] = [:]
        let removed = Set(plan.removals.map(TreePath.init))
        func usable(_ e: Entry) -> Bool {
            guard e.kind == .file, !e.chunks.isEmpty, let o = observed[TreePath(e.path)], o.kind == .file,
                o.size == e.size,
                o.mtimeSeconds == e.mtimeSeconds, o.mtimeNanoseconds == e.mtimeNanoseconds
            else { return false }
            var p = PathRules.parent(e.path)
            if removed.isEmpty { return true }
            if removed.contains(TreePath(e.path)) { return false }
            while !p.isEmpty {
                if removed.contains(TreePath(p)) { return false }
                p = PathRules.parent(p)
            }
            return true
        }
        let rewriting = Set(plan.writeFiles)
        for (i, e) in manifest.entries.enumerated() where !rewriting.contains(i) && usable(e) {
            var offset: UInt64 = 0
            for c in e.chunks {
                if !c.isHole && index[c.hash] == nil { index[c.hash] = (e.path, offset) }
                offset += UInt64(c.length)
            }
        }
        for e in previous?.entries ?? [] where usable(e) {
            var offset: UInt64 = 0
            for c in e.chunks {
                if !c.isHole && index[c.hash] == nil { index[c.hash] = (e.path, offset) }
                offset += UInt64(c.length)
            }
        }
        return index
    }

    /// The previous manifest's entry for `path` if the node still has it unchanged (same size and
    /// mtime): its chunks are where it says.
    func previousFile(_ path: [UInt8]) -> Entry? {
        guard let entries = previous?.entries else { return nil }
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pathLess(entries[mid].path, path) { lo = mid + 1 } else { hi = mid }
        }
        guard lo < entries.count, entries[lo].path == path else { return nil }
        let e = entries[lo]
        guard e.kind == .file, let o = observed[TreePath(path)], o.kind == .file, o.size == e.size,
            o.mtimeSeconds == e.mtimeSeconds, o.mtimeNanoseconds == e.mtimeNanoseconds
        else { return nil }
        return e
    }

    /// Consecutive runs of files (path order keeps directories together), sized so that
    /// both threads stay busy and each batch is one request to the source.
    func makeBatches(_ files: [Int]) -> [[Int]] {
        let total = files.reduce(UInt64(0)) { $0 + manifest.entries[$1].size }
        let target = max(total / UInt64(threads * 8), 4 << 20)
        var batches: [[Int]] = []
        var current: [Int] = []
        var bytes: UInt64 = 0
        for i in files {
            current.append(i)
            bytes += manifest.entries[i].size + 4096
            if bytes >= target || current.count >= 4096 {
                batches.append(current)
                current = []
                bytes = 0
            }
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }
}
