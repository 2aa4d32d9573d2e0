import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerCore

extension Ctl {
    /// `provisionerctl sessions list|show|watch`: boot sessions and their events.
    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sessions", abstract: "Shows boot sessions and follows a node's boot live.",
            subcommands: [List.self, Show.self, Watch.self])
    }

    /// `provisionerctl audit`: every admin change.
    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "audit", abstract: "Lists admin changes: who, when, from where, what, before and after.")
        @OptionGroup var server: ServerOptions
        @Option(name: .long, help: "Only changes of this subject (node/NAME).") var subject: String?
        @Option(name: .long, help: "At most this many, newest last.") var limit = 100
        @Flag(name: .long, help: "Also print the before and after JSON.") var verbose = false

        func run() async throws {
            try await reporting {
                var path = "audit?limit=\(limit)"
                if let subject { path += "&subject=\(pathComponent(subject))" }
                let entries = try await server.client().get(path, as: [AuditEntry].self)
                if server.json { return try printJSON(entries) }
                var table = TextTable(["ID", "TIME", "WHO", "FROM", "ACTION", "SUBJECT"])
                for e in entries {
                    table.add([String(e.id), e.time, e.actor, e.remoteAddress ?? "-", e.action, e.subject])
                }
                print(table.render())
                if verbose {
                    for e in entries {
                        print(
                            "\n#\(e.id) \(e.action) \(e.subject)\n  before: \(e.before ?? "-")\n  after:  \(e.after ?? "-")"
                        )
                    }
                }
            }
        }
    }
}

/// One event as a line; what the agent wrote is shown `terminalSafe` (`--json` keeps it exact).
func eventLine(_ e: StoredEvent) -> String {
    var line = "\(e.time) [\(e.event.level.rawValue)] \(e.event.phase.terminalSafe)"
    if let step = e.event.step { line += "/\(step.terminalSafe)" }
    if let p = e.event.progress, p.isFinite { line += " \(Int((min(max(p, 0), 1) * 100).rounded()))%" }
    line += ": \(e.event.message.terminalSafe)"
    if let error = e.event.error { line += " — \(error.terminalSafe)" }
    return line
}

extension Ctl.Sessions {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists boot sessions, newest first.")
        @OptionGroup var server: ServerOptions
        @Option(name: .long, help: "Only this node's sessions.") var node: String?
        @Option(name: .long, help: "At most this many.") var limit = 50

        func run() async throws {
            try await reporting {
                var path = "sessions?limit=\(limit)"
                if let node { path += "&node=\(pathComponent(node))" }
                let sessions = try await server.client().get(path, as: [SessionSummary].self)
                if server.json { return try printJSON(sessions) }
                var table = TextTable(["SESSION", "NODE", "STATE", "OPENED", "UPDATED", "EVENTS", "LAST"])
                for s in sessions {
                    table.add([
                        s.id, s.node ?? "-", s.state.rawValue, s.openedAt, s.updatedAt, String(s.eventCount),
                        [s.lastPhase, s.lastMessage].compactMap { $0 }.joined(separator: ": "),
                    ])
                }
                print(table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows one session: facts and every event.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "Session id.") var id: String

        func run() async throws {
            try await reporting {
                let detail = try await server.client().get("sessions/\(pathComponent(id))", as: SessionDetail.self)
                if server.json { return try printJSON(detail) }
                let s = detail.session
                print(
                    "session \(s.id): node \(s.node ?? "-"), \(s.state.rawValue), opened \(s.openedAt) from \(s.remoteAddress ?? "-")"
                )
                print("MACs: \(s.macs.joined(separator: ", "))")
                let dmi = detail.facts.dmi
                let shown = [dmi.vendor, dmi.product, dmi.serial, dmi.uuid].map { $0?.terminalSafe ?? "-" }
                print("DMI: vendor \(shown[0]), product \(shown[1]), serial \(shown[2]), uuid \(shown[3])")
                for e in detail.events { print(eventLine(e)) }
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Follows a node's current boot session live, until it ends.",
            discussion:
                "Prints the events of the node's newest session as they arrive (long polls: the server answers as soon as there is news); waits for a session to start when the newest one has already ended and --next is given."
        )
        @OptionGroup var server: ServerOptions
        @Argument(help: "Node name.") var node: String
        @Flag(name: .long, help: "Wait for the node's next session instead of showing a finished one.") var next = false
        @Option(name: .long, help: "Seconds between polls while waiting for a session (--next).") var interval: Double =
            1
        @Option(name: .long, help: "Seconds one long poll for events may wait (at most 30).") var wait = 20

        func run() async throws {
            try await reporting {
                let client = try server.client()
                let path = "sessions?limit=1&node=\(pathComponent(node))"
                var session = try await client.get(path, as: [SessionSummary].self).first
                if next {
                    let finishedID = session.flatMap { $0.state.isFinished ? $0.id : nil }
                    while session == nil || session?.id == finishedID {
                        try await Task.sleep(for: .seconds(interval))
                        session = try await client.get(path, as: [SessionSummary].self).first
                    }
                }
                guard let current = session else { throw CtlFailure("node \(node) has no boot session") }
                if !server.json {
                    print("session \(current.id) (\(current.state.rawValue)), opened \(current.openedAt)")
                }
                var after = 0
                while true {
                    let detail = try await client.get(
                        "sessions/\(pathComponent(current.id))?after=\(after)&wait=\(wait)", as: SessionDetail.self)
                    for e in detail.events {
                        if server.json {
                            let encoder = JSONEncoder()
                            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                            print(String(decoding: try encoder.encode(e), as: UTF8.self))
                        } else {
                            print(eventLine(e))
                        }
                        after = e.seq
                    }
                    if detail.session.state.isFinished && detail.events.isEmpty {
                        if !server.json { print("session \(current.id) \(detail.session.state.rawValue)") }
                        return
                    }
                }
            }
        }
    }
}
