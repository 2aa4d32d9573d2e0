#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// One line of /proc/self/mountinfo, escapes undone.
public struct MountEntry: Hashable, Sendable {
    /// `major:minor` of the mounted device (`259:3`; `0:25` for tmpfs and other virtual ones).
    public var devNumber: String
    public var mountPoint: String
    public var fsType: String
    /// What was mounted: `/dev/md127`, `tmpfs`.
    public var source: String

    public init(devNumber: String, mountPoint: String, fsType: String, source: String) {
        self.devNumber = devNumber
        self.mountPoint = mountPoint
        self.fsType = fsType
        self.source = source
    }
}

/// What is mounted and swapped on now: the project's one reader of /proc/self/mountinfo and
/// /proc/swaps. Parsing is pure (`parse`), so a test feeds it any machine's table.
public struct MountTable: Sendable {
    /// In mountinfo order: parents before children.
    public var entries: [MountEntry]
    /// `major:minor` of active swap devices.
    public var swapDevNumbers: [String]

    public init(entries: [MountEntry], swapDevNumbers: [String] = []) {
        self.entries = entries
        self.swapDevNumbers = swapDevNumbers
    }

    /// Reads the tables now; a table that cannot be read is empty (no /proc in a chroot).
    public static func read(mountInfo: String = "/proc/self/mountinfo", swaps: String = "/proc/swaps") -> MountTable {
        let entries = FileManager.default.contents(atPath: mountInfo).map { parse(String(decoding: $0, as: UTF8.self)) }
        var numbers: [String] = []
        if let data = FileManager.default.contents(atPath: swaps) {
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n").dropFirst() {
                guard let path = line.split(separator: " ").first, let number = deviceNumber(unescape(String(path)))
                else { continue }
                numbers.append(number)
            }
        }
        return MountTable(entries: entries ?? [], swapDevNumbers: numbers)
    }

    /// mountinfo text → entries: `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`.
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let dash = fields.firstIndex(of: "-")
            let fsType = dash.flatMap { $0 + 1 < fields.count ? String(fields[$0 + 1]) : nil } ?? ""
            let source = dash.flatMap { $0 + 2 < fields.count ? unescape(String(fields[$0 + 2])) : nil } ?? ""
            return MountEntry(
                devNumber: String(fields[2]), mountPoint: unescape(String(fields[4])), fsType: fsType, source: source)
        }
    }

    /// Every mount point, parents before children.
    public var mountPoints: [String] { entries.map(\.mountPoint) }

    /// Where the device with this number is mounted, and `[SWAP]` when it is active swap.
    public func mountpoints(devNumber: String?) -> [String] {
        guard let devNumber else { return [] }
        return entries.filter { $0.devNumber == devNumber }.map(\.mountPoint)
            + (swapDevNumbers.contains(devNumber) ? ["[SWAP]"] : [])
    }

    /// Where a device (by path, following links) is mounted or swapped on.
    public func mountpoints(ofDevice path: String) -> [String] {
        mountpoints(devNumber: Self.deviceNumber(path))
    }

    /// Whether something is mounted exactly on `path` (after resolving links).
    public func isMountPoint(_ path: String) -> Bool {
        let resolved = realPath(path)
        return entries.contains { $0.mountPoint == resolved || $0.mountPoint == path }
    }

    /// Mount points at or under `root`, deepest first: the order to unmount them in.
    public func mountPoints(under root: String) -> [String] {
        let base = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        return mountPoints.filter { $0 == base || $0.hasPrefix(base == "/" ? "/" : base + "/") }
            .sorted { $0.count > $1.count }
    }

    /// `major:minor` of a block device node; nil when it is none.
    public static func deviceNumber(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK else { return nil }
        let dev = UInt(st.st_rdev)
        let major = (dev >> 8) & 0xfff | ((dev >> 32) & ~UInt(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt(0xff))
        return "\(major):\(minor)"
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    public static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "\\"), bytes.count >= 3,
                let v = UInt8(String(decoding: bytes.prefix(3), as: UTF8.self), radix: 8)
            {
                out.append(v)
                bytes = bytes.dropFirst(3)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
