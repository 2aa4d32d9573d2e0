import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
import ProvisionerAPI
import ProvisionerImage
import ProvisionerPKI

extension Services {
    /// The image store STATE/images over mutual TLS, with the routes and encodings of
    /// docs/image-format.md. ProvisionerImage's `StoreRoutes` answers them (the server never builds
    /// those formats itself); objects and plain manifests, which are immutable files named by their
    /// hash, are sent by `FileServer` so that they also get `Range`, `If-None-Match` and `HEAD`.
    func addImageRoutes(to router: Router<ProvisionerContext>, roles: Set<CertificateRole>) {
        let store = ImageStore(root: config.imagesDirectory)
        let routes = StoreRoutes(store: store)
        let objects = FileServer(root: config.imagesDirectory + "/objects", immutable: true, digests: digests)
        let images = FileServer(root: config.imagesDirectory + "/images", immutable: true, digests: digests)
        let v1 = router.group("v1").add(middleware: RoleMiddleware(roles: roles))

        for method in [HTTPRequest.Method.get, .head] {
            v1.on("objects/:hash", method: method) { request, context -> Response in
                let hash = try Self.hash(try context.parameters.require("hash"), what: "an object")
                return try await objects.respond(
                    [String(hash.hex.prefix(2)), hash.hex], request: request, context: context, etag: "\"\(hash.hex)\"")
            }
            v1.on("images/:name/versions/:id", method: method) { request, context -> Response in
                let name = try context.parameters.require("name")
                let id = try Self.hash(try context.parameters.require("id"), what: "a version")
                guard ImageStore.isValidName(name) else {
                    throw APIError(.badRequest, "bad-name", "\"\(name)\" is not an image name")
                }
                if request.uri.queryParameters["delta-from"] != nil && method == .get {
                    return try await Self.storeRoute(routes, request, body: nil)
                }
                var response = try await images.respond(
                    [name, "versions", id.hex], request: request, context: context, etag: "\"\(id.hex)\"",
                    contentType: "application/x-provisioner-manifest")
                response.headers[HTTPField.Name("Provisioner-Manifest-Encoding")!] = "full"
                return response
            }
        }
        v1.get("images") { request, _ -> Response in try await Self.storeRoute(routes, request, body: nil) }
        v1.get("images/:name/latest") { request, _ -> Response in try await Self.storeRoute(routes, request, body: nil)
        }
        v1.post("objects/pack") { request, _ -> Response in
            // 100,000 hashes of 64 hex digits in JSON are about 6.7 MB.
            let limit = 8 << 20
            let buffer: ByteBuffer
            do {
                buffer = try await request.body.collect(upTo: limit)
            } catch {
                throw APIError(.contentTooLarge, "body-too-large", "a pack request is at most \(limit) bytes")
            }
            return try await Self.storeRoute(routes, request, body: Array(buffer.readableBytesView))
        }
    }

    static func hash(_ text: String, what: String) throws -> ObjectHash {
        guard let hash = ObjectHash(hex: text), hash.hex == text else {
            throw APIError(.badRequest, "bad-hash", "\(what) is 64 lowercase hex digits, not \"\(text)\"")
        }
        return hash
    }

    /// Runs a request through `StoreRoutes` on the thread pool (it reads files) and streams its
    /// body out piece by piece. Its non-2xx text answers become our JSON errors.
    static func storeRoute(_ routes: StoreRoutes, _ request: Request, body: [UInt8]?) async throws -> Response {
        let method = request.method.rawValue
        let path = request.uri.string
        let reply = try await NIOThreadPool.singleton.runIfActive {
            BodyBox(try routes.handle(method: method, path: path, body: body))
        }
        guard (200..<300).contains(reply.status) else {
            let text = String(decoding: (try? await reply.collect(limit: 4096)) ?? [], as: UTF8.self)
            let message = text.trimmingCharacters(in: .whitespacesAndNewlines)
            let status = HTTPResponse.Status(code: reply.status)
            let code = reply.status == 404 ? "not-found" : reply.status == 400 ? "bad-request" : "http-\(reply.status)"
            throw APIError(status, code, message.isEmpty ? status.reasonPhrase : message)
        }
        var headers = HTTPFields()
        for (name, value) in reply.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        let box = reply
        return Response(
            status: HTTPResponse.Status(code: reply.status), headers: headers,
            body: ResponseBody { writer in
                while let chunk = try await box.nextChunk() {
                    try await writer.write(ByteBuffer(bytes: chunk))
                }
                try await writer.finish(nil)
            })
    }
}

/// A `StoreRoutes` reply whose blocking body is read on the thread pool, one read at a time.
final class BodyBox: @unchecked Sendable {
    let status: Int
    let headers: [String: String]
    private var body: any HTTPBodyStream

    init(_ reply: HTTPReply) {
        status = reply.status
        headers = reply.headers
        body = reply.body
    }

    /// About 1 MiB of the body (several pieces), nil at its end.
    func nextChunk() async throws -> [UInt8]? {
        try await NIOThreadPool.singleton.runIfActive {
            var out: [UInt8] = []
            while out.count < 1 << 20, let piece = try self.body.next() {
                if out.isEmpty { out = piece } else { out += piece }
            }
            return out.isEmpty ? nil : out
        }
    }

    func collect(limit: Int) async throws -> [UInt8] {
        var all: [UInt8] = []
        while all.count < limit, let chunk = try await nextChunk() { all += chunk }
        return Array(all.prefix(limit))
    }
}
