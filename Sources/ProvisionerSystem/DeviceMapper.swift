import CDeviceMapper
import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#endif

/// Loads logical volumes into device-mapper as `lvm vgchange -ay` would, from what
/// `LVMView.deviceMapperVolumes` decided: per volume a device (name and UUID), its table, and a
/// resume whose cookie carries LVM's udev flags, so udev makes /dev/mapper/NAME and /dev/VG/LV
/// as it does for LVM; then LVM's read-ahead. The thin layer: three ioctls and a sysfs write.
public enum DeviceMapper {
    static let control = "/dev/mapper/control"

    /// The number of the block device at `path`, nil when it is none.
    public static func number(of path: String) -> DeviceNumber? {
        var major: UInt32 = 0
        var minor: UInt32 = 0
        guard CDM_device_number(path, &major, &minor) == 0 else { return nil }
        return DeviceNumber(major: major, minor: minor)
    }

    /// Whether udev is running to make the volumes' nodes and links (LVM makes them itself when
    /// it is not; this path leaves that case to LVM).
    public static var udevIsRunning: Bool { access("/run/udev/control", F_OK) == 0 }

    /// Activates `volumes`, in order. On a failure the volumes this call made are removed again
    /// (what was active before stays), and the error names the volume and the call that failed,
    /// and any volume that could not be removed again.
    public static func activate(_ volumes: [DeviceMapperVolume]) throws(SystemError) {
        let fd = open(control, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.fromErrno("opening", control) }
        defer { close(fd) }
        var made: [String] = []
        for volume in volumes {
            do throws(SystemError) {
                try activate(volume, control: fd) { made.append(volume.name) }
            } catch {
                // Undone, last first; a volume that cannot be removed is named, not hidden.
                var left: [String] = []
                for name in made.reversed() where CDM_remove(fd, name) != 0 {
                    left.append("\(name) (\(String(cString: strerror(errno))))")
                }
                guard left.isEmpty else {
                    var failed = error
                    failed.cause +=
                        "; and the volumes made before could not all be removed again: "
                        + left.joined(separator: ", ")
                    throw failed
                }
                throw error
            }
        }
    }

    static func activate(
        _ volume: DeviceMapperVolume, control fd: Int32, created: () -> Void
    ) throws(SystemError) {
        let what = "\(volume.path) (device-mapper \(volume.name))"
        var major: UInt32 = 0
        var minor: UInt32 = 0
        guard CDM_create(fd, volume.name, volume.uuid, &major, &minor) == 0 else {
            throw SystemError.fromErrno("creating", what)
        }
        created()
        let loaded = withCStrings(volume.targets.map(\.type)) { types in
            withCStrings(volume.targets.map(\.parameters)) { parameters in
                CDM_load(
                    fd, volume.name, volume.readOnly ? 1 : 0, volume.targets.count, volume.targets.map(\.startSector),
                    volume.targets.map(\.sectors), types, parameters)
            }
        }
        guard loaded == 0 else {
            let error = SystemError.fromErrno(
                "loading the table \(volume.targets.map(\.description).joined(separator: "; ")) into", what)
            throw error
        }
        var uevent: Int32 = 0
        guard CDM_resume(fd, volume.name, UInt32(volume.udevFlags) << 16, &uevent) == 0 else {
            throw SystemError.fromErrno("resuming", what)
        }
        setReadAhead(volume, device: DeviceNumber(major: major, minor: minor))
    }

    /// LVM's read-ahead (libdm sets it the same way, through sysfs, and only raises it). Best
    /// effort, as in libdm: a device without a read-ahead setting keeps the kernel's.
    static func setReadAhead(_ volume: DeviceMapperVolume, device: DeviceNumber) {
        let wanted: UInt32
        switch volume.readAhead {
        case .atLeast(let sectors): wanted = sectors
        case .atLeastThatOf(let path):
            guard let under = number(of: path), let sectors = readAheadSectors(of: under) else { return }
            wanted = sectors
        }
        guard let current = readAheadSectors(of: device),
            let set = DeviceMapperVolume.readAheadToSet(wanted: wanted, current: current)
        else { return }
        let text = Array("\((UInt64(set) + 1) / 2)".utf8)
        let fd = open("/sys/dev/block/\(device)/bdi/read_ahead_kb", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// A block device's read-ahead in sectors (a partition's is its disk's, as BLKRAGET says).
    static func readAheadSectors(of device: DeviceNumber) -> UInt32? {
        for path in ["/sys/dev/block/\(device)/bdi/read_ahead_kb", "/sys/dev/block/\(device)/../bdi/read_ahead_kb"] {
            guard let text = try? readSmallFile(path), let kb = UInt32(text.trimmed) else { continue }
            return kb * 2
        }
        return nil
    }

    static func readSmallFile(_ path: String) throws(SystemError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.fromErrno("opening", path) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw SystemError.fromErrno("reading", path) }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }

    /// C strings for each of `strings`, alive during `body`.
    static func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies.map { UnsafePointer($0) })
    }
}
