import NIOCore
import NIOHTTP1
import NIOSSL
import ProvisionerAPI
import ProvisionerCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One server (or mirror) to talk to: `https://host:port` (port 443 when absent).
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `https://host[:port]`, `https://[v6]:port`, or `host:port`; a trailing `/` is allowed.
    public init(parsing text: String) throws(ClientError) {
        var rest = Substring(text.trimmed)
        if rest.hasPrefix("https://") {
            rest = rest.dropFirst(8)
        } else if rest.contains("://") {
            throw ClientError.configuration("\(text): only https:// servers are supported")
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/") else {
            throw ClientError.configuration("\(text): a server is https://host:port, no path")
        }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw ClientError.configuration("\(text): unclosed [ in the address")
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw ClientError.configuration("\(text): unexpected text after the address")
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw ClientError.configuration("\(text): no host") }
        var port = 443
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else {
                throw ClientError.configuration("\(text): \"\(portText)\" is not a port")
            }
            port = p
        }
        self.host = String(host)
        self.port = port
    }

    /// True for IPv4 and IPv6 literals: those are checked against the certificate's IP address SANs.
    public var isIPAddress: Bool {
        (try? SocketAddress(ipAddress: host, port: port)) != nil
    }

    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 443 ? h : "\(h):\(port)"
    }

    public var description: String { "https://\(hostHeader)" }
}

/// The TLS material of a client: the cluster CA it trusts, and its own certificate and key.
public struct ClientTLS: Sendable {
    public var trustedCAs: [NIOSSLCertificate]
    public var certificateChain: [NIOSSLCertificate]
    public var privateKey: NIOSSLPrivateKey?

    public init(trustedCAs: [NIOSSLCertificate], certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey?) {
        self.trustedCAs = trustedCAs
        self.certificateChain = certificateChain
        self.privateKey = privateKey
    }

    /// Reads PEM files: the cluster CA, and the client certificate and key (both or neither).
    public init(caFile: String, certificateFile: String?, keyFile: String?) throws(ClientError) {
        func load<T>(_ what: String, _ path: String, _ body: () throws -> T) throws(ClientError) -> T {
            do { return try body() } catch {
                throw ClientError.configuration("reading the \(what) \(path): \(error)")
            }
        }
        trustedCAs = try load("CA certificate", caFile) { try NIOSSLCertificate.fromPEMFile(caFile) }
        guard !trustedCAs.isEmpty else { throw ClientError.configuration("\(caFile) holds no certificate") }
        if let certificateFile, let keyFile {
            certificateChain = try load("client certificate", certificateFile) {
                try NIOSSLCertificate.fromPEMFile(certificateFile)
            }
            privateKey = try load("client key", keyFile) { try NIOSSLPrivateKey(file: keyFile, format: .pem) }
        } else if certificateFile != nil || keyFile != nil {
            throw ClientError.configuration("a client certificate needs both its certificate and its key")
        } else {
            certificateChain = []
            privateKey = nil
        }
    }

    /// The same from PEM text held in memory.
    public init(caPEM: String, certificatePEM: String?, keyPEM: String?) throws(ClientError) {
        do {
            trustedCAs = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
            certificateChain = try certificatePEM.map { try NIOSSLCertificate.fromPEMBytes(Array($0.utf8)) } ?? []
            privateKey = try keyPEM.map { try NIOSSLPrivateKey(bytes: Array($0.utf8), format: .pem) }
        } catch {
            throw ClientError.configuration("reading PEM credentials: \(error)")
        }
    }

    func makeConfiguration() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        // Only the cluster CA: not the system store. A server with any other issuer is refused.
        tls.trustRoots = .certificates(trustedCAs)
        tls.certificateVerification = .fullVerification
        tls.minimumTLSVersion = .tlsv12
        tls.certificateChain = certificateChain.map { .certificate($0) }
        tls.privateKey = privateKey.map { .privateKey($0) }
        return tls
    }
}

public struct ClientConfiguration: Sendable {
    /// The server and its mirrors; each request picks among them at random, with failover.
    public var servers: [Endpoint]
    public var tls: ClientTLS
    public var connectTimeout: TimeAmount
    /// A request fails with `ClientError.timeout` when the server sends nothing for this long.
    public var readTimeout: TimeAmount
    /// Largest answer `send` and `json` buffer (streamed answers have no limit).
    public var maxBufferedBodyBytes: Int
    public var userAgent: String

    public init(
        servers: [Endpoint], tls: ClientTLS, connectTimeout: TimeAmount = .seconds(10),
        readTimeout: TimeAmount = .seconds(60), maxBufferedBodyBytes: Int = 64 << 20,
        userAgent: String = "provisioner-agent"
    ) {
        self.servers = servers
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.maxBufferedBodyBytes = maxBufferedBodyBytes
        self.userAgent = userAgent
    }
}

/// One HTTP request: a method, a path with query (`/files/kernels/default`), headers, an optional body.
public struct ClientRequest: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var headers: HTTPHeaders
    public var body: [UInt8]?
    /// Sending it twice changes nothing, so `ClientPool` may send it again on a new connection when
    /// a kept-alive one turns out closed before any answer. GET and HEAD by default; a POST that
    /// only reads (the image routes' pack request) can say so.
    public var safeToRetry: Bool

    public init(method: HTTPMethod, path: String, headers: HTTPHeaders = [:], body: [UInt8]? = nil) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.safeToRetry = method == .GET || method == .HEAD
    }

    /// A GET, optionally for the bytes `range` (`100...199`, or `100...` for "from 100 to the end").
    public static func get(_ path: String, from start: UInt64? = nil, through end: UInt64? = nil) -> ClientRequest {
        var request = ClientRequest(method: .GET, path: path)
        if let start {
            request.headers.add(name: "Range", value: "bytes=\(start)-\(end.map(String.init) ?? "")")
        }
        return request
    }

    /// A POST of `body` with `contentType`; read the answer with `ProvisionerClient.stream`.
    public static func post(_ path: String, body: [UInt8], contentType: String) -> ClientRequest {
        ClientRequest(method: .POST, path: path, headers: ["Content-Type": contentType], body: body)
    }

    /// A request with `body` encoded as JSON (no body when nil) that asks for JSON.
    public static func json(_ method: HTTPMethod, _ path: String, body: (some Encodable)?) throws -> ClientRequest {
        var request = ClientRequest(method: method, path: path)
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            do {
                request.body = Array(try JSONEncoder().encode(body))
            } catch {
                throw ClientError.protocolError("cannot encode the request to \(path): \(error)")
            }
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        return request
    }

    var isIdempotent: Bool { method == .GET || method == .HEAD }
}

public struct ClientResponseHead: Sendable {
    public var status: Int
    public var headers: HTTPHeaders

    init(_ head: HTTPResponseHead) {
        status = Int(head.status.code)
        headers = head.headers
    }

    /// `ETag` as sent (with its quotes).
    public var etag: String? { headers.first(name: "ETag") }
    public var contentLength: UInt64? { headers.first(name: "Content-Length").flatMap { UInt64($0) } }
}

public struct ClientResponse: Sendable {
    public var head: ClientResponseHead
    public var body: ByteBuffer

    public var status: Int { head.status }

    /// Throws `ClientError.status` unless the status is 2xx.
    public func checked(path: String) throws -> ClientResponse {
        guard (200..<300).contains(status) else {
            throw ClientError.status(status, Self.errorBody(body), path)
        }
        return self
    }

    /// The JSON body of a 2xx answer; `ClientError.status` for any other.
    static func decodeJSON<T: Decodable>(_ type: T.Type, _ response: ClientResponse, request: ClientRequest) throws -> T
    {
        let checked = try response.checked(path: "\(request.method) \(request.path)")
        do {
            return try JSONDecoder().decode(T.self, from: Data(checked.body.readableBytesView))
        } catch {
            throw ClientError.protocolError(
                "the answer to \(request.method) \(request.path) is not the expected JSON: \(error)")
        }
    }

    static func errorBody(_ buffer: ByteBuffer) -> ErrorBody? {
        try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer.readableBytesView))
    }
}

/// What went wrong talking to the server; the description is one readable line.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    case configuration(String)
    /// TCP connect failed (refused, unreachable, timed out).
    case connect(String, String)
    /// The TLS handshake failed: the server's certificate is not from the cluster CA, or it refused ours.
    case tls(String, String)
    case closedBeforeAnswer(String, String)
    /// The connection closed in the middle of a body.
    case truncated(String)
    /// The server sent nothing for `readTimeout`.
    case timeout
    /// A non-2xx answer (status, the server's error body, the request).
    case status(Int, ErrorBody?, String)
    /// A 5xx to an idempotent request, which the next mirror may answer.
    case serverFailed(Int, String)
    case bodyTooLarge(Int)
    case protocolError(String)
    /// Every server failed; one line per server.
    case allServersFailed(String, [String])

    /// A failure of the server or the way to it rather than of the request: the next mirror may do.
    /// What a kept-alive connection the server closed while it waited gives the next request (its
    /// handshake was done long ago: a TLS error now is a connection dropped without close_notify).
    var isStaleConnection: Bool {
        switch self {
        case .closedBeforeAnswer, .timeout, .tls: true
        default: false
        }
    }

    public var isConnectionLevel: Bool {
        switch self {
        case .connect, .tls, .closedBeforeAnswer, .timeout, .serverFailed: true
        default: false
        }
    }

    /// The HTTP status, for `.status`.
    public var httpStatus: Int? {
        if case .status(let s, _, _) = self { return s }
        return nil
    }

    public var description: String {
        switch self {
        case .configuration(let m): "client configuration: \(m)"
        case .connect(let e, let cause): "connecting to \(e): \(cause)"
        case .tls(let e, let cause): "TLS with \(e): \(cause)"
        case .closedBeforeAnswer(let e, let cause): "\(e) closed the connection before answering: \(cause)"
        case .truncated(let e): "\(e) closed the connection in the middle of an answer"
        case .timeout: "the server sent nothing within the read timeout"
        case .status(let s, let body, let request):
            "\(request): HTTP \(s)" + (body.map { ": \($0.error.message)" } ?? "")
        case .serverFailed(let s, let text): "HTTP \(s) \(text)"
        case .bodyTooLarge(let limit): "the answer is larger than \(limit) bytes"
        case .protocolError(let m): m
        case .allServersFailed(let what, let failures):
            failures.count == 1
                ? "\(what): \(failures[0])" : "\(what): every server failed: \(failures.joined(separator: "; "))"
        }
    }

    static func classify(_ error: any Error, endpoint: String, beforeAnswer: Bool) -> ClientError {
        if let e = error as? ClientError { return e }
        if error is NIOSSLError || error is BoringSSLError {
            return .tls(endpoint, "\(error)")
        }
        return beforeAnswer ? .closedBeforeAnswer(endpoint, "\(error)") : .truncated(endpoint)
    }
}
