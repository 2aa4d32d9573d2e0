/// The dnsmasq configuration of the provisioning network (`provisionerctl configure dhcp`): DHCP (full, or
/// proxy beside a DHCP server the admin does not control) and TFTP for the iPXE binaries, then iPXE is
/// pointed at the server's boot listener. Pure: validated values in, text out (docs/pxe-boot.md).
///
/// The chain it sets up, by what the DHCP request says about its sender:
///
/// | request | tag | answer |
/// |---|---|---|
/// | option 175 or user class `iPXE` | `ipxe` | the boot URL's `/boot/start.ipxe` (no TFTP, no loop) |
/// | client arch 7 or 9 (UEFI x86-64) | `efi-x86_64` | the UEFI iPXE binary over TFTP |
/// | anything else (BIOS PXE) | — | `undionly.kpxe` over TFTP |
public struct DnsmasqConfig: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable {
        /// dnsmasq hands out addresses from `range`.
        case full
        /// Another DHCP server hands out addresses; dnsmasq only adds the boot information.
        case proxy
    }

    /// The iPXE build a UEFI machine gets (both from Debian's `ipxe` package).
    public enum UEFIBinary: String, Sendable, CaseIterable {
        /// iPXE with its own NIC drivers.
        case ipxe = "ipxe.efi"
        /// iPXE on the firmware's network driver (SNP).
        case snponly = "snponly.efi"
    }

    public var interface: String
    public var serverIP: IPv4Address
    public var subnet: IPv4Subnet
    public var mode: Mode
    /// Full mode only: the addresses dnsmasq leases.
    public var range: ClosedRange<IPv4Address>?
    /// Full mode only: the router option handed out (none when nil: the provisioning network is one link).
    public var router: IPv4Address?
    /// The server's plain-HTTP boot listener, e.g. `http://10.0.0.1:8080` (no path).
    public var bootURL: String
    public var tftpRoot: String
    public var uefiBinary: UEFIBinary
    public var leaseTime: String = "12h"

    /// The BIOS iPXE binary.
    public static let biosBinary = "undionly.kpxe"

    /// A refusal, naming the command-line option it is about.
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public enum Rule: String, Sendable {
            case badInterface, badAddress, badSubnet, serverOutsideSubnet, rangeMissing, rangeNotAllowed,
                rangeOutsideSubnet, rangeReversed, rangeHoldsServer, rangeHoldsNetworkOrBroadcast, routerOutsideSubnet,
                badBootURL, badPath
        }
        public var option: String
        public var rule: Rule
        public var detail: String
        public var description: String { "\(option): \(detail)" }
    }

    /// Checks every value against the others; the first problem is thrown.
    public init(
        interface: String, serverIP: String, subnet: String, mode: Mode, range: String?, router: String?,
        bootURL: String?, tftpRoot: String, uefiBinary: UEFIBinary = .ipxe
    ) throws(Invalid) {
        func fail(_ option: String, _ rule: Invalid.Rule, _ detail: String) -> Invalid {
            Invalid(option: option, rule: rule, detail: detail)
        }
        // Linux interface names: at most 15 bytes (IFNAMSIZ - 1); dnsmasq reads the line up to a comma or space.
        let nameOK = interface.utf8.allSatisfy { b in
            (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-")
                || b == UInt8(ascii: "_")
                || b == UInt8(ascii: ".")
        }
        guard !interface.isEmpty, interface.utf8.count <= 15, nameOK, interface != ".", interface != ".." else {
            throw fail(
                "--interface", .badInterface,
                "\"\(interface)\" is not an interface name (1-15 of A-Z a-z 0-9 - _ .)")
        }
        guard let server = IPv4Address(serverIP) else {
            throw fail("--server-ip", .badAddress, "\"\(serverIP)\" is not an IPv4 address (a.b.c.d)")
        }
        guard let net = IPv4Subnet(subnet) else {
            throw fail(
                "--subnet", .badSubnet,
                "\"\(subnet)\" is not an IPv4 subnet with its host bits zero and a prefix of 8-30 (10.0.0.0/24)")
        }
        guard net.contains(server) else {
            throw fail("--server-ip", .serverOutsideSubnet, "\(server) is not in --subnet \(net)")
        }
        var leased: ClosedRange<IPv4Address>?
        switch (mode, range) {
        case (.full, nil):
            throw fail("--range", .rangeMissing, "full DHCP needs the addresses to lease (--range START,END)")
        case (.proxy, .some):
            throw fail(
                "--range", .rangeNotAllowed, "proxy DHCP leases no addresses (the network's DHCP server does)")
        case (.full, let text?):
            let parts = text.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 2, let start = IPv4Address(String(parts[0])), let end = IPv4Address(String(parts[1]))
            else {
                throw fail("--range", .badAddress, "\"\(text)\" is not START,END (two IPv4 addresses)")
            }
            guard start <= end else { throw fail("--range", .rangeReversed, "\(start) comes after \(end)") }
            for address in [start, end] where !net.contains(address) {
                throw fail("--range", .rangeOutsideSubnet, "\(address) is not in --subnet \(net)")
            }
            if start == net.network || end == net.broadcast {
                throw fail(
                    "--range", .rangeHoldsNetworkOrBroadcast,
                    "\(start)-\(end) holds the subnet's network (\(net.network)) or broadcast (\(net.broadcast)) address"
                )
            }
            if start...end ~= server {
                throw fail("--range", .rangeHoldsServer, "\(start)-\(end) holds the server's own address \(server)")
            }
            leased = start...end
        case (.proxy, nil):
            break
        }
        var gateway: IPv4Address?
        if let router {
            guard let address = IPv4Address(router) else {
                throw fail("--router", .badAddress, "\"\(router)\" is not an IPv4 address")
            }
            guard net.contains(address) else {
                throw fail("--router", .routerOutsideSubnet, "\(address) is not in --subnet \(net)")
            }
            gateway = address
        }
        let url = bootURL ?? "http://\(server):8080"
        guard Self.isBootURL(url) else {
            throw fail(
                "--boot-url", .badBootURL,
                "\"\(url)\" is not http://HOST[:PORT] (plain HTTP, no path: Debian's iPXE has no HTTPS; docs/threat-model.md)"
            )
        }
        guard tftpRoot.hasPrefix("/"), !tftpRoot.contains(where: { $0 == "," || $0.isWhitespace || $0 == "#" }) else {
            throw fail("--tftp-root", .badPath, "\"\(tftpRoot)\" is not an absolute path without spaces, commas or #")
        }
        self.interface = interface
        self.serverIP = server
        self.subnet = net
        self.mode = mode
        self.range = leased
        self.router = gateway
        self.bootURL = url
        self.tftpRoot = tftpRoot
        self.uefiBinary = uefiBinary
    }

    /// `http://` then a host of letters, digits, `.` and `-`, an optional port, nothing else: it goes into a
    /// dnsmasq line where a comma or a space would start another field.
    static func isBootURL(_ url: String) -> Bool {
        guard url.hasPrefix("http://") else { return false }
        let authority = url.dropFirst("http://".count)
        let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let host = parts.first, !host.isEmpty, host.utf8.count <= 253,
            host.utf8.allSatisfy({ b in
                (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                    || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: ".")
                    || b == UInt8(ascii: "-")
            })
        else { return false }
        if parts.count == 2 {
            guard let port = Int(parts[1]), (1...65535).contains(port), parts[1].allSatisfy(\.isNumber) else {
                return false
            }
        }
        return true
    }

    /// The iPXE binaries the TFTP root must hold: BIOS first, then UEFI.
    public var tftpFiles: [String] { [Self.biosBinary, uefiBinary.rawValue] }

    /// The URL iPXE gets once it runs: the first script (Boot.swift, `IPXEScript.start`).
    public var scriptURL: String { bootURL + "/boot/start.ipxe" }

    /// The configuration file's text.
    public func render() -> String {
        let what =
            switch mode {
            case .full: "Full DHCP: leases \(range!.lowerBound)-\(range!.upperBound)"
            case .proxy: "Proxy DHCP: the network's own DHCP server leases the addresses"
            }
        var lines = [
            "# The provisioning network: written by `provisionerctl configure dhcp` (docs/pxe-boot.md).",
            "# Edit by running the command again; it shows what it writes before writing.",
            "# \(what) on \(interface) (\(subnet)).",
            "interface=\(interface)",
            "bind-interfaces",
            "# DHCP and TFTP only: no DNS server.",
            "port=0",
        ]
        switch mode {
        case .full:
            lines.append("dhcp-range=\(range!.lowerBound),\(range!.upperBound),\(subnet.netmask),\(leaseTime)")
            // Without a value dnsmasq sends no router at all (by default it names itself).
            lines.append("dhcp-option=option:router" + (router.map { ",\($0)" } ?? ""))
        case .proxy:
            lines.append("dhcp-range=\(subnet.network),proxy,\(subnet.netmask)")
        }
        lines += [
            "enable-tftp",
            "tftp-root=\(tftpRoot)",
            "# iPXE says so (option 175, user class iPXE): it gets the server's script, not iPXE again.",
            "dhcp-match=set:ipxe,175",
            "dhcp-userclass=set:ipxe,iPXE",
            "# Firmware: UEFI x86-64 (client arch 7 or 9) gets \(uefiBinary.rawValue), BIOS gets \(Self.biosBinary).",
            "dhcp-match=set:efi-x86_64,option:client-arch,7",
            "dhcp-match=set:efi-x86_64,option:client-arch,9",
        ]
        switch mode {
        case .full:
            lines += [
                "dhcp-boot=tag:!ipxe,tag:!efi-x86_64,\(Self.biosBinary)",
                "dhcp-boot=tag:!ipxe,tag:efi-x86_64,\(uefiBinary.rawValue)",
                "dhcp-boot=tag:ipxe,\(scriptURL)",
            ]
        case .proxy:
            // A proxy answers PXE clients with boot services; a name with its suffix gets no ".0" added.
            lines += [
                "pxe-prompt=\"provisioner\",0",
                "pxe-service=tag:!ipxe,x86PC,\"iPXE (BIOS)\",\(Self.biosBinary)",
                "pxe-service=tag:!ipxe,BC_EFI,\"iPXE (UEFI)\",\(uefiBinary.rawValue)",
                "pxe-service=tag:!ipxe,x86-64_EFI,\"iPXE (UEFI)\",\(uefiBinary.rawValue)",
                "pxe-service=tag:ipxe,x86PC,\"provisioner\",\(scriptURL)",
                "pxe-service=tag:ipxe,BC_EFI,\"provisioner\",\(scriptURL)",
                "pxe-service=tag:ipxe,x86-64_EFI,\"provisioner\",\(scriptURL)",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// An IPv4 address, ordered by its value.
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(value: UInt32) { self.value = value }

    /// Dotted quad only: four decimal parts 0-255, no leading zeros (which some tools read as octal).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                part == "0" || !part.hasPrefix("0"), let byte = UInt32(part), byte <= 255
            else { return nil }
            value = value << 8 | byte
        }
        self.value = value
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
}

/// An IPv4 subnet `a.b.c.d/N` whose host bits are zero.
public struct IPv4Subnet: Sendable, Equatable, CustomStringConvertible {
    public var network: IPv4Address
    public var prefix: Int

    /// Prefixes 8-30: a provisioning network has room for hosts and is not a whole class-A of the internet.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(String(parts[0])),
            parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let prefix = Int(parts[1]), (8...30).contains(prefix)
        else { return nil }
        let mask = UInt32.max << (32 - prefix)
        guard address.value & ~mask == 0 else { return nil }
        self.network = address
        self.prefix = prefix
    }

    var mask: UInt32 { UInt32.max << (32 - prefix) }
    public var netmask: IPv4Address { IPv4Address(value: mask) }
    public var broadcast: IPv4Address { IPv4Address(value: network.value | ~mask) }
    public func contains(_ address: IPv4Address) -> Bool { address.value & mask == network.value }
    public var description: String { "\(network)/\(prefix)" }
}
