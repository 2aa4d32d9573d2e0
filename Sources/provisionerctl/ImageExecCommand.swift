import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerClient
import ProvisionerCore
import ProvisionerImage

extension Ctl.Image {
    struct Exec: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Runs a command inside a working copy of a branch's head; on success publishes the result.",
            discussion: """
                The head of NAME (its live branch) or NAME/BRANCH is fetched into a working copy \\
                (only the objects the staging store lacks), the command runs chrooted into it with \\
                /proc, /sys and /dev mounted in a private mount namespace and the host's DNS, and \\
                when it exits 0 the copy is published on the same branch with a summary of what \\
                changed. When it fails, nothing is published. Needs root. Example: \\
                provisionerctl image exec debian -- apt-get install -y hello
                """)

        @Argument(help: "NAME or NAME/BRANCH.") var name: String
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String]
        @Option(help: "Keep the working copy and objects here (default: a temporary directory).") var staging: String?
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                guard !command.isEmpty else { throw CtlFailure("no command given (after --)") }
                try await WorkingCopy.edit(name, verb: "exec", staging: staging, server: server, what: command.joined(separator: " ")) {
                    try Self.runChrooted($0, command)
                }
            }
        }

        /// Runs `command` chrooted into `root` in a private mount namespace (so nothing stays mounted
        /// when it ends) with /proc, /sys, /dev and the host's resolv.conf. Returns its exit status.
        static func runChrooted(_ root: String, _ command: [String]) throws -> Int32 {
            let script = """
                set -e
                mount -t proc proc "$0/proc"
                mount --rbind /sys "$0/sys"
                mount --rbind /dev "$0/dev"
                if [ -e "$0/etc/resolv.conf" ] || [ -L "$0/etc/resolv.conf" ]; then
                    mount --bind /etc/resolv.conf "$0/etc/resolv.conf" 2>/dev/null || true
                fi
                exec chroot "$0" "$@"
                """
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            process.arguments = ["--mount", "--propagation", "private", "--fork", "/bin/sh", "-c", script, root] + command
            var environment = ProcessInfo.processInfo.environment
            environment["DEBIAN_FRONTEND"] = "noninteractive"
            process.environment = environment
            do {
                try process.run()
            } catch {
                throw CtlFailure("starting unshare for \(root): \(error)")
            }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }
}

/// The edit flow `image exec` and `image shell` share: fetch a branch head into a working copy,
/// run something in it, publish the copy on the same branch only when that exits 0.
enum WorkingCopy {
    static func edit(
        _ name: String, verb: String, staging: String?, server: ServerOptions, what: String, run: (String) throws -> Int32
    ) async throws {
        let ref = try parseRef(name)
        guard ref.version == nil else { throw CtlFailure("an edit publishes on a branch; name NAME or NAME/BRANCH") }
        let admin = try server.client()
        let image = try await admin.get("images/\(ref.name)", as: ImageRecord.self)
        let branch = ref.branch ?? image.live
        guard let head = image.resolve(ImageRef(name: ref.name, branch: branch)) else {
            throw CtlFailure("image \(ref.name) has no branch \(branch)")
        }
        let root = staging ?? NSTemporaryDirectory() + "provisionerctl-\(verb)-" + UUID().uuidString
        defer { if staging == nil { try? FileManager.default.removeItem(atPath: root) } }
        let store = ImageStore(root: root + "/store")
        let work = root + "/root"
        try await ImageFetcher(client: admin.client, store: store).fetch(image: ref.name, version: head)
        do {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            _ = try SyncEngine(target: work, source: LocalStoreSource(path: store.root)).run(image: ref.name, version: head)
            // The working copy is not a node: it has no state of its own to publish.
            try? FileManager.default.removeItem(atPath: work + "/.provisioner-state")
        } catch {
            throw CtlFailure("making the working copy of \(ref.name)/\(branch)@\(head) in \(work): \(error)")
        }
        print("\(verb): \(ref.name)/\(branch)@\(head.prefix(12)) in \(work): \(what)")
        let status = try run(work)
        guard status == 0 else { throw CtlFailure("\(what) exited \(status); nothing was published") }
        try await publishTree(
            work, isDirectory: true, ref: ImageRef(name: ref.name, branch: branch), staging: store.root, server: server)
    }
}

/// Fetches a version's manifest and the objects a local store lacks from the server's image routes,
/// checking every object against its hash as it is stored.
struct ImageFetcher {
    let client: ProvisionerClient
    let store: ImageStore
    var batch = 2000

    func fetch(image: String, version: String) async throws {
        guard let id = ObjectHash(hex: version) else { throw CtlFailure("\(version) is not a version id") }
        let path = "/v1/images/\(image)/versions/\(version)"
        let response: ClientResponse
        do {
            response = try await client.send(ClientRequest.get(path)).checked(path: "GET \(path)")
        } catch let error as ClientError {
            throw CtlFailure(error.description)
        }
        let manifest: Manifest
        do {
            let bytes = try Array(response.body.readableBytesView).withUnsafeBytes {
                try Zstd.decompress($0, expectedSize: nil, subject: "manifest \(image)@\(version)")
            }
            guard ObjectHash.of(bytes) == id else { throw CtlFailure("the manifest of \(image)@\(version) is damaged") }
            manifest = try ManifestCodec.decode(bytes)
            _ = try store.addVersion(image: image, manifest: bytes)
            try store.setLatest(image: image, version: id)
        } catch let failure as CtlFailure {
            throw failure
        } catch {
            throw CtlFailure("\(image)@\(version): \(error)")
        }
        var wanted: [ObjectHash] = []
        var seen = Set<ObjectHash>()
        for entry in manifest.entries where entry.kind == .file {
            for chunk in entry.chunks where !chunk.isHole && seen.insert(chunk.hash).inserted && !store.hasObject(chunk.hash) {
                wanted.append(chunk.hash)
            }
        }
        let context = DecompressionContext()
        for start in stride(from: 0, to: wanted.count, by: batch) {
            let hashes = Array(wanted[start..<min(start + batch, wanted.count)])
            let body = Array(try JSONEncoder().encode(PackRequest(objects: hashes.map(\.hex))))
            let request = ClientRequest.post("/v1/objects/pack", body: body, contentType: "application/json")
            do {
                try await client.stream(request) { _, stream in
                    var decoder = PackDecoder()
                    while let piece = try await stream.next() {
                        decoder.feed(Array(piece.readableBytesView))
                        while let frame = try decoder.next() {
                            switch frame {
                            case .object(let hash, let stored):
                                try store.putStoredObject(hash, stored: stored, context: context)
                            case .missing(let hash):
                                throw CtlFailure("the server is missing object \(hash.hex) of \(image)@\(version)")
                            case .delta, .end:
                                break
                            }
                        }
                    }
                    try decoder.finish()
                }
            } catch let error as ClientError {
                throw CtlFailure(error.description)
            }
        }
    }
}
