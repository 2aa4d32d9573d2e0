/// A node's /etc/machine-id (N8): its own, made once on the first install and kept after that (the
/// image's is not synced; systemd, journald and DHCP client IDs read it).
public enum MachineID {
    /// What systemd accepts: 32 hexadecimal digits (it writes them lowercase), then an optional
    /// newline. All zeros (systemd's null id), `uninitialized` (its first-boot marker) and an empty
    /// file are not a machine id.
    public static func isValid(_ text: String) -> Bool {
        let id = text.hasSuffix("\n") ? text.dropLast() : Substring(text)
        return id.utf8.count == 32
            && id.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46)
            }
            && id.utf8.contains { $0 != 0x30 }
    }

    /// The file's text for 16 random bytes (systemd's own form: lowercase hex and a newline).
    public static func text(random bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes.prefix(16) {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self) + "\n"
    }
}
