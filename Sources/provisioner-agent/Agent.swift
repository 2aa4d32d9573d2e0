import ArgumentParser
import Foundation
import ProvisionerCore
import ProvisionerSystem

@main
struct Agent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provisioner-agent",
        abstract: "Makes this node's disks and OS match what the provisioning server says.",
        subcommands: [Disks.self, Match.self]
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
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
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
            FileHandle.standardError.write(Data("provisioner-agent: \(failure.message)\n".utf8))
            throw ExitCode(failure.exitCode)
        } catch let error as SystemError {
            FileHandle.standardError.write(Data("provisioner-agent: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("provisioner-agent: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

func readTextFile(_ path: String, what: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
        throw AgentFailure(message: "\(what) \(path) \(reason)", exitCode: 2)
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw AgentFailure(message: "\(what) \(path) is not UTF-8 text", exitCode: 2)
    }
    return text
}
