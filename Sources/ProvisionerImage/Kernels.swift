/// The kernels an image version carries, found in its manifest (docs/boot.md, "The image's kernel").
///
/// A kernel is offered when the image holds both its file and its modules:
///
/// ```
/// boot/vmlinuz-RELEASE          (or lib/modules/RELEASE/vmlinuz, as Fedora and RHEL install it)
/// lib/modules/RELEASE/          with at least one module or modules.builtin
/// ```
///
/// Paths are followed through the image's own links (`lib` → `usr/lib` on a merged-/usr root), never
/// out of it. Everything that looks like a kernel but is not bootable (a kernel without modules,
/// modules without a kernel, a dangling `vmlinuz` link) is reported as a problem, not offered.
public struct ImageKernel: Codable, Hashable, Sendable {
    /// `uname -r` of the kernel: `6.1.0-57-cloud-amd64`.
    public var release: String
    /// The kernel file as the manifest names it (links resolved): `boot/vmlinuz-6.1.0-57-cloud-amd64`.
    public var kernelPath: String
    public var kernelSize: UInt64
    /// The modules directory as the manifest names it: `usr/lib/modules/6.1.0-57-cloud-amd64`.
    public var modulesPath: String
    /// Loadable modules (`*.ko`, compressed or not) under the modules directory.
    public var moduleCount: Int
    /// The identity of everything a provisioning initramfs is derived from: the kernel file's
    /// content and every entry under the modules directory and `lib/firmware` (paths and content
    /// hashes). Equal keys derive equal files, so a version that does not touch the kernel reuses
    /// what an earlier one derived.
    public var derivationKey: String

    public init(
        release: String, kernelPath: String, kernelSize: UInt64, modulesPath: String, moduleCount: Int,
        derivationKey: String
    ) {
        self.release = release
        self.kernelPath = kernelPath
        self.kernelSize = kernelSize
        self.modulesPath = modulesPath
        self.moduleCount = moduleCount
        self.derivationKey = derivationKey
    }
}

/// What a scan of a manifest found.
public struct KernelScan: Hashable, Sendable {
    /// Bootable kernels, newest first (`KernelRelease.precedes`).
    public var kernels: [ImageKernel]
    /// Why something kernel-like was not offered, one sentence each.
    public var problems: [String]

    /// The kernel a node boots by default: the newest.
    public var newest: ImageKernel? { kernels.first }
}

public enum KernelDiscovery {
    /// Bumped when the derivation (module selection, archive format) changes, so that cached
    /// initramfs files made by an older rule are not reused.
    public static let derivationVersion = "initrd-modules-1"

    public static func scan(_ manifest: Manifest) -> KernelScan {
        let tree = ManifestTree(manifest)
        var problems: [String] = []
        let bootDir = tree.resolve("boot")
        let modulesDir = tree.resolve("lib/modules")

        // Releases with a modules directory, and what each holds.
        var modules: [String: (path: String, count: Int, hasBuiltin: Bool)] = [:]
        if let modulesDir, tree.kind(of: modulesDir) == .directory {
            for index in tree.children(of: modulesDir) {
                let entry = manifest.entries[index]
                let name = String(decoding: PathRules.name(entry.path), as: UTF8.self)
                guard let dir = tree.resolve(entry.pathString), tree.kind(of: dir) == .directory else { continue }
                var count = 0
                var hasBuiltin = false
                for i in tree.descendants(of: dir) {
                    let e = manifest.entries[i]
                    let base = String(decoding: PathRules.name(e.path), as: UTF8.self)
                    if e.kind == .file || e.kind == .hardlink {
                        if isModuleFile(base) { count += 1 }
                        if base == "modules.builtin" { hasBuiltin = true }
                    }
                }
                modules[name] = (dir, count, hasBuiltin)
            }
        }

        // Kernel files: boot/vmlinuz-RELEASE, then lib/modules/RELEASE/vmlinuz.
        var kernelFiles: [String: Int] = [:]
        if let bootDir, tree.kind(of: bootDir) == .directory {
            for index in tree.children(of: bootDir) {
                let entry = manifest.entries[index]
                let name = String(decoding: PathRules.name(entry.path), as: UTF8.self)
                guard name.hasPrefix("vmlinuz-"), name.count > "vmlinuz-".count else { continue }
                let release = String(name.dropFirst("vmlinuz-".count))
                guard let file = tree.regularFile(entry.pathString) else {
                    problems.append("\(entry.pathString): \(tree.describeBroken(entry.pathString)); not offered")
                    continue
                }
                kernelFiles[release] = file
            }
        }
        for (release, dir) in modules.map({ ($0.key, $0.value.path) }) where kernelFiles[release] == nil {
            if let file = tree.regularFile(dir + "/vmlinuz") { kernelFiles[release] = file }
        }
        // Top-level aliases (vmlinuz, vmlinuz.old) only matter when they point nowhere.
        for name in ["vmlinuz", "vmlinuz.old"] {
            guard let index = tree.index[name], manifest.entries[index].kind == .symlink else { continue }
            if tree.regularFile(name) == nil {
                let target = String(decoding: manifest.entries[index].target, as: UTF8.self)
                problems.append("\(name): a link to \(target), which is not a file in the image (ignored)")
            }
        }

        var kernels: [ImageKernel] = []
        for (release, fileIndex) in kernelFiles {
            let file = manifest.entries[fileIndex]
            guard file.size > 0 else {
                problems.append("\(file.pathString): an empty file; not offered")
                continue
            }
            guard let mods = modules[release] else {
                problems.append("\(file.pathString): no lib/modules/\(release) in the image; not offered")
                continue
            }
            guard mods.count > 0 || mods.hasBuiltin else {
                problems.append("\(mods.path): holds no modules; \(file.pathString) not offered")
                continue
            }
            kernels.append(
                ImageKernel(
                    release: release, kernelPath: file.pathString, kernelSize: file.size, modulesPath: mods.path,
                    moduleCount: mods.count,
                    derivationKey: derivationKey(tree: tree, kernel: fileIndex, modulesDir: mods.path)))
        }
        for (release, mods) in modules where kernelFiles[release] == nil {
            problems.append("\(mods.path): modules without a kernel (no boot/vmlinuz-\(release)); not offered")
        }
        kernels.sort { KernelRelease.precedes($1.release, $0.release) }
        return KernelScan(kernels: kernels, problems: problems.sorted())
    }

    /// Loadable module file names: `raid1.ko`, `raid1.ko.xz`, `.ko.zst`, `.ko.gz`.
    public static func isModuleFile(_ name: String) -> Bool {
        name.hasSuffix(".ko") || name.hasSuffix(".ko.xz") || name.hasSuffix(".ko.zst") || name.hasSuffix(".ko.gz")
    }

    static func derivationKey(tree: ManifestTree, kernel: Int, modulesDir: String) -> String {
        var text = derivationVersion + "\n"
        func add(_ entry: Entry) {
            text += entry.pathString + " " + entry.kind.name + " " + String(entry.size)
            for chunk in entry.chunks { text += " " + chunk.hash.hex }
            if entry.kind == .symlink { text += " -> " + String(decoding: entry.target, as: UTF8.self) }
            text += "\n"
        }
        add(tree.manifest.entries[kernel])
        for i in tree.descendants(of: modulesDir) { add(tree.manifest.entries[i]) }
        if let firmware = tree.resolve("lib/firmware") {
            for i in tree.descendants(of: firmware) { add(tree.manifest.entries[i]) }
        }
        return ObjectHash.of(Array(text.utf8)).hex
    }
}

/// Kernel releases in the order `sort -V` gives them: runs of digits compare as numbers, other runs
/// byte-wise, so `6.12.117+deb12-cloud-amd64` is newer than `6.1.0-57-cloud-amd64`.
public enum KernelRelease {
    public static func precedes(_ a: String, _ b: String) -> Bool {
        let x = runs(a)
        let y = runs(b)
        for (p, q) in zip(x, y) where p != q {
            switch (p, q) {
            case (.number(let m), .number(let n)): return m.count != n.count ? m.count < n.count : m.lexicographicallyPrecedes(n)
            case (.number, .text): return true
            case (.text, .number): return false
            case (.text(let s), .text(let t)): return s.lexicographicallyPrecedes(t)
            }
        }
        return x.count < y.count
    }

    enum Run: Equatable {
        /// Digits with leading zeros removed, compared by length first.
        case number([UInt8])
        case text([UInt8])
    }

    static func runs(_ s: String) -> [Run] {
        var out: [Run] = []
        var current: [UInt8] = []
        var digits = false
        func flush() {
            guard !current.isEmpty else { return }
            if digits {
                let trimmed = Array(current.drop { $0 == UInt8(ascii: "0") })
                out.append(.number(trimmed))
            } else {
                out.append(.text(current))
            }
            current = []
        }
        for byte in s.utf8 {
            let isDigit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
            if isDigit != digits { flush() }
            digits = isDigit
            current.append(byte)
        }
        flush()
        return out
    }
}

/// A manifest as a tree: entries by path, links followed inside the image.
public struct ManifestTree: Sendable {
    public let manifest: Manifest
    /// Entry index by path string.
    public let index: [String: Int]

    public init(_ manifest: Manifest) {
        self.manifest = manifest
        var index: [String: Int] = [:]
        index.reserveCapacity(manifest.entries.count)
        for (i, entry) in manifest.entries.enumerated() { index[entry.pathString] = i }
        self.index = index
    }

    public func kind(of path: String) -> EntryKind? { index[path].map { manifest.entries[$0].kind } }

    /// `path` with every link in it followed (absolute targets from the image's root), or nil when
    /// something on the way is missing, a link leads out of the root, or links loop.
    public func resolve(_ path: String) -> String? {
        var pending = path.split(separator: "/").map(String.init)
        var resolved: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component == "." || component.isEmpty { continue }
            if component == ".." {
                guard !resolved.isEmpty else { return nil }
                resolved.removeLast()
                continue
            }
            let candidate = (resolved + [component]).joined(separator: "/")
            guard let i = index[candidate] else { return nil }
            let entry = manifest.entries[i]
            if entry.kind == .symlink {
                hops += 1
                guard hops <= 40 else { return nil }
                let target = String(decoding: entry.target, as: UTF8.self)
                if target.hasPrefix("/") { resolved = [] }
                pending = target.split(separator: "/").map(String.init) + pending
            } else {
                resolved.append(component)
            }
        }
        return resolved.joined(separator: "/")
    }

    /// The index of the regular file `path` names (links and hard links followed), or nil.
    public func regularFile(_ path: String) -> Int? {
        guard let real = resolve(path), var i = index[real] else { return nil }
        if manifest.entries[i].kind == .hardlink {
            let target = manifest.entries[i].linkIndex
            guard target >= 0, target < manifest.entries.count else { return nil }
            i = target
        }
        return manifest.entries[i].kind == .file ? i : nil
    }

    func describeBroken(_ path: String) -> String {
        guard let i = index[path] else { return "missing" }
        let entry = manifest.entries[i]
        if entry.kind == .symlink {
            return "a link to \(String(decoding: entry.target, as: UTF8.self)), which is not a file in the image"
        }
        return "a \(entry.kind.name), not a file"
    }

    /// Direct children of the directory `dir` (a resolved path), by index.
    public func children(of dir: String) -> [Int] {
        descendants(of: dir).filter { PathRules.parent(manifest.entries[$0].path) == Array(dir.utf8) }
    }

    /// Everything below the directory `dir` (a resolved path). The manifest is sorted byte-wise,
    /// so they are one run starting after `dir/`.
    public func descendants(of dir: String) -> [Int] {
        let prefix = Array((dir.isEmpty ? "" : dir + "/").utf8)
        let entries = manifest.entries
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if pathLess(entries[mid].path, prefix) { low = mid + 1 } else { high = mid }
        }
        var out: [Int] = []
        var i = low
        while i < entries.count, entries[i].path.starts(with: prefix) {
            if entries[i].path.count > prefix.count { out.append(i) }
            i += 1
        }
        return out
    }
}
