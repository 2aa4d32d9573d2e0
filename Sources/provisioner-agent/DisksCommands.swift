import ArgumentParser
import ProvisionerBoot
import ProvisionerCore
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension Agent {
    struct Disks: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List this machine's whole disks and what is on them.",
            discussion: """
                Reads sysfs, /dev/disk and libblkid. Partitions are listed under their disk; \
                ram, loop, zram, md and dm devices only with --all.
                """
        )

        @OptionGroup var output: OutputOptions

        @Flag(help: "Also list ram, loop, zram, md and dm devices.")
        var all = false

        @Option(
            help: ArgumentHelp(
                "Keep the reading in this file for the boot instead of printing it (provisioner-inventory.service).",
                valueName: "path"))
        var save: String?

        func validate() throws {
            if save != nil && (all || output.json) { throw ValidationError("--save takes neither --all nor --json") }
        }

        func run() throws {
            if let save {
                // Read while the initrd waits for the network; the boot checks it is still true.
                let console = Console()
                let started = monotonicSeconds()
                do {
                    let saved = try DiskInventoryReader().save(to: save)
                    console.say(
                        "disks: \(saved.inventory.disks.count) disk(s) read in "
                            + "\(ProgressText.seconds(monotonicSeconds() - started)) while the network comes up")
                } catch {
                    console.say("disks: not read ahead of the boot: \(error)")
                    throw ExitCode(ExitStatus.failure.rawValue)
                }
                return
            }
            try reporting {
                let inventory = try DiskInventoryReader(includeVirtual: all).read()
                if output.json {
                    try printJSON(inventory)
                } else {
                    print(Self.table(inventory))
                }
            }
        }

        static func table(_ inventory: Inventory) -> String {
            var table = TextTable(["NAME", "TRANSPORT", "KIND", "SIZE", "VENDOR", "MODEL", "SERIAL", "CONTENT"])
            for disk in inventory.disks {
                table.add([
                    disk.name, disk.transport.rawValue, disk.rotational ? "hdd" : "ssd",
                    ByteSize(bytes: disk.sizeBytes).description, disk.vendor ?? "-", disk.model ?? "-",
                    disk.serial ?? "-", disk.contentSummary,
                ])
                for p in disk.partitions {
                    let content = p.signatures.map { s in s.label.map { "\(s.type) \"\($0)\"" } ?? s.type }
                    var facts = content.isEmpty ? ["no signature"] : content
                    if let label = p.label { facts.insert("name \"\(label)\"", at: 0) }
                    if !p.mountpoints.isEmpty { facts.append("on \(p.mountpoints.joined(separator: ","))") }
                    if !p.holders.isEmpty { facts.append("held by \(p.holders.joined(separator: ","))") }
                    table.add([
                        "  \(p.name ?? "#\(p.number)")", "", "", ByteSize(bytes: p.sizeBytes).description, "", "", "",
                        facts.joined(separator: "; "),
                    ])
                }
            }
            if inventory.disks.isEmpty { return "no disks found" }
            return table.render()
        }
    }

    struct Match: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show which real disk each logical disk of a layout maps to.",
            discussion: """
                Uses this machine's disks, or a saved `disks --json` output with --inventory, so a layout \
                can be checked against a captured machine. Exits 3 when the layout does not map.
                """
        )

        @Option(help: "The layout file (YAML or JSON).")
        var layout: String

        @Option(help: "A saved `provisioner-agent disks --json` output to match against instead of this machine.")
        var inventory: String?

        @OptionGroup var output: OutputOptions

        struct Result: Encodable {
            var assignments: [String: String]
        }

        func run() throws {
            try reporting {
                let layout = try DiskLayout(parsing: try readTextFile(self.layout, what: "layout"), source: self.layout)
                let machine: Inventory
                if let path = inventory {
                    let text = try readTextFile(path, what: "inventory")
                    do {
                        machine = try JSONDecoder().decode(Inventory.self, from: Data(text.utf8))
                    } catch {
                        throw AgentFailure(
                            message: "inventory \(path) is not a `disks --json` output: \(error)", status: .badInput)
                    }
                } else {
                    machine = try DiskInventoryReader().read()
                }
                let assignment = try DiskMatcher.match(layout.disks, inventory: machine)
                if output.json {
                    try printJSON(Result(assignments: assignment.paths))
                } else {
                    var table = TextTable(["LOGICAL", "DISK", "TRANSPORT", "SIZE", "MODEL", "SERIAL", "BY-PATH"])
                    for name in assignment.names {
                        let d = assignment.disks[name]!
                        table.add([
                            name, d.path, d.transport.rawValue, ByteSize(bytes: d.sizeBytes).description,
                            d.model ?? "-",
                            d.serial ?? "-", d.byPath.map { String($0.split(separator: "/").last ?? "") } ?? "-",
                        ])
                    }
                    print(table.render())
                }
            }
        }
    }
}
