import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The machine's IPv4 interface addresses, as `getifaddrs` lists them.
public struct InterfaceAddress: Hashable, Sendable {
    public var interface: String
    /// Host byte order.
    public var address: UInt32
    public var network: IPv4Network
}

public enum NetworkInterfaces {
    /// Every IPv4 address of every interface that is up.
    public static func ipv4() throws(SystemError) -> [InterfaceAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { throw .fromErrno("listing", "the network interfaces") }
        defer { freeifaddrs(list) }
        var out: [InterfaceAddress] = []
        var item = list
        while let entry = item?.pointee {
            defer { item = entry.ifa_next }
            guard let addr = entry.ifa_addr, addr.pointee.sa_family == sa_family_t(AF_INET), let mask = entry.ifa_netmask,
                entry.ifa_flags & UInt32(IFF_UP) != 0
            else { continue }
            let address = addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
            let netmask = mask.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
            guard let network = IPv4Network(address: address, netmask: netmask) else { continue }
            out.append(InterfaceAddress(interface: String(cString: entry.ifa_name), address: address, network: network))
        }
        return out
    }

    /// The interface with an address in `network` (the first, by name, when several are).
    public static func interface(in network: IPv4Network) throws(SystemError) -> InterfaceAddress? {
        try ipv4().filter { network.contains($0.address) }.min { $0.interface < $1.interface }
    }

    /// The network of `interface`'s first IPv4 address.
    public static func network(of interface: String) throws(SystemError) -> IPv4Network? {
        try ipv4().first { $0.interface == interface }?.network
    }
}
