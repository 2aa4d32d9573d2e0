/// FastCDC content-defined chunking (Xia et al., USENIX ATC 2016) with normalized chunking
/// level 2: cut points depend only on the bytes around them, so a few changed bytes change
/// only the chunks that hold them. Parameters are part of the image format: changing them
/// changes every chunk hash (and so needs a new format version).
public struct Chunker: Sendable {
    public static let minSize = 16 * 1024
    public static let averageSize = 64 * 1024
    public static let maxSize = 256 * 1024

    // Normalized chunking: a harder mask (more bits) below the average size, an easier one above.
    // The masks use high bits: the gear fingerprint shifts left, so high bits depend on more bytes.
    static let maskSmall: UInt64 = ((1 << 18) - 1) << (64 - 18)
    static let maskLarge: UInt64 = ((1 << 14) - 1) << (64 - 14)

    /// 256 pseudo-random words from SplitMix64 seeded with a fixed constant.
    static let gear: [UInt64] = {
        var state: UInt64 = 0x5052_4f56_4953_494f  // "PROVISIO"
        var table: [UInt64] = []
        table.reserveCapacity(256)
        for _ in 0..<256 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            table.append(z ^ (z >> 31))
        }
        return table
    }()

    public init() {}

    /// The length of the first chunk of `data` (all of it if it is at most `minSize`
    /// bytes, never more than `maxSize`).
    public static func cut(_ data: UnsafeRawBufferPointer) -> Int {
        var n = data.count
        if n <= minSize { return n }
        if n > maxSize { n = maxSize }
        let normal = min(averageSize, n)
        var fp: UInt64 = 0
        var i = minSize
        return gear.withUnsafeBufferPointer { g in
            let bytes = data.baseAddress!.assumingMemoryBound(to: UInt8.self)
            while i < normal {
                fp = (fp << 1) &+ g[Int(bytes[i])]
                if fp & maskSmall == 0 { return i + 1 }
                i += 1
            }
            while i < n {
                fp = (fp << 1) &+ g[Int(bytes[i])]
                if fp & maskLarge == 0 { return i + 1 }
                i += 1
            }
            return n
        }
    }

    /// Chunk lengths of a whole buffer.
    public static func lengths(_ data: UnsafeRawBufferPointer) -> [Int] {
        var out: [Int] = []
        var offset = 0
        while offset < data.count {
            let n = cut(UnsafeRawBufferPointer(rebasing: data[offset...]))
            out.append(n)
            offset += n
        }
        return out
    }
}
