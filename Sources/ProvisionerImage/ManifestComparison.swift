/// What differs between two versions of an image, entry by entry (`image diff A B`, the summary of
/// every publish). Pure: both manifests are sorted by path, so one merge pass compares them.
public enum ManifestComparison {
    /// One path that differs.
    public struct Difference: Hashable, Sendable {
        public enum Change: String, Hashable, Sendable {
            case added, removed, changed
        }
        public var path: [UInt8]
        public var change: Change
        /// For `changed`: which aspects (`kind`, `content`, `mode`, `owner`, `mtime`, `xattrs`,
        /// `target`, `device`, `link`), in that order.
        public var aspects: [String]

        public init(path: [UInt8], change: Change, aspects: [String] = []) {
            self.path = path
            self.change = change
            self.aspects = aspects
        }

        public var pathString: String { path.isEmpty ? "/" : String(decoding: path, as: UTF8.self) }
    }

    /// Counts of a comparison: entries added, changed and removed, and the bytes of file content
    /// that is new in `new` (added files, and files whose content changed).
    public struct Summary: Hashable, Sendable {
        public var added = 0
        public var changed = 0
        public var removed = 0
        public var contentBytes: UInt64 = 0
        public init() {}
        public var isEmpty: Bool { added == 0 && changed == 0 && removed == 0 }
    }

    /// Every difference from `old` (nil: an empty image) to `new`, in path order.
    public static func differences(old: Manifest?, new: Manifest) -> [Difference] {
        compare(old: old, new: new).differences
    }

    public static func summary(old: Manifest?, new: Manifest) -> Summary {
        compare(old: old, new: new).summary
    }

    public static func compare(old: Manifest?, new: Manifest) -> (differences: [Difference], summary: Summary) {
        let a = old?.entries ?? []
        let b = new.entries
        var out: [Difference] = []
        var summary = Summary()
        var i = 0
        var j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && pathLess(a[i].path, b[j].path)) {
                out.append(Difference(path: a[i].path, change: .removed))
                summary.removed += 1
                i += 1
            } else if i == a.count || pathLess(b[j].path, a[i].path) {
                out.append(Difference(path: b[j].path, change: .added))
                summary.added += 1
                if b[j].kind == .file { summary.contentBytes += b[j].size }
                j += 1
            } else {
                let aspects = Self.aspects(a[i], in: a, b[j], in: b)
                if !aspects.isEmpty {
                    out.append(Difference(path: b[j].path, change: .changed, aspects: aspects))
                    summary.changed += 1
                    if b[j].kind == .file && (aspects.contains("content") || aspects.contains("kind")) {
                        summary.contentBytes += b[j].size
                    }
                }
                i += 1
                j += 1
            }
        }
        return (out, summary)
    }

    /// Which aspects of one path differ (hardlinks compare the path they name, not its index).
    static func aspects(_ x: Entry, in xs: [Entry], _ y: Entry, in ys: [Entry]) -> [String] {
        guard x.kind == y.kind else { return ["kind"] }
        if x.kind == .hardlink {
            let xt = xs.indices.contains(x.linkIndex) ? xs[x.linkIndex].path : []
            let yt = ys.indices.contains(y.linkIndex) ? ys[y.linkIndex].path : []
            return xt == yt ? [] : ["link"]
        }
        var out: [String] = []
        if x.kind == .file && (x.size != y.size || x.chunks != y.chunks) { out.append("content") }
        if x.mode != y.mode { out.append("mode") }
        if x.uid != y.uid || x.gid != y.gid { out.append("owner") }
        // A directory's mtime follows what is inside it; it is not a change of its own.
        if x.kind != .directory && (x.mtimeSeconds != y.mtimeSeconds || x.mtimeNanoseconds != y.mtimeNanoseconds) {
            out.append("mtime")
        }
        if x.xattrs != y.xattrs { out.append("xattrs") }
        if x.kind == .symlink && x.target != y.target { out.append("target") }
        if (x.kind == .charDevice || x.kind == .blockDevice) && (x.major != y.major || x.minor != y.minor) {
            out.append("device")
        }
        return out
    }
}
