import CZstd

/// A failure to compress or decompress, saying what and why.
public struct CompressionError: Error, CustomStringConvertible, Sendable {
    public var subject: String
    public var cause: String
    public var description: String { "decompressing \(subject): \(cause)" }
}

/// zstd, as objects, manifests and manifest deltas use it.
public enum Zstd {
    /// One zstd frame of `bytes` (the frame records the size).
    public static func compress(_ bytes: UnsafeRawBufferPointer, level: Int32 = 3) -> [UInt8] {
        let bound = CZstd_compress_bound(bytes.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            CZstd_compress(dst.baseAddress, bound, bytes.baseAddress, bytes.count, level)
        }
        precondition(CZstd_is_error(n) == 0, "zstd compression into a bound-sized buffer failed")
        out.removeSubrange(n...)
        return out
    }

    public static func compress(_ bytes: [UInt8], level: Int32 = 3) -> [UInt8] {
        bytes.withUnsafeBytes { compress($0, level: level) }
    }

    /// The size a frame says it holds, if it says.
    public static func frameContentSize(_ frame: UnsafeRawBufferPointer) -> UInt64? {
        let n = CZstd_frame_content_size(frame.baseAddress, frame.count)
        return n == UInt64.max ? nil : n
    }

    /// Decompresses a whole frame that must hold exactly `expectedSize` bytes, or, with
    /// `expectedSize` nil, at most `limit` bytes.
    public static func decompress(
        _ frame: UnsafeRawBufferPointer, expectedSize: Int?, limit: Int = 1 << 30, subject: String,
        context: DecompressionContext? = nil
    ) throws -> [UInt8] {
        let size: Int
        if let expectedSize {
            size = expectedSize
        } else {
            guard let declared = frameContentSize(frame) else {
                throw CompressionError(subject: subject, cause: "not a zstd frame with a recorded size")
            }
            guard declared <= UInt64(limit) else {
                throw CompressionError(
                    subject: subject, cause: "declares \(declared) bytes, more than the \(limit) allowed")
            }
            size = Int(declared)
        }
        var out = [UInt8](repeating: 0, count: size)
        let ctx = context ?? DecompressionContext()
        let n = out.withUnsafeMutableBytes { dst in
            CZstd_decompress(ctx.raw, dst.baseAddress, size, frame.baseAddress, frame.count)
        }
        if CZstd_is_error(n) != 0 {
            throw CompressionError(
                subject: subject, cause: "damaged or cut short (zstd: \(String(cString: CZstd_error_name(n))))")
        }
        guard n == size else {
            throw CompressionError(subject: subject, cause: "holds \(n) bytes, expected \(size)")
        }
        return out
    }

    /// Decompresses into `dst`, which must be exactly the frame's content size.
    public static func decompress(
        _ frame: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, subject: String,
        context: DecompressionContext
    ) throws {
        let n = CZstd_decompress(context.raw, dst.baseAddress, dst.count, frame.baseAddress, frame.count)
        if CZstd_is_error(n) != 0 {
            throw CompressionError(
                subject: subject, cause: "damaged or cut short (zstd: \(String(cString: CZstd_error_name(n))))")
        }
        guard n == dst.count else {
            throw CompressionError(subject: subject, cause: "holds \(n) bytes, expected \(dst.count)")
        }
    }
}

/// A reusable zstd decompression context; use one per thread.
public final class DecompressionContext {
    let raw: OpaquePointer
    public init() {
        guard let raw = CZstd_dctx_new() else { fatalError("out of memory allocating a zstd context") }
        self.raw = raw
    }
    deinit { CZstd_dctx_free(raw) }
}

/// A manifest sent as the difference from one the node already has: a zstd frame of the
/// new manifest compressed with the old manifest's bytes as prefix (zstd "patch-from").
public enum ManifestDelta {
    public static func encode(old: [UInt8], new: [UInt8], level: Int32 = 6) -> [UInt8] {
        let bound = CZstd_compress_bound(new.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            new.withUnsafeBytes { src in
                old.withUnsafeBytes { prefix in
                    CZstd_compress_with_prefix(
                        dst.baseAddress, bound, src.baseAddress, src.count, prefix.baseAddress, prefix.count, level)
                }
            }
        }
        precondition(CZstd_is_error(n) == 0, "zstd prefix compression failed: \(String(cString: CZstd_error_name(n)))")
        out.removeSubrange(n...)
        return out
    }

    public static func decode(old: [UInt8], delta: [UInt8], limit: Int = 1 << 30) throws -> [UInt8] {
        let declared = delta.withUnsafeBytes { Zstd.frameContentSize($0) }
        guard let declared, declared <= UInt64(limit) else {
            throw CompressionError(subject: "manifest delta", cause: "no recorded size or larger than \(limit) bytes")
        }
        var out = [UInt8](repeating: 0, count: Int(declared))
        let n = out.withUnsafeMutableBytes { dst in
            delta.withUnsafeBytes { src in
                old.withUnsafeBytes { prefix in
                    CZstd_decompress_with_prefix(
                        dst.baseAddress, dst.count, src.baseAddress, src.count, prefix.baseAddress, prefix.count)
                }
            }
        }
        if CZstd_is_error(n) != 0 {
            throw CompressionError(subject: "manifest delta", cause: String(cString: CZstd_error_name(n)))
        }
        guard n == out.count else { throw CompressionError(subject: "manifest delta", cause: "truncated") }
        return out
    }
}
