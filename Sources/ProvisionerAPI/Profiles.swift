import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Every node field a profile can hold, each optional: nil means "not set here, ask the next
/// layer". A node's own fields are one more layer, the last (docs/node-config.md, "Profiles").
///
/// Adding a profile-able field is: a property here, one line in `NodeFields.rules`, and the
/// property with its default in `NodeConfig` (`NodeConfig.init(name:macs:profiles:fields:)`).
public struct NodeFields: Codable, Hashable, Sendable {
    public var image: ImageRef?
    public var layout: String?
    public var mode: NodeMode?
    public var plugins: [PluginConfig]?
    public var kernelArgs: [String]?
    public var syncVerify: SyncVerify?
    public var kernel: String?
    public var initramfs: String?
    /// The kernel release the node boots from its image (docs/boot.md).
    public var kernelRelease: String?
    /// What a new key needs (docs/certificates.md, "Enrollment").
    public var enrollment: EnrollmentPolicy?
    /// Overlays add up: every layer's, in order, each once.
    public var overlays: [String]?
    /// Values for overlay templates; merged key by key, the later layer winning.
    public var vars: [String: String]?

    public init(
        image: ImageRef? = nil, layout: String? = nil, mode: NodeMode? = nil, plugins: [PluginConfig]? = nil,
        kernelArgs: [String]? = nil, syncVerify: SyncVerify? = nil, kernel: String? = nil,
        initramfs: String? = nil, kernelRelease: String? = nil, overlays: [String]? = nil,
        vars: [String: String]? = nil, enrollment: EnrollmentPolicy? = nil
    ) {
        self.enrollment = enrollment
        self.kernelRelease = kernelRelease
        self.image = image
        self.layout = layout
        self.mode = mode
        self.plugins = plugins
        self.kernelArgs = kernelArgs
        self.syncVerify = syncVerify
        self.kernel = kernel
        self.initramfs = initramfs
        self.overlays = overlays
        self.vars = vars
    }

    /// How each field merges across layers. The one table to grow when a field is added.
    public static let rules: [FieldRule] = [
        .replace("image", \.image),
        .replace("layout", \.layout),
        .replace("mode", \.mode),
        .replace("plugins", \.plugins),
        .replace("kernelArgs", \.kernelArgs),
        .replace("syncVerify", \.syncVerify),
        .replace("kernel", \.kernel),
        .replace("initramfs", \.initramfs),
        .replace("kernelRelease", \.kernelRelease),
        .replace("enrollment", \.enrollment),
        .append("overlays", \.overlays),
        .perKey("vars", \.vars),
    ]

    /// The names of the fields that are set.
    public var setFields: [String] { Self.rules.filter { $0.isSet(self) }.map(\.name) }
}

/// How one field goes from a stack of layers (profiles in order, then the node) to one value, and
/// which layer it came from.
public struct FieldRule: Sendable {
    /// Every field a node or profile has, by name.
    public static var names: [String] { NodeFields.rules.map(\.name) }

    public let name: String
    /// Merges `layer` (called `source`) into `into`, recording where each part came from.
    let merge: @Sendable (_ into: inout NodeFields, _ layer: NodeFields, _ source: String, _ sources: inout [String: String]) -> Void
    let isSet: @Sendable (NodeFields) -> Bool

    /// The last layer that sets the field wins, whole.
    static func replace<T: Sendable>(_ name: String, _ path: WritableKeyPath<NodeFields, T?> & Sendable) -> FieldRule {
        FieldRule(
            name: name,
            merge: { into, layer, source, sources in
                guard let value = layer[keyPath: path] else { return }
                into[keyPath: path] = value
                sources[name] = source
            },
            isSet: { $0[keyPath: path] != nil })
    }

    /// Every layer's items, in order, each once.
    static func append(_ name: String, _ path: WritableKeyPath<NodeFields, [String]?> & Sendable) -> FieldRule {
        FieldRule(
            name: name,
            merge: { into, layer, source, sources in
                guard let items = layer[keyPath: path] else { return }
                var merged = into[keyPath: path] ?? []
                for item in items where !merged.contains(item) {
                    merged.append(item)
                    sources["\(name).\(item)"] = source
                }
                into[keyPath: path] = merged
            },
            isSet: { $0[keyPath: path] != nil })
    }

    /// Key by key, the later layer winning.
    static func perKey(_ name: String, _ path: WritableKeyPath<NodeFields, [String: String]?> & Sendable) -> FieldRule {
        FieldRule(
            name: name,
            merge: { into, layer, source, sources in
                guard let map = layer[keyPath: path] else { return }
                var merged = into[keyPath: path] ?? [:]
                for (key, value) in map {
                    merged[key] = value
                    sources["\(name).\(key)"] = source
                }
                into[keyPath: path] = merged
            },
            isSet: { $0[keyPath: path] != nil })
    }
}

/// A node as the admin defines it: its identity, the profiles it uses in order, and its own fields.
/// On the wire and in the cluster file its fields sit beside `name`, `macs` and `profiles`, so the
/// JSON of a `NodeConfig` is a definition whose every field is the node's own.
public struct NodeDefinition: Codable, Hashable, Sendable {
    public var name: String
    public var macs: [String]
    public var profiles: [String]
    public var fields: NodeFields

    public init(name: String, macs: [String] = [], profiles: [String] = [], fields: NodeFields = NodeFields()) {
        self.name = name
        self.macs = macs
        self.profiles = profiles
        self.fields = fields
    }

    /// A definition whose own fields are all of `config`'s (what a node was before profiles).
    public init(_ config: NodeConfig) {
        self.init(
            name: config.name, macs: config.macs, profiles: config.profiles,
            fields: NodeFields(
                image: config.image, layout: config.layout, mode: config.mode, plugins: config.plugins,
                kernelArgs: config.kernelArgs, syncVerify: config.syncVerify, kernel: config.kernel,
                initramfs: config.initramfs, kernelRelease: config.kernelRelease, overlays: config.overlays.isEmpty ? nil : config.overlays,
                vars: config.vars.isEmpty ? nil : config.vars,
                enrollment: config.enrollment == .approve ? nil : config.enrollment))
    }

    enum CodingKeys: String, CodingKey { case name, macs, profiles }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, known: ["name", "macs", "profiles"] + FieldRule.names, what: "a node")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        macs = try c.decodeIfPresent([String].self, forKey: .macs) ?? []
        profiles = try c.decodeIfPresent([String].self, forKey: .profiles) ?? []
        fields = try NodeFields(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(macs, forKey: .macs)
        if !profiles.isEmpty { try c.encode(profiles, forKey: .profiles) }
        try fields.encode(to: encoder)
    }

    /// Checks the name, the MACs (normalised), the profile names and every field that is set.
    public func validated(path: String = "") throws(ConfigError) -> NodeDefinition {
        var node = self
        let checked = try NodeConfig(name: name, macs: macs, profiles: profiles, fields: fields).validated(path: path)
        node.macs = checked.macs
        return node
    }
}

/// A named set of node fields that nodes (and other profiles) list.
public struct Profile: Codable, Hashable, Sendable {
    public var name: String
    /// Profiles this one builds on, in order; its own fields win over theirs.
    public var profiles: [String]
    public var fields: NodeFields

    public init(name: String, profiles: [String] = [], fields: NodeFields = NodeFields()) {
        self.name = name
        self.profiles = profiles
        self.fields = fields
    }

    enum CodingKeys: String, CodingKey { case name, profiles }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, known: ["name", "profiles"] + FieldRule.names, what: "a profile")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        profiles = try c.decodeIfPresent([String].self, forKey: .profiles) ?? []
        fields = try NodeFields(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        if !profiles.isEmpty { try c.encode(profiles, forKey: .profiles) }
        try fields.encode(to: encoder)
    }

    /// Same rules as a node's fields; a profile's name is a host label too.
    public func validated(path: String = "") throws(ConfigError) -> Profile {
        func field(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }
        guard Names.isHostLabel(name) else {
            throw ConfigError(
                field: field("name"),
                problem: "\"\(name)\" is not a valid profile name; use 1-63 letters, digits or - (not first or last)")
        }
        _ = try NodeConfig(name: name, profiles: profiles, fields: fields).validated(path: path)
        return self
    }
}

/// One field of a node's effective config and the layer it came from (`nodes show --effective`).
public struct FieldSource: Codable, Hashable, Sendable {
    /// `mode`, `image`, `vars.rack`, `overlays.site`...
    public var field: String
    /// The value as JSON.
    public var value: String
    /// `node`, `profile NAME`, or `default`.
    public var source: String

    public init(field: String, value: String, source: String) {
        self.field = field
        self.value = value
        self.source = source
    }
}

/// Why a node's profiles cannot be resolved.
public struct ProfileError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Problem: String, Hashable, Sendable {
        /// P1: a node or profile lists a profile that does not exist.
        case unknownProfile
        /// P2: profiles that include each other.
        case cycle
    }
    public var problem: Problem
    /// The node or profile whose list is wrong (`node n001`, `profile gpu`).
    public var subject: String
    public var detail: String
    public var description: String { "\(subject): \(detail)" }
}

/// The pure merge of a node's layers: its profiles, in order (each after the profiles it builds
/// on), then its own fields. Later layers win field by field (`NodeFields.rules`).
public enum ProfileMerge {
    /// The profiles that apply, in the order they apply (depth first, each once), or the first
    /// unknown name or cycle found.
    public static func order(
        of names: [String], for subject: String, profiles: [String: Profile]
    ) throws(ProfileError) -> [Profile] {
        var result: [Profile] = []
        var done = Set<String>()
        func visit(_ name: String, from owner: String, chain: [String]) throws(ProfileError) {
            if let at = chain.firstIndex(of: name) {
                throw ProfileError(
                    problem: .cycle, subject: subject,
                    detail: "profiles include each other: \((chain[at...] + [name]).joined(separator: " -> "))")
            }
            guard !done.contains(name) else { return }
            guard let profile = profiles[name] else {
                throw ProfileError(
                    problem: .unknownProfile, subject: subject,
                    detail: "\(owner) lists profile \(name), which does not exist")
            }
            for inner in profile.profiles {
                try visit(inner, from: "profile \(name)", chain: chain + [name])
            }
            done.insert(name)
            result.append(profile)
        }
        for name in names { try visit(name, from: subject, chain: []) }
        return result
    }

    /// The node's effective config and, for each field, where its value came from.
    public static func resolve(
        _ node: NodeDefinition, profiles: [String: Profile]
    ) throws(ProfileError) -> (config: NodeConfig, sources: [FieldSource]) {
        let layers = try order(of: node.profiles, for: "node \(node.name)", profiles: profiles)
        var merged = NodeFields()
        var sources: [String: String] = [:]
        for rule in NodeFields.rules {
            for profile in layers { rule.merge(&merged, profile.fields, "profile \(profile.name)", &sources) }
            rule.merge(&merged, node.fields, "node", &sources)
        }
        let config = NodeConfig(name: node.name, macs: node.macs, profiles: node.profiles, fields: merged)
        return (config, provenance(config, sources))
    }

    /// Each field of `config` with its value as JSON and its source (`default` when no layer set it).
    static func provenance(_ config: NodeConfig, _ sources: [String: String]) -> [FieldSource] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func text<T: Encodable>(_ value: T) -> String {
            (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "?"
        }
        let full = NodeDefinition(config).fields
        var result: [FieldSource] = []
        for rule in NodeFields.rules {
            switch rule.name {
            case "overlays":
                for item in config.overlays {
                    result.append(FieldSource(field: "overlays.\(item)", value: text(item), source: sources["overlays.\(item)"] ?? "default"))
                }
            case "vars":
                for (key, value) in config.vars.sorted(by: { $0.key < $1.key }) {
                    result.append(FieldSource(field: "vars.\(key)", value: text(value), source: sources["vars.\(key)"] ?? "default"))
                }
            default:
                // One field alone, read back through the rule's own key path by merging it into an empty set.
                var one = NodeFields()
                var ignored: [String: String] = [:]
                rule.merge(&one, full, "", &ignored)
                let value: String
                if let data = try? encoder.encode(one) {
                    value = Self.onlyValue(of: String(decoding: data, as: UTF8.self), field: rule.name)
                } else {
                    value = "?"
                }
                result.append(FieldSource(field: rule.name, value: value, source: sources[rule.name] ?? "default"))
            }
        }
        return result
    }

    /// `{"mode":"stateful"}` → `"stateful"`; `{}` → `null`.
    static func onlyValue(of object: String, field: String) -> String {
        let prefix = "{\"\(field)\":"
        guard object.hasPrefix(prefix), object.hasSuffix("}") else { return "null" }
        return String(object.dropFirst(prefix.count).dropLast())
    }
}

/// What the admin sends is read strictly: a field the server does not know (a typo such as
/// `kernelArg`, or one from a newer client) is refused by name, not ignored. Only for what admins
/// write; what agents read stays lenient, so an older agent can boot from a newer server.
enum StrictKeys {
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func check(_ decoder: any Decoder, known: [String], what: String) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        for key in container.allKeys.map(\.stringValue).sorted() where !known.contains(key) {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath + [AnyKey(stringValue: key)],
                    debugDescription: "\(what) has no field \"\(key)\" (its fields: \(known.joined(separator: ", ")))"))
        }
    }
}
