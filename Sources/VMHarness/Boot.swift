import Foundation

/// One boot of a node as a real machine would do it: no test script, only the console to watch.
/// Used by the boot scenarios and the demo (`provisioner-vm boot`).
///
/// The firmware is SeaBIOS with a direct kernel boot (`-kernel`/`-initrd`/`-append`, what iPXE
/// would fetch), or OVMF (UEFI) with a per-node variable store; OVMF without a kernel boots
/// from the disks, as a node whose network boot failed, or from the network (PXE) when `networkBoot`.
public struct NodeBoot: Sendable {
    /// Where the NIC is plugged in.
    public enum Network: Sendable, Equatable {
        /// QEMU's user networking: the host's loopback is 10.0.2.2, nothing leaves QEMU.
        case user
        /// A tap device that already exists (in the network namespace QEMU runs in).
        case tap(String)
    }

    public var machine: VirtualMachine
    /// nil: boot from disk (only with `uefiVars`).
    public var kernel: String?
    public var initrd: String?
    public var append: String = ""
    /// The node's UEFI variable store (a copy of OVMF_VARS_4M.fd); nil: SeaBIOS.
    public var uefiVars: String?
    public var uefiCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    public var mac = "52:54:00:12:34:56"
    public var console: String
    /// A TPM 2.0 (tpm-tis) backed by the swtpm listening on this control socket.
    public var tpmSocket: String?
    public var network: Network = .user
    /// The firmware boots from the NIC first: OVMF with its own virtio-net driver (PXE, then TFTP), or
    /// SeaBIOS through QEMU's iPXE option ROM.
    public var networkBoot = false

    public init(machine: VirtualMachine, console: String) {
        self.machine = machine
        self.console = console
    }

    public func qemuArguments() -> [String] {
        var args = [
            "-accel", machine.accelerator, "-machine", "q35", "-cpu", "max", "-m", "\(machine.memoryMiB)",
            "-smp", "\(machine.cpus)", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "file:\(console)",
        ]
        switch network {
        case .user: args += ["-netdev", "user,id=n0"]
        case .tap(let name): args += ["-netdev", "tap,id=n0,ifname=\(name),script=no,downscript=no"]
        }
        // No option ROM: SeaBIOS never tries PXE, and OVMF has its own virtio-net driver, which a network
        // boot uses (first in the boot order). SeaBIOS has no network driver: its network boot runs QEMU's
        // default ROM for virtio-net, which is iPXE (Debian's ipxe-qemu).
        let rom = networkBoot && uefiVars == nil ? "" : ",romfile="
        args += ["-device", "virtio-net-pci,netdev=n0,mac=\(mac)" + rom + (networkBoot ? ",bootindex=0" : "")]
        if let uefiVars {
            args += [
                "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(uefiCode)",
                "-drive", "if=pflash,format=raw,unit=1,file=\(uefiVars)",
            ]
        }
        if let tpmSocket {
            args += [
                "-chardev", "socket,id=chrtpm,path=\(tpmSocket)", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                "-device", "tpm-tis,tpmdev=tpm0",
            ]
        }
        if let kernel {
            args += ["-kernel", kernel]
            if let initrd { args += ["-initrd", initrd] }
            args += ["-append", append]
        }
        return args + machine.diskArguments()
    }

    public enum Outcome: Equatable, Sendable {
        /// The console showed the `until` pattern (the VM was then stopped).
        case reached(String)
        /// The console showed the `failWhen` pattern.
        case failed(String)
        /// The VM powered off by itself.
        case poweredOff
        case timedOut
    }

    public struct Result: Sendable {
        public var outcome: Outcome
        public var seconds: Double
    }

    /// Boots and watches the console. `onLine` sees every console line as it comes. When a line
    /// matches `until`, QEMU gets SIGTERM after `grace` seconds (0: at once; SIGKILL when
    /// `hard`, a power cut). QEMU is always stopped by its own pid before this returns.
    public func run(
        until: String?, failWhen: String? = nil, hard: Bool = false, grace: Double = 0,
        timeoutSeconds: Int, onStart: (Int32) -> Void = { _ in }, onLine: (String) -> Void = { _ in }
    ) throws -> Result {
        let fm = FileManager.default
        for disk in machine.disks where !fm.fileExists(atPath: disk.file) {
            guard fm.createFile(atPath: disk.file, contents: nil), truncate(disk.file, off_t(disk.sizeBytes)) == 0
            else {
                throw VMError.qemuFailed("cannot create disk image \(disk.file)")
            }
        }
        fm.createFile(atPath: console, contents: nil)
        let untilRegex = try until.map { try NSRegularExpression(pattern: $0) }
        let failRegex = try failWhen.map { try NSRegularExpression(pattern: $0) }
        func matches(_ r: NSRegularExpression, _ line: String) -> Bool {
            r.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) != nil
        }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-system-x86_64")
        process.arguments = qemuArguments()
        let logPath = console + ".qemu.log"
        fm.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try ("qemu-system-x86_64 " + process.arguments!.joined(separator: " ") + "\n")
            .write(toFile: console + ".command", atomically: true, encoding: .utf8)
        let start = Date()
        do { try process.run() } catch { throw VMError.qemuFailed("cannot start qemu-system-x86_64: \(error)") }
        let pid = process.processIdentifier
        onStart(pid)
        func stop(signal: Int32) {
            guard process.isRunning else { return }
            kill(pid, signal)
            let limit = Date().addingTimeInterval(10)
            while process.isRunning && Date() < limit { usleep(50_000) }
            if process.isRunning { kill(pid, SIGKILL) }
            process.waitUntilExit()
        }
        defer {
            stop(signal: SIGKILL)
            try? log.close()
        }

        let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: console))
        defer { try? reader.close() }
        var pending = Data()
        let deadline = start.addingTimeInterval(TimeInterval(timeoutSeconds))
        var outcome: Outcome?
        while outcome == nil {
            let chunk = reader.availableData
            if chunk.isEmpty {
                if !process.isRunning {
                    // Read what is left, then stop.
                    let rest = reader.readDataToEndOfFile()
                    if rest.isEmpty {
                        outcome = .poweredOff
                        break
                    }
                    pending.append(rest)
                } else if Date() > deadline {
                    outcome = .timedOut
                    break
                } else {
                    usleep(100_000)
                    continue
                }
            } else {
                pending.append(chunk)
            }
            while let newline = pending.firstIndex(of: 0x0a) {
                let raw = pending[pending.startIndex..<newline]
                pending.removeSubrange(pending.startIndex...newline)
                let line = String(decoding: raw, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
                onLine(line)
                if let failRegex, matches(failRegex, line) {
                    outcome = .failed(line)
                    break
                }
                if let untilRegex, matches(untilRegex, line) {
                    outcome = .reached(line)
                    break
                }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        if case .reached = outcome, !hard, grace > 0 {
            let limit = Date().addingTimeInterval(grace)
            while process.isRunning && Date() < limit { usleep(100_000) }
        }
        stop(signal: hard ? SIGKILL : SIGTERM)
        return Result(outcome: outcome ?? .timedOut, seconds: seconds)
    }
}
