import CBlkid
import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#endif

/// What libblkid sees on a device or an image file. Works on byte ranges of
/// one open descriptor, so partitions are probed by offset and no partition
/// device node is needed (the host kernel does not make them for loop files).
public enum Blkid {
    /// Every signature in [offset, offset+size) of `path`: filesystems, RAID
    /// members, LVM PVs, and partition tables' magic, as `wipefs` would list them.
    public static func signatures(path: String, offset: UInt64 = 0, size: UInt64 = 0) throws(SystemError)
        -> [Signature]
    {
        let fd = try OwnedDescriptor(readOnly: path)
        return try signatures(fd: fd, offset: offset, size: size)
    }

    static func signatures(fd: borrowing OwnedDescriptor, offset: UInt64, size: UInt64) throws(SystemError)
        -> [Signature]
    {
        let what = offset == 0 ? fd.path : "\(fd.path) at byte \(offset)"
        guard let probe = CBlkid_probe_new(fd.rawValue, offset, size) else {
            throw .fromErrno("starting a libblkid probe of", what)
        }
        defer { blkid_free_probe(probe) }
        guard CBlkid_enable_superblocks(probe) == 0 else {
            throw SystemError("configuring a libblkid probe of", what, cause: "libblkid refused the probe flags")
        }
        var found: [Signature] = []
        while true {
            let rc = blkid_do_probe(probe)
            if rc == 1 { break }  // nothing more
            guard rc == 0 else { throw .fromErrno("probing signatures on", what) }
            let values = Self.values(probe)
            if let pt = values["PTTYPE"] {
                found.append(
                    Signature(
                        type: pt, usage: "partition_table", uuid: values["PTUUID"],
                        offset: values["PTMAGIC_OFFSET"].flatMap { UInt64($0) }))
            } else if let type = values["TYPE"] {
                found.append(
                    Signature(
                        type: type, usage: values["USAGE"], label: values["LABEL"], uuid: values["UUID"],
                        subUUID: values["UUID_SUB"], version: values["VERSION"],
                        offset: values["SBMAGIC_OFFSET"].flatMap { UInt64($0) }))
            }
        }
        return found
    }

    /// The partition table of `path`, with each partition's own signatures.
    public static func partitions(path: String) throws(SystemError) -> (table: PartitionTable?, partitions: [Partition])
    {
        let fd = try OwnedDescriptor(readOnly: path)
        guard let probe = CBlkid_probe_new(fd.rawValue, 0, 0) else {
            throw .fromErrno("starting a libblkid probe of", path)
        }
        defer { blkid_free_probe(probe) }
        guard CBlkid_enable_partitions(probe) == 0 else {
            throw SystemError("configuring a libblkid probe of", path, cause: "libblkid refused the probe flags")
        }
        guard let list = blkid_probe_get_partitions(probe) else {
            return (nil, [])  // no partition table
        }
        var table: PartitionTable?
        if let t = blkid_partlist_get_table(list), let type = blkid_parttable_get_type(t) {
            table = PartitionTable(
                type: String(cString: type), uuid: blkid_parttable_get_id(t).map { String(cString: $0) })
        }
        let sector = UInt64(512)  // libblkid reports partition geometry in 512-byte sectors
        var result: [Partition] = []
        for index in 0..<blkid_partlist_numof_partitions(list) {
            guard let p = blkid_partlist_get_partition(list, index) else { continue }
            let start = UInt64(blkid_partition_get_start(p)) * sector
            let size = UInt64(blkid_partition_get_size(p)) * sector
            var typeID = blkid_partition_get_type_string(p).map { String(cString: $0) }
            if typeID == nil {
                let code = blkid_partition_get_type(p)
                if code != 0 { typeID = "0x" + String(code, radix: 16) }
            }
            let name = blkid_partition_get_name(p).map { String(cString: $0) }
            result.append(
                Partition(
                    number: Int(blkid_partition_get_partno(p)), startBytes: start, sizeBytes: size,
                    typeUUID: typeID?.lowercased(),
                    uuid: blkid_partition_get_uuid(p).map { String(cString: $0).lowercased() },
                    label: name.flatMap { $0.isEmpty ? nil : $0 }))
        }
        // Each partition's signatures, side by side, each probe on a descriptor of its own
        // (libblkid seeks the one it reads).
        let partitions = result
        let signatures = try concurrently(partitions.count) { i throws(SystemError) in
            try Self.signatures(path: path, offset: partitions[i].startBytes, size: partitions[i].sizeBytes)
        }
        for i in result.indices { result[i].signatures = signatures[i].filter { $0.usage != "partition_table" } }
        return (table, result)
    }

    private static func values(_ probe: blkid_probe) -> [String: String] {
        var values: [String: String] = [:]
        let count = blkid_probe_numof_values(probe)
        guard count > 0 else { return values }
        for n in 0..<count {
            var name: UnsafePointer<CChar>?
            var data: UnsafePointer<CChar>?
            var length = 0
            guard CBlkid_probe_value(probe, n, &name, &data, &length) == 0, let name, let data else { continue }
            values[String(cString: name)] = String(cString: data)
        }
        return values
    }
}
