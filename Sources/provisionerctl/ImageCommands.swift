import ArgumentParser
import CArchive
import Foundation
import ProvisionerAPI
import ProvisionerCore
import ProvisionerImage
import ProvisionerPublish
import ProvisionerSystem

extension Ctl {
    struct Image: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Images: publish versions, branches, the live branch, rollback, diff (docs/images.md).",
            subcommands: [
                Import.self, List.self, Show.self, Live.self, Branch.self, Rollback.self, Diff.self, Delete.self, GC.self,
                Fsck.self, Build.self, Exec.self, Shell.self, Multicast.self, Multicasts.self, MulticastStop.self,
            ]
        )
    }
}

extension Ctl.Image {
    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new version of an image from a directory tree or a tarball.",
            discussion: """
                Through the server (the default): the tree is chunked locally, the server says which \
                objects it lacks, only those are sent, and the version is committed on the branch \
                (NAME/BRANCH, default the image's live branch) once all are there; run it again \
                after a cut connection and it sends only what is still missing. With --store, the \
                version goes into a store directory on this machine instead. Run as root so that \
                every owner, device node and security.* xattr can be read. See docs/images.md.
                """
        )

        @Argument(help: "NAME or NAME/BRANCH (names: [a-z0-9][a-z0-9._-]{0,63}).")
        var name: String

        @Option(help: "A root filesystem directory or a tar archive (any compression libarchive reads).")
        var from: String

        @Option(help: "Write into this image store directory instead of publishing through the server.")
        var store: String?

        @Option(help: "Where the tree is chunked before it is sent (default: a temporary directory, removed after).")
        var staging: String?

        @OptionGroup var server: ServerOptions

        func validate() throws {
            do {
                let ref = try ImageRef(parsing: name)
                guard ref.version == nil else { throw ValidationError("import makes a version; name NAME or NAME/BRANCH") }
                if store != nil && ref.branch != nil {
                    throw ValidationError("a store directory has no branches; publish through the server for NAME/BRANCH")
                }
            } catch let error as ConfigError {
                throw ValidationError(error.problem)
            }
        }

        func run() async throws {
            try await reporting {
                let ref = try ImageRef(parsing: name)
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: from, isDirectory: &isDirectory) else {
                    throw CtlFailure("--from \(from) does not exist")
                }
                if let store {
                    return try printLocal(try importTree(from, isDirectory: isDirectory.boolValue, image: ref.name, into: store))
                }
                try await publishTree(
                    from, isDirectory: isDirectory.boolValue, ref: ref, staging: staging, server: server)
            }
        }

        func printLocal(_ result: ProvisionerImage.ImportResult) throws {
            if server.json {
                let out: [String: Any] = [
                    "image": result.image, "version": result.version.hex, "entries": result.entries,
                    "contentBytes": result.contentBytes, "chunks": result.chunks, "newObjects": result.newObjects,
                    "newStoredBytes": result.newStoredBytes,
                ]
                let data = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(
                    "\(result.image)@\(result.version.hex): \(result.entries) entries, \(result.contentBytes) bytes "
                        + "in \(result.chunks) chunks; \(result.newObjects) new objects (\(result.newStoredBytes) bytes stored)"
                )
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List images: their branches (the live one marked) and what each names.",
            discussion: "With --store, the images of a store directory on this machine instead.")

        @Option(help: "List a store directory on this machine instead of the server's registry.")
        var store: String?

        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                if let store { return try listStore(store) }
                let images = try await server.client().get("images", as: [ImageRecord].self)
                if server.json { return try printJSON(images) }
                var table = TextTable(["IMAGE", "BRANCH", "HEAD", "KERNELS", "VERSIONS", "UPDATED"])
                for image in images {
                    for branch in image.branches {
                        let kernels = image.versions.first { $0.id == branch.head }?.kernels
                        table.add([
                            image.name, branch.name + (branch.name == image.live ? " (live)" : ""),
                            String(branch.head.prefix(16)), kernelsCell(kernels), String(image.versions.count),
                            branch.updatedAt,
                        ])
                    }
                }
                print(table.render())
            }
        }

        func listStore(_ store: String) throws {
            let images: [ImageInfo]
            do { images = try ImageStore(root: store).listImages() } catch { throw CtlFailure("\(error)") }
            if server.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(images), as: UTF8.self))
                return
            }
            if images.isEmpty {
                print("no images in \(store)")
                return
            }
            for image in images {
                print(image.name)
                for v in image.versions.reversed() {
                    let date = Date(timeIntervalSince1970: TimeInterval(v.created))
                    let mark = v.id == image.latest ? "  (latest)" : ""
                    print("  \(v.id)  \(date)  \(v.entries) entries  \(v.bytes) bytes\(mark)")
                }
            }
        }
    }
}

/// A version's kernels in a table cell: newest (what nodes boot by default) first.
func kernelsCell(_ kernels: [String]?) -> String {
    guard let kernels else { return "?" }
    return kernels.isEmpty ? "none" : kernels.joined(separator: ", ")
}

/// Imports a directory or tarball into a store directory.
func importTree(_ source: String, isDirectory: Bool, image: String, into store: String) throws
    -> ProvisionerImage.ImportResult
{
    let importer = ImageImporter(store: ImageStore(root: store))
    let now = Int64(Date().timeIntervalSince1970)
    do {
        return isDirectory
            ? try importer.importDirectory(source, image: image, now: now)
            : try TarImporter(importer: importer).importArchive(source, image: image, now: now)
    } catch {
        throw CtlFailure("\(error)")
    }
}

/// Imports a tree into a staging store (`staging`, or a temporary one removed after) and publishes
/// it through the server (docs/images.md); prints what moved.
func publishTree(_ source: String, isDirectory: Bool, ref: ImageRef, staging: String?, server: ServerOptions) async throws {
    let root = staging ?? NSTemporaryDirectory() + "provisionerctl-staging-" + UUID().uuidString
    defer { if staging == nil { try? FileManager.default.removeItem(atPath: root) } }
    let result = try importTree(source, isDirectory: isDirectory, image: ref.name, into: root)
    let staging = ImageStore(root: root)
    guard let manifest = try staging.manifestBytes(image: ref.name, version: result.version) else {
        throw CtlFailure("the staging store \(root) has no version \(result.version.hex) of \(ref.name)")
    }
    let admin = try server.client()
    let outcome: ImagePublisher.Outcome
    do {
        outcome = try await ImagePublisher(client: admin.client)
            .publish(image: ref.name, branch: ref.branch, manifest: manifest, objects: staging)
    } catch {
        throw CtlFailure(error.description)
    }
    if server.json { return try printJSON(outcome.move) }
    let move = outcome.move
    print(
        "\(move.image)/\(move.branch)@\(move.version): \(result.entries) entries, \(result.contentBytes) bytes; "
            + "sent \(outcome.sentObjects) of \(outcome.objects) objects (\(outcome.sentBytes) bytes); "
            + (move.previous == move.version
                ? "the branch already named this version"
                : "\(move.summary.text) since \(move.previous.map { String($0.prefix(12)) } ?? "nothing")"))
}

/// Reads a tarball with libarchive into an image version.
struct TarImporter {
    let importer: ImageImporter

    struct Pending {
        var entry: Entry
        /// For hard links: the path (normalized) of the name it links to.
        var linkTo: [UInt8]?
    }

    static func normalize(_ raw: String) -> [UInt8] {
        var parts: [Substring] = []
        for p in raw.split(separator: "/") where p != "." && !p.isEmpty { parts.append(p) }
        return Array(parts.joined(separator: "/").utf8)
    }

    func importArchive(_ path: String, image: String, now: Int64) throws -> ProvisionerImage.ImportResult {
        guard let archive = archive_read_new() else {
            throw SystemError("reading", path, cause: "libarchive: out of memory")
        }
        defer { archive_read_free(archive) }
        archive_read_support_filter_all(archive)
        archive_read_support_format_all(archive)
        func fail(_ what: String) -> SystemError {
            let message = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
            return SystemError(what, path, cause: message)
        }
        guard archive_read_open_filename(archive, path, 1 << 20) == ARCHIVE_OK else { throw fail("opening archive") }
        var byPath: [[UInt8]: Pending] = [:]
        var entryPointer: OpaquePointer?
        while true {
            let r = archive_read_next_header(archive, &entryPointer)
            if r == ARCHIVE_EOF { break }
            guard r == ARCHIVE_OK || r == ARCHIVE_WARN, let ae = entryPointer else { throw fail("reading archive") }
            let name = Self.normalize(String(cString: archive_entry_pathname(ae)))
            if !name.isEmpty, let problem = PathRules.problem(name) {
                throw SystemError("importing archive member", String(decoding: name, as: UTF8.self), cause: problem)
            }
            if let link = archive_entry_hardlink(ae) {
                var e = Entry(path: name, kind: .hardlink)
                e.linkIndex = -1
                byPath[name] = Pending(entry: e, linkTo: Self.normalize(String(cString: link)))
                continue
            }
            guard let kind = EntryKind(fileType: mode_t(archive_entry_filetype(ae))) else {
                throw SystemError(
                    "importing archive member", String(decoding: name, as: UTF8.self), cause: "unknown type")
            }
            var e = Entry(path: name, kind: kind)
            e.mode = UInt32(archive_entry_perm(ae)) & 0o7777
            e.uid = UInt32(truncatingIfNeeded: archive_entry_uid(ae))
            e.gid = UInt32(truncatingIfNeeded: archive_entry_gid(ae))
            e.mtimeSeconds = Int64(archive_entry_mtime(ae))
            e.mtimeNanoseconds = UInt32(truncatingIfNeeded: archive_entry_mtime_nsec(ae))
            if kind == .symlink, let t = archive_entry_symlink(ae) { e.target = Array(String(cString: t).utf8) }
            if kind == .charDevice || kind == .blockDevice {
                e.major = UInt32(archive_entry_rdevmajor(ae))
                e.minor = UInt32(archive_entry_rdevminor(ae))
            }
            var xattrs: [Xattr] = []
            archive_entry_xattr_reset(ae)
            var xname: UnsafePointer<CChar>?
            var xvalue: UnsafeRawPointer?
            var xsize = 0
            while archive_entry_xattr_next(ae, &xname, &xvalue, &xsize) == ARCHIVE_OK {
                guard let xname else { continue }
                let value = xvalue.map { Array(UnsafeRawBufferPointer(start: $0, count: xsize)) } ?? []
                xattrs.append(Xattr(name: Array(String(cString: xname).utf8), value: value))
            }
            // ACLs that came as ACL entries only (tar --acls without the raw xattrs): as the xattrs
            // a tree read from disk has.
            for (type, name) in [
                (ARCHIVE_ENTRY_ACL_TYPE_ACCESS, PosixACL.accessName),
                (ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, PosixACL.defaultName),
            ] where !xattrs.contains(where: { $0.name == Array(name.utf8) }) {
                if let value = try Self.acl(ae, type: type, member: name) {
                    xattrs.append(Xattr(name, value))
                }
            }
            e.xattrs = xattrs.sorted { $0.name.lexicographicallyPrecedes($1.name) }
            // With an ACL mask the mode's group bits are the mask (libarchive may give group:: there).
            if let access = xattrs.first(where: { $0.name == Array(PosixACL.accessName.utf8) }),
                let mask = PosixACL.maskPermissions(ofXattr: access.value)
            {
                e.mode = (e.mode & ~0o070) | UInt32(mask) << 3
            }
            if kind == .file {
                let (size, chunks) = try importer.storeContent { buf in
                    let n = archive_read_data(archive, buf.baseAddress, buf.count)
                    if n < 0 { throw fail("reading the content of \(String(decoding: name, as: UTF8.self)) in") }
                    return n
                }
                e.size = size
                e.chunks = chunks
            }
            byPath[name] = Pending(entry: e, linkTo: nil)
        }
        return try importer.publish(image: image, manifest: try Self.manifest(byPath), now: now)
    }

    /// The member's POSIX ACL of `type` (access or default) as its xattr value; nil if it has none.
    static func acl(_ ae: OpaquePointer, type: Int32, member: String) throws -> [UInt8]? {
        guard archive_entry_acl_reset(ae, type) > 0 else { return nil }
        var entries: [PosixACL.Entry] = []
        var (t, permset, tag, qualifier) = (Int32(0), Int32(0), Int32(0), Int32(0))
        var name: UnsafePointer<CChar>?
        while archive_entry_acl_next(ae, type, &t, &permset, &tag, &qualifier, &name) == ARCHIVE_OK {
            guard t == type else { continue }  // the access entries libarchive derives from the mode
            let kind: PosixACL.Tag
            switch tag {
            case ARCHIVE_ENTRY_ACL_USER_OBJ: kind = .userObject
            case ARCHIVE_ENTRY_ACL_USER: kind = .user
            case ARCHIVE_ENTRY_ACL_GROUP_OBJ: kind = .groupObject
            case ARCHIVE_ENTRY_ACL_GROUP: kind = .group
            case ARCHIVE_ENTRY_ACL_MASK: kind = .mask
            case ARCHIVE_ENTRY_ACL_OTHER: kind = .other
            default: continue  // NFSv4 entries have no POSIX form
            }
            let rwx =
                (permset & ARCHIVE_ENTRY_ACL_READ != 0 ? 4 : 0) | (permset & ARCHIVE_ENTRY_ACL_WRITE != 0 ? 2 : 0)
                | (permset & ARCHIVE_ENTRY_ACL_EXECUTE != 0 ? 1 : 0)
            var id = UInt32(bitPattern: qualifier)
            if (kind == .user || kind == .group) && qualifier < 0 {
                // GNU tar writes names ("user:alice:rwx"); like tar -x, they are looked up on this host.
                let text = name.map { String(cString: $0) } ?? ""
                if kind == .user, let pw = getpwnam(text) {
                    id = pw.pointee.pw_uid
                } else if kind == .group, let gr = getgrnam(text) {
                    id = gr.pointee.gr_gid
                } else {
                    let path = String(cString: archive_entry_pathname(ae))
                    throw SystemError(
                        "importing the \(member) ACL of archive member", path,
                        cause: "no \(kind == .user ? "user" : "group") named \"\(text)\" on this host")
                }
            }
            entries.append(PosixACL.Entry(kind, UInt16(rwx), id: id))
        }
        if entries.isEmpty { return nil }
        guard let value = PosixACL.xattrValue(entries) else {
            let path = String(cString: archive_entry_pathname(ae))
            throw SystemError("importing the \(member) ACL of archive member", path, cause: "not a valid POSIX ACL")
        }
        return value
    }

    /// Sorts the members, adds missing parent directories, and turns hard links into links to
    /// the first name of each inode in manifest order.
    static func manifest(_ members: [[UInt8]: Pending]) throws -> Manifest {
        var byPath = members
        if byPath[[]] == nil {
            var root = Entry(path: [], kind: .directory)
            root.mode = 0o755
            byPath[[]] = Pending(entry: root)
        }
        for p in Array(byPath.keys) {
            var parent = PathRules.parent(p)
            while !p.isEmpty && byPath[parent] == nil {
                var d = Entry(path: parent, kind: .directory)
                d.mode = 0o755
                byPath[parent] = Pending(entry: d)
                if parent.isEmpty { break }
                parent = PathRules.parent(parent)
            }
        }
        // Each hard link group's data lives with the member that has content; follow chains.
        func root(of p: [UInt8]) throws -> [UInt8] {
            var current = p
            var steps = 0
            while let link = byPath[current]?.linkTo {
                current = link
                steps += 1
                guard steps < 64, byPath[current] != nil else {
                    throw SystemError(
                        "importing hard link", String(decoding: p, as: UTF8.self),
                        cause: "its target is not in the archive")
                }
            }
            return current
        }
        var groups: [[UInt8]: [[UInt8]]] = [:]
        for (p, m) in byPath where m.linkTo != nil { groups[try root(of: p), default: []].append(p) }
        for (owner, links) in groups {
            let names = ([owner] + links).sorted(by: pathLess)
            let first = names[0]
            if first != owner {
                var e = byPath[owner]!.entry
                e.path = first
                byPath[first] = Pending(entry: e)
                var l = Entry(path: owner, kind: .hardlink)
                l.linkIndex = -1
                byPath[owner] = Pending(entry: l, linkTo: first)
            }
            for n in names.dropFirst() {
                var l = Entry(path: n, kind: .hardlink)
                l.linkIndex = -1
                byPath[n] = Pending(entry: l, linkTo: first)
            }
        }
        let paths = byPath.keys.sorted(by: pathLess)
        var index: [[UInt8]: Int] = [:]
        var entries: [Entry] = []
        for p in paths {
            var e = byPath[p]!.entry
            if let link = byPath[p]!.linkTo { e.linkIndex = index[link]! }
            index[p] = entries.count
            entries.append(e)
        }
        return Manifest(entries: entries)
    }
}
