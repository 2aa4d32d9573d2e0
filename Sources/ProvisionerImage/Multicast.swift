import ProvisionerSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Objects that arrived by multicast (docs/multicast.md): a pack stream, as udpcast's
/// `udp-receiver` writes it, taken apart into a store directory as it comes.
///
/// Nothing here trusts what arrived. Each object is kept under the hash its frame names; the sync
/// checks every object it uses against that hash (as it does for objects from any source) and
/// fetches a damaged one again over HTTPS. A stream cut anywhere leaves the objects before the
/// cut, each whole (written under a temporary name and renamed).
public struct ReceivedPack {
    public let store: ImageStore
    private var decoder = PackDecoder()
    public private(set) var objects = 0
    public private(set) var bytes = 0
    /// Set when the stream broke its format; nothing after that point is kept.
    public private(set) var problem: String?

    public init(store: ImageStore) { self.store = store }

    /// True once the end frame arrived.
    public var complete: Bool { decoder.finished && problem == nil }

    /// Takes the next bytes of the stream; writes every whole object frame they complete.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) throws {
        guard problem == nil else { return }
        bytes += chunk.count
        decoder.feed(chunk)
        do {
            while let frame = try decoder.next() {
                switch frame {
                case .object(let hash, let stored):
                    try store.putStored(hash, stored: stored)
                    objects += 1
                case .delta, .missing:
                    problem = "the stream holds a frame a multicast stream never has (delta or missing)"
                    return
                case .end:
                    return
                }
            }
        } catch let error as PackError {
            problem = error.problem
        }
    }

    public mutating func feed(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try feed($0) } }
}

extension ImageStore {
    /// Keeps an object exactly as it arrived (a zstd frame), unchecked: readers check it.
    public func putStored(_ hash: ObjectHash, stored: [UInt8]) throws {
        let path = objectPath(hash)
        if FileIO.exists(path) { return }
        try FileIO.makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
        try FileIO.writeAtomically(path, stored, sync: false)
    }

    /// Removes an object (a received copy found damaged), if it is there.
    func removeObject(_ hash: ObjectHash) { unlink(objectPath(hash)) }
}

/// A source that serves the objects a node received by multicast from that directory and asks
/// `source` for the rest, in one request (docs/multicast.md). The resolve and the manifest always
/// come from `source`: the version id is trusted only from the server.
public final class ReceivedObjectsSource: ObjectSource {
    public let received: ImageStore
    public let source: any ObjectSource
    private let served = Atomic<Int>(0)
    private let damaged = Atomic<Int>(0)
    private let network = Atomic<Int>(0)

    public init(received: ImageStore, source: any ObjectSource) {
        self.received = received
        self.source = source
    }

    public var label: String { "multicast (\(received.root)), then \(source.label)" }
    /// Bytes from the network only: what came by multicast is counted by the receiver.
    public var bytesReceived: Int { source.bytesReceived }
    /// Objects served from what was received, and received copies found damaged (fetched again).
    public var servedFromReceived: Int { served.load(ordering: .relaxed) }
    public var damagedReceived: Int { damaged.load(ordering: .relaxed) }
    /// Objects asked for from the network: those not received, and damaged copies again.
    public var fetchedFromNetwork: Int { network.load(ordering: .relaxed) }

    public func resolve(image: String, version: String) throws -> ObjectHash {
        try source.resolve(image: image, version: version)
    }

    public func manifest(image: String, version: ObjectHash, previous: (id: ObjectHash, bytes: [UInt8])?) throws
        -> [UInt8]
    {
        try source.manifest(image: image, version: version, previous: previous)
    }

    public func objects(_ hashes: [ObjectHash]) throws -> any ObjectStream {
        try objects(hashes, bases: [:])
    }

    public func objects(_ hashes: [ObjectHash], bases: [ObjectHash: ObjectHash]) throws -> any ObjectStream {
        let have = hashes.map { received.hasObject($0) }
        let missing = zip(hashes, have).filter { !$0.1 }.map(\.0)
        var missingBases: [ObjectHash: ObjectHash] = [:]
        for hash in missing { if let base = bases[hash] { missingBases[hash] = base } }
        // The rest in one request, opened only when something is missing.
        network.add(missing.count, ordering: .relaxed)
        let rest = missing.isEmpty ? nil : try source.objects(missing, bases: missingBases)
        return Stream(owner: self, hashes: hashes, have: have, rest: rest)
    }

    /// A damaged copy is dropped, and the object comes from the network.
    public func refetch(_ hash: ObjectHash, attempt: Int) throws -> any ObjectStream {
        if received.hasObject(hash) {
            received.removeObject(hash)
            damaged.add(1, ordering: .relaxed)
        }
        network.add(1, ordering: .relaxed)
        return try source.refetch(hash, attempt: attempt)
    }

    struct Stream: ObjectStream {
        let owner: ReceivedObjectsSource
        let hashes: [ObjectHash]
        let have: [Bool]
        var rest: (any ObjectStream)?
        var index = 0

        mutating func next() throws -> FetchedObject? {
            guard index < hashes.count else { return nil }
            let hash = hashes[index]
            defer { index += 1 }
            if have[index], let stored = try owner.received.storedObject(hash) {
                owner.served.add(1, ordering: .relaxed)
                return FetchedObject(hash: hash, stored: stored)
            }
            guard have[index] == false, var stream = rest else {
                // Listed as received, gone since: ask for it alone.
                owner.network.add(1, ordering: .relaxed)
                var one = try owner.source.objects([hash])
                return try one.next()
            }
            let object = try stream.next()
            rest = stream
            return object
        }
    }
}

/// Receives one multicast session with udpcast's `udp-receiver` into a store directory.
public enum MulticastReceiver {
    public struct Result: Sendable {
        public var objects: Int
        public var bytes: Int
        /// The whole stream arrived (its end frame).
        public var complete: Bool
        /// Why it stopped early (udp-receiver's own message, or a stream that broke its format).
        public var problem: String?
    }

    /// udp-receiver's command line: data to stdout, no keyboard, bounded waits.
    /// udpcast's control channel: the all-hosts group (the server's `MulticastOffer.rendezvousAddress`).
    public static let rendezvousAddress = "224.0.0.1"

    public static func arguments(
        program: String = "udp-receiver", portBase: Int, interface: String, startTimeoutSeconds: Int,
        receiveTimeoutSeconds: Int
    ) -> [String] {
        [
            program, "--nokbd", "--portbase", String(portBase), "--interface", interface,
            "--start-timeout", String(startTimeoutSeconds), "--receive-timeout", String(receiveTimeoutSeconds),
            "--mcast-rdv-address", rendezvousAddress,
        ]
    }

    /// Runs `argv` (from `arguments`) and keeps every whole object of its output in `directory`.
    public static func receive(_ argv: [String], into directory: String) -> Result {
        var pack = ReceivedPack(store: ImageStore(root: directory))
        var writeError: String?
        let result: CommandResult
        do {
            try FileIO.makeDirectories(directory + "/objects", mode: 0o700)
            result = try Command.run(argv) { chunk in
                guard writeError == nil else { return }  // keep reading, so udp-receiver is not stuck
                do { try pack.feed(chunk) } catch { writeError = "\(error)" }
            }
        } catch {
            return Result(objects: pack.objects, bytes: pack.bytes, complete: false, problem: "\(error)")
        }
        var problem = writeError.map { "keeping the received objects in \(directory): \($0)" } ?? pack.problem
        if problem == nil && !pack.complete {
            problem =
                result.status == 0
                ? "the stream ended before its end frame"
                : "\(argv[0]) exited with status \(result.status): \(result.lastMessage)"
        }
        return Result(objects: pack.objects, bytes: pack.bytes, complete: pack.complete && problem == nil, problem: problem)
    }
}

/// The stream a multicast session sends: a pack of every object of a version once, in the
/// manifest's order (docs/multicast.md).
public enum MulticastStream {
    /// Writes it to `path` (under a temporary name, then renamed); an existing one is kept, since
    /// a version never changes.
    public static func write(manifest: Manifest, from store: ImageStore, to path: String) throws -> (
        bytes: Int, objects: Int
    ) {
        var seen = Set<ObjectHash>()
        var hashes: [ObjectHash] = []
        for entry in manifest.entries where entry.kind == .file {
            for chunk in entry.chunks where !chunk.isHole && seen.insert(chunk.hash).inserted { hashes.append(chunk.hash) }
        }
        var st = stat()
        if stat(path, &st) == 0 { return (Int(st.st_size), hashes.count) }
        let temporary = path + ".partial"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError.fromErrno("creating", temporary) }
        var closed = false
        defer { if !closed { close(fd); unlink(temporary) } }
        var total = 0
        func put(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { buffer in
                var done = 0
                while done < buffer.count {
                    let n = FileIO.retrySize { Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done) }
                    guard n > 0 else { throw SystemError.fromErrno("writing", temporary) }
                    done += n
                }
            }
            total += bytes.count
        }
        try put(PackEncoder.header())
        var rest = hashes[...]
        while !rest.isEmpty {
            let batch = Array(rest.prefix(256))
            let (frames, count) = try PackEncoder.objectFrames(batch, from: store)
            guard count > 0 else {
                throw SystemError("reading", store.objectPath(batch[0]), cause: "the store lacks this object of the version")
            }
            try put(frames)
            rest = rest.dropFirst(count)
        }
        try put(PackEncoder.end())
        guard fsync(fd) == 0 else { throw SystemError.fromErrno("syncing", temporary) }
        close(fd)
        closed = true
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw SystemError.fromErrno("renaming into place", path)
        }
        return (total, hashes.count)
    }
}
