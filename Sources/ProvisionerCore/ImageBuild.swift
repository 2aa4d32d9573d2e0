/// What `provisionerctl image build` runs to make an image from a distribution (docs/images.md):
/// pure, so every choice is tested with tables; provisionerctl runs the command and publishes.
public struct ImageBuildPlan: Hashable, Sendable {
    public enum Family: String, Hashable, Sendable, CaseIterable {
        case debian, ubuntu
    }

    public var family: Family
    public var suite: String
    public var packages: [String]
    public var kernel: String?
    public var mirror: String

    /// What every image needs to boot into its own systemd, and the tools of our boot flow
    /// (the agent drives mdadm and LVM before the pivot, the image's own copies after it).
    public static let basePackages = ["systemd-sysv", "udev", "iproute2", "mdadm", "lvm2"]

    /// `--distro FAMILY:SUITE` (`debian:bookworm`), with the packages and kernel asked for and the
    /// mirror this machine's apt uses. Names the flag and the problem when something is wrong.
    public init(distro: String, packages: [String], kernel: String?, mirror: String) throws(ConfigError) {
        let parts = distro.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, !parts[1].isEmpty else {
            throw ConfigError(field: "--distro", problem: "\"\(distro)\" is not FAMILY:SUITE (debian:bookworm)")
        }
        guard let family = Family(rawValue: parts[0]) else {
            let hint =
                ["rhel", "rocky", "alma", "centos", "fedora"].contains(parts[0])
                ? "; RHEL-family images are built with dnf --installroot and imported (docs/images.md)" : ""
            throw ConfigError(
                field: "--distro",
                problem: "\"\(parts[0])\" is not a family this builds (debian, ubuntu)\(hint)")
        }
        guard Self.isPackageName(parts[1]) else {
            throw ConfigError(field: "--distro", problem: "\"\(parts[1])\" is not a suite name")
        }
        for (i, p) in packages.enumerated() where !Self.isPackageName(p) {
            throw ConfigError(field: "--packages[\(i)]", problem: "\"\(p)\" is not a Debian package name")
        }
        if let kernel, !Self.isPackageName(kernel) {
            throw ConfigError(field: "--kernel", problem: "\"\(kernel)\" is not a Debian package name")
        }
        guard mirror.hasPrefix("http://") || mirror.hasPrefix("https://") || mirror.hasPrefix("file:/"),
            !mirror.contains(where: { $0.isWhitespace })
        else {
            throw ConfigError(field: "--mirror", problem: "\"\(mirror)\" is not a mirror URL")
        }
        self.family = family
        self.suite = parts[1]
        self.packages = packages
        self.kernel = kernel
        self.mirror = mirror
    }

    /// Debian package and suite names: `[a-z0-9][a-z0-9+.-]+`.
    static func isPackageName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard bytes.count >= 2, bytes.count <= 128 else { return false }
        return bytes.enumerated().allSatisfy { i, c in
            (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || (i > 0 && (c == 0x2b || c == 0x2e || c == 0x2d))
        }
    }

    /// Every package to include, in order, without repeats.
    public var included: [String] {
        var seen = Set<String>()
        return (Self.basePackages + packages + (kernel.map { [$0] } ?? [])).filter { seen.insert($0).inserted }
    }

    /// `mmdebstrap` and its arguments, writing the root into `directory`.
    public func mmdebstrap(into directory: String) -> [String] {
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + included.joined(separator: ","), suite, directory, mirror]
    }

    /// The first Debian mirror of this machine's apt sources (deb822 `*.sources` files first, then
    /// `sources.list` lines), leaving security mirrors aside; nil when there is none.
    public static func aptMirror(deb822: [String], sourcesList: String?) -> String? {
        for text in deb822 {
            for line in text.split(separator: "\n") where line.hasPrefix("URIs:") {
                for uri in line.dropFirst(5).split(separator: " ") where !uri.contains("security") {
                    return String(uri)
                }
            }
        }
        for line in (sourcesList ?? "").split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.first == "deb" else { continue }
            // `deb [options] URI suite components`
            if let uri = words.dropFirst().first(where: { !$0.hasPrefix("[") && !$0.hasSuffix("]") && $0.contains(":/") }),
                !uri.contains("security")
            {
                return String(uri)
            }
        }
        return nil
    }
}
