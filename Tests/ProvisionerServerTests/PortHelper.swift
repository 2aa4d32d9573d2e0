import NIOCore
import NIOPosix

enum ServerBootstrapHelper {
    /// Binds an ephemeral port on 127.0.0.1, closes it, and returns its number: connecting to it is refused.
    static func bindAndClose() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 1
        try await channel.close()
        return port
    }
}
