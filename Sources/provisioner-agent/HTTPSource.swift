import Dispatch
import NIOCore
import NIOHTTP1
import ProvisionerClient
import ProvisionerImage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where the agent finds its mTLS credentials (docs/certificates.md).
struct ImageCredentials {
    var ca = "/etc/provisioner/ca.pem"
    var certificate = "/etc/provisioner/client.pem"
    var key = "/etc/provisioner/client-key.pem"
}

/// An image source over HTTPS for one server or mirror: `HTTPObjectSource` (the routes of
/// docs/image-format.md) over `ProvisionerClient` (mutual TLS). Several URLs become a
/// `MirrorSource` of these (random pick, failover, damaged objects fetched from the next one).
func makeHTTPSource(url: String, credentials: ImageCredentials) throws -> any ObjectSource {
    guard url.hasPrefix("https://") else {
        throw AgentFailure(message: "\(url): only https:// sources are accepted (mutual TLS)", status: .badInput)
    }
    do {
        let endpoint = try Endpoint(parsing: url)
        let tls = try ClientTLS(
            caFile: credentials.ca, certificateFile: credentials.certificate, keyFile: credentials.key)
        let client = try ProvisionerClient(ClientConfiguration(servers: [endpoint], tls: tls))
        return HTTPObjectSource(transport: ClientTransport(client: client, label: url))
    } catch let error as ClientError {
        throw AgentFailure(message: "\(url): \(error)", status: .badInput)
    }
}

/// `HTTPTransport` over the async `ProvisionerClient`: each request runs as a task; the sync
/// engine's worker threads wait for the head and then pull the body through a bounded queue,
/// so a pack of gigabytes streams with the disk setting the pace. Requests share kept-alive
/// connections (`ClientPool`): through a mirror, which serves one object per GET, a sync makes
/// 16 TLS handshakes instead of one per object.
final class ClientTransport: HTTPTransport, @unchecked Sendable {
    let pool: ClientPool
    let label: String

    init(client: ProvisionerClient, label: String) {
        self.pool = ClientPool(client, width: 16)
        self.label = label
    }

    func request(method: String, path: String, contentType: String?, body: [UInt8]?) throws -> HTTPReply {
        var request = ClientRequest(method: method == "POST" ? .POST : .GET, path: path, body: body)
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        // The image routes only read (a POST asks for a pack): asking again on a new connection is safe.
        request.safeToRetry = true
        let pipe = BodyPipe(capacity: 64)
        let pool = self.pool
        Task {
            do {
                try await pool.stream(request) { head, body in
                    var headers: [String: String] = [:]
                    for (name, value) in head.headers { headers[name.lowercased()] = value }
                    pipe.start(status: head.status, headers: headers)
                    while let chunk = try await body.next() {
                        // The reader dropped the body (it had read what it needed): stop reading.
                        guard pipe.put(Array(chunk.readableBytesView)) else { break }
                    }
                    pipe.finish(nil)
                }
            } catch let error as ClientError {
                if let status = error.httpStatus {
                    pipe.start(status: status, headers: [:])  // the engine reads non-2xx statuses itself
                    _ = pipe.put(Array("\(error)".utf8))
                    pipe.finish(nil)
                } else {
                    pipe.finish(SourceError(source: label, what: "\(method) \(path)", cause: "\(error)"))
                }
            } catch {
                pipe.finish(SourceError(source: label, what: "\(method) \(path)", cause: "\(error)"))
            }
        }
        let (status, headers) = try pipe.waitForHead()
        return HTTPReply(status: status, headers: headers, body: PipeBody(reader: PipeReader(pipe: pipe)))
    }
}

/// A bounded queue between the client's task (producer) and a worker thread (consumer): the
/// state under a `Mutex`, the waiting on semaphores (free places, queued chunks, the head).
///
/// Every semaphore starts at 0 (the free places are signalled in): libdispatch refuses to free a
/// semaphore whose count is below the one it was made with, which is where a reply dropped with
/// chunks still queued (a mirror's 405 to a pack, read no further) would leave `places`.
final class BodyPipe: Sendable {
    private struct State {
        var head: (Int, [String: String])?
        var chunks: [[UInt8]] = []
        var failure: (any Error & Sendable)?
        /// The reader dropped the body: chunks are thrown away and the producer told to stop.
        var abandoned = false
    }
    private let state = Mutex(State())
    private let headKnown = DispatchSemaphore(value: 0)
    /// Free places in the queue.
    private let places = DispatchSemaphore(value: 0)
    private let capacity: Int
    /// Chunks queued, plus one once the producer finished.
    private let queued = DispatchSemaphore(value: 0)

    init(capacity: Int) {
        self.capacity = capacity
        for _ in 0..<capacity { places.signal() }
    }

    /// The reader is gone: wake a producer waiting for a place, and let it stop.
    func abandon() {
        let wasAbandoned = state.withLock { s -> Bool in
            defer {
                s.abandoned = true
                s.chunks = []
            }
            return s.abandoned
        }
        if !wasAbandoned { for _ in 0..<capacity { places.signal() } }
    }

    func start(status: Int, headers: [String: String]) {
        state.withLock { $0.head = (status, headers) }
        headKnown.signal()
    }

    /// Queues a chunk, waiting for a free place; false when the reader is gone (stop producing).
    func put(_ chunk: [UInt8]) -> Bool {
        if state.withLock({ $0.abandoned }) { return false }
        places.wait()
        let kept = state.withLock { s -> Bool in
            if s.abandoned { return false }
            s.chunks.append(chunk)
            return true
        }
        if kept { queued.signal() }
        return kept
    }

    /// The producer is done; `error` is what the consumer gets after the last chunk.
    func finish(_ error: (any Error & Sendable)?) {
        state.withLock { $0.failure = error }
        headKnown.signal()
        queued.signal()
    }

    func waitForHead() throws -> (Int, [String: String]) {
        headKnown.wait()
        headKnown.signal()
        let (head, failure) = state.withLock { ($0.head, $0.failure) }
        if let head { return head }
        throw failure ?? SourceError(source: "server", what: "a response", cause: "closed before an answer")
    }

    func take() throws -> [UInt8]? {
        queued.wait()
        let (chunk, failure) = state.withLock { s -> ([UInt8]?, (any Error & Sendable)?) in
            s.chunks.isEmpty ? (nil, s.failure) : (s.chunks.removeFirst(), nil)
        }
        if let chunk {
            places.signal()
            return chunk
        }
        queued.signal()  // finished: every later take ends at once too
        if let failure { throw failure }
        return nil
    }
}

/// The reading side of a `BodyPipe`; when the body is dropped, the pipe is abandoned.
final class PipeReader: Sendable {
    let pipe: BodyPipe
    init(pipe: BodyPipe) { self.pipe = pipe }
    deinit { pipe.abandon() }
}

struct PipeBody: HTTPBodyStream {
    let reader: PipeReader
    mutating func next() throws -> [UInt8]? { try reader.pipe.take() }
}
