import ProvisionerCore
import Testing

@testable import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The agent's own reading of LVM metadata against LVM's reports, on metadata LVM itself wrote
/// (`pvcreate`, `vgcreate`, `vgcfgrestore` on loop devices: no device-mapper needed).
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root for loop devices"))
struct LVMReaderTests {
    /// Three 64 MiB loop devices; removed again by `detach`.
    final class Loops {
        let files: [String]
        var devices: [String] = []
        init(_ count: Int) throws {
            let dir = "/tmp/lvm-reader-\(getpid())"
            mkdir(dir, 0o700)
            files = (0..<count).map { "\(dir)/pv\($0).img" }
            for file in files {
                let fd = open(file, O_CREAT | O_RDWR | O_TRUNC, 0o600)
                #expect(fd >= 0 && ftruncate(fd, 64 << 20) == 0)
                close(fd)
                let result = try Command.run(["losetup", "--find", "--show", file])
                try #require(result.status == 0, "losetup: \(result.lastMessage)")
                devices.append(result.stdout.trimmed)
            }
        }
        var lvm: [String] { StorageObserver.devicesArguments(devices) }
        func run(_ argv: [String], input: String? = nil) throws {
            let result = try Command.run(["lvm"] + argv + lvm, input: input)
            try #require(result.status == 0, "lvm \(argv.joined(separator: " ")): \(result.lastMessage)")
        }
        func detach() {
            for device in devices { _ = try? Command.run(["losetup", "--detach", device]) }
            for file in files { unlink(file) }
            rmdir((files.first.map { String($0[..<$0.lastIndex(of: "/")!]) }) ?? "")
        }
    }

    /// Adds logical volumes to `group`'s metadata with `vgcfgbackup` and `vgcfgrestore`.
    func restore(_ loops: Loops, group: String, volumes: String) throws {
        let file = "/tmp/lvm-reader-\(getpid())/\(group).vg"
        try loops.run(["vgcfgbackup", "-f", file, group])
        var text = String(decoding: try readAll(file), as: UTF8.self)
        let end = text.lastIndex(of: "}")!
        text.insert(contentsOf: "\nlogical_volumes {\n\(volumes)\n}\n", at: end)
        let fd = open(file, O_WRONLY | O_TRUNC)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        let result = try Command.run(["lvm", "vgcfgrestore", "-f", file] + loops.lvm + [group])
        // Without device-mapper LVM warns that it cannot check for active volumes; the metadata is written.
        try #require(
            result.status == 0 || result.stderr.contains("Restored volume group"), "vgcfgrestore: \(result.lastMessage)"
        )
        unlink(file)
    }

    func readAll(_ path: String) throws -> [UInt8] {
        let fd = try OwnedDescriptor(readOnly: path)
        let size = lseek(fd.rawValue, 0, SEEK_END)
        return try LVMReader.read(fd, at: 0, count: Int(size))
    }

    static func segment(_ n: Int, start: Int, count: Int, stripes: [(String, Int)]) -> String {
        """
        segment\(n) {
            start_extent = \(start)
            extent_count = \(count)
            type = "striped"
            stripe_count = \(stripes.count)
            \(stripes.count > 1 ? "stripe_size = 128" : "")
            stripes = [ \(stripes.map { "\"\($0.0)\", \($0.1)" }.joined(separator: ", ")) ]
        }
        """
    }

    static func volume(_ name: String, id: String, visible: Bool = true, segments: [String]) -> String {
        """
        \(name) {
            id = "\(id)"
            status = ["READ", "WRITE"\(visible ? ", \"VISIBLE\"" : "")]
            flags = []
            segment_count = \(segments.count)
            \(segments.joined(separator: "\n"))
        }
        """
    }

    /// What each way of looking finds: the groups and which group each physical volume is in.
    func both(_ loops: Loops) throws -> (
        metadata: [ObservedVolumeGroup], reports: [ObservedVolumeGroup], pvs: ([String: String], [String: String])
    ) {
        let observer = StorageObserver()
        var a = ObservedStorage()
        var b = ObservedStorage()
        let (fromMetadata, _) = try observer.readMetadata(into: &a, devices: loops.devices)
        let fromReports = try observer.readReports(into: &b, devices: loops.devices)
        return (fromMetadata, fromReports.sorted { $0.name < $1.name }, (a.physicalVolumes, b.physicalVolumes))
    }

    @Test func readsWhatLVMReports() throws {
        let loops = try Loops(3)
        defer { loops.detach() }
        let (a, b, c) = (loops.devices[0], loops.devices[1], loops.devices[2])
        // b keeps a second copy of the metadata at its end.
        try loops.run(["pvcreate", "-q", a, c])
        try loops.run(["pvcreate", "-q", "--metadatacopies", "2", b])
        try loops.run(["vgcreate", "-q", "-s", "1m", "data", a, b])
        // c: a physical volume in no group.
        try restore(
            loops, group: "data",
            volumes: [
                Self.volume(
                    "root", id: "aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg",
                    segments: [
                        Self.segment(1, start: 0, count: 10, stripes: [("pv0", 0)]),
                        Self.segment(2, start: 10, count: 7, stripes: [("pv1", 0)]),
                    ]),
                Self.volume(
                    "wide", id: "aaaaaa-bbbb-cccc-dddd-eeee-ffff-hhhhhh",
                    segments: [Self.segment(1, start: 0, count: 8, stripes: [("pv0", 10), ("pv1", 7)])]),
                // Hidden (no VISIBLE): lvs does not list it, but its extents are used.
                Self.volume(
                    "spare", id: "aaaaaa-bbbb-cccc-dddd-eeee-ffff-iiiiii", visible: false,
                    segments: [Self.segment(1, start: 0, count: 3, stripes: [("pv0", 14)])]),
            ].joined(separator: "\n"))
        let (metadata, reports, pvs) = try both(loops)
        #expect(metadata == reports)
        #expect(pvs.0 == pvs.1)
        let group = try #require(metadata.first)
        #expect(group.logicalVolumes.map(\.name) == ["root", "wide"])
        #expect(group.logicalVolumes.map(\.sizeBytes) == [17 << 20, 8 << 20])
        #expect(pvs.0[c] == "")
        let device = try LVMReader.device(b)
        #expect(device.label?.metadataAreas.count == 2 && device.texts.count == 2)
    }

    /// Many commits wrap the text around the end of a small metadata area's circular buffer.
    @Test func readsTextThatWrapsAroundTheArea() throws {
        let loops = try Loops(2)
        defer { loops.detach() }
        try loops.run(["pvcreate", "-q", "--dataalignment", "64k", "--metadatasize", "40k", loops.devices[0]])
        try loops.run(["pvcreate", "-q", "--metadatacopies", "0", loops.devices[1]])
        try loops.run(["vgcreate", "-q", "wrap", loops.devices[0], loops.devices[1]])
        var wrapped = false
        for n in 0..<60 where !wrapped {
            try loops.run(["vgchange", "-q", "--addtag", "tag-\(n)-" + String(repeating: "x", count: 200), "wrap"])
            let bytes = try readAll(loops.devices[0])
            let label = try #require(try LVMLabel.parse(Array(bytes[0..<LVMLabel.scanBytes])))
            let area = label.metadataAreas[0]
            let header = try LVMMetadataArea.parseHeader(
                Array(bytes[Int(area.offset)..<Int(area.offset) + 512]), at: area.offset)
            wrapped = header.textRanges.count == 2
        }
        #expect(wrapped, "the metadata never wrapped around its area")
        let (metadata, reports, pvs) = try both(loops)
        #expect(metadata == reports)
        #expect(pvs.0 == pvs.1)
        #expect(metadata.first?.physicalVolumes.count == 2)
    }

    /// A damaged metadata text is not taken for metadata: the reader gives way to lvm.
    @Test func aDamagedTextIsRefused() throws {
        let loops = try Loops(1)
        defer { loops.detach() }
        try loops.run(["pvcreate", "-q", loops.devices[0]])
        try loops.run(["vgcreate", "-q", "torn", loops.devices[0]])
        let bytes = try readAll(loops.devices[0])
        let label = try #require(try LVMLabel.parse(Array(bytes[0..<LVMLabel.scanBytes])))
        let area = label.metadataAreas[0]
        let header = try LVMMetadataArea.parseHeader(
            Array(bytes[Int(area.offset)..<Int(area.offset) + 512]), at: area.offset)
        let at = try #require(header.textRanges.first).offset + 10
        let fd = open(loops.devices[0], O_WRONLY)
        var byte: UInt8 = 0x21
        #expect(pwrite(fd, &byte, 1, off_t(at)) == 1)
        close(fd)
        #expect(throws: LVMView.Unsupported.self) { try LVMReader.read(loops.devices) }
    }
}
