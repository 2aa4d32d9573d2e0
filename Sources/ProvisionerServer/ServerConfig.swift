import Foundation
import ProvisionerAPI
import ProvisionerCore

/// The server's settings. Every field has a default, so no file is needed on one machine:
///
/// ```yaml
/// listen: 0.0.0.0:8443          # HTTPS with client certificates: agents, admins, files, images
/// bootListen: 0.0.0.0:8080      # plain HTTP for iPXE: scripts, kernels, initramfs ("off" to disable)
/// stateDir: /var/lib/provisioner
/// serverURL: https://10.0.0.1:8443   # how agents reach `listen` (default: the host iPXE used + listen port)
/// tls:                          # default: STATE/tls/{ca.pem,server.pem,server-key.pem}
///   ca: /var/lib/provisioner/tls/ca.pem
///   certificate: /var/lib/provisioner/tls/server.pem
///   key: /var/lib/provisioner/tls/server-key.pem
///   caKey: /var/lib/provisioner/tls/ca-key.pem   # signs node certificates at enrollment (absent: no enrollment)
/// nodeCertificateHours: 168     # validity of a node's certificate; renewed on every boot
/// secretsKey: /var/lib/provisioner/secrets.key  # AES-256 key sealing secrets at rest (made 0600 when missing)
/// sshHostKeys: true             # make and deliver per-node SSH host keys
/// mirrors: [https://mirror1.example:443]   # more servers of files and image objects
/// pollAfterSeconds: 30          # how often unassigned machines ask again
/// unknownMachines: wait         # iPXE for an unknown MAC: wait (retry script) or discover (boot the agent)
/// limits:                       # docs/threat-model.md, "Limits"; every field optional
///   headerTimeout: 20           # s from connection start (TLS handshake included) to a complete request head
///   idleTimeout: 60             # s a kept-alive connection may wait for its next request
///   bodyTimeout: 20             # s for a request body, plus 1 s per bodyMinRate bytes received
///   bodyMinRate: 8192           # bytes/s
///   writeTimeout: 60            # s a client may leave a response unread
///   maxPending: 1024            # machines waiting unassigned at once
///   pendingExpiry: 600          # s after which a pending machine that stopped asking no longer counts
///   registrationsPerAddress: 120  # session opens a minute from one address
///   registrationsPerMAC: 30     # session opens a minute naming one MAC
/// multicast:                    # docs/multicast.md; absent: nothing is ever sent by multicast
///   interface: br-prov          # the provisioning network's interface (required)
///   maxBitrate: 300m            # udp-sender --max-bitrate
///   portBase: 9000              # UDP ports: a pair per session at once
///   maxSessions: 4
///   timeLimitSeconds: 1800      # a session stops this long after it started
///   maxWaitSeconds: 30          # a round starts this long after its first receiver at the latest
///   sender: udp-sender          # the program (udpcast's)
///   policy:                     # start a session by itself when enough nodes wait (absent: admin only)
///     minNodes: 8
///     waitSeconds: 30
/// ```
public struct ServerConfig: Sendable, Equatable {
    public var listenHost = "0.0.0.0"
    public var listenPort = 8443
    /// Nil: no plain-HTTP boot listener.
    public var bootListenHost: String? = "0.0.0.0"
    public var bootListenPort = 8080
    public var stateDir = "/var/lib/provisioner"
    public var serverURL: String?
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?
    public var caKeyFile: String?
    public var nodeCertificateHours = 168
    public var secretsKeyFile: String?
    public var sshHostKeys = true
    public var mirrors: [String] = []
    public var pollAfterSeconds = 30
    public var unknownMachines: UnknownMachinePolicy = .wait
    public var timeouts = ConnectionTimeouts()
    public var registration = RegistrationLimits()
    public var multicast: MulticastSettings?

    public enum UnknownMachinePolicy: String, Sendable, Equatable {
        /// The iPXE script sleeps and asks again; the MAC is listed as pending.
        case wait
        /// The iPXE script boots the default kernel and initramfs, so the agent registers with its facts.
        case discover
    }

    public init(stateDir: String = "/var/lib/provisioner") {
        self.stateDir = stateDir
    }

    public var tlsDirectory: String { stateDir + "/tls" }
    public var caPath: String { caFile ?? tlsDirectory + "/ca.pem" }
    public var certificatePath: String { certificateFile ?? tlsDirectory + "/server.pem" }
    public var keyPath: String { keyFile ?? tlsDirectory + "/server-key.pem" }
    public var caKeyPath: String { caKeyFile ?? tlsDirectory + "/ca-key.pem" }
    public var secretsKeyPath: String { secretsKeyFile ?? stateDir + "/secrets.key" }
    public var databasePath: String { stateDir + "/provisioner.db" }
    public var filesDirectory: String { stateDir + "/files" }
    public var imagesDirectory: String { stateDir + "/images" }

    /// Reads a YAML config with the strict reader: unknown fields are errors with their line.
    public static func parse(_ text: String, source: String) throws(ConfigError) -> ServerConfig {
        var config = ServerConfig()
        let root = try ConfigNode.parse(text, source: source).mapping()
        if let listen = root.optional("listen") {
            (config.listenHost, config.listenPort) = try hostPort(listen)
        }
        if let boot = root.optional("bootListen") {
            if try boot.string() == "off" {
                config.bootListenHost = nil
            } else {
                let (host, port) = try hostPort(boot)
                config.bootListenHost = host
                config.bootListenPort = port
            }
        }
        if let dir = root.optional("stateDir") {
            config.stateDir = try dir.string()
            guard config.stateDir.hasPrefix("/") else { throw dir.error("must be an absolute path") }
        }
        if let url = root.optional("serverURL") {
            let text = try url.string()
            guard text.hasPrefix("https://") else { throw url.error("must start with https://") }
            config.serverURL = text
        }
        if let tls = root.optional("tls") {
            let m = try tls.mapping()
            config.caFile = try m.optional("ca")?.string()
            config.certificateFile = try m.optional("certificate")?.string()
            config.keyFile = try m.optional("key")?.string()
            config.caKeyFile = try m.optional("caKey")?.string()
            try m.finish()
        }
        if let mirrors = root.optional("mirrors") {
            for item in try mirrors.list() {
                let text = try item.string()
                guard text.hasPrefix("https://") || text.hasPrefix("http://") else {
                    throw item.error("a mirror is a base URL such as https://mirror1:443")
                }
                config.mirrors.append(text)
            }
        }
        if let hours = root.optional("nodeCertificateHours") {
            config.nodeCertificateHours = try hours.int()
            guard (1...8760).contains(config.nodeCertificateHours) else { throw hours.error("must be 1 to 8760 hours") }
        }
        if let key = root.optional("secretsKey") {
            config.secretsKeyFile = try key.string()
            guard config.secretsKeyFile!.hasPrefix("/") else { throw key.error("must be an absolute path") }
        }
        if let keys = root.optional("sshHostKeys") {
            config.sshHostKeys = try keys.bool()
        }
        if let poll = root.optional("pollAfterSeconds") {
            config.pollAfterSeconds = try poll.int()
            guard (1...3600).contains(config.pollAfterSeconds) else { throw poll.error("must be 1 to 3600") }
        }
        if let unknown = root.optional("unknownMachines") {
            let text = try unknown.string()
            guard let policy = UnknownMachinePolicy(rawValue: text) else {
                throw unknown.error("must be wait or discover, not \"\(text)\"")
            }
            config.unknownMachines = policy
        }
        if let limits = root.optional("limits") {
            try parseLimits(limits, into: &config)
        }
        if let multicast = root.optional("multicast") {
            config.multicast = try parseMulticast(multicast)
        }
        try root.finish()
        return config
    }

    private static func parseLimits(_ node: ConfigNode, into config: inout ServerConfig) throws(ConfigError) {
        let m = try node.mapping()
        func seconds(_ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Duration? {
            guard let field = m.optional(key) else { return nil }
            let n = try field.int()
            guard range.contains(n) else {
                throw field.error("must be \(range.lowerBound) to \(range.upperBound) seconds, not \(n)")
            }
            return .seconds(n)
        }
        func count(_ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
            guard let field = m.optional(key) else { return nil }
            let n = try field.int()
            guard range.contains(n) else { throw field.error("must be \(range.lowerBound) to \(range.upperBound), not \(n)") }
            return n
        }
        if let v = try seconds("headerTimeout", 1...3600) { config.timeouts.header = v }
        if let v = try seconds("idleTimeout", 1...86400) { config.timeouts.idle = v }
        if let v = try seconds("bodyTimeout", 1...3600) { config.timeouts.body = v }
        if let v = try count("bodyMinRate", 1...(1 << 30)) { config.timeouts.bodyMinRate = v }
        if let v = try seconds("writeTimeout", 1...86400) { config.timeouts.write = v }
        if let v = try count("maxPending", 1...1_000_000) { config.registration.maxPending = v }
        if let v = try count("pendingExpiry", 10...604_800) { config.registration.pendingExpirySeconds = v }
        if let v = try count("registrationsPerAddress", 1...1_000_000) { config.registration.perAddressPerMinute = v }
        if let v = try count("registrationsPerMAC", 1...1_000_000) { config.registration.perMACPerMinute = v }
        try m.finish()
    }

    private static func parseMulticast(_ node: ConfigNode) throws(ConfigError) -> MulticastSettings {
        let m = try node.mapping()
        guard let interfaceField = m.optional("interface") else {
            throw node.error("interface: is required (the provisioning network's interface, e.g. br-prov)")
        }
        let interface = try interfaceField.string()
        guard (1...15).contains(interface.utf8.count), interface.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != 47 })
        else { throw interfaceField.error("\"\(interface)\" is not an interface name (1 to 15 characters, no / or spaces)") }
        var settings = MulticastSettings(interface: interface)
        func int(_ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
            guard let field = m.optional(key) else { return nil }
            let n = try field.int()
            guard range.contains(n) else { throw field.error("must be \(range.lowerBound) to \(range.upperBound), not \(n)") }
            return n
        }
        if let field = m.optional("maxBitrate") {
            let text = try field.string()
            guard MulticastSettings.bitsPerSecond(text) != nil else {
                throw field.error("\"\(text)\" is not a bit rate (digits with k, m or g: 300m)")
            }
            settings.maxBitrate = text
        }
        if let v = try int("portBase", 1024...65000) {
            guard v % 2 == 0 else { throw m.optional("portBase")!.error("must be even (udpcast uses it and the next)") }
            settings.portBase = v
        }
        if let v = try int("maxSessions", 1...64) { settings.maxSessions = v }
        if let v = try int("timeLimitSeconds", 10...86400) { settings.timeLimitSeconds = v }
        if let v = try int("maxWaitSeconds", 0...3600) { settings.maxWaitSeconds = v }
        if let field = m.optional("sender") { settings.sender = try field.string() }
        if let policy = m.optional("policy") {
            let p = try policy.mapping()
            if let field = p.optional("minNodes") {
                let n = try field.int()
                guard (2...100_000).contains(n) else { throw field.error("must be 2 to 100000, not \(n)") }
                settings.policyMinNodes = n
            } else {
                throw policy.error("minNodes: is required (how many nodes must wait for the same version)")
            }
            if let field = p.optional("waitSeconds") {
                let n = try field.int()
                guard (1...3600).contains(n) else { throw field.error("must be 1 to 3600, not \(n)") }
                settings.policyWaitSeconds = n
            }
            try p.finish()
        }
        try m.finish()
        return settings
    }

    static func hostPort(_ node: ConfigNode) throws(ConfigError) -> (String, Int) {
        let text = try node.string()
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw node.error("must be HOST:PORT, e.g. 0.0.0.0:8443")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}
