import Crypto
import Foundation
import SwiftASN1
import X509

@_exported import ProvisionerKeys

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
