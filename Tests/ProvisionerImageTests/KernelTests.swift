import Testing

@testable import ProvisionerImage

/// A manifest from a compact description: `dir/`, `file=content`, `link->target`, `hard=>earlier`.
func manifest(_ specs: [String]) -> Manifest {
    var entries = [Entry("", .directory)]
    for spec in specs {
        if spec.hasSuffix("/") {
            entries.append(Entry(String(spec.dropLast()), .directory))
        } else if let r = spec.range(of: "->") {
            var e = Entry(String(spec[..<r.lowerBound]), .symlink)
            e.target = Array(spec[r.upperBound...].utf8)
            entries.append(e)
        } else if let r = spec.range(of: "=>") {
            var e = Entry(String(spec[..<r.lowerBound]), .hardlink)
            let target = String(spec[r.upperBound...])
            e.linkIndex = entries.firstIndex { $0.pathString == target } ?? -1
            entries.append(e)
        } else {
            let parts = spec.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            var e = Entry(parts[0], .file)
            let content = Array((parts.count > 1 ? parts[1] : "x").utf8)
            e.size = UInt64(content.count)
            e.chunks = content.isEmpty ? [] : [Chunk(length: UInt32(content.count), hash: .of(content))]
            entries.append(e)
        }
    }
    entries.sort { pathLess($0.path, $1.path) }
    // Hard links name entries by index: fix them up after sorting.
    for i in entries.indices where entries[i].kind == .hardlink {
        if let spec = specs.first(where: { $0.hasPrefix(entries[i].pathString + "=>") }) {
            let target = String(spec[spec.range(of: "=>")!.upperBound...])
            entries[i].linkIndex = entries.firstIndex { $0.pathString == target } ?? -1
        }
    }
    return Manifest(entries: entries)
}

/// A merged-/usr Debian root with the given kernels (file and modules).
func debianRoot(kernels: [String], modulesOnly: [String] = [], kernelsOnly: [String] = [], extra: [String] = [])
    -> Manifest
{
    var specs = ["boot/", "usr/", "usr/lib/", "usr/lib/modules/", "lib->usr/lib"]
    for release in kernels + kernelsOnly { specs.append("boot/vmlinuz-\(release)=kernel \(release)") }
    for release in kernels + modulesOnly {
        specs += [
            "usr/lib/modules/\(release)/", "usr/lib/modules/\(release)/kernel/",
            "usr/lib/modules/\(release)/kernel/raid1.ko=raid1 \(release)",
            "usr/lib/modules/\(release)/modules.builtin=",
        ]
    }
    return manifest(specs + extra)
}

@Suite struct KernelDiscoveryTests {
    @Test func findsEachKernelNewestFirstThroughTheLibLink() {
        let scan = KernelDiscovery.scan(debianRoot(kernels: ["6.1.0-57-cloud-amd64", "6.12.117+deb12-cloud-amd64"]))
        #expect(scan.kernels.map(\.release) == ["6.12.117+deb12-cloud-amd64", "6.1.0-57-cloud-amd64"])
        #expect(scan.newest?.kernelPath == "boot/vmlinuz-6.12.117+deb12-cloud-amd64")
        #expect(scan.newest?.modulesPath == "usr/lib/modules/6.12.117+deb12-cloud-amd64")
        #expect(scan.newest?.moduleCount == 1)
        #expect(scan.problems.isEmpty)
    }

    @Test func anImageWithoutAKernelOffersNone() {
        let scan = KernelDiscovery.scan(manifest(["etc/", "etc/hostname=n1"]))
        #expect(scan.kernels.isEmpty)
        #expect(scan.problems.isEmpty)
    }

    @Test(arguments: [
        // (what the image has, the problem named)
        (
            debianRoot(kernels: [], kernelsOnly: ["6.1.0-1-amd64"]),
            "boot/vmlinuz-6.1.0-1-amd64: no lib/modules/6.1.0-1-amd64 in the image; not offered"
        ),
        (
            debianRoot(kernels: [], modulesOnly: ["6.1.0-1-amd64"]),
            "usr/lib/modules/6.1.0-1-amd64: modules without a kernel (no boot/vmlinuz-6.1.0-1-amd64); not offered"
        ),
        (
            debianRoot(kernels: [], extra: ["vmlinuz->boot/vmlinuz-6.1.0-9-amd64"]),
            "vmlinuz: a link to boot/vmlinuz-6.1.0-9-amd64, which is not a file in the image (ignored)"
        ),
        (
            debianRoot(kernels: [], extra: ["boot/vmlinuz-6.1.0-9-amd64->/nowhere"]),
            "boot/vmlinuz-6.1.0-9-amd64: a link to /nowhere, which is not a file in the image; not offered"
        ),
        (
            debianRoot(kernels: [], kernelsOnly: ["6.1.0-2-amd64"], extra: ["usr/lib/modules/6.1.0-2-amd64/"]),
            "usr/lib/modules/6.1.0-2-amd64: holds no modules; boot/vmlinuz-6.1.0-2-amd64 not offered"
        ),
        (
            debianRoot(kernels: [], extra: ["boot/vmlinuz-6.1.0-3-amd64=", "usr/lib/modules/6.1.0-3-amd64/", "usr/lib/modules/6.1.0-3-amd64/modules.builtin="]),
            "boot/vmlinuz-6.1.0-3-amd64: an empty file; not offered"
        ),
    ])
    func notBootableIsReportedNotOffered(image: Manifest, problem: String) {
        let scan = KernelDiscovery.scan(image)
        #expect(scan.kernels.isEmpty)
        #expect(scan.problems == [problem])
    }

    @Test func aValidAliasIsIgnoredAndTheKernelStillFound() {
        let scan = KernelDiscovery.scan(
            debianRoot(kernels: ["6.1.0-57-amd64"], extra: ["vmlinuz->boot/vmlinuz-6.1.0-57-amd64"]))
        #expect(scan.kernels.map(\.release) == ["6.1.0-57-amd64"])
        #expect(scan.problems.isEmpty)
    }

    @Test func aKernelInsideItsModulesDirectoryAsFedoraInstallsIt() {
        let scan = KernelDiscovery.scan(
            manifest([
                "usr/", "usr/lib/", "usr/lib/modules/", "usr/lib/modules/6.8.5-301.fc40.x86_64/",
                "usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz=k", "usr/lib/modules/6.8.5-301.fc40.x86_64/x.ko.xz=m",
                "lib->usr/lib",
            ]))
        #expect(scan.kernels.map(\.kernelPath) == ["usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz"])
    }

    @Test func aHardLinkedKernelAndAnUnmergedRootWork() {
        let scan = KernelDiscovery.scan(
            manifest([
                "boot/", "boot/real=kernel bytes", "boot/vmlinuz-5.10.0-30-amd64=>boot/real", "lib/", "lib/modules/",
                "lib/modules/5.10.0-30-amd64/", "lib/modules/5.10.0-30-amd64/a.ko=m",
            ]))
        #expect(scan.kernels.map(\.release) == ["5.10.0-30-amd64"])
        #expect(scan.kernels.first?.kernelPath == "boot/real")
    }

    @Test func theDerivationKeyChangesOnlyWithTheKernelModulesOrFirmware() {
        let base = debianRoot(kernels: ["6.1.0-57-amd64"])
        let key = KernelDiscovery.scan(base).kernels[0].derivationKey
        // Another file elsewhere: same key.
        #expect(
            KernelDiscovery.scan(debianRoot(kernels: ["6.1.0-57-amd64"], extra: ["etc/", "etc/motd=hi"])).kernels[0]
                .derivationKey == key)
        // Firmware added: another key.
        #expect(
            KernelDiscovery.scan(
                debianRoot(kernels: ["6.1.0-57-amd64"], extra: ["usr/lib/firmware/", "usr/lib/firmware/a.bin=f"])
            ).kernels[0].derivationKey != key)
        // A module changed: another key.
        var changed = base
        let i = changed.entries.firstIndex { $0.pathString.hasSuffix("raid1.ko") }!
        changed.entries[i].chunks = [Chunk(length: 5, hash: .of(Array("other".utf8)))]
        #expect(KernelDiscovery.scan(changed).kernels[0].derivationKey != key)
    }

    @Test func linksThatLeaveTheRootOrLoopResolveToNothing() {
        let tree = ManifestTree(manifest(["a->b", "b->a", "up->../../etc", "abs->/usr", "usr/"]))
        #expect(tree.resolve("a") == nil)
        #expect(tree.resolve("up") == nil)
        #expect(tree.resolve("abs") == "usr")
    }
}

@Suite struct KernelReleaseTests {
    @Test(arguments: [
        ("6.1.0-57-amd64", "6.12.117+deb12-amd64"),
        ("6.1.0-9-amd64", "6.1.0-10-amd64"),
        ("5.14.0-427.el9.x86_64", "5.14.0-503.el9.x86_64"),
        ("6.1.0-57-amd64", "6.1.0-57-cloud-amd64"),
        ("6.1", "6.1.0"),
        ("6.01", "6.2"),
    ])
    func sortsLikeSortV(older: String, newer: String) {
        #expect(KernelRelease.precedes(older, newer))
        #expect(!KernelRelease.precedes(newer, older))
    }
}

@Suite struct InitrdModulesTests {
    @Test func selectsDriverClassesNamedModulesAndTheirDependencies() {
        let available = [
            "kernel/drivers/md/raid1.ko", "kernel/drivers/md/md-mod.ko", "kernel/fs/xfs/xfs.ko.xz",
            "kernel/lib/libcrc32c.ko", "kernel/fs/isofs/isofs.ko", "kernel/drivers/net/virtio_net.ko",
            "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/dummy.ko", "kernel/fs/nls/nls_iso8859-1.ko",
            "kernel/net/8021q/8021q.ko", "kernel/sound/snd.ko",
        ]
        let deps = InitrdModules.parseDependencies(
            """
            kernel/drivers/md/raid1.ko: kernel/drivers/md/md-mod.ko
            kernel/fs/xfs/xfs.ko.xz: kernel/lib/libcrc32c.ko
            kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/drivers/net/failover.ko
            kernel/fs/isofs/isofs.ko:
            broken line without colon
            """)
        #expect(deps["kernel/fs/isofs/isofs.ko"] == [])
        #expect(
            InitrdModules.select(available: available, dependencies: deps) == [
                "kernel/drivers/md/md-mod.ko", "kernel/drivers/md/raid1.ko", "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko", "kernel/fs/nls/nls_iso8859-1.ko", "kernel/fs/xfs/xfs.ko.xz",
                "kernel/lib/libcrc32c.ko", "kernel/net/8021q/8021q.ko",
            ])
    }

    @Test func moduleNamesAsModprobeSeesThem() {
        #expect(InitrdModules.name(ofModule: "kernel/fs/nls/nls_iso8859-1.ko") == "nls_iso8859_1")
        #expect(InitrdModules.name(ofModule: "kernel/arch/x86/crypto/crc32c-intel.ko.zst") == "crc32c_intel")
    }

    @Test func firmwareAsTheImageHasItAndNeverOutsideIt() {
        let available: Set<String> = ["bnx2/bnx2-mips-09-6.2.1b.fw", "i915/tgl_dmc.bin.xz", "rtl_nic/rtl8168h-2.fw"]
        #expect(
            InitrdModules.firmware(
                requested: ["bnx2/bnx2-mips-09-6.2.1b.fw", "i915/tgl_dmc.bin", "missing.fw", "../../etc/shadow", "/abs"],
                available: available) == ["bnx2/bnx2-mips-09-6.2.1b.fw", "i915/tgl_dmc.bin.xz"])
    }
}

/// Seeded paths (`/etc/resolv.conf`): the image's when the node has none, the node's once it has one.
@Suite struct SeededPathTests {
    @Test func aSeededPathIsPreservedOnlyWhereTheNodeHasIt() {
        let seeded = [Array("etc/resolv.conf".utf8), Array("etc/other".utf8), Array("../escape".utf8)]
        let has: Set<[UInt8]> = [Array("etc/resolv.conf".utf8), Array("../escape".utf8)]
        #expect(Differ.seededNow(seeded) { has.contains($0) } == [Array("etc/resolv.conf".utf8)])
        #expect(Differ.seededNow(seeded) { _ in false }.isEmpty)
    }
}
