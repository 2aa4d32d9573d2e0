import Yams

/// A problem in a config, layout or manifest, naming the field and what is wrong
/// with it: `disks.disk0.match.size: "12XB" is not a size`.
public struct ConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Dotted path of the field (`disks.disk0.match.size`), or `(document)`.
    public var field: String
    public var problem: String
    /// Where the field is in the source text, when known (`layout.yaml:12`).
    public var location: String?

    public init(field: String, problem: String, location: String? = nil) {
        self.field = field
        self.problem = problem
        self.location = location
    }

    public var description: String {
        let at = location.map { " (\($0))" } ?? ""
        return "\(field): \(problem)\(at)"
    }
}

/// A parsed YAML (or JSON: JSON is YAML) document that is read field by field.
///
/// Readers ask for the keys they know; `finish()` then refuses any key nobody
/// asked for, so a typo such as `tolerence:` is an error instead of a silently
/// ignored setting.
public struct ConfigNode {
    public enum Value {
        case null
        case scalar(String)
        case mapping([(key: String, value: ConfigNode)])
        case sequence([ConfigNode])
    }

    public let value: Value
    /// Dotted path from the document root.
    public let path: String
    /// `source:line`, when the text came from a named source.
    public let location: String?

    init(value: Value, path: String, location: String?) {
        self.value = value
        self.path = path
        self.location = location
    }

    /// Parses a YAML or JSON document. `source` names it in error messages.
    public static func parse(_ text: String, source: String) throws(ConfigError) -> ConfigNode {
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(field: "(document)", problem: "is not valid YAML or JSON: \(error)", location: source)
        } catch {
            throw ConfigError(field: "(document)", problem: "cannot be read: \(error)", location: source)
        }
        guard let root else {
            throw ConfigError(field: "(document)", problem: "is empty", location: source)
        }
        return try convert(root, path: "", source: source)
    }

    private static func convert(_ node: Yams.Node, path: String, source: String) throws(ConfigError) -> ConfigNode {
        let location = node.mark.map { "\(source):\($0.line)" } ?? source
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
                return ConfigNode(value: .null, path: path, location: location)
            }
            return ConfigNode(value: .scalar(scalar.string), path: path, location: location)
        case .mapping(let mapping):
            var entries: [(key: String, value: ConfigNode)] = []
            var seen = Set<String>()
            for (keyNode, valueNode) in mapping {
                guard case .scalar(let keyScalar) = keyNode else {
                    throw ConfigError(field: display(path), problem: "has a key that is not a plain name", location: location)
                }
                let key = keyScalar.string
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard seen.insert(key).inserted else {
                    throw ConfigError(field: childPath, problem: "appears twice", location: location)
                }
                entries.append((key, try convert(valueNode, path: childPath, source: source)))
            }
            return ConfigNode(value: .mapping(entries), path: path, location: location)
        case .sequence(let sequence):
            var items: [ConfigNode] = []
            for (index, item) in sequence.enumerated() {
                items.append(try convert(item, path: "\(path)[\(index)]", source: source))
            }
            return ConfigNode(value: .sequence(items), path: path, location: location)
        case .alias:
            throw ConfigError(field: display(path), problem: "uses a YAML alias, which is not supported", location: location)
        }
    }

    static func display(_ path: String) -> String { path.isEmpty ? "(document)" : path }

    public func error(_ problem: String) -> ConfigError {
        ConfigError(field: Self.display(path), problem: problem, location: location)
    }

    public var kindName: String {
        switch value {
        case .null: "nothing"
        case .scalar(let s): "\"\(s)\""
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }

    // MARK: Typed reads

    public func string() throws(ConfigError) -> String {
        guard case .scalar(let s) = value else { throw error("expected a string, found \(kindName)") }
        return s
    }

    public func bool() throws(ConfigError) -> Bool {
        switch try string().lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("expected true or false, found \(kindName)")
        }
    }

    public func int() throws(ConfigError) -> Int {
        guard let n = Int(try string()) else { throw error("expected a whole number, found \(kindName)") }
        return n
    }

    public func size() throws(ConfigError) -> ByteSize {
        let text = try string()
        do { return try ByteSize(parsing: text) } catch { throw self.error(error.description) }
    }

    public func glob(caseInsensitive: Bool) throws(ConfigError) -> Glob {
        let text = try string()
        do { return try Glob(text, caseInsensitive: caseInsensitive) } catch { throw self.error(error.description) }
    }

    public func list() throws(ConfigError) -> [ConfigNode] {
        switch value {
        case .sequence(let items): return items
        default: throw error("expected a list, found \(kindName)")
        }
    }

    public func mapping() throws(ConfigError) -> ConfigMapping {
        guard case .mapping(let entries) = value else { throw error("expected a mapping, found \(kindName)") }
        return ConfigMapping(node: self, entries: entries)
    }
}

/// The keys of one mapping, with bookkeeping of which ones were read.
public final class ConfigMapping {
    public let node: ConfigNode
    public let entries: [(key: String, value: ConfigNode)]
    private var used = Set<String>()

    init(node: ConfigNode, entries: [(key: String, value: ConfigNode)]) {
        self.node = node
        self.entries = entries
    }

    public var keys: [String] { entries.map(\.key) }

    /// The value of `key`, or nil when it is absent or written as null.
    public func optional(_ key: String) -> ConfigNode? {
        used.insert(key)
        guard let entry = entries.first(where: { $0.key == key }) else { return nil }
        if case .null = entry.value.value { return nil }
        return entry.value
    }

    public func required(_ key: String) throws(ConfigError) -> ConfigNode {
        guard let value = optional(key) else {
            let path = node.path.isEmpty ? key : "\(node.path).\(key)"
            throw ConfigError(field: path, problem: "is required", location: node.location)
        }
        return value
    }

    /// Marks every key as read, for mappings whose keys are names (like `disks:`).
    public func all() -> [(key: String, value: ConfigNode)] {
        for entry in entries { used.insert(entry.key) }
        return entries
    }

    /// Refuses keys that no reader asked for.
    public func finish() throws(ConfigError) {
        for entry in entries where !used.contains(entry.key) {
            let known = used.sorted().joined(separator: ", ")
            throw entry.value.error("is not a known field here (known: \(known))")
        }
    }
}
