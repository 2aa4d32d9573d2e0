import Foundation
import Testing
import VMHarness

/// The harness's own parsing, with no VM: byte-exact output, statuses, truncation.
@Suite struct HarnessParsingTests {
    @Test func parsesStepsAndDone() throws {
        let stream = "@@STEP a 0 4 0\nout\n@@STEP b 3 4 4\nout\nerr\n@@DONE 0\n"
        let (steps, status) = try VirtualMachine.parse(Data(stream.utf8))
        #expect(status == 0)
        #expect(steps.map(\.name) == ["a", "b"])
        #expect(steps[1].status == 3 && steps[1].stdout == "out\n" && steps[1].stderr == "err\n")
    }

    @Test func outputMayContainMarkersAndNoTrailingNewline() throws {
        let stream = "@@STEP a 0 15 0\n@@DONE 9\nnot it@@DONE 1\n"
        let (steps, status) = try VirtualMachine.parse(Data(stream.utf8))
        #expect(steps.first?.stdout == "@@DONE 9\nnot it")
        #expect(status == 1)
    }

    @Test func truncatedStreamHasNoStatus() throws {
        let (steps, status) = try VirtualMachine.parse(Data("@@STEP a 0 0 0\n".utf8))
        #expect(steps.count == 1 && status == nil)
        #expect(throws: VMError.self) { try VirtualMachine.parse(Data("@@STEP a 0 99 0\nshort".utf8)) }
    }

    @Test func qemuArgumentsNeverUseKVMByDefault() {
        let vm = VirtualMachine(
            kernel: "k", initrd: "i",
            disks: [VMDisk(id: "d0", bus: .nvme, file: "/x.img", sizeBytes: 1, serial: "S")],
            artifactsDirectory: "/tmp")
        let args = vm.qemuArguments(script: "s", console: "c", results: "r")
        if ProcessInfo.processInfo.environment["PROVISIONER_VM_ACCEL"] == nil {
            #expect(args[args.firstIndex(of: "-accel")! + 1] == "tcg")
        }
        #expect(args.contains("nvme,drive=d0,serial=S"))
    }

    /// The NIC of each kind of boot: no option ROM unless SeaBIOS boots from the network (QEMU's iPXE ROM);
    /// a network boot puts the NIC first in the boot order.
    static let nics: [(String, NodeBoot.Network, Bool, Bool, String, String)] = [
        ("direct kernel", .user, false, false, "user,id=n0", "virtio-net-pci,netdev=n0,mac=M,romfile="),
        ("disk, UEFI", .user, false, true, "user,id=n0", "virtio-net-pci,netdev=n0,mac=M,romfile="),
        (
            "PXE, UEFI, tap", .tap("tap7"), true, true, "tap,id=n0,ifname=tap7,script=no,downscript=no",
            "virtio-net-pci,netdev=n0,mac=M,romfile=,bootindex=0"
        ),
        (
            "PXE, SeaBIOS", .tap("tap7"), true, false, "tap,id=n0,ifname=tap7,script=no,downscript=no",
            "virtio-net-pci,netdev=n0,mac=M,bootindex=0"
        ),
    ]

    @Test(arguments: nics)
    func nicOfEachBoot(
        _ what: String, _ network: NodeBoot.Network, _ networkBoot: Bool, _ uefi: Bool, _ netdev: String,
        _ device: String
    ) {
        let vm = VirtualMachine(kernel: "", initrd: "", disks: [], artifactsDirectory: "/tmp")
        var boot = NodeBoot(machine: vm, console: "c")
        boot.mac = "M"
        boot.network = network
        boot.networkBoot = networkBoot
        boot.uefiVars = uefi ? "/vars.fd" : nil
        let args = boot.qemuArguments()
        #expect(args[args.firstIndex(of: "-netdev")! + 1] == netdev, "\(what)")
        #expect(args.contains(device), "\(what): \(args)")
        #expect(!args.contains("-kernel"), "\(what)")
    }
}
