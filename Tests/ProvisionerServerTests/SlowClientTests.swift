import Foundation
import NIOCore
import NIOPosix
import Testing

/// Slow and stalled clients against a live server (both listeners): each is closed by its rule
/// while a well-behaved client is still served. Before the timeouts, 20 slow TLS clients and 10
/// stalled handshakes were all still open after 12 s.
@Suite struct SlowClientTests {
    @Test func slowClientsAreClosedWhileOthersAreServed() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        _ = try TestPKI(writingTo: dir.path + "/tls")
        let server = try await LiveServer.start(stateDir: dir.path) {
            $0.timeouts.header = .seconds(1)
            $0.timeouts.idle = .seconds(2)
            $0.timeouts.body = .seconds(1)
            $0.timeouts.bodyMinRate = 1 << 20
        }
        do {
            try await withThrowingTaskGroup(of: (String, Duration).self) { group in
                // Connects and sends nothing: plain HTTP, and a TLS handshake that never starts.
                group.addTask { ("silent (boot)", try await Self.closedAfter(port: server.bootPort, dribble: [])) }
                group.addTask { ("stalled handshake (api)", try await Self.closedAfter(port: server.apiPort, dribble: [])) }
                // A request head a byte every 150 ms: never complete within the header timeout.
                let head = Array("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: yes\r\n\r\n".utf8)
                group.addTask { ("slow head", try await Self.closedAfter(port: server.bootPort, dribble: head, every: .milliseconds(150))) }
                // A body announced and never sent.
                let post = Array("POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nab".utf8)
                group.addTask { ("stalled body", try await Self.closedAfter(port: server.bootPort, dribble: [post])) }
                // A complete request, then nothing: kept alive until the idle timeout.
                let get = Array("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
                group.addTask { ("idle keep-alive", try await Self.closedAfter(port: server.bootPort, dribble: [get])) }

                // Meanwhile a normal client is answered.
                try await Task.sleep(for: .milliseconds(300))
                let ok = try await Self.request(port: server.bootPort, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                #expect(ok.hasPrefix("HTTP/1.1 200"), "\(ok)")

                for try await (name, after) in group {
                    // Closed by the server, well before the 15 s this test waits at most.
                    #expect(after < .seconds(10), "\(name) closed after \(after)")
                    #expect(after >= .milliseconds(900), "\(name) closed too early: \(after)")
                }
            }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// Connects, writes `dribble` (each element at once, or byte by byte every `every`), then
    /// reads until the server closes; returns how long the connection lived.
    static func closedAfter(port: Int, dribble: [[UInt8]], every: Duration? = nil) async throws -> Duration {
        try await closedAfter(port: port, pieces: every == nil ? dribble : dribble.flatMap { $0.map { [$0] } }, every: every)
    }

    static func closedAfter(port: Int, dribble bytes: [UInt8], every: Duration) async throws -> Duration {
        try await closedAfter(port: port, pieces: bytes.map { [$0] }, every: every)
    }

    static func closedAfter(port: Int, pieces: [[UInt8]], every: Duration?) async throws -> Duration {
        let start = ContinuousClock.now
        let channel = try await connect(port: port)
        return try await channel.executeThenClose { inbound, outbound in
            let writer = Task {
                for piece in pieces {
                    do { try await outbound.write(ByteBuffer(bytes: piece)) } catch { return }
                    if let every { try? await Task.sleep(for: every) }
                }
            }
            defer { writer.cancel() }
            let closed = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    do { for try await _ in inbound {} } catch {}
                    return true
                }
                // Fails the test instead of hanging when the server never closes.
                group.addTask {
                    try await Task.sleep(for: .seconds(15))
                    return false
                }
                let first = try await group.next() ?? false
                group.cancelAll()
                return first
            }
            #expect(closed, "the server did not close the connection within 15 s")
            return ContinuousClock.now - start
        }
    }

    static func request(port: Int, _ text: String) async throws -> String {
        let channel = try await connect(port: port)
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: text))
            var answer = ""
            for try await buffer in inbound { answer += String(buffer: buffer) }
            return answer
        }
    }

    static func connect(port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
    }
}
