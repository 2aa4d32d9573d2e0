#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// When an admin's plugin (an executable in an overlay) runs in the node's root before the pivot.
public enum PluginRunWhen: String, Codable, Hashable, Sendable, CaseIterable {
    /// On every boot.
    case always
    /// Only when the plugin's inputs (its file, the node's fields) differ from the last run's.
    case changed
}

/// Marks an overlay file as an admin plugin: written like the others, then run chrooted.
public struct PluginRun: Codable, Hashable, Sendable {
    public var when: PluginRunWhen
    /// Killed (and the boot failed) after this many seconds: 1-3600.
    public var timeoutSeconds: Int

    public init(when: PluginRunWhen = .changed, timeoutSeconds: Int = 60) {
        self.when = when
        self.timeoutSeconds = timeoutSeconds
    }
}

/// One file of an overlay as the admin gave it.
public struct OverlayFile: Codable, Hashable, Sendable {
    /// Absolute path in the node's root (`/etc/motd`).
    public var path: String
    /// Permission bits (0o644); set types and suid bits are allowed, file types are not.
    public var mode: Int
    public var uid: Int
    public var gid: Int
    /// A Mustache template rendered per node (its text must be UTF-8), or bytes written as they are.
    public var template: Bool
    public var data: Data
    /// Set for an admin plugin.
    public var run: PluginRun?

    public init(
        path: String, mode: Int = 0o644, uid: Int = 0, gid: Int = 0, template: Bool = false, data: Data,
        run: PluginRun? = nil
    ) {
        self.path = path
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.template = template
        self.data = data
        self.run = run
    }

    enum CodingKeys: String, CodingKey { case path, mode, uid, gid, template, data, run }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decode(String.self, forKey: .path)
        mode = try c.decodeIfPresent(Int.self, forKey: .mode) ?? 0o644
        uid = try c.decodeIfPresent(Int.self, forKey: .uid) ?? 0
        gid = try c.decodeIfPresent(Int.self, forKey: .gid) ?? 0
        template = try c.decodeIfPresent(Bool.self, forKey: .template) ?? false
        data = try c.decode(Data.self, forKey: .data)
        run = try c.decodeIfPresent(PluginRun.self, forKey: .run)
    }
}

/// A named directory of files and templates kept on the server.
public struct Overlay: Codable, Hashable, Sendable {
    public var name: String
    public var files: [OverlayFile]

    public init(name: String, files: [OverlayFile]) {
        self.name = name
        self.files = files
    }

    /// At most this many files, and bytes in all, per overlay.
    public static let maxFiles = 10_000
    public static let maxBytes = 16 << 20

    /// Checks what can be checked without a node: the name, each path (absolute, no `.`/`..`, no
    /// empty part, unique), modes, owners, timeouts; templates must be UTF-8. Names the file.
    public func validated() throws(OverlayError) -> Overlay {
        guard Names.isHostLabel(name) else {
            throw OverlayError(overlay: name, file: nil, problem: "\"\(name)\" is not a valid overlay name")
        }
        guard files.count <= Self.maxFiles else {
            throw OverlayError(overlay: name, file: nil, problem: "\(files.count) files; at most \(Self.maxFiles)")
        }
        let total = files.reduce(0) { $0 + $1.data.count }
        guard total <= Self.maxBytes else {
            throw OverlayError(overlay: name, file: nil, problem: "\(total) bytes; at most \(Self.maxBytes)")
        }
        var seen = Set<String>()
        for file in files {
            func fail(_ problem: String) -> OverlayError { OverlayError(overlay: name, file: file.path, problem: problem) }
            if let problem = Self.pathProblem(file.path) { throw fail(problem) }
            guard seen.insert(file.path).inserted else { throw fail("appears twice") }
            guard (0...0o7777).contains(file.mode) else { throw fail("mode \(String(file.mode, radix: 8)) is not 0-7777") }
            guard (0...65535).contains(file.uid), (0...65535).contains(file.gid) else {
                throw fail("owner \(file.uid):\(file.gid) is outside 0-65535")
            }
            if file.template, String(validating: file.data, as: UTF8.self) == nil {
                throw fail("a template must be UTF-8 text")
            }
            if let run = file.run {
                guard (1...3600).contains(run.timeoutSeconds) else { throw fail("timeout \(run.timeoutSeconds) s is not 1-3600") }
                guard file.mode & 0o100 != 0 else { throw fail("a plugin must be executable by its owner (mode u+x)") }
            }
        }
        return self
    }

    /// Why `path` cannot be written inside a root, or nil: it must be absolute and every part a
    /// plain name (no `.`, `..`, empty part or NUL), so it can never point out of the root.
    public static func pathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/"), path.count > 1 else { return "the path must be absolute (start with /)" }
        guard path.utf8.count <= 4096 else { return "the path is longer than 4096 bytes" }
        let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for part in parts {
            if part.isEmpty { return "the path has an empty part (//, or a trailing /)" }
            if part == "." || part == ".." { return "the path escapes the root with \"\(part)\"" }
            if part.contains("\u{0}") || part.contains("\n") { return "the path holds a NUL or newline" }
        }
        return nil
    }
}

public struct OverlayError: Error, Hashable, Sendable, CustomStringConvertible {
    public var overlay: String
    public var file: String?
    public var problem: String
    public init(overlay: String, file: String?, problem: String) {
        self.overlay = overlay
        self.file = file
        self.problem = problem
    }
    public var description: String {
        "overlay \(overlay)" + (file.map { ", file \($0)" } ?? "") + ": \(problem)"
    }
}

/// An overlay file as rendered for one node, what the agent writes.
public struct RenderedFile: Codable, Hashable, Sendable {
    public var overlay: String
    public var path: String
    public var mode: Int
    public var uid: Int
    public var gid: Int
    public var data: Data
    public var run: PluginRun?

    public init(overlay: String, path: String, mode: Int, uid: Int, gid: Int, data: Data, run: PluginRun? = nil) {
        self.overlay = overlay
        self.path = path
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.data = data
        self.run = run
    }
}

/// `GET /api/v1/admin/overlays`: each overlay without its bytes.
public struct OverlaySummary: Codable, Hashable, Sendable {
    public var name: String
    public var files: [String]
    public var bytes: Int
    public var builtin: Bool
    public var usedBy: [String]

    public init(name: String, files: [String], bytes: Int, builtin: Bool, usedBy: [String]) {
        self.name = name
        self.files = files
        self.bytes = bytes
        self.builtin = builtin
        self.usedBy = usedBy
    }
}
