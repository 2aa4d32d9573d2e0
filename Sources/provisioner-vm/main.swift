import ArgumentParser
import Foundation
import VMHarness

/// Boots the test initramfs in QEMU with chosen disks and runs a script inside:
/// the same harness the VM tests use, for demos and for debugging by hand.
struct ProvisionerVM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provisioner-vm",
        abstract: "Boot VMs under QEMU with chosen disks: run a test script, or boot a node.",
        subcommands: [RunScript.self, BootNode.self],
        defaultSubcommand: RunScript.self
    )
}

struct RunScript: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
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
            attached.append(try parseDisk(spec, index: index, workDir: workDir))
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
}

func parseDisk(_ spec: String, index: Int, workDir: String) throws -> VMDisk {
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

ProvisionerVM.main()

/// The running QEMU, for the signal handler.
nonisolated(unsafe) var qemuPID: Int32 = 0

struct BootNode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot a node as real hardware would (direct kernel boot or UEFI from disk) and watch its console.",
        discussion: """
            Prints every console line (or only those matching --show). Stops when a line matches --until \
            (exit 0), --fail-when (exit 4), when the VM powers off (exit 0 without --until, else 3), or at \
            --timeout (exit 5). QEMU is always stopped by its pid. With --hard the stop is SIGKILL: a power cut.
            """
    )

    @Option(
        help: "Kernel for a direct boot (what iPXE would load); omit to boot from disk or the network (--uefi-vars).")
    var kernel: String?
    @Option(help: "Initramfs for a direct boot.") var initrd: String?
    @Option(help: "Kernel command line for a direct boot.") var append = ""
    @Option(help: "UEFI variable store of this node (created from OVMF's template when missing); boots OVMF.")
    var uefiVars: String?
    @Option(name: .customLong("disk"), help: "A disk to attach (repeatable), as for run.") var disks: [String] = []
    @Option(help: "Memory in MiB.") var memory = 1536
    @Option(help: "MAC address of the NIC.") var mac = "52:54:00:12:34:56"
    @Option(help: "A TPM 2.0: the control socket of a running swtpm (swtpm socket --ctrl type=unixio,path=...).")
    var tpmSocket: String?
    @Option(help: "Plug the NIC into this existing tap device (instead of QEMU's user networking).") var tap: String?
    @Flag(
        help: """
            Boot from the network first, no --kernel: with --uefi-vars OVMF's PXE (its own virtio-net driver), \
            else SeaBIOS with QEMU's iPXE option ROM.
            """)
    var networkBoot = false
    @Option(help: "Where the serial console is written.") var console: String
    @Option(help: "Stop when a console line matches this regular expression.") var until: String?
    @Option(help: "Fail when a console line matches this regular expression.") var failWhen: String?
    @Flag(help: "Stop with SIGKILL (a power cut) instead of SIGTERM.") var hard = false
    @Option(help: "Seconds to let the VM power off by itself after --until matched.") var grace: Double = 0
    @Option(help: "Print only console lines matching this regular expression.") var show: String?
    @Option(help: "Seconds before the VM is stopped.") var timeout = 900
    @Option(help: "Directory for disk images given without file=.") var workDir = "build/vm-artifacts"

    func validate() throws {
        if kernel == nil && uefiVars == nil && !networkBoot {
            throw ValidationError("give --kernel, --uefi-vars to boot from disk, or --network-boot")
        }
        if networkBoot && kernel != nil {
            throw ValidationError("--network-boot: the firmware loads what it boots; give no --kernel")
        }
    }

    func run() throws {
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        var attached: [VMDisk] = []
        for (index, spec) in disks.enumerated() {
            attached.append(try parseDisk(spec, index: index, workDir: workDir))
        }
        var machine = VirtualMachine(
            kernel: kernel ?? "", initrd: initrd ?? "", disks: attached, artifactsDirectory: workDir)
        machine.memoryMiB = memory
        var boot = NodeBoot(machine: machine, console: console)
        boot.kernel = kernel
        boot.initrd = initrd
        boot.append = append
        boot.mac = mac
        boot.tpmSocket = tpmSocket
        if let tap { boot.network = .tap(tap) }
        boot.networkBoot = networkBoot
        if let uefiVars {
            if !FileManager.default.fileExists(atPath: uefiVars) {
                try FileManager.default.copyItem(atPath: "/usr/share/OVMF/OVMF_VARS_4M.fd", toPath: uefiVars)
            }
            boot.uefiVars = uefiVars
        }
        let filter = try show.map { try NSRegularExpression(pattern: $0) }
        // Stopped from outside (a test's clean-up): QEMU goes with us.
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig) { received in
                if qemuPID > 0 { kill(qemuPID, SIGKILL) }
                _exit(128 + received)
            }
        }
        let result = try boot.run(
            until: until, failWhen: failWhen, hard: hard, grace: grace, timeoutSeconds: timeout,
            onStart: { qemuPID = $0 }
        ) { line in
            if let filter, filter.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) == nil { return }
            print("  │ \(line)")
            fflush(nil)
        }
        let seconds = String(format: "%.1f", result.seconds)
        switch result.outcome {
        case .reached(let line):
            print("── reached after \(seconds) s: \(line)")
        case .poweredOff:
            print("── the VM powered off after \(seconds) s")
            if until != nil { throw ExitCode(3) }
        case .failed(let line):
            print("── FAILED after \(seconds) s: \(line)  (console: \(console))")
            throw ExitCode(4)
        case .timedOut:
            print("── TIMED OUT after \(seconds) s (console: \(console))")
            throw ExitCode(5)
        }
    }
}
