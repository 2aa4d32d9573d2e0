import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOPosix
import ProvisionerAPI
import SQLiteNIO
import Synchronization

/// Secrets at rest: AES-256-GCM with a key kept in a file outside the database (`secretsKey:`,
/// default STATE/secrets.key, 0600), so a copy of the database alone reveals no secret. Each
/// secret is bound to its owner and name (the GCM associated data): a sealed value moved to
/// another row does not open. Delivery: `SessionResponse.secrets`, to the node's own certificate
/// only (docs/certificates.md, "Secrets").
public final class SecretVault: Sendable {
    public let keyPath: String
    /// Generate SSH host keys for every node the first time it gets its config.
    let sshHostKeys: Bool
    let scratch: String
    private let key = Mutex<SymmetricKey?>(nil)

    public init(keyPath: String, scratch: String, sshHostKeys: Bool) {
        self.keyPath = keyPath
        self.scratch = scratch
        self.sshHostKeys = sshHostKeys
    }

    /// The key: read from `keyPath`, or made there (0600, never replaced) the first time.
    func sealingKey() throws -> SymmetricKey {
        try key.withLock { cached in
            if let cached { return cached }
            let fm = FileManager.default
            if !fm.fileExists(atPath: keyPath) {
                let fd = Glibc.open(keyPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                if fd >= 0 {
                    let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
                    let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                    let synced = Glibc.fsync(fd)
                    _ = Glibc.close(fd)
                    guard written == bytes.count, synced == 0 else {
                        unlink(keyPath)
                        throw APIError(.internalServerError, "secrets-key", "writing the secrets key \(keyPath) failed")
                    }
                }
            }
            guard let data = fm.contents(atPath: keyPath), data.count == 32 else {
                throw APIError(
                    .internalServerError, "secrets-key",
                    "the secrets key \(keyPath) is missing or not 32 bytes; secrets cannot be read or written")
            }
            var info = stat()
            if stat(keyPath, &info) == 0, info.st_mode & 0o077 != 0 {
                throw APIError(
                    .internalServerError, "secrets-key",
                    "the secrets key \(keyPath) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
            }
            let loaded = SymmetricKey(data: data)
            cached = loaded
            return loaded
        }
    }

    static func associatedData(owner: String, name: String) -> Data { Data("provisioner-secret:\(owner)/\(name)".utf8) }

    func seal(_ plaintext: Data, owner: String, name: String) throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: try sealingKey(), authenticating: Self.associatedData(owner: owner, name: name))
        guard let combined = box.combined else {
            throw APIError(.internalServerError, "secrets-seal", "sealing secret \(owner)/\(name) failed")
        }
        return combined
    }

    func open(_ sealed: Data, owner: String, name: String) throws -> Data {
        do {
            return try AES.GCM.open(
                try AES.GCM.SealedBox(combined: sealed), using: try sealingKey(),
                authenticating: Self.associatedData(owner: owner, name: name))
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(
                .internalServerError, "secrets-open",
                "secret \(owner)/\(name) does not open with the key in \(keyPath) (another key, or the row was altered)")
        }
    }

    /// The secrets `node` gets: its profiles' in order, then its own (a later one with the same
    /// name wins), SSH host keys made first when the node has none.
    func delivery(for node: NodeConfig, store: Store) async throws -> [DeliveredSecret] {
        if sshHostKeys { try await ensureHostKeys(node: node.name, store: store) }
        let owners = node.profiles.map { "profile:\($0)" } + ["node:\(node.name)"]
        var byName: [String: DeliveredSecret] = [:]
        var order: [String] = []
        for row in try await store.sealedSecrets(owners: owners) {
            let plaintext = try open(row.sealed, owner: row.owner, name: row.name)
            if byName[row.name] == nil { order.append(row.name) }
            byName[row.name] = DeliveredSecret(
                name: row.name, path: row.path, mode: row.mode, uid: row.uid, gid: row.gid, data: plaintext)
        }
        return order.compactMap { byName[$0] }
    }

    /// The key types `ssh-keygen -A` makes, as Debian's openssh-server does at install.
    static let hostKeyTypes = [("ed25519", [String]()), ("ecdsa", ["-b", "256"]), ("rsa", ["-b", "3072"])]

    /// Makes the node's SSH host keys once (real `ssh-keygen`), so a stateless node keeps the same
    /// host keys on every boot and a reinstalled one keeps its fingerprint.
    func ensureHostKeys(node: String, store: Store) async throws {
        let owner = "node:\(node)"
        let existing = Set(try await store.secretNames(owner: owner))
        let missing = Self.hostKeyTypes.filter { !existing.contains("ssh_host_\($0.0)_key") }
        guard !missing.isEmpty else { return }
        let directory = scratch + "/sshkeys-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for (type, options) in missing {
            let file = "\(directory)/ssh_host_\(type)_key"
            do {
                _ = try await NIOThreadPool.singleton.runIfActive {
                    try Tool.run(
                        ["ssh-keygen", "-q", "-t", type] + options + ["-N", "", "-C", "root@\(node)", "-f", file],
                        doing: "making node \(node)'s SSH host key (\(type))")
                }
            } catch {
                throw APIError(.internalServerError, "ssh-keygen", "\(error)")
            }
            let name = "ssh_host_\(type)_key"
            guard let privateKey = FileManager.default.contents(atPath: file),
                let publicKey = FileManager.default.contents(atPath: file + ".pub")
            else { throw APIError(.internalServerError, "ssh-keygen", "ssh-keygen wrote no \(file)") }
            let actor = Actor(name: "server", remoteAddress: nil)
            try await store.putSecret(
                owner: owner, name: name,
                SecretWrite(path: "/etc/ssh/\(name)", mode: 0o600, data: privateKey),
                sealed: try seal(privateKey, owner: owner, name: name), generated: true, by: actor, replace: false)
            try await store.putSecret(
                owner: owner, name: name + ".pub",
                SecretWrite(path: "/etc/ssh/\(name).pub", mode: 0o644, data: publicKey),
                sealed: try seal(publicKey, owner: owner, name: name + ".pub"), generated: true, by: actor,
                replace: false)
        }
    }
}

/// A sealed secret as stored.
struct SealedSecret: Sendable {
    var owner: String
    var name: String
    var path: String
    var mode: Int
    var uid: Int
    var gid: Int
    var sealed: Data
}

extension Store {
    /// Stores (or replaces) a secret; the audit entry names it and its path and size, never the value.
    /// `replace: false` keeps an existing one (generated keys made twice at once).
    func putSecret(
        owner: String, name: String, _ write: SecretWrite, sealed: Data, generated: Bool, by actor: Actor,
        replace: Bool = true
    ) async throws {
        try await transaction {
            _ = try await query(
                """
                INSERT INTO secrets (owner, name, path, mode, uid, gid, sealed, bytes, generated, updated_at, updated_by)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(owner, name) DO \(replace ? """
                UPDATE SET path = excluded.path, mode = excluded.mode, uid = excluded.uid, gid = excluded.gid,
                    sealed = excluded.sealed, bytes = excluded.bytes, generated = excluded.generated,
                    updated_at = excluded.updated_at, updated_by = excluded.updated_by
                """ : "NOTHING")
                """,
                [
                    .text(owner), .text(name), .text(write.path), .integer(write.mode), .integer(write.uid),
                    .integer(write.gid), .blob(ByteBuffer(bytes: sealed)), .integer(write.data.count),
                    .integer(generated ? 1 : 0), .integer(Clock.nowMillis()), .text(actor.name),
                ])
            try await audit(
                actor, generated ? "secret.generate" : "secret.set", "secret/\(owner)/\(name)", before: nil,
                after: "path \(write.path), mode \(String(write.mode, radix: 8)), \(write.uid):\(write.gid), \(write.data.count) bytes")
        }
    }

    public func deleteSecret(owner: String, name: String, by actor: Actor) async throws {
        try await transaction {
            let rows = try await query(
                "SELECT name FROM secrets WHERE owner = ? AND name = ?", [.text(owner), .text(name)])
            guard !rows.isEmpty else { throw APIError.notFound("unknown-secret", "no secret \(name) for \(owner)") }
            _ = try await query("DELETE FROM secrets WHERE owner = ? AND name = ?", [.text(owner), .text(name)])
            try await audit(actor, "secret.delete", "secret/\(owner)/\(name)", before: nil, after: nil)
        }
    }

    /// Every secret (of `owner`, when given), without values.
    public func secrets(owner: String?) async throws -> [SecretInfo] {
        let rows = try await read {
            if let owner {
                return try await query("SELECT * FROM secrets WHERE owner = ? ORDER BY owner, name", [.text(owner)])
            }
            return try await query("SELECT * FROM secrets ORDER BY owner, name")
        }
        return rows.map { row in
            SecretInfo(
                owner: row.column("owner")?.string ?? "", name: row.column("name")?.string ?? "",
                path: row.column("path")?.string ?? "", mode: row.column("mode")?.integer ?? 0,
                uid: row.column("uid")?.integer ?? 0, gid: row.column("gid")?.integer ?? 0,
                bytes: row.column("bytes")?.integer ?? 0,
                updatedAt: Clock.iso(row.column("updated_at")?.integer ?? 0),
                updatedBy: row.column("updated_by")?.string ?? "", generated: (row.column("generated")?.integer ?? 0) != 0)
        }
    }

    func secretNames(owner: String) async throws -> [String] {
        try await read {
            try await query("SELECT name FROM secrets WHERE owner = ?", [.text(owner)]).compactMap { $0.column("name")?.string }
        }
    }

    /// The sealed secrets of `owners`, in the owners' order.
    func sealedSecrets(owners: [String]) async throws -> [SealedSecret] {
        guard !owners.isEmpty else { return [] }
        let rows = try await read {
            let marks = Array(repeating: "?", count: owners.count).joined(separator: ",")
            return try await query(
                "SELECT * FROM secrets WHERE owner IN (\(marks)) ORDER BY name", owners.map { .text($0) })
        }
        let all = rows.map { row in
            SealedSecret(
                owner: row.column("owner")?.string ?? "", name: row.column("name")?.string ?? "",
                path: row.column("path")?.string ?? "", mode: row.column("mode")?.integer ?? 0,
                uid: row.column("uid")?.integer ?? 0, gid: row.column("gid")?.integer ?? 0,
                sealed: row.column("sealed")?.blob.map { Data($0.readableBytesView) } ?? Data())
        }
        return owners.flatMap { owner in all.filter { $0.owner == owner } }
    }
}
