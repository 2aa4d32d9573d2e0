import ProvisionerAPI
import ProvisionerClient
import ProvisionerImage

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Publishes a version through the server (docs/images.md, "Publishing: ask, send, commit"): the
/// manifest first, then only the objects the server says it lacks, in packs of at most
/// `packBytes`, then the commit. Every step can be repeated: after a cut connection the next run
/// sends only what is still missing. Used by `provisionerctl image import|exec|shell|build` (objects
/// from a staging store) and `provisioner-agent capture` (objects read again from the live tree).
/// The client must carry an admin certificate: these are admin routes.
public struct ImagePublisher: Sendable {
    public let client: ProvisionerClient
    public var packBytes = 32 << 20

    public init(client: ProvisionerClient, packBytes: Int = 32 << 20) {
        self.client = client
        self.packBytes = packBytes
    }

    public struct Outcome: Sendable {
        public var move: BranchMove
        /// Distinct objects the version names.
        public var objects: Int
        public var sentObjects: Int
        /// Bytes of the objects sent (as stored: compressed).
        public var sentBytes: UInt64
        /// Every byte of every request body: the manifest (each time it was sent), the packs.
        public var requestBytes: UInt64
        /// The manifest the server took the new one as a delta from; nil: it got the whole manifest.
        public var deltaFrom: DeltaBase?
    }

    /// A version the server has whose manifest the client has too: the new manifest is sent as a
    /// delta from it (`ManifestDelta`; a small change costs a few hundred bytes instead of the list).
    public struct DeltaBase: Sendable {
        public var image: String
        public var version: ObjectHash
        /// The version's encoded manifest (its hash must be `version`).
        public var manifest: [UInt8]
        public init(image: String, version: ObjectHash, manifest: [UInt8]) {
            self.image = image
            self.version = version
            self.manifest = manifest
        }
    }

    public func publish(
        image: String, branch: String?, manifest: [UInt8], objects: any StoredObjectSource, base: DeltaBase? = nil
    ) async throws(PublishError) -> Outcome {
        let query = branch.map { "?branch=\($0)" } ?? ""
        var sentObjects = 0
        var sentBytes: UInt64 = 0
        var requestBytes: UInt64 = 0
        // The delta is used once the server has taken it; a server that no longer has the base
        // (collected, or another server) gets the whole manifest.
        var delta: (base: DeltaBase, bytes: [UInt8])? = base.flatMap { ObjectHash.of($0.manifest) == $0.version ? $0 : nil }.map {
            (base: $0, bytes: ManifestDelta.encode(old: $0.manifest, new: manifest))
        }
        func ask() async throws(PublishError) -> UploadStatus {
            if let d = delta {
                let from = "delta-from=\(d.base.version.hex)" + (d.base.image == image ? "" : "&delta-image=\(d.base.image)")
                requestBytes += UInt64(d.bytes.count)
                do {
                    return try await post(
                        "images/\(image)/uploads" + (query.isEmpty ? "?" : query + "&") + from, bytes: d.bytes,
                        contentType: "application/x-provisioner-manifest-delta")
                } catch let error where error.code == "unknown-version" || error.code == "unsupported-media-type" {
                    delta = nil
                }
            }
            requestBytes += UInt64(manifest.count)
            return try await post(
                "images/\(image)/uploads\(query)", bytes: manifest, contentType: "application/x-provisioner-manifest")
        }
        var status = try await ask()
        // The commit checks that every object is there; only when the server lost or refused some
        // (409 objects-missing) is the manifest sent again, once, and what it still lacks resent.
        for round in 0..<2 {
            if !status.missing.isEmpty {
                var pack = PackEncoder.header()
                for hex in status.missing {
                    let stored: [UInt8]?
                    do { stored = try ObjectHash(hex: hex).flatMap { try objects.storedObject($0) } } catch {
                        throw PublishError("\(error)")
                    }
                    guard let hash = ObjectHash(hex: hex), let stored else {
                        throw PublishError("the server asks for object \(hex), which this version does not name here")
                    }
                    pack += PackEncoder.object(hash, stored: stored)
                    sentObjects += 1
                    sentBytes += UInt64(stored.count)
                    if pack.count >= packBytes {
                        requestBytes += try await send(pack + PackEncoder.end())
                        pack = PackEncoder.header()
                    }
                }
                if pack.count > PackEncoder.header().count { requestBytes += try await send(pack + PackEncoder.end()) }
            }
            do {
                let move: BranchMove = try await post(
                    "images/\(image)/uploads/\(status.upload)/commit", bytes: [], contentType: "application/json")
                return Outcome(
                    move: move, objects: status.objects, sentObjects: sentObjects, sentBytes: sentBytes,
                    requestBytes: requestBytes, deltaFrom: delta?.base)
            } catch let error where error.code == "objects-missing" && round == 0 {
                status = try await ask()
            }
        }
        throw PublishError("unreachable: the commit loop ended without an answer")
    }

    private func send(_ pack: [UInt8]) async throws(PublishError) -> UInt64 {
        let _: ObjectsStored = try await post("objects", bytes: pack, contentType: "application/x-provisioner-pack")
        return UInt64(pack.count)
    }

    /// Sends raw bytes to an admin route and decodes the JSON answer.
    private func post<T: Decodable>(_ path: String, bytes: [UInt8], contentType: String) async throws(PublishError) -> T {
        let request = ClientRequest.post(APIVersion.prefix + "/admin/" + path, body: bytes, contentType: contentType)
        let response: ClientResponse
        do {
            response = try await client.send(request).checked(path: "POST \(request.path)")
        } catch let error as ClientError {
            var code: String?
            if case .status(_, let body, _) = error { code = body?.error.code }
            throw PublishError("\(error)", code: code)
        } catch {
            throw PublishError("\(error)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(response.body.readableBytesView))
        } catch {
            throw PublishError("POST \(request.path): the answer is not the expected JSON: \(error)")
        }
    }
}

/// Publishing failed: one readable line (what was sent where, the server's answer). Nothing is
/// visible on the server unless the commit answered.
public struct PublishError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The server's error code, when it answered with one (`objects-missing`, `forbidden`).
    public var code: String?
    public init(_ description: String, code: String? = nil) {
        self.description = description
        self.code = code
    }
}
