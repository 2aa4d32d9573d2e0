import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Boots a kernel and our test initramfs under QEMU with chosen disks, runs a
/// shell script inside, and hands back each step's output and exit status.
///
/// The guest side is initramfs/dracut/modules.d/91provisioner-test: the script
/// arrives through QEMU's fw_cfg, runs with a `step NAME CMD...` function, and
/// every step's result comes back byte-exact over a virtio-serial port:
///
///     @@STEP <name> <status> <stdout-bytes> <stderr-bytes>\n<stdout><stderr>
///     @@DONE <script-status>\n
///
/// after which the guest powers off. Every run is bounded in time; QEMU is
/// stopped by its own pid. A failed run keeps its serial console, script and
/// QEMU log under `artifactsDirectory`.
public struct VMDisk: Sendable {
    public enum Bus: String, Sendable {
        case nvme, sata, virtio, scsi
    }

    /// Short id used for QEMU's drive names.
    public var id: String
    public var bus: Bus
    /// The backing image (raw). Created sparse at `sizeBytes` if missing.
    public var file: String
    public var sizeBytes: UInt64
    public var serial: String?
    /// SATA and SCSI model (SCSI: product).
    public var model: String?
    /// SCSI vendor.
    public var vendor: String?
    /// Reported rotation rate: 1 means solid state (SATA/SCSI only); nil leaves QEMU's default.
    public var rotationRate: Int?

    public init(
        id: String, bus: Bus, file: String, sizeBytes: UInt64, serial: String? = nil, model: String? = nil,
        vendor: String? = nil, rotationRate: Int? = nil
    ) {
        self.id = id
        self.bus = bus
        self.file = file
        self.sizeBytes = sizeBytes
        self.serial = serial
        self.model = model
        self.vendor = vendor
        self.rotationRate = rotationRate
    }
}

public struct VMStep: Sendable, CustomStringConvertible {
    public var name: String
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public var description: String {
        "step \(name) exited \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)"
    }
}

public struct VMRun: Sendable {
    public var steps: [VMStep]
    public var scriptStatus: Int32
    public var console: String
    public var seconds: Double

    public func step(_ name: String) throws -> VMStep {
        guard let step = steps.first(where: { $0.name == name }) else {
            throw VMError.missingStep(name, available: steps.map(\.name))
        }
        return step
    }
}

public enum VMError: Error, CustomStringConvertible {
    case notConfigured(String)
    case qemuFailed(String)
    case timedOut(seconds: Int, artifacts: String)
    case noResult(artifacts: String, consoleTail: String)
    case malformedOutput(String, artifacts: String)
    case missingStep(String, available: [String])

    public var description: String {
        switch self {
        case .notConfigured(let s): "VM harness not configured: \(s)"
        case .qemuFailed(let s): "QEMU failed: \(s)"
        case .timedOut(let s, let a): "VM did not finish within \(s) s; logs kept in \(a)"
        case .noResult(let a, let tail): "VM stopped without reporting a result; logs kept in \(a)\n\(tail)"
        case .malformedOutput(let s, let a): "VM result is malformed (\(s)); logs kept in \(a)"
        case .missingStep(let n, let all): "no step named \(n) in the VM result (steps: \(all.joined(separator: ", ")))"
        }
    }
}

public struct VirtualMachine: Sendable {
    public var kernel: String
    public var initrd: String
    public var disks: [VMDisk]
    public var memoryMiB = 1024
    public var cpus = 2
    public var kernelArguments: [String] = []
    public var timeoutSeconds = 300
    /// `tcg` unless PROVISIONER_VM_ACCEL says otherwise: KVM hangs on these machines.
    public var accelerator = ProcessInfo.processInfo.environment["PROVISIONER_VM_ACCEL"] ?? "tcg"
    public var artifactsDirectory: String

    public init(kernel: String, initrd: String, disks: [VMDisk], artifactsDirectory: String) {
        self.kernel = kernel
        self.initrd = initrd
        self.disks = disks
        self.artifactsDirectory = artifactsDirectory
    }

    /// The QEMU arguments for one boot, given where its files live.
    public func qemuArguments(script: String, console: String, results: String) -> [String] {
        let args = [
            "-accel", accelerator, "-machine", "q35", "-cpu", "max", "-m", "\(memoryMiB)", "-smp", "\(cpus)",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append",
            ([
                "console=ttyS0,115200", "root=provisioner", "provisioner.test", "rd.shell=0", "rd.emergency=poweroff",
                "panic=-1",
            ] + kernelArguments).joined(separator: " "),
            "-serial", "file:\(console)",
            "-fw_cfg", "name=opt/provisioner/test-script,file=\(script)",
            "-device", "virtio-serial-pci,id=vser",
            "-chardev", "file,id=testout,path=\(results)",
            "-device", "virtserialport,bus=vser.0,chardev=testout,name=provisioner.test",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
        ]
        return args + diskArguments()
    }

    /// The controllers and disks, in the order given.
    public func diskArguments() -> [String] {
        var args: [String] = []
        if disks.contains(where: { $0.bus == .sata }) { args += ["-device", "ahci,id=ahci"] }
        if disks.contains(where: { $0.bus == .scsi }) { args += ["-device", "virtio-scsi-pci,id=scsi"] }
        var sataPort = 0
        for disk in disks {
            args += ["-drive", "if=none,id=\(disk.id),file=\(disk.file),format=raw,cache=unsafe"]
            var device: [String]
            switch disk.bus {
            case .nvme:
                device = ["nvme", "drive=\(disk.id)"]
            case .sata:
                device = ["ide-hd", "drive=\(disk.id)", "bus=ahci.\(sataPort)"]
                sataPort += 1
                if let model = disk.model { device.append("model=\(model)") }
                if let rate = disk.rotationRate { device.append("rotation_rate=\(rate)") }
            case .virtio:
                device = ["virtio-blk-pci", "drive=\(disk.id)"]
            case .scsi:
                device = ["scsi-hd", "drive=\(disk.id)", "bus=scsi.0"]
                if let vendor = disk.vendor { device.append("vendor=\(vendor)") }
                if let model = disk.model { device.append("product=\(model)") }
                if let rate = disk.rotationRate { device.append("rotation_rate=\(rate)") }
            }
            if let serial = disk.serial { device.append("serial=\(serial)") }
            args += ["-device", device.joined(separator: ",")]
        }
        return args
    }

    /// Boots once, runs `script`, and returns what it reported.
    public func run(script: String, name: String = "vm") throws -> VMRun {
        let fm = FileManager.default
        let runDir =
            "\(artifactsDirectory)/\(name)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        try fm.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        let scriptPath = "\(runDir)/script.sh"
        let consolePath = "\(runDir)/console.log"
        let resultsPath = "\(runDir)/results.bin"
        let qemuLogPath = "\(runDir)/qemu.log"
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        for disk in disks where !fm.fileExists(atPath: disk.file) {
            guard fm.createFile(atPath: disk.file, contents: nil), truncate(disk.file, off_t(disk.sizeBytes)) == 0
            else {
                throw VMError.qemuFailed("cannot create disk image \(disk.file)")
            }
        }
        fm.createFile(atPath: qemuLogPath, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-system-x86_64")
        process.arguments = qemuArguments(script: scriptPath, console: consolePath, results: resultsPath)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: qemuLogPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try ("qemu-system-x86_64 " + process.arguments!.joined(separator: " ") + "\n")
            .write(toFile: "\(runDir)/command.txt", atomically: true, encoding: .utf8)

        let start = Date()
        do { try process.run() } catch { throw VMError.qemuFailed("cannot start qemu-system-x86_64: \(error)") }
        let pid = process.processIdentifier
        let deadline = start.addingTimeInterval(TimeInterval(timeoutSeconds))
        while process.isRunning && Date() < deadline { usleep(100_000) }
        if process.isRunning {
            kill(pid, SIGTERM)
            let grace = Date().addingTimeInterval(5)
            while process.isRunning && Date() < grace { usleep(100_000) }
            if process.isRunning { kill(pid, SIGKILL) }
            process.waitUntilExit()
            throw VMError.timedOut(seconds: timeoutSeconds, artifacts: runDir)
        }
        process.waitUntilExit()
        try? log.close()
        let seconds = Date().timeIntervalSince(start)

        let console = (try? String(contentsOfFile: consolePath, encoding: .utf8)) ?? ""
        let raw = fm.contents(atPath: resultsPath) ?? Data()
        let parsed: (steps: [VMStep], status: Int32?)
        do {
            parsed = try Self.parse(raw)
        } catch let VMError.malformedOutput(why, _) {
            throw VMError.malformedOutput(why, artifacts: runDir)
        }
        guard let status = parsed.status else {
            let qemuLog = (try? String(contentsOfFile: qemuLogPath, encoding: .utf8)) ?? ""
            let tail = (console.split(separator: "\n").suffix(25) + ["--- qemu:", Substring(qemuLog)]).joined(
                separator: "\n")
            throw VMError.noResult(artifacts: runDir, consoleTail: tail)
        }
        let result = VMRun(steps: parsed.steps, scriptStatus: status, console: console, seconds: seconds)
        // A finished run keeps nothing but the disk images its caller owns.
        try? fm.removeItem(atPath: runDir)
        return result
    }

    /// Parses the byte-exact result stream of the guest.
    public static func parse(_ data: Data) throws -> (steps: [VMStep], status: Int32?) {
        let bytes = [UInt8](data)
        var steps: [VMStep] = []
        var index = 0
        func line() -> String? {
            guard index < bytes.count, let end = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            let text = String(decoding: bytes[index..<end], as: UTF8.self)
            index = end + 1
            return text
        }
        while let header = line() {
            let fields = header.split(separator: " ")
            if fields.first == "@@DONE", fields.count == 2, let status = Int32(fields[1]) {
                return (steps, status)
            }
            guard fields.first == "@@STEP", fields.count == 5, let status = Int32(fields[2]),
                let outCount = Int(fields[3]), let errCount = Int(fields[4]),
                index + outCount + errCount <= bytes.count
            else {
                throw VMError.malformedOutput("unexpected header \"\(header.prefix(80))\"", artifacts: "")
            }
            let out = String(decoding: bytes[index..<index + outCount], as: UTF8.self)
            index += outCount
            let err = String(decoding: bytes[index..<index + errCount], as: UTF8.self)
            index += errCount
            steps.append(VMStep(name: String(fields[1]), status: status, stdout: out, stderr: err))
        }
        return (steps, nil)
    }
}

/// Where `make test` put the kernel and test initramfs, and where failed runs keep logs.
public enum VMEnvironment {
    public static var kernel: String? { ProcessInfo.processInfo.environment["PROVISIONER_VM_KERNEL"] }
    public static var initrd: String? { ProcessInfo.processInfo.environment["PROVISIONER_VM_INITRD"] }
    public static var isConfigured: Bool { kernel != nil && initrd != nil }

    public static var artifacts: String {
        ProcessInfo.processInfo.environment["PROVISIONER_VM_ARTIFACTS"]
            ?? FileManager.default.currentDirectoryPath + "/build/vm-artifacts"
    }

    /// A fresh directory for one scenario's disk images; the caller removes it.
    public static func scratchDirectory(_ name: String) throws -> String {
        let dir = "\(artifacts)/disks-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    public static func machine(disks: [VMDisk]) throws -> VirtualMachine {
        guard let kernel, let initrd else {
            throw VMError.notConfigured("set PROVISIONER_VM_KERNEL and PROVISIONER_VM_INITRD (make test does)")
        }
        return VirtualMachine(kernel: kernel, initrd: initrd, disks: disks, artifactsDirectory: artifacts)
    }
}
