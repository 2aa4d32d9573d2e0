// LVM2's on-disk metadata, read without running `lvm` (LVMLabel.swift, LVMMetadata.swift): this
// file is its text format, the "Text Format Volume Group" that `vgcfgbackup` also writes.

/// A value in LVM's text format: `key = value`, `name { ... }`.
public indirect enum LVMValue: Hashable, Sendable {
    case string(String)
    case integer(Int64)
    /// A number with a fraction or an exponent, kept as written (metadata has none; config may).
    case number(String)
    case array([LVMValue])
    case section(LVMSection)

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var integer: Int64? { if case .integer(let n) = self { n } else { nil } }
    public var section: LVMSection? { if case .section(let s) = self { s } else { nil } }
    /// An array of strings (`status = ["READ", "WRITE"]`); nil when any element is not a string.
    public var strings: [String]? {
        guard case .array(let values) = self else { return nil }
        var result: [String] = []
        for value in values {
            guard let s = value.string else { return nil }
            result.append(s)
        }
        return result
    }
}

/// A `{ ... }` block (or the whole text): its entries in order.
public struct LVMSection: Hashable, Sendable {
    public var entries: [Entry]
    public struct Entry: Hashable, Sendable {
        public var key: String
        public var value: LVMValue
    }

    public subscript(_ key: String) -> LVMValue? { entries.first(where: { $0.key == key })?.value }
    /// The sub-sections, in order (`physical_volumes { pv0 {...} pv1 {...} }`).
    public var sections: [(name: String, section: LVMSection)] {
        entries.compactMap { entry in entry.value.section.map { (entry.key, $0) } }
    }
}

/// Why LVM text could not be read: the line and the problem.
public struct LVMTextError: Error, Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var problem: String
    public init(line: Int, problem: String) {
        self.line = line
        self.problem = problem
    }
    public var description: String { "LVM metadata, line \(line): \(problem)" }
}

/// LVM's text format parser (`lib/config/config.c`): comments from `#`, strings with `\"` and `\\`
/// escapes, integers, arrays, nested sections. Bounded: at most 32 levels of nesting.
public enum LVMText {
    public static let maximumDepth = 32

    public static func parse(_ text: String) throws(LVMTextError) -> LVMSection {
        var parser = Parser(bytes: Array(text.utf8))
        let section = try parser.entries(depth: 0, closing: false)
        return section
    }

    struct Parser {
        let bytes: [UInt8]
        var at = 0
        var line = 1

        init(bytes: [UInt8]) { self.bytes = bytes }

        func error(_ problem: String) -> LVMTextError { LVMTextError(line: line, problem: problem) }

        mutating func skipSpace() {
            while at < bytes.count {
                let b = bytes[at]
                if b == UInt8(ascii: "#") {
                    while at < bytes.count && bytes[at] != UInt8(ascii: "\n") { at += 1 }
                } else if b == UInt8(ascii: "\n") {
                    line += 1
                    at += 1
                } else if b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\r") || b == 0 {
                    at += 1
                } else {
                    return
                }
            }
        }

        static func isNameByte(_ b: UInt8) -> Bool {
            (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_")
                || b == UInt8(ascii: "-")
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "+") || b == UInt8(ascii: "/") || b == UInt8(ascii: "@")
        }

        /// Entries up to the end of the text, or up to the `}` that closes this section.
        mutating func entries(depth: Int, closing: Bool) throws(LVMTextError) -> LVMSection {
            guard depth <= LVMText.maximumDepth else {
                throw error("sections nested deeper than \(LVMText.maximumDepth)")
            }
            var section = LVMSection(entries: [])
            while true {
                skipSpace()
                guard at < bytes.count else {
                    if closing { throw error("a section is not closed (missing \"}\")") }
                    return section
                }
                if bytes[at] == UInt8(ascii: "}") {
                    guard closing else { throw error("\"}\" closes no section") }
                    at += 1
                    return section
                }
                let start = at
                while at < bytes.count && Self.isNameByte(bytes[at]) { at += 1 }
                guard at > start else { throw error("expected a name, found \(shown(at))") }
                let key = String(decoding: bytes[start..<at], as: UTF8.self)
                skipSpace()
                guard at < bytes.count else { throw error("\"\(key)\" has no value") }
                if bytes[at] == UInt8(ascii: "{") {
                    at += 1
                    let inner = try entries(depth: depth + 1, closing: true)
                    section.entries.append(.init(key: key, value: .section(inner)))
                } else if bytes[at] == UInt8(ascii: "=") {
                    at += 1
                    skipSpace()
                    section.entries.append(.init(key: key, value: try value(depth: depth)))
                } else {
                    throw error("expected \"=\" or \"{\" after \"\(key)\", found \(shown(at))")
                }
            }
        }

        func shown(_ index: Int) -> String {
            guard index < bytes.count else { return "the end" }
            let b = bytes[index]
            return b >= 0x20 && b < 0x7f ? "\"\(Character(Unicode.Scalar(b)))\"" : "byte \(b)"
        }

        mutating func value(depth: Int) throws(LVMTextError) -> LVMValue {
            guard at < bytes.count else { throw error("a value is missing at the end") }
            switch bytes[at] {
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "["):
                guard depth < LVMText.maximumDepth else {
                    throw error("arrays nested deeper than \(LVMText.maximumDepth)")
                }
                at += 1
                var values: [LVMValue] = []
                skipSpace()
                if at < bytes.count && bytes[at] == UInt8(ascii: "]") {
                    at += 1
                    return .array(values)
                }
                while true {
                    skipSpace()
                    values.append(try value(depth: depth + 1))
                    skipSpace()
                    guard at < bytes.count else { throw error("an array is not closed (missing \"]\")") }
                    if bytes[at] == UInt8(ascii: ",") {
                        at += 1
                    } else if bytes[at] == UInt8(ascii: "]") {
                        at += 1
                        return .array(values)
                    } else {
                        throw error("expected \",\" or \"]\" in an array, found \(shown(at))")
                    }
                }
            default:
                let start = at
                while at < bytes.count && Self.isNameByte(bytes[at]) { at += 1 }
                let word = String(decoding: bytes[start..<at], as: UTF8.self)
                guard !word.isEmpty else { throw error("expected a value, found \(shown(start))") }
                if let n = Int64(word) { return .integer(n) }
                if Double(word) != nil { return .number(word) }
                throw error("\"\(word)\" is not a string, number or array")
            }
        }

        mutating func string() throws(LVMTextError) -> String {
            at += 1  // the opening quote
            var out: [UInt8] = []
            while at < bytes.count {
                let b = bytes[at]
                if b == UInt8(ascii: "\"") {
                    at += 1
                    return String(decoding: out, as: UTF8.self)
                }
                if b == UInt8(ascii: "\\") && at + 1 < bytes.count {
                    out.append(bytes[at + 1])
                    at += 2
                    continue
                }
                if b == UInt8(ascii: "\n") { line += 1 }
                out.append(b)
                at += 1
            }
            throw error("a string is not closed (missing \")")
        }
    }
}
