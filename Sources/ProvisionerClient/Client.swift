import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ProvisionerAPI

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The agent's HTTPS client: mutual TLS against the cluster CA, built directly on SwiftNIO,
/// NIOHTTP1 and NIOSSL so that the static agent does not link Foundation (AsyncHTTPClient
/// imports Foundation, whose ICU adds 34 MB).
///
/// - Every connection presents the cluster client certificate and accepts only a server whose
///   certificate chains to the cluster CA and names the host (DNS name, or IP address SAN when the
///   endpoint is an IP address).
/// - `servers` is a mirror list: each request tries the servers in a random order and moves on to
///   the next one when a server cannot be reached, the TLS handshake fails, the connection drops
///   before an answer, or (for GET and HEAD) it answers 5xx.
/// - Small answers are buffered (`send`, `json`); large ones are streamed (`stream`), with `Range`
///   for resumable downloads. `withConnection` keeps one connection open for many requests.
///
/// ```swift
/// let client = try ProvisionerClient(ClientConfiguration(
///     servers: [try Endpoint(parsing: "https://10.0.0.1:8443")],
///     tls: try ClientTLS(caFile: "/etc/provisioner/ca.pem",
///                        certificateFile: "/etc/provisioner/client.pem",
///                        keyFile: "/etc/provisioner/client-key.pem")))
/// let session: SessionResponse = try await client.json(.POST, "/api/v1/sessions", body: request)
/// try await client.stream(.get("/files/kernels/default", range: 1024...)) { head, body in
///     while let chunk = try await body.next() { write(chunk) }
/// }
/// ```
public final class ProvisionerClient: Sendable {
    public let configuration: ClientConfiguration
    private let sslContext: NIOSSLContext
    private let group: any EventLoopGroup

    public init(_ configuration: ClientConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton)
        throws
    {
        guard !configuration.servers.isEmpty else { throw ClientError.configuration("no server given") }
        self.configuration = configuration
        self.group = group
        do {
            self.sslContext = try NIOSSLContext(configuration: try configuration.tls.makeConfiguration())
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.configuration("TLS setup failed: \(error)")
        }
    }

    // MARK: Buffered requests

    /// Sends a request and buffers the answer (at most `maxBufferedBodyBytes`). Any status is
    /// returned; `json` and `checked` turn non-2xx answers into `ClientError.status`.
    public func send(_ request: ClientRequest) async throws -> ClientResponse {
        let limit = configuration.maxBufferedBodyBytes
        return try await withFailover(request) { connection throws in
            try await connection.execute(request) { head, body throws in
                ClientResponse(head: head, body: try await body.collect(upTo: limit))
            }
        }
    }

    /// Sends `body` as JSON (or nothing) and decodes a JSON answer; a non-2xx answer throws
    /// `ClientError.status` with the server's error body.
    public func json<Response: Decodable>(
        _ method: HTTPMethod, _ path: String, body: (some Encodable)? = Optional<Empty>.none,
        as type: Response.Type = Response.self
    ) async throws -> Response {
        let request = try ClientRequest.json(method, path, body: body)
        return try ClientResponse.decodeJSON(Response.self, try await send(request), request: request)
    }

    // MARK: Streaming

    /// Sends a request and hands the answer's head and streamed body to `handle`. Failover to the
    /// next server only happens before `handle` is called; a non-2xx answer throws
    /// `ClientError.status` before `handle`. For resumable downloads, `ClientRequest.get(_:range:)`
    /// asks for a byte range (the answer is then 206 with `Content-Range`).
    public func stream<Result: Sendable>(
        _ request: ClientRequest,
        _ handle: (ClientResponseHead, ResponseBody) async throws -> Result
    ) async throws -> Result {
        try await withFailover(request) { connection in
            try await connection.execute(request) { head, body in
                try await Self.check(head, body, of: request)
                return try await handle(head, body)
            }
        }
    }

    /// Throws for an answer `stream` does not hand on: `ClientError.serverFailed` for a 5xx to an
    /// idempotent request (the next server may answer), `ClientError.status` for any other non-2xx.
    static func check(_ head: ClientResponseHead, _ body: ResponseBody, of request: ClientRequest) async throws {
        if head.status >= 500 && request.isIdempotent {
            let text = (try? await body.collect(upTo: 4096)).map { String(buffer: $0) } ?? ""
            throw ClientError.serverFailed(head.status, text)
        }
        if !(200..<300).contains(head.status) {
            let bytes = (try? await body.collect(upTo: 65536)) ?? ByteBuffer()
            throw ClientError.status(head.status, ClientResponse.errorBody(bytes), "\(request.method) \(request.path)")
        }
    }

    /// Runs `body` with one open connection to one server (picked at random, with failover when
    /// it cannot be reached), so that many requests share one TLS handshake. The connection is
    /// closed afterwards.
    public func withConnection<Result: Sendable>(
        _ body: (ClientConnection) async throws -> Result
    ) async throws -> Result {
        var failures: [String] = []
        var lastError: ClientError?
        for endpoint in configuration.servers.shuffled() {
            do {
                return try await ClientConnection.with(
                    endpoint, sslContext: sslContext, configuration: configuration, group: group, body)
            } catch let error as ClientError where error.isConnectionLevel {
                failures.append("\(endpoint): \(error)")
                lastError = error
            }
        }
        // With one server, its own error says it best.
        if failures.count == 1, let lastError { throw lastError }
        throw ClientError.allServersFailed("connect", failures)
    }

    /// Tries the servers in a random order until one gives an answer that is not a
    /// connection failure (or a 5xx to an idempotent request).
    private func withFailover<Result: Sendable>(
        _ request: ClientRequest, _ body: (ClientConnection) async throws -> Result
    ) async throws -> Result {
        var failures: [String] = []
        var lastError: ClientError?
        for endpoint in configuration.servers.shuffled() {
            do {
                let result = try await ClientConnection.with(
                    endpoint, sslContext: sslContext, configuration: configuration, group: group, body)
                if let response = result as? ClientResponse, response.status >= 500, request.isIdempotent,
                    configuration.servers.count > 1
                {
                    failures.append("\(endpoint): HTTP \(response.status)")
                    continue
                }
                return result
            } catch let error as ClientError where error.isConnectionLevel {
                failures.append("\(endpoint): \(error)")
                lastError = error
            }
        }
        // With one server, its own error says it best.
        if failures.count == 1, let lastError { throw lastError }
        throw ClientError.allServersFailed("\(request.method) \(request.path)", failures)
    }
}

/// Placeholder type for "no request body" in `ProvisionerClient.json`.
public struct Empty: Codable, Sendable {
    public init() {}
}
