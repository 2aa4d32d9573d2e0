import Foundation
import Hummingbird
import Logging
import NIOPosix
import ProvisionerAPI
import ProvisionerCore
import ProvisionerImage
import ProvisionerSystem

/// Multicast sessions (docs/multicast.md): each is one `udp-sender` process sending a version's
/// stream (every object once, as a pack) on the provisioning network, round after round
/// (`--daemon-mode`) until its time limit, so a node that joins late gets the next round. What
/// to tell a node is decided by `MulticastBook`; this actor starts and stops the processes.
public actor MulticastService {
    let settings: MulticastSettings?
    let directory: String
    let images: ImageStore
    let metrics: ServerMetrics
    let logger: Logger
    var book = MulticastBook()
    var infos: [String: MulticastSessionInfo] = [:]
    var processes: [String: Process] = [:]

    init(config: ServerConfig, metrics: ServerMetrics, logger: Logger) {
        settings = config.multicast
        directory = config.stateDir + "/multicast"
        images = ImageStore(root: config.imagesDirectory)
        self.metrics = metrics
        self.logger = logger
    }

    /// A node whose session should ask before syncing: multicast is configured, and a session
    /// includes it or the policy is on.
    func mayOffer(node: String) -> Bool {
        guard let settings else { return false }
        return settings.policyMinNodes > 0 || book.sessions.contains { $0.running && $0.nodes.contains(node) }
    }

    func list() -> [MulticastSessionInfo] { infos.values.sorted { ($0.started, $0.id) > ($1.started, $1.id) } }

    /// The admin's session: `nodes` is the hostlist as given, `names` its expansion.
    func start(
        image: String, version: String, nodes: String, names: [String], trigger: MulticastSessionInfo.Trigger,
        minReceivers: Int?, maxWaitSeconds: Int?
    ) async throws -> MulticastSessionInfo {
        guard let settings else {
            throw APIError(
                .conflict, "multicast-off",
                "multicast is not configured on this server (multicast: interface: in the server's config)")
        }
        if let running = book.sessions.first(where: { $0.running && $0.image == image && $0.version == version }) {
            throw APIError(
                .conflict, "multicast-running",
                "session \(running.id) already sends \(image)@\(version.prefix(12)); stop it first (image multicast-stop)")
        }
        guard let slot = book.freeSlot(settings) else {
            throw APIError(.conflict, "multicast-busy", "all \(settings.maxSessions) multicast sessions are in use")
        }
        guard let network = try NetworkInterfaces.network(of: settings.interface) else {
            throw APIError(
                .conflict, "multicast-interface",
                "the multicast interface \(settings.interface) has no IPv4 address on this server")
        }
        guard let program = Self.findProgram(settings.sender) else {
            throw APIError(
                .conflict, "multicast-sender",
                "\(settings.sender) is not installed on the server (apt-get install udpcast)")
        }
        let id = "mc-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        // Reserve the slot before the stream is built (other starts run meanwhile).
        let minimum = max(1, min(minReceivers ?? names.count, max(names.count, 1)))
        let maxWait = maxWaitSeconds ?? settings.maxWaitSeconds
        var session = MulticastBook.Session(
            id: id, image: image, version: version, trigger: trigger, nodes: Set(names), running: true, slot: slot,
            started: Int64(Date().timeIntervalSince1970), maxWaitSeconds: maxWait)
        book.sessions.append(session)
        let stream: (path: String, bytes: Int, objects: Int)
        do {
            stream = try await Self.prepareStream(image: image, version: version, images: images, directory: directory)
        } catch {
            book.sessions.removeAll { $0.id == id }
            throw error
        }
        session.streamBytes = stream.bytes
        session.objects = stream.objects
        let port = settings.portBase + 2 * slot
        let argv = Self.senderArguments(
            program: program, file: stream.path, interface: settings.interface, portBase: port,
            maxBitrate: settings.maxBitrate, minReceivers: minimum, maxWaitSeconds: maxWait)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        let log = directory + "/\(id).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        if let handle = FileHandle(forWritingAtPath: log) {
            process.standardOutput = handle
            process.standardError = handle
        }
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [weak self] finished in
            let status = finished.terminationStatus
            Task { await self?.ended(id, status: status) }
        }
        do { try process.run() } catch {
            book.sessions.removeAll { $0.id == id }
            throw APIError(.internalServerError, "multicast-sender", "starting \(argv[0]): \(error)")
        }
        if let index = book.sessions.firstIndex(where: { $0.id == id }) { book.sessions[index] = session }
        processes[id] = process
        let info = MulticastSessionInfo(
            id: id, image: image, version: version, nodes: nodes, trigger: trigger, state: .running,
            interface: settings.interface, portBase: port, maxBitrate: settings.maxBitrate, minReceivers: minimum,
            maxWaitSeconds: maxWait, streamBytes: stream.bytes, objects: stream.objects, started: session.started,
            ends: session.started + Int64(settings.timeLimitSeconds))
        infos[id] = info
        metrics.multicastStarted(trigger: trigger.rawValue, streamBytes: stream.bytes)
        metrics.setMulticastRunning(book.sessions.filter(\.running).count)
        logger.notice(
            "multicast \(id): \(image)@\(version.prefix(12)) to \(nodes) on \(settings.interface) (\(network)), port \(port), \(stream.objects) objects, \(stream.bytes) bytes; pid \(process.processIdentifier)"
        )
        let limit = settings.timeLimitSeconds
        Task { [weak self] in
            try? await Task.sleep(for: .seconds(limit))
            await self?.stop(id, reason: "its time limit of \(limit) s")
        }
        return info
    }

    /// Stops every running session of `image`; returns them.
    func stop(image: String) -> [MulticastSessionInfo] {
        let ids = book.sessions.filter { $0.running && $0.image == image }.map(\.id)
        for id in ids { stop(id, reason: "stopped by the admin") }
        return ids.compactMap { infos[$0] }
    }

    func stop(_ id: String, reason: String) {
        guard let index = book.sessions.firstIndex(where: { $0.id == id }), book.sessions[index].running else { return }
        book.sessions[index].running = false
        infos[id]?.state = .stopped
        infos[id]?.detail = reason
        // SIGKILL: udp-sender ignores SIGTERM while it waits for receivers, and keeps nothing
        // that needs an orderly end (receivers notice the silence and fetch the rest over HTTPS).
        if let process = processes[id], process.isRunning { kill(process.processIdentifier, SIGKILL) }
        metrics.setMulticastRunning(book.sessions.filter(\.running).count)
        logger.notice("multicast \(id): \(reason)")
    }

    /// Stops every session (the server is shutting down).
    public func stopAll() {
        for session in book.sessions where session.running { stop(session.id, reason: "the server stopped") }
    }

    func ended(_ id: String, status: Int32) {
        processes[id] = nil
        if let index = book.sessions.firstIndex(where: { $0.id == id }) { book.sessions[index].senderAlive = false }
        guard let index = book.sessions.firstIndex(where: { $0.id == id }), book.sessions[index].running else { return }
        let last = (try? String(contentsOfFile: directory + "/\(id).log", encoding: .utf8))?
            .split(whereSeparator: \.isNewline).last.map(String.init) ?? ""
        stop(id, reason: "udp-sender exited with status \(status)" + (last.isEmpty ? "" : ": \(last)"))
    }

    /// A node's question (M1 on its side): join, wait, or HTTPS.
    func answer(node: String, image: String, version: String) async throws -> MulticastAnswer {
        guard let settings else { return MulticastAnswer(reason: "multicast is not configured on the server") }
        let now = Int64(Date().timeIntervalSince1970)
        var (decision, rule) = book.answer(node: node, image: image, version: version, now: now, settings: settings)
        if case .start(let nodes) = decision {
            do {
                _ = try await start(
                    image: image, version: version, nodes: Hostlist.compress(nodes), names: nodes, trigger: .policy,
                    minReceivers: nodes.count, maxWaitSeconds: nil)
            } catch {
                logger.warning("multicast policy: starting a session for \(image)@\(version.prefix(12)): \(error)")
                return MulticastAnswer(reason: "the multicast session could not start (\(error)); rule \(rule.rawValue)")
            }
            (decision, rule) = book.answer(node: node, image: image, version: version, now: now, settings: settings)
        }
        switch decision {
        case .join(let id):
            guard let info = infos[id], let network = try NetworkInterfaces.network(of: settings.interface) else {
                return MulticastAnswer(reason: "the session's interface \(settings.interface) lost its address")
            }
            let timeout = MulticastBook.startTimeout(
                streamBytes: info.streamBytes, maxWaitSeconds: info.maxWaitSeconds,
                bitsPerSecond: MulticastSettings.bitsPerSecond(settings.maxBitrate) ?? 1_000_000)
            let offer = MulticastOffer(
                session: id, image: image, version: version, portBase: info.portBase, network: network.description,
                startTimeoutSeconds: timeout, receiveTimeoutSeconds: 15, streamBytes: info.streamBytes,
                objects: info.objects)
            return MulticastAnswer(offer: offer, reason: "rule \(rule.rawValue): session \(id)")
        case .wait(let seconds, let reason):
            return MulticastAnswer(retryAfterSeconds: seconds, reason: "\(reason) (rule \(rule.rawValue))")
        case .unicast(let reason):
            return MulticastAnswer(reason: "\(reason) (rule \(rule.rawValue))")
        case .start:
            return MulticastAnswer(reason: "the session did not start (rule \(rule.rawValue))")
        }
    }

    /// udp-sender's command line: the stream file on the named interface only, capped, without a
    /// keyboard, round after round.
    static func senderArguments(
        program: String, file: String, interface: String, portBase: Int, maxBitrate: String, minReceivers: Int,
        maxWaitSeconds: Int
    ) -> [String] {
        [
            program, "--file", file, "--interface", interface, "--portbase", String(portBase), "--max-bitrate",
            maxBitrate, "--nokbd", "--min-receivers", String(minReceivers), "--max-wait", String(maxWaitSeconds),
            "--daemon-mode", "--retries-until-drop", "30",
            // Multicast even to a single receiver: in point-to-point mode udp-sender keeps sending
            // the next round to the first round's only receiver (udpcast 20120424).
            "--nopointopoint",
            // Switched networks are full duplex: no pause between the sender's slices.
            "--full-duplex",
            // The control channel on the all-hosts group (link-local: never routed), not the subnet's
            // broadcast address, which an interface configured without one does not have.
            "--mcast-rdv-address", MulticastOffer.rendezvousAddress,
        ]
    }

    /// The version's stream in STATE/multicast/VERSION.pack (kept: versions never change).
    static func prepareStream(image: String, version: String, images: ImageStore, directory: String) async throws -> (
        path: String, bytes: Int, objects: Int
    ) {
        guard let id = ObjectHash(hex: version) else {
            throw APIError(.badRequest, "bad-version", "a version is 64 hex digits, not \"\(version.terminalSafe)\"")
        }
        return try await NIOThreadPool.singleton.runIfActive {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            guard let stored = try images.storedManifest(image: image, version: id) else {
                throw APIError(.notFound, "not-found", "image \(image) has no version \(version)")
            }
            let encoded = try stored.withUnsafeBytes {
                try Zstd.decompress($0, expectedSize: nil, subject: "manifest \(image)@\(version)")
            }
            let manifest = try ManifestCodec.decode(encoded)
            let path = directory + "/\(version).pack"
            let written = try MulticastStream.write(manifest: manifest, from: images, to: path)
            return (path, written.bytes, written.objects)
        }
    }

    static func findProgram(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/sbin"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

extension Services {
    /// Admin: start, list and stop multicast sessions.
    func addMulticastAdminRoutes(to group: RouterGroup<ProvisionerContext>) {
        group.post("images/:name/multicast") { request, context -> Response in
            let name = try context.parameters.require("name")
            guard ImageNames.isValid(name) else {
                throw APIError(.badRequest, "bad-name", "\"\(name.terminalSafe)\" is not an image name")
            }
            let body = try await decodeJSON(MulticastStartRequest.self, from: request, limit: 64 << 10)
            let names: [String]
            do { names = try Hostlist.expand(body.nodes) } catch {
                throw APIError(.badRequest, "bad-nodes", "nodes: \(error)")
            }
            guard !names.isEmpty, names.count <= 100_000 else {
                throw APIError(.badRequest, "bad-nodes", "nodes: a range of 1 to 100,000 names")
            }
            if let k = body.minReceivers, !(1...100_000).contains(k) {
                throw APIError(.badRequest, "bad-min-receivers", "minReceivers: 1 to 100,000, not \(k)")
            }
            if let t = body.maxWaitSeconds, !(0...3600).contains(t) {
                throw APIError(.badRequest, "bad-max-wait", "maxWaitSeconds: 0 to 3600, not \(t)")
            }
            let version = try await self.resolveVersion(image: name, version: body.version ?? "latest")
            let info = try await multicast.start(
                image: name, version: version, nodes: body.nodes, names: names, trigger: .admin,
                minReceivers: body.minReceivers, maxWaitSeconds: body.maxWaitSeconds)
            try await store.record(
                Actor(name: context.peer?.name ?? "admin", remoteAddress: context.remoteAddress), "multicast.start",
                "image/\(name)", "\(info.id) \(version) nodes \(body.nodes)")
            return json(info, status: .created)
        }
        group.get("multicast") { _, _ -> Response in json(await multicast.list()) }
        group.delete("images/:name/multicast") { _, context -> Response in
            let name = try context.parameters.require("name")
            let stopped = await multicast.stop(image: name)
            guard !stopped.isEmpty else {
                throw APIError(.notFound, "not-found", "no multicast session of image \(name.terminalSafe) is running")
            }
            try await store.record(
                Actor(name: context.peer?.name ?? "admin", remoteAddress: context.remoteAddress), "multicast.stop",
                "image/\(name)", stopped.map(\.id).joined(separator: " "))
            return json(stopped)
        }
    }

    /// Agent: `GET sessions/{id}/multicast?image=&version=`, for the node's own certificate only.
    func addMulticastAgentRoutes(to group: RouterGroup<ProvisionerContext>) {
        group.get("sessions/:id/multicast") { request, context -> Response in
            let caller = try Self.sessionCaller(context)
            guard caller.provesNode else {
                throw APIError.forbidden("multicast is for the node's own certificate; enroll first")
            }
            let id = try context.parameters.require("id")
            let (session, node) = try await self.refusalsAudited(context, "session.multicast", "session/\(id)") {
                try await store.pollSession(id, caller: caller)
            }
            guard let node, session.node == node.name else {
                throw APIError(.conflict, "unassigned", "session \(id) belongs to no node")
            }
            let image = request.uri.queryParameters["image"].map(String.init) ?? ""
            guard ImageNames.isValid(image) else {
                throw APIError(.badRequest, "bad-name", "image: \"\(image.terminalSafe)\" is not an image name")
            }
            let version = try await self.resolveVersion(
                image: image, version: request.uri.queryParameters["version"].map(String.init) ?? "latest")
            return json(try await multicast.answer(node: node.name, image: image, version: version))
        }
    }

    /// `latest` or a version id, as the version id the image store has.
    func resolveVersion(image: String, version: String) async throws -> String {
        let store = ImageStore(root: config.imagesDirectory)
        if version == "latest" {
            guard let id = try await NIOThreadPool.singleton.runIfActive({ try store.latest(image: image) }) else {
                throw APIError(.notFound, "not-found", "no image \(image)")
            }
            return id.hex
        }
        guard let id = ObjectHash(hex: version), id.hex == version,
            FileManager.default.fileExists(atPath: store.manifestPath(image: image, version: id))
        else {
            throw APIError(.notFound, "not-found", "image \(image) has no version \"\(version.terminalSafe)\"")
        }
        return id.hex
    }
}
