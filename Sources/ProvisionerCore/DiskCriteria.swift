/// The kind of disk a logical disk asks for.
public enum DiskType: String, Hashable, Sendable, CaseIterable {
    /// NVMe transport.
    case nvme
    /// Not rotational (SATA/SAS/NVMe/... solid state).
    case ssd
    /// Rotational.
    case hdd
    /// virtio-blk (a VM's paravirtual disk).
    case virtio
    case sata, sas, scsi, usb
    case any

    public func accepts(_ disk: Disk) -> Bool {
        switch self {
        case .nvme: disk.transport == .nvme
        case .ssd: !disk.rotational
        case .hdd: disk.rotational
        case .virtio: disk.transport == .virtio
        case .sata: disk.transport == .sata
        case .sas: disk.transport == .sas
        case .scsi: disk.transport == .scsi
        case .usb: disk.transport == .usb
        case .any: true
        }
    }
}

/// How a logical disk (`disk0`) finds its real disk. Every criterion given must
/// hold; criteria left out accept anything. See docs/matching.md.
public struct DiskCriteria: Hashable, Sendable, CustomStringConvertible {
    public var type: DiskType = .any
    public var vendor: Glob?
    public var model: Glob?
    public var serial: Glob?
    public var wwn: Glob?
    /// Against the disk's `/dev/disk/by-path` and `/dev/disk/by-id` names.
    public var path: Glob?
    public var size: ByteSize?
    public var tolerance: SizeTolerance?
    public var min: ByteSize?
    public var max: ByteSize?
    /// Removable media (USB sticks, card readers) only match when this is true.
    public var removable: Bool = false

    public init(
        type: DiskType = .any, vendor: Glob? = nil, model: Glob? = nil, serial: Glob? = nil, wwn: Glob? = nil,
        path: Glob? = nil, size: ByteSize? = nil, tolerance: SizeTolerance? = nil, min: ByteSize? = nil,
        max: ByteSize? = nil, removable: Bool = false
    ) {
        self.type = type
        self.vendor = vendor
        self.model = model
        self.serial = serial
        self.wwn = wwn
        self.path = path
        self.size = size
        self.tolerance = tolerance
        self.min = min
        self.max = max
        self.removable = removable
    }

    /// The accepted size range, combining `size ± tolerance` with `min` and `max`.
    public var sizeRange: ClosedRange<UInt64> {
        var low: UInt64 = 0
        var high = UInt64.max
        if let size {
            let r = (tolerance ?? .defaultTolerance).range(around: size)
            low = r.lowerBound
            high = r.upperBound
        }
        if let min { low = Swift.max(low, min.bytes) }
        if let max { high = Swift.min(high, max.bytes) }
        return low...Swift.max(low, high)
    }

    public var description: String {
        var parts: [String] = []
        if type != .any { parts.append("type \(type.rawValue)") }
        if let vendor { parts.append("vendor \"\(vendor)\"") }
        if let model { parts.append("model \"\(model)\"") }
        if let serial { parts.append("serial \"\(serial)\"") }
        if let wwn { parts.append("wwn \"\(wwn)\"") }
        if let path { parts.append("path \"\(path)\"") }
        if let size { parts.append("size \(size) ± \(tolerance ?? .defaultTolerance)") }
        if let min { parts.append("min \(min)") }
        if let max { parts.append("max \(max)") }
        if removable { parts.append("removable allowed") }
        return parts.isEmpty ? "any disk" : parts.joined(separator: ", ")
    }
}

extension DiskCriteria {
    static let fields = [
        "type", "vendor", "model", "serial", "wwn", "path", "size", "tolerance", "min", "max", "removable",
    ]

    /// Reads criteria from a `match:` mapping, refusing unknown fields.
    public init(config node: ConfigNode) throws(ConfigError) {
        let m = try node.mapping()
        if let t = m.optional("type") {
            let text = try t.string().lowercased()
            guard let type = DiskType(rawValue: text) else {
                let known = DiskType.allCases.map(\.rawValue).joined(separator: ", ")
                throw t.error("unknown disk type \"\(text)\"; expected one of \(known)")
            }
            self.type = type
        }
        vendor = try m.optional("vendor")?.glob(caseInsensitive: true)
        model = try m.optional("model")?.glob(caseInsensitive: true)
        serial = try m.optional("serial")?.glob(caseInsensitive: false)
        wwn = try m.optional("wwn")?.glob(caseInsensitive: true)
        path = try m.optional("path")?.glob(caseInsensitive: false)
        size = try m.optional("size")?.size()
        if let t = m.optional("tolerance") {
            guard size != nil else { throw t.error("needs a size to be tolerant about; add size:") }
            let text = try t.string()
            do { tolerance = try SizeTolerance(parsing: text) } catch { throw t.error(error.description) }
        }
        min = try m.optional("min")?.size()
        max = try m.optional("max")?.size()
        if let min, let max, min > max, let node = m.optional("min") {
            throw node.error("min \(min) is larger than max \(max)")
        }
        if let size, let max, size > max, let node = m.optional("size") {
            throw node.error("size \(size) is larger than max \(max)")
        }
        if let size, let min, size < min, let node = m.optional("size") {
            throw node.error("size \(size) is smaller than min \(min)")
        }
        removable = try m.optional("removable")?.bool() ?? false
        try m.finish()
    }
}

/// A logical disk of a layout: a name the rest of the layout refers to, and how
/// to find the real disk.
public struct LogicalDisk: Hashable, Sendable {
    public var name: String
    public var criteria: DiskCriteria
    /// The GPT partitions the layout wants, in order; empty means the disk is
    /// only matched, never written.
    public var partitions: [PartitionSpec]

    public init(name: String, criteria: DiskCriteria, partitions: [PartitionSpec] = []) {
        self.name = name
        self.criteria = criteria
        self.partitions = partitions
    }

    /// Names are short identifiers (`disk0`, `scratch1`) so that references
    /// to them elsewhere in a layout cannot be mistaken for paths.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }

    /// Orders `disk2` before `disk10`.
    public static func naturalOrder(_ a: String, _ b: String) -> Bool {
        func split(_ s: String) -> (String, Int?) {
            let digits = s.reversed().prefix(while: { $0.isASCII && $0.isNumber })
            let stem = String(s.dropLast(digits.count))
            return (stem, digits.isEmpty ? nil : Int(String(digits.reversed())))
        }
        let (sa, na) = split(a)
        let (sb, nb) = split(b)
        if sa != sb { return sa < sb }
        switch (na, nb) {
        case let (x?, y?): return x != y ? x < y : a < b
        case (nil, _?): return true
        case (_?, nil): return false
        case (nil, nil): return a < b
        }
    }
}
