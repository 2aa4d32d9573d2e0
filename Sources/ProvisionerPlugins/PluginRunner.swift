import ProvisionerAPI
import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#endif

/// Makes a root directory hold what the plugins want, writing a file only
/// when its content or mode differs, and saying which paths changed.
///
/// Paths are resolved inside the root without following symbolic links
/// (a link in the image such as `/etc/hostname -> /tmp/x` is replaced, never
/// written through), and files are replaced atomically (temporary name, then
/// rename), so a crash leaves the old file or the new one.
public struct PluginRunner {
    public var root: String

    public init(root: String) { self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root }

    public struct Report: Hashable, Sendable {
        public var changed: [String] = []
        public var unchanged: [String] = []
        public init(changed: [String] = [], unchanged: [String] = []) {
            self.changed = changed
            self.unchanged = unchanged
        }
    }

    public struct WriteError: Error, CustomStringConvertible {
        public var path: String
        public var operation: String
        public var errno: Int32
        public var description: String {
            "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        }
    }

    /// The `WantedBy=` of a unit in the image, nil when the image has no such unit.
    public func wantedBy(_ unit: String) -> [String]? {
        for dir in ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"] {
            if let text = read(dir + "/" + unit) { return BuiltinPlugins.wantedBy(unitFile: text) }
        }
        return nil
    }

    public func apply(_ entries: [RootEntry]) throws(WriteError) -> Report {
        var report = Report()
        for entry in entries {
            let changed: Bool
            switch entry {
            case .file(let path, let content, let mode):
                changed = try ensureFile(path, Array(content.utf8), mode, owner: nil)
            case .ownedFile(let path, let content, let mode, let uid, let gid):
                changed = try ensureFile(path, content, mode, owner: (uid, gid))
            case .symlink(let path, let target): changed = try ensureSymlink(path, target)
            case .absent(let path): changed = try ensureAbsent(path)
            }
            if changed { report.changed.append(entry.path) } else { report.unchanged.append(entry.path) }
        }
        return report
    }

    // MARK: Paths inside the root

    func full(_ path: String) -> String { root + path }

    /// Refuses paths with `.`/`..`, and makes the parent directories (real
    /// directories, not links) as needed.
    func prepareParent(_ path: String) throws(WriteError) {
        let parts = path.split(separator: "/")
        guard path.hasPrefix("/"), !parts.contains(where: { $0 == "." || $0 == ".." }) else {
            throw WriteError(path: path, operation: "refusing", errno: EINVAL)
        }
        var current = root
        for part in parts.dropLast() {
            current += "/" + part
            var st = stat()
            if lstat(current, &st) == 0 {
                guard (st.st_mode & S_IFMT) == S_IFDIR else {
                    // A link or file where a directory should be: never follow it out of the root.
                    throw WriteError(
                        path: current, operation: "not a directory (a link is not followed):", errno: ENOTDIR)
                }
            } else if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw WriteError(path: current, operation: "creating directory", errno: errno)
            }
        }
    }

    public func read(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(full(path), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return data
    }

    /// Writes `content` with `mode` (and `owner`, when given) unless the file already is exactly that.
    func ensureFile(_ path: String, _ content: [UInt8], _ mode: UInt16, owner: (UInt32, UInt32)?) throws(WriteError)
        -> Bool
    {
        try prepareParent(path)
        let target = full(path)
        var st = stat()
        if lstat(target, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, UInt16(st.st_mode & 0o7777) == mode,
            owner.map({ st.st_uid == $0.0 && st.st_gid == $0.1 }) ?? true, Int(st.st_size) == content.count,
            readBytes(path) == content
        {
            return false
        }
        let temporary = target + ".provisioner-new"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode_t(mode))
        guard fd >= 0 else { throw WriteError(path: temporary, operation: "creating", errno: errno) }
        var bytes = content[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let code = errno
                close(fd)
                unlink(temporary)
                throw WriteError(path: temporary, operation: "writing", errno: code)
            }
            bytes = bytes.dropFirst(n)
        }
        if let owner, fchown(fd, owner.0, owner.1) != 0 {
            let code = errno
            close(fd)
            unlink(temporary)
            throw WriteError(path: temporary, operation: "setting the owner \(owner.0):\(owner.1) of", errno: code)
        }
        fchmod(fd, mode_t(mode))
        guard fsync(fd) == 0 else {
            let code = errno
            close(fd)
            throw WriteError(path: temporary, operation: "syncing", errno: code)
        }
        close(fd)
        guard rename(temporary, target) == 0 else {
            throw WriteError(path: target, operation: "replacing", errno: errno)
        }
        return true
    }

    func ensureSymlink(_ path: String, _ destination: String) throws(WriteError) -> Bool {
        try prepareParent(path)
        let target = full(path)
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(target, &buffer, buffer.count - 1)
        if n >= 0, String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == destination {
            return false
        }
        let temporary = target + ".provisioner-new"
        unlink(temporary)
        guard symlink(destination, temporary) == 0 else {
            throw WriteError(path: temporary, operation: "linking", errno: errno)
        }
        guard rename(temporary, target) == 0 else {
            throw WriteError(path: target, operation: "replacing", errno: errno)
        }
        return true
    }

    func ensureAbsent(_ path: String) throws(WriteError) -> Bool {
        var st = stat()
        guard lstat(full(path), &st) == 0 else { return false }
        guard unlink(full(path)) == 0 else { throw WriteError(path: full(path), operation: "removing", errno: errno) }
        return true
    }
}

extension PluginRunner {
    /// The paths the plugins write, relative to the root, so that the image sync leaves them to
    /// the plugins (a plugin's file rewritten by the sync and back by the plugin on every boot
    /// would be two needless writes): the built-in plugins' files, the overlay files, the admin
    /// plugins' stamps and what they recorded writing. Best effort before the image is there: a
    /// plugin that needs the image's unit files to know its paths contributes what it can.
    public func ownedPaths(
        _ configs: [PluginConfig], node: NodeConfig, mounts: [MountedFilesystem], swaps: [MountedFilesystem]
    ) -> [String] {
        var paths: [String] = []
        for config in configs {
            guard
                let entries = try? BuiltinPlugins.entries(
                    for: config, node: node, mounts: mounts, swaps: swaps, wantedBy: wantedBy)
            else { continue }
            paths += entries.map { String($0.path.drop(while: { $0 == "/" })) }
        }
        for file in node.files ?? [] {
            paths.append(String(file.path.drop(while: { $0 == "/" })))
            if file.run != nil { paths.append(String(AdminPlugins.stampPath(for: file.path).dropFirst())) }
        }
        paths.append(String(AdminPlugins.outputsPath.dropFirst()))
        if let recorded = read(AdminPlugins.outputsPath) {
            paths += recorded.split(separator: "\n").map(String.init)
        }
        return paths
    }
}

extension PluginRunner.Report {
    /// What the overlays' files and the secrets changed (docs/boot.md, N10), a line for each the
    /// node has (secrets by path only): `overlays` are the node's overlay names, `overlayFiles` and
    /// `secretFiles` the paths each wrote through this report.
    public func fileLines(overlays: [String], overlayFiles: [String], secretFiles: [String]) -> [String] {
        var lines: [String] = []
        if !overlayFiles.isEmpty {
            let wanted = Set(overlayFiles)
            let wrote = changed.filter { wanted.contains($0) }
            lines.append(
                "overlays \(overlays.joined(separator: ", ")): "
                    + (wrote.isEmpty
                        ? "nothing to change (\(overlayFiles.count) file(s) already right)"
                        : "wrote \(wrote.joined(separator: ", "))"))
        }
        if !secretFiles.isEmpty {
            let wanted = Set(secretFiles)
            let wrote = changed.filter { wanted.contains($0) }
            lines.append(
                "secrets: "
                    + (wrote.isEmpty
                        ? "\(secretFiles.count) already in place" : "wrote \(wrote.joined(separator: ", "))"))
        }
        return lines
    }

    /// The step's last line: the built-in plugins (`plugins`, by name) and every file written.
    public func summary(plugins: [String], took: String) -> String {
        let names = plugins.joined(separator: ", ")
        return changed.isEmpty
            ? "\(names): nothing to change (\(unchanged.count) file(s) already right); in \(took)"
            : "\(names): wrote \(changed.joined(separator: ", ")); in \(took)"
    }
}
