import CArchive
import Foundation
import NIOPosix
import ProvisionerAPI
import ProvisionerImage

/// What was made for one kernel of an image (docs/boot.md, "The image's kernel"), recorded in
/// `STATE/boot-cache/KEY.json` under the kernel's derivation key, so that it is made once per kernel
/// and not per version, node or boot.
public struct DerivedKernel: Codable, Hashable, Sendable {
    public var release: String
    /// SHA-256 names of the two files in `files/derived`.
    public var kernelFile: String
    public var kernelSize: Int
    public var modulesFile: String
    public var modulesSize: Int
    /// Modules and firmware files in the modules initramfs.
    public var modules: Int
    public var firmware: Int
    /// How long making it took.
    public var seconds: Double
}

/// A failure while making a kernel's boot files, naming the kernel, the step and the cause.
public struct KernelDerivationError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// The kernels of image versions and the boot files derived from them.
///
/// For each kernel an image version carries (`KernelDiscovery`), two files, named by their SHA-256 in
/// `STATE/files/derived`:
/// - the kernel file itself, as the image holds it;
/// - a modules initramfs: the modules `InitrdModules` selects from the image's `lib/modules/RELEASE`,
///   the firmware they ask for from its `lib/firmware`, and `depmod`'s indexes for them, as a gzip'd
///   newc cpio. The kernel unpacks it after the kernel-independent `files/initramfs/base`.
public actor KernelCatalog {
    let store: ImageStore
    let derivedDirectory: String
    let cacheDirectory: String
    let workDirectory: String
    private var scans: [String: KernelScan] = [:]
    private var running: [String: Task<DerivedKernel, any Error>] = [:]

    public init(config: ServerConfig) {
        store = ImageStore(root: config.imagesDirectory)
        derivedDirectory = config.filesDirectory + "/derived"
        cacheDirectory = config.stateDir + "/boot-cache"
        workDirectory = config.stateDir + "/tmp"
    }

    /// The kernels of `image@version` (a version id), nil when the store has no such manifest.
    public func scan(image: String, version: String) async throws -> KernelScan? {
        let key = image + "@" + version
        if let known = scans[key] { return known }
        guard let id = ObjectHash(hex: version) else { return nil }
        let store = self.store
        let scan = try await NIOThreadPool.singleton.runIfActive { () throws -> KernelScan? in
            guard let bytes = try store.manifestBytes(image: image, version: id) else { return nil }
            return KernelDiscovery.scan(try ManifestCodec.decode(bytes))
        }
        if let scan { scans[key] = scan }
        return scan
    }

    /// The bootable kernels of `image@version`, newest first, each with its derived files (made now
    /// when they are not yet), or the problem that stopped them. Nil when the version is unknown.
    public func offers(image: String, version: String) async throws -> [KernelOffer]? {
        guard let scan = try await scan(image: image, version: version) else { return nil }
        var offers: [KernelOffer] = []
        for kernel in scan.kernels {
            do {
                let made = try await derived(kernel, image: image, version: version)
                offers.append(KernelOffer(release: kernel.release, kernelFile: made.kernelFile, modulesFile: made.modulesFile))
            } catch {
                offers.append(
                    KernelOffer(release: kernel.release, kernelFile: nil, modulesFile: nil, problem: "\(error)"))
            }
        }
        return offers
    }

    /// What was already made for `kernel`, without making anything.
    public func cached(_ kernel: ImageKernel) -> DerivedKernel? {
        Self.readCache(cacheDirectory + "/" + kernel.derivationKey + ".json", derivedDirectory: derivedDirectory)
    }

    /// The boot files of `kernel`, from the cache or made now; one derivation per key at a time.
    public func derived(_ kernel: ImageKernel, image: String, version: String) async throws -> DerivedKernel {
        if let known = cached(kernel) { return known }
        if let task = running[kernel.derivationKey] { return try await task.value }
        let (store, derivedDirectory, cacheDirectory, workDirectory) = (
            self.store, self.derivedDirectory, self.cacheDirectory, self.workDirectory
        )
        let task = Task {
            try await NIOThreadPool.singleton.runIfActive {
                try Self.derive(
                    kernel, image: image, version: version, store: store, derivedDirectory: derivedDirectory,
                    cacheDirectory: cacheDirectory, workDirectory: workDirectory)
            }
        }
        running[kernel.derivationKey] = task
        defer { running[kernel.derivationKey] = nil }
        return try await task.value
    }

    static func readCache(_ path: String, derivedDirectory: String) -> DerivedKernel? {
        guard let data = FileManager.default.contents(atPath: path),
            let record = try? JSONDecoder().decode(DerivedKernel.self, from: data),
            FileManager.default.fileExists(atPath: derivedDirectory + "/" + record.kernelFile),
            FileManager.default.fileExists(atPath: derivedDirectory + "/" + record.modulesFile)
        else { return nil }
        return record
    }

    /// `image gc`'s part: what was made for kernels that no version in the store carries any more
    /// (records and files older than `graceSeconds`; a file another kept record names stays).
    public func collect(graceSeconds: Int64, now: Int64) async throws -> (removed: Int, freedBytes: UInt64) {
        var keep = Set<String>()
        for image in try store.listImages() {
            for version in image.versions {
                for kernel in try await scan(image: image.name, version: version.id)?.kernels ?? [] {
                    keep.insert(kernel.derivationKey)
                }
            }
        }
        let (cacheDirectory, derivedDirectory, keys) = (self.cacheDirectory, self.derivedDirectory, keep)
        return try await NIOThreadPool.singleton.runIfActive {
            let fm = FileManager.default
            func age(_ path: String) -> Int64 {
                let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date()
                return now - Int64(modified.timeIntervalSince1970)
            }
            var named = Set<String>()
            var removed = 0
            var freed: UInt64 = 0
            for name in (try? fm.contentsOfDirectory(atPath: cacheDirectory)) ?? [] where name.hasSuffix(".json") {
                let path = cacheDirectory + "/" + name
                let record = (fm.contents(atPath: path)).flatMap { try? JSONDecoder().decode(DerivedKernel.self, from: $0) }
                if keys.contains(String(name.dropLast(5))) || age(path) < graceSeconds {
                    if let record { named.formUnion([record.kernelFile, record.modulesFile]) }
                } else {
                    try? fm.removeItem(atPath: path)
                }
            }
            for name in (try? fm.contentsOfDirectory(atPath: derivedDirectory)) ?? [] where !named.contains(name) {
                let path = derivedDirectory + "/" + name
                guard age(path) >= graceSeconds else { continue }
                let size = (try? fm.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
                if (try? fm.removeItem(atPath: path)) != nil {
                    removed += 1
                    freed += size
                }
            }
            return (removed, freed)
        }
    }

    // MARK: Making the files

    static func derive(
        _ kernel: ImageKernel, image: String, version: String, store: ImageStore, derivedDirectory: String,
        cacheDirectory: String, workDirectory: String
    ) throws -> DerivedKernel {
        let start = Date()
        func fail(_ step: String, _ cause: Any) -> KernelDerivationError {
            KernelDerivationError(description: "making the boot files of kernel \(kernel.release) of \(image)@\(version.prefix(12)): \(step): \(cause)")
        }
        guard let id = ObjectHash(hex: version), let bytes = try store.manifestBytes(image: image, version: id) else {
            throw fail("reading the version's manifest", "the store has no such version")
        }
        let tree = ManifestTree(try ManifestCodec.decode(bytes))
        let fm = FileManager.default
        for dir in [derivedDirectory, cacheDirectory, workDirectory] {
            do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw fail("creating \(dir)", error)
            }
        }
        let work = workDirectory + "/kernel-" + kernel.derivationKey.prefix(16) + "-" + UUID().uuidString.prefix(8)
        defer { try? fm.removeItem(atPath: work) }
        let context = DecompressionContext()
        func content(_ index: Int) throws -> [UInt8] {
            do { return try ImageContent.read(index, tree: tree, store: store, context: context) } catch {
                throw fail("reading \(tree.manifest.entries[index].pathString) from the store", error)
            }
        }
        func write(_ bytes: [UInt8], to path: String) throws {
            do {
                try fm.createDirectory(
                    atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                guard fm.createFile(atPath: path, contents: Data(bytes)) else { throw CocoaError(.fileWriteUnknown) }
            } catch {
                throw fail("writing \(path)", error)
            }
        }

        // The kernel file.
        guard let kernelIndex = tree.regularFile(kernel.kernelPath) else {
            throw fail("reading \(kernel.kernelPath)", "not a file in the image")
        }
        let kernelBytes = try content(kernelIndex)
        let kernelFile = try publish(kernelBytes, in: derivedDirectory, fail: fail)

        // The modules: what the rules select, with their dependencies from the image's modules.dep.
        let modulesRoot = "lib/modules/" + kernel.release
        var available: [String: Int] = [:]
        var metadata: [String: Int] = [:]
        for index in tree.descendants(of: kernel.modulesPath) {
            let entry = tree.manifest.entries[index]
            let relative = String(entry.pathString.dropFirst(kernel.modulesPath.count + 1))
            let name = String(relative.split(separator: "/").last ?? "")
            guard let file = tree.regularFile(entry.pathString) else { continue }
            if KernelDiscovery.isModuleFile(name) {
                available[relative] = file
            } else if ["modules.order", "modules.builtin", "modules.builtin.modinfo", "modules.dep"].contains(relative) {
                metadata[relative] = file
            }
        }
        let dependencies = try metadata["modules.dep"].map {
            InitrdModules.parseDependencies(String(decoding: try content($0), as: UTF8.self))
        } ?? [:]
        let selected = InitrdModules.select(available: Array(available.keys), dependencies: dependencies)
        var written: [String] = []
        for relative in selected {
            let path = work + "/" + modulesRoot + "/" + relative
            try write(try content(available[relative]!), to: path)
            written.append(path)
        }
        for (relative, index) in metadata where relative != "modules.dep" {
            try write(try content(index), to: work + "/" + modulesRoot + "/" + relative)
        }

        // Firmware the selected modules ask for, as far as the image has it.
        var firmwareCount = 0
        if !written.isEmpty, let firmwareDir = tree.resolve("lib/firmware") {
            let requested: [String]
            do {
                requested = try Tool.run(["modinfo", "-F", "firmware"] + written, doing: "asking the modules for their firmware")
                    .split(separator: "\n").map(String.init)
            } catch { throw fail("modinfo", error) }
            var firmware: [String: Int] = [:]
            for index in tree.descendants(of: firmwareDir) {
                let path = tree.manifest.entries[index].pathString
                if let file = tree.regularFile(path) { firmware[String(path.dropFirst(firmwareDir.count + 1))] = file }
            }
            for name in InitrdModules.firmware(requested: requested, available: Set(firmware.keys)) {
                try write(try content(firmware[name]!), to: work + "/lib/firmware/" + name)
                firmwareCount += 1
            }
        }

        // depmod's indexes for exactly these modules, so udev and modprobe find them by alias.
        do {
            _ = try Tool.run(["depmod", "-b", work, kernel.release], doing: "indexing the selected modules")
        } catch { throw fail("depmod", error) }

        let archive = work + ".cpio.gz"
        defer { try? fm.removeItem(atPath: archive) }
        do { try Cpio.write(from: work, under: ["lib/modules", "lib/firmware"], to: archive) } catch {
            throw fail("writing the modules initramfs", error)
        }
        guard let archiveBytes = fm.contents(atPath: archive) else { throw fail("reading \(archive)", "gone") }
        let modulesFile = try publish(Array(archiveBytes), in: derivedDirectory, fail: fail)

        let record = DerivedKernel(
            release: kernel.release, kernelFile: kernelFile, kernelSize: kernelBytes.count, modulesFile: modulesFile,
            modulesSize: archiveBytes.count, modules: selected.count, firmware: firmwareCount,
            seconds: (Date().timeIntervalSince(start) * 10).rounded() / 10)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try encoder.encode(record).write(
                to: URL(fileURLWithPath: cacheDirectory + "/" + kernel.derivationKey + ".json"), options: .atomic)
        } catch { throw fail("recording the result in \(cacheDirectory)", error) }
        return record
    }

    /// Writes `bytes` as `DIR/SHA256` (atomically; kept when already there) and returns the name.
    static func publish(_ bytes: [UInt8], in directory: String, fail: (String, Any) -> KernelDerivationError) throws
        -> String
    {
        let name = ObjectHash.of(bytes).hex
        let path = directory + "/" + name
        guard !FileManager.default.fileExists(atPath: path) else { return name }
        do { try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw fail("writing \(path)", error)
        }
        return name
    }
}

/// The content of a file entry of a manifest, from the image store.
enum ImageContent {
    static func read(_ index: Int, tree: ManifestTree, store: ImageStore, context: DecompressionContext) throws
        -> [UInt8]
    {
        var entry = tree.manifest.entries[index]
        if entry.kind == .hardlink { entry = tree.manifest.entries[entry.linkIndex] }
        var out: [UInt8] = []
        out.reserveCapacity(Int(entry.size))
        for chunk in entry.chunks {
            if chunk.isHole {
                out.append(contentsOf: repeatElement(0, count: Int(chunk.length)))
                continue
            }
            guard let stored = try store.storedObject(chunk.hash) else {
                throw KernelDerivationError(description: "object \(chunk.hash.hex) is missing from the store")
            }
            out += try stored.withUnsafeBytes {
                try Zstd.decompress($0, expectedSize: Int(chunk.length), subject: "object \(chunk.hash.hex)", context: context)
            }
        }
        return out
    }
}

/// A tool run by the server (kmod's `modinfo` and `depmod`), its failure naming what it was doing.
enum Tool {
    static func run(_ argv: [String], doing what: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw KernelDerivationError(description: "\(what): cannot start \(argv[0]): \(error)")
        }
        // Both pipes are drained at once, so a tool that writes much to one cannot stall on it.
        let group = DispatchGroup()
        nonisolated(unsafe) var errorData = Data()
        DispatchQueue.global().async(group: group) { errorData = err.fileHandleForReading.readDataToEndOfFile() }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errorData, as: UTF8.self)
            throw KernelDerivationError(
                description: "\(what): \(argv[0]) exited with \(process.terminationStatus): "
                    + (text.split(separator: "\n").last.map(String.init) ?? ""))
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// A gzip'd newc cpio, the format the kernel unpacks as an initramfs, written with libarchive.
enum Cpio {
    /// Archives the trees `under` (paths relative to `root`) with owner root and time 0. The parents
    /// of those trees get no entry of their own: the archive is unpacked over our base initramfs,
    /// where `lib` may be a link to `usr/lib` that an entry would replace.
    static func write(from root: String, under trees: [String], to path: String) throws {
        guard let archive = archive_write_new() else { throw KernelDerivationError(description: "libarchive: out of memory") }
        defer { archive_write_free(archive) }
        func check(_ status: Int32, _ what: String) throws {
            guard status >= ARCHIVE_WARN else {
                throw KernelDerivationError(
                    description: "\(what): \(archive_error_string(archive).map { String(cString: $0) } ?? "libarchive error \(status)")")
            }
        }
        try check(archive_write_set_format_cpio_newc(archive), "choosing the newc format")
        try check(archive_write_add_filter_gzip(archive), "choosing gzip")
        _ = archive_write_set_filter_option(archive, "gzip", "timestamp", nil)
        try check(archive_write_set_bytes_in_last_block(archive, 1), "block size")
        try check(archive_write_open_filename(archive, path), "opening \(path)")

        let fm = FileManager.default
        var paths: [String] = []
        for tree in trees where fm.fileExists(atPath: root + "/" + tree) {
            paths.append(tree)
            paths += (fm.subpaths(atPath: root + "/" + tree) ?? []).map { tree + "/" + $0 }
        }
        paths.sort()
        var inode: Int64 = 1
        for relative in paths {
            let full = root + "/" + relative
            var st = stat()
            guard lstat(full, &st) == 0 else { throw KernelDerivationError(description: "\(full): \(String(cString: strerror(errno)))") }
            guard let entry = archive_entry_new() else { throw KernelDerivationError(description: "libarchive: out of memory") }
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, relative)
            archive_entry_set_uid(entry, 0)
            archive_entry_set_gid(entry, 0)
            archive_entry_set_mtime(entry, 0, 0)
            archive_entry_set_ino64(entry, inode)
            archive_entry_set_nlink(entry, 1)
            inode += 1
            let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
            archive_entry_set_filetype(entry, isDirectory ? 0o040000 : 0o100000)
            archive_entry_set_perm(entry, isDirectory ? 0o755 : 0o644)
            let data = isDirectory ? Data() : (fm.contents(atPath: full) ?? Data())
            archive_entry_set_size(entry, Int64(data.count))
            try check(archive_write_header(archive, entry), "adding \(relative)")
            if !data.isEmpty {
                let n = data.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
                guard n == data.count else { try check(Int32(ARCHIVE_FATAL), "writing \(relative)"); return }
            }
        }
        try check(archive_write_close(archive), "closing \(path)")
    }
}
