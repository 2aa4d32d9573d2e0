import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
import ProvisionerAPI

/// Serves files from under a directory with strong ETags, conditional GETs and single byte ranges.
///
/// - Names are single path components checked with `Names.isSimpleName`: no `/`, no leading `.`,
///   so `..` and hidden files cannot be reached (400 `bad-path`).
/// - The ETag is `"sha256:<hex>"` of the content: strong, the same on every server and mirror
///   holding the same bytes. Digests are computed once per (inode, size, mtime) and cached.
/// - `Range: bytes=a-b`, `a-` and `-n` give 206 with `Content-Range`; unsatisfiable ranges 416;
///   several ranges are answered with the whole file (200), as RFC 9110 allows. `If-Range` with a
///   different ETag also gives the whole file. `If-None-Match` gives 304.
public struct FileServer: Sendable {
    public let root: String
    let digests: DigestCache
    let fileIO = FileIO()
    /// `Cache-Control` for answers: immutable for content-addressed trees.
    let cacheControl: String

    public init(root: String, immutable: Bool = false, digests: DigestCache = DigestCache()) {
        self.root = root
        self.digests = digests
        self.cacheControl = immutable ? "public, max-age=31536000, immutable" : "no-cache"
    }

    /// The path of `components` under the root, refusing anything that could leave it.
    func path(_ components: [String]) throws -> String {
        for c in components where !Names.isSimpleName(c) {
            throw APIError(.badRequest, "bad-path", "\"\(c)\" is not a valid file name")
        }
        return ([root] + components).joined(separator: "/")
    }

    public func respond(
        _ components: [String], request: Request, context: some RequestContext, etag knownETag: String? = nil, contentType: String = "application/octet-stream"
    ) async throws -> Response {
        let path = try path(components)
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw APIError.notFound("no-such-file", "no file \(components.joined(separator: "/"))")
        }
        let size = Int(info.st_size)
        // Content-addressed callers know the tag (the object's hash); otherwise it is the SHA-256.
        let etag: String
        if let knownETag {
            etag = knownETag
        } else {
            etag = "\"sha256:\(try await digests.digest(path: path, info: info))\""
        }
        var headers: HTTPFields = [
            .eTag: etag, .acceptRanges: "bytes", .cacheControl: cacheControl,
            .contentType: contentType,
        ]
        if let inm = request.headers[.ifNoneMatch], Self.matches(inm, etag) {
            return Response(status: .notModified, headers: headers)
        }
        var range: ClosedRange<Int>? = nil
        if let rangeHeader = request.headers[.range] {
            let ifRangeOK = request.headers[.ifRange].map { $0 == etag } ?? true
            if ifRangeOK {
                switch Self.parseRange(rangeHeader, size: size) {
                case .none, .multiple: break
                case .unsatisfiable:
                    var h = headers
                    h[.contentRange] = "bytes */\(size)"
                    var response = APIError.jsonResponse(
                        ErrorBody(
                            status: 416, code: "range-not-satisfiable",
                            message: "\(rangeHeader) is outside the file's \(size) bytes"), status: .rangeNotSatisfiable
                    )
                    for field in h { response.headers[field.name] = field.value }
                    response.headers[.contentType] = "application/json"
                    return response
                case .range(let r): range = r
                }
            }
        }
        let status: HTTPResponse.Status = range == nil ? .ok : .partialContent
        // An empty file has no byte to name: `0...(size - 1)` does not exist (parseRange never
        // answers `.range` for it, every range of an empty file is unsatisfiable).
        guard let span = range ?? (size > 0 ? 0...(size - 1) : nil) else {
            headers[.contentLength] = "0"
            return Response(status: .ok, headers: headers, body: .init())
        }
        headers[.contentLength] = String(span.count)
        if let range { headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(size)" }
        if request.method == .head {
            return Response(status: status, headers: headers, body: .init())
        }
        let body = try await fileIO.loadFile(path: path, range: span, context: context)
        return Response(status: status, headers: headers, body: body)
    }

    static func matches(_ header: String, _ etag: String) -> Bool {
        header.split(separator: ",").contains { part in
            let p = part.trimmingCharacters(in: .whitespaces)
            return p == "*" || p == etag || p == "W/" + etag
        }
    }

    enum RangeRequest: Equatable {
        case none, multiple, unsatisfiable
        case range(ClosedRange<Int>)
    }

    /// Parses one `Range` header against a file of `size` bytes (RFC 9110 §14.1.2).
    static func parseRange(_ header: String, size: Int) -> RangeRequest {
        let text = header.trimmingCharacters(in: .whitespaces)
        guard text.lowercased().hasPrefix("bytes=") else { return .none }
        let spec = text.dropFirst(6)
        if spec.contains(",") { return .multiple }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .none }
        let first = parts[0].trimmingCharacters(in: .whitespaces)
        let last = parts[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            guard let n = Int(last), n >= 0 else { return .none }
            guard n > 0, size > 0 else { return .unsatisfiable }
            return .range(max(0, size - n)...(size - 1))
        }
        guard let start = Int(first), start >= 0 else { return .none }
        var end = size - 1
        if !last.isEmpty {
            guard let e = Int(last), e >= start else { return .none }
            end = min(e, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .range(start...end)
    }
}

/// SHA-256 of files, computed once per (path, inode, size, mtime) on NIO's thread pool; concurrent
/// requests for the same file wait for one computation.
public actor DigestCache {
    struct Key: Hashable {
        var path: String
        var inode: UInt64
        var size: Int64
        var mtimeSeconds: Int
        var mtimeNanos: Int
    }
    private var entries: [Key: Task<String, any Error>] = [:]

    public init() {}

    func digest(path: String, info: stat) async throws -> String {
        let key = Key(
            path: path, inode: UInt64(info.st_ino), size: Int64(info.st_size), mtimeSeconds: info.st_mtim.tv_sec,
            mtimeNanos: info.st_mtim.tv_nsec)
        if let task = entries[key] { return try await task.value }
        let task = Task<String, any Error> {
            try await NIOThreadPool.singleton.runIfActive { try Self.sha256(path: path) }
        }
        entries[key] = task
        do {
            return try await task.value
        } catch {
            entries[key] = nil
            throw error
        }
    }

    static func sha256(path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw APIError.notFound("no-such-file", "cannot open \(path)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
