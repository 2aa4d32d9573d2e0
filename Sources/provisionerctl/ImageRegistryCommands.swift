import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerCore
import ProvisionerImage

extension Ctl.Image {
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One image: its branches, every version, and the kernels of one version with the nodes that boot it.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Image name.") var name: String
        @Option(help: "Whose kernels to show: a version id or a branch (default: the live branch's head).")
        var version: String?

        func run() async throws {
            try await reporting {
                let client = try server.client()
                let image = try await client.get("images/\(pathComponent(name))", as: ImageRecord.self)
                let query = version.map { "?version=\(pathComponent($0))" } ?? ""
                let kernels = try await client.get("images/\(pathComponent(name))/kernels\(query)", as: VersionKernels.self)
                if server.json { return try printJSON(ImageShow(image: image, kernels: kernels)) }
                print("image \(image.name), live branch \(image.live)")
                var branches = TextTable(["BRANCH", "HEAD", "UPDATED"])
                for b in image.branches { branches.add([b.name + (b.name == image.live ? " (live)" : ""), b.head, b.updatedAt]) }
                print(branches.render())
                print("")
                var versions = TextTable(["VERSION", "BRANCH", "CREATED", "BY", "ENTRIES", "BYTES", "CHANGES", "HEAD OF"])
                for v in image.versions.reversed() {
                    let heads = image.branches.filter { $0.head == v.id }.map(\.name).joined(separator: ",")
                    versions.add([
                        String(v.id.prefix(16)), v.branch, v.createdAt, v.createdBy, String(v.entries), String(v.contentBytes),
                        "+\(v.summary.added) ~\(v.summary.changed) -\(v.summary.removed)", heads.isEmpty ? "-" : heads,
                    ])
                }
                print(versions.render())
                print("")
                printKernels(kernels)
            }
        }
    }

    struct Live: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Makes a branch the live one: nodes that follow the image boot its head from their next boot.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Image name.") var name: String
        @Argument(help: "Branch name.") var branch: String

        func run() async throws {
            try await reporting {
                let image = try await server.client().send(
                    .PUT, "images/\(pathComponent(name))/live", LiveRequest(branch: branch), as: ImageRecord.self)
                if server.json { return try printJSON(image) }
                print("\(image.name): live branch is \(image.live)")
            }
        }
    }

    struct Branch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Creates, lists or deletes branches of an image.", subcommands: [Create.self, List.self, Delete.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "A new branch at a version or another branch's head.")
            @OptionGroup var server: ServerOptions
            @Argument(help: "NAME/BRANCH to create.") var target: String
            @Option(help: "A version id or a branch (default: the live branch's head).") var from: String?

            func run() async throws {
                try await reporting {
                    let ref = try imageAndBranch(target)
                    let move = try await server.client().send(
                        .POST, "images/\(ref.name)/branches", BranchCreateRequest(name: ref.branch, from: from),
                        as: BranchMove.self)
                    if server.json { return try printJSON(move) }
                    print("\(move.image)/\(move.branch) created at \(move.version)")
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "An image's branches.")
            @OptionGroup var server: ServerOptions
            @Argument(help: "Image name.") var name: String

            func run() async throws {
                try await reporting {
                    let image = try await server.client().get("images/\(pathComponent(name))", as: ImageRecord.self)
                    if server.json { return try printJSON(image.branches) }
                    var table = TextTable(["BRANCH", "HEAD", "UPDATED"])
                    for b in image.branches {
                        table.add([b.name + (b.name == image.live ? " (live)" : ""), b.head, b.updatedAt])
                    }
                    print(table.render())
                }
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Deletes a branch (refused while it is live or a node follows it).")
            @OptionGroup var server: ServerOptions
            @Argument(help: "NAME/BRANCH.") var target: String

            func run() async throws {
                try await reporting {
                    let ref = try imageAndBranch(target)
                    let _: [String: String] = try await server.client().send(
                        .DELETE, "images/\(ref.name)/branches/\(ref.branch)", Optional<String>.none)
                    print("\(ref.name)/\(ref.branch) deleted")
                }
            }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Moves a branch back: to the version its head replaced, or to --to VERSION.",
            discussion: "Its nodes move only the difference at their next boot.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "NAME or NAME/BRANCH (default: the live branch).") var target: String
        @Option(help: "A version id of the image.") var to: String?

        func run() async throws {
            try await reporting {
                let ref = try parseRef(target)
                let client = try server.client()
                let branch: String
                if let b = ref.branch {
                    branch = b
                } else {
                    branch = try await client.get("images/\(ref.name)", as: ImageRecord.self).live
                }
                let move = try await client.send(
                    .POST, "images/\(ref.name)/branches/\(branch)/rollback", RollbackRequest(to: to), as: BranchMove.self)
                if server.json { return try printJSON(move) }
                print("\(move.image)/\(move.branch): \(move.previous ?? "-") -> \(move.version) (\(move.summary.text))")
            }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What differs between two versions or branches.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Image name.") var name: String
        @Argument(help: "From: a version id or a branch.") var a: String
        @Argument(help: "To: a version id or a branch.") var b: String

        func run() async throws {
            try await reporting {
                let diff = try await server.client().get(
                    "images/\(pathComponent(name))/diff?a=\(pathComponent(a))&b=\(pathComponent(b))", as: ImageDiff.self)
                if server.json { return try printJSON(diff) }
                for e in diff.entries {
                    let mark = e.change == "added" ? "+" : e.change == "removed" ? "-" : "~"
                    print("\(mark) \(e.path.terminalSafe)\(e.aspects.isEmpty ? "" : " (\(e.aspects.joined(separator: ", ")))")")
                }
                print("\(diff.from.prefix(12)) -> \(diff.to.prefix(12)): \(diff.summary.text)")
            }
        }
    }
}

func parseRef(_ text: String) throws -> ImageRef {
    do { return try ImageRef(parsing: text) } catch { throw CtlFailure(error.description) }
}

func imageAndBranch(_ text: String) throws -> (name: String, branch: String) {
    let ref = try parseRef(text)
    guard let branch = ref.branch, ref.version == nil else { throw CtlFailure("\(text): expected NAME/BRANCH") }
    return (ref.name, branch)
}

extension Ctl.Image {
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deletes a version (refused while a branch names it or a node boots it); image gc frees its objects.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "NAME@VERSION.") var target: String

        func run() async throws {
            try await reporting {
                let ref = try parseRef(target)
                guard let version = ref.version else { throw CtlFailure("\(target): expected NAME@VERSION") }
                let _: [String: String] = try await server.client().send(
                    .DELETE, "images/\(ref.name)/versions/\(version)", Optional<String>.none)
                print("\(ref.name)@\(version) deleted; `provisionerctl image gc` frees the objects only it used")
            }
        }
    }

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Removes objects no version or upload names (safe while nodes sync and admins upload).")
        @OptionGroup var server: ServerOptions
        @Option(help: "Keep unnamed objects younger than this many seconds.") var grace = 3600

        func run() async throws {
            try await reporting {
                let report = try await server.client().send(
                    .POST, "images/gc?grace=\(grace)", Optional<String>.none, as: StoreMaintenance.GCReport.self)
                if server.json { return try printJSON(report) }
                print(
                    "\(report.objects) objects, \(report.manifests) manifests: removed \(report.removed) "
                        + "(\(report.freedBytes) bytes freed); kept \(report.keptYoung) unnamed but younger than \(grace) s")
                if let removed = report.bootFilesRemoved, removed > 0 {
                    print("boot files of kernels no version carries: removed \(removed) (\(report.bootFilesFreedBytes ?? 0) bytes freed)")
                }
            }
        }
    }

    struct Fsck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verifies every object against its hash and every manifest against its id and objects.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                let report = try await server.client().get("images/fsck", as: StoreMaintenance.FsckReport.self)
                if server.json { try printJSON(report) } else {
                    for line in report.damagedObjects { print("damaged object \(line)") }
                    for line in report.damagedManifests { print("damaged manifest \(line)") }
                    for line in report.missingObjects { print("missing object \(line)") }
                    print("\(report.objects) objects, \(report.manifests) manifests: " + (report.isClean ? "clean" : "PROBLEMS"))
                }
                if !report.isClean { throw CtlFailure("the image store has problems (above)") }
            }
        }
    }
}


/// `image show --json`: the registry record and the kernels of the version shown.
struct ImageShow: Codable {
    var image: ImageRecord
    var kernels: VersionKernels
}

/// The kernels of a version, what the server made of each, and which node boots what.
func printKernels(_ v: VersionKernels) {
    print("kernels of \(v.image)@\(v.version.prefix(16)) (the first is what nodes boot unless they pin another):")
    if v.kernels.isEmpty { print("  none: nodes of this version boot the server's default kernel, with a warning") }
    var table = TextTable(["RELEASE", "KERNEL", "MODULES", "BOOT FILES", "INITRD MODULES"])
    for k in v.kernels {
        let files =
            k.problem.map { "cannot boot: \($0)" }
            ?? "\(k.kernelFile.map { String($0.prefix(12)) } ?? "?") + \(k.modulesFile.map { String($0.prefix(12)) } ?? "?")"
        let initrd =
            k.initrdModules.map { "\($0) modules, \(k.initrdFirmware ?? 0) firmware, \(k.modulesFileSize ?? 0) bytes" } ?? "-"
        table.add([k.release, "\(k.kernelPath) (\(k.kernelSize) bytes)", "\(k.moduleCount) in \(k.modulesPath)", files, initrd])
    }
    if !v.kernels.isEmpty { print(table.render()) }
    for problem in v.problems { print("  not offered: \(problem)") }
    if !v.nodes.isEmpty {
        print("")
        var nodes = TextTable(["NODE", "BOOTS", "WHY"])
        for n in v.nodes { nodes.add([n.node, bootCell(n), n.boot?.warning ?? n.boot?.reason ?? n.problem ?? ""]) }
        print(nodes.render())
    }
}

/// What a node boots, in a few words.
func bootCell(_ n: NodeBoot) -> String {
    guard let boot = n.boot else { return "nothing: \(n.problem ?? "?")" }
    switch boot.source {
    case .image: return "kernel \(boot.release ?? "?") (image default)"
    case .pinned: return "kernel \(boot.release ?? "?") (pinned)"
    case .files: return "files \(boot.kernel.name) + \(boot.initrds.map(\.name).joined(separator: " + "))"
    case .serverDefault: return "the server's default kernel"
    }
}
