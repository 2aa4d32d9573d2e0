import Testing

@testable import ProvisionerAPI
@testable import ProvisionerPlugins

/// The `network` plugin's rendered files, NetworkManager keyfiles and systemd-networkd units, as tables.
@Suite struct NetworkPluginTests {
    static func nmImage(_ unit: String) -> [String]? {
        ["NetworkManager.service": ["multi-user.target"], "systemd-networkd.service": ["multi-user.target"]][unit]
    }
    static func networkdImage(_ unit: String) -> [String]? {
        ["systemd-networkd.service": ["multi-user.target"]][unit]
    }
    static let h = NetworkPlugin.header

    static func files(_ parameters: [String: String], image: (String) -> [String]?) throws -> [String: String] {
        var out: [String: String] = [:]
        for entry in try NetworkPlugin.entries(PluginConfig(name: "network", parameters: parameters), wantedBy: image) {
            if case .file(let path, let content, let mode) = entry {
                out[path] = content
                #expect(mode == (path.hasSuffix(".nmconnection") ? 0o600 : 0o644))
            }
        }
        return out
    }

    static let nm = "/etc/NetworkManager/system-connections/"
    static func uuidOf(_ name: String) -> String { NetworkPlugin.uuid(name) }

    /// (parameters, file, exact content) with NetworkManager detected in the image.
    static let keyfiles: [([String: String], String, String)] = [
        (
            ["mac": "52:54:00:AB:CD:EF", "address": "10.1.0.1/16", "gateway": "10.1.255.254", "dns": "10.1.0.250", "mtu": "9000"],
            nm + "provisioner-default.nmconnection",
            [h, "[connection]", "id=provisioner-default", "uuid=\(uuidOf("provisioner-default"))", "type=ethernet",
             "autoconnect=true", "", "[ethernet]", "mac-address=52:54:00:ab:cd:ef", "mtu=9000", "", "[ipv4]",
             "method=manual", "address1=10.1.0.1/16,10.1.255.254", "dns=10.1.0.250;", "", "[ipv6]", "method=ignore", ""]
                .joined(separator: "\n")
        ),
        (
            ["interface": "eth0"], nm + "provisioner-eth0.nmconnection",
            [h, "[connection]", "id=provisioner-eth0", "uuid=\(uuidOf("provisioner-eth0"))", "type=ethernet",
             "interface-name=eth0", "autoconnect=true", "", "[ethernet]", "", "[ipv4]", "method=auto", "", "[ipv6]",
             "method=auto", ""].joined(separator: "\n")
        ),
        (
            ["type": "bond", "members": "52:54:00:00:00:01,52:54:00:00:00:02", "bondMode": "active-backup", "dhcp": "ipv4"],
            nm + "provisioner-bond0.nmconnection",
            [h, "[connection]", "id=provisioner-bond0", "uuid=\(uuidOf("provisioner-bond0"))", "type=bond",
             "interface-name=bond0", "autoconnect=true", "", "[bond]", "mode=active-backup", "miimon=100", "", "[ipv4]",
             "method=auto", "", "[ipv6]", "method=ignore", ""].joined(separator: "\n")
        ),
        (
            ["type": "bond", "members": "52:54:00:00:00:01,52:54:00:00:00:02"], nm + "provisioner-bond0-port1.nmconnection",
            [h, "[connection]", "id=provisioner-bond0-port1", "uuid=\(uuidOf("provisioner-bond0-port1"))", "type=ethernet",
             "master=bond0", "slave-type=bond", "autoconnect=true", "", "[ethernet]", "mac-address=52:54:00:00:00:02", ""]
                .joined(separator: "\n")
        ),
        (
            ["type": "vlan", "vlanId": "100", "parent": "52:54:00:00:00:01", "address": "192.168.100.5/24"],
            nm + "provisioner-vlan100.nmconnection",
            [h, "[connection]", "id=provisioner-vlan100", "uuid=\(uuidOf("provisioner-vlan100"))", "type=vlan",
             "interface-name=vlan100", "autoconnect=true", "", "[vlan]", "id=100",
             "parent=\(uuidOf("provisioner-vlan100-parent"))", "", "[ipv4]", "method=manual", "address1=192.168.100.5/24",
             "", "[ipv6]", "method=ignore", ""].joined(separator: "\n")
        ),
        (
            ["type": "bridge", "name": "br1", "members": "52:54:00:00:00:03"], nm + "provisioner-br1.nmconnection",
            [h, "[connection]", "id=provisioner-br1", "uuid=\(uuidOf("provisioner-br1"))", "type=bridge",
             "interface-name=br1", "autoconnect=true", "", "[bridge]", "stp=false", "", "[ipv4]", "method=auto", "",
             "[ipv6]", "method=auto", ""].joined(separator: "\n")
        ),
        (
            ["type": "infiniband", "mac": "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:0b:0c", "address": "10.9.0.1/16", "mtu": "65520"],
            nm + "provisioner-default.nmconnection",
            [h, "[connection]", "id=provisioner-default", "uuid=\(uuidOf("provisioner-default"))", "type=infiniband",
             "autoconnect=true", "", "[infiniband]", "mac-address=80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:0b:0c",
             "transport-mode=datagram", "mtu=65520", "", "[ipv4]", "method=manual", "address1=10.9.0.1/16", "", "[ipv6]",
             "method=ignore", ""].joined(separator: "\n")
        ),
    ]

    @Test(arguments: keyfiles)
    func writesNetworkManagerKeyfiles(_ parameters: [String: String], _ path: String, _ content: String) throws {
        let files = try Self.files(parameters, image: Self.nmImage)
        #expect(files[path] == content, "\(files.keys.sorted())")
        #expect(!files.keys.contains { $0.hasPrefix("/etc/systemd/network") })
    }

    /// NetworkManager takes over the links the initramfs configured, instead of keeping them as found.
    @Test func networkManagerTakesOverTheInitramfsLinks() throws {
        let files = try Self.files(["mac": "52:54:00:ab:cd:ef", "address": "10.0.0.11/24"], image: Self.nmImage)
        #expect(
            files["/etc/NetworkManager/conf.d/90-provisioner.conf"]
                == [Self.h, "[device-provisioner]", "match-device=*", "keep-configuration=no", ""].joined(separator: "\n"))
        let networkd = try Self.files(["mac": "52:54:00:ab:cd:ef", "address": "10.0.0.11/24"], image: Self.networkdImage)
        #expect(!networkd.keys.contains { $0.hasPrefix("/etc/NetworkManager") })
    }

    static let units: [([String: String], String, String)] = [
        (
            ["mac": "52:54:00:ab:cd:ef", "address": "10.0.0.11/24", "gateway": "10.0.0.1", "mtu": "9000"],
            "/etc/systemd/network/10-provisioner-default.network",
            [h, "[Match]", "MACAddress=52:54:00:ab:cd:ef", "", "[Link]", "MTUBytes=9000", "", "[Network]",
             "Address=10.0.0.11/24", "Gateway=10.0.0.1", ""].joined(separator: "\n")
        ),
        (
            ["type": "bond", "members": "52:54:00:00:00:01,52:54:00:00:00:02"], "/etc/systemd/network/10-provisioner-bond0.netdev",
            [h, "[NetDev]", "Name=bond0", "Kind=bond", "", "[Bond]", "Mode=802.3ad", "MIIMonitorSec=100ms",
             "LACPTransmitRate=fast", ""].joined(separator: "\n")
        ),
        (
            ["type": "bond", "members": "52:54:00:00:00:01,52:54:00:00:00:02"],
            "/etc/systemd/network/10-provisioner-bond0-port0.network",
            [h, "[Match]", "MACAddress=52:54:00:00:00:01", "", "[Network]", "Bond=bond0", ""].joined(separator: "\n")
        ),
        (
            ["type": "vlan", "vlanId": "7", "parent": "52:54:00:00:00:01"], "/etc/systemd/network/10-provisioner-vlan7-parent.network",
            [h, "[Match]", "MACAddress=52:54:00:00:00:01", "", "[Network]", "VLAN=vlan7", "LinkLocalAddressing=no", ""]
                .joined(separator: "\n")
        ),
        (
            ["stack": "networkd", "type": "bridge", "members": "52:54:00:00:00:03", "dhcp": "ipv6"],
            "/etc/systemd/network/10-provisioner-br0.network",
            [h, "[Match]", "Name=br0", "", "[Network]", "DHCP=ipv6", ""].joined(separator: "\n")
        ),
    ]

    @Test(arguments: units)
    func writesNetworkdUnits(_ parameters: [String: String], _ path: String, _ content: String) throws {
        let files = try Self.files(parameters, image: parameters["stack"] == nil ? Self.networkdImage : Self.nmImage)
        #expect(files[path] == content, "\(files.keys.sorted())")
    }

    @Test func theSameParametersGiveTheSameBytes() throws {
        // Idempotence: a second boot computes exactly the same files, so the runner writes nothing.
        let p = ["type": "vlan", "vlanId": "100", "parent": "52:54:00:00:00:01"]
        #expect(try Self.files(p, image: Self.nmImage) == Self.files(p, image: Self.nmImage))
        #expect(NetworkPlugin.uuid("a") != NetworkPlugin.uuid("b"))
    }

    static let refusals: [([String: String], String)] = [
        (["type": "wifi"], "type must be ethernet, bond, vlan, bridge or infiniband"),
        (["type": "bond"], "a bond needs members"),
        (["type": "vlan", "parent": "52:54:00:00:00:01"], "a vlan needs vlanId 1-4094"),
        (["type": "vlan", "vlanId": "5000", "parent": "52:54:00:00:00:01"], "a vlan needs vlanId 1-4094"),
        (["type": "vlan", "vlanId": "5"], "a vlan needs parent"),
        (["bondMode": "802.3ad"], "bondMode is for a bond"),
        (["type": "bond", "members": "x", "bondMode": "rr"], "member \"x\" is not a MAC address"),
        (["mtu": "10"], "mtu must be 68-65520"),
        (["stack": "ifupdown"], "stack must be auto, networkmanager or networkd"),
        (["type": "infiniband"], "an infiniband link needs mac or interface"),
        (["members": "52:54:00:00:00:01"], "members are for a bond or bridge"),
        (["name": "a-very-long-interface-name"], "is not an interface name"),
    ]

    @Test(arguments: refusals)
    func refusesBadSettingsNamingThem(_ parameters: [String: String], _ problem: String) {
        #expect {
            try NetworkPlugin.entries(PluginConfig(name: "network", parameters: parameters), wantedBy: Self.nmImage)
        } throws: { error in
            let found = (error as? PluginError)?.problem.contains(problem) == true
            if !found { print("got: \(error)") }
            return found
        }
    }
}
