import ArgumentParser
import Foundation
import VMHarness

/// Boots the test initramfs in QEMU with chosen disks and runs a script inside:
/// the same harness the VM tests use, for demos and for debugging by hand.
struct ProvisionerVM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provisioner-vm",
        abstract: "Boot the test initramfs under QEMU with chosen disks and run a script inside.",
        discussion: """
            Disks: --disk BUS,size=SIZE[,serial=S][,model=M][,vendor=V][,ssd][,file=PATH] \
            with BUS one of nvme, sata, virtio, scsi and SIZE in bytes or with a binary unit (20G = 20 GiB). \
            The script runs with a `step NAME CMD...` function; each step's output is printed here.
            """
    )

    @Option(help: "Kernel image.") var kernel: String
    @Option(help: "Test initramfs (built with EXTRA_MODULES=provisioner-test).") var initrd: String
    @Option(name: .customLong("disk"), help: "A disk to attach (repeatable).") var disks: [String] = []
    @Option(help: "Shell script to run inside the VM.") var script: String
    @Option(help: "Directory for disk images and logs.") var workDir = "build/vm-artifacts"
    @Option(help: "Seconds before the VM is stopped.") var timeout = 300

    func run() throws {
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        var attached: [VMDisk] = []
        for (index, spec) in disks.enumerated() {
            attached.append(try Self.parseDisk(spec, index: index, workDir: workDir))
        }
        var vm = VirtualMachine(kernel: kernel, initrd: initrd, disks: attached, artifactsDirectory: workDir)
        vm.timeoutSeconds = timeout
        let text = try String(contentsOfFile: script, encoding: .utf8)
        let result = try vm.run(script: text, name: "provisioner-vm")
        for step in result.steps {
            print("── \(step.name) (exit \(step.status))")
            if !step.stdout.isEmpty { print(step.stdout, terminator: step.stdout.hasSuffix("\n") ? "" : "\n") }
            if !step.stderr.isEmpty {
                print(
                    step.stderr.split(separator: "\n", omittingEmptySubsequences: false).map { "   ! \($0)" }.joined(
                        separator: "\n"))
            }
        }
        print("── VM finished in \(String(format: "%.1f", result.seconds)) s, script exit \(result.scriptStatus)")
        if result.scriptStatus != 0 { throw ExitCode(result.scriptStatus) }
    }

    static func parseDisk(_ spec: String, index: Int, workDir: String) throws -> VMDisk {
        let fields = spec.split(separator: ",").map(String.init)
        guard let busName = fields.first, let bus = VMDisk.Bus(rawValue: busName) else {
            throw ValidationError("--disk \(spec): the first field must be nvme, sata, virtio or scsi")
        }
        var disk = VMDisk(id: "d\(index)", bus: bus, file: "\(workDir)/disk\(index).img", sizeBytes: 8 << 30)
        for field in fields.dropFirst() {
            let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
            switch (parts[0], parts.count == 2 ? parts[1] : nil) {
            case ("size", let v?):
                let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
                if let unit = v.last, let m = units[unit], let n = UInt64(v.dropLast()) {
                    disk.sizeBytes = n * m
                } else if let n = UInt64(v) {
                    disk.sizeBytes = n
                } else {
                    throw ValidationError("--disk \(spec): size \(v) is not a number of bytes or N[KMGT]")
                }
            case ("serial", let v?): disk.serial = v
            case ("model", let v?): disk.model = v
            case ("vendor", let v?): disk.vendor = v
            case ("file", let v?): disk.file = v
            case ("ssd", nil): disk.rotationRate = 1
            default: throw ValidationError("--disk \(spec): unknown field \(field)")
            }
        }
        return disk
    }
}

ProvisionerVM.main()
