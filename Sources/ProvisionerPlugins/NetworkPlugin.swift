import ProvisionerAPI
import ProvisionerCore

/// The `network` plugin: one interface (or bond, VLAN, bridge, IPoIB link) per plugin entry,
/// written for the image's network stack (docs/node-config.md, "network"):
///
/// - `stack`: `auto` (default: NetworkManager when the image has `NetworkManager.service`, else
///   systemd-networkd), `networkmanager` or `networkd`.
/// - `type`: `ethernet` (default), `bond`, `vlan`, `bridge`, `infiniband`.
/// - matching: `mac` (an ethernet or IPoIB link) or `interface` (a name; for ethernet without a
///   MAC, default `en* eth*` under networkd); `name` names a bond, VLAN or bridge (default `bond0`,
///   `vlan<id>`, `br0`).
/// - `members` (comma-separated MACs) for a bond or bridge; `bondMode` `802.3ad` (default) or
///   `active-backup`; `vlanId` (1-4094) and `parent` (a MAC) for a VLAN.
/// - addresses: `address` (CIDR) with `gateway`, or `dhcp` (`yes`, `ipv4`, `ipv6`, `no`);
///   `dns` (comma-separated); `mtu` (68-65520).
/// - `file`: the name the files are written under (default: the interface or `default`).
public enum NetworkPlugin {
    public enum Stack: String, Sendable, CaseIterable { case networkmanager, networkd }

    static let known: Set<String> = [
        "stack", "type", "interface", "mac", "name", "members", "bondMode", "vlanId", "parent", "address", "dhcp",
        "gateway", "dns", "mtu", "file",
    ]

    /// The settings read and checked, before any stack is chosen.
    struct Settings {
        var type = "ethernet"
        var mac: String?
        var interface: String?
        var name: String
        var members: [String] = []
        var bondMode = "802.3ad"
        var vlanId: Int?
        var parent: String?
        var address: String?
        var gateway: String?
        var dhcp = "yes"
        var dns: [String] = []
        var mtu: Int?
        var file: String
    }

    public static func entries(
        _ plugin: PluginConfig, wantedBy: (String) -> [String]?
    ) throws(PluginError) -> [RootEntry] {
        let p = plugin.parameters
        func fail(_ problem: String) -> PluginError { PluginError(plugin: plugin.name, problem: problem) }
        for key in p.keys.sorted() where !known.contains(key) {
            throw fail("unknown parameter \"\(key)\" (known: \(known.sorted().joined(separator: ", ")))")
        }
        let settings = try read(p, fail: fail)
        let stack: Stack
        switch p["stack"] ?? "auto" {
        case "auto": stack = wantedBy("NetworkManager.service") != nil ? .networkmanager : .networkd
        case "networkmanager": stack = .networkmanager
        case "networkd": stack = .networkd
        case let other: throw fail("stack must be auto, networkmanager or networkd, not \"\(other)\"")
        }
        switch stack {
        case .networkmanager:
            return try keyfiles(settings) + BuiltinPlugins.enable("NetworkManager.service", wantedBy: wantedBy, plugin: plugin.name)
        case .networkd:
            return try networkd(settings, fail: fail)
                + BuiltinPlugins.enable("systemd-networkd.service", wantedBy: wantedBy, plugin: plugin.name)
        }
    }

    static func read(_ p: [String: String], fail: (String) -> PluginError) throws(PluginError) -> Settings {
        let type = p["type"] ?? "ethernet"
        guard ["ethernet", "bond", "vlan", "bridge", "infiniband"].contains(type) else {
            throw fail("type must be ethernet, bond, vlan, bridge or infiniband, not \"\(type)\"")
        }
        var s = Settings(name: "", file: "default")
        s.type = type
        if let mac = p["mac"] {
            guard isMAC(mac, infiniband: type == "infiniband") else { throw fail("mac \"\(mac)\" is not a MAC address") }
            s.mac = mac.lowercased()
        }
        if let interface = p["interface"] {
            guard !interface.contains("\n"), !interface.isEmpty else { throw fail("interface is empty or holds a newline") }
            s.interface = interface
        }
        if type == "infiniband" && s.mac == nil && s.interface == nil { throw fail("an infiniband link needs mac or interface") }
        let defaultName = ["bond": "bond0", "bridge": "br0", "vlan": "vlan\(p["vlanId"] ?? "")"][type]
        s.name = p["name"] ?? defaultName ?? s.interface ?? "default"
        guard BuiltinPlugins.isSimple(s.name), s.name.count <= 15 else {
            throw fail("name \"\(s.name)\" is not an interface name (at most 15 of letters, digits, - _ .)")
        }
        for member in BuiltinPlugins.list(p["members"]) {
            guard isMAC(member, infiniband: false) else { throw fail("member \"\(member)\" is not a MAC address") }
            s.members.append(member.lowercased())
        }
        if (type == "bond" || type == "bridge") && s.members.isEmpty { throw fail("a \(type) needs members (MAC addresses)") }
        if type != "bond" && type != "bridge" && !s.members.isEmpty { throw fail("members are for a bond or bridge, not \(type)") }
        if let mode = p["bondMode"] {
            guard type == "bond" else { throw fail("bondMode is for a bond") }
            guard ["802.3ad", "active-backup"].contains(mode) else { throw fail("bondMode must be 802.3ad or active-backup") }
            s.bondMode = mode
        }
        if type == "vlan" {
            guard let text = p["vlanId"], let id = Int(text), (1...4094).contains(id) else { throw fail("a vlan needs vlanId 1-4094") }
            guard let parent = p["parent"], isMAC(parent, infiniband: false) else { throw fail("a vlan needs parent, its link's MAC") }
            s.vlanId = id
            s.parent = parent.lowercased()
        } else if p["vlanId"] != nil || p["parent"] != nil {
            throw fail("vlanId and parent are for a vlan")
        }
        if let address = p["address"] {
            guard BuiltinPlugins.isCIDR(address) else {
                throw fail("address \"\(address)\" is not an address with a prefix length (10.0.0.11/24)")
            }
            s.address = address
            if let dhcp = p["dhcp"], dhcp != "no" { throw fail("dhcp is \(dhcp), but a static address is set") }
            s.dhcp = "no"
        } else {
            s.dhcp = p["dhcp"] ?? "yes"
            guard ["yes", "ipv4", "ipv6", "no"].contains(s.dhcp) else { throw fail("dhcp must be yes, ipv4, ipv6 or no") }
        }
        if let gateway = p["gateway"] {
            guard s.address != nil else { throw fail("gateway needs a static address") }
            guard BuiltinPlugins.isIP(gateway) else { throw fail("gateway \"\(gateway)\" is not an address") }
            s.gateway = gateway
        }
        for server in BuiltinPlugins.list(p["dns"]) {
            guard BuiltinPlugins.isIP(server) else { throw fail("dns server \"\(server)\" is not an address") }
            s.dns.append(server)
        }
        if let text = p["mtu"] {
            guard let mtu = Int(text), (68...65520).contains(mtu) else { throw fail("mtu must be 68-65520, not \"\(text)\"") }
            s.mtu = mtu
        }
        s.file = p["file"] ?? (["bond", "vlan", "bridge"].contains(type) ? s.name : (p["interface"].flatMap { BuiltinPlugins.isSimple($0) ? $0 : nil } ?? "default"))
        guard BuiltinPlugins.isSimple(s.file) else { throw fail("file \"\(s.file)\" is not a simple name") }
        return s
    }

    static func isMAC(_ s: String, infiniband: Bool) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        let count = infiniband ? [6, 20] : [6]
        return count.contains(parts.count) && parts.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isHexDigit) }
    }

    // MARK: NetworkManager keyfiles

    static let header = "# Written by the provisioner's network plugin; changes here are replaced on boot."

    /// The provisioning initramfs brought the links up with DHCP before the switch into the image;
    /// by default NetworkManager keeps such a link as it finds it ("external") and never applies
    /// the connections written here. `keep-configuration=no` (NetworkManager 1.40 and later; older
    /// ones ignore it) makes it activate them at its start.
    static let takeover = "/etc/NetworkManager/conf.d/90-provisioner.conf"
    static let takeoverText = [
        header, "[device-provisioner]", "match-device=*", "keep-configuration=no", "",
    ].joined(separator: "\n")

    /// `/etc/NetworkManager/system-connections/provisioner-<file>.nmconnection` (0600, as NM
    /// requires), plus one port connection per bond or bridge member.
    static func keyfiles(_ s: Settings) throws(PluginError) -> [RootEntry] {
        let dir = "/etc/NetworkManager/system-connections"
        var main: [String] = [header, "[connection]", "id=provisioner-\(s.file)", "uuid=\(uuid("provisioner-\(s.file)"))"]
        var body: [String] = []
        switch s.type {
        case "ethernet":
            main.append("type=ethernet")
            if let interface = s.interface, s.mac == nil, !interface.contains(" "), !interface.contains("*") {
                main.append("interface-name=\(interface)")
            }
            body += ["", "[ethernet]"] + (s.mac.map { ["mac-address=\($0)"] } ?? []) + (s.mtu.map { ["mtu=\($0)"] } ?? [])
        case "infiniband":
            main.append("type=infiniband")
            if let interface = s.interface, s.mac == nil { main.append("interface-name=\(interface)") }
            body += ["", "[infiniband]"] + (s.mac.map { ["mac-address=\($0)"] } ?? []) + ["transport-mode=datagram"]
                + (s.mtu.map { ["mtu=\($0)"] } ?? [])
        case "bond":
            main += ["type=bond", "interface-name=\(s.name)"]
            body += ["", "[bond]", "mode=\(s.bondMode)", "miimon=100"] + (s.mtu.map { ["", "[ethernet]", "mtu=\($0)"] } ?? [])
        case "bridge":
            main += ["type=bridge", "interface-name=\(s.name)"]
            body += ["", "[bridge]", "stp=false"] + (s.mtu.map { ["", "[ethernet]", "mtu=\($0)"] } ?? [])
        default:  // vlan
            main += ["type=vlan", "interface-name=\(s.name)"]
            body += ["", "[vlan]", "id=\(s.vlanId!)", "parent=\(uuid("provisioner-\(s.file)-parent"))"]
                + (s.mtu.map { ["", "[ethernet]", "mtu=\($0)"] } ?? [])
        }
        main.append("autoconnect=true")
        var text = main + body + ipSections(s)
        text.append("")
        var entries: [RootEntry] = [
            .file(path: "\(dir)/provisioner-\(s.file).nmconnection", content: text.joined(separator: "\n"), mode: 0o600),
            .file(path: takeover, content: takeoverText, mode: 0o644),
        ]
        // Ports of a bond or bridge, and a VLAN's parent link (no addresses of its own).
        for (i, mac) in s.members.enumerated() {
            let id = "provisioner-\(s.file)-port\(i)"
            let port = [
                header, "[connection]", "id=\(id)", "uuid=\(uuid(id))", "type=ethernet", "master=\(s.name)",
                "slave-type=\(s.type)", "autoconnect=true", "", "[ethernet]", "mac-address=\(mac)", "",
            ]
            entries.append(.file(path: "\(dir)/\(id).nmconnection", content: port.joined(separator: "\n"), mode: 0o600))
        }
        if let parent = s.parent {
            let id = "provisioner-\(s.file)-parent"
            let link = [
                header, "[connection]", "id=\(id)", "uuid=\(uuid(id))", "type=ethernet", "autoconnect=true", "",
                "[ethernet]", "mac-address=\(parent)", "", "[ipv4]", "method=disabled", "", "[ipv6]", "method=ignore", "",
            ]
            entries.append(.file(path: "\(dir)/\(id).nmconnection", content: link.joined(separator: "\n"), mode: 0o600))
        }
        return entries
    }

    static func ipSections(_ s: Settings) -> [String] {
        var v4 = ["", "[ipv4]"]
        var v6 = ["", "[ipv6]"]
        if let address = s.address {
            let isV6 = address.contains(":")
            let line = "address1=\(address)" + (s.gateway.map { ",\($0)" } ?? "")
            if isV6 {
                v4.append("method=disabled")
                v6 += ["method=manual", line]
            } else {
                v4 += ["method=manual", line]
                v6.append("method=ignore")
            }
        } else {
            v4.append(s.dhcp == "yes" || s.dhcp == "ipv4" ? "method=auto" : "method=disabled")
            v6.append(s.dhcp == "yes" || s.dhcp == "ipv6" ? "method=auto" : "method=ignore")
        }
        let v4dns = s.dns.filter { !$0.contains(":") }
        let v6dns = s.dns.filter { $0.contains(":") }
        if !v4dns.isEmpty { v4.append("dns=\(v4dns.joined(separator: ";"));") }
        if !v6dns.isEmpty { v6.append("dns=\(v6dns.joined(separator: ";"));") }
        return v4 + v6
    }

    /// A stable UUID (version 4 layout) from a name, so the same keyfile is written on every boot.
    static func uuid(_ name: String) -> String {
        func fnv(_ seed: UInt64) -> UInt64 {
            var hash = seed
            for byte in name.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
            return hash
        }
        let a = fnv(0xcbf2_9ce4_8422_2325)
        let b = fnv(0x84222325_cbf29ce4)
        func hex(_ v: UInt64, _ digits: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, digits - s.count)) + s.suffix(digits)
        }
        let timeHigh = (a & 0x0fff) | 0x4000
        let clock = ((b >> 48) & 0x3fff) | 0x8000
        return "\(hex(a >> 32, 8))-\(hex((a >> 16) & 0xffff, 4))-\(hex(timeHigh, 4))-\(hex(clock, 4))-\(hex(b & 0xffff_ffff_ffff, 12))"
    }

    // MARK: systemd-networkd

    static func networkd(_ s: Settings, fail: (String) -> PluginError) throws(PluginError) -> [RootEntry] {
        let dir = "/etc/systemd/network"
        var entries: [RootEntry] = []
        var match = [header, "[Match]"]
        switch s.type {
        case "ethernet", "infiniband":
            if let mac = s.mac {
                match.append("MACAddress=\(mac)")
            } else {
                match.append("Name=\(s.interface ?? "en* eth*")")
            }
        default:
            match.append("Name=\(s.name)")
            var netdev = [header, "[NetDev]", "Name=\(s.name)", "Kind=\(s.type)"] + (s.mtu.map { ["MTUBytes=\($0)"] } ?? [])
            switch s.type {
            case "bond":
                netdev += ["", "[Bond]", "Mode=\(s.bondMode)", "MIIMonitorSec=100ms"]
                if s.bondMode == "802.3ad" { netdev.append("LACPTransmitRate=fast") }
            case "vlan": netdev += ["", "[VLAN]", "Id=\(s.vlanId!)"]
            default: break
            }
            entries.append(.file(path: "\(dir)/10-provisioner-\(s.file).netdev", content: netdev.joined(separator: "\n") + "\n", mode: 0o644))
            for (i, mac) in s.members.enumerated() {
                let key = s.type == "bond" ? "Bond" : "Bridge"
                let port = [header, "[Match]", "MACAddress=\(mac)", "", "[Network]", "\(key)=\(s.name)"]
                entries.append(
                    .file(path: "\(dir)/10-provisioner-\(s.file)-port\(i).network", content: port.joined(separator: "\n") + "\n", mode: 0o644))
            }
            if let parent = s.parent {
                let link = [header, "[Match]", "MACAddress=\(parent)", "", "[Network]", "VLAN=\(s.name)", "LinkLocalAddressing=no"]
                entries.append(
                    .file(path: "\(dir)/10-provisioner-\(s.file)-parent.network", content: link.joined(separator: "\n") + "\n", mode: 0o644))
            }
        }
        var lines = match
        if let mtu = s.mtu, s.type == "ethernet" || s.type == "infiniband" { lines += ["", "[Link]", "MTUBytes=\(mtu)"] }
        lines += ["", "[Network]"]
        if let address = s.address {
            lines.append("Address=\(address)")
            if let gateway = s.gateway { lines.append("Gateway=\(gateway)") }
        } else if s.dhcp != "no" {
            lines.append("DHCP=\(s.dhcp)")
        }
        for server in s.dns { lines.append("DNS=\(server)") }
        entries.insert(
            .file(path: "\(dir)/10-provisioner-\(s.file).network", content: lines.joined(separator: "\n") + "\n", mode: 0o644),
            at: 0)
        return entries
    }
}
