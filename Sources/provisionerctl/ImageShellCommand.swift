import ArgumentParser
import Foundation

extension Ctl.Image {
    struct Shell: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "An interactive shell in a working copy of a branch's head; on exit 0 publishes the result.",
            discussion: """
                As image exec, with a shell instead of one command: the head of NAME (its live branch) or \\
                NAME/BRANCH is fetched into a working copy and a shell runs in it, in systemd-nspawn when \\
                it is installed (no machine registration, the host's DNS bound in, the image's clock and \\
                journal settings untouched) or else chrooted with /proc, /sys, /dev and the host's DNS in \\
                a private mount namespace. When the shell exits 0 (`exit`, or the end of its input) the \\
                copy is published on the same branch with a summary of what changed; `exit 1` (or any \\
                failure) publishes nothing. Its input may be a script: \\
                printf 'apt-get install -y vim\\\\n' | provisionerctl image shell debian/test. Needs root.
                """)

        enum Runner: String, ExpressibleByArgument, CaseIterable {
            case auto, nspawn, chroot
        }

        @Argument(help: "NAME or NAME/BRANCH.") var name: String
        @Option(help: "auto (systemd-nspawn when installed, else chroot), nspawn or chroot.") var with: Runner = .auto
        @Option(help: "The shell, a path inside the image (default: /bin/bash if the image has it, else /bin/sh).")
        var shell: String?
        @Option(help: "Keep the working copy and objects here (default: a temporary directory).") var staging: String?
        @OptionGroup var server: ServerOptions

        static let nspawnPath = "/usr/bin/systemd-nspawn"

        func validate() throws {
            if with == .nspawn && !FileManager.default.isExecutableFile(atPath: Self.nspawnPath) {
                throw ValidationError("--with nspawn: \(Self.nspawnPath) is not installed (apt-get install systemd-container)")
            }
            if let shell, !shell.hasPrefix("/") { throw ValidationError("--shell \(shell): a path inside the image, starting with /") }
        }

        func run() async throws {
            try await reporting {
                let useNspawn = with == .nspawn || (with == .auto && FileManager.default.isExecutableFile(atPath: Self.nspawnPath))
                try await WorkingCopy.edit(
                    name, verb: "shell", staging: staging, server: server,
                    what: "the shell (\(useNspawn ? "systemd-nspawn" : "chroot"))"
                ) { work in
                    let program = try Self.shell(in: work, asked: shell)
                    return useNspawn ? try Self.runNspawn(work, [program]) : try Exec.runChrooted(work, [program])
                }
            }
        }

        /// The shell to start: the one asked for, else bash, else sh; it must exist in the copy.
        static func shell(in root: String, asked: String?) throws -> String {
            for candidate in asked.map({ [$0] }) ?? ["/bin/bash", "/bin/sh"] {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: root + candidate, isDirectory: &isDirectory), !isDirectory.boolValue {
                    return candidate
                }
            }
            throw CtlFailure("the image has no \(asked ?? "/bin/bash or /bin/sh") to run (in \(root))")
        }

        /// Runs `command` in a systemd-nspawn container on `root`: no machine registration and no scope
        /// unit of its own (`--keep-unit`: it also works where systemd is not PID 1), the host's
        /// resolv.conf bound over the image's only while it runs, the image's time zone and journal left
        /// alone, a pipe rather than a terminal when the input is not one. Returns its exit status.
        static func runNspawn(_ root: String, _ command: [String]) throws -> Int32 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: nspawnPath)
            process.arguments =
                [
                    "--quiet", "--directory", root, "--register=no", "--keep-unit", "--resolv-conf=bind-host", "--timezone=off",
                    "--link-journal=no", "--console=autopipe", "--setenv=DEBIAN_FRONTEND=noninteractive", "--",
                ] + command
            do {
                try process.run()
            } catch {
                throw CtlFailure("starting \(nspawnPath) for \(root): \(error)")
            }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }
}
