import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#endif

/// Reads LVM's labels and metadata straight from the devices (a few KiB each, no `lvm` run):
/// what `StorageObserver` needs to know of the volume groups on the layout's disks. Whatever
/// `LVMView` cannot describe exactly is left to `lvm pvs`/`lvs` (the caller's fallback).
public enum LVMReader {
    /// LVM ignores devices smaller than this (`devices/pv_min_size`, 2 MiB by default).
    static let minimumSize: UInt64 = 2 << 20
    /// A metadata text larger than this is left to `lvm` (LVM's own areas default to 1 MiB).
    static let maximumText: UInt64 = 64 << 20

    public static func read(_ paths: [String]) throws(LVMView.Unsupported) -> LVMView {
        var devices: [LVMView.Device] = []
        for path in paths {
            do {
                devices.append(try device(path))
            } catch {
                throw LVMView.Unsupported("\(error)")
            }
        }
        return try LVMView.build(devices)
    }

    static func device(_ path: String) throws(SystemError) -> LVMView.Device {
        let fd = try OwnedDescriptor(readOnly: path)
        let size = lseek(fd.rawValue, 0, SEEK_END)
        guard size >= 0 else { throw .fromErrno("finding the size of", path) }
        guard UInt64(size) >= minimumSize else { return LVMView.Device(path: path, label: nil, texts: []) }
        let first = try read(fd, at: 0, count: LVMLabel.scanBytes)
        let label: LVMLabel?
        do { label = try LVMLabel.parse(first) } catch {
            throw SystemError("reading the LVM label of", path, cause: error.problem)
        }
        guard let label else { return LVMView.Device(path: path, label: nil, texts: []) }
        var texts: [String] = []
        for area in label.metadataAreas {
            guard area.offset + area.size <= UInt64(size) else {
                throw SystemError(
                    "reading the LVM metadata of", path,
                    cause: "its metadata area at byte \(area.offset) ends past the device's end")
            }
            let bytes = try read(fd, at: area.offset, count: LVMMetadataArea.headerSize)
            let header: LVMMetadataArea
            do { header = try LVMMetadataArea.parseHeader(bytes, at: area.offset) } catch {
                throw SystemError("reading the LVM metadata of", path, cause: error.problem)
            }
            guard header.location != nil else { continue }
            var parts: [[UInt8]] = []
            for range in header.textRanges {
                guard range.length <= maximumText else {
                    throw SystemError("reading the LVM metadata of", path, cause: "its text is \(range.length) bytes")
                }
                parts.append(try read(fd, at: range.offset, count: Int(range.length)))
            }
            do { texts.append(try header.text(from: parts)) } catch {
                throw SystemError("reading the LVM metadata of", path, cause: error.problem)
            }
        }
        return LVMView.Device(path: path, label: label, texts: texts)
    }

    static func read(_ fd: borrowing OwnedDescriptor, at offset: UInt64, count: Int) throws(SystemError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes {
                pread(fd.rawValue, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .fromErrno("reading \(count) bytes at \(offset) of", fd.path) }
            guard n > 0 else {
                throw SystemError("reading \(count) bytes at \(offset) of", fd.path, cause: "the device ends first")
            }
            done += n
        }
        return bytes
    }
}
