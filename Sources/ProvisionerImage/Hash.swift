import CImageHash

/// The SHA-256 of an object or a manifest: the name under which it is stored and sent.
public struct ObjectHash: Hashable, Comparable, Sendable, CustomStringConvertible {
    // Four big-endian words, so that comparing them compares the bytes.
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public static let zero = ObjectHash(w0: 0, w1: 0, w2: 0, w3: 0)
    /// The hash a manifest gives a hole in a sparse file (no SHA-256 is all zeros): see `Chunk.hole`.
    public static let hole = ObjectHash.zero

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        (self.w0, self.w1, self.w2, self.w3) = (w0, w1, w2, w3)
    }

    /// From 32 raw bytes at `bytes`.
    public init(raw bytes: UnsafeRawPointer) {
        func word(_ i: Int) -> UInt64 { UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
        self.init(w0: word(0), w1: word(1), w2: word(2), w3: word(3))
    }

    /// From 64 hex digits (either case); nil for anything else.
    public init?<S: StringProtocol>(hex: S) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var words = [UInt64](repeating: 0, count: 4)
        for (i, c) in utf8.enumerated() {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            words[i / 16] = words[i / 16] << 4 | UInt64(v)
        }
        self.init(w0: words[0], w1: words[1], w2: words[2], w3: words[3])
    }

    /// The SHA-256 of `bytes`.
    public static func of(_ bytes: UnsafeRawBufferPointer) -> ObjectHash {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &out) { digest in
            CImageHash_sha256(bytes.baseAddress, bytes.count, digest.baseAddress!.assumingMemoryBound(to: UInt8.self))
            return ObjectHash(raw: UnsafeRawPointer(digest.baseAddress!))
        }
    }

    public static func of(_ bytes: [UInt8]) -> ObjectHash {
        bytes.withUnsafeBytes { of($0) }
    }

    /// Appends the 32 raw bytes.
    public func append(to out: inout [UInt8]) {
        for word in [w0, w1, w2, w3] {
            for shift in stride(from: 56, through: 0, by: -8) {
                out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
            }
        }
    }

    public var rawBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        append(to: &out)
        return out
    }

    /// 64 lowercase hex digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in rawBytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    public static func < (a: ObjectHash, b: ObjectHash) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }
}

/// An incremental SHA-256.
public final class StreamingHasher {
    private let ctx: OpaquePointer

    public init() {
        guard let ctx = CImageHash_new() else { fatalError("out of memory allocating a SHA-256 context") }
        self.ctx = ctx
    }

    deinit { CImageHash_free(ctx) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        CImageHash_update(ctx, bytes.baseAddress, bytes.count)
    }

    /// The digest of everything given since the last `finish`; the hasher starts over.
    public func finish() -> ObjectHash {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &out) { digest in
            CImageHash_final(ctx, digest.baseAddress!.assumingMemoryBound(to: UInt8.self))
            return ObjectHash(raw: UnsafeRawPointer(digest.baseAddress!))
        }
    }
}
