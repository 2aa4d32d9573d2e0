import ProvisionerImage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// docs/multicast.md: the stream a session sends, what a node keeps of it, and the sync that uses
/// it first and the network for the rest.
@Suite struct MulticastTests {
    /// A store with one image of `files` random files; returns the store, the source tree and the
    /// manifest.
    static func image(_ root: String, files: Int = 12) throws -> (store: String, src: String, manifest: Manifest) {
        let (src, store) = ("\(root)/src", "\(root)/store")
        try sh(
            "mkdir -p '\(src)/d' && for i in $(seq 1 \(files)); do head -c $((i * 30000)) /dev/urandom > '\(src)/d/f'$i; done"
        )
        let id = try importTree(src, store: store)
        let stored = try #require(try ImageStore(root: store).storedManifest(image: "img", version: id))
        let encoded = try stored.withUnsafeBytes { try Zstd.decompress($0, expectedSize: nil, subject: "manifest") }
        return (store, src, try ManifestCodec.decode(encoded))
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try sh("base64 -w0 '\(path)'").utf8).isEmpty ? [] : try decodeBase64(try sh("base64 -w0 '\(path)'"))
    }

    static func decodeBase64(_ text: String) throws -> [UInt8] {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var lookup = [UInt8](repeating: 0, count: 256)
        for (i, c) in table.enumerated() { lookup[Int(c)] = UInt8(i) }
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for c in text.utf8 where c != UInt8(ascii: "=") && c != 10 {
            buffer = buffer << 6 | UInt32(lookup[Int(c)])
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((buffer >> UInt32(bits)) & 0xff))
            }
        }
        return out
    }

    @Test func theStreamHoldsEveryObjectOnceAndAReceiverKeepsThemAll() throws {
        let root = try scratch("mc-stream")
        defer { try? sh("rm -rf '\(root)'") }
        let (store, _, manifest) = try Self.image(root)
        let written = try MulticastStream.write(manifest: manifest, from: ImageStore(root: store), to: "\(root)/v.pack")
        let objects = Set(manifest.entries.flatMap { $0.chunks.filter { !$0.isHole }.map(\.hash) })
        #expect(written.objects == objects.count)
        let bytes = try Self.read("\(root)/v.pack")
        #expect(bytes.count == written.bytes)
        // Fed in odd pieces, as a pipe delivers it.
        var pack = ReceivedPack(store: ImageStore(root: "\(root)/received"))
        var at = 0
        var step = 1
        while at < bytes.count {
            let n = min(step, bytes.count - at)
            try pack.feed(Array(bytes[at..<(at + n)]))
            at += n
            step = step * 3 % 65_537 + 1
        }
        #expect(pack.complete)
        #expect(pack.objects == objects.count)
        for hash in objects { #expect(ImageStore(root: "\(root)/received").hasObject(hash)) }
    }

    @Test func aCutStreamKeepsTheWholeObjectsBeforeTheCut() throws {
        let root = try scratch("mc-cut")
        defer { try? sh("rm -rf '\(root)'") }
        let (store, _, manifest) = try Self.image(root)
        _ = try MulticastStream.write(manifest: manifest, from: ImageStore(root: store), to: "\(root)/v.pack")
        let bytes = try Self.read("\(root)/v.pack")
        var pack = ReceivedPack(store: ImageStore(root: "\(root)/received"))
        try pack.feed(Array(bytes[0..<(bytes.count / 2)]))
        #expect(!pack.complete)
        #expect(pack.objects > 0)
        #expect(pack.problem == nil)
        let kept = try sh("find '\(root)/received/objects' -type f ! -name '*.tmp*' | wc -l").trimmingCharacters(
            in: .whitespacesAndNewlines)
        #expect(Int(kept) == pack.objects)
    }

    @Test func aStreamThatBreaksTheFormatStopsKeeping() throws {
        let root = try scratch("mc-bad")
        defer { try? sh("rm -rf '\(root)'") }
        var pack = ReceivedPack(store: ImageStore(root: "\(root)/received"))
        try pack.feed(Array("PPK1".utf8) + [UInt8(ascii: "X")] + [UInt8](repeating: 0, count: 40))
        #expect(pack.problem?.contains("unknown frame type") == true)
        #expect(!pack.complete)
        try pack.feed([1, 2, 3])  // ignored from now on
        #expect(pack.objects == 0)
    }

    @Test func theSyncUsesWhatArrivedFetchesTheRestAndReplacesADamagedCopy() throws {
        let root = try scratch("mc-sync")
        defer { try? sh("rm -rf '\(root)'") }
        let (store, src, manifest) = try Self.image(root)
        _ = try MulticastStream.write(manifest: manifest, from: ImageStore(root: store), to: "\(root)/v.pack")
        let bytes = try Self.read("\(root)/v.pack")
        let receivedStore = ImageStore(root: "\(root)/received")
        var pack = ReceivedPack(store: receivedStore)
        try pack.feed(Array(bytes[0..<(bytes.count * 2 / 3)]))  // a third missing
        let got = pack.objects
        #expect(got > 1)
        // One received copy damaged on the way (a byte of its last ones inverted: writing a fixed
        // value left the copy whole when the byte already had it, one run in 256).
        let damaged = try #require(
            manifest.entries.flatMap(\.chunks).map(\.hash).first { receivedStore.hasObject($0) })
        let fd = open(receivedStore.objectPath(damaged), O_RDWR)
        #expect(fd >= 0)
        defer { close(fd) }
        var st = stat()
        #expect(fstat(fd, &st) == 0)
        var byte: UInt8 = 0
        #expect(pread(fd, &byte, 1, st.st_size - 5) == 1)
        byte = ~byte
        #expect(pwrite(fd, &byte, 1, st.st_size - 5) == 1)
        let network = LocalStoreSource(path: store)
        let source = ReceivedObjectsSource(received: receivedStore, source: network)
        var options = SyncOptions()
        options.threads = 1
        let report = try SyncEngine(target: "\(root)/dst", source: source, options: options).run(image: "img")
        try expectSameTree(src, "\(root)/dst")
        let total = Set(manifest.entries.flatMap { $0.chunks.filter { !$0.isHole }.map(\.hash) }).count
        #expect(source.damagedReceived == 1)
        #expect(source.servedFromReceived == got)
        #expect(report.objectsRefetched == 1)
        #expect(source.fetchedFromNetwork == total - got + 1)  // the missing ones, and the damaged one again
    }

    @Test func theReceiversCommandLine() {
        #expect(
            MulticastReceiver.arguments(
                portBase: 9002, interface: "eth0", startTimeoutSeconds: 44, receiveTimeoutSeconds: 15)
                == [
                    "udp-receiver", "--nokbd", "--portbase", "9002", "--interface", "eth0", "--start-timeout", "44",
                    "--receive-timeout", "15", "--mcast-rdv-address", "224.0.0.1",
                ])
    }

    @Test func aReceiverThatCannotStartSaysWhy() throws {
        let root = try scratch("mc-none")
        defer { try? sh("rm -rf '\(root)'") }
        let result = MulticastReceiver.receive(["/nonexistent/udp-receiver"], into: "\(root)/received")
        #expect(result.objects == 0)
        #expect(!result.complete)
        #expect(result.problem?.contains("/nonexistent/udp-receiver") == true)
    }

    @Test func aReceiverThatEndsEarlySaysSo() throws {
        let root = try scratch("mc-early")
        defer { try? sh("rm -rf '\(root)'") }
        let result = MulticastReceiver.receive(
            ["sh", "-c", "printf PPK1; echo 'Receiver error' >&2; exit 255"], into: "\(root)/r")
        #expect(result.problem == "sh exited with status 255: Receiver error")
        #expect(result.bytes == 4)
    }
}

@Suite struct MirrorOrderTests {
    @Test(arguments: [
        // No preference: round from the first pick.
        (2, 4, 0, [2, 3, 0, 1]),
        // The node's own two mirrors first (from the pick), then the server's list.
        (1, 4, 2, [1, 0, 2, 3]),
        (0, 4, 2, [0, 1, 2, 3]),
        // After a failover into the server's list: its group first, then the node's own again.
        (3, 4, 2, [3, 2, 0, 1]),
        (0, 1, 0, [0]),
    ])
    func order(first: Int, count: Int, preferred: Int, expected: [Int]) {
        #expect(MirrorSource.order(first: first, count: count, preferred: preferred) == expected)
    }
}
