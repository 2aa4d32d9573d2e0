import ProvisionerAPI
import Testing

/// docs/boot.md, "Which kernel boots": one test per row K1–K8.
@Suite struct BootSelectionTests {
    static let node = NodeConfig(name: "n1", image: ImageRef(name: "debian"))
    static let image = "debian@0a1b2c3d4e5f"
    static let offers = [
        KernelOffer(release: "6.12.117+deb12-cloud-amd64", kernelFile: "k612", modulesFile: "m612"),
        KernelOffer(release: "6.1.0-57-cloud-amd64", kernelFile: "k61", modulesFile: "m61"),
    ]

    static func choose(_ node: NodeConfig?, image: String? = image, _ kernels: [KernelOffer]? = offers, base: Bool = true)
        throws(BootSelectionError) -> BootFiles
    {
        try BootSelection.choose(node: node, image: image, kernels: kernels, hasBase: base)
    }

    @Test func K1_anUnknownMachineBootsTheServersKernel() throws {
        let files = try Self.choose(nil)
        #expect(files.kernel == .kernel("default"))
        #expect(files.initrds == [.initramfs("default")])
        #expect(files.source == .serverDefault)
        #expect(files.warning == nil)
    }

    @Test func K2_filesTheNodeNamesWinOverItsImage() throws {
        var node = Self.node
        node.kernel = "custom"
        let files = try Self.choose(node)
        #expect(files.kernel == .kernel("custom"))
        #expect(files.initrds == [.initramfs("default")])
        #expect(files.source == .files)
    }

    @Test func K3_aNodeWithoutAnImageBootsTheServersKernel() throws {
        let files = try Self.choose(NodeConfig(name: "n1"), image: nil, nil)
        #expect(files.source == .serverDefault)
        #expect(files.reason == "the node has no image")
    }

    @Test func K4_aPinnedReleaseTheImageCarriesBoots() throws {
        var node = Self.node
        node.kernelRelease = "6.1.0-57-cloud-amd64"
        let files = try Self.choose(node)
        #expect(files.kernel == .derived("k61"))
        #expect(files.initrds == [BootSelection.base, .derived("m61")])
        #expect(files.release == "6.1.0-57-cloud-amd64")
        #expect(files.source == .pinned)
    }

    @Test func K5_aPinnedReleaseTheImageLacksIsAnErrorNamingWhatItHas() {
        var node = Self.node
        node.kernelRelease = "5.10.0-30-amd64"
        #expect(throws: BootSelectionError(
            description: "node n1 pins kernel 5.10.0-30-amd64, which debian@0a1b2c3d4e5f does not carry "
                + "(it has 6.12.117+deb12-cloud-amd64, 6.1.0-57-cloud-amd64)")) { try Self.choose(node) }
        #expect(throws: BootSelectionError.self) { try Self.choose(node, []) }
    }

    @Test func K6_theNewestKernelOfTheImageBootsByDefault() throws {
        let files = try Self.choose(Self.node)
        #expect(files.kernel == .derived("k612"))
        #expect(files.initrds == [.initramfs("base"), .derived("m612")])
        #expect(files.release == "6.12.117+deb12-cloud-amd64")
        #expect(files.source == .image)
        #expect(files.reason == "newest of 2 kernels in debian@0a1b2c3d4e5f")
        #expect(files.warning == nil)
        #expect(files.kernel.bootPath == "/boot/derived/k612")
        #expect(files.initrds[1].apiPath == "/files/derived/m612")
    }

    @Test func K7_anImageWithoutAKernelFallsBackToTheServersWithAWarning() throws {
        let files = try Self.choose(Self.node, [])
        #expect(files.source == .serverDefault)
        #expect(files.kernel == .kernel("default"))
        #expect(files.warning?.hasPrefix("debian@0a1b2c3d4e5f carries no kernel") == true)
    }

    @Test func K8_aKernelThatCannotBootFallsBackWithTheReason() throws {
        let noBase = try Self.choose(Self.node, base: false)
        #expect(noBase.source == .serverDefault)
        #expect(noBase.warning?.contains("the server has no files/initramfs/base") == true)

        let broken = [KernelOffer(release: "6.1.0-57-cloud-amd64", kernelFile: nil, modulesFile: nil, problem: "depmod: exited with 1")]
        let files = try Self.choose(Self.node, broken)
        #expect(files.source == .serverDefault)
        #expect(files.warning?.contains("could not be made: depmod: exited with 1") == true)
    }
}
