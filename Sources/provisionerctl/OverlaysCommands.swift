import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore

extension Ctl {
    /// `provisionerctl overlays ...`: the admin's own files and plugins (docs/node-config.md, "Overlays").
    struct Overlays: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "overlays", abstract: "Keeps overlays: files, templates and plugins written into nodes' roots.",
            subcommands: [List.self, Show.self, Add.self, Import.self, Delete.self])
    }
}

/// What `overlays add` and `import` read: a directory whose tree is the overlay's.
struct OverlaySourceOptions: ParsableArguments {
    @Argument(help: "Overlay name.") var name: String
    @Argument(help: "A directory: its files go to the same paths in the root (DIR/etc/motd -> /etc/motd).")
    var directory: String
    @Option(name: .long, help: "A file (its path in the root) that is a plugin: PATH[:always|changed[:SECONDS]] (repeatable).")
    var plugin: [String] = []
    @Option(name: .long, help: "Owner of every file, UID:GID (default: 0:0, not the files' owners here).")
    var owner: String = "0:0"

    /// Reads the tree: `*.mustache` files are templates (the suffix is dropped), modes come from
    /// the files, links and special files are refused (an overlay holds files only).
    func read() throws -> Overlay {
        let owners = owner.split(separator: ":")
        guard owners.count == 2, let uid = Int(owners[0]), let gid = Int(owners[1]) else {
            throw CtlFailure("--owner \(owner) is not UID:GID")
        }
        var runs: [String: PluginRun] = [:]
        for spec in plugin {
            let parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            var run = PluginRun()
            if parts.count > 1 {
                guard let when = PluginRunWhen(rawValue: parts[1]) else {
                    throw CtlFailure("--plugin \(spec): \(parts[1]) is not always or changed")
                }
                run.when = when
            }
            if parts.count > 2 {
                guard let seconds = Int(parts[2]) else { throw CtlFailure("--plugin \(spec): \(parts[2]) is not seconds") }
                run.timeoutSeconds = seconds
            }
            runs[parts[0]] = run
        }
        let base = URL(fileURLWithPath: directory).standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(atPath: base) else {
            throw CtlFailure("reading overlay directory \(directory): not a directory")
        }
        var files: [OverlayFile] = []
        for case let relative as String in walker {
            let full = base + "/" + relative
            var st = stat()
            guard lstat(full, &st) == 0 else { throw CtlFailure("reading \(full): \(String(cString: strerror(errno)))") }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: continue
            case S_IFREG: break
            default: throw CtlFailure("\(full): only regular files go into an overlay (a link or device is refused)")
            }
            let data = try Data(contentsOf: URL(fileURLWithPath: full))
            let template = relative.hasSuffix(".mustache")
            let path = "/" + (template ? String(relative.dropLast(".mustache".count)) : relative)
            files.append(
                OverlayFile(
                    path: path, mode: Int(st.st_mode & 0o7777), uid: uid, gid: gid, template: template, data: data,
                    run: runs.removeValue(forKey: path)))
        }
        if let missing = runs.keys.sorted().first {
            throw CtlFailure("--plugin \(missing): the directory has no such file")
        }
        do {
            return try Overlay(name: name, files: files.sorted { $0.path < $1.path }).validated()
        } catch {
            throw CtlFailure("\(error)")
        }
    }
}

extension Ctl.Overlays {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists the overlays and who uses them.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                let overlays = try await server.client().get("overlays", as: [OverlaySummary].self)
                if server.json { return try printJSON(overlays) }
                var table = TextTable(["NAME", "FILES", "BYTES", "BUILT IN", "USED BY"])
                for o in overlays {
                    table.add([
                        o.name, "\(o.files.count)", "\(o.bytes)", o.builtin ? "yes" : "no",
                        o.usedBy.isEmpty ? "-" : o.usedBy.joined(separator: ","),
                    ])
                }
                print(table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Shows an overlay's files, or with --node the files as rendered for that node.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Overlay name.") var name: String
        @Option(name: .long, help: "Render for this node and print the contents.") var node: String?

        func run() async throws {
            try await reporting {
                let client = try server.client()
                if let node {
                    let files = try await client.get("nodes/\(pathComponent(node))/files", as: [RenderedFile].self)
                        .filter { $0.overlay == name }
                    if server.json { return try printJSON(files) }
                    for f in files {
                        print("==> \(f.path) (\(String(f.mode, radix: 8)) \(f.uid):\(f.gid)\(f.run.map { ", plugin: \($0.when.rawValue)" } ?? ""))")
                        print(String(decoding: f.data, as: UTF8.self))
                    }
                    return
                }
                let overlay = try await client.get("overlays/\(pathComponent(name))", as: Overlay.self)
                if server.json { return try printJSON(overlay) }
                var table = TextTable(["PATH", "MODE", "OWNER", "BYTES", "KIND"])
                for f in overlay.files {
                    let kind = f.run.map { "plugin (\($0.when.rawValue), \($0.timeoutSeconds) s)" } ?? (f.template ? "template" : "file")
                    table.add([f.path, String(f.mode, radix: 8), "\(f.uid):\(f.gid)", "\(f.data.count)", kind])
                }
                print(table.render())
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Creates an overlay from a directory (refused if it exists).")
        @OptionGroup var server: ServerOptions
        @OptionGroup var source: OverlaySourceOptions

        func run() async throws {
            try await reporting {
                let summary = try await server.client().send(.POST, "overlays", try source.read(), as: OverlaySummary.self)
                if server.json { return try printJSON(summary) }
                print("overlay \(summary.name) added: \(summary.files.count) files, \(summary.bytes) bytes")
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replaces an existing overlay with a directory's files; nodes using it are checked first.")
        @OptionGroup var server: ServerOptions
        @OptionGroup var source: OverlaySourceOptions

        func run() async throws {
            try await reporting {
                let overlay = try source.read()
                let summary = try await server.client().send(
                    .PUT, "overlays/\(pathComponent(overlay.name))", overlay, as: OverlaySummary.self)
                if server.json { return try printJSON(summary) }
                print("overlay \(summary.name) replaced: \(summary.files.count) files, \(summary.bytes) bytes; used by \(summary.usedBy.count)")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deletes an overlay nothing uses.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Overlay name.") var name: String

        func run() async throws {
            try await reporting {
                let result = try await server.client().send(
                    .DELETE, "overlays/\(pathComponent(name))", Optional<Empty>.none, as: [String: String].self)
                if server.json { return try printJSON(result) }
                print("overlay \(name) deleted")
            }
        }
    }
}
