/// What iPXE's first script asks the boot listener with (`GET /boot/ipxe?mac=…&uuid=…&serial=…`,
/// see `IPXEScript.start`): the booting NIC's MAC and the DMI strings iPXE knows. Anyone on the
/// provisioning network can send this, so the parser takes any bytes: it never traps, keeps at most
/// `maxValue` bytes of each fact, and names what is wrong when the MAC is missing or malformed.
public struct BootQuery: Hashable, Sendable {
    /// The MAC, normalised (`52:54:00:ab:cd:ef`).
    public var mac: String
    public var dmi: DMIFacts

    /// Bytes kept of each DMI fact (longer values are cut; iPXE's own are far shorter).
    public static let maxValue = 256
    /// Parameters read at most: a query of a million `&` is refused, not split.
    public static let maxParameters = 64

    public init(mac: String, dmi: DMIFacts = DMIFacts()) {
        self.mac = mac
        self.dmi = dmi
    }

    /// Reads the query string (the part after `?`, still percent-encoded).
    public static func parse(_ query: Substring) throws(BootQueryError) -> BootQuery {
        var values: [String: String] = [:]
        var count = 0
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            count += 1
            guard count <= maxParameters else { throw BootQueryError("more than \(maxParameters) query parameters") }
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = percentDecoded(parts[0])
            guard ["mac", "uuid", "serial", "manufacturer", "product"].contains(key), values[key] == nil else {
                continue
            }
            values[key] = parts.count == 2 ? percentDecoded(parts[1]) : ""
        }
        guard let macText = values["mac"], !macText.isEmpty else {
            throw BootQueryError("ipxe needs ?mac= with the booting NIC's MAC address")
        }
        guard let mac = MACAddress.normalize(macText) else {
            throw BootQueryError("mac: \"\(String(macText.prefix(64)))\" is not a MAC address")
        }
        func fact(_ key: String) -> String? {
            guard let raw = values[key] else { return nil }
            let value = raw.trimmingSpaces
            guard !value.isEmpty else { return nil }
            return value.utf8.count <= maxValue ? value : value.prefixBytes(maxValue)
        }
        return BootQuery(
            mac: mac,
            dmi: DMIFacts(
                serial: fact("serial"), uuid: fact("uuid"), vendor: fact("manufacturer"), product: fact("product")))
    }

    /// `%XX` escapes and `+` (a space, as forms and iPXE's `uristring` write it) decoded; a `%` not
    /// followed by two hex digits stays as it is; bytes that are not UTF-8 become U+FFFD.
    static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var input = text.utf8[...]
        while let byte = input.popFirst() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                let next = input.prefix(2)
                if next.count == 2, let high = hexValue(next.first!), let low = hexValue(next.last!) {
                    bytes.append(high << 4 | low)
                    input = input.dropFirst(2)
                } else {
                    bytes.append(byte)
                }
            default:
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A boot query that cannot be used, with what is wrong (a 400 on the boot listener).
public struct BootQueryError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }

    /// The longest prefix of at most `count` UTF-8 bytes that ends on a character boundary.
    func prefixBytes(_ count: Int) -> String {
        var used = 0
        var end = startIndex
        for index in indices {
            let size = self[index].utf8.count
            guard used + size <= count else { break }
            used += size
            end = self.index(after: index)
        }
        return String(self[..<end])
    }
}
