// What `lvm vgchange -ay` loads into device-mapper for a volume group of plain linear and striped
// volumes, decided from the metadata the agent has already read (LVMMetadata.swift): each volume's
// name, UUID, table and udev flags exactly as LVM makes them, so that LVM, udev and the booted
// system cannot tell the difference. ProvisionerSystem's `DeviceMapper` carries it out with three
// ioctls per volume instead of a `vgchange` run (0.6 s under QEMU's TCG, most of it LVM scanning
// the devices again). Anything else stays with `vgchange` (`LVMView.Unsupported`).

/// A block device's number, as device-mapper tables name devices (`major:minor`).
public struct DeviceNumber: Hashable, Sendable, CustomStringConvertible {
    public var major: UInt32
    public var minor: UInt32
    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }
    public var description: String { "\(major):\(minor)" }
}

/// One logical volume as device-mapper holds it once LVM has activated it.
public struct DeviceMapperVolume: Hashable, Sendable {
    /// `vg-lv` with every dash in either name doubled (LVM's `dm_build_dm_name`).
    public var name: String
    /// `LVM-` and the group's and the volume's UUIDs without dashes.
    public var uuid: String
    public var group: String
    public var volume: String
    public var readOnly: Bool
    public var targets: [Target]
    /// What goes in the upper half of the resume's cookie for udev's rules (55-dm.rules): the
    /// flags LVM gives a visible top-level volume, with the primary-source flag libdm adds.
    public var udevFlags: UInt16
    public var readAhead: ReadAhead

    /// One line of the table.
    public struct Target: Hashable, Sendable, CustomStringConvertible {
        public var startSector: UInt64
        public var sectors: UInt64
        /// `linear` or `striped`.
        public var type: String
        public var parameters: String
        public var description: String { "\(startSector) \(sectors) \(type) \(parameters)" }
    }

    /// LVM's read-ahead for a volume with the default `auto`: at least twice the widest stripe,
    /// or, for linear volumes, at least the read-ahead of the device under its first extent.
    public enum ReadAhead: Hashable, Sendable {
        case atLeast(sectors: UInt32)
        case atLeastThatOf(device: String)
    }

    /// The path udev links to the volume.
    public var path: String { "/dev/\(group)/\(volume)" }

    /// The read-ahead to set, in sectors, given the kernel's for the new device and (for
    /// `atLeastThatOf`) the device's: nil when the kernel's is already enough (libdm's
    /// `DM_READ_AHEAD_MINIMUM_FLAG`).
    public static func readAheadToSet(wanted: UInt32, current: UInt32) -> UInt32? {
        current >= wanted ? nil : wanted
    }
}

extension LVMView {
    /// libdm's udev flags: `DM_UDEV_DISABLE_LIBRARY_FALLBACK` (LVM's default: udev makes the
    /// nodes and links) and `DM_UDEV_PRIMARY_SOURCE_FLAG` (the event comes from an activation, so
    /// the booted system's udev trusts the device on its coldplug).
    public static let udevFlags: UInt16 = 0x0020 | 0x0040

    /// The device-mapper volumes `vgchange -ay` would make for `group`, the physical volumes'
    /// devices numbered by `number` (nil when the device is gone). Throws for anything LVM would do
    /// differently from a plain table: hidden or read-ahead-tuned volumes, names device-mapper
    /// would mangle, areas outside their physical volume.
    public func deviceMapperVolumes(
        of group: String, number: (String) -> DeviceNumber?
    ) throws(Unsupported) -> [DeviceMapperVolume] {
        guard let metadata = metadata[group] else { throw Unsupported("no volume group \(group) on these devices") }
        return try metadata.deviceMapperVolumes { uuid in deviceOf[uuid].map { ($0, number($0)) } }
    }
}

extension LVMVolumeGroupMetadata {
    /// Characters LVM allows in group and volume names; no name needs device-mapper's mangling.
    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix("-")
            && name.utf8.allSatisfy { c in
                (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39)
                    || c == 0x2B || c == 0x5F || c == 0x2E || c == 0x2D
            }
    }

    /// An LVM id without its dashes: 32 of LVM's 64 id characters (`a-z A-Z 0-9 ! #`).
    static func isID(_ id: String) -> Bool {
        id.utf8.count == 32
            && id.utf8.allSatisfy { c in
                (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x21
                    || c == 0x23
            }
    }

    /// See `LVMView.deviceMapperVolumes(of:number:)`; `device` gives a physical volume's (by UUID
    /// without dashes) path and number.
    func deviceMapperVolumes(
        device: (String) -> (path: String, number: DeviceNumber?)?
    ) throws(LVMView.Unsupported) -> [DeviceMapperVolume] {
        typealias Unsupported = LVMView.Unsupported
        if let unsupported { throw Unsupported("volume group \(name) has \(unsupported)") }
        guard Self.isPlainName(name) else { throw Unsupported("volume group name \(name) needs mangling") }
        let groupID = id.filter { $0 != "-" }
        guard Self.isID(groupID) else { throw Unsupported("volume group \(name) has no valid UUID") }
        let extentSectors = extentSizeBytes / 512
        var places: [(path: String, number: DeviceNumber, start: UInt64)] = []
        for pv in physicalVolumes {
            guard let (path, number) = device(pv.uuid), let number else {
                throw Unsupported("a physical volume of volume group \(name) (\(pv.uuid)) has no device")
            }
            guard let start = pv.extentStartSector else {
                throw Unsupported("physical volume \(path) of \(name) has no pe_start")
            }
            places.append((path, number, start))
        }
        var volumes: [DeviceMapperVolume] = []
        for lv in logicalVolumes {
            let what = "\(name)/\(lv.name)"
            guard lv.visible else { throw Unsupported("\(what) is hidden (part of another volume)") }
            guard Self.isPlainName(lv.name) else { throw Unsupported("volume name \(what) needs mangling") }
            guard lv.readAhead == nil else { throw Unsupported("\(what) has its own read_ahead") }
            let volumeID = (lv.id ?? "").filter { $0 != "-" }
            guard Self.isID(volumeID) else { throw Unsupported("\(what) has no valid UUID") }
            let dmName = name.replacing("-", with: "--") + "-" + lv.name.replacing("-", with: "--")
            guard dmName.utf8.count < 128 else { throw Unsupported("\(what): the device-mapper name is too long") }
            var targets: [DeviceMapperVolume.Target] = []
            var widestStripe: UInt64 = 0
            for segment in lv.segments {
                let stripes = UInt64(segment.areas.count)
                guard stripes > 0, segment.extentCount % stripes == 0 else {
                    throw Unsupported("\(what): a segment's extents do not divide among its stripes")
                }
                let perArea = segment.extentCount / stripes
                var areas: [String] = []
                for area in segment.areas {
                    let pv = physicalVolumes[area.physicalVolume]
                    guard area.extent <= pv.extents, perArea <= pv.extents - area.extent else {
                        throw Unsupported(
                            "\(what): a segment lies outside physical volume \(places[area.physicalVolume].path)")
                    }
                    let place = places[area.physicalVolume]
                    let (offset, overflow) = place.start.addingReportingOverflow(area.extent * extentSectors)
                    guard !overflow else { throw Unsupported("\(what): pe_start of \(place.path) is out of range") }
                    areas.append("\(place.number) \(offset)")
                }
                let start = segment.startExtent * extentSectors
                let sectors = segment.extentCount * extentSectors
                if stripes == 1 {
                    targets.append(.init(startSector: start, sectors: sectors, type: "linear", parameters: areas[0]))
                } else {
                    guard segment.stripeSectors > 0 else {
                        throw Unsupported("\(what): a striped segment has no stripe size")
                    }
                    targets.append(
                        .init(
                            startSector: start, sectors: sectors, type: "striped",
                            parameters: "\(stripes) \(segment.stripeSectors) " + areas.joined(separator: " ")))
                    widestStripe = max(widestStripe, min(segment.stripeSectors * stripes, 1 << 32))
                }
            }
            guard !targets.isEmpty else { throw Unsupported("\(what) has no segments") }
            let readAhead: DeviceMapperVolume.ReadAhead =
                widestStripe > 0
                ? .atLeast(sectors: UInt32(clamping: widestStripe * 2))
                : .atLeastThatOf(device: places[lv.segments[0].areas[0].physicalVolume].path)
            volumes.append(
                DeviceMapperVolume(
                    name: dmName, uuid: "LVM-" + groupID + volumeID, group: name, volume: lv.name,
                    readOnly: !lv.writable || !writable, targets: targets, udevFlags: LVMView.udevFlags,
                    readAhead: readAhead))
        }
        return volumes
    }
}
