/// A manifest that cannot be used, saying which entry and which rule.
public struct ManifestError: Error, Hashable, Sendable, CustomStringConvertible {
    public var entry: String?
    public var problem: String
    public init(entry: String?, _ problem: String) {
        self.entry = entry
        self.problem = problem
    }
    public var description: String {
        if let entry { return "invalid manifest: entry \"\(entry)\": \(problem)" }
        return "invalid manifest: \(problem)"
    }
}

/// Limits a manifest must respect (see docs/image-format.md).
public enum ManifestLimits {
    public static let maxEntries = 50_000_000
    public static let maxPath = 4096
    public static let maxComponent = 255
    public static let maxChunk: UInt32 = 4 << 20
    public static let maxFileSize: UInt64 = 1 << 44
    public static let maxXattrName = 255
    public static let maxXattrValue = 65536
    public static let maxSymlinkTarget = 4095
}

/// The binary manifest encoding, version 1 (docs/image-format.md).
public enum ManifestCodec {
    static let magic: [UInt8] = Array("PIMG".utf8)
    static let formatVersion: UInt8 = 1

    public static func encode(_ manifest: Manifest) -> [UInt8] {
        var out = ByteWriter()
        out.bytes.reserveCapacity(manifest.entries.count * 96 + 16)
        out.bytes.append(contentsOf: magic)
        out.bytes.append(formatVersion)
        out.varint(UInt64(manifest.entries.count))
        var previous: [UInt8] = []
        for e in manifest.entries {
            var shared = 0
            let limit = min(previous.count, e.path.count)
            while shared < limit && previous[shared] == e.path[shared] { shared += 1 }
            out.varint(UInt64(shared))
            out.varint(UInt64(e.path.count - shared))
            out.bytes.append(contentsOf: e.path[shared...])
            previous = e.path
            out.bytes.append(e.kind.rawValue)
            if e.kind == .hardlink {
                out.varint(UInt64(e.linkIndex))
                continue
            }
            out.varint(UInt64(e.mode))
            out.varint(UInt64(e.uid))
            out.varint(UInt64(e.gid))
            out.varint(UInt64(bitPattern: (e.mtimeSeconds << 1) ^ (e.mtimeSeconds >> 63)))
            out.varint(UInt64(e.mtimeNanoseconds))
            out.varint(UInt64(e.xattrs.count))
            for x in e.xattrs {
                out.varint(UInt64(x.name.count))
                out.bytes.append(contentsOf: x.name)
                out.varint(UInt64(x.value.count))
                out.bytes.append(contentsOf: x.value)
            }
            switch e.kind {
            case .file:
                out.varint(e.size)
                out.varint(UInt64(e.chunks.count))
                for c in e.chunks {
                    out.varint(UInt64(c.length))
                    c.hash.append(to: &out.bytes)
                }
            case .symlink:
                out.varint(UInt64(e.target.count))
                out.bytes.append(contentsOf: e.target)
            case .charDevice, .blockDevice:
                out.varint(UInt64(e.major))
                out.varint(UInt64(e.minor))
            case .directory, .fifo, .socket, .hardlink:
                break
            }
        }
        return out.bytes
    }

    /// Decodes and validates every rule of the format; refuses anything else.
    public static func decode(_ bytes: [UInt8]) throws -> Manifest {
        try bytes.withUnsafeBytes { (buffer) throws -> Manifest in try decode(buffer) }
    }

    public static func decode(_ buffer: UnsafeRawBufferPointer) throws -> Manifest {
        var r = ByteReader(buffer)
        guard buffer.count >= 5, Array(buffer[0..<4]) == magic else {
            throw ManifestError(entry: nil, "not a manifest (no PIMG header)")
        }
        r.offset = 4
        let version = try r.byte(nil)
        guard version == formatVersion else {
            throw ManifestError(
                entry: nil, "format version \(version) is not supported (this agent reads \(formatVersion))")
        }
        let count = try r.varint(nil)
        guard count <= UInt64(ManifestLimits.maxEntries) else {
            throw ManifestError(entry: nil, "\(count) entries, more than the \(ManifestLimits.maxEntries) allowed")
        }
        // Every entry takes at least 3 bytes; refuse counts the data cannot hold before reserving.
        guard count <= UInt64(buffer.count) / 3 else {
            throw ManifestError(
                entry: nil, "declares \(count) entries but holds only \(buffer.count) bytes (truncated?)")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        var directories = Set<TreePath>()
        var previous: [UInt8] = []
        for index in 0..<Int(count) {
            let label = { String(decoding: previous, as: UTF8.self) }
            let shared = try r.varint(label())
            let rest = try r.varint(label())
            guard shared <= UInt64(previous.count), rest <= UInt64(ManifestLimits.maxPath) else {
                throw ManifestError(entry: "#\(index) after \(label())", "bad path encoding")
            }
            var path = Array(previous[0..<Int(shared)])
            path.append(contentsOf: try r.bytes(Int(rest), label()))
            // Canonical: the shared prefix is the longest one (as the encoder writes it).
            if Int(shared) < min(previous.count, path.count) && previous[Int(shared)] == path[Int(shared)] {
                throw ManifestError(entry: "#\(index) after \(label())", "bad path encoding (prefix not fully shared)")
            }
            var name: String { String(decoding: path, as: UTF8.self) }
            guard let kind = EntryKind(rawValue: try r.byte(name)) else {
                throw ManifestError(entry: name, "unknown entry kind")
            }
            if index == 0 {
                guard path.isEmpty, kind == .directory else {
                    throw ManifestError(entry: name, "the first entry must be the root directory (path \"\")")
                }
            } else {
                if let problem = PathRules.problem(path) { throw ManifestError(entry: name, problem) }
                guard pathLess(previous, path) else {
                    throw ManifestError(
                        entry: name, "paths are not in strictly increasing order (duplicate or unsorted)")
                }
                if path.starts(with: stateDirectoryName)
                    && (path.count == stateDirectoryName.count || path[stateDirectoryName.count] == UInt8(ascii: "/"))
                {
                    throw ManifestError(entry: name, "uses the reserved name .provisioner-state")
                }
                let parent = PathRules.parent(path)
                guard directories.contains(TreePath(parent)) else {
                    throw ManifestError(entry: name, "its parent directory is not an earlier entry")
                }
            }
            var e = Entry(path: path, kind: kind)
            if kind == .hardlink {
                let target = try r.varint(name)
                guard target < UInt64(index) else {
                    throw ManifestError(entry: name, "hardlink to entry #\(target), which is not an earlier entry")
                }
                let t = entries[Int(target)]
                guard t.kind != .directory && t.kind != .hardlink else {
                    throw ManifestError(entry: name, "hardlink to \(t.kind.name) \"\(t.pathString)\"")
                }
                e.linkIndex = Int(target)
            } else {
                let mode = try r.varint(name)
                guard mode <= 0o7777 else { throw ManifestError(entry: name, "mode \(mode) is not within 07777") }
                e.mode = UInt32(mode)
                e.uid = try r.u32(name, "uid")
                e.gid = try r.u32(name, "gid")
                let zz = try r.varint(name)
                e.mtimeSeconds = Int64(bitPattern: zz >> 1) ^ -Int64(bitPattern: zz & 1)
                let ns = try r.varint(name)
                guard ns < 1_000_000_000 else {
                    throw ManifestError(entry: name, "mtime nanoseconds \(ns) out of range")
                }
                e.mtimeNanoseconds = UInt32(ns)
                let xcount = try r.varint(name)
                guard xcount <= 4096 else { throw ManifestError(entry: name, "\(xcount) xattrs, more than 4096") }
                for _ in 0..<Int(xcount) {
                    let n = try r.varint(name)
                    guard n >= 1, n <= UInt64(ManifestLimits.maxXattrName) else {
                        throw ManifestError(entry: name, "xattr name of \(n) bytes")
                    }
                    let xname = try r.bytes(Int(n), name)
                    guard !xname.contains(0) else { throw ManifestError(entry: name, "xattr name contains NUL") }
                    let v = try r.varint(name)
                    guard v <= UInt64(ManifestLimits.maxXattrValue) else {
                        throw ManifestError(
                            entry: name, "xattr value of \(v) bytes, more than \(ManifestLimits.maxXattrValue)")
                    }
                    e.xattrs.append(Xattr(name: xname, value: try r.bytes(Int(v), name)))
                }
                switch kind {
                case .file:
                    e.size = try r.varint(name)
                    guard e.size <= ManifestLimits.maxFileSize else {
                        throw ManifestError(
                            entry: name, "size \(e.size) is more than the \(ManifestLimits.maxFileSize) allowed")
                    }
                    let n = try r.varint(name)
                    guard n <= e.size, n <= UInt64(r.remaining / 33) else {
                        throw ManifestError(entry: name, "\(n) chunks cannot make \(e.size) bytes (or truncated)")
                    }
                    e.chunks.reserveCapacity(Int(n))
                    var total: UInt64 = 0
                    for _ in 0..<Int(n) {
                        let length = try r.varint(name)
                        let hash = try r.hash(name)
                        let limit = hash == .hole ? Chunk.maxHole : ManifestLimits.maxChunk
                        guard length >= 1, length <= UInt64(limit) else {
                            throw ManifestError(
                                entry: name,
                                "\(hash == .hole ? "hole" : "chunk") of \(length) bytes (1 to \(limit))")
                        }
                        total += length
                        e.chunks.append(Chunk(length: UInt32(length), hash: hash))
                    }
                    guard total == e.size else {
                        throw ManifestError(entry: name, "chunks add up to \(total) bytes, size says \(e.size)")
                    }
                case .symlink:
                    let n = try r.varint(name)
                    guard n >= 1, n <= UInt64(ManifestLimits.maxSymlinkTarget) else {
                        throw ManifestError(entry: name, "symlink target of \(n) bytes")
                    }
                    e.target = try r.bytes(Int(n), name)
                    guard !e.target.contains(0) else { throw ManifestError(entry: name, "symlink target contains NUL") }
                case .charDevice, .blockDevice:
                    e.major = try r.u32(name, "major")
                    e.minor = try r.u32(name, "minor")
                case .directory:
                    directories.insert(TreePath(path))
                case .fifo, .socket, .hardlink:
                    break
                }
            }
            entries.append(e)
            previous = path
        }
        guard r.remaining == 0 else {
            throw ManifestError(entry: nil, "\(r.remaining) bytes left over after the last entry")
        }
        return Manifest(entries: entries)
    }

    /// The version id of an encoded manifest.
    public static func versionID(of encoded: [UInt8]) -> ObjectHash { ObjectHash.of(encoded) }
}

/// The rules every relative path in a manifest or on the command line must follow.
public enum PathRules {
    /// Why `path` is not an acceptable relative path, or nil if it is.
    public static func problem(_ path: [UInt8]) -> String? {
        if path.isEmpty { return "empty path" }
        if path.count > ManifestLimits.maxPath {
            return "path of \(path.count) bytes, more than \(ManifestLimits.maxPath)"
        }
        if path[0] == UInt8(ascii: "/") { return "absolute path" }
        // One pass: component boundaries, NUL, "." and "..".
        var start = 0
        var i = 0
        let n = path.count
        while i <= n {
            if i == n || path[i] == UInt8(ascii: "/") {
                let length = i - start
                if length == 0 { return "empty path component" }
                if length > ManifestLimits.maxComponent {
                    return "name of \(length) bytes, more than \(ManifestLimits.maxComponent)"
                }
                if path[start] == UInt8(ascii: ".") {
                    if length == 1 { return "\".\" component" }
                    if length == 2 && path[start + 1] == UInt8(ascii: ".") { return "\"..\" component escapes" }
                }
                start = i + 1
            } else if path[i] == 0 {
                return "path contains NUL"
            }
            i += 1
        }
        return nil
    }

    /// The parent of a valid path ("" for top-level names).
    public static func parent(_ path: [UInt8]) -> [UInt8] {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return [] }
        return Array(path[..<slash])
    }

    /// The last component.
    public static func name(_ path: [UInt8]) -> [UInt8] {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return path }
        return Array(path[(slash + 1)...])
    }

    /// True if `path` is `prefix` or below it.
    public static func isWithin(_ path: [UInt8], _ prefix: [UInt8]) -> Bool {
        if prefix.isEmpty { return true }
        guard path.count >= prefix.count, path.starts(with: prefix) else { return false }
        return path.count == prefix.count || path[prefix.count] == UInt8(ascii: "/")
    }
}

/// Appends varints and bytes.
struct ByteWriter {
    var bytes: [UInt8] = []

    @inline(__always)
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
}

/// Reads varints and bytes from a buffer; running past the end is a ManifestError.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    var remaining: Int { buffer.count - offset }

    @inline(__always)
    mutating func byte(_ entry: @autoclosure () -> String?) throws -> UInt8 {
        guard offset < buffer.count else { throw ManifestError(entry: entry(), "truncated") }
        defer { offset += 1 }
        return buffer[offset]
    }

    @inline(__always)
    mutating func varint(_ entry: @autoclosure () -> String?) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < buffer.count else { throw ManifestError(entry: entry(), "truncated") }
            let b = buffer[offset]
            offset += 1
            guard shift < 64, shift < 63 || b <= 1 else {
                throw ManifestError(entry: entry(), "varint longer than 64 bits")
            }
            // One spelling per number: the encoding, and so a version's id, is canonical.
            guard b != 0 || shift == 0 else { throw ManifestError(entry: entry(), "varint not in its shortest form") }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    mutating func u32(_ entry: @autoclosure () -> String, _ field: String) throws -> UInt32 {
        let v = try varint(entry())
        guard v <= UInt64(UInt32.max) else { throw ManifestError(entry: entry(), "\(field) \(v) out of range") }
        return UInt32(v)
    }

    mutating func bytes(_ n: Int, _ entry: @autoclosure () -> String?) throws -> [UInt8] {
        guard n <= remaining else { throw ManifestError(entry: entry(), "truncated") }
        defer { offset += n }
        return Array(UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + n)]))
    }

    mutating func hash(_ entry: @autoclosure () -> String) throws -> ObjectHash {
        guard 32 <= remaining else { throw ManifestError(entry: entry(), "truncated") }
        defer { offset += 32 }
        return ObjectHash(raw: buffer.baseAddress! + offset)
    }
}
