import NIOCore
import ProvisionerAPI
import ProvisionerBoot
import ProvisionerClient
import ProvisionerSystem

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// The agent's side of a boot session on the server: open, poll, events, finish, downloads.
///
/// Every request goes on one kept-alive connection (`ClientPool`): a boot makes some twenty
/// requests (the session, an event batch after each step, identity, boot file ETags), and under
/// QEMU's TCG each new mutual-TLS handshake costs the node tens of milliseconds of CPU.
///
/// Events are also the console's lines, printed at once and sent after each step (`flush`).
/// Sending them is best effort: a server that stops
/// answering in the middle of a boot must not fail the boot, so undelivered events wait in a
/// queue and go with the next batch.
final class BootSession: @unchecked Sendable {
    /// The bootstrap certificate's connection until the node enrolls, then the node's own.
    private var client: ClientPool
    let console: Console
    let endpoints: [Endpoint]
    private(set) var id: String?
    private var pending: [AgentEvent] = []
    /// `provisioner.trace`: every request on the console with its time (`trace: POST ... in 12 ms`).
    var trace = false

    /// `blocking`, timed on the console when tracing.
    private func request<T: Sendable>(_ what: String, _ work: @escaping @Sendable () async throws -> T) throws -> T {
        guard trace else { return try blocking(work) }
        let started = ContinuousClock.now
        func ms() -> Int {
            let elapsed = ContinuousClock.now - started
            return Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        }
        do {
            let result = try blocking(work)
            console.say("trace: \(what) answered in \(ms()) ms")
            return result
        } catch {
            console.say("trace: \(what) failed in \(ms()) ms: \(error)")
            throw error
        }
    }

    init(servers: [String], credentials: ImageCredentials, console: Console) throws {
        self.console = console
        var endpoints: [Endpoint] = []
        for url in servers {
            do { endpoints.append(try Endpoint(parsing: url)) } catch {
                throw BootFailure(.register, .configuration, "server \(url): \(error)")
            }
        }
        self.endpoints = endpoints
        do {
            let tls = try ClientTLS(
                caFile: credentials.ca, certificateFile: credentials.certificate, keyFile: credentials.key)
            client = try Self.client(endpoints, tls)
        } catch {
            throw BootFailure(.register, .configuration, "the TLS credentials in /etc/provisioner: \(error)")
        }
    }

    /// Width 1: the boot asks one thing at a time. A connection idle for 20 s is closed (the
    /// server's own limit is 60 s), so a kept one is rarely found closed by the server.
    static func client(_ endpoints: [Endpoint], _ tls: ClientTLS) throws -> ClientPool {
        let client = try ProvisionerClient(
            ClientConfiguration(
                servers: endpoints, tls: tls, connectTimeout: .seconds(5), readTimeout: .seconds(60),
                userAgent: "provisioner-agent"))
        return ClientPool(client, width: 1, idle: .seconds(20))
    }

    /// `POST sessions/{id}/enroll` with the bootstrap certificate.
    func enroll(csr: String) throws -> EnrollResult {
        guard let id else { throw BootFailure(.register, .transient, "no session") }
        let client = self.client
        return try request("POST sessions/\(id)/enroll") {
            try await client.json(.POST, "\(APIVersion.prefix)/sessions/\(id)/enroll", body: EnrollRequest(csr: csr))
        }
    }

    /// From now on, every request goes with the node's own certificate.
    func adopt(tls: ClientTLS) throws {
        let old = client
        client = try Self.client(endpoints, tls)
        client.prewarm()
        old.close()
    }

    /// Opens the connection ahead of the first request (`ClientPool.prewarm`).
    func connect() { client.prewarm() }

    /// Closes the kept connection (the boot is over).
    func close() { client.close() }

    func open(_ request: SessionOpenRequest) throws -> SessionResponse {
        let client = self.client
        let response: SessionResponse = try self.request("POST sessions") {
            try await client.json(.POST, "\(APIVersion.prefix)/sessions", body: request)
        }
        id = response.sessionID
        return response
    }

    func poll() throws -> SessionResponse {
        guard let id else { throw BootFailure(.register, .transient, "no session") }
        let client = self.client
        return try request("GET sessions/\(id)") {
            try await client.json(.GET, "\(APIVersion.prefix)/sessions/\(id)", body: Optional<Empty>.none)
        }
    }

    /// `GET sessions/{id}/multicast`: may this image come by multicast (docs/multicast.md, M1)?
    func multicast(image: String, version: String) throws -> MulticastAnswer {
        guard let id else { throw BootFailure(.image, .transient, "no session") }
        let client = self.client
        return try request("GET sessions/\(id)/multicast") {
            try await client.json(
                .GET, "\(APIVersion.prefix)/sessions/\(id)/multicast?image=\(image)&version=\(version)",
                body: Optional<Empty>.none)
        }
    }

    /// Prints the event and sends it (with any earlier undelivered ones).
    func event(
        _ phase: String, _ message: String, step: String? = nil, level: EventLevel = .info, progress: Double? = nil,
        error: String? = nil, seconds: Double? = nil, quiet: Bool = false
    ) {
        if !quiet {
            let prefix = level == .error ? "ERROR " : level == .warning ? "warning: " : ""
            console.say("\(phase): \(prefix)\(message)" + (error.map { "\n  \($0)" } ?? ""))
        }
        pending.append(
            AgentEvent(
                phase: phase, step: step, level: level, message: message, progress: progress, error: error,
                seconds: seconds))
        // Sent in batches: the boot flushes after each step (one request, not one per line).
        if pending.count >= 100 { flush() }
    }

    /// Sends the queued events; keeps them when the server does not take them.
    func flush() {
        guard let id, !pending.isEmpty else { return }
        let batch = EventBatch(events: Array(pending.prefix(1000)))
        let client = self.client
        do {
            let _: EventsAccepted = try request("POST sessions/\(id)/events (\(batch.events.count))") {
                try await client.json(.POST, "\(APIVersion.prefix)/sessions/\(id)/events", body: batch)
            }
            pending.removeFirst(batch.events.count)
        } catch {
            if pending.count > 5000 { pending.removeFirst(pending.count - 5000) }
        }
    }

    func finish(succeeded: Bool, message: String) {
        guard let id else { return }
        flush()
        let client = self.client
        let body = SessionFinish(succeeded: succeeded, message: message)
        do {
            let _: SessionSummary = try request("POST sessions/\(id)/finish") {
                try await client.json(.POST, "\(APIVersion.prefix)/sessions/\(id)/finish", body: body)
            }
        } catch {
            console.say("could not report the end of the session to the server: \(error)")
        }
        close()
    }

    /// The ETag of a file on the server (`HEAD`), nil when the server does not have it.
    func etag(_ path: String) throws -> String? {
        let client = self.client
        let response = try request("HEAD \(path)") { try await client.send(ClientRequest(method: .HEAD, path: path)) }
        if response.status == 404 { return nil }
        guard (200..<300).contains(response.status) else {
            throw BootFailure(.bootloader, .transient, "HEAD \(path): HTTP \(response.status)")
        }
        return response.head.etag
    }

    /// Downloads a file into `path` (temporary name, fsync, rename); returns its ETag.
    func download(_ remote: String, to path: String) throws -> String? {
        let temporary = path + ".provisioner-new"
        let file: OwnedDescriptor
        do {
            file = try OwnedDescriptor(
                opening: temporary, flags: O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o644)
        } catch {
            throw BootFailure(.bootloader, .transient, "\(error)")
        }
        // The stream's task writes through the raw number; `file` owns it and closes it below.
        let fd = file.rawValue
        let client = self.client
        let result: Result<String?, any Error>
        do {
            let etag: String? = try request("GET \(remote)") {
                try await client.stream(.get(remote)) { head, body in
                    while let chunk = try await body.next() {
                        var offset = 0
                        let bytes = chunk.readableBytesView
                        try bytes.withContiguousStorageIfAvailable { raw in
                            while offset < raw.count {
                                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                                guard n > 0 else {
                                    throw BootFailure(
                                        .bootloader, .transient,
                                        "writing \(temporary): \(String(cString: strerror(errno)))")
                                }
                                offset += n
                            }
                        }
                    }
                    return head.etag
                }
            }
            result = .success(etag)
        } catch {
            result = .failure(error)
        }
        var unsynced: SystemError?
        do { try file.sync() } catch { unsynced = error }
        file.close()
        switch (result, unsynced) {
        case (.failure(let error), _):
            unlink(temporary)
            throw BootFailure(.bootloader, .transient, "downloading \(remote): \(error)")
        case (.success, .some(let error)):
            unlink(temporary)
            throw BootFailure(.bootloader, .transient, "\(error)")
        case (.success(let etag), .none):
            guard rename(temporary, path) == 0 else {
                unlink(temporary)
                throw BootFailure(.bootloader, .transient, "storing \(path): \(String(cString: strerror(errno)))")
            }
            return etag
        }
    }
}
