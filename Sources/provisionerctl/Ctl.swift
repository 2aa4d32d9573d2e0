import ArgumentParser

/// The admin's command: certificates, nodes, sessions, images, audit.
///
/// Each group of subcommands lives in its own file as an extension of `Ctl`;
/// this list is the only place that names them all.
@main
struct Ctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provisionerctl",
        abstract: "Administers a provisioner cluster: certificates, nodes, boot sessions and images.",
        subcommands: [
            CA.self, Nodes.self, Profiles.self, Overlays.self, Secrets.self, Sessions.self, Audit.self, Image.self,
            Certs.self, Admins.self, Configure.self,
        ]
    )
}
