/// An IPv4 network (`10.0.0.0/24`): the provisioning network multicast is confined to.
public struct IPv4Network: Hashable, Sendable, CustomStringConvertible {
    /// The network address (host bits zero), host byte order.
    public let address: UInt32
    public let prefixLength: Int

    public init(address: UInt32, prefixLength: Int) {
        precondition((0...32).contains(prefixLength))
        self.prefixLength = prefixLength
        self.address = address & Self.mask(prefixLength)
    }

    /// `10.0.0.0/24`; nil unless it is four decimal octets, a slash and a prefix length of 0–32.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = Self.address(String(parts[0])),
            parts[1].allSatisfy(\.isASCII), parts[1].count <= 2, let length = Int(parts[1]), (0...32).contains(length)
        else { return nil }
        self.init(address: address, prefixLength: length)
    }

    /// The network of an interface address and its netmask (both as `getifaddrs` gives them).
    public init?(address: UInt32, netmask: UInt32) {
        let length = netmask.leadingZeroBitCount == 0 ? netmask.nonzeroBitCount : (netmask == 0 ? 0 : -1)
        guard length >= 0, Self.mask(length) == netmask else { return nil }
        self.init(address: address, prefixLength: length)
    }

    public func contains(_ address: UInt32) -> Bool { address & Self.mask(prefixLength) == self.address }

    public var description: String { "\(Self.text(address))/\(prefixLength)" }

    static func mask(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << (32 - length) }

    /// `10.0.0.1` in host byte order; nil unless four decimal octets.
    public static func address(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard (1...3).contains(octet.count), octet.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(octet),
                n <= 255
            else { return nil }
            value = value << 8 | n
        }
        return value
    }

    public static func text(_ address: UInt32) -> String {
        "\(address >> 24).\((address >> 16) & 0xff).\((address >> 8) & 0xff).\(address & 0xff)"
    }
}
