import CYAML

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

    /// How deep mappings and lists may nest in any document read here (docs/threat-model.md).
    public static let maxDepth = 64

    init(value: Value, path: String, location: String?) {
        self.value = value
        self.path = path
        self.location = location
    }

    /// Parses a YAML or JSON document. `source` names it in error messages.
    ///
    /// Anchors and aliases are refused: configs do not need them, and an alias
    /// bomb must not be able to blow up the agent. Mappings and lists nest at most
    /// `maxDepth` levels (a layout needs 6): a deeper document is refused where it
    /// crosses the limit instead of running the reader out of stack.
    public static func parse(_ text: String, source: String) throws(ConfigError) -> ConfigNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw ConfigError(field: "(document)", problem: "cannot be parsed: out of memory", location: source)
        }
        defer { yaml_parser_delete(&parser) }
        var document = yaml_document_t()
        let bytes = Array(text.utf8)
        let loaded = bytes.withUnsafeBufferPointer { buffer -> Int32 in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            return yaml_parser_load(&parser, &document)
        }
        guard loaded == 1 else {
            let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
            let line = Int(parser.problem_mark.line) + 1
            throw ConfigError(
                field: "(document)", problem: "is not valid YAML or JSON: \(problem)", location: "\(source):\(line)")
        }
        defer { yaml_document_delete(&document) }
        guard let root = yaml_document_get_root_node(&document) else {
            throw ConfigError(field: "(document)", problem: "is empty", location: source)
        }
        var visited = Set<Int>()
        return try convert(root, document: &document, path: "", source: source, visited: &visited, depth: 0)
    }

    private static func convert(
        _ node: UnsafeMutablePointer<yaml_node_t>, document: inout yaml_document_t, path: String, source: String,
        visited: inout Set<Int>, depth: Int
    ) throws(ConfigError) -> ConfigNode {
        let location = "\(source):\(node.pointee.start_mark.line + 1)"
        if depth > maxDepth, node.pointee.type == YAML_MAPPING_NODE || node.pointee.type == YAML_SEQUENCE_NODE {
            throw ConfigError(
                field: display(path), problem: "nests deeper than \(maxDepth) levels, the limit", location: location)
        }
        // A node reached twice is an alias: refuse instead of expanding it.
        let identity = Int(bitPattern: node)
        guard visited.insert(identity).inserted else {
            throw ConfigError(
                field: display(path), problem: "uses a YAML alias, which is not supported", location: location)
        }
        switch node.pointee.type {
        case YAML_SCALAR_NODE:
            let scalar = node.pointee.data.scalar
            let value = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            if scalar.style == YAML_PLAIN_SCALAR_STYLE && ["", "~", "null", "Null", "NULL"].contains(value) {
                return ConfigNode(value: .null, path: path, location: location)
            }
            return ConfigNode(value: .scalar(value), path: path, location: location)
        case YAML_MAPPING_NODE:
            var entries: [(key: String, value: ConfigNode)] = []
            var seen = Set<String>()
            var pair = node.pointee.data.mapping.pairs.start
            let top = node.pointee.data.mapping.pairs.top
            while let current = pair, current != top {
                pair = current + 1
                guard let keyNode = yaml_document_get_node(&document, current.pointee.key),
                    let valueNode = yaml_document_get_node(&document, current.pointee.value)
                else { continue }
                guard keyNode.pointee.type == YAML_SCALAR_NODE else {
                    throw ConfigError(
                        field: display(path), problem: "has a key that is not a plain name", location: location)
                }
                let k = keyNode.pointee.data.scalar
                let key = String(decoding: UnsafeBufferPointer(start: k.value, count: k.length), as: UTF8.self)
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard seen.insert(key).inserted else {
                    throw ConfigError(field: childPath, problem: "appears twice", location: location)
                }
                entries.append(
                    (
                        key,
                        try convert(
                            valueNode, document: &document, path: childPath, source: source, visited: &visited,
                            depth: depth + 1)
                    ))
            }
            return ConfigNode(value: .mapping(entries), path: path, location: location)
        case YAML_SEQUENCE_NODE:
            var items: [ConfigNode] = []
            var item = node.pointee.data.sequence.items.start
            let top = node.pointee.data.sequence.items.top
            while let current = item, current != top {
                item = current + 1
                guard let child = yaml_document_get_node(&document, current.pointee) else { continue }
                items.append(
                    try convert(
                        child, document: &document, path: "\(path)[\(items.count)]", source: source, visited: &visited,
                        depth: depth + 1))
            }
            return ConfigNode(value: .sequence(items), path: path, location: location)
        default:
            throw ConfigError(field: display(path), problem: "is an empty YAML node", location: location)
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
