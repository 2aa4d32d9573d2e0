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
/// so a pack of gigabytes streams with the disk setting the pace.
final class ClientTransport: HTTPTransport, @unchecked Sendable {
    let client: ProvisionerClient
    let label: String

    init(client: ProvisionerClient, label: String) {
        self.client = client
        self.label = label
    }

    func request(method: String, path: String, contentType: String?, body: [UInt8]?) throws -> HTTPReply {
        var request = ClientRequest(method: method == "POST" ? .POST : .GET, path: path, body: body)
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        let pipe = BodyPipe(capacity: 64)
        let client = self.client
        Task {
            do {
                try await client.stream(request) { head, body in
                    var headers: [String: String] = [:]
                    for (name, value) in head.headers { headers[name.lowercased()] = value }
                    pipe.start(status: head.status, headers: headers)
                    while let chunk = try await body.next() {
                        pipe.put(Array(chunk.readableBytesView))
                    }
                    pipe.finish(nil)
                }
            } catch let error as ClientError {
                if let status = error.httpStatus {
                    pipe.start(status: status, headers: [:])  // the engine reads non-2xx statuses itself
                    pipe.put(Array("\(error)".utf8))
                    pipe.finish(nil)
                } else {
                    pipe.finish(SourceError(source: label, what: "\(method) \(path)", cause: "\(error)"))
                }
            } catch {
                pipe.finish(SourceError(source: label, what: "\(method) \(path)", cause: "\(error)"))
            }
        }
        let (status, headers) = try pipe.waitForHead()
        return HTTPReply(status: status, headers: headers, body: PipeBody(pipe: pipe))
    }
}

/// A bounded queue between the client's task (producer) and a worker thread (consumer).
final class BodyPipe: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var changed = pthread_cond_t()
    private var head: (Int, [String: String])?
    private var chunks: [[UInt8]] = []
    private var done = false
    private var failure: (any Error)?
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&changed, nil)
    }

    deinit {
        pthread_cond_destroy(&changed)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer {
            pthread_cond_broadcast(&changed)
            pthread_mutex_unlock(&mutex)
        }
        return body()
    }

    func start(status: Int, headers: [String: String]) { locked { head = (status, headers) } }

    func put(_ chunk: [UInt8]) {
        pthread_mutex_lock(&mutex)
        while chunks.count >= capacity && !done { pthread_cond_wait(&changed, &mutex) }
        chunks.append(chunk)
        pthread_cond_broadcast(&changed)
        pthread_mutex_unlock(&mutex)
    }

    func finish(_ error: (any Error)?) {
        locked {
            done = true
            failure = error
        }
    }

    func waitForHead() throws -> (Int, [String: String]) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while head == nil && !done { pthread_cond_wait(&changed, &mutex) }
        if let head { return head }
        throw failure ?? SourceError(source: "server", what: "a response", cause: "closed before an answer")
    }

    func take() throws -> [UInt8]? {
        pthread_mutex_lock(&mutex)
        defer {
            pthread_cond_broadcast(&changed)
            pthread_mutex_unlock(&mutex)
        }
        while chunks.isEmpty && !done { pthread_cond_wait(&changed, &mutex) }
        if !chunks.isEmpty { return chunks.removeFirst() }
        if let failure { throw failure }
        return nil
    }
}

struct PipeBody: HTTPBodyStream {
    let pipe: BodyPipe
    mutating func next() throws -> [UInt8]? { try pipe.take() }
}
