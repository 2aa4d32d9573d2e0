import ArgumentParser
import ProvisionerImage
import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#endif

extension VerifyLevel: ExpressibleByArgument {}

extension Agent {
    struct Sync: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a directory identical to an image version, moving only what differs.",
            discussion: """
                SOURCE is an image store directory or https:// URLs of servers and mirrors, \
                comma-separated (one is picked at random; the others are tried if it fails). \
                The applied version is recorded in DIR/.provisioner-state last. See docs/image-format.md.
                """
        )

        @Option(help: "Image store directory, or comma-separated https:// URLs.")
        var source: String

        @Option(help: "NAME or NAME@VERSION (a 64-hex version id or latest).")
        var image: String

        @Option(help: "The directory to make identical to the image.")
        var to: String

        @Option(help: "stamp: trust the recorded version; metadata: compare every entry; content: also rehash files.")
        var verify: VerifyLevel = .metadata

        @Option(name: .customLong("preserve"), help: "A path (relative to DIR) the node owns; repeatable.")
        var preserve: [String] = []

        @Option(help: "CA certificate for https:// sources.")
        var ca = ImageCredentials().ca

        @Option(help: "Client certificate for https:// sources.")
        var cert = ImageCredentials().certificate

        @Option(help: "Client key for https:// sources.")
        var key = ImageCredentials().key

        @Option(help: "Threads for writing.")
        var threads: Int = 2

        @Option(help: "Threads for walking the target (more than the cores help on a cold cache).")
        var scanThreads: Int = SyncOptions().scanThreads

        @Option(help: .hidden)
        var interruptAfter: Int?

        @OptionGroup var output: OutputOptions

        func validate() throws {
            for p in preserve {
                let bytes = Array(p.utf8.drop(while: { $0 == UInt8(ascii: "/") }))
                if let problem = PathRules.problem(bytes) {
                    throw ValidationError("--preserve \(p): \(problem)")
                }
            }
            guard threads >= 1 && threads <= 64 else { throw ValidationError("--threads must be 1 to 64") }
            guard scanThreads >= 1 && scanThreads <= 64 else { throw ValidationError("--scan-threads must be 1 to 64") }
        }

        func run() throws {
            try reporting {
                let (name, version) = Self.split(image)
                let source = try makeSource(
                    self.source, credentials: ImageCredentials(ca: ca, certificate: cert, key: key))
                var options = SyncOptions()
                options.verify = verify
                options.threads = threads
                options.scanThreads = scanThreads
                options.interruptAfter = interruptAfter
                options.warnings = printWarning
                options.preserved = preserve.map { Array($0.utf8.drop(while: { $0 == UInt8(ascii: "/") })) }
                let started = monotonicSeconds()
                let report = try SyncEngine(target: to, source: source, options: options).run(
                    image: name, version: version)
                let seconds = monotonicSeconds() - started
                if output.json {
                    try printJSON(SyncSummary(report, seconds: seconds))
                } else {
                    print(report.summary(seconds: seconds))
                }
            }
        }

        static func split(_ image: String) -> (String, String) {
            guard let at = image.firstIndex(of: "@") else { return (image, "latest") }
            return (String(image[..<at]), String(image[image.index(after: at)...]))
        }
    }
}

/// The sync's result as JSON.
struct SyncSummary: Encodable {
    var image: String
    var version: String
    var upToDate: Bool
    var verify: String
    var recovered: Bool
    var entries: Int
    var filesWritten: Int
    var directoriesCreated: Int
    var othersCreated: Int
    var linksMade: Int
    var metadataFixed: Int
    var deleted: Int
    var replaced: Int
    var chunksFetched: Int
    var chunksReused: Int
    var objectsRefetched: Int
    var bytesReceived: Int
    var bytesWritten: UInt64
    var seconds: Double
    var conflicts: [String]
    var phases: [String: Double]

    init(_ r: SyncReport, seconds: Double) {
        image = r.image
        version = r.version.hex
        upToDate = r.upToDate
        verify = r.verify.rawValue
        recovered = r.recovered
        entries = r.entries
        filesWritten = r.filesWritten
        directoriesCreated = r.directoriesCreated
        othersCreated = r.othersCreated
        linksMade = r.linksMade
        metadataFixed = r.metadataFixed
        deleted = r.deleted
        replaced = r.removed
        chunksFetched = r.chunksFetched
        chunksReused = r.chunksReused
        objectsRefetched = r.objectsRefetched
        bytesReceived = r.bytesReceived
        bytesWritten = r.bytesWritten
        self.seconds = seconds
        conflicts = r.conflicts
        phases = Dictionary(r.phases, uniquingKeysWith: +)
    }
}

/// A source from the --source argument: a store directory, or comma-separated URLs.
func makeSource(_ text: String, credentials: ImageCredentials) throws -> any ObjectSource {
    let parts = text.split(separator: ",").map(String.init)
    var sources: [any ObjectSource] = []
    for part in parts {
        if part.hasPrefix("https://") || part.hasPrefix("http://") {
            sources.append(try makeHTTPSource(url: part, credentials: credentials))
        } else {
            sources.append(LocalStoreSource(path: part))
        }
    }
    guard !sources.isEmpty else { throw AgentFailure(message: "--source is empty", status: .badInput) }
    return MirrorSource(sources, warnings: printWarning)
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
