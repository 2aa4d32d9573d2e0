import ArgumentParser
import ProvisionerAPI
import ProvisionerBoot
import ProvisionerClient
import ProvisionerCore
import ProvisionerImage
import ProvisionerPublish
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

extension Agent {
    struct Capture: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Capture this running node's root filesystem into a new version of an image on the server.",
            discussion: """
                Run on the node (the agent leaves a copy of itself at /run/provisioner/provisioner-agent \
                when it boots a node). The root is hashed where it is; the manifest goes to the server \
                first, then only the objects it lacks, read again from the live files, then the commit: \
                a second capture after a small change sends only that change. Left out (docs/images.md, \
                rows C1-C7): the content of virtual filesystems and of other mounts (unless \
                --include-mount), the paths the node owns (as its last boot recorded them in \
                /.provisioner-state/node-owned, or the defaults), SSH host keys, and --exclude. \
                Publishing is an admin action: give the admin's certificate (--tls-dir with ca.pem, \
                admin.pem, admin-key.pem; or --ca, --cert, --key). A node certificate is refused (403).
                """
        )

        @Argument(help: "NAME or NAME/BRANCH to publish to (the image is created when it does not exist).")
        var image: String

        @Option(help: "The server (default: provisioner.server= of this boot's kernel command line).")
        var server: String?

        @Option(help: "Directory with the admin's ca.pem, admin.pem and admin-key.pem.")
        var tlsDir: String?

        @Option(help: "Cluster CA certificate (default: TLS-DIR/ca.pem).")
        var ca: String?

        @Option(help: "Admin certificate (default: TLS-DIR/admin.pem).")
        var cert: String?

        @Option(help: "Admin private key (default: TLS-DIR/admin-key.pem).")
        var key: String?

        @Option(help: "The root to capture.")
        var root: String = "/"

        @Option(name: .customLong("include-mount"), help: "Capture this mount below the root too; repeatable.")
        var includeMounts: [String] = []

        @Option(name: .customLong("exclude"), help: "Leave this path (and what is under it) out; repeatable.")
        var excludes: [String] = []

        @Flag(help: "Decide and hash, print what would be captured; contact no server.")
        var dryRun = false

        @Option(help: "Threads for scanning and hashing.")
        var threads: Int = 2

        @Flag(
            help: """
                Read and hash every file. Without it, a file untouched since the last image sync \
                (its size and mtime are the synced version's, its ctime earlier than the sync's record) \
                takes its chunks from the manifest the sync kept.
                """)
        var rehash = false

        @OptionGroup var output: OutputOptions

        func validate() throws {
            do { _ = try Self.target(image) } catch { throw ValidationError("\(error)") }
            guard threads >= 1 && threads <= 64 else { throw ValidationError("--threads must be 1 to 64") }
            if !dryRun && tlsDir == nil && (ca == nil || cert == nil || key == nil) {
                throw ValidationError("--tls-dir (or --ca, --cert and --key): the admin's certificate is needed to publish")
            }
        }

        /// NAME or NAME/BRANCH; a pinned version is refused (a capture makes a new one).
        static func target(_ text: String) throws -> (name: String, branch: String?) {
            let ref = try ImageRef(parsing: text)
            guard ref.version == nil else {
                throw AgentFailure(message: "\(text): a capture makes a new version; name NAME or NAME/BRANCH", status: .badInput)
            }
            return (ref.name, ref.branch)
        }

        func run() throws {
            try reporting {
                let (name, branch) = try Self.target(image)
                let started = monotonicSeconds()
                let owned = Self.nodeOwned(root: root)
                let scope: CaptureScope
                do {
                    scope = try CaptureScope.plan(
                        root: root, mounts: MountTable.read().entries, nodeOwned: owned.paths,
                        includeMounts: includeMounts, excludes: excludes)
                } catch {
                    throw AgentFailure(message: "\(error)", status: .badInput)
                }
                let say: (String) -> Void = output.json ? { printError($0) } : { print($0) }
                say("capture: \(root) into \(name)/\(branch ?? "(live branch)"); node-owned paths: \(owned.source)")
                for note in scope.notes { say("capture: \(note)") }
                var scanner = TreeScanner(threads: threads)
                scanner.choose = { scope.scanChoice($0, $1) }
                let known = rehash ? nil : Self.knownContent(root: root)
                let (manifest, sources) = try ImageImporter(hashingOnly: threads).manifestAndSources(
                    ofDirectory: root, scanner: scanner, known: known)
                let encoded = ManifestCodec.encode(manifest)
                _ = try ManifestCodec.decode(encoded)  // never send what an agent would refuse
                let hashed = monotonicSeconds() - started
                var read = "\(sources.hashedFiles) file(s), \(sources.hashedBytes) bytes, read and hashed"
                if let known {
                    read += "; \(sources.knownFiles) file(s), \(sources.knownBytes) bytes, untouched since "
                        + "\(known.what): chunks from its manifest"
                }
                say(
                    "capture: \(manifest.entries.count) entries, \(manifest.contentBytes) bytes of content: \(read); in "
                        + ProgressText.seconds(hashed) + "; manifest \(encoded.count) bytes")
                var report = CaptureReport(
                    image: name, branch: branch, root: root, entries: manifest.entries.count,
                    contentBytes: manifest.contentBytes, manifestBytes: encoded.count, hashSeconds: hashed,
                    scope: scope.notes, nodeOwnedFrom: owned.source)
                if dryRun {
                    if output.json { try printJSON(report) }
                    return
                }
                let client = try makeClient()
                let objects = try LiveTreeObjects(root: root, manifest: manifest)
                let publisher = ImagePublisher(client: client)
                let base = Self.deltaBase(root: root, target: name)
                if let base { say("capture: the manifest goes as a delta from \(base.what)") }
                let outcome = try blocking {
                    try await publisher.publish(
                        image: name, branch: branch, manifest: encoded, objects: objects, base: base?.base)
                }
                Self.keep(root: root, image: name, version: outcome.move.version, manifest: encoded, say: say)
                report.seconds = monotonicSeconds() - started
                report.move = outcome.move
                report.objects = outcome.objects
                report.sentObjects = outcome.sentObjects
                report.sentBytes = outcome.sentBytes
                report.requestBytes = outcome.requestBytes
                report.deltaFrom = outcome.deltaFrom == nil ? nil : base?.what
                if let base, outcome.deltaFrom == nil {
                    say("capture: the server does not have \(base.what): the whole manifest went")
                }
                if output.json { return try printJSON(report) }
                let move = outcome.move
                print(
                    "\(move.image)/\(move.branch)@\(move.version): sent \(outcome.sentObjects) of \(outcome.objects) objects "
                        + "(\(outcome.sentBytes) bytes; \(outcome.requestBytes) bytes of requests with the manifest); "
                        + (move.previous == move.version
                            ? "the branch already named this version"
                            : "\(move.summary.text) since \(move.previous.map { String($0.prefix(12)) } ?? "nothing")")
                        + "; " + ProgressText.seconds(report.seconds ?? 0))
            }
        }

        func makeClient() throws -> ProvisionerClient {
            let url = try server ?? Self.serverFromCommandLine()
            do {
                let tls = try ClientTLS(
                    caFile: ca ?? tlsDir! + "/ca.pem", certificateFile: cert ?? tlsDir! + "/admin.pem",
                    keyFile: key ?? tlsDir! + "/admin-key.pem")
                return try ProvisionerClient(
                    ClientConfiguration(
                        servers: [try Endpoint(parsing: url)], tls: tls, readTimeout: .seconds(300),
                        userAgent: "provisioner-agent capture"))
            } catch {
                throw AgentFailure(message: "\(url): \(error)", status: .badInput)
            }
        }

        /// The first `provisioner.server=` URL of /proc/cmdline (the server this node booted from).
        static func serverFromCommandLine() throws -> String {
            let text = (try? readTextFile("/proc/cmdline", what: "the kernel command line")) ?? ""
            for word in KernelCommandLine.words(text) {
                let (key, value) = KernelCommandLine.split(word)
                if key == "provisioner.server", let first = value?.split(separator: ",").first { return String(first) }
            }
            throw AgentFailure(
                message: "--server: not given, and the kernel command line has no provisioner.server=", status: .badInput)
        }

        /// The manifest to send the new one as a delta from (rows B1-B4): one the node keeps whose
        /// version the server has. Unreadable or damaged ones are skipped (the whole manifest goes).
        static func deltaBase(root: String, target: String) -> (base: ImagePublisher.DeltaBase, what: String)? {
            let prefix = root == "/" ? "/" : root + "/"
            var kept: [KeptManifest] = []
            for kind in [KeptManifest.Kind.lastCapture, .applied] {
                let files = KeptManifest.files(kind)
                guard let data = FileManager.default.contents(atPath: prefix + files.record),
                    let (image, version) = KeptManifest.parseRecord(String(decoding: data, as: UTF8.self))
                else { continue }
                kept.append(KeptManifest(kind: kind, image: image, version: version))
            }
            guard let (chosen, rule) = KeptManifest.choose(for: target, from: kept),
                let stored = FileManager.default.contents(atPath: prefix + KeptManifest.files(chosen.kind).manifest),
                let bytes = try? Array(stored).withUnsafeBytes({
                    try Zstd.decompress($0, expectedSize: nil, subject: "the kept manifest")
                }),
                ObjectHash.of(bytes) == chosen.version
            else { return nil }
            return (
                ImagePublisher.DeltaBase(image: chosen.image, version: chosen.version, manifest: bytes),
                "\(chosen.kind.rawValue), \(chosen.image)@\(chosen.version.hex.prefix(12)) (\(rule))"
            )
        }

        /// What the last image sync left (docs/images.md, "Capturing a node"): the manifest of the
        /// version it applied, and the time it recorded that (the record's mtime, written after the
        /// sync's last write). Nil when either is missing or the manifest is not that version's.
        static func knownContent(root: String) -> KnownContent? {
            let prefix = root == "/" ? "/" : root + "/"
            let files = KeptManifest.files(.applied)
            var st = stat()
            guard let data = FileManager.default.contents(atPath: prefix + files.record),
                let (image, version) = KeptManifest.parseRecord(String(decoding: data, as: UTF8.self)),
                lstat(prefix + files.record, &st) == 0,
                let stored = FileManager.default.contents(atPath: prefix + files.manifest),
                let bytes = try? Array(stored).withUnsafeBytes({
                    try Zstd.decompress($0, expectedSize: nil, subject: "the kept manifest")
                }),
                ObjectHash.of(bytes) == version,
                let manifest = try? ManifestCodec.decode(bytes)
            else { return nil }
            return KnownContent(
                manifest: manifest, before: (Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec)),
                what: "\(image)@\(version.hex.prefix(12)) was applied")
        }

        /// Keeps the captured version's manifest in the state directory for the next capture's delta
        /// (B1). Best effort: a root that cannot be written only makes the next capture send more.
        static func keep(root: String, image: String, version: String, manifest: [UInt8], say: (String) -> Void) {
            guard let id = ObjectHash(hex: version), ObjectHash.of(manifest) == id else { return }
            let prefix = root == "/" ? "/" : root + "/"
            let files = KeptManifest.files(.lastCapture)
            do {
                try writeFileIfDifferent(prefix + files.manifest, Zstd.compress(manifest, level: 9), mode: 0o600)
                try writeFileIfDifferent(
                    prefix + files.record, Array(KeptManifest.record(image: image, version: id).utf8), mode: 0o600)
            } catch {
                say("capture: warning: the manifest was not kept for the next capture's delta: \(error)")
            }
        }

        /// The node-owned paths: the record of the last boot, else the fixed ones.
        static func nodeOwned(root: String) -> (paths: [String], source: String) {
            let path = (root == "/" ? "" : root) + "/" + NodeOwnedRecord.path
            if let data = FileManager.default.contents(atPath: path) {
                let paths = NodeOwnedRecord.decode(String(decoding: data, as: UTF8.self))
                return (paths, "\(paths.count) recorded by the last boot in \(path)")
            }
            return (
                BootStateMachine.nodeOwnedPaths,
                "no record at \(path) (not booted by this agent): the fixed \(BootStateMachine.nodeOwnedPaths.count)"
            )
        }
    }
}

/// What `capture --json` prints.
struct CaptureReport: Encodable {
    var image: String
    var branch: String?
    var root: String
    var entries: Int
    var contentBytes: UInt64
    var manifestBytes: Int
    var hashSeconds: Double
    var scope: [String]
    var nodeOwnedFrom: String
    var deltaFrom: String?
    var move: BranchMove?
    var objects: Int?
    var sentObjects: Int?
    var sentBytes: UInt64?
    var requestBytes: UInt64?
    var seconds: Double?
}
