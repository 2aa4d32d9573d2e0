/// A layout's `mount-options` as mount(8) reads `-o`, for mount(2): the options the kernel takes
/// as flags (`MS_*`), the ones that only mean something to mount(8), fstab or systemd dropped
/// (`defaults`, `noauto`, `nofail`, `x-*`, ...), and the rest handed to the filesystem as its data
/// string (`errors=remount-ro`, `discard`, `umask=0077`), in their order. Options that are not
/// about a filesystem on a device (`bind`, `remount`, `move`, `loop`) are refused, naming the option.
public struct MountOptions: Hashable, Sendable {
    /// `MS_*` from <sys/mount.h>.
    public var flags: UInt
    public var data: String

    public static let readOnly: UInt = 1
    static let flagged: [String: (set: Bool, flag: UInt)] = [
        "ro": (true, 1), "rw": (false, 1),
        "nosuid": (true, 2), "suid": (false, 2),
        "nodev": (true, 4), "dev": (false, 4),
        "noexec": (true, 8), "exec": (false, 8),
        "sync": (true, 16), "async": (false, 16),
        "mand": (true, 64), "nomand": (false, 64),
        "dirsync": (true, 128),
        "nosymfollow": (true, 256), "symfollow": (false, 256),
        "noatime": (true, 1024), "atime": (false, 1024),
        "nodiratime": (true, 2048), "diratime": (false, 2048),
        "silent": (true, 32768), "loud": (false, 32768),
        "relatime": (true, 1 << 21), "norelatime": (false, 1 << 21),
        "strictatime": (true, 1 << 24), "nostrictatime": (false, 1 << 24),
        "lazytime": (true, 1 << 25), "nolazytime": (false, 1 << 25),
    ]
    /// mount(8)'s, fstab's and systemd's own: nothing for the kernel.
    static let userspace: Set<String> = [
        "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail", "_netdev",
    ]
    static let refused: Set<String> = ["bind", "rbind", "remount", "move", "loop"]

    public struct Refused: Error, Hashable, Sendable, CustomStringConvertible {
        public var option: String
        public init(option: String) { self.option = option }
        public var description: String { "mount option \"\(option)\" is not for mounting a filesystem from its device" }
    }

    public init(_ options: [String]) throws(Refused) {
        flags = 0
        var data: [String] = []
        for option in options.flatMap({ $0.split(separator: ",").map(String.init) }) where !option.isEmpty {
            let name = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? option
            if let (set, flag) = Self.flagged[option] {
                flags = set ? flags | flag : flags & ~flag
            } else if Self.userspace.contains(option) || name == "comment" || name.hasPrefix("x-")
                || name.hasPrefix("X-")
            {
                continue
            } else if Self.refused.contains(name) {
                throw Refused(option: option)
            } else {
                data.append(option)
            }
        }
        self.data = data.joined(separator: ",")
    }
}
