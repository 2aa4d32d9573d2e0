import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import Testing

@Suite struct BootSettingsTests {
    @Test func readsTheOptionsIPXEPasses() throws {
        let s = try BootSettings.parse(
            "BOOT_IMAGE=/vmlinuz initrd=initramfs root=provisioner console=ttyS0,115200 "
                + "provisioner.server=https://10.0.0.1:8443/ provisioner.mac=52-54-00-AB-CD-EF "
                + "provisioner.mirrors=https://10.0.0.2:8443,https://10.0.0.1:8443 quiet\n")
        #expect(s.servers == ["https://10.0.0.1:8443"])
        #expect(s.mirrors == ["https://10.0.0.2:8443"])
        #expect(s.bootMAC == "52:54:00:ab:cd:ef")
        #expect(s.root == "/sysroot")
        #expect(s.serverWaitSeconds == 120)
        #expect(s.fallback)
        #expect(!s.localBoot)
        #expect(s.useTPM)
        #expect(!s.trace)
        #expect(s.unknownOptions.isEmpty)
    }

    @Test func readsEveryOption() throws {
        let s = try BootSettings.parse(
            "provisioner.server=https://a:1 provisioner.server-wait=5 provisioner.retries=2 provisioner.retry-delay=0 "
                + "provisioner.fallback=no provisioner.tmpfs-size=8g provisioner.verify=content "
                + "provisioner.preserve=/etc/ssh/ssh_host_ed25519_key,var/lib/slurm provisioner.local-boot "
                + "provisioner.root=/newroot provisioner.tpm=no provisioner.modules=md_mod,md-level-1,fs-xfs "
                + "provisioner.trace provisioner.colour=blue")
        #expect(s.serverWaitSeconds == 5)
        #expect(s.attempts == 2)
        #expect(s.retryDelaySeconds == 0)
        #expect(!s.fallback)
        #expect(s.tmpfsSize == "8g")
        #expect(s.verify == .content)
        #expect(s.preserve == ["etc/ssh/ssh_host_ed25519_key", "var/lib/slurm"])
        #expect(s.localBoot)
        #expect(s.root == "/newroot")
        #expect(!s.useTPM)
        #expect(s.modules == ["md_mod", "md-level-1", "fs-xfs"])
        #expect(s.trace)
        #expect(s.unknownOptions == ["provisioner.colour"])
    }

    /// Whatever a layout names, the server's `provisioner.modules=` is one the agent reads back:
    /// a bad module list would stop the boot, so odd mount options never make one.
    @Test func aLayoutsModulesAlwaysParse() throws {
        let long = String(repeating: "x", count: 80)
        let layout = try DiskLayout(
            parsing: """
                disks:
                  d:
                    match: { type: nvme }
                    partitions:
                      - { name: esp, size: 512MiB, type: esp, filesystem: { type: vfat, mount: /boot/efi, mount-options: ["codepage=\(long)", "iocharset=a,b"] } }
                      - { name: root, size: rest, filesystem: { type: xfs, mount: / } }
                """, source: "test")
        let modules = layout.kernelModules
        #expect(modules == ["fs-vfat", "nls_cp437", "nls_a", "fs-xfs"])
        #expect(try BootSettings.parse("provisioner.modules=\(modules.joined(separator: ","))").modules == modules)
    }

    @Test(arguments: [
        ("provisioner.server=http://a:1", "provisioner.server"),
        ("provisioner.server=", "provisioner.server"),
        ("provisioner.mac=zz", "provisioner.mac"),
        ("provisioner.server-wait=soon", "provisioner.server-wait"),
        ("provisioner.retries=0", "provisioner.retries"),
        ("provisioner.fallback=maybe", "provisioner.fallback"),
        ("provisioner.trace=loud", "provisioner.trace"),
        ("provisioner.tpm=sometimes", "provisioner.tpm"),
        ("provisioner.tmpfs-size=lots", "provisioner.tmpfs-size"),
        ("provisioner.verify=hard", "provisioner.verify"),
        ("provisioner.preserve=../etc", "provisioner.preserve"),
        ("provisioner.root=relative", "provisioner.root"),
        ("provisioner.modules=xfs,,vfat", "provisioner.modules"),
        ("provisioner.modules=xfs;reboot", "provisioner.modules"),
        ("provisioner.modules=../xfs", "provisioner.modules"),
    ])
    func badValuesNameTheOption(cmdline: String, field: String) {
        #expect(throws: ConfigError.self) { try BootSettings.parse(cmdline) }
        do {
            _ = try BootSettings.parse(cmdline)
        } catch {
            #expect(error.field == field)
        }
    }

    @Test func wordsFollowTheKernelsQuoting() {
        #expect(KernelCommandLine.words("a b=\"c d\"  e\n") == ["a", "b=c d", "e"])
        #expect(KernelCommandLine.words("") == [])
        #expect(KernelCommandLine.split("a=b=c") == ("a", "b=c"))
        #expect(KernelCommandLine.split("a") == ("a", nil))
    }

    @Test func localBootLineDropsWhatTheLoaderSetsAndMarksTheBoot() {
        let line = KernelCommandLine.forLocalBoot(
            "BOOT_IMAGE=/x initrd=initramfs root=provisioner provisioner.server=https://s:1 provisioner.verify=content "
                + "x=\"a b\" provisioner.local-boot\n")
        #expect(line == "root=provisioner provisioner.server=https://s:1 x=\"a b\" provisioner.local-boot")
    }
}

@Suite struct LocalBootTests {
    @Test func entryNamesOurKernelAndInitramfs() {
        let text = LocalBoot.entryText(node: "n1", options: "root=provisioner provisioner.local-boot")
        #expect(text.contains("linux   /provisioner/vmlinuz\n"))
        #expect(text.contains("initrd  /provisioner/initramfs.img\n"))
        #expect(text.contains("options root=provisioner provisioner.local-boot\n"))
        #expect(LocalBoot.loaderConfText().contains("default provisioner.conf\n"))
    }

    @Test func entryOfAnImageKernelNamesItsReleaseAndBothInitrds() {
        let text = LocalBoot.entryText(
            node: "n1", options: "root=provisioner", release: "6.1.0-57-cloud-amd64", initrds: 2)
        #expect(text.contains("title   Provisioner: n1 (local boot, kernel 6.1.0-57-cloud-amd64)\n"))
        #expect(text.contains("initrd  /provisioner/initramfs.img\ninitrd  /provisioner/modules.img\noptions"))
        #expect(LocalBoot.initrd(2) == "provisioner/initrd-2.img")
    }

    @Test func etagsRoundTrip() {
        let text = LocalBoot.etagsText([("kernel", "\"sha256:aa\""), ("initrd0", "\"sha256:bb\""), ("initrd1", "\"c\"")])
        let parsed = LocalBoot.parseETags(text)
        #expect(parsed == ["kernel": "\"sha256:aa\"", "initrd0": "\"sha256:bb\"", "initrd1": "\"c\""])
        #expect(LocalBoot.parseETags("garbage").isEmpty)
        // What an agent before image kernels recorded.
        #expect(LocalBoot.parseETags("kernel a\ninitramfs b\n") == ["kernel": "a", "initrd0": "b"])
    }

    @Test func readsEFIBootManagerOutput() {
        let text = """
            BootCurrent: 0001
            Timeout: 0 seconds
            BootOrder: 0001,0000,0003
            Boot0000* UiApp	FvVol(7cb8bdc9)/FvFile(462caa21)
            Boot0001* UEFI QEMU NVMe Ctrl 1	PciRoot(0x0)/Pci(0x3,0x0)/NVMe(0x1,00-00)
            Boot0003* provisioner (local disk)	HD(1,GPT,...)/File(\\EFI\\systemd\\systemd-bootx64.efi)
            """
        let (order, entries) = LocalBoot.parseEFIBootManager(text)
        #expect(order == ["0001", "0000", "0003"])
        #expect(entries["0003"] == LocalBoot.label)
        #expect(entries["0001"] == "UEFI QEMU NVMe Ctrl 1")
        #expect(entries.count == 3)
    }
}

@Suite struct ProgressTextTests {
    @Test func syncProgressLine() {
        let (fraction, text) = ProgressText.sync(
            filesDone: 1203, filesPlanned: 3000, bytesDone: 71_200_000, bytesPlanned: 190_000_000,
            bytesPerSecond: 9_800_000)
        #expect(text == "37% (1,203 of 3,000 files, 71.2 MB of 190.0 MB, received 9.8 MB/s)")
        #expect(abs(fraction - 0.3747) < 0.001)
        #expect(ProgressText.sync(filesDone: 0, filesPlanned: 0, bytesDone: 0, bytesPlanned: 0, bytesPerSecond: 0).fraction == 0)
        #expect(ProgressText.grouped(1_234_567) == "1,234,567")
        #expect(ProgressText.grouped(12) == "12")
        #expect(ProgressText.seconds(41.26) == "41.3 s")
    }
}
