// LVM2's on-disk metadata, read without running `lvm`: the physical volume label in the first
// sectors and the metadata area's header (LVMLabel.swift), the volume group's text (LVMText.swift),
// and here what that text says, reduced to what `pvs`/`lvs` would report. Pure: bytes in, values
// out; the agent's storage observer reads the bytes (ProvisionerSystem's `LVMReader`) and falls back
// to `lvm pvs`/`lvs` for anything this does not describe exactly (`LVMView.Unsupported`). Every
// checksum is checked, so a torn or foreign sector is never taken for metadata.

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

    /// False when the group's status lacks WRITE: its volumes are activated read-only.
    public var writable = true

    public struct PhysicalVolume: Hashable, Sendable {
        /// The UUID without dashes, as the label has it.
        public var uuid: String
        public var extents: UInt64
        /// Where its first extent starts on the device, in 512-byte sectors (`pe_start`).
        public var extentStartSector: UInt64?
        public init(uuid: String, extents: UInt64, extentStartSector: UInt64? = nil) {
            self.uuid = uuid
            self.extents = extents
            self.extentStartSector = extentStartSector
        }
    }
    public struct LogicalVolume: Hashable, Sendable {
        public var name: String
        public var extents: UInt64
        /// Hidden volumes (a pool's parts, a mirror's legs) are not listed by `lvs`.
        public var visible: Bool
        /// With dashes, as `lv_uuid` shows it (nil when the text has none).
        public var id: String?
        /// False when the status lacks WRITE.
        public var writable = true
        /// An explicit `read_ahead` (sectors); nil for LVM's default, "auto".
        public var readAhead: Int64?
        /// Its segments in order; only plain (`striped`) ones when the group is supported.
        public var segments: [Segment] = []
    }

    /// Extents `start..<start+count` of a volume, laid over `areas` (one area is linear; more are
    /// striped in chunks of `stripeSectors`).
    public struct Segment: Hashable, Sendable {
        public var startExtent: UInt64
        public var extentCount: UInt64
        /// The chunk size of a striped segment in sectors (0 for one area).
        public var stripeSectors: UInt64
        public var areas: [Area]
        public struct Area: Hashable, Sendable {
            /// The index into `physicalVolumes`.
            public var physicalVolume: Int
            /// The first extent of the area on that physical volume.
            public var extent: UInt64
            public init(physicalVolume: Int, extent: UInt64) {
                self.physicalVolume = physicalVolume
                self.extent = extent
            }
        }
        public init(startExtent: UInt64, extentCount: UInt64, stripeSectors: UInt64, areas: [Area]) {
            self.startExtent = startExtent
            self.extentCount = extentCount
            self.stripeSectors = stripeSectors
            self.areas = areas
        }
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
            // LVM keeps every count and extent number in 32 bits; larger is not LVM's.
            guard n <= Int64(UInt32.max) else { throw LVMFormatError("\(section): \"\(key)\" \(n) is out of range") }
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
        writable = status.contains("WRITE")
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
            guard Self.isID(uuid) else { throw LVMFormatError("\(what): id \"\(uuid)\" is not a UUID") }
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
            var start: UInt64?
            if pv["pe_start"] != nil {
                let sectors = try need(pv["pe_start"]?.integer, "pe_start", in: what)
                guard sectors >= 0 else { throw LVMFormatError("\(what): \"pe_start\" is negative") }
                start = UInt64(sectors)
            }
            physicalVolumes.append(
                PhysicalVolume(
                    uuid: uuid, extents: try count(pv["pe_count"], "pe_count", in: what), extentStartSector: start))
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
            var parsed: [Segment] = []
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
                    var laid: [Segment.Area] = []
                    for pair in stride(from: 0, to: areas.count, by: 2) {
                        guard let pv = areas[pair].string, let index = pvKeys[pv],
                            let extent = areas[pair + 1].integer, extent >= 0
                        else {
                            throw LVMFormatError("\(where_): a stripe names no physical volume of the group")
                        }
                        laid.append(Segment.Area(physicalVolume: index, extent: UInt64(extent)))
                    }
                    let chunk = stripes > 1 ? try count(segment["stripe_size"], "stripe_size", in: where_) : 0
                    parsed.append(
                        Segment(startExtent: start, extentCount: length, stripeSectors: chunk, areas: laid))
                }
                extents += length
            }
            allocatedExtents += extents
            var volume = LogicalVolume(name: lvName, extents: extents, visible: lvStatus.contains("VISIBLE"))
            volume.id = lv["id"]?.string
            volume.writable = lvStatus.contains("WRITE")
            volume.readAhead = lv["read_ahead"]?.integer
            volume.segments = parsed
            logicalVolumes.append(volume)
        }
        guard allocatedExtents <= extentCount else {
            throw LVMFormatError("\(name): volumes use \(allocatedExtents) extents of \(extentCount)")
        }
        // Every size in bytes is at most this, so none of them overflows.
        guard !extentCount.multipliedReportingOverflow(by: extentSizeBytes).overflow else {
            throw LVMFormatError("\(name): \(extentCount) extents of \(extentSizeBytes) bytes is out of range")
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
    /// Each group's metadata, by name, and the device of each physical volume, by UUID: what
    /// activating a group from here needs (`deviceMapperVolumes(of:numbers:)`).
    var metadata: [String: LVMVolumeGroupMetadata] = [:]
    var deviceOf: [String: String] = [:]

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
        view.deviceOf = deviceOf
        var groupOf: [String: String] = [:]
        for group in metadata.values.sorted(by: { $0.name < $1.name }) {
            if view.groups.contains(where: { $0.name == group.name }) {
                throw Unsupported("two volume groups are named \(group.name)")
            }
            view.metadata[group.name] = group
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
