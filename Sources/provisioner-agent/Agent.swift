import ArgumentParser
import ProvisionerCore
import ProvisionerImage
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Agent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provisioner-agent",
        abstract: "Makes this node's disks and OS match what the provisioning server says.",
        subcommands: [Disks.self, Match.self, Plan.self, Apply.self, Layout.self, Sync.self, Capture.self, Boot.self, Modules.self]
    )
}

/// Flags shared by every command that prints results.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false
}

/// Prints a value as stable, pretty JSON on stdout.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    print(String(decoding: data, as: UTF8.self))
}

/// A failure the agent reports in one readable line and the exit status of its kind.
struct AgentFailure: Error, CustomStringConvertible {
    var message: String
    var status: ExitStatus = .failure
    var description: String { message }
}

/// The agent's exit statuses: the one place where errors become them (docs/architecture.md,
/// "Errors", lists them).
enum ExitStatus: Int32, CaseIterable {
    /// A system failure (a device, a tool, the network), or the boot gave up.
    case failure = 1
    /// Bad input: a layout, inventory, kernel command line or argument that does not read.
    case badInput = 2
    /// The layout does not map onto this machine's disks.
    case unmatched = 3
    /// The layout plan is refused: nothing was written.
    case refused = 4
    /// The image could not be fetched or read from its source (`sync`).
    case imageSource = 5
    /// The sync stopped where the test switch `--interrupt-after` said.
    case interrupted = 9

    /// The status and the one line to print for an error.
    static func of(_ error: any Error) -> (ExitStatus, String) {
        switch error {
        case let failure as AgentFailure: (failure.status, failure.message)
        case let error as ConfigError: (.badInput, "\(error)")
        case let error as MatchError: (.unmatched, "the layout does not map onto this machine's disks:\n\(error)")
        case let error as LayoutRefused: (.refused, "\(error)")
        case let error as SourceError: (.imageSource, "\(error)")
        case let error as ManifestError: (.imageSource, "\(error)")
        case let error as CompressionError: (.imageSource, "\(error)")
        case let error as PackError: (.imageSource, "\(error)")
        case let error as SyncInterrupted: (.interrupted, "\(error)")
        default: (.failure, "\(error)")
        }
    }
}

extension ParsableCommand {
    /// Runs `body`, turning our errors into a message on stderr and an exit status.
    func reporting(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            let (status, message) = ExitStatus.of(error)
            printError(message)
            throw ExitCode(status.rawValue)
        }
    }
}

/// Writes one message to stderr, prefixed with the program's name.
func printError(_ message: String) {
    let line = Array("provisioner-agent: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// The image library's warnings on the command line: stderr, since stdout is for results.
@Sendable func printWarning(_ message: String) { printError("warning: \(message)") }

func readTextFile(_ path: String, what: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
        throw AgentFailure(message: "\(what) \(path) \(reason)", status: .badInput)
    }
    guard let text = String(validating: data, as: UTF8.self) else {
        throw AgentFailure(message: "\(what) \(path) is not UTF-8 text", status: .badInput)
    }
    return text
}
