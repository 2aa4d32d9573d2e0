import ArgumentParser
import ProvisionerBoot
import ProvisionerSystem

extension Agent {
    struct Modules: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load the kernel modules provisioner.modules= names (provisioner-modules.service).",
            discussion: """
                The server names the modules a node's layout needs (MD, device-mapper, its filesystems) \
                on the kernel command line; the initrd loads them with this while it waits for the \
                network, so that no mount of the boot waits for one (docs/boot.md). A module that \
                cannot be loaded is left to the mount that needs it, which reports it: this exits 0.
                """
        )

        @Option(help: "Read the kernel command line from this file instead of /proc/cmdline.")
        var cmdline = "/proc/cmdline"

        func run() throws {
            let console = Console()
            let settings = try console.bootSettings(from: cmdline)
            guard !settings.modules.isEmpty else { return }
            let start = monotonicSeconds()
            let result: CommandResult
            do { result = try Command.run(["modprobe", "-q", "-a"] + settings.modules) } catch {
                console.say("modules: not loaded (\(error)); each mount loads what it needs itself")
                return
            }
            let took = ProgressText.seconds(monotonicSeconds() - start)
            if result.status == 0 {
                console.say("modules: \(settings.modules.joined(separator: " ")) loaded in \(took)")
            } else {
                console.say(
                    "modules: modprobe exited with status \(result.status) after \(took) (\(result.lastMessage)); "
                        + "each mount loads what it needs itself")
            }
        }
    }
}
