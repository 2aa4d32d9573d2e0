import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import ProvisionerImage

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The parsers that take input from outside — a client, a file in the state directory, a disk, a
/// kernel command line — each as a function of arbitrary bytes (docs/fuzzing.md). Refusing the input
/// with an error is the expected answer to garbage; a trap, a hang or a broken round trip is a bug.
/// `provisioner-fuzz` runs them under libFuzzer; `FuzzCorpusTests` replays the committed corpus.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A disk layout, YAML or JSON (`--layout FILE`, a node's `layout` field).
    case layout
    /// A node definition as an admin sends it (JSON body of `PUT /api/v1/admin/nodes/NAME`).
    case nodeJSON = "node-json"
    /// The cluster file (`provisionerctl nodes import`).
    case cluster
    /// An image manifest (binary, from the server or a mirror).
    case manifest
    /// A zstd frame (stored objects, manifests) with the size limits the readers use.
    case zstd
    /// A pack stream (image objects from the server), fed in pieces as the network delivers it.
    case pack
    /// The kernel command line (`/proc/cmdline` at boot).
    case cmdline
    /// The boot listener's `GET /boot/ipxe?...` query (no credential needed).
    case bootQuery = "boot-query"
    /// LVM metadata as the agent reads it from a disk: 2048 bytes of label sectors, a 512-byte
    /// metadata area header, then the volume group's text.
    case lvm

    /// Runs the target on one input: nil when the code behaved (accepted or refused it), else the
    /// broken invariant. A trap inside is a bug too, and libFuzzer reports it as a crash.
    public func run(_ data: [UInt8]) -> String? {
        switch self {
        case .layout: return Self.layout(data)
        case .nodeJSON: return Self.nodeJSON(data)
        case .cluster: return Self.cluster(data)
        case .manifest: return Self.manifest(data)
        case .zstd: return Self.zstd(data)
        case .pack: return Self.pack(data)
        case .cmdline: return Self.cmdline(data)
        case .bootQuery: return Self.bootQuery(data)
        case .lvm: return Self.lvm(data)
        }
    }

    static func text(_ data: [UInt8]) -> String { String(decoding: data, as: UTF8.self) }

    static func layout(_ data: [UInt8]) -> String? {
        guard let layout = try? DiskLayout(parsing: text(data), source: "fuzz") else { return nil }
        // What `layout expand` prints must read back as the same layout.
        let again: DiskLayout
        do {
            again = try DiskLayout(parsing: layout.yaml, source: "fuzz (written back)")
        } catch {
            return "a valid layout written back does not parse: \(error)\n\(layout.yaml)"
        }
        return again == layout ? nil : "a valid layout written back reads differently:\n\(layout.yaml)"
    }

    static func nodeJSON(_ data: [UInt8]) -> String? {
        guard let config = try? JSONDecoder().decode(NodeConfig.self, from: Data(data)) else { return nil }
        _ = try? config.validated()
        return nil
    }

    static func cluster(_ data: [UInt8]) -> String? {
        guard let nodes = try? ClusterFile.parse(text(data), source: "fuzz") else { return nil }
        for node in nodes { _ = try? node.validated() }
        // What `nodes export` writes must import as the same nodes.
        let rendered = ClusterFile.render(nodes)
        let again: [NodeConfig]
        do {
            again = try ClusterFile.parse(rendered, source: "fuzz (exported)")
        } catch {
            return "exported nodes do not import: \(error)\n\(rendered)"
        }
        // The export lists nodes by name; the file may list them in any order.
        let byName = { (a: NodeConfig, b: NodeConfig) in a.name < b.name }
        return again.sorted(by: byName) == nodes.sorted(by: byName)
            ? nil : "exported nodes import differently:\n\(rendered)"
    }

    static func manifest(_ data: [UInt8]) -> String? {
        guard let manifest = try? ManifestCodec.decode(data) else { return nil }
        // The encoding is canonical: a manifest that decodes re-encodes to the same bytes.
        let again = ManifestCodec.encode(manifest)
        guard again != data else { return nil }
        let at = (0..<min(again.count, data.count)).first { again[$0] != data[$0] } ?? min(again.count, data.count)
        return "a decoded manifest re-encodes differently from byte \(at) (\(data.count) bytes in, \(again.count) out)"
    }

    static func zstd(_ data: [UInt8]) -> String? {
        _ = data.withUnsafeBytes { try? Zstd.decompress($0, expectedSize: nil, limit: 16 << 20, subject: "fuzz") }
        guard data.count > 1 else { return nil }
        // The first byte splits the rest into a "previous manifest" and a delta against it.
        let split = min(Int(data[0]), data.count - 1)
        _ = try? ManifestDelta.decode(
            old: Array(data[1..<(1 + split)]), delta: Array(data[(1 + split)...]), limit: 16 << 20)
        return nil
    }

    static func pack(_ data: [UInt8]) -> String? {
        // Whole, and in pieces whose sizes come from the input: both must give the same frames.
        func frames(firstPiece: Int) -> Result<[PackFrame], any Error> {
            var decoder = PackDecoder()
            var out: [PackFrame] = []
            var offset = 0
            var step = max(1, firstPiece)
            do {
                while offset < data.count {
                    let end = min(data.count, offset + step)
                    decoder.feed(Array(data[offset..<end]))
                    offset = end
                    step = step % 7 + 1
                    while let frame = try decoder.next() { out.append(frame) }
                }
                try decoder.finish()
                return .success(out)
            } catch {
                return .failure(error)
            }
        }
        let whole = frames(firstPiece: data.count)
        let split = frames(firstPiece: Int(data.first ?? 1) % 5 + 1)
        switch (whole, split) {
        case (.success(let a), .success(let b)):
            return a == b ? nil : "a pack decodes differently when fed in pieces"
        case (.failure(let a), .failure(let b)):
            guard a is PackError, b is PackError else { return "the pack decoder threw something else: \(a), \(b)" }
            return nil
        default:
            return "a pack is accepted whole but not in pieces, or the reverse"
        }
    }

    static func cmdline(_ data: [UInt8]) -> String? {
        let line = text(data)
        _ = try? BootSettings.parse(line)
        _ = KernelCommandLine.forLocalBoot(line)
        for word in KernelCommandLine.words(line) { _ = KernelCommandLine.split(word) }
        return nil
    }

    static func lvm(_ data: [UInt8]) -> String? {
        let label = try? LVMLabel.parse(Array(data.prefix(LVMLabel.scanBytes)))
        let headerEnd = LVMLabel.scanBytes + LVMMetadataArea.headerSize
        if data.count >= headerEnd,
            let area = try? LVMMetadataArea.parseHeader(Array(data[LVMLabel.scanBytes..<headerEnd]), at: 4096),
            let location = area.location
        {
            // The text is read from inside the area, after its header, and all of it.
            let ranges = area.textRanges
            let inside = ranges.allSatisfy {
                $0.offset >= area.start + UInt64(LVMMetadataArea.headerSize) && $0.length <= area.size
                    && $0.offset - area.start <= area.size - $0.length
            }
            guard inside else { return "a text range lies outside its metadata area: \(ranges)" }
            guard ranges.reduce(0, { $0 + $1.length }) == location.length else {
                return "the text ranges do not add up"
            }
        }
        let text = String(decoding: data.count > headerEnd ? Array(data[headerEnd...]) : data, as: UTF8.self)
        guard let group = try? LVMVolumeGroupMetadata(text: text) else { return nil }
        guard group.allocatedExtents <= group.extentCount,
            group.freeExtents == group.extentCount - group.allocatedExtents
        else { return "a group's volumes use more extents than it has" }
        let own =
            label ?? LVMLabel(pvUUID: group.physicalVolumes.first?.uuid ?? "", deviceSizeBytes: 0, metadataAreas: [])
        if let view = try? LVMView.build([.init(path: "/dev/fuzz", label: own, texts: [text])]) {
            guard view.groups.count == 1, view.physicalVolumes.count == 1 else {
                return "one device gave \(view.groups.count) groups"
            }
            // What device-mapper would be given: every table covers its volume exactly, in order,
            // and names fit the kernel's fields.
            let number = DeviceNumber(major: 9, minor: 127)
            if let volumes = try? view.deviceMapperVolumes(of: view.groups[0].name, number: { _ in number }) {
                let sectors = group.extentSizeBytes / 512
                for (volume, lv) in zip(volumes, group.logicalVolumes) {
                    guard volume.name.utf8.count < 128, volume.uuid.utf8.count == 68 else {
                        return "device-mapper name or UUID out of bounds: \(volume.name) \(volume.uuid)"
                    }
                    var next: UInt64 = 0
                    for target in volume.targets {
                        guard target.startSector == next, target.sectors > 0 else {
                            return "the table of \(volume.name) has a gap or an empty line"
                        }
                        next = target.startSector + target.sectors
                    }
                    guard next == lv.extents * sectors else { return "the table of \(volume.name) does not cover it" }
                }
            }
        }
        return nil
    }

    static func bootQuery(_ data: [UInt8]) -> String? {
        guard let query = try? BootQuery.parse(Substring(text(data))) else { return nil }
        guard MACAddress.normalize(query.mac) == query.mac else { return "a parsed MAC is not normalised" }
        for fact in [query.dmi.serial, query.dmi.uuid, query.dmi.vendor, query.dmi.product] {
            if let fact, fact.utf8.count > BootQuery.maxValue { return "a fact is longer than maxValue" }
        }
        return nil
    }
}
