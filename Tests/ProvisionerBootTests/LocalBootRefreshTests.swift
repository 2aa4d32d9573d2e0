import ProvisionerAPI
import ProvisionerBoot
import Testing

/// N11: which of the ESP's boot files a boot fetches again, and which it removes.
@Suite struct LocalBootRefreshTests {
    static let imageKernel = BootFiles(
        kernel: .derived("k1"), initrds: [.initramfs("default"), .derived("m1")], release: "6.1.0-57-cloud-amd64",
        source: .image, reason: "the kernel of debian@00c5")
    static let files = LocalBoot.files(imageKernel)
    static let etags = ["kernel": "\"k1\"", "initrd0": "\"i\"", "initrd1": "\"m1\""]
    static let all: Set<String> = [LocalBoot.kernel, LocalBoot.initramfs, LocalBoot.modules]

    @Test func theFilesOfABoot() {
        #expect(Self.files.map(\.name) == ["kernel", "initrd0", "initrd1"])
        #expect(Self.files.map(\.local) == [LocalBoot.kernel, LocalBoot.initramfs, LocalBoot.modules])
        #expect(Self.files.map(\.remote) == ["/files/derived/k1", "/files/initramfs/default", "/files/derived/m1"])
    }

    @Test func nothingChangedNothingFetched() {
        let r = LocalBoot.refresh(Self.files, current: Self.etags, recorded: Self.etags, present: Self.all)
        #expect(r.fetch.isEmpty && r.remove.isEmpty)
    }

    @Test func aNewETagOrAMissingFileIsFetched() {
        var current = Self.etags
        current["initrd1"] = "\"m2\""
        var present = Self.all
        present.remove(LocalBoot.kernel)
        let r = LocalBoot.refresh(Self.files, current: current, recorded: Self.etags, present: present)
        #expect(r.fetch.map(\.name) == ["kernel", "initrd1"])
        // Nothing recorded (an ESP written by an older agent, or a blank one): everything.
        #expect(LocalBoot.refresh(Self.files, current: Self.etags, recorded: [:], present: Self.all).fetch.count == 3)
    }

    /// The node now boots the server's kernel with one initrd: the image kernel's modules go.
    @Test func initrdsNoLongerNamedAreRemoved() {
        let server = BootFiles(
            kernel: .kernel("default"), initrds: [.initramfs("default")], source: .serverDefault, reason: "r")
        let files = LocalBoot.files(server)
        let current = ["kernel": "\"d\"", "initrd0": "\"i\""]
        let r = LocalBoot.refresh(
            files, current: current, recorded: Self.etags, present: Self.all.union(["provisioner/initrd-3.img"]))
        #expect(r.fetch.map(\.name) == ["kernel"])
        #expect(r.remove == [LocalBoot.modules, "provisioner/initrd-3.img"])
    }

    /// More initrds than the ESP has slots for: nothing to remove, and no trap.
    @Test func aBootWithManyInitrds() {
        let many = BootFiles(
            kernel: .kernel("k"), initrds: (0..<10).map { .initramfs("i\($0)") }, source: .files, reason: "r")
        let r = LocalBoot.refresh(LocalBoot.files(many), current: [:], recorded: [:], present: Self.all)
        #expect(r.fetch.count == 8)  // all but the three already there (no ETags either side)
        #expect(r.remove.isEmpty)
    }
}
