/// A size in bytes, parsed from the strings admins write in layouts.
///
/// Decimal and binary units are both understood and never confused:
/// `120GB` is 120 × 10⁹ bytes, `120GiB` is 120 × 2³⁰ bytes. A bare letter such
/// as `120G` is refused, because half of the tools on a node read it one way and
/// half the other. Fractions are exact (`1.5TB`, no floating point), and a plain
/// number is a count of bytes.
public struct ByteSize: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }

    public static func < (lhs: ByteSize, rhs: ByteSize) -> Bool { lhs.bytes < rhs.bytes }

    /// Units by their lowercase spelling. Binary units carry the `i`.
    static let units: [String: UInt64] = [
        "b": 1,
        "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000,
        "tb": 1_000_000_000_000, "pb": 1_000_000_000_000_000,
        "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50,
    ]

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty
        case notANumber(String)
        case ambiguousUnit(String)
        case unknownUnit(String)
        case tooLarge(String)

        public var description: String {
            switch self {
            case .empty: "is empty; expected a size such as 120GB or 512MiB"
            case .notANumber(let s): "\"\(s)\" is not a size; expected a number and a unit such as 120GB or 512MiB"
            case .ambiguousUnit(let u):
                "unit \"\(u)\" is ambiguous: write \(u.uppercased())B for powers of 1000 or \(u.uppercased())iB for powers of 1024"
            case .unknownUnit(let u): "unknown unit \"\(u)\"; use B, KB, MB, GB, TB, PB or KiB, MiB, GiB, TiB, PiB"
            case .tooLarge(let s): "\"\(s)\" is too large"
            }
        }
    }

    /// Parses `120GB`, `120 GiB`, `1.5TB`, `4096`.
    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.trimmed
        guard !trimmed.isEmpty else { throw .empty }
        let numberEnd = trimmed.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == ".")) }) ?? trimmed.endIndex
        let number = String(trimmed[..<numberEnd])
        let unit = trimmed[numberEnd...].trimmed.lowercased()
        guard !number.isEmpty, number.filter({ $0 == "." }).count <= 1, number != ".",
            number.first != ".", number.last != "."
        else { throw .notANumber(text) }

        let multiplier: UInt64
        if unit.isEmpty {
            multiplier = 1
        } else if let m = Self.units[unit] {
            multiplier = m
        } else if ["k", "m", "g", "t", "p"].contains(unit) {
            throw .ambiguousUnit(unit)
        } else {
            throw .unknownUnit(String(trimmed[numberEnd...]).trimmed)
        }

        // Exact decimal arithmetic: "1.5" × GB = 15 × GB / 10.
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        let whole = String(parts[0])
        let fraction = parts.count > 1 ? String(parts[1]) : ""
        // 10^19 is the largest power of ten in 64 bits; more decimals than that are not a size.
        guard fraction.count <= 19 else { throw .notANumber(text) }
        guard let digits = UInt64(whole + fraction) else { throw .tooLarge(text) }
        var scale: UInt64 = 1
        for _ in fraction { scale *= 10 }
        let (product, overflow) = digits.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw .tooLarge(text) }
        guard product % scale == 0 else { throw .notANumber(text) }  // fractional bytes
        self.bytes = product / scale
    }

    /// Decimal, with the largest unit that keeps the number ≥ 1: `120.0 GB`.
    public var description: String { Self.format(bytes, binary: false) }

    /// Binary: `111.8 GiB`.
    public var binaryDescription: String { Self.format(bytes, binary: true) }

    public static func format(_ bytes: UInt64, binary: Bool) -> String {
        let base: Double = binary ? 1024 : 1000
        let names = binary ? ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] : ["B", "KB", "MB", "GB", "TB", "PB"]
        var value = Double(bytes)
        var index = 0
        while value >= base && index < names.count - 1 {
            value /= base
            index += 1
        }
        if index == 0 { return "\(bytes) B" }
        let tenths = (value * 10).rounded() / 10
        return "\(tenths) \(names[index])"
    }
}

/// How far a disk's size may be from the size a layout asks for.
public enum SizeTolerance: Hashable, Sendable, CustomStringConvertible {
    /// Percent of the wanted size, in hundredths of a percent (`5%` is 500) to stay exact.
    case percent(basisPoints: UInt64)
    case absolute(ByteSize)

    public static let defaultTolerance = SizeTolerance.percent(basisPoints: 500)

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case invalid(String)
        public var description: String {
            switch self {
            case .invalid(let s): "\"\(s)\" is not a tolerance; write a percentage such as 5% or a size such as 2GB"
            }
        }
    }

    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.trimmed
        if trimmed.hasSuffix("%") {
            let number = trimmed.dropLast().trimmed
            let parts = number.split(separator: ".", omittingEmptySubsequences: false)
            guard !number.isEmpty, parts.count <= 2,
                parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
                !parts[0].isEmpty
            else { throw .invalid(text) }
            let fraction = parts.count == 2 ? String(parts[1]) : ""
            guard fraction.count <= 2, let whole = UInt64(parts[0]), whole <= 100 else { throw .invalid(text) }
            let padded = fraction + String(repeating: "0", count: 2 - fraction.count)
            self = .percent(basisPoints: whole * 100 + (UInt64(padded) ?? 0))
        } else {
            // A bare number is almost always a forgotten "%": refuse it rather than read bytes.
            guard trimmed.contains(where: { $0.isLetter }) else { throw .invalid(text) }
            do { self = .absolute(try ByteSize(parsing: trimmed)) } catch { throw .invalid(text) }
        }
    }

    /// The inclusive range of sizes accepted around `size`.
    public func range(around size: ByteSize) -> ClosedRange<UInt64> {
        let slack: UInt64
        switch self {
        case .percent(let bp):
            // size × bp / 10000 without overflow for any real disk size.
            slack = size.bytes / 10_000 * bp + (size.bytes % 10_000) * bp / 10_000
        case .absolute(let s): slack = s.bytes
        }
        let low = size.bytes >= slack ? size.bytes - slack : 0
        let (high, overflow) = size.bytes.addingReportingOverflow(slack)
        return low...(overflow ? UInt64.max : high)
    }

    public var description: String {
        switch self {
        case .percent(let bp): bp % 100 == 0 ? "\(bp / 100)%" : "\(Double(bp) / 100)%"
        case .absolute(let s): s.description
        }
    }
}
