/// Writes a layout back out in the advanced schema, so that what
/// `layout expand` and `layout capture` print is a layout the agent reads.
extension DiskLayout {
    public var yaml: String {
        var out: [String] = []
        out.append("wipe: \(wipe.rawValue)")
        out.append("disks:")
        for disk in disks {
            out.append("  \(disk.name):")
            out.append("    match: \(disk.criteria.yamlFlow)")
            guard !disk.partitions.isEmpty else { continue }
            out.append("    partitions:")
            for part in disk.partitions {
                var fields = ["name: \(part.name)", "size: \(part.size.yaml)", "type: \(part.type)"]
                if let fs = part.filesystem { fields.append("filesystem: \(fs.yamlFlow)") }
                if part.preserve { fields.append("preserve: true") }
                out.append("      - { \(fields.joined(separator: ", ")) }")
            }
        }
        if !arrays.isEmpty {
            out.append("arrays:")
            for array in arrays {
                out.append("  \(array.name):")
                out.append("    level: \(array.level.rawValue)")
                out.append("    metadata: \"\(array.metadata)\"")
                out.append("    devices: [\(array.members.map(\.description).joined(separator: ", "))]")
                if let fs = array.filesystem { out.append("    filesystem: \(fs.yamlFlow)") }
                if array.preserve { out.append("    preserve: true") }
            }
        }
        if !volumeGroups.isEmpty {
            out.append("volume-groups:")
            for group in volumeGroups {
                out.append("  \(group.name):")
                out.append("    devices: [\(group.devices.map(\.description).joined(separator: ", "))]")
                guard !group.volumes.isEmpty else { continue }
                out.append("    volumes:")
                for lv in group.volumes {
                    var fields = ["size: \(lv.size.yaml)"]
                    if let fs = lv.filesystem { fields.append("filesystem: \(fs.yamlFlow)") }
                    if lv.preserve { fields.append("preserve: true") }
                    out.append("      \(lv.name): { \(fields.joined(separator: ", ")) }")
                }
            }
        }
        return out.joined(separator: "\n") + "\n"
    }
}

extension SizeSpec {
    var yaml: String {
        switch self {
        case .fixed(let size): size.exactDescription
        case .percent, .rest: description
        }
    }
}

extension ByteSize {
    /// The largest unit that states the size exactly: `512MiB`, `20GB`, `1000448B`.
    public var exactDescription: String {
        guard bytes > 0 else { return "0" }
        for (unit, factor) in [("TiB", UInt64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)]
        where bytes % factor == 0 {
            return "\(bytes / factor)\(unit)"
        }
        for (unit, factor) in [("TB", UInt64(1_000_000_000_000)), ("GB", 1_000_000_000), ("MB", 1_000_000)]
        where bytes % factor == 0 {
            return "\(bytes / factor)\(unit)"
        }
        if bytes % 1024 == 0 { return "\(bytes / 1024)KiB" }
        return "\(bytes)"
    }
}

extension FilesystemSpec {
    var yamlFlow: String {
        var fields = ["type: \(type.rawValue)"]
        if let label { fields.append("label: \(yamlScalar(label))") }
        if let mount { fields.append("mount: \(yamlScalar(mount))") }
        if !mkfsOptions.isEmpty { fields.append("mkfs-options: [\(mkfsOptions.map(yamlScalar).joined(separator: ", "))]") }
        if !mountOptions.isEmpty {
            fields.append("mount-options: [\(mountOptions.map(yamlScalar).joined(separator: ", "))]")
        }
        return "{ \(fields.joined(separator: ", ")) }"
    }
}

extension DiskCriteria {
    var yamlFlow: String {
        var fields: [String] = []
        if type != .any { fields.append("type: \(type.rawValue)") }
        if let vendor { fields.append("vendor: \(yamlScalar(vendor.pattern))") }
        if let model { fields.append("model: \(yamlScalar(model.pattern))") }
        if let serial { fields.append("serial: \(yamlScalar(serial.pattern))") }
        if let wwn { fields.append("wwn: \(yamlScalar(wwn.pattern))") }
        if let path { fields.append("path: \(yamlScalar(path.pattern))") }
        if let size { fields.append("size: \(size.exactDescription)") }
        if let tolerance { fields.append("tolerance: \(tolerance)") }
        if let min { fields.append("min: \(min.exactDescription)") }
        if let max { fields.append("max: \(max.exactDescription)") }
        if removable { fields.append("removable: true") }
        return "{ \(fields.joined(separator: ", ")) }"
    }
}

/// A YAML scalar, double-quoted with escapes.
func yamlScalar(_ text: String) -> String { YAMLText.quoted(text) }

/// Writing YAML that the strict reader reads back to exactly the same text.
public enum YAMLText {
    /// `text` as a double-quoted scalar (JSON's escapes are valid YAML).
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if isSpecial(scalar) {
                    let hex = String(scalar.value, radix: 16)
                    out += scalar.value <= 0xFF ? "\\x" + (hex.count == 1 ? "0" + hex : hex) : "\\u" + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Controls, and what YAML reads as a line break or a byte-order mark (NEL, LS, PS, BOM): never
    /// written raw, in a quoted scalar or a block.
    public static func isSpecial(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0xFEFF: true
        default: false
        }
    }
}
