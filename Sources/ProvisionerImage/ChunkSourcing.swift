/// Where one chunk of a file to write comes from.
public enum ChunkOrigin: Hashable, Sendable {
    /// Already on the target (a file the previous manifest or this one says holds it).
    case local(path: [UInt8], offset: UInt64)
    /// The next object of the batch's stream.
    case stream
    /// Obtained earlier in this batch: read back from where it was written.
    case earlier
    /// A hole: nothing to obtain or write.
    case hole
}

/// The old chunk at a new chunk's offset in the file's previous version: the source may send
/// the new chunk as a delta from it.
public struct DeltaBase: Hashable, Sendable {
    public var hash: ObjectHash
    public var path: [UInt8]
    public var offset: UInt64
    public var length: Int

    public init(hash: ObjectHash, path: [UInt8], offset: UInt64, length: Int) {
        self.hash = hash
        self.path = path
        self.offset = offset
        self.length = length
    }
}

/// A batch of files' chunks, sourced: decided before a byte is fetched or written.
public struct ChunkSourcing: Hashable, Sendable {
    /// One per chunk of the batch's files, files in batch order, chunks in file order.
    public var origins: [ChunkOrigin] = []
    /// The objects the source sends, each once, in the order they are first used.
    public var wanted: [ObjectHash] = []
    /// Wanted objects that may come as a delta from an old chunk the node has.
    public var bases: [ObjectHash: DeltaBase] = [:]
}

extension Differ {
    /// Where every chunk of a batch of files comes from. `files` are the batch's entries, each with
    /// the previous manifest's entry for its path when the node still has that version unchanged;
    /// `local` says where a chunk already on the node is. A chunk comes from the node when it is
    /// there, from an earlier write of this batch when the batch already obtained it, and from
    /// the source's stream otherwise (once per batch); a streamed chunk of a file the node has an
    /// older version of names the old chunk at the same offset as a delta base, unless that is a
    /// hole or the same chunk.
    public static func sourceChunks(
        _ files: [(entry: Entry, previous: Entry?)], local: [ObjectHash: (path: [UInt8], offset: UInt64)]
    ) -> ChunkSourcing {
        var result = ChunkSourcing()
        var seen = Set<ObjectHash>()
        for (entry, old) in files {
            var oldOffsets: [UInt64] = []
            if let old {
                var o: UInt64 = 0
                for c in old.chunks {
                    oldOffsets.append(o)
                    o += UInt64(c.length)
                }
            }
            var offset: UInt64 = 0
            for c in entry.chunks {
                defer { offset += UInt64(c.length) }
                if c.isHole {
                    result.origins.append(.hole)
                    continue
                }
                if let old, !seen.contains(c.hash), local[c.hash] == nil, !old.chunks.isEmpty {
                    // The old chunk holding this offset (binary search over the old offsets).
                    var lo = 0
                    var hi = oldOffsets.count - 1
                    while lo < hi {
                        let mid = (lo + hi + 1) / 2
                        if oldOffsets[mid] <= offset { lo = mid } else { hi = mid - 1 }
                    }
                    let b = old.chunks[lo]
                    if b.hash != c.hash && !b.isHole {
                        result.bases[c.hash] = DeltaBase(
                            hash: b.hash, path: old.path, offset: oldOffsets[lo], length: Int(b.length))
                    }
                }
                if seen.contains(c.hash) {
                    result.origins.append(.earlier)
                } else if let ref = local[c.hash] {
                    result.origins.append(.local(path: ref.path, offset: ref.offset))
                    seen.insert(c.hash)
                } else {
                    result.origins.append(.stream)
                    result.wanted.append(c.hash)
                    seen.insert(c.hash)
                }
            }
        }
        return result
    }

    /// The plan after the content check found files whose bytes differ from the manifest
    /// (`mismatched`, manifest indices): they are written instead of having their metadata fixed,
    /// the other names of a rewritten hardlinked file are linked again, and each one's parent
    /// directory gets its metadata set again (deepest first, as the plan keeps them).
    public static func rewrite(_ plan: SyncPlan, manifest: Manifest, mismatched: [Int]) -> SyncPlan {
        guard !mismatched.isEmpty else { return plan }
        var plan = plan
        let entries = manifest.entries
        let set = Set(mismatched)
        plan.writeFiles = Array(Set(plan.writeFiles).union(set)).sorted()
        // A rewritten primary needs its other names linked again.
        for (i, e) in entries.enumerated() where e.kind == .hardlink && set.contains(e.linkIndex) {
            if !plan.links.contains(i) { plan.links.append(i) }
        }
        plan.links.sort()
        plan.fixMetadata.removeAll { set.contains($0) }
        for i in mismatched {
            let parentPath = PathRules.parent(entries[i].path)
            let parent = entries.firstIndex { $0.path == parentPath }
            if let parent, !plan.directoryMetadata.contains(parent) { plan.directoryMetadata.append(parent) }
        }
        plan.directoryMetadata.sort { pathLess(entries[$1].path, entries[$0].path) }
        return plan
    }
}
