/// Hostlist expressions, the syntax Slurm and pdsh use for many names at once
/// (docs/node-config.md, "Node ranges"):
///
///     n[001-128]              n001 ... n128 (the lower bound's width pads every number)
///     gpu[01-04,07],login1    gpu01 gpu02 gpu03 gpu04 gpu07 login1
///     rack[1-2]-n[01-02]      rack1-n01 rack1-n02 rack2-n01 rack2-n02 (groups multiply, left to right)
///     10.1.0.[1-64]           addresses, in order
///
/// Pure: `expand` and `compress` touch nothing. A refusal names the rule it broke (`Problem`),
/// the column (1-based) and the fragment of the expression it is about.
public enum Hostlist {
    /// The most names one expression may stand for; a typo such as `n[1-10000000]` is refused
    /// before anything is allocated for it.
    public static let maxNames = 100_000

    public enum Problem: String, Hashable, Sendable {
        /// H1: `[` without `]`, `]` without `[`, or a bracket inside a bracket.
        case unbalancedBracket
        /// H2: nothing between commas, or an empty `[]`.
        case emptyPart
        /// H3: a range bound that is not a decimal number, or a range with two dashes.
        case notANumber
        /// H4: a range whose upper bound is below its lower bound.
        case descendingRange
        /// H5: a zero-padded range whose upper bound has more digits than its width (`[001-1000]`).
        case overflowsWidth
        /// H6: the expression stands for more than `maxNames` names.
        case tooManyNames
        /// H7: a character that no name or address may hold (space, quote, slash...).
        case badCharacter
    }

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var expression: String
        public var problem: Problem
        /// 1-based column of the fragment in the expression.
        public var column: Int
        public var fragment: String
        public var detail: String

        public var description: String {
            "hostlist \"\(expression)\": \(detail) at column \(column) (\"\(fragment)\")"
        }
    }

    /// One comma-separated item: literal text and bracket groups, in order.
    enum Piece {
        case text(String)
        case group([(lower: Int, upper: Int, width: Int)])
    }

    /// The names `expression` stands for, in the order written; duplicates are kept once (first place).
    public static func expand(_ expression: String) throws(ParseError) -> [String] {
        let chars = Array(expression)
        func fail(_ problem: Problem, _ start: Int, _ end: Int, _ detail: String) -> ParseError {
            let lo = max(0, min(start, chars.count))
            let hi = max(lo, min(end, chars.count))
            return ParseError(
                expression: expression, problem: problem, column: lo + 1, fragment: String(chars[lo..<hi]),
                detail: detail)
        }
        guard !chars.isEmpty else { throw fail(.emptyPart, 0, 0, "the expression is empty") }
        // Split at commas outside brackets, checking the brackets as we go.
        var items: [(start: Int, end: Int)] = []
        var depth = 0
        var itemStart = 0
        var open = 0
        for (i, c) in chars.enumerated() {
            switch c {
            case "[":
                guard depth == 0 else { throw fail(.unbalancedBracket, open, i + 1, "a bracket inside a bracket") }
                depth = 1
                open = i
            case "]":
                guard depth == 1 else { throw fail(.unbalancedBracket, i, i + 1, "\"]\" without \"[\"") }
                depth = 0
            case "," where depth == 0:
                items.append((itemStart, i))
                itemStart = i + 1
            case ",":
                break  // separates ranges inside a bracket
            default:
                guard isAllowed(c) else {
                    throw fail(.badCharacter, i, i + 1, "\"\(c)\" cannot be part of a name")
                }
            }
        }
        guard depth == 0 else { throw fail(.unbalancedBracket, open, chars.count, "\"[\" without \"]\"") }
        items.append((itemStart, chars.count))

        var names: [String] = []
        var seen = Set<String>()
        for item in items {
            guard item.end > item.start else { throw fail(.emptyPart, item.start, item.start, "nothing between commas") }
            var pieces: [Piece] = []
            var i = item.start
            var count = 1
            while i < item.end {
                if chars[i] == "[" {
                    let close = chars[i..<item.end].firstIndex(of: "]")!
                    let group = try parseGroup(chars, from: i + 1, to: close, fail: fail)
                    let size = group.reduce(0) { $0 + ($1.upper - $1.lower + 1) }
                    count = count.multipliedReportingOverflow(by: size).overflow ? Int.max : count * size
                    guard count + names.count <= maxNames else {
                        throw fail(
                            .tooManyNames, item.start, item.end,
                            "stands for more than \(maxNames) names")
                    }
                    pieces.append(.group(group))
                    i = close + 1
                } else {
                    let end = chars[i..<item.end].firstIndex(of: "[") ?? item.end
                    pieces.append(.text(String(chars[i..<end])))
                    i = end
                }
            }
            for name in product(pieces) where seen.insert(name).inserted {
                names.append(name)
            }
        }
        return names
    }

    static func parseGroup(
        _ chars: [Character], from start: Int, to end: Int,
        fail: (Problem, Int, Int, String) -> ParseError
    ) throws(ParseError) -> [(lower: Int, upper: Int, width: Int)] {
        guard end > start else { throw fail(.emptyPart, start - 1, end + 1, "an empty bracket") }
        var ranges: [(lower: Int, upper: Int, width: Int)] = []
        var partStart = start
        for i in start...end where i == end || chars[i] == "," {
            let part = String(chars[partStart..<i])
            guard !part.isEmpty else { throw fail(.emptyPart, partStart, i, "nothing between commas in a bracket") }
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2, bounds.allSatisfy({ !$0.isEmpty && $0.count <= 9 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
            else {
                throw fail(.notANumber, partStart, i, "\"\(part)\" is not a number or a range of numbers (1-9 digits each)")
            }
            let lowerText = bounds[0]
            let upperText = bounds.count == 2 ? bounds[1] : bounds[0]
            let lower = Int(lowerText)!
            let upper = Int(upperText)!
            guard upper >= lower else {
                throw fail(.descendingRange, partStart, i, "the range \(part) goes down; write the lower bound first")
            }
            // The lower bound's digits set the width when it is zero-padded ("001"); the upper
            // bound must then fit it, or the names would change width halfway through.
            let width = lowerText.count > 1 && lowerText.first == "0" ? lowerText.count : 1
            if width > 1, String(upper).count > width {
                throw fail(
                    .overflowsWidth, partStart, i,
                    "\(upperText) does not fit the width \(width) that \(lowerText) sets")
            }
            ranges.append((lower, upper, width))
            partStart = i + 1
        }
        return ranges
    }

    static func product(_ pieces: [Piece]) -> [String] {
        var results = [""]
        for piece in pieces {
            switch piece {
            case .text(let t):
                results = results.map { $0 + t }
            case .group(let ranges):
                var next: [String] = []
                for prefix in results {
                    for r in ranges {
                        for n in r.lower...r.upper { next.append(prefix + pad(n, r.width)) }
                    }
                }
                results = next
            }
        }
        return results
    }

    static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    static func isAllowed(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "." || c == "_" || c == ":")
    }

    /// True when `text` is written as a hostlist (has a bracket or a comma) rather than one name.
    public static func isExpression(_ text: String) -> Bool {
        text.contains("[") || text.contains(",")
    }

    /// The shortest usual spelling of `names`: names that differ only in their last number, with
    /// the same text around it and the same width, become one bracket group (`n[001-003,007]`).
    /// Groups keep the order of their first name; numbers inside a group are sorted.
    public static func compress(_ names: [String]) -> String {
        struct Key: Hashable { var prefix: String; var suffix: String; var width: Int }
        // First pass: the widths zero-padded numbers show for each (prefix, suffix), so that
        // `n10` joins `n01`..`n09` (width 2) while `n1`..`n10` stay one unpadded group.
        var paddedWidths: [String: Set<Int>] = [:]
        for name in names {
            if let (prefix, digits, suffix) = lastNumber(name), digits.count > 1, digits.first == "0" {
                paddedWidths[prefix + "\u{0}" + suffix, default: []].insert(digits.count)
            }
        }
        var order: [Key] = []
        var groups: [Key: [Int]] = [:]
        var members: [Key: Set<Int>] = [:]
        var plain: [Int: String] = [:]  // position in `order` of names without a number
        for name in names {
            guard let (prefix, digits, suffix) = lastNumber(name), digits.count <= 9, let n = Int(digits) else {
                let key = Key(prefix: name, suffix: "", width: -1 - plain.count)
                plain[order.count] = name
                order.append(key)
                continue
            }
            let padded = paddedWidths[prefix + "\u{0}" + suffix] ?? []
            let width = (digits.count > 1 && digits.first == "0") || padded.contains(digits.count) ? digits.count : 0
            let key = Key(prefix: prefix, suffix: suffix, width: width)
            if groups[key] == nil { order.append(key) }
            if members[key, default: []].insert(n).inserted { groups[key, default: []].append(n) }
        }
        var parts: [String] = []
        for (index, key) in order.enumerated() {
            if let name = plain[index] {
                parts.append(name)
                continue
            }
            let numbers = groups[key]!.sorted()
            let w = max(key.width, 1)
            if numbers.count == 1 {
                parts.append(key.prefix + pad(numbers[0], w) + key.suffix)
                continue
            }
            var runs: [String] = []
            var start = numbers[0]
            var previous = numbers[0]
            for n in numbers.dropFirst() + [Int.min] {
                if n == previous + 1 {
                    previous = n
                    continue
                }
                runs.append(start == previous ? pad(start, w) : "\(pad(start, w))-\(pad(previous, w))")
                start = n
                previous = n
            }
            parts.append("\(key.prefix)[\(runs.joined(separator: ","))]\(key.suffix)")
        }
        return parts.joined(separator: ",")
    }

    /// The last run of digits in `name`, with the text before and after it.
    static func lastNumber(_ name: String) -> (String, String, String)? {
        guard let last = name.lastIndex(where: { $0.isASCII && $0.isNumber }) else { return nil }
        var first = last
        while first > name.startIndex {
            let before = name.index(before: first)
            guard name[before].isASCII && name[before].isNumber else { break }
            first = before
        }
        return (String(name[..<first]), String(name[first...last]), String(name[name.index(after: last)...]))
    }
}
