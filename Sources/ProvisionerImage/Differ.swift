/// How hard the sync looks at what is already on the target.
public enum VerifyLevel: String, Sendable, CaseIterable {
    /// Trust the recorded applied version: if it is the wanted one, touch nothing.
    case stamp
    /// Compare every entry's metadata (type, mode, owner, mtime, size, xattrs, target, device).
    case metadata
    /// Also rehash the content of every file whose metadata matches.
    case content
}

/// What the sync must do to make the target identical to a manifest. Lists hold manifest
/// indices (or observed paths for removals), each in the order it must run.
public struct SyncPlan: Hashable, Sendable {
    /// Observed entries in the way of a manifest entry of another type that rename cannot
    /// replace (directory in place of a non-directory, or the reverse): removed (recursively) first.
    public var removals: [[UInt8]] = []
    /// Directories to create, parents first.
    public var createDirectories: [Int] = []
    /// Files whose content must be written (new, changed, or sharing an inode they must not).
    public var writeFiles: [Int] = []
    /// Files whose metadata matches; rehashed at the `content` level.
    public var checkContent: [Int] = []
    /// Symlinks, devices, fifos and sockets to create or replace.
    public var createOthers: [Int] = []
    /// Hardlink entries to (re)link to their first name.
    public var links: [Int] = []
    /// Existing non-directories whose metadata only must change.
    public var fixMetadata: [Int] = []
    /// Observed entries not in the image, top-most only (removed recursively at the end).
    public var deletions: [[UInt8]] = []
    /// Directories whose metadata must be set, deepest first (so a parent's mtime is set last).
    public var directoryMetadata: [Int] = []
    /// Entries left alone because a preserved path is in the way, with the reason.
    public var conflicts: [String] = []

    public init() {}

    public var isEmpty: Bool {
        removals.isEmpty && createDirectories.isEmpty && writeFiles.isEmpty && createOthers.isEmpty
            && links.isEmpty && fixMetadata.isEmpty && deletions.isEmpty && directoryMetadata.isEmpty
    }
}

/// The pure differ: manifest + observed tree -> plan. No I/O.
public enum Differ {
    /// Metadata that applies to an entry of the manifest's kind (symlink modes are not compared: Linux
    /// has none to set).
    public static func metadataMatches(_ e: Entry, _ o: Observed) -> Bool {
        (e.kind == .symlink || e.mode == o.mode) && e.uid == o.uid && e.gid == o.gid
            && e.mtimeSeconds == o.mtimeSeconds && e.mtimeNanoseconds == o.mtimeNanoseconds
            && (!o.xattrsRead || e.xattrs == o.xattrs)
    }

    /// A directory that holds a preserved path changes its mtime whenever the node writes there
    /// (a log rotated, /etc/.updated made): only its other metadata is compared.
    static func directoryMetadataMatches(_ e: Entry, _ o: Observed, holdsPreserved: Bool) -> Bool {
        if metadataMatches(e, o) { return true }
        guard holdsPreserved else { return false }
        return e.mode == o.mode && e.uid == o.uid && e.gid == o.gid && (!o.xattrsRead || e.xattrs == o.xattrs)
    }

    /// The seeded paths that are preserved in this sync: those the node has (`exists`). The others
    /// are created from the image like any entry, and are the node's from then on.
    public static func seededNow(_ seeded: [[UInt8]], exists: ([UInt8]) -> Bool) -> [[UInt8]] {
        seeded.filter { PathRules.problem($0) == nil && exists($0) }
    }

    public static func plan(
        manifest: Manifest, observed: ObservedTree, preserved: [[UInt8]] = [], verify: VerifyLevel = .metadata
    ) -> SyncPlan {
        var plan = SyncPlan()
        let entries = manifest.entries
        func isPreserved(_ path: [UInt8]) -> Bool {
            !preserved.isEmpty && preserved.contains { PathRules.isWithin(path, $0) }
        }
        func holdsPreserved(_ path: [UInt8]) -> Bool {
            !preserved.isEmpty && preserved.contains { PathRules.isWithin($0, path) }
        }

        var linkCount = [Int](repeating: 1, count: entries.count)
        for e in entries where e.kind == .hardlink { linkCount[e.linkIndex] += 1 }

        var removed = Set<TreePath>()  // observed paths that go away before creation
        var rewritten = Set<Int>()  // primaries that get a new inode
        var touchedDirs = Set<TreePath>()  // directories whose children change
        var matched = 0  // observed entries that are in the manifest

        func touch(_ path: [UInt8]) { touchedDirs.insert(TreePath(PathRules.parent(path))) }

        for (i, e) in entries.enumerated() {
            if i == 0 {
                if let o = observed[TreePath([])] {
                    matched += 1
                    if !directoryMetadataMatches(e, o, holdsPreserved: !preserved.isEmpty) {
                        touchedDirs.insert(TreePath([]))
                    }
                }
                continue
            }
            let key = TreePath(e.path)
            let o = observed[key]
            if o != nil { matched += 1 }
            if isPreserved(e.path) { continue }
            if e.kind == .hardlink {
                if let o, o.kind == .directory {
                    if holdsPreserved(e.path) {
                        plan.conflicts.append("\(e.pathString): a preserved path is inside the directory in the way")
                        continue
                    }
                    plan.removals.append(e.path)
                    removed.insert(key)
                }
                plan.links.append(i)  // checked and done after the primaries are final
                continue
            }
            guard let o, removed.isEmpty || !removed.contains(TreePath(PathRules.parent(e.path))) else {
                create(i, e)
                continue
            }
            if (o.kind == .directory) != (e.kind == .directory) {
                if o.kind == .directory && holdsPreserved(e.path) {
                    plan.conflicts.append("\(e.pathString): a preserved path is inside the directory in the way")
                    continue
                }
                plan.removals.append(e.path)
                removed.insert(key)
                create(i, e)
                continue
            }
            if o.kind != e.kind {  // non-directory to another non-directory: replaced by rename
                create(i, e)
                continue
            }
            switch e.kind {
            case .file:
                if o.size != e.size || o.mtimeSeconds != e.mtimeSeconds || o.mtimeNanoseconds != e.mtimeNanoseconds
                    || o.links > UInt64(linkCount[i])
                {
                    plan.writeFiles.append(i)
                    rewritten.insert(i)
                    touch(e.path)
                } else {
                    if !metadataMatches(e, o) { plan.fixMetadata.append(i) }
                    if verify == .content { plan.checkContent.append(i) }
                }
            case .directory:
                if !directoryMetadataMatches(e, o, holdsPreserved: holdsPreserved(e.path)) { touchedDirs.insert(key) }
            case .symlink, .charDevice, .blockDevice:
                if o.target != e.target || o.major != e.major || o.minor != e.minor || o.links > UInt64(linkCount[i]) {
                    create(i, e)
                } else if !metadataMatches(e, o) {
                    plan.fixMetadata.append(i)
                }
            case .fifo, .socket:
                if o.links > UInt64(linkCount[i]) {
                    create(i, e)
                } else if !metadataMatches(e, o) {
                    plan.fixMetadata.append(i)
                }
            case .hardlink:
                break
            }
        }

        func create(_ i: Int, _ e: Entry) {
            touch(e.path)
            switch e.kind {
            case .directory:
                plan.createDirectories.append(i)
                touchedDirs.insert(TreePath(e.path))
            case .file:
                plan.writeFiles.append(i)
                rewritten.insert(i)
            default:
                plan.createOthers.append(i)
                rewritten.insert(i)
            }
        }

        // Hardlinks that already point at their (unchanged) primary need nothing.
        plan.links = plan.links.filter { i in
            let e = entries[i]
            guard !rewritten.contains(e.linkIndex), let o = observed[TreePath(e.path)],
                !removed.contains(TreePath(e.path)),
                let p = observed[TreePath(entries[e.linkIndex].path)]
            else {
                touch(e.path)
                return true
            }
            if o.device == p.device && o.inode == p.inode { return false }
            touch(e.path)
            return true
        }

        // Deletions: observed entries that are not in the image, top-most only. Most syncs have
        // none, which the count tells without building a set of every path.
        if matched < observed.count {
            var wanted = Set<TreePath>(minimumCapacity: entries.count)
            for e in entries { wanted.insert(TreePath(e.path)) }
            let extras = observed.keys.filter { !wanted.contains($0) }.map(\.bytes).sorted(by: pathLess)
            var deleted = Set<TreePath>()
            for path in extras where !path.isEmpty {
                let parent = TreePath(PathRules.parent(path))
                if deleted.contains(parent) || removed.contains(parent) {
                    deleted.insert(TreePath(path))
                    continue
                }
                if isPreserved(path) { continue }
                if observed[TreePath(path)]?.kind == .directory && holdsPreserved(path) {
                    continue  // kept for the preserved path; its other children are deleted one by one
                }
                plan.deletions.append(path)
                deleted.insert(TreePath(path))
                touch(path)
            }
        }
        for path in plan.removals { touch(path) }

        // Directory metadata: every touched directory that is in the manifest, deepest first.
        var touchedIndices: [Int] = []
        if !touchedDirs.isEmpty {
            for (i, e) in entries.enumerated() where e.kind == .directory && touchedDirs.contains(TreePath(e.path)) {
                if e.path.isEmpty || !isPreserved(e.path) { touchedIndices.append(i) }
            }
        }
        plan.directoryMetadata = touchedIndices.reversed()  // manifest order reversed: children before parents
        return plan
    }
}
