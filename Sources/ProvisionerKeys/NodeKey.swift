import Crypto
import SwiftASN1

/// What a certificate issued by the cluster CA may do; carried as the subject's OU.
public enum CertificateRole: String, Sendable, CaseIterable {
    /// The provisioning server (TLS server auth; names and addresses in its SANs).
    case server
    /// One node's own identity: CN is the node's name. Issued by the server when the node enrolls
    /// (docs/certificates.md, "Enrollment"), short-lived, renewed on every boot.
    case node
    /// The shared credential embedded in every initramfs: it may only register, wait and enroll.
    case bootstrap
    /// A caching mirror (nginx) fetching image objects and boot files for the nodes behind it.
    case mirror
    /// An administrator: provisionerctl, the admin API (TLS client auth). CN is the admin's name.
    case admin
}

public struct PKIError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A node's own key pair (ECDSA P-256). Made on the node, never sent anywhere: the node proves it
/// holds it by signing its certificate request (docs/certificates.md, "Enrollment").
///
/// This module is the agent's half of the PKI: the key and its request, on swift-crypto and
/// SwiftASN1 alone. swift-certificates (which the server uses to read requests and sign
/// certificates, `ProvisionerPKI`) imports Foundation, and with it ICU's 34 MB of data, which the
/// static agent in every initramfs does not need.
public struct NodeKey: Sendable {
    let key: P256.Signing.PrivateKey

    /// A new key.
    public init() { key = P256.Signing.PrivateKey() }

    /// A key kept as PEM (`-----BEGIN PRIVATE KEY-----`, PKCS#8) or SEC1 DER bytes.
    public init(pem: String) throws {
        do { key = try P256.Signing.PrivateKey(pemRepresentation: pem) } catch {
            throw PKIError("the node key is not a PEM P-256 private key: \(error)")
        }
    }

    public init(derRepresentation bytes: [UInt8]) throws {
        do { key = try P256.Signing.PrivateKey(derRepresentation: bytes) } catch {
            throw PKIError("the node key is not a DER P-256 private key: \(error)")
        }
    }

    public var pemRepresentation: String { key.pemRepresentation }
    public var derRepresentation: [UInt8] { Array(key.derRepresentation) }
    public var publicKey: P256.Signing.PublicKey { key.publicKey }

    /// `sha256:` and the hex SHA-256 of the public key's SubjectPublicKeyInfo: how the server
    /// remembers which key a node enrolled with.
    public var fingerprint: String { KeyFingerprint.of(key.publicKey) }

    /// A PKCS#10 request (RFC 2986) for a node certificate: O=provisioner, OU=node and the node's
    /// name as CN, and the session's enrollment challenge as the challengePassword attribute
    /// (RFC 2985), so the request is good for that one session only. Signed ECDSA with SHA-256.
    public func certificateRequest(node: String, challenge: String) throws -> String {
        do {
            var info = DER.Serializer()
            try info.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(0)  // version v1
                try coder.appendConstructedNode(identifier: .sequence) { name in  // Name: one attribute per RDN
                    for (oid, value) in [
                        (KeyFingerprint.organizationNameOID, "provisioner"),
                        (KeyFingerprint.organizationalUnitNameOID, CertificateRole.node.rawValue),
                        (KeyFingerprint.commonNameOID, node),
                    ] {
                        try name.appendConstructedNode(identifier: .set) { rdn in
                            try rdn.appendConstructedNode(identifier: .sequence) { attribute in
                                try attribute.serialize(oid)
                                try attribute.serialize(ASN1UTF8String(value))
                            }
                        }
                    }
                }
                coder.serializeRawBytes(key.publicKey.derRepresentation)  // SubjectPublicKeyInfo
                // attributes [0] IMPLICIT SET OF Attribute: the challengePassword.
                try coder.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                    attributes in
                    try attributes.appendConstructedNode(identifier: .sequence) { attribute in
                        try attribute.serialize(KeyFingerprint.challengePasswordOID)
                        try attribute.appendConstructedNode(identifier: .set) { values in
                            try values.serialize(ASN1UTF8String(challenge))
                        }
                    }
                }
            }
            let signature = try key.signature(for: info.serializedBytes).derRepresentation
            var request = DER.Serializer()
            try request.appendConstructedNode(identifier: .sequence) { coder in
                coder.serializeRawBytes(info.serializedBytes)
                try coder.appendConstructedNode(identifier: .sequence) { algorithm in  // no parameters
                    try algorithm.serialize(KeyFingerprint.ecdsaWithSHA256OID)
                }
                try coder.serialize(ASN1BitString(bytes: ArraySlice(signature)))
            }
            return PEMDocument(type: "CERTIFICATE REQUEST", derBytes: request.serializedBytes).pemString
        } catch let error as PKIError {
            throw error
        } catch {
            throw PKIError("cannot encode the certificate request for \(node): \(error)")
        }
    }
}

public enum KeyFingerprint {
    /// challengePassword, 1.2.840.113549.1.9.7.
    public static let challengePasswordOID: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 7]
    static let commonNameOID: ASN1ObjectIdentifier = [2, 5, 4, 3]
    static let organizationNameOID: ASN1ObjectIdentifier = [2, 5, 4, 10]
    static let organizationalUnitNameOID: ASN1ObjectIdentifier = [2, 5, 4, 11]
    /// ecdsa-with-SHA256, 1.2.840.10045.4.3.2 (RFC 5758: no parameters).
    static let ecdsaWithSHA256OID: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]

    public static func of(_ key: P256.Signing.PublicKey) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = Array("sha256:".utf8)
        for byte in SHA256.hash(data: key.derRepresentation) {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
