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
