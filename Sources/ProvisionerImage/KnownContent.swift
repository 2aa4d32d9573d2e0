/// Content a capture need not read again (docs/images.md, "Capturing a node"): a manifest the
/// node keeps, of the version its last sync applied, and the moment that sync recorded it.
///
/// A regular file whose size and mtime are its entry's and whose ctime is earlier than that
/// moment still holds the entry's content: a write, a truncate, a rename onto its name or a
/// `utimes` since would each have moved its ctime past the moment, and the kernel sets the ctime,
/// never user space. Such a file's chunks are taken from the manifest instead of being read and
/// hashed again: git's index and borg's files cache rest on the same rule. A capture of a node
/// that changed a few files since its sync hashes those few. The rule trusts the clock: one set
/// back after the sync could hide a change made in the time it repeats (`--rehash` reads
/// everything).
public struct KnownContent: Sendable {
    /// What the manifest is, for messages (`debian@c1c54b9e2923, applied by the last sync`).
    public let what: String
    /// The moment the manifest's tree was known to be on the node (the sync's record, written after
    /// its last write).
    public let before: (seconds: Int64, nanoseconds: Int64)
    private let files: [TreePath: Known]

    struct Known: Sendable {
        var size: UInt64
        var mtimeSeconds: Int64
        var mtimeNanoseconds: UInt32
        var chunks: [Chunk]
    }

    /// Why a file is hashed, or that its known chunks are used (rows K1–K4).
    public enum Decision: Equatable, Sendable {
        /// K1: the manifest has no file at this path.
        case unknownPath
        /// K2: its size or mtime is not the manifest's.
        case metadataDiffers
        /// K3: its ctime is not earlier than the moment: it may have changed since.
        case changedSince
        /// K4: untouched since the moment: the manifest's chunks.
        case known([Chunk])
    }

    public init(manifest: Manifest, before: (seconds: Int64, nanoseconds: Int64), what: String) {
        var files: [TreePath: Known] = [:]
        for entry in manifest.entries {
            let file: Entry
            switch entry.kind {
            case .file: file = entry
            case .hardlink where manifest.entries.indices.contains(entry.linkIndex):
                file = manifest.entries[entry.linkIndex]
                guard file.kind == .file else { continue }
            default: continue
            }
            files[TreePath(entry.path)] = Known(
                size: file.size, mtimeSeconds: file.mtimeSeconds, mtimeNanoseconds: file.mtimeNanoseconds,
                chunks: file.chunks)
        }
        self.files = files
        self.before = before
        self.what = what
    }

    /// The decision for the regular file `observed` at `path`.
    public func decide(_ path: [UInt8], _ observed: Observed) -> Decision {
        guard observed.kind == .file, let known = files[TreePath(path)] else { return .unknownPath }
        guard known.size == observed.size, known.mtimeSeconds == observed.mtimeSeconds,
            known.mtimeNanoseconds == observed.mtimeNanoseconds
        else { return .metadataDiffers }
        guard (observed.ctimeSeconds, Int64(observed.ctimeNanoseconds)) < (before.seconds, before.nanoseconds) else {
            return .changedSince
        }
        return .known(known.chunks)
    }
}

/// How a manifest's file contents were found: read and hashed, or known (`KnownContent`).
public struct ContentSources: Sendable, Equatable {
    public var hashedFiles = 0
    public var hashedBytes: UInt64 = 0
    public var knownFiles = 0
    public var knownBytes: UInt64 = 0
    public init() {}
}
