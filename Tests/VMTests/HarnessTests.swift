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
}
