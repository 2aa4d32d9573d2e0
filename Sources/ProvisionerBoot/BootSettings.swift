import ProvisionerAPI
import ProvisionerCore

/// What the kernel command line tells `provisioner-agent boot` (docs/boot.md lists every option).
///
/// ```
/// root=provisioner provisioner.server=https://10.0.0.1:8443 provisioner.mirrors=https://10.0.0.2:8443
/// provisioner.server-wait=120 provisioner.retries=3
/// ```
public struct BootSettings: Hashable, Sendable {
    /// `provisioner.server=`: the server (comma-separated when several share one database),
    /// `https://host:port`. Sessions and events go here.
    public var servers: [String] = []
    /// `provisioner.mirrors=`: more servers of files and image objects (an nginx mirror serves
    /// no API). The session's answer has the authoritative list; this one is used until then.
    public var mirrors: [String] = []
    /// `provisioner.mac=`: the NIC the machine booted from (iPXE passes it); reported first.
    public var bootMAC: String?
    /// `provisioner.root=`: where the node's root is assembled (`/sysroot`, what dracut switches into).
    public var root = "/sysroot"
    /// `provisioner.server-wait=`: seconds to keep trying an unreachable server before booting the
    /// installed system from disk as it is (stateful nodes), or giving up (stateless).
    public var serverWaitSeconds = 120
    /// `provisioner.fallback=no`: never boot the installed system without the server's word.
    public var fallback = true
    /// `provisioner.retries=`: attempts of the whole flow after a failure, before the initrd's
    /// emergency policy (refused layouts and bad configurations are not retried).
    public var attempts = 3
    /// `provisioner.retry-delay=`: seconds between attempts.
    public var retryDelaySeconds = 10
    /// `provisioner.tmpfs-size=`: size of a stateless node's root (`mount -o size=`: `75%`, `8g`).
    public var tmpfsSize = "75%"
    /// `provisioner.verify=`: overrides the node's `syncVerify` for this boot (`content` to repair).
    public var verify: SyncVerify?
    /// `provisioner.preserve=`: more paths (relative to the root) the node owns; comma-separated.
    public var preserve: [String] = []
    /// `provisioner.tpm=no`: never keep the node's key in a TPM, even when one is there (a stateless
    /// node then makes a new key each boot, which the server's enrollment policy must accept).
    public var useTPM = true
    /// `provisioner.modules=`: kernel modules for the node's layout (`md_mod,fs-xfs`), which the
    /// server names in the iPXE script and `provisioner-modules.service` loads early in the initrd.
    public var modules: [String] = []
    /// `provisioner.local-boot`: set by the loader entry the agent installs on the ESP, so the
    /// session says the machine booted from its disk rather than the network.
    public var localBoot = false
    /// `provisioner.trace`: every tool the agent runs is shown on the console with its exit status
    /// and how long it took (`trace: mdadm --assemble ... exited 0 in 0.24 s`): where a slow boot goes.
    public var trace = false
    /// `provisioner.` options this agent does not know (reported as warnings, not fatal: an old
    /// agent must still boot a node whose iPXE script learned a new option).
    public var unknownOptions: [String] = []

    public init() {}

    /// Reads `/proc/cmdline` text. A known option with a bad value is an error naming it.
    public static func parse(_ cmdline: String) throws(ConfigError) -> BootSettings {
        var s = BootSettings()
        var server: [String] = []
        var mirrors: [String] = []
        for word in KernelCommandLine.words(cmdline) {
            guard word.hasPrefix("provisioner.") else { continue }
            let (key, value) = KernelCommandLine.split(word)
            func need() throws(ConfigError) -> String {
                guard let value, !value.isEmpty else {
                    throw ConfigError(field: key, problem: "needs a value (\(key)=...)")
                }
                return value
            }
            func seconds(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
                let text = try need()
                guard let n = Int(text), range.contains(n) else {
                    throw ConfigError(field: key, problem: "\"\(text)\" is not a number of seconds in \(range)")
                }
                return n
            }
            switch key {
            case "provisioner.server": server = try urls(try need(), key: key)
            case "provisioner.mirrors": mirrors = try urls(try need(), key: key)
            case "provisioner.mac":
                let text = try need()
                guard let mac = MACAddress.normalize(text) else {
                    throw ConfigError(field: key, problem: "\"\(text)\" is not a MAC address")
                }
                s.bootMAC = mac
            case "provisioner.root":
                let text = try need()
                guard text.hasPrefix("/"), !text.split(separator: "/").contains("..") else {
                    throw ConfigError(field: key, problem: "\"\(text)\" is not an absolute path")
                }
                s.root = text
            case "provisioner.server-wait": s.serverWaitSeconds = try seconds(0...86400)
            case "provisioner.retries": s.attempts = try seconds(1...100)
            case "provisioner.retry-delay": s.retryDelaySeconds = try seconds(0...3600)
            case "provisioner.fallback":
                guard let flag = KernelCommandLine.flag(value) else {
                    throw ConfigError(field: key, problem: "\"\(value ?? "")\" is not yes or no")
                }
                s.fallback = flag
            case "provisioner.tpm":
                guard let flag = KernelCommandLine.flag(value) else {
                    throw ConfigError(field: key, problem: "\"\(value ?? "")\" is not yes or no")
                }
                s.useTPM = flag
            case "provisioner.local-boot":
                guard let flag = KernelCommandLine.flag(value) else {
                    throw ConfigError(field: key, problem: "\"\(value ?? "")\" is not yes or no")
                }
                s.localBoot = flag
            case "provisioner.tmpfs-size":
                let text = try need()
                let body =
                    text.hasSuffix("%")
                    ? text.dropLast()
                    : text.last.map { "kmgKMG".contains($0) } == true ? text.dropLast() : Substring(text)
                guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw ConfigError(field: key, problem: "\"\(text)\" is not a tmpfs size (75%, 8g, 512m)")
                }
                s.tmpfsSize = text
            case "provisioner.verify":
                let text = try need()
                guard let v = SyncVerify(rawValue: text) else {
                    throw ConfigError(field: key, problem: "\"\(text)\" is not stamp, metadata or content")
                }
                s.verify = v
            case "provisioner.preserve":
                for path in try need().split(separator: ",").map(String.init) {
                    let relative = path.drop(while: { $0 == "/" })
                    guard !relative.isEmpty,
                        !relative.split(separator: "/").contains(where: { $0 == ".." || $0 == "." })
                    else { throw ConfigError(field: key, problem: "\"\(path)\" is not a path inside the root") }
                    s.preserve.append(String(relative))
                }
            case "provisioner.modules":
                for name in try need().split(separator: ",", omittingEmptySubsequences: false) {
                    guard !name.isEmpty, name.count <= 64,
                        name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
                    else { throw ConfigError(field: key, problem: "\"\(name)\" is not a kernel module name") }
                    s.modules.append(String(name))
                }
            case "provisioner.trace":
                guard let flag = KernelCommandLine.flag(value) else {
                    throw ConfigError(field: key, problem: "\"\(value ?? "")\" is not yes or no")
                }
                s.trace = flag
            case "provisioner.test": continue  // the VM test harness's switch (initramfs/README.md)
            default: s.unknownOptions.append(key)
            }
        }
        s.servers = server
        s.mirrors = mirrors.filter { !server.contains($0) }
        return s
    }

    static func urls(_ text: String, key: String) throws(ConfigError) -> [String] {
        var result: [String] = []
        for part in text.split(separator: ",").map(String.init) {
            guard part.hasPrefix("https://"), part.count > 8, !part.contains(where: { $0.isWhitespace }) else {
                throw ConfigError(field: key, problem: "\"\(part)\" is not an https:// URL")
            }
            result.append(part.hasSuffix("/") ? String(part.dropLast()) : part)
        }
        return result
    }
}

/// Kernel command-line words as the kernel splits them: spaces separate words, double quotes
/// protect spaces (`a="x y"` is one word `a=x y`).
public enum KernelCommandLine {
    public static func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quoted = false
        var inWord = false
        for ch in text {
            if ch == "\"" {
                quoted.toggle()
                inWord = true
            } else if !quoted && (ch == " " || ch == "\n" || ch == "\t") {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(ch)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    /// `key=value` → (key, value); `key` → (key, nil).
    public static func split(_ word: String) -> (String, String?) {
        guard let eq = word.firstIndex(of: "=") else { return (word, nil) }
        return (String(word[..<eq]), String(word[word.index(after: eq)...]))
    }

    /// A switch: absent value or 1/yes/true → true; 0/no/false → false; else nil.
    public static func flag(_ value: String?) -> Bool? {
        switch value?.lowercased() {
        case nil, "1", "yes", "true", "on": true
        case "0", "no", "false", "off": false
        default: nil
        }
    }

    /// The words to boot the installed system with from the ESP: this boot's words without the
    /// ones the boot loader sets itself (`BOOT_IMAGE=`, `initrd=`) or that a one-off boot carried,
    /// plus `provisioner.local-boot`. Words with spaces are quoted again.
    public static func forLocalBoot(_ text: String) -> String {
        let dropped: Set<String> = ["BOOT_IMAGE", "initrd", "provisioner.local-boot", "provisioner.verify"]
        var kept = words(text).filter { !dropped.contains(split($0).0) }
        kept.append("provisioner.local-boot")
        return kept.map { word in
            guard word.contains(" ") else { return word }
            let (key, value) = split(word)
            return value.map { "\(key)=\"\($0)\"" } ?? "\"\(word)\""
        }.joined(separator: " ")
    }
}
