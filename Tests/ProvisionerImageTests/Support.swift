import CImageSys
import Foundation
import ProvisionerImage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a bash script, failing with its stderr if it fails.
@discardableResult
func sh(_ script: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-euo", "pipefail", "-c", script]
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw TestFailure(
            "script failed (\(p.terminationStatus)): \(script)\n\(String(decoding: errData, as: UTF8.self))")
    }
    return String(decoding: data, as: UTF8.self)
}

/// The path of an executable of this package built next to the test bundle (`swift build` builds them).
func builtBinary(_ name: String) throws -> String {
    let path = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestFailure("no \(name) binary at \(path): run swift build first")
    }
    return path
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A fresh directory under /var/tmp (a real disk filesystem: xattrs, ACLs, devices, sparse files).
func scratch(_ name: String) throws -> String {
    let dir = "/var/tmp/provisioner-image-tests/\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try sh("rm -rf '\(dir)' && mkdir -p '\(dir)'")
    return dir
}

/// A canonical digest of a tree: one line per entry with every field the image format keeps
/// (type, mode, owner, mtime in ns, size, content hash, link target, device numbers, every
/// xattr, and which names share an inode). Written independently of the sync engine's own
/// tree reader, with lstat and l*xattr, so a bug there cannot hide itself.
func treeDigest(_ root: String, excluding: [String] = [".provisioner-state"]) throws -> [String] {
    var lines: [String] = []
    var inodes: [UInt64: String] = [:]
    func walk(_ rel: String) throws {
        let full = rel.isEmpty ? root : "\(root)/\(rel)"
        var st = stat()
        guard lstat(full, &st) == 0 else { throw TestFailure("lstat \(full): \(errno)") }
        let type = st.st_mode & S_IFMT
        var fields = ["\(rel.isEmpty ? "." : rel)", String(type, radix: 8), String(st.st_mode & 0o7777, radix: 8)]
        if type == S_IFLNK { fields[2] = "-" }
        fields += ["\(st.st_uid):\(st.st_gid)", "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"]
        if type == S_IFREG {
            if st.st_size > 64 << 20 {  // streamed: a sparse file of gigabytes is not read into memory
                let sum = try sh(
                    "python3 -c 'import hashlib,sys; print(hashlib.file_digest(open(sys.argv[1],\"rb\"),\"sha256\").hexdigest())' '\(full)'"
                ).prefix(64)
                fields += ["\(st.st_size)", String(sum)]
            } else {
                let data = try Data(contentsOf: URL(fileURLWithPath: full))
                fields += ["\(data.count)", data.withUnsafeBytes { ObjectHash.of($0) }.hex]
            }
        }
        if type == S_IFLNK {
            var buf = [CChar](repeating: 0, count: 4097)
            let n = readlink(full, &buf, 4096)
            fields.append("-> " + String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        if type == S_IFCHR || type == S_IFBLK {
            fields.append("dev \(CImageSys_major(UInt64(st.st_rdev))),\(CImageSys_minor(UInt64(st.st_rdev)))")
        }
        if type != S_IFDIR && st.st_nlink > 1 {
            if let first = inodes[UInt64(st.st_ino)] {
                fields.append("same inode as \(first)")
            } else {
                inodes[UInt64(st.st_ino)] = rel
                fields.append("links \(st.st_nlink)")
            }
        }
        fields.append(contentsOf: try xattrs(full))
        lines.append(fields.joined(separator: " "))
        if type == S_IFDIR {
            let names = try FileManager.default.contentsOfDirectory(atPath: full).sorted()
            for name in names {
                let child = rel.isEmpty ? name : "\(rel)/\(name)"
                if excluding.contains(where: { child == $0 || child.hasPrefix($0 + "/") }) { continue }
                try walk(child)
            }
        }
    }
    try walk("")
    return lines
}

func xattrs(_ path: String) throws -> [String] {
    var list = [CChar](repeating: 0, count: 65536)
    let dir = (path as NSString).deletingLastPathComponent
    let name = (path as NSString).lastPathComponent
    let dfd = open(dir, O_RDONLY | O_DIRECTORY)
    defer { close(dfd) }
    let n = CImageSys_listxattrat(dfd, name, &list, list.count)
    guard n >= 0 else { throw TestFailure("listxattr \(path): \(errno)") }
    let names = list[0..<n].split(separator: 0).map {
        String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    var out: [String] = []
    for attr in names.sorted() {
        var value = [UInt8](repeating: 0, count: 65536)
        let m = CImageSys_getxattrat(dfd, name, attr, &value, value.count)
        guard m >= 0 else { throw TestFailure("getxattr \(path) \(attr): \(errno)") }
        out.append("\(attr)=\(value[0..<m].map { String($0, radix: 16) }.joined(separator: "."))")
    }
    return out
}

/// Compares two digests, naming the first lines that differ.
func expectSameTree(
    _ source: String, _ target: String, excluding: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let a = try treeDigest(source, excluding: [".provisioner-state"] + excluding)
    let b = try treeDigest(target, excluding: [".provisioner-state"] + excluding)
    if a != b {
        let onlyA = a.filter { !b.contains($0) }.prefix(5)
        let onlyB = b.filter { !a.contains($0) }.prefix(5)
        Issue.record(
            "trees differ\n source only: \(onlyA.joined(separator: "\n  "))\n target only: \(onlyB.joined(separator: "\n  "))",
            sourceLocation: sourceLocation)
    }
}

/// Imports a directory as a new version of `image` and returns its id.
@discardableResult
func importTree(_ dir: String, store: String, image: String = "img") throws -> ObjectHash {
    try ImageImporter(store: ImageStore(root: store)).importDirectory(dir, image: image, now: 1_700_000_000).version
}

func sync(
    _ store: String, to target: String, image: String = "img", version: String = "latest",
    _ configure: (inout SyncOptions) -> Void = { _ in }
) throws -> SyncReport {
    var options = SyncOptions()
    configure(&options)
    return try SyncEngine(target: target, source: LocalStoreSource(path: store), options: options).run(
        image: image, version: version)
}

/// The tree every correctness test starts from: every kind of entry and the hard cases.
func makeHardTree(_ dir: String) throws {
    let long = String(repeating: "l", count: 250)
    try sh(
        """
        cd '\(dir)'
        mkdir -p etc usr/bin usr/lib/deep/er/still var/log home/u readonly 'ünïcødé ✓' dir-to-file
        echo 'root:x:0:0' > etc/passwd
        echo node-a > etc/machine-id
        printf '#!/bin/sh\\necho hi\\n' > usr/bin/tool && chmod 4755 usr/bin/tool
        head -c 300000 /dev/urandom > usr/lib/big.bin
        head -c 1000 /dev/urandom > 'ünïcødé ✓/файл 日本語'
        echo long > '\(long)'
        ln usr/bin/tool usr/lib/deep/er/still/tool-hardlink
        ln etc/passwd home/u/passwd-link
        ln -s /etc/shadow usr/lib/abs-outside
        ln -s ../../../../../../../etc usr/lib/rel-outside
        ln -s big.bin usr/lib/big-link
        mkfifo var/fifo
        mknod var/null c 1 3
        mknod var/loop b 7 200
        truncate -s 5M var/sparse && printf 'end' >> var/sparse && printf 'start' | dd of=var/sparse conv=notrunc status=none
        printf 'data' > var/trailing-hole && truncate -s 1M var/trailing-hole
        head -c 5000 /dev/urandom > var/trailing-zeros && head -c 9000 /dev/zero >> var/trailing-zeros
        head -c 12288 /dev/zero > var/all-zeros && : > var/empty
        echo secret > readonly/file && chmod 0555 readonly
        echo was-a-dir > dir-to-file/inside
        echo was-a-file > file-to-dir
        echo gone > var/log/old.log
        chown 1234:4321 home/u && chown -h 42:43 usr/lib/big-link
        chmod 1777 var
        setfattr -n user.color -v blue etc/passwd
        setfattr -n security.test -v label usr/lib/big.bin
        setfattr -n trusted.t -v 1 usr/bin
        setcap cap_net_raw+ep usr/lib/big.bin
        setfacl -m u:1000:rwx,g:100:r home/u
        setfacl -d -m u:1000:rx home/u
        touch -h -d '2001-02-03 04:05:06.123456789' usr/lib/big-link etc/passwd
        """)
}

/// Changes that exercise every kind of update, deletion and type change.
func changeHardTree(_ dir: String) throws {
    try sh(
        """
        cd '\(dir)'
        rm -rf dir-to-file && echo now-a-file > dir-to-file
        rm -f file-to-dir && mkdir file-to-dir && echo inside > file-to-dir/new
        rm usr/lib/big-link && echo not-a-link-anymore > usr/lib/big-link
        rm var/fifo && ln -s /dev/null var/fifo
        chmod u+w readonly && echo changed > readonly/file && echo new > readonly/new && chmod 0555 readonly
        rm -rf var/log/old.log 'ünïcødé ✓'
        head -c 20 /dev/urandom | dd of=usr/lib/big.bin bs=1 seek=150000 conv=notrunc status=none
        cp usr/lib/big.bin usr/lib/moved.bin && rm -f home/u/passwd-link && ln usr/lib/moved.bin home/u/now-linked
        chmod 0700 etc && chown 7:8 etc/passwd
        setfattr -x user.color etc/passwd && setfattr -n user.new -v x etc/passwd
        mknod var/null2 c 1 5 && rm var/loop && mknod var/loop b 7 201
        """)
}
