import Crypto
import Foundation
import SwiftASN1
import X509

@_exported import ProvisionerKeys

/// A certificate and its private key, both PEM.
public struct IssuedCredential: Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// The cluster's own certificate authority (ECDSA P-256). It signs the server certificate, the
/// node client certificate and admin certificates; every party trusts only it (docs/certificates.md).
public struct ClusterCA: Sendable {
    public let certificate: Certificate
    private let key: P256.Signing.PrivateKey

    /// A new CA, valid for `validityDays` from an hour ago (clock skew).
    public static func create(commonName: String = "provisioner cluster CA", validityDays: Int = 3650) throws
        -> ClusterCA
    {
        let key = P256.Signing.PrivateKey()
        let certKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            OrganizationName("provisioner")
            CommonName(commonName)
        }
        let now = Date()
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: certKey.publicKey)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: certKey.publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(Double(validityDays) * 86400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: certKey)
        return ClusterCA(certificate: certificate, key: key)
    }

    init(certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.key = key
    }

    /// Loads a CA written by `certificatePEM` / `privateKeyPEM`.
    public init(certificatePEM: String, privateKeyPEM: String) throws {
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw PKIError("the CA certificate is not a PEM certificate: \(error)")
        }
        do {
            key = try P256.Signing.PrivateKey(pemRepresentation: privateKeyPEM)
        } catch {
            throw PKIError("the CA key is not a PEM P-256 private key: \(error)")
        }
        guard Certificate.PublicKey(key.publicKey) == certificate.publicKey else {
            throw PKIError("the CA key does not belong to the CA certificate")
        }
    }

    public var certificatePEM: String { get throws { try certificate.serializeAsPEM().pemString } }
    public var privateKeyPEM: String { key.pemRepresentation }

    /// Issues a leaf certificate. `dnsNames` and `ipAddresses` become SANs (servers need at least one).
    public func issue(
        role: CertificateRole, commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [],
        validityDays: Int = 825
    ) throws -> IssuedCredential {
        let now = Date()
        return try issue(
            role: role, commonName: commonName, dnsNames: dnsNames, ipAddresses: ipAddresses,
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(Double(validityDays) * 86400))
    }

    /// Issues a leaf certificate valid from `notBefore` to `notAfter` (tests make expired ones).
    public func issue(
        role: CertificateRole, commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [],
        notBefore: Date, notAfter: Date
    ) throws -> IssuedCredential {
        let leafKey = P256.Signing.PrivateKey()
        let certificate = try sign(
            publicKey: Certificate.PublicKey(leafKey.publicKey), role: role, commonName: commonName,
            dnsNames: dnsNames, ipAddresses: ipAddresses, notBefore: notBefore, notAfter: notAfter)
        return IssuedCredential(
            certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: leafKey.pemRepresentation)
    }

    /// Signs a certificate for a key someone else holds (a node's, from its CSR).
    public func sign(
        publicKey: Certificate.PublicKey, role: CertificateRole, commonName: String, dnsNames: [String] = [],
        ipAddresses: [String] = [], notBefore: Date, notAfter: Date
    ) throws -> Certificate {
        let leafPublicKey = publicKey
        let subject = try DistinguishedName {
            OrganizationName("provisioner")
            OrganizationalUnitName(role.rawValue)
            CommonName(commonName)
        }
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        for address in ipAddresses {
            guard let bytes = Self.ipAddressBytes(address) else {
                throw PKIError("\"\(address)\" is not an IPv4 or IPv6 address")
            }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        if role == .server && names.isEmpty {
            throw PKIError("a server certificate needs at least one DNS name or IP address")
        }
        let caKeyID = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: false))
            try ExtendedKeyUsage(role == .server ? [.serverAuth] : [.clientAuth])
            SubjectKeyIdentifier(hash: leafPublicKey)
            if let caKeyID { AuthorityKeyIdentifier(keyIdentifier: caKeyID) }
            if !names.isEmpty { SubjectAlternativeNames(names) }
        }
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: leafPublicKey,
            notValidBefore: notBefore, notValidAfter: notAfter,
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: Certificate.PrivateKey(key))
    }

    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

/// Who a peer certificate says it is: role (from the OU) and name (the CN), and which certificate
/// (its serial, for revocation).
public struct PeerIdentity: Sendable, Hashable {
    public var role: CertificateRole?
    public var name: String
    /// The serial number in lowercase hex ("" for identities made up by tests).
    public var serial: String

    public init(role: CertificateRole?, name: String, serial: String = "") {
        self.role = role
        self.name = name
        self.serial = serial
    }

    public init(certificate: Certificate) {
        var role: CertificateRole?
        var name = "(unnamed)"
        for rdn in certificate.subject {
            for attribute in rdn {
                if attribute.type == .RDNAttributeType.commonName {
                    name = attribute.value.description
                } else if attribute.type == .RDNAttributeType.organizationalUnitName {
                    role = CertificateRole(rawValue: attribute.value.description) ?? role
                }
            }
        }
        self.init(role: role, name: name, serial: certificate.serialHex)
    }

    public init(derEncoded bytes: [UInt8]) throws {
        self.init(certificate: try Certificate(derEncoded: bytes))
    }
}

extension Certificate {
    /// The serial number as lowercase hex without separators: how the revocation list names it.
    public var serialHex: String {
        serialNumber.bytes.map { String(format: "%02x", $0) }.joined()
    }
}
