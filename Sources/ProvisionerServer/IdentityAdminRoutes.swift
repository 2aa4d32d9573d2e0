import Foundation
import Hummingbird
import ProvisionerAPI
import ProvisionerCore
import ProvisionerPKI
import X509

extension Services {
    /// `/api/v1/admin`: node identities, certificate revocation, secrets (docs/certificates.md).
    func addIdentityAdminRoutes(to group: RouterGroup<ProvisionerContext>) {
        @Sendable func actor(_ context: ProvisionerContext) -> Actor {
            Actor(name: context.peer?.name ?? "unknown", remoteAddress: context.remoteAddress)
        }
        group.get("nodes/:name/identity") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard try await store.node(named: name) != nil else {
                throw APIError.notFound("unknown-node", "no node named \(name)")
            }
            return json(try await store.identity(of: name))
        }
        group.post("nodes/:name/revoke") { _, context -> Response in
            let name = try context.parameters.require("name")
            let serials = try await store.revokeNode(name, by: actor(context))
            await certificates.revoke(serials)
            return json(
                RevokeResult(
                    revoked: serials,
                    message: "node \(name): \(serials.count) certificate(s) revoked; its next boot needs "
                        + "provisionerctl nodes approve \(name) (or enrollment: auto) to enroll a new key"))
        }
        group.post("nodes/:name/approve") { _, context -> Response in
            let name = try context.parameters.require("name")
            return json(try await store.approveNode(name, by: actor(context)))
        }
        group.get("certificates") { request, _ -> Response in
            json(
                try await store.certificates(
                    role: request.uri.queryParameters["role"].map(String.init),
                    name: request.uri.queryParameters["name"].map(String.init)))
        }
        group.post("certificates/revoke") { request, context -> Response in
            let body = try await decodeJSON(RevokeRequest.self, from: request, limit: 64 << 10)
            var serial = body.serial?.lowercased().filter { $0 != ":" }
            var role: String?
            var name: String?
            if let pem = body.certificate {
                do {
                    let certificate = try Certificate(pemEncoded: pem)
                    let peer = PeerIdentity(certificate: certificate)
                    serial = certificate.serialHex
                    role = peer.role?.rawValue
                    name = peer.name
                } catch {
                    throw APIError(.badRequest, "bad-certificate", "certificate: not a PEM certificate: \(error)")
                }
            }
            guard let serial, !serial.isEmpty, serial.count <= 64, serial.allSatisfy(\.isHexDigit) else {
                throw APIError(.badRequest, "bad-serial", "serial: give a certificate's serial in hex, or the certificate")
            }
            let revoked = try await store.revoke(
                serials: [serial], role: role, name: name, by: actor(context), reason: body.reason)
            await certificates.revoke(revoked)
            return json(
                RevokeResult(
                    revoked: revoked,
                    message: revoked.isEmpty ? "certificate \(serial) was already revoked" : "certificate \(serial) revoked"))
        }
        group.post("admins/:name/revoke") { _, context -> Response in
            let name = try context.parameters.require("name")
            let known = try await store.certificates(role: CertificateRole.admin.rawValue, name: name)
                .filter { $0.revokedAt == nil }.map(\.serial)
            guard !known.isEmpty else {
                throw APIError.notFound(
                    "unknown-admin",
                    "this server has seen no unrevoked certificate of admin \(name); revoke one it never used with "
                        + "provisionerctl certs revoke FILE")
            }
            let revoked = try await store.revoke(
                serials: known, role: CertificateRole.admin.rawValue, name: name, by: actor(context),
                reason: "admins revoke")
            await certificates.revoke(revoked)
            return json(RevokeResult(revoked: revoked, message: "admin \(name): \(revoked.count) certificate(s) revoked"))
        }

        // Secrets: set, list (never the values), delete.
        group.put("secrets/:owner/:name") { request, context -> Response in
            let owner = try await self.secretOwner(try context.parameters.require("owner"))
            let name = try context.parameters.require("name")
            guard Names.isSimpleName(name) else {
                throw APIError(.badRequest, "bad-name", "\"\(name)\" is not a secret name ([A-Za-z0-9._-], 1-128)")
            }
            let body: SecretWrite
            do { body = try await decodeJSON(SecretWrite.self, from: request, limit: 2 << 20).validated() } catch let error as ConfigError {
                throw APIError(.unprocessableContent, "bad-secret", error.description)
            }
            let sealed = try secrets.seal(body.data, owner: owner, name: name)
            try await store.putSecret(owner: owner, name: name, body, sealed: sealed, generated: false, by: actor(context))
            return json(try await store.secrets(owner: owner).filter { $0.name == name })
        }
        group.get("secrets") { request, _ -> Response in
            var owner: String?
            if let asked = request.uri.queryParameters["owner"] { owner = try await self.secretOwner(String(asked)) }
            return json(try await store.secrets(owner: owner))
        }
        group.delete("secrets/:owner/:name") { _, context -> Response in
            let owner = try await self.secretOwner(try context.parameters.require("owner"))
            let name = try context.parameters.require("name")
            try await store.deleteSecret(owner: owner, name: name, by: actor(context))
            return json(["deleted": "\(owner)/\(name)"])
        }
    }

    /// `node:NAME`, `profile:NAME`, or a bare name that is exactly one of them.
    func secretOwner(_ text: String) async throws -> String {
        if text.hasPrefix("node:") {
            let name = String(text.dropFirst(5))
            guard try await store.node(named: name) != nil else {
                throw APIError.notFound("unknown-node", "no node named \(name)")
            }
            return text
        }
        if text.hasPrefix("profile:") {
            let name = String(text.dropFirst(8))
            guard try await store.profile(named: name) != nil else {
                throw APIError.notFound("unknown-profile", "no profile named \(name)")
            }
            return text
        }
        let isNode = try await store.node(named: text) != nil
        let isProfile = try await store.profile(named: text) != nil
        switch (isNode, isProfile) {
        case (true, false): return "node:\(text)"
        case (false, true): return "profile:\(text)"
        case (true, true):
            throw APIError(
                .badRequest, "ambiguous-owner", "\(text) is both a node and a profile; say node:\(text) or profile:\(text)")
        case (false, false):
            throw APIError.notFound("unknown-owner", "no node or profile named \(text)")
        }
    }

    /// A deleted node's certificates stop working and its identity and secrets go.
    func forgetNode(_ name: String, by actor: Actor) async throws {
        let serials = try await store.forgetIdentity(name, by: actor)
        await certificates.revoke(serials)
    }
}
