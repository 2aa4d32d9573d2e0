import ProvisionerAPI
import ProvisionerBoot
import ProvisionerClient
import ProvisionerKeys
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// The node's identity (docs/certificates.md, "Enrollment"): the executable's half of rows I1–I3.
/// The key is read from where `BootStateMachine` says it lives (or made), a certificate request
/// with the session's challenge goes to the server over the bootstrap certificate, and with the
/// certificate that comes back every later request goes as the node.
extension BootRunner {
    /// Where the node's certificate and key live for the rest of the boot (and in the running
    /// system: the initrd's /run moves into it at switch-root; root-only).
    static let identityRun = "/run/provisioner/identity"

    func enroll(_ task: EnrollTask) -> BootDecision {
        let start = monotonicSeconds()
        let key: NodeKey
        let kept: Bool
        do {
            (key, kept) = task.newKey ? (NodeKey(), false) : try loadKey(task.keyStore)
        } catch {
            return failed(.register, .transient, "reading node \(task.node)'s key from \(describe(task.keyStore)): \(error)")
        }
        guard let session else { preconditionFailure("enroll() before register()") }
        let result: EnrollResult
        do {
            let csr = try key.certificateRequest(node: task.node, challenge: task.challenge)
            result = try session.enroll(csr: csr)
        } catch let error as ClientError {
            if case .status(let status, let body, _) = error, status == 403,
                let code = body?.error.code, ["enrollment-needs-approval", "key-revoked"].contains(code)
            {
                return machine.enrollmentNeedsApproval(body?.error.message ?? "\(error)", keyRevoked: code == "key-revoked")
            }
            if isUnreachable(error) || error.httpStatus == 503 {
                return failed(.register, .transient, "enrolling node \(task.node): \(error)")
            }
            return failed(.register, .refused, "enrolling node \(task.node): \(error)")
        } catch {
            return failed(.register, .transient, "enrolling node \(task.node): \(error)")
        }
        // The key is kept where it lives before anything else uses the certificate.
        if !kept {
            do { try storeKey(key, task.keyStore) } catch {
                return failed(
                    .register, .transient, "keeping node \(task.node)'s new key in \(describe(task.keyStore)): \(error)")
            }
        }
        do {
            try FileManager.default.createDirectory(
                atPath: Self.identityRun, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try writeFileIfDifferent(Self.identityRun + "/node.pem", Array(result.certificate.utf8), mode: 0o644)
            try writeFileIfDifferent(Self.identityRun + "/node-key.pem", Array(key.pemRepresentation.utf8), mode: 0o600)
            let identity = ImageCredentials(
                ca: credentials.ca, certificate: Self.identityRun + "/node.pem", key: Self.identityRun + "/node-key.pem")
            try session.adopt(
                tls: ClientTLS(caFile: identity.ca, certificateFile: identity.certificate, keyFile: identity.key))
            credentials = identity
        } catch {
            return failed(.register, .transient, "using node \(task.node)'s certificate: \(error)")
        }
        session.event(
            "register",
            "node \(task.node) \(result.kind.rawValue == "renewed" ? "proved its identity" : "enrolled (\(result.kind.rawValue))") "
                + "with the key \(kept ? "kept" : "made") in \(describe(task.keyStore)); key \(key.fingerprint), "
                + "certificate \(result.serial) valid until \(result.notAfter); in \(took(since: start))",
            seconds: monotonicSeconds() - start)
        do {
            return machine.enrolled(try session.poll())
        } catch {
            return failed(.register, .transient, "asking for node \(task.node)'s config with its certificate: \(error)")
        }
    }

    func awaitApproval(seconds: Int, message: String) -> BootDecision {
        session?.event("register", "waiting for the admin: \(message); asking again every \(seconds) s", level: .warning)
        session?.flush()
        sleep(UInt32(seconds))
        return machine.approvalWaited()
    }

    func describe(_ store: KeyStore) -> String {
        switch store {
        case .rootDirectory(let path): "/\(path) on the node's disk"
        case .tpm(let index): "TPM NV index 0x\(String(index, radix: 16))"
        case .none: "memory only (no TPM; a new key every boot)"
        }
    }

    /// The kept key, or a new one (`kept` false: store it once the server accepted it).
    func loadKey(_ store: KeyStore) throws -> (NodeKey, kept: Bool) {
        switch store {
        case .rootDirectory(let relative):
            let path = root + "/" + relative + "/node-key.pem"
            guard let data = FileManager.default.contents(atPath: path) else { return (NodeKey(), false) }
            return (try NodeKey(pem: String(decoding: data, as: UTF8.self)), true)
        case .tpm(let index):
            guard let bytes = try TPMStore(index: index).read() else { return (NodeKey(), false) }
            return (try NodeKey(derRepresentation: bytes), true)
        case .none:
            return (NodeKey(), false)
        }
    }

    func storeKey(_ key: NodeKey, _ store: KeyStore) throws {
        switch store {
        case .rootDirectory(let relative):
            let directory = root + "/" + relative
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            chmod(directory, 0o700)
            // Durable before the certificate is used: a power cut later in this boot (scenario g)
            // must not lose the key the server now knows, or the next boot waits for the admin.
            // (The directories it made too: everything is synced, little is pending this early in
            // the boot.)
            try writeFileIfDifferent(directory + "/node-key.pem", Array(key.pemRepresentation.utf8), mode: 0o600)
            sync()
        case .tpm(let index):
            try TPMStore(index: index).write(key.derRepresentation)
        case .none:
            break
        }
    }
}
