import ArgumentParser
import Foundation
import ProvisionerAPI
import ProvisionerCore

extension Ctl.Image {
    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Builds an image from a distribution with mmdebstrap and publishes it.",
            discussion: """
                Debian-family only here (--distro debian:SUITE or ubuntu:SUITE), from the mirror this \\
                machine's apt uses unless --mirror says otherwise. The root gets systemd, udev, \\
                iproute2, mdadm and lvm2, the --packages, and the --kernel package; it is published \\
                like image import. For RHEL/Rocky, build the root with dnf --installroot and import it \\
                (docs/images.md). Needs root.
                """)

        @Argument(help: "NAME or NAME/BRANCH.") var name: String
        @Option(help: "FAMILY:SUITE, e.g. debian:bookworm.") var distro: String
        @Option(parsing: .upToNextOption, help: "More packages (space or comma separated).") var packages: [String] = []
        @Option(help: "A kernel package, e.g. linux-image-amd64 (the image then boots its own kernel).") var kernel: String?
        @Option(help: "The distribution mirror (default: this machine's apt sources).") var mirror: String?
        @Option(help: "Keep the built root here instead of a temporary directory.") var keep: String?
        @Option(help: "Where the tree is chunked before it is sent (default: a temporary directory).") var staging: String?
        @OptionGroup var server: ServerOptions

        func run() async throws {
            try await reporting {
                let ref = try parseRef(name)
                guard ref.version == nil else { throw CtlFailure("build makes a version; name NAME or NAME/BRANCH") }
                let mirror = try self.mirror ?? Self.aptMirror()
                let plan: ImageBuildPlan
                do {
                    plan = try ImageBuildPlan(
                        distro: distro, packages: packages.flatMap { $0.split(separator: ",").map(String.init) },
                        kernel: kernel, mirror: mirror)
                } catch let error as ConfigError {
                    throw CtlFailure(error.description)
                }
                let root = keep ?? NSTemporaryDirectory() + "provisionerctl-build-" + UUID().uuidString
                defer { if keep == nil { try? FileManager.default.removeItem(atPath: root) } }
                let command = plan.mmdebstrap(into: root)
                if !server.json { print("build: \(command.joined(separator: " "))") }
                let started = Date()
                try Self.run(command)
                // Each node gets its own machine id on its first install (docs/boot.md).
                for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
                    try? FileManager.default.removeItem(atPath: root + path)
                }
                if !server.json {
                    print("build: \(plan.family.rawValue):\(plan.suite) root made in \(Int(Date().timeIntervalSince(started))) s")
                }
                try await publishTree(root, isDirectory: true, ref: ref, staging: staging, server: server)
            }
        }

        static func aptMirror() throws -> String {
            let dir = "/etc/apt/sources.list.d"
            let deb822 = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
                .filter { $0.hasSuffix(".sources") }
                .compactMap { try? String(contentsOfFile: dir + "/" + $0, encoding: .utf8) }
            let list = try? String(contentsOfFile: "/etc/apt/sources.list", encoding: .utf8)
            guard let mirror = ImageBuildPlan.aptMirror(deb822: deb822, sourcesList: list) else {
                throw CtlFailure("no Debian mirror in /etc/apt/sources.list{,.d}; give one with --mirror")
            }
            return mirror
        }

        /// Runs a command with its output on ours; its failure is ours, with its exit status.
        static func run(_ command: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = command
            do {
                try process.run()
            } catch {
                throw CtlFailure("starting \(command[0]): \(error)")
            }
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw CtlFailure("\(command[0]) failed (exit \(process.terminationStatus)); nothing was published")
            }
        }
    }
}
