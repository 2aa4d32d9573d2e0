/// LVM2's on-disk metadata, read without running `lvm`: the physical volume label in the first
/// sectors, the metadata area's header, and the volume group's text (the "Text Format Volume
/// Group" that `vgcfgbackup` also writes). Pure: bytes in, values out; the agent's storage observer
/// reads the bytes (ProvisionerSystem's `LVMReader`) and falls back to `lvm pvs`/`lvs` for anything
/// this does not describe exactly (`LVMView.Unsupported`).
///
/// The formats are LVM2's `lib/format_text/layout.h` and `lib/label/label.h`; every checksum is
/// checked, so a torn or foreign sector is never taken for metadata.

/// A value in LVM's text format: `key = value`, `name { ... }`.
public indirect enum LVMValue: Hashable, Sendable {
    case string(String)
    case integer(Int64)
    /// A number with a fraction or an exponent, kept as written (metadata has none; config may).
    case number(String)
    case array([LVMValue])
    case section(LVMSection)

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var integer: Int64? { if case .integer(let n) = self { n } else { nil } }
    public var section: LVMSection? { if case .section(let s) = self { s } else { nil } }
    /// An array of strings (`status = ["READ", "WRITE"]`); nil when any element is not a string.
    public var strings: [String]? {
        guard case .array(let values) = self else { return nil }
        var result: [String] = []
        for value in values {
            guard let s = value.string else { return nil }
            result.append(s)
        }
        return result
    }
}

/// A `{ ... }` block (or the whole text): its entries in order.
public struct LVMSection: Hashable, Sendable {
    public var entries: [Entry]
    public struct Entry: Hashable, Sendable {
        public var key: String
        public var value: LVMValue
    }

    public subscript(_ key: String) -> LVMValue? { entries.first(where: { $0.key == key })?.value }
    /// The sub-sections, in order (`physical_volumes { pv0 {...} pv1 {...} }`).
    public var sections: [(name: String, section: LVMSection)] {
        entries.compactMap { entry in entry.value.section.map { (entry.key, $0) } }
    }
}

/// Why LVM text could not be read: the line and the problem.
public struct LVMTextError: Error, Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var problem: String
    public init(line: Int, problem: String) {
        self.line = line
        self.problem = problem
    }
    public var description: String { "LVM metadata, line \(line): \(problem)" }
}

/// LVM's text format parser (`lib/config/config.c`): comments from `#`, strings with `\"` and `\\`
/// escapes, integers, arrays, nested sections. Bounded: at most 32 levels of nesting.
public enum LVMText {
    public static let maximumDepth = 32

    public static func parse(_ text: String) throws(LVMTextError) -> LVMSection {
        var parser = Parser(bytes: Array(text.utf8))
        let section = try parser.entries(depth: 0, closing: false)
        return section
    }

    struct Parser {
        let bytes: [UInt8]
        var at = 0
        var line = 1

        init(bytes: [UInt8]) { self.bytes = bytes }

        func error(_ problem: String) -> LVMTextError { LVMTextError(line: line, problem: problem) }

        mutating func skipSpace() {
            while at < bytes.count {
                let b = bytes[at]
                if b == UInt8(ascii: "#") {
                    while at < bytes.count && bytes[at] != UInt8(ascii: "\n") { at += 1 }
                } else if b == UInt8(ascii: "\n") {
                    line += 1
                    at += 1
                } else if b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\r") || b == 0 {
                    at += 1
                } else {
                    return
                }
            }
        }

        static func isNameByte(_ b: UInt8) -> Bool {
            (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_")
                || b == UInt8(ascii: "-")
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "+") || b == UInt8(ascii: "/") || b == UInt8(ascii: "@")
        }

        /// Entries up to the end of the text, or up to the `}` that closes this section.
        mutating func entries(depth: Int, closing: Bool) throws(LVMTextError) -> LVMSection {
            guard depth <= LVMText.maximumDepth else {
                throw error("sections nested deeper than \(LVMText.maximumDepth)")
            }
            var section = LVMSection(entries: [])
            while true {
                skipSpace()
                guard at < bytes.count else {
                    if closing { throw error("a section is not closed (missing \"}\")") }
                    return section
                }
                if bytes[at] == UInt8(ascii: "}") {
                    guard closing else { throw error("\"}\" closes no section") }
                    at += 1
                    return section
                }
                let start = at
                while at < bytes.count && Self.isNameByte(bytes[at]) { at += 1 }
                guard at > start else { throw error("expected a name, found \(shown(at))") }
                let key = String(decoding: bytes[start..<at], as: UTF8.self)
                skipSpace()
                guard at < bytes.count else { throw error("\"\(key)\" has no value") }
                if bytes[at] == UInt8(ascii: "{") {
                    at += 1
                    let inner = try entries(depth: depth + 1, closing: true)
                    section.entries.append(.init(key: key, value: .section(inner)))
                } else if bytes[at] == UInt8(ascii: "=") {
                    at += 1
                    skipSpace()
                    section.entries.append(.init(key: key, value: try value(depth: depth)))
                } else {
                    throw error("expected \"=\" or \"{\" after \"\(key)\", found \(shown(at))")
                }
            }
        }

        func shown(_ index: Int) -> String {
            guard index < bytes.count else { return "the end" }
            let b = bytes[index]
            return b >= 0x20 && b < 0x7f ? "\"\(Character(Unicode.Scalar(b)))\"" : "byte \(b)"
        }

        mutating func value(depth: Int) throws(LVMTextError) -> LVMValue {
            guard at < bytes.count else { throw error("a value is missing at the end") }
            switch bytes[at] {
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "["):
                guard depth < LVMText.maximumDepth else {
                    throw error("arrays nested deeper than \(LVMText.maximumDepth)")
                }
                at += 1
                var values: [LVMValue] = []
                skipSpace()
                if at < bytes.count && bytes[at] == UInt8(ascii: "]") {
                    at += 1
                    return .array(values)
                }
                while true {
                    skipSpace()
                    values.append(try value(depth: depth + 1))
                    skipSpace()
                    guard at < bytes.count else { throw error("an array is not closed (missing \"]\")") }
                    if bytes[at] == UInt8(ascii: ",") {
                        at += 1
                    } else if bytes[at] == UInt8(ascii: "]") {
                        at += 1
                        return .array(values)
                    } else {
                        throw error("expected \",\" or \"]\" in an array, found \(shown(at))")
                    }
                }
            default:
                let start = at
                while at < bytes.count && Self.isNameByte(bytes[at]) { at += 1 }
                let word = String(decoding: bytes[start..<at], as: UTF8.self)
                guard !word.isEmpty else { throw error("expected a value, found \(shown(start))") }
                if let n = Int64(word) { return .integer(n) }
                if Double(word) != nil { return .number(word) }
                throw error("\"\(word)\" is not a string, number or array")
            }
        }

        mutating func string() throws(LVMTextError) -> String {
            at += 1  // the opening quote
            var out: [UInt8] = []
            while at < bytes.count {
                let b = bytes[at]
                if b == UInt8(ascii: "\"") {
                    at += 1
                    return String(decoding: out, as: UTF8.self)
                }
                if b == UInt8(ascii: "\\") && at + 1 < bytes.count {
                    out.append(bytes[at + 1])
                    at += 2
                    continue
                }
                if b == UInt8(ascii: "\n") { line += 1 }
                out.append(b)
                at += 1
            }
            throw error("a string is not closed (missing \")")
        }
    }
}

// MARK: - The label and the metadata area

/// Why a device's LVM label or metadata area could not be read exactly.
public struct LVMFormatError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problem: String
    public init(_ problem: String) { self.problem = problem }
    public var description: String { problem }
}

/// LVM2's checksum (`lib/misc/crc.c`): CRC-32 (polynomial 0xEDB88320) from 0xf597a6cf, no final inversion.
public enum LVMChecksum {
    public static let initial: UInt32 = 0xf597_a6cf
    static let table: [UInt32] = (0..<256).map { (n: Int) -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xedb8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func update(_ crc: UInt32, _ bytes: some Collection<UInt8>) -> UInt32 {
        var c = crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        return c
    }
}

/// A physical volume's label (`LABELONE` in one of the first four 512-byte sectors) and its
/// `pv_header`: the volume's UUID and where its metadata areas are.
public struct LVMLabel: Hashable, Sendable {
    /// The 32 characters of the UUID, without the dashes the text format writes.
    public var pvUUID: String
    public var deviceSizeBytes: UInt64
    /// Where the metadata areas are on the device, in bytes (usually one, at 4 KiB).
    public var metadataAreas: [Area]
    public struct Area: Hashable, Sendable {
        public var offset: UInt64
        public var size: UInt64
        public init(offset: UInt64, size: UInt64) {
            self.offset = offset
            self.size = size
        }
    }

    public init(pvUUID: String, deviceSizeBytes: UInt64, metadataAreas: [Area]) {
        self.pvUUID = pvUUID
        self.deviceSizeBytes = deviceSizeBytes
        self.metadataAreas = metadataAreas
    }

    /// How many bytes from the device's start `parse` needs: the four sectors LVM scans.
    public static let scanBytes = 2048

    /// The label in `bytes` (the device's first `scanBytes`), nil when there is none; an error when
    /// one is there but damaged.
    public static func parse(_ bytes: [UInt8]) throws(LVMFormatError) -> LVMLabel? {
        let magic = Array("LABELONE".utf8)
        for sector in 0..<4 {
            let base = sector * 512
            guard base + 512 <= bytes.count, Array(bytes[base..<base + 8]) == magic else { continue }
            guard le64(bytes, base + 8) == UInt64(sector) else { continue }
            let crc = le32(bytes, base + 16)
            guard LVMChecksum.update(LVMChecksum.initial, bytes[(base + 20)..<(base + 512)]) == crc else {
                throw LVMFormatError("the LVM label in sector \(sector) has a bad checksum")
            }
            guard Array(bytes[(base + 24)..<(base + 32)]) == Array("LVM2 001".utf8) else {
                throw LVMFormatError("the LVM label in sector \(sector) is not of type LVM2 001")
            }
            let header = base + Int(le32(bytes, base + 20))
            guard header >= base + 32, header + 48 <= base + 512 else {
                throw LVMFormatError("the LVM label in sector \(sector) points outside its sector")
            }
            let uuid = bytes[header..<header + 32]
            guard uuid.allSatisfy({ $0 >= 0x21 && $0 < 0x7f }) else {
                throw LVMFormatError("the LVM label in sector \(sector) has an unreadable UUID")
            }
            var label = LVMLabel(
                pvUUID: String(decoding: uuid, as: UTF8.self), deviceSizeBytes: le64(bytes, header + 32),
                metadataAreas: [])
            // Data areas, then metadata areas: each list ends with an all-zero entry.
            var at = header + 40
            for list in 0..<2 {
                while true {
                    guard at + 16 <= base + 512 else {
                        throw LVMFormatError("the LVM label in sector \(sector) has an unterminated area list")
                    }
                    let offset = le64(bytes, at)
                    let size = le64(bytes, at + 8)
                    at += 16
                    if offset == 0 && size == 0 { break }
                    if list == 1 { label.metadataAreas.append(Area(offset: offset, size: size)) }
                }
            }
            return label
        }
        return nil
    }
}

/// A metadata area's header (`mda_header`, its first 512 bytes) and where the committed
/// metadata text lies in the area.
public struct LVMMetadataArea: Hashable, Sendable {
    public static let headerSize = 512
    /// The area's start and size on the device, in bytes.
    public var start: UInt64
    public var size: UInt64
    /// The committed text: its offset from the area's start, length and checksum; nil when the
    /// area holds none (a volume in no group, or an area LVM was told to ignore).
    public var location: Location?
    public struct Location: Hashable, Sendable {
        public var offset: UInt64
        public var length: UInt64
        public var checksum: UInt32
    }

    public static func parseHeader(_ bytes: [UInt8], at start: UInt64) throws(LVMFormatError) -> LVMMetadataArea {
        guard bytes.count >= headerSize else { throw LVMFormatError("the metadata area header at \(start) is short") }
        guard LVMChecksum.update(LVMChecksum.initial, bytes[4..<headerSize]) == le32(bytes, 0) else {
            throw LVMFormatError("the metadata area header at byte \(start) has a bad checksum")
        }
        guard Array(bytes[4..<20]) == Array(" LVM2 x[5A%r0N*>".utf8) else {
            throw LVMFormatError("the metadata area header at byte \(start) has no LVM2 magic")
        }
        guard le32(bytes, 20) == 1 else {
            throw LVMFormatError("the metadata area header at byte \(start) is version \(le32(bytes, 20)), not 1")
        }
        guard le64(bytes, 24) == start else {
            throw LVMFormatError("the metadata area header at byte \(start) says it starts at \(le64(bytes, 24))")
        }
        let size = le64(bytes, 32)
        var area = LVMMetadataArea(start: start, size: size, location: nil)
        let (offset, length, checksum, flags) = (le64(bytes, 40), le64(bytes, 48), le32(bytes, 56), le32(bytes, 60))
        let ignored: UInt32 = 1  // RAW_LOCN_IGNORED
        guard length != 0, flags & ignored == 0 else { return area }
        guard size > UInt64(headerSize), offset >= UInt64(headerSize), offset < size,
            length <= size - UInt64(headerSize)
        else {
            throw LVMFormatError(
                "the metadata area at byte \(start) points outside itself (text at \(offset), \(length) bytes)")
        }
        area.location = Location(offset: offset, length: length, checksum: checksum)
        return area
    }

    /// The byte ranges on the device that hold the text, in order: one, or two when the text wraps
    /// around the end of the area's circular buffer.
    public var textRanges: [(offset: UInt64, length: UInt64)] {
        guard let location else { return [] }
        let first = min(location.length, size - location.offset)
        var ranges = [(start + location.offset, first)]
        if first < location.length {
            ranges.append((start + UInt64(Self.headerSize), location.length - first))
        }
        return ranges
    }

    /// The text from the bytes of `textRanges`, checked against the header's checksum.
    public func text(from parts: [[UInt8]]) throws(LVMFormatError) -> String {
        guard let location else { throw LVMFormatError("the metadata area at byte \(start) holds no text") }
        var crc = LVMChecksum.initial
        var all: [UInt8] = []
        for part in parts {
            crc = LVMChecksum.update(crc, part)
            all += part
        }
        guard UInt64(all.count) == location.length, crc == location.checksum else {
            throw LVMFormatError("the metadata text in the area at byte \(start) does not match its checksum")
        }
        while all.last == 0 { all.removeLast() }
        return String(decoding: all, as: UTF8.self)
    }
}

func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
    (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
}

func le64(_ b: [UInt8], _ at: Int) -> UInt64 {
    (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
}

// MARK: - The volume group

/// One volume group as its metadata text says, reduced to what `pvs`/`lvs` would report, or why
/// it cannot be (`unsupported`: anything but plain linear and striped volumes in a local group
/// whose every volume is present; `lvm` itself then reads it).
public struct LVMVolumeGroupMetadata: Hashable, Sendable {
    public var name: String
    /// With dashes, as `vg_uuid` shows it.
    public var id: String
    public var seqno: Int64
    public var extentSizeBytes: UInt64
    public var physicalVolumes: [PhysicalVolume]
    public var logicalVolumes: [LogicalVolume]
    /// Extents that logical volumes use, visible or not.
    public var allocatedExtents: UInt64
    public var unsupported: String?

    public struct PhysicalVolume: Hashable, Sendable {
        /// The UUID without dashes, as the label has it.
        public var uuid: String
        public var extents: UInt64
        public init(uuid: String, extents: UInt64) {
            self.uuid = uuid
            self.extents = extents
        }
    }
    public struct LogicalVolume: Hashable, Sendable {
        public var name: String
        public var extents: UInt64
        /// Hidden volumes (a pool's parts, a mirror's legs) are not listed by `lvs`.
        public var visible: Bool
    }

    public var extentCount: UInt64 { physicalVolumes.reduce(0) { $0 + $1.extents } }
    public var freeExtents: UInt64 { extentCount >= allocatedExtents ? extentCount - allocatedExtents : 0 }

    static let groupStatus: Set<String> = ["RESIZEABLE", "READ", "WRITE"]
    static let volumeStatus: Set<String> = ["ALLOCATABLE"]
    static let logicalStatus: Set<String> = ["READ", "WRITE", "VISIBLE"]

    /// Reads the text of one metadata area. Errors name what is malformed; features this does not
    /// describe exactly leave `unsupported` set instead.
    public init(text: String) throws(LVMFormatError) {
        let top: LVMSection
        do { top = try LVMText.parse(text) } catch { throw LVMFormatError("\(error)") }
        let groups = top.sections
        guard groups.count == 1, let (name, vg) = groups.first else {
            throw LVMFormatError("the metadata text holds \(groups.count) volume groups, not one")
        }
        func need<T>(_ value: T?, _ key: String, in section: String) throws(LVMFormatError) -> T {
            guard let value else { throw LVMFormatError("\(section): \"\(key)\" is missing or of the wrong kind") }
            return value
        }
        func count(_ value: LVMValue?, _ key: String, in section: String) throws(LVMFormatError) -> UInt64 {
            let n = try need(value?.integer, key, in: section)
            guard n >= 0 else { throw LVMFormatError("\(section): \"\(key)\" is negative") }
            return UInt64(n)
        }
        self.name = name
        id = try need(vg["id"]?.string, "id", in: name)
        seqno = try need(vg["seqno"]?.integer, "seqno", in: name)
        let extentSectors = try count(vg["extent_size"], "extent_size", in: name)
        guard extentSectors > 0, extentSectors <= 1 << 32 else {
            throw LVMFormatError("\(name): extent_size \(extentSectors) is out of range")
        }
        extentSizeBytes = extentSectors * 512
        physicalVolumes = []
        logicalVolumes = []
        allocatedExtents = 0
        var unsupported: [String] = []

        let status = try need(vg["status"]?.strings, "status", in: name)
        if let odd = status.first(where: { !Self.groupStatus.contains($0) }) {
            unsupported.append("group status \(odd)")
        }
        if let flags = vg["flags"]?.strings, !flags.isEmpty {
            unsupported.append("group flags \(flags.joined(separator: ","))")
        }
        for key in ["lock_type", "system_id"] where vg[key]?.string.map({ !$0.isEmpty }) ?? (vg[key] != nil) {
            unsupported.append(key)
        }
        if vg["format"]?.string.map({ $0 != "lvm2" }) == true { unsupported.append("format \(vg["format"]!.string!)") }

        var pvKeys: [String: Int] = [:]
        for (key, pv) in try need(vg["physical_volumes"]?.section, "physical_volumes", in: name).sections {
            let what = "\(name)/\(key)"
            let uuid = try need(pv["id"]?.string, "id", in: what).filter { $0 != "-" }
            guard uuid.count == 32 else { throw LVMFormatError("\(what): id \"\(uuid)\" is not a UUID") }
            if let odd = (try need(pv["status"]?.strings, "status", in: what)).first(where: {
                !Self.volumeStatus.contains($0)
            }) {
                unsupported.append("physical volume status \(odd)")
            }
            if let flags = pv["flags"]?.strings, !flags.isEmpty {
                unsupported.append("physical volume flags \(flags.joined(separator: ","))")
            }
            guard pvKeys[key] == nil else { throw LVMFormatError("\(what) is listed twice") }
            pvKeys[key] = physicalVolumes.count
            physicalVolumes.append(PhysicalVolume(uuid: uuid, extents: try count(pv["pe_count"], "pe_count", in: what)))
        }
        for (lvName, lv) in vg["logical_volumes"]?.section?.sections ?? [] {
            let what = "\(name)/\(lvName)"
            let lvStatus = try need(lv["status"]?.strings, "status", in: what)
            if let odd = lvStatus.first(where: { !Self.logicalStatus.contains($0) }) {
                unsupported.append("volume status \(odd)")
            }
            if let flags = lv["flags"]?.strings, !flags.isEmpty {
                unsupported.append("volume flags \(flags.joined(separator: ","))")
            }
            let segmentCount = try count(lv["segment_count"], "segment_count", in: what)
            let segments = lv.sections.filter { $0.name.hasPrefix("segment") }
            guard segments.count == segmentCount else {
                throw LVMFormatError(
                    "\(what): segment_count is \(segmentCount) but \(segments.count) segments are listed")
            }
            var extents: UInt64 = 0
            var next: UInt64 = 0
            for (segmentName, segment) in segments {
                let where_ = "\(what)/\(segmentName)"
                let start = try count(segment["start_extent"], "start_extent", in: where_)
                let length = try count(segment["extent_count"], "extent_count", in: where_)
                guard start == next, length > 0 else { throw LVMFormatError("\(where_): extents are not contiguous") }
                next = start + length
                let type = try need(segment["type"]?.string, "type", in: where_)
                if type != "striped" {
                    unsupported.append("segment type \(type)")
                } else {
                    let stripes = try count(segment["stripe_count"], "stripe_count", in: where_)
                    guard case .array(let areas) = try need(segment["stripes"], "stripes", in: where_),
                        stripes > 0, areas.count == 2 * Int(stripes), length % stripes == 0
                    else { throw LVMFormatError("\(where_): stripes do not match stripe_count") }
                    for pair in stride(from: 0, to: areas.count, by: 2) {
                        guard let pv = areas[pair].string, pvKeys[pv] != nil,
                            areas[pair + 1].integer.map({ $0 >= 0 }) == true
                        else {
                            throw LVMFormatError("\(where_): a stripe names no physical volume of the group")
                        }
                    }
                }
                extents += length
            }
            allocatedExtents += extents
            logicalVolumes.append(LogicalVolume(name: lvName, extents: extents, visible: lvStatus.contains("VISIBLE")))
        }
        guard allocatedExtents <= extentCount else {
            throw LVMFormatError("\(name): volumes use \(allocatedExtents) extents of \(extentCount)")
        }
        self.unsupported = unsupported.isEmpty ? nil : unsupported.joined(separator: ", ")
    }
}

// MARK: - What pvs and lvs would say

/// The physical volumes on a set of devices and their groups, as `lvm pvs`/`lvs` restricted to
/// those devices would report them, built from each device's label and metadata texts.
public struct LVMView: Hashable, Sendable {
    /// Every device with a physical volume label, sorted, and its group's name ("" for none).
    public var physicalVolumes: [(device: String, group: String)] { volumes.map { ($0.device, $0.group) } }
    public var groups: [Group]

    var volumes: [Volume]
    struct Volume: Hashable, Sendable { var device: String; var group: String }

    public struct Group: Hashable, Sendable {
        public var name: String
        public var uuid: String
        public var extentSizeBytes: UInt64
        public var extentCount: UInt64
        public var freeExtents: UInt64
        /// Its physical volumes' devices, sorted.
        public var devices: [String]
        /// Visible logical volumes in metadata order, with their sizes in bytes.
        public var logicalVolumes: [(name: String, sizeBytes: UInt64)] { volumes.map { ($0.name, $0.sizeBytes) } }
        var volumes: [LV]
        struct LV: Hashable, Sendable { var name: String; var sizeBytes: UInt64 }
    }

    /// What one device gave: its label (nil when none) and the text of each metadata area.
    public struct Device: Sendable {
        public var path: String
        public var label: LVMLabel?
        public var texts: [String]
        public init(path: String, label: LVMLabel?, texts: [String]) {
            self.path = path
            self.label = label
            self.texts = texts
        }
    }

    /// Why the devices' LVM state is left to `lvm` to read.
    public struct Unsupported: Error, Hashable, Sendable, CustomStringConvertible {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    public static func build(_ devices: [Device]) throws(Unsupported) -> LVMView {
        var deviceOf: [String: String] = [:]
        var metadata: [String: LVMVolumeGroupMetadata] = [:]  // by group id
        for device in devices.sorted(by: { $0.path < $1.path }) {
            guard let label = device.label else { continue }
            if let other = deviceOf[label.pvUUID] {
                throw Unsupported("physical volume \(label.pvUUID) is on both \(other) and \(device.path)")
            }
            deviceOf[label.pvUUID] = device.path
            for text in device.texts {
                let group: LVMVolumeGroupMetadata
                do { group = try LVMVolumeGroupMetadata(text: text) } catch {
                    throw Unsupported("the metadata on \(device.path) is not readable here: \(error)")
                }
                if let reason = group.unsupported { throw Unsupported("volume group \(group.name) has \(reason)") }
                guard group.physicalVolumes.contains(where: { $0.uuid == label.pvUUID }) else {
                    throw Unsupported("the metadata on \(device.path) does not list its own physical volume")
                }
                if let known = metadata[group.id], known != group {
                    throw Unsupported(
                        "the copies of volume group \(group.name)'s metadata differ (seqno \(known.seqno) and \(group.seqno))"
                    )
                }
                metadata[group.id] = group
            }
        }
        var view = LVMView(groups: [], volumes: [])
        var groupOf: [String: String] = [:]
        for group in metadata.values.sorted(by: { $0.name < $1.name }) {
            if view.groups.contains(where: { $0.name == group.name }) {
                throw Unsupported("two volume groups are named \(group.name)")
            }
            var paths: [String] = []
            for pv in group.physicalVolumes {
                guard let path = deviceOf[pv.uuid] else {
                    throw Unsupported(
                        "a physical volume of volume group \(group.name) (\(pv.uuid)) is not on these devices")
                }
                if let other = groupOf[pv.uuid], other != group.name {
                    throw Unsupported("physical volume \(path) is in both \(other) and \(group.name)")
                }
                groupOf[pv.uuid] = group.name
                paths.append(path)
            }
            view.groups.append(
                Group(
                    name: group.name, uuid: group.id, extentSizeBytes: group.extentSizeBytes,
                    extentCount: group.extentCount, freeExtents: group.freeExtents, devices: paths.sorted(),
                    volumes: group.logicalVolumes.filter(\.visible).map {
                        Group.LV(name: $0.name, sizeBytes: $0.extents * group.extentSizeBytes)
                    }))
        }
        for (uuid, path) in deviceOf.sorted(by: { $0.value < $1.value }) {
            view.volumes.append(Volume(device: path, group: groupOf[uuid] ?? ""))
        }
        return view
    }
}
