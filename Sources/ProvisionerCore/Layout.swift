/// A disk layout as the server hands it to a node.
///
/// This part reads the logical disks and how to find them:
///
/// ```yaml
/// disks:
///   disk0:
///     match: { type: nvme, size: 1TB, tolerance: 5% }
///   disk1:
///     match: { type: nvme, size: 1TB, tolerance: 5% }
/// ```
public struct DiskLayout: Hashable, Sendable {
    public var disks: [LogicalDisk]

    public init(disks: [LogicalDisk]) { self.disks = disks }

    /// Parses a layout from YAML or JSON text; `source` names it in errors.
    public init(parsing text: String, source: String) throws(ConfigError) {
        let root = try ConfigNode.parse(text, source: source).mapping()
        let disksNode = try root.required("disks")
        let entries = try disksNode.mapping().all()
        guard !entries.isEmpty else { throw disksNode.error("lists no disks") }
        var disks: [LogicalDisk] = []
        for (name, node) in entries {
            guard LogicalDisk.isValidName(name) else {
                throw node.error(
                    "\"\(name)\" is not a valid disk name; use a letter then letters, digits, - or _ (disk0)")
            }
            let fields = try node.mapping()
            let criteria = try DiskCriteria(config: try fields.required("match"))
            try fields.finish()
            disks.append(LogicalDisk(name: name, criteria: criteria))
        }
        try root.finish()
        self.disks = disks.sorted { LogicalDisk.naturalOrder($0.name, $1.name) }
    }
}
