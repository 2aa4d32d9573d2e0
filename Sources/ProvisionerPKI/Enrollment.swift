import Crypto
import Foundation
import SwiftASN1
import X509

/// A node's own key pair (ECDSA P-256). Made on the node, never sent anywhere: the node proves it
/// holds it by signing its certificate request (docs/certificates.md, "Enrollment").
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

    /// `sha256:` and the hex SHA-256 of the public key's SubjectPublicKeyInfo: how the server
    /// remembers which key a node enrolled with.
    public var fingerprint: String { KeyFingerprint.of(key.publicKey) }

    /// A PKCS#10 request for a node certificate: the node's name as CN, and the session's
    /// enrollment challenge as the challengePassword attribute (RFC 2985), so the request is good
    /// for that one session only.
    public func certificateRequest(node: String, challenge: String) throws -> String {
        let subject = try DistinguishedName {
            OrganizationName("provisioner")
            OrganizationalUnitName(CertificateRole.node.rawValue)
            CommonName(node)
        }
        var attributes = CertificateSigningRequest.Attributes()
        attributes.insert(
            CertificateSigningRequest.Attribute(
                oid: KeyFingerprint.challengePasswordOID, values: [try ASN1Any(erasing: ASN1UTF8String(challenge))]))
        let csr = try CertificateSigningRequest(
            version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key), attributes: attributes,
            signatureAlgorithm: .ecdsaWithSHA256)
        return try csr.serializeAsPEM().pemString
    }
}

public enum KeyFingerprint {
    /// challengePassword, 1.2.840.113549.1.9.7.
    static let challengePasswordOID: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 7]

    public static func of(_ key: P256.Signing.PublicKey) -> String {
        "sha256:" + SHA256.hash(data: key.derRepresentation).map { String(format: "%02x", $0) }.joined()
    }
}

/// A certificate request as the server checks it: well-formed, signed by the key it carries, and
/// what it asks for. Every problem is a `PKIError` that says which.
public struct CheckedCertificateRequest: Sendable {
    /// The CN the request asks for (the node's name).
    public let commonName: String
    /// The challengePassword attribute, nil when absent.
    public let challenge: String?
    public let publicKey: Certificate.PublicKey
    /// Of the request's key (`KeyFingerprint`).
    public let fingerprint: String

    public init(pem: String) throws {
        guard pem.utf8.count <= 16 << 10 else { throw PKIError("the certificate request is larger than 16 KiB") }
        let csr: CertificateSigningRequest
        do { csr = try CertificateSigningRequest(pemEncoded: pem) } catch {
            throw PKIError("the certificate request is not a PEM PKCS#10 request: \(error)")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw PKIError("the certificate request's signature does not match its key")
        }
        guard let p256 = P256.Signing.PublicKey(csr.publicKey) else {
            throw PKIError("the certificate request's key is not ECDSA P-256")
        }
        var names: [String] = []
        for rdn in csr.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                names.append(attribute.value.description)
            }
        }
        guard names.count == 1, let name = names.first else {
            throw PKIError("the certificate request must name exactly one CN (it names \(names.count))")
        }
        var challenges: [String] = []
        for attribute in csr.attributes where attribute.oid == KeyFingerprint.challengePasswordOID {
            for value in attribute.values {
                if let text = try? ASN1UTF8String(asn1Any: value) {
                    challenges.append(String(text))
                } else if let text = try? ASN1PrintableString(asn1Any: value) {
                    challenges.append(String(text))
                } else {
                    throw PKIError("the certificate request's challengePassword is not a UTF8String or PrintableString")
                }
            }
        }
        guard challenges.count <= 1 else { throw PKIError("the certificate request has more than one challengePassword") }
        commonName = name
        challenge = challenges.first
        publicKey = csr.publicKey
        fingerprint = KeyFingerprint.of(p256)
    }
}
