/// Names of images and branches: `[a-z0-9][a-z0-9._-]{0,63}` (a single path component, never `..`).
public enum ImageNames {
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        func ok(_ c: UInt8, first: Bool) -> Bool {
            (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || (!first && (c == 0x2e || c == 0x5f || c == 0x2d))
        }
        return bytes.enumerated().allSatisfy { ok($1, first: $0 == 0) }
    }

    /// A version id: 64 lowercase hex digits.
    public static func isVersionID(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    public static let defaultBranch = "main"
}
