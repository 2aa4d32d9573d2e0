import Foundation
import HTTPTypes
import Hummingbird
import ProvisionerAPI

/// An error that reaches HTTP: a status, a stable machine-readable code and a readable message,
/// sent as `{"error": {"status", "code", "message"}}` (ProvisionerAPI.ErrorBody).
public struct APIError: HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// Seconds after which a refused client may try again (`Retry-After`, with 429 and 503).
    public var retryAfter: Int?

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = APIError.jsonResponse(
            ErrorBody(status: status.code, code: code, message: message, retryAfter: retryAfter), status: status)
        if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad-request", message) }
    static func notFound(_ code: String, _ message: String) -> APIError { APIError(.notFound, code, message) }
    static func conflict(_ message: String) -> APIError { APIError(.conflict, "conflict", message) }
    static func forbidden(_ message: String, code: String = "forbidden") -> APIError { APIError(.forbidden, code, message) }

    static func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var buffer = ByteBuffer()
        buffer.writeBytes(data)
        return Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: buffer))
    }
}

/// Turns every error into a JSON error answer: ours as they are, Hummingbird's HTTPError with its
/// status, undecodable bodies as 400. Anything else is a bug: logged, and answered 500 without details.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let code: String
            switch error.status {
            case .notFound: code = "not-found"
            case .contentTooLarge: code = "body-too-large"
            case .methodNotAllowed: code = "method-not-allowed"
            case .badRequest: code = "bad-request"
            default: code = "http-\(error.status.code)"
            }
            var message = error.body ?? error.status.reasonPhrase
            if error.status == .notFound && error.body == nil {
                message = "no route \(request.method) \(request.uri.path)"
            } else if error.status == .contentTooLarge {
                message = "the request body is larger than this route accepts"
            }
            return APIError.jsonResponse(
                ErrorBody(status: error.status.code, code: code, message: message), status: error.status)
        } catch let error as DecodingError {
            return APIError.jsonResponse(
                ErrorBody(
                    status: 400, code: "bad-json", message: "the body is not the expected JSON: \(describe(error))"),
                status: .badRequest)
        } catch let error as any HTTPResponseError {
            return APIError.jsonResponse(
                ErrorBody(status: error.status.code, code: "http-\(error.status.code)", message: "\(error)"),
                status: error.status)
        } catch {
            context.logger.error("internal error on \(request.method) \(request.uri.path): \(error)")
            return APIError.jsonResponse(
                ErrorBody(status: 500, code: "internal", message: "internal server error (see the server log)"),
                status: .internalServerError)
        }
    }

    private func describe(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "" : " at \(p.hasPrefix(".") ? String(p.dropFirst()) : p)"
        }
        switch error {
        case .dataCorrupted(let c): return "malformed\(path(c)): \(c.debugDescription)"
        case .keyNotFound(let key, let c): return "missing field \"\(key.stringValue)\"\(path(c))"
        case .typeMismatch(let type, let c): return "expected \(type)\(path(c))"
        case .valueNotFound(let type, let c): return "expected \(type)\(path(c)), found null"
        @unknown default: return "\(error)"
        }
    }
}
