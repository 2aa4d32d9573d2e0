import ProvisionerSystem

/// The rows of docs/images.md's capture table ("Capturing a running node"): why a path of a live
/// root is left out of the image, or kept without what is under it.
public enum CaptureRule: String, Sendable, Codable, CaseIterable {
    /// A virtual filesystem (proc, sysfs, a tmpfs, …) mounted below the root: the mount point
    /// is kept as an empty directory.
    case C1
    /// Another mount below the root (a data disk, the ESP, NFS) that `--include-mount` does not
    /// name: the mount point is kept as an empty directory.
    case C2
    /// A mount `--include-mount` names: captured like the root; the mounts below it are decided again.
    case C3
    /// A directory the node owns (logs, systemd's state, temporary directories, lost+found): kept,
    /// empty.
    case C4
    /// A file the node owns (its machine id, update stamps, the files its plugins wrote,
    /// `provisioner.preserve=`): left out.
    case C5
    /// SSH host keys (`etc/ssh/ssh_host_*`): left out, each node keeps its own.
    case C6
    /// `--exclude PATH`: left out with everything under it.
    case C7
}

/// What the scanner does with one entry of the live root.
public enum CaptureChoice: Equatable, Sendable {
    /// Captured (a directory: with what is under it).
    case include
    /// The entry itself is captured, nothing under it (a directory); anything else is left out.
    case withoutContents
    /// Left out, with everything under it.
    case leaveOut
}

/// A refused capture request: names the flag and the value.
public struct CaptureScopeError: Error, CustomStringConvertible, Equatable, Sendable {
    public var field: String
    public var message: String
    public var description: String { "\(field): \(message)" }
}

/// Which paths of a live root a capture takes (docs/images.md, "Capturing a running node"): a pure
/// function of the mount table, the paths the node owns and the admin's flags. The scanner asks
/// `choice(for:isDirectory:)` for every entry it meets.
public struct CaptureScope: Sendable, Equatable {
    /// Relative paths (bytes) whose own entry is kept, not what is under it, by rule.
    public private(set) var emptied: [[UInt8]: CaptureRule] = [:]
    /// Relative paths left out with everything under them (files the node owns, `--exclude`).
    public private(set) var leftOut: [[UInt8]: CaptureRule] = [:]
    /// Mounts below the root that are captured (C3), relative.
    public private(set) var includedMounts: [String] = []
    /// One line per decision worth telling the admin: `run: tmpfs mounted here (C1)`.
    public private(set) var notes: [String] = []

    /// Filesystem types that hold no data of the node's own: kernel interfaces and memory.
    public static let virtualTypes: Set<String> = [
        "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2", "securityfs", "debugfs",
        "tracefs", "mqueue", "hugetlbfs", "pstore", "efivarfs", "bpf", "configfs", "fusectl", "autofs",
        "binfmt_misc", "rpc_pipefs", "nsfs", "selinuxfs", "overlay", "squashfs", "fuse.gvfsd-fuse", "fuse.portal",
    ]

    /// SSH host keys: each node has its own (C6).
    static let hostKeyDirectory = Array("etc/ssh".utf8)
    static let hostKeyPrefix = Array("ssh_host_".utf8)

    public init() {}

    /// Decides the scope of a capture of `root` (absolute).
    ///
    /// - `mounts`: the mount table (mountinfo order: a later mount on the same point hides an earlier one).
    /// - `nodeOwned`: the paths the node owns, relative to the root: the list its last boot recorded,
    ///   or the defaults (`BootStateMachine.nodeOwnedPaths`). A directory among them keeps its entry (C4),
    ///   anything else is left out (C5).
    /// - `includeMounts`: `--include-mount` values, absolute paths of mounts below the root.
    /// - `excludes`: `--exclude` values, absolute or relative to the root.
    public static func plan(
        root: String, mounts: [MountEntry], nodeOwned: [String], includeMounts: [String] = [], excludes: [String] = []
    ) throws(CaptureScopeError) -> CaptureScope {
        guard root.hasPrefix("/") else { throw CaptureScopeError(field: "--root", message: "\(root) is not absolute") }
        let rootPath = normalized(root)
        func relative(_ absolute: String) -> String? {
            let path = normalized(absolute)
            if rootPath == "/" { return path == "/" ? "" : String(path.dropFirst()) }
            if path == rootPath { return "" }
            return path.hasPrefix(rootPath + "/") ? String(path.dropFirst(rootPath.count + 1)) : nil
        }
        // The mount that is visible at each point below the root: the last one listed.
        var visible: [String: MountEntry] = [:]
        var order: [String] = []
        for mount in mounts {
            guard let rel = relative(mount.mountPoint), !rel.isEmpty else { continue }
            if visible[rel] == nil { order.append(rel) }
            visible[rel] = mount
        }
        var scope = CaptureScope()
        var included = Set<String>()
        for value in includeMounts {
            guard value.hasPrefix("/") else {
                throw CaptureScopeError(field: "--include-mount", message: "\(value) is not an absolute path")
            }
            guard let rel = relative(value), !rel.isEmpty, let mount = visible[rel] else {
                let known = order.filter { visible[$0].map { !virtualTypes.contains($0.fsType) } ?? false }.sorted()
                throw CaptureScopeError(
                    field: "--include-mount",
                    message: "\(value) is not a mount point below \(rootPath)"
                        + (known.isEmpty ? " (no other filesystem is mounted there)"
                            : " (mounted there: \(known.map { absolute(rootPath, $0) }.joined(separator: ", ")))"))
            }
            guard !virtualTypes.contains(mount.fsType) else {
                throw CaptureScopeError(
                    field: "--include-mount",
                    message: "\(value) is a \(mount.fsType), a virtual filesystem with no data of the node's own")
            }
            included.insert(rel)
        }
        // Mounts in path order, so that a mount below a skipped one is not mentioned.
        for rel in order.sorted(by: { pathLess(Array($0.utf8), Array($1.utf8)) }) {
            let mount = visible[rel]!
            let bytes = Array(rel.utf8)
            if scope.isBelowSkipped(bytes) { continue }
            if included.contains(rel) {
                scope.includedMounts.append(rel)
                scope.notes.append("\(rel): \(mount.fsType) \(mount.source) captured as asked (C3)")
            } else if virtualTypes.contains(mount.fsType) {
                scope.emptied[bytes] = .C1
                scope.notes.append("\(rel): \(mount.fsType) mounted here, kept empty (C1)")
            } else {
                scope.emptied[bytes] = .C2
                scope.notes.append(
                    "\(rel): \(mount.fsType) \(mount.source) mounted here, kept empty (C2; --include-mount \(absolute(rootPath, rel)) takes it)")
            }
        }
        for path in nodeOwned {
            let bytes = Array(path.utf8.drop(while: { $0 == UInt8(ascii: "/") }))
            guard PathRules.problem(bytes) == nil else { continue }  // the boot checked them; nothing to capture
            if scope.emptied[bytes] == nil { scope.emptied[bytes] = .C4 }
        }
        for value in excludes {
            let rel: String
            if value.hasPrefix("/") {
                guard let r = relative(value), !r.isEmpty else {
                    throw CaptureScopeError(field: "--exclude", message: "\(value) is not below \(rootPath)")
                }
                rel = r
            } else {
                rel = value
            }
            let bytes = Array(rel.utf8)
            if let problem = PathRules.problem(bytes) {
                throw CaptureScopeError(field: "--exclude", message: "\(value): \(problem)")
            }
            scope.leftOut[bytes] = .C7
        }
        return scope
    }

    /// What to do with the entry at `path` (relative to the root), with the rule; nil: capture it.
    public func choice(for path: [UInt8], isDirectory: Bool) -> (CaptureChoice, CaptureRule)? {
        if let rule = leftOut[path] { return (.leaveOut, rule) }
        if let rule = emptied[path] {
            switch rule {
            case .C4: return isDirectory ? (.withoutContents, .C4) : (.leaveOut, .C5)
            default: return (isDirectory ? .withoutContents : .leaveOut, rule)
            }
        }
        if !isDirectory, path.count > Self.hostKeyDirectory.count,
            PathRules.parent(path) == Self.hostKeyDirectory, PathRules.name(path).starts(with: Self.hostKeyPrefix)
        {
            return (.leaveOut, .C6)
        }
        return nil
    }

    /// The scanner's question: what to do with this entry.
    public func scanChoice(_ path: [UInt8], _ isDirectory: Bool) -> CaptureChoice {
        choice(for: path, isDirectory: isDirectory)?.0 ?? .include
    }

    func isBelowSkipped(_ path: [UInt8]) -> Bool {
        var p = PathRules.parent(path)
        while !p.isEmpty {
            if emptied[p] != nil || leftOut[p] != nil { return true }
            p = PathRules.parent(p)
        }
        return false
    }

    static func normalized(_ path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    static func absolute(_ root: String, _ rel: String) -> String { root == "/" ? "/" + rel : root + "/" + rel }
}

/// The paths a node owns, as its last boot decided them (the image sync's preserved paths: the
/// fixed ones, `provisioner.preserve=`, each filesystem's lost+found, the plugins' files), kept in
/// the node's state directory for `provisioner-agent capture`: one relative path a line.
public enum NodeOwnedRecord {
    public static let path = ".provisioner-state/node-owned"

    public static func encode(_ paths: [String]) -> String {
        var seen = Set<String>()
        return paths.map { String($0.drop(while: { $0 == "/" })) }.filter { !$0.isEmpty && seen.insert($0).inserted }
            .map { $0 + "\n" }.joined()
    }

    /// Lines back to paths; blank lines and lines that are not a relative path are skipped.
    public static func decode(_ text: String) -> [String] {
        text.split(separator: "\n").map { String($0.drop(while: { $0 == "/" })) }
            .filter { !$0.isEmpty && PathRules.problem(Array($0.utf8)) == nil }
    }
}
