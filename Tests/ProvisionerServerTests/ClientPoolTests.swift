import Foundation
import NIOCore
import ProvisionerClient
import Testing

@testable import ProvisionerServer

/// `ClientPool` against the real server over TLS: many requests on few kept-alive connections,
/// a connection the server closed while it waited, and a server that cannot be reached.
@Suite(.serialized) struct ClientPoolTests {
    static let content = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }

    @Test func manyRequestsShareAFewConnections() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        try dir.write("files/kernels/default", Self.content)
        let server = try await LiveServer.start(stateDir: dir.path)
        do {
            let pool = ClientPool(try pki.client(port: server.apiPort, credential: try pki.enrolled()), width: 4)
            // 64 ranged GETs, 16 at a time: every answer is its own range, and 4 handshakes paid for all.
            let starts = (0..<64).map { UInt64($0 * 16_000) }
            let answers = try await withThrowingTaskGroup(of: (UInt64, [UInt8]).self) { group in
                var answers: [UInt64: [UInt8]] = [:]
                for (i, start) in starts.enumerated() {
                    if i >= 16, let (s, bytes) = try await group.next() { answers[s] = bytes }
                    group.addTask {
                        try await pool.stream(.get("/files/kernels/default", from: start, through: start + 999)) {
                            head, body in
                            #expect(head.status == 206)
                            return (start, Array(try await body.collect(upTo: 4096).readableBytesView))
                        }
                    }
                }
                for try await (s, bytes) in group { answers[s] = bytes }
                return answers
            }
            for start in starts {
                #expect(answers[start] == Array(Self.content[Int(start)..<Int(start) + 1000]), "range from \(start)")
            }
            #expect(pool.connectionsOpened <= 4)
            #expect(pool.peakConnections <= 4)
            // An error answer is the request's error, and the connection goes on carrying requests.
            await #expect {
                try await pool.stream(.get("/files/kernels/missing")) { _, _ in }
            } throws: { ($0 as? ClientError)?.httpStatus == 404 }
            let whole = try await pool.stream(.get("/files/kernels/default")) { _, body in
                try await body.collect(upTo: 2 << 20).readableBytes
            }
            #expect(whole == Self.content.count)
            #expect(pool.connectionsOpened <= 4)
            pool.close()
            await #expect {
                try await pool.stream(.get("/files/kernels/default")) { _, _ in }
            } throws: { "\($0)".contains("pool was closed") }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// The server closes a kept-alive connection after its idle timeout (1 s here). The next
    /// GET finds it closed before any answer and goes again on a new connection; a request
    /// that is not safe to repeat fails instead.
    @Test func aConnectionTheServerClosedIsReplaced() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        try dir.write("files/kernels/default", Self.content)
        let server = try await LiveServer.start(stateDir: dir.path) { $0.timeouts.idle = .seconds(1) }
        do {
            let pool = ClientPool(
                try pki.client(port: server.apiPort, credential: try pki.enrolled()), width: 1, idle: .seconds(60))
            let ten = ClientRequest.get("/files/kernels/default", from: 0, through: 9)
            let first = try await pool.stream(ten) { _, body in try await body.collect(upTo: 100).readableBytes }
            #expect(first == 10)
            #expect(pool.connectionsOpened == 1)
            try await Task.sleep(for: .milliseconds(2500))
            let second = try await pool.stream(ten) { _, body in try await body.collect(upTo: 100).readableBytes }
            #expect(second == 10)
            #expect(pool.connectionsOpened == 2)

            try await Task.sleep(for: .milliseconds(2500))
            var unsafe = ten
            unsafe.safeToRetry = false
            await #expect {
                try await pool.stream(unsafe) { _, _ in }
            } throws: { error in
                guard case .closedBeforeAnswer = error as? ClientError else { return false }
                return true
            }
            // The pool is not stuck: the next request gets a new connection.
            let third = try await pool.stream(ten) { _, body in try await body.collect(upTo: 100).readableBytes }
            #expect(third == 10)
            #expect(pool.connectionsOpened == 3)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test func aServerThatCannotBeReachedFailsEachRequest() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        let port = try await ServerBootstrapHelper.bindAndClose()
        let pool = ClientPool(try pki.client(port: port, credential: pki.node), width: 2)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    await #expect {
                        try await pool.stream(.get("/files/kernels/default")) { _, _ in }
                    } throws: { error in
                        guard case .connect = error as? ClientError else { return false }
                        return true
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(pool.connectionsOpened == 0)
    }

    /// A warmed connection carries the first request (one handshake in all), buffered `send` and
    /// `json` answer any status on it, and a warmed connection the server closed meanwhile is
    /// replaced for a request that is safe to repeat.
    @Test func aWarmedConnectionCarriesTheFirstRequests() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        try dir.write("files/kernels/default", Self.content)
        // A connection with no request yet is closed after the header timeout, a kept one after idle.
        let server = try await LiveServer.start(stateDir: dir.path) {
            $0.timeouts.idle = .seconds(1)
            $0.timeouts.header = .seconds(1)
        }
        do {
            let pool = ClientPool(
                try pki.client(port: server.apiPort, credential: try pki.enrolled()), width: 1, idle: .seconds(60))
            pool.prewarm()
            pool.prewarm()  // at its width: nothing more
            let head = try await pool.send(ClientRequest(method: .HEAD, path: "/files/kernels/default"))
            #expect(head.status == 200)
            let missing = try await pool.send(ClientRequest(method: .HEAD, path: "/files/kernels/missing"))
            #expect(missing.status == 404)
            #expect(pool.connectionsOpened == 1)
            pool.close()

            let later = ClientPool(
                try pki.client(port: server.apiPort, credential: try pki.enrolled()), width: 1, idle: .seconds(60))
            later.prewarm()
            try await Task.sleep(for: .milliseconds(2500))  // the server closes it after 1 s
            let ten = try await later.stream(.get("/files/kernels/default", from: 0, through: 9)) { _, body in
                try await body.collect(upTo: 100).readableBytes
            }
            #expect(ten == 10)
            #expect(later.connectionsOpened == 2)
            later.close()
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// A warmed connection that cannot be made fails the request that waited for it, with the
    /// connection's own error; the pool then connects again for the next.
    @Test func aWarmedConnectionThatFailsFailsTheWaitingRequest() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let pki = try TestPKI(writingTo: dir.path + "/tls")
        let port = try await ServerBootstrapHelper.bindAndClose()
        let pool = ClientPool(try pki.client(port: port, credential: pki.node), width: 1)
        pool.prewarm()
        for _ in 0..<2 {
            await #expect {
                _ = try await pool.send(ClientRequest(method: .HEAD, path: "/files/kernels/default"))
            } throws: { error in
                guard case .connect = error as? ClientError else { return false }
                return true
            }
        }
        #expect(pool.connectionsOpened == 0)
    }
}
