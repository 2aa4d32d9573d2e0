#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Bytes kept in one TPM 2.0 NV index of the owner hierarchy, through tpm2-tools
/// (`tpm2_nvreadpublic`, `tpm2_nvread`, `tpm2_nvdefine`, `tpm2_nvwrite`, `tpm2_nvundefine`) and the
/// kernel's resource manager (`/dev/tpmrm0`). What a stateless node keeps its key in
/// (docs/certificates.md, "Where the key lives").
public struct TPMStore: Sendable {
    public let index: UInt32
    public let device: String

    public init(index: UInt32, device: String = "/dev/tpmrm0") {
        self.index = index
        self.device = device
    }

    /// A TPM the kernel exposes through its resource manager.
    public static var isPresent: Bool { access("/dev/tpmrm0", F_OK) == 0 }

    var handle: String { "0x" + String(index, radix: 16) }
    var tcti: [String] { ["-T", "device:\(device)"] }

    /// The index's bytes; nil when the index is not defined.
    public func read() throws(SystemError) -> [UInt8]? {
        let defined = try Command.run(["tpm2_nvreadpublic"] + tcti + [handle])
        guard defined.status == 0 else { return nil }
        let file = "/run/provisioner-tpm-\(getpid())"
        defer { unlink(file) }
        let result = try Command.run(["tpm2_nvread"] + tcti + ["-C", "o", "-o", file, handle])
        guard result.status == 0 else {
            throw SystemError("reading TPM NV index", handle, cause: "tpm2_nvread: \(result.lastMessage)")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw SystemError("reading TPM NV index", handle, cause: "tpm2_nvread wrote nothing to \(file)")
        }
        return Array(data)
    }

    /// Replaces the index with exactly `bytes` (owner read/write only).
    public func write(_ bytes: [UInt8]) throws(SystemError) {
        let file = "/run/provisioner-tpm-\(getpid())"
        defer { unlink(file) }
        guard FileManager.default.createFile(atPath: file, contents: Data(bytes), attributes: [.posixPermissions: 0o600])
        else { throw SystemError("writing", file, cause: "cannot create the file for tpm2_nvwrite") }
        if try Command.run(["tpm2_nvreadpublic"] + tcti + [handle]).status == 0 {
            let undefine = try Command.run(["tpm2_nvundefine"] + tcti + ["-C", "o", handle])
            guard undefine.status == 0 else {
                throw SystemError("replacing TPM NV index", handle, cause: "tpm2_nvundefine: \(undefine.lastMessage)")
            }
        }
        let define = try Command.run(
            ["tpm2_nvdefine"] + tcti + ["-C", "o", "-s", String(bytes.count), "-a", "ownerread|ownerwrite|no_da", handle])
        guard define.status == 0 else {
            throw SystemError("defining TPM NV index", handle, cause: "tpm2_nvdefine: \(define.lastMessage)")
        }
        let write = try Command.run(["tpm2_nvwrite"] + tcti + ["-C", "o", "-i", file, handle])
        guard write.status == 0 else {
            throw SystemError("writing TPM NV index", handle, cause: "tpm2_nvwrite: \(write.lastMessage)")
        }
    }
}
