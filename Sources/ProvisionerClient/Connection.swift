import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One open HTTPS connection (HTTP/1.1 keep-alive) to one server; requests on it run one after
/// the other. Get one from `ProvisionerClient.withConnection`.
public final class ClientConnection {
    public let endpoint: Endpoint
    private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private let configuration: ClientConfiguration
    /// False once a request left the connection in an unknown state (an unread body, an error).
    private var reusable = true

    /// Whether the connection may carry another request: the last answer was read to its end and
    /// the server keeps the connection alive.
    public var isReusable: Bool { reusable }

    private init(
        endpoint: Endpoint, inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>,
        outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>, configuration: ClientConfiguration
    ) {
        self.endpoint = endpoint
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.configuration = configuration
    }

    /// Connects (TCP, then TLS on the first write), runs `body`, closes.
    static func with<Result: Sendable>(
        _ endpoint: Endpoint, sslContext: NIOSSLContext, configuration: ClientConfiguration,
        group: any EventLoopGroup, _ body: (ClientConnection) async throws -> Result
    ) async throws -> Result {
        let serverHostname = endpoint.isIPAddress ? nil : endpoint.host
        let readTimeout = configuration.readTimeout
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.so_keepalive), value: 1)
                .connect(host: endpoint.host, port: endpoint.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // With no host name, NIOSSL checks the certificate against the peer's IP address.
                        let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                        try channel.pipeline.syncOperations.addHandler(tls)
                        try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: readTimeout))
                        try channel.pipeline.syncOperations.addHandler(ReadTimeoutHandler())
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ClientError.connect(endpoint.description, "\(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            let connection = ClientConnection(
                endpoint: endpoint, inbound: inbound, outbound: outbound, configuration: configuration)
            return try await body(connection)
        }
    }

    /// Sends one request and hands its answer to `handle`. The body is read to its end afterwards
    /// if `handle` left some of it, so the connection can carry the next request.
    public func execute<Result>(
        _ request: ClientRequest, _ handle: (ClientResponseHead, ResponseBody) async throws -> Result
    ) async throws -> Result {
        guard reusable else { throw ClientError.protocolError("connection to \(endpoint) is no longer usable") }
        reusable = false
        var head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.path)
        head.headers = request.headers
        head.headers.replaceOrAdd(name: "Host", value: endpoint.hostHeader)
        if !head.headers.contains(name: "User-Agent") {
            head.headers.add(name: "User-Agent", value: configuration.userAgent)
        }
        if let body = request.body {
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body.count))
        } else if request.method == .POST || request.method == .PUT {
            head.headers.replaceOrAdd(name: "Content-Length", value: "0")
        }
        let responseHead: HTTPResponseHead
        do {
            try await outbound.write(.head(head))
            if let body = request.body, !body.isEmpty {
                try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
            }
            try await outbound.write(.end(nil))
            responseHead = try await readHead()
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.classify(await cause(of: error), endpoint: endpoint.description, beforeAnswer: true)
        }
        let body = ResponseBody(connection: self, expectsBody: request.method != .HEAD)
        let result = try await handle(ClientResponseHead(responseHead), body)
        try await body.drain()
        let keepAlive = responseHead.isKeepAlive
        reusable = keepAlive
        return result
    }

    /// A JSON call on this connection (see `ProvisionerClient.json`); non-2xx throws `ClientError.status`.
    public func json<Response: Decodable>(
        _ method: HTTPMethod, _ path: String, body: (some Encodable)? = Optional<Empty>.none,
        as type: Response.Type = Response.self
    ) async throws -> Response {
        let request = try ClientRequest.json(method, path, body: body)
        let limit = configuration.maxBufferedBodyBytes
        let response = try await execute(request) { head, body in
            ClientResponse(head: head, body: try await body.collect(upTo: limit))
        }
        return try ClientResponse.decodeJSON(Response.self, response, request: request)
    }

    /// Why a write failed. A failed TLS handshake closes the channel, and a write queued behind it
    /// fails with a bare "I/O on closed channel"; the handshake error itself is waiting on the
    /// inbound side. That one says what is wrong (an untrusted certificate), so it is the one reported.
    private func cause(of writeError: any Error) async -> any Error {
        guard writeError is ChannelError else { return writeError }  // the channel is closed: the drain ends
        do {
            while try await inbound.next() != nil {}
        } catch {
            if error is NIOSSLError || error is BoringSSLError { return error }
        }
        return writeError
    }

    private func readHead() async throws -> HTTPResponseHead {
        while true {
            guard let part = try await inbound.next() else {
                throw ClientError.closedBeforeAnswer(endpoint.description, "end of stream")
            }
            switch part {
            case .head(let head) where head.status == .continue: continue
            case .head(let head): return head
            case .body, .end: throw ClientError.protocolError("\(endpoint) sent a body before a head")
            }
        }
    }

    /// The next part of the current answer's body, nil at its end.
    fileprivate func nextBodyPart() async throws -> ByteBuffer? {
        let part: HTTPClientResponsePart?
        do {
            part = try await inbound.next()
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.classify(error, endpoint: endpoint.description, beforeAnswer: false)
        }
        switch part {
        case .body(let buffer): return buffer
        case .end: return nil
        case .head: throw ClientError.protocolError("\(endpoint) sent a second head")
        case nil: throw ClientError.truncated(endpoint.description)
        }
    }
}

/// The streamed body of one answer. Read it with `next()` until nil, or `collect(upTo:)`.
public final class ResponseBody {
    private let connection: ClientConnection
    private var finished: Bool

    fileprivate init(connection: ClientConnection, expectsBody: Bool) {
        self.connection = connection
        self.finished = false
        _ = expectsBody
    }

    /// The next chunk, or nil when the body is complete. Throws `ClientError.truncated` when the
    /// connection closes early and `ClientError.timeout` when the server goes quiet.
    public func next() async throws -> ByteBuffer? {
        guard !finished else { return nil }
        if let chunk = try await connection.nextBodyPart() { return chunk }
        finished = true
        return nil
    }

    /// The whole body; `ClientError.bodyTooLarge` past `limit` bytes.
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        var all = ByteBuffer()
        while var chunk = try await next() {
            guard all.readableBytes + chunk.readableBytes <= limit else {
                throw ClientError.bodyTooLarge(limit)
            }
            all.writeBuffer(&chunk)
        }
        return all
    }

    fileprivate func drain() async throws {
        while try await next() != nil {}
    }
}

/// Turns a quiet connection into `ClientError.timeout` on the inbound stream.
private final class ReadTimeoutHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.fireErrorCaught(ClientError.timeout)
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
