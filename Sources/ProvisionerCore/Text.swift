extension StringProtocol {
    /// Without leading and trailing whitespace, newlines and control characters
    /// (sysfs values end in "\n", SCSI strings are space padded).
    public var trimmed: String {
        let isJunk: (Character) -> Bool = {
            $0.isWhitespace || $0.unicodeScalars.allSatisfy { $0.properties.generalCategory == .control }
        }
        guard let first = firstIndex(where: { !isJunk($0) }), let last = lastIndex(where: { !isJunk($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}

extension StringProtocol {
    /// The text with every character that could move a terminal's cursor, change its colours or
    /// reorder what it shows written out as an escape: C0 and C1 controls and DEL (`\e`, `\r`,
    /// `\n`, `\t`, `\x7F`, `\u{9B}`), and the Unicode bidirectional overrides and isolates
    /// (`\u{202E}`). Anything a machine reports (DMI strings, MACs, event messages) goes through
    /// this before an admin's terminal shows it; `--json` output keeps the exact text instead.
    public var terminalSafe: String {
        guard unicodeScalars.contains(where: Self.needsEscape) else { return String(self) }
        var out = ""
        for scalar in unicodeScalars {
            guard Self.needsEscape(scalar) else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{1B}": out += "\\e"
            default:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += scalar.value < 0x80 ? "\\x" + (hex.count == 1 ? "0" + hex : hex) : "\\u{\(hex)}"
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true
        // LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI; LRM, RLM, ALM
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: true
        default: false
        }
    }
}
