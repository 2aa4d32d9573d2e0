import ArgumentParser
import ProvisionerCore
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
        subcommands: [Disks.self, Match.self, Plan.self, Apply.self, Layout.self, Sync.self, Boot.self]
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

/// A failure the agent reports in one readable line and a non-zero exit status.
struct AgentFailure: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32 = 1
    var description: String { message }
}

extension ParsableCommand {
    /// Runs `body`, turning our errors into a message on stderr and an exit status.
    func reporting(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let failure as AgentFailure {
            printError(failure.message)
            throw ExitCode(failure.exitCode)
        } catch let error as SystemError {
            printError("\(error)")
            throw ExitCode(1)
        } catch let error as ConfigError {
            printError("\(error)")
            throw ExitCode(2)
        }
    }
}

/// Writes one message to stderr, prefixed with the program's name.
func printError(_ message: String) {
    let line = Array("provisioner-agent: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

func readTextFile(_ path: String, what: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
        throw AgentFailure(message: "\(what) \(path) \(reason)", exitCode: 2)
    }
    guard let text = String(validating: data, as: UTF8.self) else {
        throw AgentFailure(message: "\(what) \(path) is not UTF-8 text", exitCode: 2)
    }
    return text
}
