import ProvisionerAPI
import ProvisionerCore

/// The node's overlay files (rendered by the server) as root entries, and the decisions about its
/// admin plugins. Pure: `PluginRunner` writes, the agent runs.
public enum OverlayFiles {
    /// One entry per file, with its owner and mode, in the server's order (a later overlay's file
    /// at the same path was already merged by the server).
    public static func entries(_ files: [RenderedFile]) throws(PluginError) -> [RootEntry] {
        try files.map { file throws(PluginError) in
            if let problem = Overlay.pathProblem(file.path) {
                throw PluginError(plugin: "overlay \(file.overlay)", problem: "\(file.path): \(problem)")
            }
            return .ownedFile(
                path: file.path, content: Array(file.data), mode: UInt16(file.mode & 0o7777), uid: UInt32(file.uid),
                gid: UInt32(file.gid))
        }
    }
}

/// One admin plugin and whether it runs this boot.
public struct PlannedPluginRun: Hashable, Sendable {
    public var overlay: String
    public var path: String
    public var timeoutSeconds: Int
    /// The digest of its inputs, kept in `stampPath` after a successful run.
    public var digest: String
    public var stampPath: String
    /// nil: skipped (inputs unchanged since the last successful run).
    public var reason: String?
}

/// Admin plugins: executables from overlays, run chrooted in the node's root before the pivot
/// (docs/node-config.md, "Admin plugins").
public enum AdminPlugins {
    /// Where the digest of each plugin's last successful run is kept, inside the root.
    public static let stampDirectory = "/var/lib/provisioner/plugin-stamps"

    /// The plugins among `files`, in order, each with why it runs or nil when it is skipped.
    /// `stamps` maps a stamp path to what it holds (nil or absent: never ran).
    public static func plan(_ files: [RenderedFile], node: NodeConfig, stamps: [String: String]) -> [PlannedPluginRun] {
        let env = environment(node)
        return files.compactMap { file in
            guard let run = file.run else { return nil }
            let digest = Self.digest(Array(file.data) + Array(env.joined(separator: "\n").utf8) + Array(file.path.utf8))
            let stamp = stampPath(for: file.path)
            let reason: String?
            switch run.when {
            case .always: reason = "runs on every boot"
            case .changed:
                let last = stamps[stamp]?.split(separator: "\n").first.map(String.init)
                reason = last == nil ? "first run" : (last == digest ? nil : "its inputs changed")
            }
            return PlannedPluginRun(
                overlay: file.overlay, path: file.path, timeoutSeconds: run.timeoutSeconds, digest: digest,
                stampPath: stamp, reason: reason)
        }
    }

    /// The files admin plugins wrote, one root-relative path a line: they are the node's, so the image
    /// sync leaves them (a plugin that runs only when its inputs change would otherwise see its
    /// work removed by the next boot's sync, and not put it back).
    public static let outputsPath = "/var/lib/provisioner/plugin-outputs"

    /// Where a plugin's writes are not looked for: what is not the node's root (not mounted in the
    /// chroot, or the node's own anyway) and the agent's own bookkeeping.
    public static let notOutputs = ["proc", "sys", "dev", "run", "tmp", "var/tmp", "var/log", ".provisioner-state",
        String(stampDirectory.dropFirst()), String(outputsPath.dropFirst())]

    /// `recorded` (the outputs file) with `written` (root-relative paths a run changed) added: sorted,
    /// once each, none of `notOutputs`, none empty or leaving the root.
    public static func mergeOutputs(recorded: String?, written: [String]) -> String {
        var paths = Set((recorded ?? "").split(separator: "\n").map(String.init))
        for path in written {
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            guard !path.isEmpty, !path.hasPrefix("/"), !parts.contains(".."), !parts.contains("") else { continue }
            if notOutputs.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) { continue }
            paths.insert(path)
        }
        return paths.sorted().map { $0 + "\n" }.joined()
    }

    /// `/usr/local/sbin/setup.sh` → `/var/lib/provisioner/plugin-stamps/usr_local_sbin_setup.sh`.
    public static func stampPath(for path: String) -> String {
        stampDirectory + "/" + path.dropFirst().map { $0 == "/" ? "_" : $0 }.map(String.init).joined()
    }

    /// What a plugin finds in its environment: the node's fields, one variable each.
    public static func environment(_ node: NodeConfig) -> [String] {
        var env = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL=C",
            "PROVISIONER_NODE=\(node.name)",
            "PROVISIONER_MACS=\(node.macs.joined(separator: " "))",
            "PROVISIONER_PROFILES=\(node.profiles.joined(separator: " "))",
            "PROVISIONER_OVERLAYS=\(node.overlays.joined(separator: " "))",
            "PROVISIONER_MODE=\(node.mode.rawValue)",
            "PROVISIONER_IMAGE=\(node.image.map(\.spelled) ?? "")",
        ]
        for (key, value) in node.vars.sorted(by: { $0.key < $1.key }) {
            env.append("PROVISIONER_VAR_\(key)=\(value.filter { $0 != "\n" && $0 != "\0" })")
        }
        return env
    }

    /// FNV-1a, 64 bits, as 16 hex digits: enough to notice a change, not a security check.
    static func digest(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The command that runs a plugin: `timeout` kills it after its limit (exit 124), `chroot`
    /// makes the node's root its `/`, `env -i` gives it only the node's fields.
    public static func command(root: String, plugin: PlannedPluginRun, environment: [String]) -> [String] {
        ["timeout", "-k", "5", "\(plugin.timeoutSeconds)", "chroot", root, "/usr/bin/env", "-i"] + environment + [plugin.path]
    }
}
