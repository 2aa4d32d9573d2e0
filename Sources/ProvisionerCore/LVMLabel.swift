// LVM2's on-disk metadata, read without running `lvm`: this file is the binary part, the
// physical volume's label in its first sectors and the metadata area's header
// (`lib/label/label.h`, `lib/format_text/layout.h`), each with LVM's checksum.

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
