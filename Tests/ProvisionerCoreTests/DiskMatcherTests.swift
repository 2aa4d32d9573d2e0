import Foundation
import Testing

@testable import ProvisionerCore

/// Disks as a machine might report them.
enum Fixture {
    static func nvme(_ name: String, serial: String?, size: UInt64 = 1_000_204_886_016, slot: Int = 1) -> Disk {
        Disk(
            name: name, path: "/dev/\(name)", transport: .nvme, rotational: false, vendor: "Samsung",
            model: "SAMSUNG MZQL21T9HCJR", serial: serial, sizeBytes: size,
            byId: serial.map { ["/dev/disk/by-id/nvme-SAMSUNG_MZQL21T9HCJR_\($0)"] } ?? [],
            byPath: "/dev/disk/by-path/pci-0000:0\(slot):00.0-nvme-1")
    }

    static func sata(_ name: String, serial: String?, size: UInt64 = 4_000_787_030_016, rotational: Bool = true) -> Disk
    {
        Disk(
            name: name, path: "/dev/\(name)", transport: .sata, rotational: rotational, vendor: "ATA",
            model: "ST4000NM000A", serial: serial, sizeBytes: size,
            byId: serial.map { ["/dev/disk/by-id/ata-ST4000NM000A_\($0)"] } ?? [],
            byPath: "/dev/disk/by-path/pci-0000:00:17.0-ata-1")
    }

    static func layout(_ yaml: String) throws -> [LogicalDisk] {
        try DiskLayout(parsing: yaml, source: "test.yaml").disks
    }

    static let mirror = """
        disks:
          disk0:
            match: { type: nvme, size: 1TB, tolerance: 5% }
          disk1:
            match: { type: nvme, size: 1TB, tolerance: 5% }
        """
}

@Suite struct DiskMatcherTests {
    @Test func mirrorMembersAreOrderedBySerialWhateverTheKernelCallsThem() throws {
        let a = Fixture.nvme("nvme0n1", serial: "S2", slot: 1)
        let b = Fixture.nvme("nvme1n1", serial: "S1", slot: 2)
        let bystander = Fixture.sata("sda", serial: "Z1")
        let layout = try Fixture.layout(Fixture.mirror)

        let today = try DiskMatcher.match(layout, inventory: Inventory(disks: [a, b, bystander]))
        #expect(today.disks["disk0"]?.serial == "S1")
        #expect(today.disks["disk1"]?.serial == "S2")
        #expect(today.disks.count == 2, "the bystander is never assigned")

        // Tomorrow the kernel enumerates them the other way round.
        var a2 = a
        a2.name = "nvme4n1"
        a2.path = "/dev/nvme4n1"
        let tomorrow = try DiskMatcher.match(layout, inventory: Inventory(disks: [bystander, a2, b]))
        #expect(tomorrow.disks["disk0"]?.serial == "S1")
        #expect(tomorrow.disks["disk1"]?.serial == "S2")
        #expect(tomorrow.disks["disk1"]?.path == "/dev/nvme4n1")
    }

    @Test func disksWithoutSerialsAreOrderedByPath() throws {
        let a = Fixture.nvme("nvme0n1", serial: nil, slot: 2)
        let b = Fixture.nvme("nvme1n1", serial: nil, slot: 1)
        let r = try DiskMatcher.match(try Fixture.layout(Fixture.mirror), inventory: Inventory(disks: [a, b]))
        #expect(r.disks["disk0"]?.name == "nvme1n1")
        #expect(r.disks["disk1"]?.name == "nvme0n1")
    }

    /// size 120GB ± 5% accepts 114 GB to 126 GB inclusive.
    @Test(arguments: [
        (UInt64(114_000_000_000), true),
        (UInt64(113_999_999_999), false),
        (UInt64(126_000_000_000), true),
        (UInt64(126_000_000_001), false),
        (UInt64(120_034_123_776), true),  // a real "120 GB" SSD
        (UInt64(120) << 30, false),  // 120 GiB is 128.8 GB: outside
    ])
    func toleranceEdges(size: UInt64, matches: Bool) throws {
        let layout = try Fixture.layout("disks: {disk0: {match: {size: 120GB, tolerance: 5%}}}")
        let disk = Fixture.sata("sda", serial: "X", size: size)
        #expect(DiskMatcher.mismatches(layout[0].criteria, disk).isEmpty == matches)
    }

    @Test func gibibytesAreNotGigabytes() throws {
        let disk = Fixture.sata("sda", serial: "X", size: 120 << 30)
        let gb = try Fixture.layout("disks: {disk0: {match: {size: 120GB, tolerance: 1%}}}")
        let gib = try Fixture.layout("disks: {disk0: {match: {size: 120GiB, tolerance: 1%}}}")
        #expect(!DiskMatcher.mismatches(gb[0].criteria, disk).isEmpty)
        #expect(DiskMatcher.mismatches(gib[0].criteria, disk).isEmpty)
    }

    @Test func minAndMax() throws {
        let layout = try Fixture.layout("disks: {disk0: {match: {min: 500GB, max: 2TB}}}")
        #expect(DiskMatcher.mismatches(layout[0].criteria, Fixture.nvme("n", serial: "a")).isEmpty)
        let big = DiskMatcher.mismatches(layout[0].criteria, Fixture.sata("sda", serial: "b"))
        #expect(big == ["size: 4.0 TB is above max 2.0 TB"])
        let small = DiskMatcher.mismatches(layout[0].criteria, Fixture.sata("sdb", serial: "c", size: 250_000_000_000))
        #expect(small == ["size: 250.0 GB is below min 500.0 GB"])
    }

    @Test func missingSerialIsAReasonNotACrash() throws {
        let layout = try Fixture.layout("disks: {disk0: {match: {serial: S1}}}")
        let reasons = DiskMatcher.mismatches(layout[0].criteria, Fixture.nvme("nvme0n1", serial: nil))
        #expect(reasons == ["serial: none reported, wanted \"S1\""])
    }

    @Test func vendorAndModelAreCaseInsensitiveGlobs() throws {
        let layout = try Fixture.layout("disks: {disk0: {match: {vendor: 'samsung', model: '*mzql2*'}}}")
        #expect(DiskMatcher.mismatches(layout[0].criteria, Fixture.nvme("nvme0n1", serial: "a")).isEmpty)
    }

    @Test func pathMatchesByPathOrByIdNames() throws {
        let disk = Fixture.nvme("nvme0n1", serial: "S1", slot: 3)
        for pattern in ["pci-0000:03:00.0-nvme-1", "/dev/disk/by-path/pci-0000:03:*", "nvme-SAMSUNG*_S1"] {
            let layout = try Fixture.layout("disks: {disk0: {match: {path: '\(pattern)'}}}")
            #expect(DiskMatcher.mismatches(layout[0].criteria, disk).isEmpty, "\(pattern)")
        }
        let miss = try Fixture.layout("disks: {disk0: {match: {path: 'pci-0000:04*'}}}")
        #expect(!DiskMatcher.mismatches(miss[0].criteria, disk).isEmpty)
    }

    @Test(arguments: [
        ("nvme", true, false, false), ("ssd", true, true, false), ("hdd", false, false, true),
        ("sata", false, true, true), ("any", true, true, true), ("virtio", false, false, false),
    ])
    func types(type: String, nvme: Bool, sataSSD: Bool, sataHDD: Bool) throws {
        let c = try Fixture.layout("disks: {disk0: {match: {type: \(type)}}}")[0].criteria
        #expect(DiskMatcher.mismatches(c, Fixture.nvme("nvme0n1", serial: "a")).isEmpty == nvme)
        #expect(DiskMatcher.mismatches(c, Fixture.sata("sda", serial: "b", rotational: false)).isEmpty == sataSSD)
        #expect(DiskMatcher.mismatches(c, Fixture.sata("sdb", serial: "c")).isEmpty == sataHDD)
    }

    @Test func removableAndReadOnlyDisksAreNeverPickedByAccident() throws {
        var stick = Fixture.sata("sdb", serial: "USB1")
        stick.removable = true
        var readOnly = Fixture.sata("sdc", serial: "RO1")
        readOnly.readOnly = true
        let any = try Fixture.layout("disks: {disk0: {match: {type: any}}}")[0].criteria
        #expect(DiskMatcher.mismatches(any, stick).contains { $0.contains("removable") })
        #expect(DiskMatcher.mismatches(any, readOnly) == ["is read-only"])
        let allow = try Fixture.layout("disks: {disk0: {match: {removable: true}}}")[0].criteria
        #expect(DiskMatcher.mismatches(allow, stick).isEmpty)
    }

    @Test func softwareDevicesAreNeverCandidates() throws {
        let md = Disk(name: "md127", path: "/dev/md127", transport: .md, rotational: false, sizeBytes: 1 << 40)
        let any = try Fixture.layout("disks: {disk0: {match: {type: any}}}")[0].criteria
        #expect(!DiskMatcher.mismatches(any, md).isEmpty)
    }

    @Test func moreMatchingDisksThanWantedIsAnAmbiguity() throws {
        let disks = [
            Fixture.nvme("nvme0n1", serial: "S1"), Fixture.nvme("nvme1n1", serial: "S2"),
            Fixture.nvme("nvme2n1", serial: "S3"),
        ]
        let error = #expect(throws: MatchError.self) {
            try DiskMatcher.match(try Fixture.layout(Fixture.mirror), inventory: Inventory(disks: disks))
        }
        guard case .ambiguous(let names, _, let candidates) = error?.problems.first else {
            Issue.record("expected an ambiguity, got \(String(describing: error))")
            return
        }
        #expect(names == ["disk0", "disk1"])
        #expect(candidates.map(\.serial) == ["S1", "S2", "S3"])
        #expect(error!.description.contains("3 disks match"))
        #expect(error!.description.contains("/dev/nvme2n1"))
    }

    @Test func noCandidateNamesEachNearDiskWithItsReasons() throws {
        let disks = [Fixture.nvme("nvme0n1", serial: "S1", size: 512_110_190_592), Fixture.sata("sda", serial: "Z")]
        let layout = try Fixture.layout("disks: {disk0: {match: {type: nvme, size: 1TB}}}")
        let error = #expect(throws: MatchError.self) {
            try DiskMatcher.match(layout, inventory: Inventory(disks: disks))
        }
        let text = error?.description ?? ""
        #expect(text.contains("disk0: no disk matches type nvme, size 1.0 TB ± 5%"))
        #expect(text.contains("/dev/nvme0n1 (nvme, 512.1 GB"))
        #expect(text.contains("size: 512.1 GB (512110190592 bytes) is outside 1.0 TB ± 5% (950.0 GB to 1.1 TB)"))
        #expect(text.contains("/dev/sda"))
        #expect(text.contains("type: is sata rotational, wanted nvme"))
        // The nearest candidate (one reason) is listed before the farther one (two).
        #expect(text.range(of: "/dev/nvme0n1")!.lowerBound < text.range(of: "/dev/sda")!.lowerBound)
    }

    @Test func tooFewForAMirror() throws {
        let error = #expect(throws: MatchError.self) {
            try DiskMatcher.match(
                try Fixture.layout(Fixture.mirror), inventory: Inventory(disks: [Fixture.nvme("nvme0n1", serial: "S1")])
            )
        }
        #expect(error?.description.contains("2 disks with type nvme") == true)
        #expect(error?.description.contains("only 1 match") == true)
    }

    @Test func aDiskMatchingTwoRolesIsRefused() throws {
        let layout = try Fixture.layout(
            """
            disks:
              disk0: {match: {type: ssd}}
              disk1: {match: {type: nvme}}
            """)
        let disks = [Fixture.nvme("nvme0n1", serial: "S1"), Fixture.sata("sda", serial: "Z", rotational: false)]
        let error = #expect(throws: MatchError.self) {
            try DiskMatcher.match(layout, inventory: Inventory(disks: disks))
        }
        #expect(
            error?.problems.contains {
                if case .sharedDisk(let d, let names) = $0 {
                    d.name == "nvme0n1" && names == ["disk0", "disk1"]
                } else {
                    false
                }
            } == true)
    }

    @Test func exclusiveCriteriaMapEachRole() throws {
        let layout = try Fixture.layout(
            """
            disks:
              disk0: {match: {type: nvme}}
              disk1: {match: {type: hdd, size: 4TB, tolerance: 1%}}
            """)
        let disks = [Fixture.sata("sda", serial: "Z"), Fixture.nvme("nvme0n1", serial: "S1")]
        let r = try DiskMatcher.match(layout, inventory: Inventory(disks: disks))
        #expect(r.paths == ["disk0": "/dev/nvme0n1", "disk1": "/dev/sda"])
    }

    @Test func naturalOrder() {
        let names = ["disk10", "disk2", "disk1", "data", "disk0"]
        #expect(names.sorted(by: LogicalDisk.naturalOrder) == ["data", "disk0", "disk1", "disk2", "disk10"])
    }
}

@Suite struct LayoutParsingTests {
    @Test(arguments: [
        ("disks: {disk0: {match: {tolerence: 5%}}}", "disks.disk0.match.tolerence: is not a known field here"),
        ("disks: {disk0: {match: {tolerance: 5%}}}", "disks.disk0.match.tolerance: needs a size"),
        ("disks: {disk0: {match: {type: floppy}}}", "disks.disk0.match.type: unknown disk type \"floppy\""),
        ("disks: {disk0: {match: {size: 120G}}}", "disks.disk0.match.size: unit \"g\" is ambiguous"),
        (
            "disks: {disk0: {match: {min: 2TB, max: 1TB}}}",
            "disks.disk0.match.min: min 2.0 TB is larger than max 1.0 TB"
        ),
        ("disks: {disk0: {match: {serial: '[abc'}}}", "disks.disk0.match.serial: pattern \"[abc\" has a \"[\""),
        ("disks: {disk0: {}}", "disks.disk0.match: is required"),
        ("disks: {0disk: {match: {}}}", "disks.0disk: \"0disk\" is not a valid disk name"),
        ("disks: {}", "disks: lists no disks"),
        ("disc: {}", "disks: is required"),
        ("disks: [a, b]", "disks: expected a mapping, found a list"),
        ("disks: {disk0: {match: {removable: maybe}}}", "disks.disk0.match.removable: expected true or false"),
        ("{", "(document): is not valid YAML or JSON"),
        ("", "(document): is empty"),
    ])
    func refusesWithTheFieldNamed(yaml: String, message: String) {
        let error = #expect(throws: ConfigError.self) { try DiskLayout(parsing: yaml, source: "test.yaml") }
        #expect(error?.description.hasPrefix(message) == true, "got: \(String(describing: error))")
    }

    @Test func jsonIsAccepted() throws {
        let layout = try DiskLayout(
            parsing: #"{"disks": {"disk0": {"match": {"type": "nvme", "size": "1TB"}}}}"#, source: "j")
        #expect(layout.disks.first?.criteria.type == .nvme)
        #expect(layout.disks.first?.criteria.size == ByteSize(bytes: 1_000_000_000_000))
    }

    @Test func errorsSayWhereInTheFile() {
        let yaml = "disks:\n  disk0:\n    match:\n      size: 12XB\n"
        let error = #expect(throws: ConfigError.self) { try DiskLayout(parsing: yaml, source: "layout.yaml") }
        #expect(error?.location == "layout.yaml:4")
    }
}
