import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes

/// How long a client may take to send a request, and how long it may leave a connection or a
/// response alone (docs/threat-model.md, "Limits"). The defaults hold for a node on a slow link
/// and close a slow-loris client within a minute.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// From the connection's start (the TLS handshake included) to a complete request head.
    public var header: Duration = .seconds(20)
    /// A kept-alive connection with no request: from the end of a response to the next complete head.
    public var idle: Duration = .seconds(60)
    /// The first part of a request body's allowance ...
    public var body: Duration = .seconds(20)
    /// ... which grows by one second for every `bodyMinRate` bytes received (Apache's mod_reqtimeout
    /// rule): a large upload at a fair rate is never cut, a body dribbled a byte at a time is.
    public var bodyMinRate = 8192
    /// A response the client stops reading (the socket stays unwritable) for this long.
    public var write: Duration = .seconds(60)

    public init() {}
}

/// The deadlines of one connection as a state machine: events in, the current deadline out.
/// Pure (time is passed in), so every rule is tested with tables; `RequestTimeoutHandler` carries
/// it out on a channel.
public struct RequestDeadlines: Sendable, Equatable {
    /// What the connection is waiting for, and so which rule its deadline comes from.
    public enum Waiting: String, Sendable, Equatable {
        /// The first request head (TLS handshake included): `header`.
        case firstHead = "request head"
        /// The next request head on a kept-alive connection: `idle`.
        case nextHead = "next request"
        /// The rest of a request body: `body`, extended by bytes received.
        case body = "request body"
        /// The server is answering; no client deadline.
        case server
    }

    public let timeouts: ConnectionTimeouts
    public private(set) var waiting: Waiting = .firstHead
    /// Requests whose head arrived and whose response has not ended (pipelining may make it 2+).
    public private(set) var inFlight = 0
    private var since: Duration
    private var bodyBytes = 0
    /// While the socket cannot take more of a response: since when.
    private var unwritableSince: Duration?

    /// `now` is any monotonic reading (the handler uses NIODeadline's nanoseconds).
    public init(timeouts: ConnectionTimeouts, now: Duration) {
        self.timeouts = timeouts
        self.since = now
    }

    /// Which timeout a deadline comes from (the names of `ConnectionTimeouts`' fields and of the config).
    public enum Rule: String, Sendable, Equatable {
        case header, idle, body, write
    }

    /// When the connection is closed if nothing else happens, and the rule that says so.
    public var deadline: (at: Duration, rule: Rule)? {
        var result: (at: Duration, rule: Rule)?
        switch waiting {
        case .firstHead: result = (since + timeouts.header, .header)
        case .nextHead: result = (since + timeouts.idle, .idle)
        case .body:
            let extra = Duration.seconds(bodyBytes / max(1, timeouts.bodyMinRate))
            result = (since + timeouts.body + extra, .body)
        case .server: result = nil
        }
        if let stalled = unwritableSince {
            let writeDeadline = stalled + timeouts.write
            if let reading = result, reading.at <= writeDeadline { return reading }
            result = (writeDeadline, .write)
        }
        return result
    }

    public mutating func headReceived(now: Duration) {
        inFlight += 1
        waiting = .body
        since = now
        bodyBytes = 0
    }

    public mutating func bodyReceived(bytes: Int, now: Duration) {
        bodyBytes += bytes
    }

    public mutating func requestEnded(now: Duration) {
        waiting = .server
    }

    public mutating func responseEnded(now: Duration) {
        inFlight = max(0, inFlight - 1)
        // A pipelined request that is still being read keeps its own deadline.
        if inFlight == 0 && waiting == .server {
            waiting = .nextHead
            since = now
        }
    }

    public mutating func writabilityChanged(writable: Bool, now: Duration) {
        if writable {
            unwritableSince = nil
        } else if unwritableSince == nil {
            unwritableSince = now
        }
    }

    /// True when the deadline has passed at `now`.
    public func expired(now: Duration) -> Bool {
        guard let deadline else { return false }
        return now >= deadline.at
    }
}

/// Closes a connection whose client is too slow by `RequestDeadlines`' rules. Sits after the HTTP
/// codec, so it sees request and response parts; it is added when the child channel is set up,
/// before the TLS handshake, so a stalled handshake runs into the header deadline too.
final class RequestTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var deadlines: RequestDeadlines
    private var timer: Scheduled<Void>?
    private var scheduledAt: Duration?
    private let logger: Logger
    private let listener: String

    init(timeouts: ConnectionTimeouts, listener: String, logger: Logger) {
        self.deadlines = RequestDeadlines(timeouts: timeouts, now: Self.now())
        self.logger = logger
        self.listener = listener
    }

    static func now() -> Duration { .nanoseconds(NIODeadline.now().uptimeNanoseconds) }

    func handlerAdded(context: ChannelHandlerContext) { reschedule(context: context) }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadlines.headReceived(now: Self.now())
        case .body(let buffer): deadlines.bodyReceived(bytes: buffer.readableBytes, now: Self.now())
        case .end: deadlines.requestEnded(now: Self.now())
        }
        reschedule(context: context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            deadlines.responseEnded(now: Self.now())
            reschedule(context: context)
        }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        deadlines.writabilityChanged(writable: context.channel.isWritable, now: Self.now())
        reschedule(context: context)
        context.fireChannelWritabilityChanged()
    }

    /// One timer for the current deadline; a later deadline moves it, none cancels it.
    private func reschedule(context: ChannelHandlerContext) {
        let deadline = deadlines.deadline
        guard deadline?.at != scheduledAt else { return }
        timer?.cancel()
        timer = nil
        scheduledAt = deadline?.at
        guard let deadline else { return }
        let now = Self.now()
        let delay = deadline.at > now ? deadline.at - now : .zero
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(delay.nanoseconds))) { [self] in
            self.fire(context: loopBound.value)
        }
    }

    private func fire(context: ChannelHandlerContext) {
        scheduledAt = nil
        timer = nil
        let now = Self.now()
        guard deadlines.expired(now: now), let deadline = deadlines.deadline else {
            reschedule(context: context)
            return
        }
        let remote = context.channel.remoteAddress?.ipAddress ?? "?"
        logger.notice(
            "closing connection from \(remote) on the \(listener) listener: \(deadline.rule) timeout (waited for the \(deadlines.waiting.rawValue))"
        )
        context.close(promise: nil)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
