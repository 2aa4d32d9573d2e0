import ProvisionerCore

#if canImport(Glibc)
    import Glibc
#endif

/// mount(2) for a filesystem on a block device: what `mount -t TYPE -o OPTIONS DEVICE TARGET`
/// does for ext4, xfs and vfat (`MountOptions` reads the options as mount(8) does), without
/// starting mount(8), which under QEMU's TCG cost 50–100 ms a mount of a no-change boot.
public enum Mounter {
    public static func mount(_ device: String, on target: String, type: String, options: [String])
        throws(SystemError)
    {
        let operation = "mounting \(device) (\(type)) on"
        let parsed: MountOptions
        do { parsed = try MountOptions(options) } catch { throw SystemError(operation, target, cause: "\(error)") }
        let source = canonicalSource(device)
        let started = ContinuousClock.now
        let result =
            parsed.data.isEmpty
            ? Glibc.mount(source, target, type, parsed.flags, nil)
            : parsed.data.withCString { Glibc.mount(source, target, type, parsed.flags, $0) }
        let code = result == 0 ? 0 : errno
        let shown = "mount(2) -t \(type)" + (options.isEmpty ? "" : " -o \(options.joined(separator: ","))")
        Command.traced("\(shown) \(device) \(target)", status: code, since: started)
        guard result == 0 else {
            throw SystemError(operation, target, cause: explanation(code, type: type), errno: code)
        }
    }

    /// The name the mount table shows for `device`, as libmount gives it to the kernel: the real
    /// path, and a device-mapper device by its /dev/mapper name (`/dev/system/root` →
    /// `/dev/mapper/system-root`, `/dev/md/md-esp` → `/dev/md127`).
    static func canonicalSource(_ device: String) -> String {
        let real = realPath(device)
        guard real.hasPrefix("/dev/dm-"),
            let name = try? DeviceMapper.readSmallFile("/sys/block/\(real.dropFirst(5))/dm/name").trimmed,
            !name.isEmpty
        else { return real }
        return "/dev/mapper/" + name
    }

    /// mount(8)'s words for the common failures, with the errno.
    static func explanation(_ code: Int32, type: String) -> String {
        let text = "\(String(cString: strerror(code))) (errno \(code))"
        switch code {
        case EINVAL: return "\(text): wrong filesystem type, bad option or bad superblock (the kernel log says which)"
        case ENODEV: return "\(text): the kernel has no \(type) filesystem (is its module loaded?)"
        case EBUSY: return "\(text): already mounted, or the device is in use"
        case ENOTBLK: return "\(text): not a block device"
        case ENOENT: return "\(text): the device or the mount point does not exist"
        case EROFS: return "\(text): the device is read-only; mount it with ro"
        default: return text
        }
    }
}
