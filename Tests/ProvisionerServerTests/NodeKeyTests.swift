import Crypto
import Foundation
import ProvisionerPKI
import SwiftASN1
import Testing
import X509

/// The agent's certificate request (`ProvisionerKeys`, encoded by hand on SwiftASN1) as the
/// server's swift-certificates reads and checks it.
@Suite struct NodeKeyTests {
    @Test func theServerReadsTheRequestTheAgentMakes() throws {
        let key = NodeKey()
        let pem = try key.certificateRequest(node: "rack1-n07", challenge: "3f9a challenge ü")
        #expect(pem.hasPrefix("-----BEGIN CERTIFICATE REQUEST-----\n"))
        let checked = try CheckedCertificateRequest(pem: pem)
        #expect(checked.commonName == "rack1-n07")
        #expect(checked.challenge == "3f9a challenge ü")
        #expect(checked.fingerprint == key.fingerprint)

        let csr = try CertificateSigningRequest(pemEncoded: pem)
        #expect(csr.version == .v1)
        #expect(csr.signatureAlgorithm == .ecdsaWithSHA256)
        #expect(csr.subject.description == "CN=rack1-n07,OU=node,O=provisioner")
        #expect(P256.Signing.PublicKey(csr.publicKey)?.rawRepresentation == key.publicKey.rawRepresentation)
    }

    @Test func aRequestWhoseSignatureDoesNotMatchIsRefused() throws {
        let pem = try NodeKey().certificateRequest(node: "n1", challenge: "c")
        var der = try PEMDocument(pemString: pem).derBytes
        der[der.count - 3] ^= 0x01  // inside the signature's last integer
        let bad = PEMDocument(type: "CERTIFICATE REQUEST", derBytes: der).pemString
        #expect {
            _ = try CheckedCertificateRequest(pem: bad)
        } throws: { "\($0)".contains("signature does not match") || "\($0)".contains("not a PEM PKCS#10") }
        // Another key's signature over the same request body: refused too.
        let theirs = try CertificateSigningRequest(pemEncoded: try NodeKey().certificateRequest(node: "n1", challenge: "c"))
        var swapped = try CertificateSigningRequest(pemEncoded: pem)
        swapped = try CertificateSigningRequest(
            version: swapped.version, subject: swapped.subject, publicKey: swapped.publicKey,
            attributes: swapped.attributes, signatureAlgorithm: swapped.signatureAlgorithm, signature: theirs.signature)
        let swappedPEM = try swapped.serializeAsPEM().pemString
        #expect {
            _ = try CheckedCertificateRequest(pem: swappedPEM)
        } throws: { "\($0)".contains("signature does not match") }
    }

    @Test func aKeyKeptAsPEMOrDERIsTheSameKey() throws {
        let key = NodeKey()
        #expect(try NodeKey(pem: key.pemRepresentation).fingerprint == key.fingerprint)
        #expect(try NodeKey(derRepresentation: key.derRepresentation).fingerprint == key.fingerprint)
        let hex = SHA256.hash(data: key.publicKey.derRepresentation).map { String(format: "%02x", $0) }.joined()
        #expect(key.fingerprint == "sha256:" + hex)
        #expect(throws: PKIError.self) { try NodeKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") }
        #expect(throws: PKIError.self) { try NodeKey(derRepresentation: [0x30, 0x03, 0x02, 0x01]) }
    }
}
