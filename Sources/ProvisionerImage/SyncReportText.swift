extension SyncReport {
    /// Entries the sync changed in the target (0 when it was up to date).
    public var changedEntries: Int {
        upToDate
            ? 0
            : filesWritten + directoriesCreated + othersCreated + linksMade + metadataFixed + deleted + removed
    }

    /// What `provisioner-agent sync` prints and the boot reports as the image step's events: one
    /// line when nothing changed, else what was written, fetched and left alone; the phases last.
    public func summary(seconds: Double) -> String {
        let time = "\(Int(seconds * 1000)) ms"
        let phases = self.phases.map { "\($0.0) \(Int($0.1 * 1000)) ms" }.joined(separator: ", ")
        if upToDate {
            return "\(image)@\(version.hex.prefix(12)): up to date (verify \(verify.rawValue), "
                + "\(entries) entries, \(time))" + (phases.isEmpty ? "" : "\n  phases: \(phases)")
        }
        var lines = [
            "\(image)@\(version.hex.prefix(12)): applied \(entries) entries in \(time)"
                + (recovered ? " (previous sync was interrupted: contents rehashed)" : ""),
            "  files written \(filesWritten), directories created \(directoriesCreated), other entries \(othersCreated), "
                + "links \(linksMade), metadata fixed \(metadataFixed), deleted \(deleted), replaced \(removed)",
            "  chunks fetched \(chunksFetched), reused from the node \(chunksReused), refetched \(objectsRefetched); "
                + "received \(bytesReceived) bytes, wrote \(bytesWritten) bytes",
        ]
        for c in conflicts { lines.append("  left alone: \(c)") }
        if !phases.isEmpty { lines.append("  phases: " + phases) }
        return lines.joined(separator: "\n")
    }
}
