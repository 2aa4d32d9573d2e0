import Testing

@testable import ProvisionerCore

@Suite struct DnsmasqConfigTests {
    static func full(
        interface: String = "eth1", serverIP: String = "10.0.0.1", subnet: String = "10.0.0.0/24",
        range: String? = "10.0.0.100,10.0.0.200", router: String? = nil, bootURL: String? = nil,
        tftpRoot: String = "/srv/tftp"
    ) throws(DnsmasqConfig.Invalid) -> DnsmasqConfig {
        try DnsmasqConfig(
            interface: interface, serverIP: serverIP, subnet: subnet, mode: .full, range: range, router: router,
            bootURL: bootURL, tftpRoot: tftpRoot)
    }

    @Test func fullModeLeasesTheRangeAndChainsIntoTheServersScript() throws {
        let text = try Self.full(router: "10.0.0.254").render()
        let lines = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        #expect(
            lines == [
                "interface=eth1",
                "bind-interfaces",
                "port=0",
                "dhcp-range=10.0.0.100,10.0.0.200,255.255.255.0,12h",
                "dhcp-option=option:router,10.0.0.254",
                "enable-tftp",
                "tftp-root=/srv/tftp",
                "dhcp-match=set:ipxe,175",
                "dhcp-userclass=set:ipxe,iPXE",
                "dhcp-match=set:efi-x86_64,option:client-arch,7",
                "dhcp-match=set:efi-x86_64,option:client-arch,9",
                "dhcp-boot=tag:!ipxe,tag:!efi-x86_64,undionly.kpxe",
                "dhcp-boot=tag:!ipxe,tag:efi-x86_64,ipxe.efi",
                "dhcp-boot=tag:ipxe,http://10.0.0.1:8080/boot/start.ipxe",
            ])
    }

    @Test func proxyModeLeasesNothingAndAnswersWithBootServices() throws {
        let config = try DnsmasqConfig(
            interface: "br-prov", serverIP: "172.16.5.10", subnet: "172.16.0.0/16", mode: .proxy, range: nil,
            router: nil, bootURL: "http://boot.example:8080", tftpRoot: "/srv/tftp", uefiBinary: .snponly)
        let text = config.render()
        #expect(text.contains("\ndhcp-range=172.16.0.0,proxy,255.255.0.0\n"))
        #expect(!text.contains("dhcp-boot="))
        #expect(text.contains("\npxe-service=tag:!ipxe,x86PC,\"iPXE (BIOS)\",undionly.kpxe\n"))
        #expect(text.contains("\npxe-service=tag:!ipxe,BC_EFI,\"iPXE (UEFI)\",snponly.efi\n"))
        #expect(
            text.contains("\npxe-service=tag:ipxe,BC_EFI,\"provisioner\",http://boot.example:8080/boot/start.ipxe\n"))
        #expect(config.tftpFiles == ["undionly.kpxe", "snponly.efi"])
    }

    @Test func noRouterOptionUnlessGiven() throws {
        // An empty option: dnsmasq would otherwise hand out its own address as the router.
        #expect(try Self.full().render().contains("\ndhcp-option=option:router\n"))
    }

    // (option, rule) for each refusal: the option named is the one the admin has to change.
    static let refusals: [(String, DnsmasqConfig.Mode, [String: String], String, DnsmasqConfig.Invalid.Rule)] = [
        ("empty interface", .full, ["interface": ""], "--interface", .badInterface),
        ("interface too long", .full, ["interface": "a234567890123456"], "--interface", .badInterface),
        ("interface with a comma", .full, ["interface": "eth1,eth2"], "--interface", .badInterface),
        ("interface with a newline", .full, ["interface": "eth1\nport=53"], "--interface", .badInterface),
        ("server not an address", .full, ["serverIP": "10.0.0"], "--server-ip", .badAddress),
        ("server octet too big", .full, ["serverIP": "10.0.0.256"], "--server-ip", .badAddress),
        ("server octal-looking", .full, ["serverIP": "10.0.0.01"], "--server-ip", .badAddress),
        ("subnet without prefix", .full, ["subnet": "10.0.0.0"], "--subnet", .badSubnet),
        ("subnet host bits set", .full, ["subnet": "10.0.0.1/24"], "--subnet", .badSubnet),
        ("subnet prefix 31", .full, ["subnet": "10.0.0.0/31"], "--subnet", .badSubnet),
        ("server outside the subnet", .full, ["serverIP": "10.0.1.1"], "--server-ip", .serverOutsideSubnet),
        ("full without a range", .full, ["range": ""], "--range", .rangeMissing),
        ("proxy with a range", .proxy, [:], "--range", .rangeNotAllowed),
        ("range of one address", .full, ["range": "10.0.0.100"], "--range", .badAddress),
        ("range reversed", .full, ["range": "10.0.0.200,10.0.0.100"], "--range", .rangeReversed),
        ("range outside", .full, ["range": "10.0.0.100,10.0.1.5"], "--range", .rangeOutsideSubnet),
        (
            "range from the network address", .full, ["range": "10.0.0.0,10.0.0.50"], "--range",
            .rangeHoldsNetworkOrBroadcast
        ),
        ("range to the broadcast", .full, ["range": "10.0.0.100,10.0.0.255"], "--range", .rangeHoldsNetworkOrBroadcast),
        ("range holds the server", .full, ["range": "10.0.0.1,10.0.0.50"], "--range", .rangeHoldsServer),
        ("router outside", .full, ["router": "192.168.1.1"], "--router", .routerOutsideSubnet),
        ("router not an address", .full, ["router": "gw"], "--router", .badAddress),
        ("boot URL https", .full, ["bootURL": "https://10.0.0.1:8443"], "--boot-url", .badBootURL),
        ("boot URL with a path", .full, ["bootURL": "http://10.0.0.1:8080/boot"], "--boot-url", .badBootURL),
        ("boot URL with a comma", .full, ["bootURL": "http://10.0.0.1,8080"], "--boot-url", .badBootURL),
        ("boot URL port 0", .full, ["bootURL": "http://10.0.0.1:0"], "--boot-url", .badBootURL),
        ("boot URL empty host", .full, ["bootURL": "http://:8080"], "--boot-url", .badBootURL),
        ("TFTP root relative", .full, ["tftpRoot": "srv/tftp"], "--tftp-root", .badPath),
        ("TFTP root with a space", .full, ["tftpRoot": "/srv/my tftp"], "--tftp-root", .badPath),
    ]

    @Test(arguments: refusals)
    func refuses(
        _ what: String, _ mode: DnsmasqConfig.Mode, _ changes: [String: String], _ option: String,
        _ rule: DnsmasqConfig.Invalid.Rule
    ) {
        let range = changes["range"].map { $0.isEmpty ? nil : $0 } ?? "10.0.0.100,10.0.0.200"
        do {
            _ = try DnsmasqConfig(
                interface: changes["interface"] ?? "eth1", serverIP: changes["serverIP"] ?? "10.0.0.1",
                subnet: changes["subnet"] ?? "10.0.0.0/24", mode: mode, range: range, router: changes["router"],
                bootURL: changes["bootURL"], tftpRoot: changes["tftpRoot"] ?? "/srv/tftp")
            Issue.record("\(what): accepted")
        } catch {
            #expect(error.option == option, "\(what): \(error)")
            #expect(error.rule == rule, "\(what): \(error)")
            #expect(error.description.hasPrefix(option + ": "))
        }
    }

    static let addresses: [(String, String?)] = [
        ("10.0.0.1", "10.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"),
        ("1.2.3", nil), ("1.2.3.4.5", nil), ("1..2.3", nil), ("a.b.c.d", nil), (" 1.2.3.4", nil), ("1.2.3.-4", nil),
        ("1.2.3.+4", nil), ("01.2.3.4", nil), ("1.2.3.1000", nil),
    ]

    @Test(arguments: addresses)
    func parsesDottedQuadsOnly(_ text: String, _ expected: String?) {
        #expect(IPv4Address(text)?.description == expected)
    }

    @Test func subnetArithmetic() throws {
        let net = try #require(IPv4Subnet("192.168.4.0/22"))
        #expect(net.netmask.description == "255.255.252.0")
        #expect(net.broadcast.description == "192.168.7.255")
        #expect(net.contains(IPv4Address("192.168.7.1")!))
        #expect(!net.contains(IPv4Address("192.168.8.1")!))
    }
}
