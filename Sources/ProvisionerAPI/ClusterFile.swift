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
    public static func parse(_ text: String, source: String) throws(ConfigError) -> [NodeConfig] {
        let root = try ConfigNode.parse(text, source: source).mapping()
        var nodes: [NodeConfig] = []
        if let list = root.optional("nodes") {
            for (name, node) in try list.mapping().all() {
                nodes.append(try parseNode(name: name, node, path: node.path))
            }
        }
        try root.finish()
        return nodes
    }

    /// One node's mapping (the body under its name).
    public static func parseNode(name: String, _ node: ConfigNode, path: String) throws(ConfigError) -> NodeConfig {
        let m = try node.mapping()
        var config = NodeConfig(name: name)
        if let macs = m.optional("macs") {
            config.macs = try macs.list().map { n throws(ConfigError) in try n.string() }
        }
        if let image = m.optional("image") {
            let i = try image.mapping()
            config.image = ImageRef(
                name: try i.required("name").string(), version: try i.optional("version")?.string(),
                branch: try i.optional("branch")?.string())
            try i.finish()
        }
        if let layout = m.optional("layout") { config.layout = try layout.string() }
        if let mode = m.optional("mode") {
            let text = try mode.string()
            guard let value = NodeMode(rawValue: text) else {
                throw mode.error("must be stateful or stateless, not \"\(text)\"")
            }
            config.mode = value
        }
        if let plugins = m.optional("plugins") {
            for item in try plugins.list() {
                let p = try item.mapping()
                var plugin = PluginConfig(name: try p.required("name").string())
                if let params = p.optional("parameters") {
                    for (key, value) in try params.mapping().all() { plugin.parameters[key] = try value.string() }
                }
                try p.finish()
                config.plugins.append(plugin)
            }
        }
        if let args = m.optional("kernelArgs") {
            config.kernelArgs = try args.list().map { n throws(ConfigError) in try n.string() }
        }
        if let verify = m.optional("syncVerify") {
            let text = try verify.string()
            guard let value = SyncVerify(rawValue: text) else {
                throw verify.error("must be stamp, metadata or content, not \"\(text)\"")
            }
            config.syncVerify = value
        }
        config.kernel = try m.optional("kernel")?.string()
        config.initramfs = try m.optional("initramfs")?.string()
        config.kernelRelease = try m.optional("kernelRelease")?.string()
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

    /// Writes nodes as a cluster file that `parse` reads back to the same configs.
    public static func render(_ nodes: [NodeConfig]) -> String {
        var out = "nodes:\n"
        if nodes.isEmpty { return "nodes: {}\n" }
        for node in nodes.sorted(by: { $0.name < $1.name }) {
            out += "  \(node.name):\n"
            out += "    macs: [\(node.macs.map(quote).joined(separator: ", "))]\n"
            if let image = node.image {
                var parts = ["name: \(quote(image.name))"]
                if let v = image.version { parts.append("version: \(quote(v))") }
                if let b = image.branch { parts.append("branch: \(quote(b))") }
                out += "    image: { \(parts.joined(separator: ", ")) }\n"
            }
            out += "    mode: \(node.mode.rawValue)\n"
            out += "    syncVerify: \(node.syncVerify.rawValue)\n"
            if let kernel = node.kernel { out += "    kernel: \(quote(kernel))\n" }
            if let initramfs = node.initramfs { out += "    initramfs: \(quote(initramfs))\n" }
            if let release = node.kernelRelease { out += "    kernelRelease: \(quote(release))\n" }
            if !node.kernelArgs.isEmpty {
                out += "    kernelArgs: [\(node.kernelArgs.map(quote).joined(separator: ", "))]\n"
            }
            if !node.plugins.isEmpty {
                out += "    plugins:\n"
                for plugin in node.plugins {
                    out += "      - name: \(quote(plugin.name))\n"
                    if !plugin.parameters.isEmpty {
                        out += "        parameters:\n"
                        for (key, value) in plugin.parameters.sorted(by: { $0.key < $1.key }) {
                            out += "          \(quote(key)): \(quote(value))\n"
                        }
                    }
                }
            }
            if let layout = node.layout {
                out += "    layout: " + blockLiteral(layout, indent: "      ") + "\n"
            }
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
