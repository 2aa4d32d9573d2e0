/// POSIX ACLs as Linux stores them in the `system.posix_acl_access` and `system.posix_acl_default`
/// xattrs (the kernel's `posix_acl_xattr` format): a little-endian version 2 header, then one
/// (tag u16, permissions u16, id u32) record per entry, sorted by tag and then by id.
///
/// A tree read from disk carries ACLs as these xattrs already; an archive may carry them only as
/// ACL entries (`tar --acls` writes `SCHILY.acl.*` text, which libarchive turns into entries), so
/// the tar import builds the xattr from them.
public enum PosixACL {
    public static let accessName = "system.posix_acl_access"
    public static let defaultName = "system.posix_acl_default"

    public enum Tag: UInt16, Sendable, Comparable {
        case userObject = 0x01
        case user = 0x02
        case groupObject = 0x04
        case group = 0x08
        case mask = 0x10
        case other = 0x20
        public static func < (a: Tag, b: Tag) -> Bool { a.rawValue < b.rawValue }
    }

    public struct Entry: Hashable, Sendable {
        public var tag: Tag
        /// rwx as 4, 2, 1.
        public var permissions: UInt16
        /// The uid or gid for `user` and `group`; ignored for the others.
        public var id: UInt32
        public init(_ tag: Tag, _ permissions: UInt16, id: UInt32 = 0) {
            self.tag = tag
            self.permissions = permissions & 7
            self.id = id
        }
    }

    /// The permissions of the mask entry of an xattr value (nil: no mask, or not an ACL). With a
    /// mask, Linux keeps it in the group bits of the file mode.
    public static func maskPermissions(ofXattr value: [UInt8]) -> UInt16? {
        guard value.count >= 4, (value.count - 4) % 8 == 0, value[0] == 2 else { return nil }
        var at = 4
        while at < value.count {
            if UInt16(value[at]) | UInt16(value[at + 1]) << 8 == Tag.mask.rawValue {
                return UInt16(value[at + 2]) & 7
            }
            at += 8
        }
        return nil
    }

    /// The xattr value for `entries`, or nil if they are not a valid ACL (each of user::, group::
    /// and other:: exactly once; named entries unique; a mask when there are named entries).
    public static func xattrValue(_ entries: [Entry]) -> [UInt8]? {
        let sorted = entries.sorted { ($0.tag, $0.id) < ($1.tag, $1.id) }
        func count(_ tag: Tag) -> Int { sorted.filter { $0.tag == tag }.count }
        guard count(.userObject) == 1, count(.groupObject) == 1, count(.other) == 1, count(.mask) <= 1 else {
            return nil
        }
        let named = sorted.filter { $0.tag == .user || $0.tag == .group }
        guard Set(named.map { "\($0.tag.rawValue):\($0.id)" }).count == named.count else { return nil }
        guard named.isEmpty || count(.mask) == 1 else { return nil }
        var out: [UInt8] = [2, 0, 0, 0]
        for e in sorted {
            let id: UInt32 = (e.tag == .user || e.tag == .group) ? e.id : 0xffff_ffff
            out += [UInt8(e.tag.rawValue & 0xff), UInt8(e.tag.rawValue >> 8), UInt8(e.permissions), 0]
            out += [UInt8(id & 0xff), UInt8((id >> 8) & 0xff), UInt8((id >> 16) & 0xff), UInt8(id >> 24)]
        }
        return out
    }
}
