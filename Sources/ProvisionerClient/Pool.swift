import NIOCore
import NIOHTTP1
import Synchronization

/// Requests on connections kept open between them (HTTP/1.1 keep-alive), at most `width` at once.
///
/// `ProvisionerClient.stream` opens a connection per request: right for a boot's few calls, and
/// wrong for a sync that asks a mirror for 12,000 objects one GET each, where every request would
/// pay a TCP and a mutual-TLS handshake (under QEMU's TCG, tens of milliseconds of the node's CPU
/// each). Here each connection is a lane: a task that opens it (`ProvisionerClient.withConnection`,
/// so failover between servers is the client's), runs queued requests one after the other, and
/// closes it when it has been idle for `idle`, when the server did not keep it alive, or when a
/// request broke it (an unread body, an error).
///
/// A server may close a kept-alive connection while it waits (its idle timeout). A request that
/// finds its reused connection closed before any answer is sent once more on a new connection,
/// when `ClientRequest.safeToRetry` says repeating it cannot change anything.
///
/// ```swift
/// let pool = ClientPool(client, width: 16)
/// let object = try await pool.stream(.get("/v1/objects/\(hex)")) { head, body in
///     try await body.collect(upTo: 1 << 30)
/// }
/// ```
public final class ClientPool: Sendable {
    public let client: ProvisionerClient
    /// The most connections open at once (requests beyond them wait for a free one).
    public let width: Int
    /// How long a connection with nothing to do stays open.
    public let idle: Duration

    private let state = Mutex(State())

    private struct State {
        var lanes = 0
        var opened = 0
        var peak = 0
        var queue: [Job] = []
        /// Lanes with an open connection waiting for a request, the most recently idle last.
        var waiting: [Waiter] = []
        var sweeping = false
        var closed = false
    }

    private struct Waiter {
        let since: ContinuousClock.Instant
        let continuation: CheckedContinuation<Job?, Never>
    }

    /// One request and where its answer goes.
    private struct Job: Sendable {
        /// Runs it on `connection` (`reused`: that connection carried a request before).
        let run: @Sendable (ClientConnection, _ reused: Bool) async -> Outcome
        /// No connection could be made for it (or the pool closed).
        let fail: @Sendable (any Error) -> Void
    }

    private enum Outcome {
        /// Answered (or failed for good); whether the connection may carry the next request.
        case done(keepOpen: Bool)
        /// The reused connection was closed by the server before any answer: run it again on a new one.
        case stale
    }

    public init(_ client: ProvisionerClient, width: Int = 16, idle: Duration = .seconds(5)) {
        self.client = client
        self.width = max(1, width)
        self.idle = idle
    }

    /// `ProvisionerClient.stream` on a kept-alive connection: a 5xx to an idempotent request throws
    /// `ClientError.serverFailed`, any other non-2xx `ClientError.status`, before `handle` is called.
    public func stream<Result: Sendable>(
        _ request: ClientRequest,
        _ handle: @escaping @Sendable (ClientResponseHead, ResponseBody) async throws -> Result
    ) async throws -> Result {
        try await run(request, checked: true, handle)
    }

    /// `ProvisionerClient.send` on a kept-alive connection: the answer buffered (at most the
    /// client's `maxBufferedBodyBytes`), whatever its status.
    public func send(_ request: ClientRequest) async throws -> ClientResponse {
        let limit = client.configuration.maxBufferedBodyBytes
        return try await run(request, checked: false) { head, body in
            ClientResponse(head: head, body: try await body.collect(upTo: limit))
        }
    }

    /// `ProvisionerClient.json` on a kept-alive connection: `body` as JSON (or nothing), a JSON
    /// answer decoded; a non-2xx answer throws `ClientError.status` with the server's error body.
    public func json<Response: Decodable>(
        _ method: HTTPMethod, _ path: String, body: (some Encodable)? = Optional<Empty>.none,
        as type: Response.Type = Response.self
    ) async throws -> Response {
        let request = try ClientRequest.json(method, path, body: body)
        return try ClientResponse.decodeJSON(Response.self, try await send(request), request: request)
    }

    /// Queues `request` for the next free connection; `checked`: non-2xx answers throw before `handle`.
    private func run<Result: Sendable>(
        _ request: ClientRequest, checked: Bool,
        _ handle: @escaping @Sendable (ClientResponseHead, ResponseBody) async throws -> Result
    ) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            let job = Job(
                run: { connection, reused in
                    var answered = false
                    do {
                        let result = try await connection.execute(request) { head, body in
                            answered = true
                            if checked { try await ProvisionerClient.check(head, body, of: request) }
                            return try await handle(head, body)
                        }
                        continuation.resume(returning: result)
                        return .done(keepOpen: connection.isReusable)
                    } catch let error as ClientError
                        where reused && !answered && request.safeToRetry && error.isStaleConnection
                    {
                        return .stale
                    } catch {
                        continuation.resume(throwing: error)
                        return .done(keepOpen: false)
                    }
                },
                fail: { continuation.resume(throwing: $0) })
            submit(job)
        }
    }

    /// Opens a connection now, ahead of the first request, so that its TCP and TLS handshakes
    /// overlap whatever the caller does meanwhile; it then waits like any idle one. Nothing when
    /// the pool is at its width or closed. A failure to connect is kept for nobody: the next
    /// request connects again and gets its own error.
    public func prewarm() {
        let start = state.withLock { state -> Bool in
            guard !state.closed, state.lanes < width else { return false }
            state.lanes += 1
            return true
        }
        if start { Task { await self.lane(starting: nil) } }
    }

    /// Closes idle connections now and refuses new requests; requests running finish.
    public func close() {
        let (waiters, queued) = state.withLock { state in
            state.closed = true
            defer {
                state.waiting = []
                state.queue = []
            }
            return (state.waiting, state.queue)
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
        for job in queued { job.fail(ClientError.configuration("the connection pool was closed")) }
    }

    /// Connections opened so far, and the most open at once: what the requests cost in handshakes.
    public var connectionsOpened: Int { state.withLock { $0.opened } }
    public var peakConnections: Int { state.withLock { $0.peak } }

    // MARK: Lanes

    private enum Placement {
        case handed(CheckedContinuation<Job?, Never>)
        case newLane
        case queued
        case refused
    }

    private func submit(_ job: Job) {
        let placement = state.withLock { state -> Placement in
            if state.closed { return .refused }
            // The most recently idle connection: the likeliest to be still open at the server.
            if let waiter = state.waiting.popLast() { return .handed(waiter.continuation) }
            if state.lanes < width {
                state.lanes += 1
                return .newLane
            }
            state.queue.append(job)
            return .queued
        }
        switch placement {
        case .handed(let lane): lane.resume(returning: job)
        case .newLane: Task { await self.lane(starting: job) }
        case .queued: break
        case .refused: job.fail(ClientError.configuration("the connection pool was closed"))
        }
    }

    /// One connection after another, each carrying requests until it closes; ends when no
    /// request is left for it. Without a first request (`prewarm`), the first connection is opened
    /// and then waits for one.
    private func lane(starting first: Job?) async {
        var next: Job? = first
        var warming = first == nil
        while warming || next != nil {
            let warm = warming
            warming = false
            var current: Job? = next
            next = nil
            do {
                try await client.withConnection { connection in
                    state.withLock { state in
                        state.opened += 1
                        state.peak = max(state.peak, state.lanes)
                    }
                    // A warmed connection may have waited: its first request is treated as reused
                    // (asked again on a new connection if the server had closed it).
                    var reused = warm
                    if warm { current = await waitForJob() }
                    while let now = current {
                        current = nil
                        switch await now.run(connection, reused) {
                        case .stale:
                            next = now
                            return
                        case .done(let keepOpen):
                            guard keepOpen else { return }
                        }
                        reused = true
                        current = await waitForJob()
                    }
                }
            } catch {
                // No connection could be made: the request it was opened for fails with the reason
                // (for a warmed connection, the first request that waited for it).
                let waited = warm ? state.withLock { $0.queue.isEmpty ? nil : $0.queue.removeFirst() } : nil
                (current ?? waited)?.fail(error)
            }
            if next == nil { next = takeQueuedOrRetire() }
        }
    }

    /// The next queued request, or nil (and this lane no longer counted) when there is none.
    private func takeQueuedOrRetire() -> Job? {
        state.withLock { state in
            if !state.closed, !state.queue.isEmpty { return state.queue.removeFirst() }
            state.lanes -= 1
            return nil
        }
    }

    /// Waits with the connection open for the next request: nil after `idle` or when the pool closes.
    private func waitForJob() async -> Job? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Job?, Never>) in
            let (immediate, startSweeper) = state.withLock { state -> (Job??, Bool) in
                if state.closed { return (.some(nil), false) }
                if !state.queue.isEmpty { return (.some(state.queue.removeFirst()), false) }
                state.waiting.append(Waiter(since: .now, continuation: continuation))
                defer { state.sweeping = true }
                return (nil, !state.sweeping)
            }
            if let immediate { continuation.resume(returning: immediate) }
            if startSweeper { Task { await self.sweep() } }
        }
    }

    /// Ends the waits of connections idle longer than `idle`; runs while any connection waits.
    private func sweep() async {
        while true {
            try? await Task.sleep(for: idle / 4)
            let (expired, done) = state.withLock { state -> ([Waiter], Bool) in
                let cutoff = ContinuousClock.now - idle
                let expired = state.waiting.filter { $0.since <= cutoff }
                state.waiting.removeAll { $0.since <= cutoff }
                if state.waiting.isEmpty { state.sweeping = false }
                return (expired, state.waiting.isEmpty)
            }
            for waiter in expired { waiter.continuation.resume(returning: nil) }
            if done { return }
        }
    }
}
