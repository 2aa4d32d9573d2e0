import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The pack stream (docs/image-format.md, "Pack stream"): many objects in one response.
public enum PackFormat {
    public static let magic: [UInt8] = Array("PPK1".utf8)
    public static let maxObject = 64 << 20
    static let object = UInt8(ascii: "O")
    static let missing = UInt8(ascii: "M")
    static let delta = UInt8(ascii: "D")
    static let end = UInt8(ascii: "E")
}

/// Builds a pack stream piece by piece; the server writes each piece as it is made.
public enum PackEncoder {
    public static func header() -> [UInt8] { PackFormat.magic }

    static let objectHeadSize = 37

    /// What precedes an object's stored bytes in its frame: 'O', the raw hash, the length (u32 big-endian).
    static func objectHead(_ hash: ObjectHash, length: Int) -> [UInt8] {
        var out: [UInt8] = [PackFormat.object]
        hash.append(to: &out)
        return out + bigEndian32(length)
    }

    static func bigEndian32(_ length: Int) -> [UInt8] {
        let n = UInt32(length)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
    }

    /// One object frame: `stored` is the object file as stored (a zstd frame).
    public static func object(_ hash: ObjectHash, stored: [UInt8]) -> [UInt8] {
        var out = objectHead(hash, length: stored.count)
        out.reserveCapacity(objectHeadSize + stored.count)
        out.append(contentsOf: stored)
        return out
    }

    /// Pack object frames (docs/image-format.md) for `hashes`, each stored object read straight
    /// into place. Stops before the first object the store does not have (or that is too big);
    /// returns the frames and how many objects they hold.
    public static func objectFrames(_ hashes: [ObjectHash], from store: ImageStore) throws -> (
        frames: [UInt8], count: Int
    ) {
        var fds: [(fd: Int32, size: Int)] = []
        defer { for f in fds { close(f.fd) } }
        var total = 0
        for hash in hashes {
            let path = store.objectPath(hash)
            let fd = FileIO.retry { open(path, O_RDONLY | O_CLOEXEC) }
            if fd < 0 {
                if errno == ENOENT { break }
                throw SystemError.fromErrno("opening", path)
            }
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                close(fd)
                throw SystemError.fromErrno("reading the size of", path)
            }
            if Int(st.st_size) > PackFormat.maxObject {
                close(fd)
                break
            }
            fds.append((fd, Int(st.st_size)))
            total += objectHeadSize + Int(st.st_size)
        }
        var failure: (Int32, Int)? = nil
        let piece = [UInt8](unsafeUninitializedCapacity: total) { buf, initialized in
            var at = 0
            for (i, f) in fds.enumerated() {
                for byte in objectHead(hashes[i], length: f.size) {
                    buf[at] = byte
                    at += 1
                }
                var done = 0
                while done < f.size {
                    let r = FileIO.retrySize { pread(f.fd, buf.baseAddress! + at + done, f.size - done, off_t(done)) }
                    if r <= 0 {
                        failure = (r < 0 ? errno : EIO, i)
                        break
                    }
                    done += r
                }
                if failure != nil { break }
                at += f.size
            }
            initialized = failure == nil ? total : 0
        }
        if let (code, i) = failure { throw SystemError.fromErrno("reading", store.objectPath(hashes[i]), code) }
        return (piece, fds.count)
    }

    /// A delta frame: `payload` is a zstd frame of the object compressed with the base
    /// object's bytes as prefix; the node has the base.
    public static func delta(_ hash: ObjectHash, base: ObjectHash, payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [PackFormat.delta]
        out.reserveCapacity(69 + payload.count)
        hash.append(to: &out)
        base.append(to: &out)
        out.append(contentsOf: bigEndian32(payload.count))
        out.append(contentsOf: payload)
        return out
    }

    /// The frame for one requested object: a delta from `base` when the store has both and the
    /// delta is smaller, else the object as stored, else "missing".
    public static func frame(_ hash: ObjectHash, base: ObjectHash?, from store: ImageStore) throws -> [UInt8] {
        guard let stored = try store.storedObject(hash) else { return missing(hash) }
        if let base, base != hash, let payload = try ObjectDelta.make(hash, stored: stored, base: base, store: store),
            payload.count + 32 < stored.count
        {
            return delta(hash, base: base, payload: payload)
        }
        return object(hash, stored: stored)
    }

    public static func missing(_ hash: ObjectHash) -> [UInt8] {
        var out: [UInt8] = [PackFormat.missing]
        hash.append(to: &out)
        return out
    }

    public static func end() -> [UInt8] { [PackFormat.end] }

    /// A whole pack of `hashes` from `store`, written through `write` frame by frame
    /// (what `POST /v1/objects/pack` sends).
    public static func stream(
        _ hashes: [ObjectHash], bases: [ObjectHash: ObjectHash] = [:], from store: ImageStore,
        write: ([UInt8]) throws -> Void
    ) throws {
        try write(header())
        for hash in hashes { try write(frame(hash, base: bases[hash], from: store)) }
        try write(end())
    }
}

/// A pack stream that breaks the format.
public struct PackError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problem: String
    public var description: String { "invalid pack stream: \(problem)" }
}

public enum PackFrame: Hashable, Sendable {
    case object(ObjectHash, stored: [UInt8])
    case delta(ObjectHash, base: ObjectHash, payload: [UInt8])
    case missing(ObjectHash)
    case end
}

/// Decodes a pack stream incrementally: feed bytes as they arrive, take whole frames out.
public struct PackDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    private var sawHeader = false
    public private(set) var finished = false

    public init() {}

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func feed(_ bytes: [UInt8]) { bytes.withUnsafeBytes { feed($0) } }

    private var available: Int { buffer.count - start }

    /// The next whole frame, or nil if more bytes are needed.
    public mutating func next() throws -> PackFrame? {
        if finished {
            if available > 0 { throw PackError(problem: "\(available) bytes after the end frame") }
            return nil
        }
        if !sawHeader {
            guard available >= 4 else { return nil }
            guard Array(buffer[start..<(start + 4)]) == PackFormat.magic else {
                throw PackError(problem: "no PPK1 header")
            }
            start += 4
            sawHeader = true
        }
        guard available >= 1 else { return nil }
        switch buffer[start] {
        case PackFormat.end:
            start += 1
            finished = true
            return .end
        case PackFormat.missing:
            guard available >= 33 else { return nil }
            let hash = buffer.withUnsafeBytes { ObjectHash(raw: $0.baseAddress! + start + 1) }
            start += 33
            return .missing(hash)
        case PackFormat.object:
            guard available >= 37 else { return nil }
            let n = buffer[(start + 33)..<(start + 37)].reduce(0) { $0 << 8 | Int($1) }
            guard n <= PackFormat.maxObject else {
                throw PackError(problem: "object of \(n) bytes, more than the \(PackFormat.maxObject) allowed")
            }
            guard available >= 37 + n else { return nil }
            let hash = buffer.withUnsafeBytes { ObjectHash(raw: $0.baseAddress! + start + 1) }
            let stored = Array(buffer[(start + 37)..<(start + 37 + n)])
            start += 37 + n
            return .object(hash, stored: stored)
        case PackFormat.delta:
            guard available >= 69 else { return nil }
            let n = buffer[(start + 65)..<(start + 69)].reduce(0) { $0 << 8 | Int($1) }
            guard n <= PackFormat.maxObject else {
                throw PackError(problem: "delta of \(n) bytes, more than the \(PackFormat.maxObject) allowed")
            }
            guard available >= 69 + n else { return nil }
            let (hash, base) = buffer.withUnsafeBytes {
                (ObjectHash(raw: $0.baseAddress! + start + 1), ObjectHash(raw: $0.baseAddress! + start + 33))
            }
            let payload = Array(buffer[(start + 69)..<(start + 69 + n)])
            start += 69 + n
            return .delta(hash, base: base, payload: payload)
        default:
            throw PackError(problem: "unknown frame type \(buffer[start])")
        }
    }

    /// Call when the stream ended: refuses a pack without its end frame.
    public func finish() throws {
        guard finished else { throw PackError(problem: "truncated (no end frame)") }
    }
}

/// Objects sent as the difference from an older object the node has (the same region of the
/// same file in the version it runs): a zstd frame with the base's bytes as prefix.
public enum ObjectDelta {
    /// The delta payload for `hash` against `base`, both from the store (nil if the base is not there).
    public static func make(_ hash: ObjectHash, stored: [UInt8], base: ObjectHash, store: ImageStore) throws -> [UInt8]?
    {
        guard let storedBase = try store.storedObject(base) else { return nil }
        let content = try stored.withUnsafeBytes {
            try Zstd.decompress(
                $0, expectedSize: nil, limit: Int(ManifestLimits.maxChunk), subject: "object \(hash.hex)")
        }
        let baseContent = try storedBase.withUnsafeBytes {
            try Zstd.decompress(
                $0, expectedSize: nil, limit: Int(ManifestLimits.maxChunk), subject: "object \(base.hex)")
        }
        return ManifestDelta.encode(old: baseContent, new: content, level: 3)
    }
}
