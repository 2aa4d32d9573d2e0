import ProvisionerCore

/// A whole cluster's nodes in one YAML file (`provisionerctl nodes import|export`):
///
/// ```yaml
/// nodes:
///   node01:
///     macs: ["52:54:00:12:34:56"]
///     image: { name: debian12, branch: stable }
///     mode: stateful
///     layout: |
///       disks:
///         disk0: { match: { type: nvme, size: 1TB } }
///     plugins:
///       - name: hostname
///       - name: network
///         parameters: { address: 10.0.0.11/24 }
///     kernelArgs: [console=ttyS0]
///     syncVerify: metadata
/// ```
///
/// Read with the strict reader: unknown fields are refused with their path and line.
public enum ClusterFile {
    /// The nodes with their profiles applied as written in the file (profiles themselves are
    /// resolved by the server); kept for callers that want configs.
    public static func parse(_ text: String, source: String) throws(ConfigError) -> [NodeConfig] {
        try parseCluster(text, source: source).nodes.map {
            NodeConfig(name: $0.name, macs: $0.macs, profiles: $0.profiles, fields: $0.fields)
        }
    }

    /// `profiles:` and `nodes:`, each a mapping from name to fields.
    public static func parseCluster(_ text: String, source: String) throws(ConfigError) -> (
        nodes: [NodeDefinition], profiles: [Profile]
    ) {
        let root = try ConfigNode.parse(text, source: source).mapping()
        var nodes: [NodeDefinition] = []
        var profiles: [Profile] = []
        if let list = root.optional("profiles") {
            for (name, node) in try list.mapping().all() {
                let m = try node.mapping()
                var profile = Profile(name: name)
                if let names = m.optional("profiles") {
                    profile.profiles = try names.list().map { n throws(ConfigError) in try n.string() }
                }
                profile.fields = try parseFields(m)
                try m.finish()
                do {
                    profiles.append(try profile.validated(path: node.path))
                } catch {
                    var e = error
                    if e.location == nil { e.location = node.location }
                    throw e
                }
            }
        }
        if let list = root.optional("nodes") {
            for (name, node) in try list.mapping().all() {
                nodes.append(try parseNode(name: name, node, path: node.path))
            }
        }
        try root.finish()
        return (nodes, profiles)
    }

    /// One node's mapping (the body under its name).
    public static func parseNode(name: String, _ node: ConfigNode, path: String) throws(ConfigError) -> NodeDefinition {
        let m = try node.mapping()
        var config = NodeDefinition(name: name)
        if let macs = m.optional("macs") {
            config.macs = try macs.list().map { n throws(ConfigError) in try n.string() }
        }
        if let names = m.optional("profiles") {
            config.profiles = try names.list().map { n throws(ConfigError) in try n.string() }
        }
        config.fields = try parseFields(m)
        try m.finish()
        do {
            return try config.validated(path: path)
        } catch {
            // Keep the line of the node when the field's own line is unknown.
            var e = error
            if e.location == nil { e.location = node.location }
            throw e
        }
    }

    /// The profile-able fields of a node or profile mapping.
    static func parseFields(_ m: ConfigMapping) throws(ConfigError) -> NodeFields {
        var fields = NodeFields()
        if let image = m.optional("image") {
            let i = try image.mapping()
            fields.image = ImageRef(
                name: try i.required("name").string(), version: try i.optional("version")?.string(),
                branch: try i.optional("branch")?.string())
            try i.finish()
        }
        if let layout = m.optional("layout") { fields.layout = try layout.string() }
        if let mode = m.optional("mode") {
            let text = try mode.string()
            guard let value = NodeMode(rawValue: text) else {
                throw mode.error("must be stateful or stateless, not \"\(text)\"")
            }
            fields.mode = value
        }
        if let plugins = m.optional("plugins") {
            var list: [PluginConfig] = []
            for item in try plugins.list() {
                let p = try item.mapping()
                var plugin = PluginConfig(name: try p.required("name").string())
                if let params = p.optional("parameters") {
                    for (key, value) in try params.mapping().all() { plugin.parameters[key] = try value.string() }
                }
                try p.finish()
                list.append(plugin)
            }
            fields.plugins = list
        }
        if let args = m.optional("kernelArgs") {
            fields.kernelArgs = try args.list().map { n throws(ConfigError) in try n.string() }
        }
        if let verify = m.optional("syncVerify") {
            let text = try verify.string()
            guard let value = SyncVerify(rawValue: text) else {
                throw verify.error("must be stamp, metadata or content, not \"\(text)\"")
            }
            fields.syncVerify = value
        }
        fields.kernel = try m.optional("kernel")?.string()
        fields.initramfs = try m.optional("initramfs")?.string()
        fields.kernelRelease = try m.optional("kernelRelease")?.string()
        if let enrollment = m.optional("enrollment") {
            let text = try enrollment.string()
            guard let value = EnrollmentPolicy(rawValue: text) else {
                throw enrollment.error("must be approve or auto, not \"\(text)\"")
            }
            fields.enrollment = value
        }
        if let overlays = m.optional("overlays") {
            fields.overlays = try overlays.list().map { n throws(ConfigError) in try n.string() }
        }
        if let vars = m.optional("vars") {
            var map: [String: String] = [:]
            for (key, value) in try vars.mapping().all() { map[key] = try value.string() }
            fields.vars = map
        }
        return fields
    }

    /// Writes nodes as a cluster file that `parse` reads back to the same configs.
    public static func render(_ nodes: [NodeConfig]) -> String {
        render(nodes.map(NodeDefinition.init), profiles: [])
    }

    /// Writes profiles and node definitions (only the fields each sets) as a cluster file that
    /// `parseCluster` reads back to the same values.
    public static func render(_ nodes: [NodeDefinition], profiles: [Profile]) -> String {
        var out = ""
        if !profiles.isEmpty {
            out += "profiles:\n"
            for profile in profiles.sorted(by: { $0.name < $1.name }) {
                out += "  \(profile.name):\n"
                if !profile.profiles.isEmpty {
                    out += "    profiles: [\(profile.profiles.map(quote).joined(separator: ", "))]\n"
                }
                out += renderFields(profile.fields)
                if profile.profiles.isEmpty && profile.fields.setFields.isEmpty { out += "    {}\n" }
            }
        }
        if nodes.isEmpty { return out + "nodes: {}\n" }
        out += "nodes:\n"
        for node in nodes.sorted(by: { $0.name < $1.name }) {
            out += "  \(node.name):\n"
            out += "    macs: [\(node.macs.map(quote).joined(separator: ", "))]\n"
            if !node.profiles.isEmpty {
                out += "    profiles: [\(node.profiles.map(quote).joined(separator: ", "))]\n"
            }
            out += renderFields(node.fields)
        }
        return out
    }

    static func renderFields(_ f: NodeFields) -> String {
        var out = ""
        if let image = f.image {
            var parts = ["name: \(quote(image.name))"]
            if let v = image.version { parts.append("version: \(quote(v))") }
            if let b = image.branch { parts.append("branch: \(quote(b))") }
            out += "    image: { \(parts.joined(separator: ", ")) }\n"
        }
        if let mode = f.mode { out += "    mode: \(mode.rawValue)\n" }
        if let verify = f.syncVerify { out += "    syncVerify: \(verify.rawValue)\n" }
        if let kernel = f.kernel { out += "    kernel: \(quote(kernel))\n" }
        if let initramfs = f.initramfs { out += "    initramfs: \(quote(initramfs))\n" }
        if let release = f.kernelRelease { out += "    kernelRelease: \(quote(release))\n" }
        if let enrollment = f.enrollment { out += "    enrollment: \(enrollment.rawValue)\n" }
        if let args = f.kernelArgs {
            out += "    kernelArgs: [\(args.map(quote).joined(separator: ", "))]\n"
        }
        if let overlays = f.overlays {
            out += "    overlays: [\(overlays.map(quote).joined(separator: ", "))]\n"
        }
        if let vars = f.vars {
            out += vars.isEmpty ? "    vars: {}\n" : "    vars:\n"
            for (key, value) in vars.sorted(by: { $0.key < $1.key }) {
                out += "      \(quote(key)): \(quote(value))\n"
            }
        }
        if let plugins = f.plugins {
            out += plugins.isEmpty ? "    plugins: []\n" : "    plugins:\n"
            for plugin in plugins {
                out += "      - name: \(quote(plugin.name))\n"
                if !plugin.parameters.isEmpty {
                    out += "        parameters:\n"
                    for (key, value) in plugin.parameters.sorted(by: { $0.key < $1.key }) {
                        out += "          \(quote(key)): \(quote(value))\n"
                    }
                }
            }
        }
        if let layout = f.layout {
            out += "    layout: " + blockLiteral(layout, indent: "      ") + "\n"
        }
        return out
    }

    static func quote(_ s: String) -> String { YAMLText.quoted(s) }

    /// `|` block (keeping the final newline exactly) when the text allows it; a quoted scalar otherwise.
    static func blockLiteral(_ text: String, indent: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let leadingSpace = lines.first.map { $0.first == " " || $0.first == "\t" } ?? false
        let hasControl = text.unicodeScalars.contains { $0 != "\n" && YAMLText.isSpecial($0) }
        let trailingSpaceLine = lines.contains { $0.last == " " || $0.last == "\t" }
        guard !text.isEmpty, !leadingSpace, !hasControl, !trailingSpaceLine else { return quote(text) }
        var body = lines
        let chomp: String
        if text.hasSuffix("\n\n") {
            return quote(text)
        } else if text.hasSuffix("\n") {
            body.removeLast()
            chomp = "|"
        } else {
            chomp = "|-"
        }
        return chomp + "\n" + body.map { $0.isEmpty ? "" : indent + $0 }.joined(separator: "\n")
    }
}
