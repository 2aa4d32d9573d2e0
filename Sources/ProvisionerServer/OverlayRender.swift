import Foundation
import Mustache
import ProvisionerAPI

/// Renders a node's overlays (and the `{{...}}` in its plugin parameters) with swift-mustache.
/// Pure: the node, the cluster and the overlays in, the files out, or an `OverlayError` naming the
/// node, overlay, file and field before anything is written anywhere.
///
/// What a template sees (docs/node-config.md, "Overlays"):
///
/// | name | value |
/// |---|---|
/// | `name`, `mode`, `image`, `kernel`, `initramfs` | the node's effective fields (`image` is `NAME`, `NAME/BRANCH` or `NAME@VERSION`) |
/// | `ip` | `vars.ip`, else the first `network` plugin's `address` without its prefix length, else empty |
/// | `macs`, `profiles`, `overlays`, `kernelArgs` | lists (`{{#macs}}{{.}}{{/macs}}`) |
/// | `mac` | the first MAC, or empty |
/// | `vars.KEY` | the node's variables; a name the node does not have is an error |
/// | `nodes` | every node of the cluster, sorted by name, each with `name`, `ip`, `mac`, `macs`, `profiles`, `vars` |
/// | `hosts` | the nodes that have an `ip` |
///
/// Text is written as it is (no HTML escaping).
public enum OverlayRender {
    /// The built-in overlays, always present, neither replaced nor deleted.
    public static let builtins: [Overlay] = [
        Overlay(
            name: "hosts",
            files: [
                OverlayFile(
                    path: "/etc/hosts", mode: 0o644, template: true,
                    data: Data(
                        """
                        # Written by the provisioner's hosts overlay; changes here are replaced on boot.
                        127.0.0.1\tlocalhost
                        ::1\tlocalhost ip6-localhost ip6-loopback
                        {{#hosts}}
                        {{ip}}\t{{name}}
                        {{/hosts}}

                        """.utf8))
            ])
    ]

    public static func isBuiltin(_ name: String) -> Bool { builtins.contains { $0.name == name } }

    /// The files of `node`'s overlays, in order (a later overlay's file replaces an earlier one's
    /// at the same path), with templates rendered.
    public static func render(
        node: NodeConfig, cluster: [NodeConfig], overlays: [String: Overlay]
    ) throws(OverlayError) -> [RenderedFile] {
        let context = Self.context(node: node, cluster: cluster)
        var files: [RenderedFile] = []
        var at: [String: Int] = [:]
        for name in node.overlays {
            guard let overlay = overlays[name] ?? builtins.first(where: { $0.name == name }) else {
                throw OverlayError(
                    overlay: name, file: nil, problem: "node \(node.name) lists overlay \(name), which does not exist")
            }
            for file in overlay.files {
                var data = file.data
                if file.template {
                    let text = String(decoding: file.data, as: UTF8.self)
                    do {
                        data = Data(try renderText(text, context: context).utf8)
                    } catch {
                        throw OverlayError(overlay: name, file: file.path, problem: "node \(node.name): \(error.problem)")
                    }
                }
                let rendered = RenderedFile(
                    overlay: name, path: file.path, mode: file.mode, uid: file.uid, gid: file.gid, data: data, run: file.run)
                if let index = at[file.path] {
                    files[index] = rendered
                } else {
                    at[file.path] = files.count
                    files.append(rendered)
                }
            }
        }
        return files
    }

    /// The node's plugins with `{{...}}` in their parameters rendered (`address: "{{vars.ip}}/16"`).
    public static func renderPlugins(node: NodeConfig, cluster: [NodeConfig]) throws(OverlayError) -> [PluginConfig] {
        guard node.plugins.contains(where: { $0.parameters.values.contains { $0.contains("{{") } }) else {
            return node.plugins
        }
        let context = Self.context(node: node, cluster: cluster)
        var plugins = node.plugins
        for (i, plugin) in plugins.enumerated() {
            for (key, value) in plugin.parameters where value.contains("{{") {
                do {
                    plugins[i].parameters[key] = try renderText(value, context: context)
                } catch {
                    throw OverlayError(
                        overlay: "(plugin parameters)", file: nil,
                        problem: "node \(node.name): plugins[\(i)] (\(plugin.name)).parameters.\(key): \(error.problem)")
                }
            }
        }
        return plugins
    }

    public struct RenderError: Error, Hashable, Sendable {
        public var problem: String
    }

    /// One template's text rendered, refusing a syntax error (with its line and column) and any
    /// name the context does not have.
    public static func renderText(_ text: String, context: Scope) throws(RenderError) -> String {
        // Plain text, not HTML: configuration files must not get `&amp;`. The pragma adds no line.
        let pragma = "{{% CONTENT_TYPE: TEXT}}"
        let template: MustacheTemplate
        do {
            template = try MustacheTemplate(string: pragma + text)
        } catch let error as MustacheTemplate.ParserError {
            let column = error.context.lineNumber == 1 ? error.context.columnNumber - pragma.count : error.context.columnNumber
            throw RenderError(
                problem: "the template does not parse: \(error.error) at line \(error.context.lineNumber), column \(max(1, column))")
        } catch {
            throw RenderError(problem: "the template does not parse: \(error)")
        }
        let misses = MissSink()
        let root = context.recording(into: misses)
        let output = template.render(root)
        if let first = misses.names.first {
            throw RenderError(problem: "the template refers to \(first), which this node does not have")
        }
        return output
    }

    /// A node and its cluster as template values.
    public static func context(node: NodeConfig, cluster: [NodeConfig]) -> Scope {
        var values = entry(node, path: "")
        values["mode"] = node.mode.rawValue
        values["image"] = node.image.map(\.spelled) ?? ""
        values["kernel"] = node.kernel ?? "default"
        values["initramfs"] = node.initramfs ?? "default"
        values["overlays"] = node.overlays
        values["kernelArgs"] = node.kernelArgs
        let all = cluster.sorted { $0.name < $1.name }.map {
            Scope(entry($0, path: "nodes[\($0.name)]."), path: "nodes[\($0.name)]", records: false)
        }
        values["nodes"] = all
        values["hosts"] = all.filter { ($0.values["ip"] as? String).map { !$0.isEmpty } ?? false }
        return Scope(values, path: "", records: true)
    }

    static func entry(_ node: NodeConfig, path: String) -> [String: Any] {
        [
            "name": node.name,
            "ip": address(of: node),
            "mac": node.macs.first ?? "",
            "macs": node.macs,
            "profiles": node.profiles,
            "vars": Scope(node.vars, path: path + "vars", records: true),
        ]
    }

    /// `vars.ip`, else the first `network` plugin's static address without its prefix length.
    static func address(of node: NodeConfig) -> String {
        if let ip = node.vars["ip"] { return ip }
        for plugin in node.plugins where plugin.name == "network" {
            if let address = plugin.parameters["address"], !address.contains("{{") {
                return String(address.split(separator: "/").first ?? "")
            }
        }
        return ""
    }

    /// Names looked up and not found, in order.
    final class MissSink: @unchecked Sendable {
        var names: [String] = []
    }

    /// A dictionary that says which names were asked for and missing. Only the root and `vars`
    /// record: a lookup that misses a node entry of `nodes` goes on up the stack to the root,
    /// which records it if it misses there too.
    public struct Scope: MustacheParent {
        let values: [String: Any]
        let path: String
        let records: Bool
        var sink: MissSink?

        init(_ values: [String: Any], path: String, records: Bool, sink: MissSink? = nil) {
            self.values = values
            self.path = path
            self.records = records
            self.sink = sink
        }

        func recording(into sink: MissSink) -> Scope {
            var copy = Scope(values.mapValues { Self.attach($0, sink) }, path: path, records: records, sink: sink)
            copy.sink = sink
            return copy
        }

        static func attach(_ value: Any, _ sink: MissSink) -> Any {
            if let scope = value as? Scope { return scope.recording(into: sink) }
            if let list = value as? [Scope] { return list.map { $0.recording(into: sink) } }
            return value
        }

        public func child(named name: String) -> Any? {
            if let value = values[name] { return value }
            if records, let sink {
                let full = path.isEmpty ? name : "\(path).\(name)"
                if !sink.names.contains(full) { sink.names.append(full) }
            }
            return nil
        }
    }
}
