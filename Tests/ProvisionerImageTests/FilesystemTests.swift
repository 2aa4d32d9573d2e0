import Foundation
import ProvisionerImage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Item 5 and 7 of the image issue against real filesystems: a full disk, and ACLs through a tarball.
@Suite(.serialized) struct FilesystemTests {
    /// A tmpfs of `size` mounted on a fresh directory; `body` gets its path; always unmounted.
    func withTmpfs(size: String, _ body: (String) throws -> Void) throws {
        let dir = try scratch("tmpfs")
        try sh("mount -t tmpfs -o size=\(size),mode=0755 provisioner-test '\(dir)'")
        defer { try? sh("umount '\(dir)' && rmdir '\(dir)'") }
        try body(dir)
    }

    /// Every regular file under `root` (outside the state directory) with its content hash.
    func contents(_ root: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for line in try treeDigest(root) {
            let f = line.split(separator: " ")
            if f.count >= 7, f[1] == "100000" { out[String(f[0])] = String(f[6]) }
        }
        return out
    }

    @Test func fullDiskIsAClearErrorAndLosesNothing() throws {
        let root = try scratch("enospc")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, store) = ("\(root)/src", "\(root)/store")
        try sh(
            """
            mkdir -p '\(src)/etc' '\(src)/data' && cd '\(src)'
            for i in $(seq 1 40); do head -c 20000 /dev/urandom > data/f$i; done
            echo v1 > etc/config && setfattr -n user.k -v v etc/config
            """)
        try importTree(src, store: store)
        try withTmpfs(size: "6m") { dst in
            _ = try sync(store, to: dst)
            try expectSameTree(src, dst)
            let before = try contents(dst)
            let v1 = try treeDigest(src)
            // v2 changes the small files and adds more than the disk holds.
            try sh(
                """
                cd '\(src)' && echo v2 > etc/config && for i in $(seq 1 40); do echo more >> data/f$i; done
                head -c 8000000 /dev/urandom > data/zz-too-big
                """)
            try importTree(src, store: store)
            let v2 = try treeDigest(src)
            #expect {
                _ = try sync(store, to: dst)
            } throws: { error in
                let text = "\(error)"
                return text.contains("No space left on device") && text.contains("data/")
            }
            // Every file that was there is still there, whole: its v1 or its v2 content, nothing in between.
            let after = try contents(dst)
            let v2Contents = try contents(src)
            for (path, hash) in before {
                #expect(after[path] == hash || after[path] == v2Contents[path], "\(path) lost or half-written")
            }
            #expect(after["data/zz-too-big"] == nil)
            #expect(
                try sh("ls -a '\(dst)' '\(dst)/data' '\(dst)/etc' | grep -c prov-tmp || true").trimmingCharacters(
                    in: .whitespacesAndNewlines) == "0")
            #expect(v1 != v2)
            // With room again, the next sync converges.
            try sh("mount -o remount,size=20m '\(dst)'")
            _ = try sync(store, to: dst)
            try expectSameTree(src, dst)
        }
    }

    @Test(arguments: [
        "--xattrs --xattrs-include='*' --acls",  // ACLs as raw xattrs and as SCHILY.acl text
        "--xattrs --acls",  // GNU tar's defaults with both switches
        "--acls",  // ACLs only as SCHILY.acl text: the import builds the xattrs
    ])
    func tarballImportKeepsACLsAndXattrs(tarOptions: String) throws {
        let ctl = try builtBinary("provisionerctl")
        let root = try scratch("tar-acl")
        defer { try? sh("rm -rf '\(root)'") }
        let (src, dst, store) = ("\(root)/src", "\(root)/dst", "\(root)/store")
        let withXattrs = tarOptions.contains("--xattrs")
        try sh(
            """
            mkdir -p '\(src)/home/u/sub' '\(src)/srv' && cd '\(src)'
            echo hi > home/u/file && echo data > srv/shared && echo plain > srv/plain
            setfacl -m u:1000:rwx,g:100:r,m::rwx home/u/file
            setfacl -m u:1001:r-x,u:1000:rw-,g:200:rw- srv/shared
            setfacl -m u:1000:rwx home/u && setfacl -d -m u:1000:rx,g:100:rwx home/u
            setfacl -d -m o::--- home/u/sub
            chown -R 1000:100 home/u
            """
                + (withXattrs
                    ? """

                    setfattr -n user.color -v blue srv/plain && setfattr -n security.test -v label srv/shared
                    setcap cap_net_raw+ep srv/plain
                    """ : "")
                    + """

                    tar --format=posix \(tarOptions) --numeric-owner -C '\(src)' -cpf '\(root)/root.tar' .
                    '\(ctl)' image import acls --from '\(root)/root.tar' --store '\(store)' >/dev/null
                    """)
        _ = try sync(store, to: dst, image: "acls")
        try expectSameTree(src, dst)
        // Not only equal to the source: the ACLs are really there (the digest compares raw xattrs).
        let acl = try sh("getfacl -cpn '\(dst)/srv/shared' '\(dst)/home/u'")
        #expect(acl.contains("user:1001:r-x"))
        #expect(acl.contains("default:group:100:rwx"))
    }
}
