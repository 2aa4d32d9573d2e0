import ArgumentParser
import Foundation
import NIOHTTP1
import ProvisionerAPI
import ProvisionerCore
import ProvisionerClient

/// How provisionerctl reaches the server: the admin API over mutual TLS with an admin certificate.
///
/// Defaults: `$PROVISIONER_SERVER` or https://127.0.0.1:8443, and the credentials `ca init` wrote
/// to `$PROVISIONER_TLS_DIR` or /var/lib/provisioner/tls (ca.pem, admin.pem, admin-key.pem).
struct ServerOptions: ParsableArguments {
    @Option(name: .long, help: "Server URL (default: $PROVISIONER_SERVER or https://127.0.0.1:8443).")
    var server: String?

    @Option(
        name: .long,
        help:
            "Directory with ca.pem, admin.pem, admin-key.pem (default: $PROVISIONER_TLS_DIR or /var/lib/provisioner/tls)."
    )
    var tlsDir: String?

    @Option(name: .long, help: "Cluster CA certificate (default: TLS-DIR/ca.pem).")
    var ca: String?

    @Option(name: .long, help: "Admin certificate (default: TLS-DIR/admin.pem).")
    var cert: String?

    @Option(name: .long, help: "Admin private key (default: TLS-DIR/admin-key.pem).")
    var key: String?

    @Flag(name: .long, help: "Print JSON instead of tables.")
    var json = false

    func client() throws -> AdminClient {
        let env = ProcessInfo.processInfo.environment
        let dir = tlsDir ?? env["PROVISIONER_TLS_DIR"] ?? "/var/lib/provisioner/tls"
        let url = server ?? env["PROVISIONER_SERVER"] ?? "https://127.0.0.1:8443"
        do {
            let tls = try ClientTLS(
                caFile: ca ?? dir + "/ca.pem", certificateFile: cert ?? dir + "/admin.pem",
                keyFile: key ?? dir + "/admin-key.pem")
            let configuration = ClientConfiguration(
                servers: try [Endpoint(parsing: url)], tls: tls, userAgent: "provisionerctl")
            return AdminClient(client: try ProvisionerClient(configuration))
        } catch {
            throw CtlFailure("\(error)")
        }
    }
}

/// The admin API's calls, each a JSON request under /api/v1/admin.
struct AdminClient {
    let client: ProvisionerClient

    func get<T: Decodable>(_ path: String, as type: T.Type = T.self) async throws -> T {
        try await call { try await client.json(.GET, APIVersion.prefix + "/admin/" + path) }
    }

    func send<T: Decodable>(_ method: HTTPMethod, _ path: String, _ body: some Encodable, as type: T.Type = T.self)
        async throws -> T
    {
        try await call { try await client.json(method, APIVersion.prefix + "/admin/" + path, body: body) }
    }

    /// Sends raw bytes (a manifest, a pack) and decodes the JSON answer.
    func post<T: Decodable>(_ path: String, bytes: [UInt8], contentType: String, as type: T.Type = T.self)
        async throws -> T
    {
        try await call {
            let request = ClientRequest.post(APIVersion.prefix + "/admin/" + path, body: bytes, contentType: contentType)
            let response = try await client.send(request).checked(path: "POST \(request.path)")
            do {
                return try JSONDecoder().decode(T.self, from: Data(response.body.readableBytesView))
            } catch {
                throw CtlFailure("POST \(request.path): the answer is not the expected JSON: \(error)")
            }
        }
    }

    private func call<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ClientError {
            throw CtlFailure(error.description)
        }
    }
}

/// A failure shown as one line on stderr; exit status 1.
struct CtlFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body, printing failures as `provisionerctl: message` and exiting 1.
func reporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as CtlFailure {
        FileHandle.standardError.write(Data("provisionerctl: \(failure.description.terminalSafe)\n".utf8))
        throw ExitCode(1)
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// `/` and other unsafe bytes escaped, for names and ids put into a URL path.
func pathComponent(_ s: String) -> String {
    s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
}

func readFile(_ path: String, what: String) throws -> String {
    let data: Data?
    if path == "-" {
        data = FileHandle.standardInput.readDataToEndOfFile()
    } else {
        data = FileManager.default.contents(atPath: path)
    }
    guard let data else { throw CtlFailure("cannot read the \(what) \(path)") }
    guard let text = String(data: data, encoding: .utf8) else {
        throw CtlFailure("the \(what) \(path) is not UTF-8 text")
    }
    return text
}
