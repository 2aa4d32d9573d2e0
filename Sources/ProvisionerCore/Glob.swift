/// Shell-style wildcard patterns as admins write them in layouts: `*`, `?`,
/// `[abc]`, `[a-z]`, `[!x]` and `\` to take the next character literally.
///
/// Matching is over whole strings (an anchored match), like `fnmatch(3)` without
/// flags, so `*` also crosses `/`: `pci-*-nvme-1` matches a whole by-path name.
public struct Glob: Hashable, Sendable, CustomStringConvertible {
    public let pattern: String
    public let caseInsensitive: Bool
    private let tokens: [Token]

    private enum Token: Hashable, Sendable {
        case literal(Character)
        case any  // ?
        case star  // *
        case set(negated: Bool, items: [SetItem])
    }

    private enum SetItem: Hashable, Sendable {
        case single(Character)
        case range(Character, Character)
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case unterminatedSet(String)
        case danglingEscape(String)
        public var description: String {
            switch self {
            case .unterminatedSet(let p): "pattern \"\(p)\" has a \"[\" without its \"]\""
            case .danglingEscape(let p): "pattern \"\(p)\" ends with a lone \"\\\""
            }
        }
    }

    public init(_ pattern: String, caseInsensitive: Bool = false) throws(ParseError) {
        self.pattern = pattern
        self.caseInsensitive = caseInsensitive
        let fold: (Character) -> Character = { caseInsensitive ? Character($0.lowercased()) : $0 }
        var tokens: [Token] = []
        var chars = Array(pattern)[...]
        while let c = chars.popFirst() {
            switch c {
            case "*":
                if tokens.last != .star { tokens.append(.star) }
            case "?": tokens.append(.any)
            case "\\":
                guard let next = chars.popFirst() else { throw .danglingEscape(pattern) }
                tokens.append(.literal(fold(next)))
            case "[":
                var negated = false
                if chars.first == "!" || chars.first == "^" {
                    negated = true
                    chars.removeFirst()
                }
                var items: [SetItem] = []
                var closed = false
                var first = true
                while let s = chars.popFirst() {
                    if s == "]" && !first {
                        closed = true
                        break
                    }
                    first = false
                    if chars.count >= 2, chars.first == "-", chars.dropFirst().first != "]" {
                        chars.removeFirst()
                        let upper = chars.removeFirst()
                        items.append(.range(fold(s), fold(upper)))
                    } else {
                        items.append(.single(fold(s)))
                    }
                }
                guard closed else { throw .unterminatedSet(pattern) }
                tokens.append(.set(negated: negated, items: items))
            default:
                tokens.append(.literal(fold(c)))
            }
        }
        self.tokens = tokens
    }

    /// True when the pattern has no wildcard, so it only matches itself.
    public var isLiteral: Bool {
        tokens.allSatisfy { if case .literal = $0 { true } else { false } }
    }

    public func matches(_ text: String) -> Bool {
        let input = caseInsensitive ? Array(text.lowercased()) : Array(text)
        // Iterative matcher with single-star backtracking: linear in practice,
        // never exponential.
        var t = 0
        var i = 0
        var starToken = -1
        var starInput = 0
        while i < input.count {
            if t < tokens.count, tokens[t] != .star, Self.matchOne(tokens[t], input[i]) {
                t += 1
                i += 1
            } else if t < tokens.count, tokens[t] == .star {
                starToken = t
                starInput = i
                t += 1
            } else if starToken >= 0 {
                t = starToken + 1
                starInput += 1
                i = starInput
            } else {
                return false
            }
        }
        while t < tokens.count, tokens[t] == .star { t += 1 }
        return t == tokens.count
    }

    private static func matchOne(_ token: Token, _ c: Character) -> Bool {
        switch token {
        case .literal(let l): return l == c
        case .any: return true
        case .star: return true
        case .set(let negated, let items):
            let hit = items.contains { item in
                switch item {
                case .single(let s): s == c
                case .range(let lo, let hi): lo <= c && c <= hi
                }
            }
            return hit != negated
        }
    }

    public var description: String { pattern }
}

extension Glob {
    /// A pattern that matches exactly `text`: `*`, `?`, `[` and `\` are escaped.
    public static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            if "*?[\\".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }
}
