import ArgumentParser
import Foundation
import Logging
import ProvisionerCore
import ProvisionerServer

/// Reads the configuration and flags, then runs the server (everything else is in ProvisionerServer).
@main
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provisioner-server",
        abstract: "Serves nodes, boot sessions, files and images over HTTPS with client certificates.",
        discussion:
            "With no options: state in /var/lib/provisioner, HTTPS on 0.0.0.0:8443, iPXE over HTTP on 0.0.0.0:8080.")

    @Option(name: .long, help: "YAML configuration file (server/provisioner-server.yaml shows every field).")
    var config: String?

    @Option(name: .long, help: "State directory (database, files, images, tls); overrides the config.")
    var stateDir: String?

    @Option(name: .long, help: "HTTPS listen address HOST:PORT; overrides the config.")
    var listen: String?

    @Option(name: .long, help: "Plain-HTTP iPXE listen address HOST:PORT, or off; overrides the config.")
    var bootListen: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        var settings = ServerConfig()
        if let config {
            guard let data = FileManager.default.contents(atPath: config),
                let text = String(data: data, encoding: .utf8)
            else {
                throw ValidationError("cannot read the configuration file \(config)")
            }
            do {
                settings = try ServerConfig.parse(text, source: config)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        if let stateDir { settings.stateDir = stateDir }
        do {
            var overrides = ""
            if let listen { overrides += "listen: \"\(listen)\"\n" }
            if let bootListen { overrides += "bootListen: \"\(bootListen)\"\n" }
            if !overrides.isEmpty {
                let parsed = try ServerConfig.parse(overrides, source: "command line")
                if listen != nil { (settings.listenHost, settings.listenPort) = (parsed.listenHost, parsed.listenPort) }
                if bootListen != nil {
                    (settings.bootListenHost, settings.bootListenPort) = (parsed.bootListenHost, parsed.bootListenPort)
                }
            }
        } catch {
            throw ValidationError("\(error)")
        }
        var logger = Logger(label: "provisioner-server")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let server: ServerInstance
        do {
            let log = logger
            server = try await buildApplication(settings, logger: logger) { listener, port in
                log.info("listening", metadata: ["listener": "\(listener.rawValue)", "port": "\(port)"])
            }
        } catch {
            FileHandle.standardError.write(Data("provisioner-server: \(error)\n".utf8))
            throw ExitCode(1)
        }
        try await server.run()
    }
}
