import ProvisionerAPI
import ProvisionerCore

/// The server's multicast settings (`multicast:` in server.yaml; docs/multicast.md). Without them
/// nothing is ever sent by multicast.
public struct MulticastSettings: Sendable, Equatable {
    /// The provisioning network's interface: udp-sender sends on it and nowhere else.
    public var interface: String
    /// udp-sender `--max-bitrate` (`300m`, `500000k`, `80000000`): the cap on the network.
    public var maxBitrate = "300m"
    /// The first session's udpcast ports (it uses this one and the next); later sessions at once
    /// take the following pairs.
    public var portBase = 9000
    /// At most this many sessions at once (each holds a pair of ports).
    public var maxSessions = 4
    /// A session stops this long after it started, sent or not.
    public var timeLimitSeconds = 1800
    /// udp-sender `--max-wait`: a round starts this long after its first receiver, however many
    /// nodes listen by then.
    public var maxWaitSeconds = 30
    /// The policy: start a session by itself once `minNodes` nodes wait for the same version
    /// within `waitSeconds` (0: only when the admin asks).
    public var policyMinNodes = 0
    public var policyWaitSeconds = 30
    /// The sender program.
    public var sender = "udp-sender"

    public init(interface: String) { self.interface = interface }

    /// `300m` as bits per second; nil unless digits with an optional k, m or g.
    public static func bitsPerSecond(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let scale: Int
        var digits = Substring(text)
        switch last {
        case "k", "K": scale = 1_000
        case "m", "M": scale = 1_000_000
        case "g", "G": scale = 1_000_000_000
        default: scale = 1
        }
        if scale > 1 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.count <= 12, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits),
            n > 0
        else { return nil }
        return n * scale
    }
}

/// The multicast sessions and the nodes waiting for one, as plain values: every decision about
/// a node's question is made by `answer` (rows MC1–MC6 of docs/multicast.md), table-tested.
public struct MulticastBook: Sendable, Equatable {
    public struct Session: Sendable, Equatable {
        public var id: String
        public var image: String
        public var version: String
        public var trigger: MulticastSessionInfo.Trigger
        /// Who may join: the admin's range; a policy session takes any node asking for its version.
        public var nodes: Set<String>
        public var running: Bool
        /// Its udp-sender has not exited yet: its ports stay taken after a stop until it has.
        public var senderAlive = true
        public var slot: Int
        public var started: Int64
        public var streamBytes: Int
        public var objects: Int
        public var maxWaitSeconds: Int

        public init(
            id: String, image: String, version: String, trigger: MulticastSessionInfo.Trigger, nodes: Set<String>,
            running: Bool = true, slot: Int = 0, started: Int64 = 0, streamBytes: Int = 0, objects: Int = 0,
            maxWaitSeconds: Int = 30
        ) {
            self.id = id
            self.image = image
            self.version = version
            self.trigger = trigger
            self.nodes = nodes
            self.running = running
            self.slot = slot
            self.started = started
            self.streamBytes = streamBytes
            self.objects = objects
            self.maxWaitSeconds = maxWaitSeconds
        }
    }

    public var sessions: [Session] = []
    /// Per version: the nodes that asked and were told to wait, with when each first asked.
    public var waiting: [String: [String: Int64]] = [:]

    public init() {}

    public enum Rule: String, Sendable { case MC1, MC2, MC3, MC4, MC5, MC6 }

    public enum Decision: Sendable, Equatable {
        /// Join this running session.
        case join(sessionID: String)
        /// Enough nodes wait: start a policy session for them (the caller joins it after).
        case start(nodes: [String])
        /// Ask again after this many seconds.
        case wait(seconds: Int, reason: String)
        /// Sync over HTTPS.
        case unicast(reason: String)
    }

    /// What to tell `node`, about to sync `image@version` at `now` (Unix seconds).
    public mutating func answer(
        node: String, image: String, version: String, now: Int64, settings: MulticastSettings
    ) -> (Decision, Rule) {
        // MC1: a running session of this version that takes this node.
        if let session = sessions.first(where: {
            $0.running && $0.image == image && $0.version == version && ($0.trigger == .policy || $0.nodes.contains(node))
        }) {
            waiting[version]?[node] = nil
            return (.join(sessionID: session.id), .MC1)
        }
        guard settings.policyMinNodes > 0 else {
            return (.unicast(reason: "no multicast session of \(image)@\(version.prefix(12)) includes node \(node)"), .MC2)
        }
        // The policy counts nodes that asked within its window.
        let window = Int64(settings.policyWaitSeconds)
        var nodes = (waiting[version] ?? [:]).filter { now - $0.value < window * 2 }
        let first = nodes[node] ?? now
        nodes[node] = first
        waiting[version] = nodes
        let recent = nodes.filter { now - $0.value <= window }
        if recent.count >= settings.policyMinNodes {
            guard sessions.filter(\.running).count < settings.maxSessions else {
                return (.unicast(reason: "all \(settings.maxSessions) multicast sessions are in use"), .MC5)
            }
            waiting[version] = nil
            return (.start(nodes: recent.keys.sorted()), .MC3)
        }
        if now - first < window {
            let left = Int(window - (now - first))
            return (
                .wait(
                    seconds: min(left, 5),
                    reason: "\(recent.count) of \(settings.policyMinNodes) nodes wait for \(image)@\(version.prefix(12))"),
                .MC4
            )
        }
        nodes[node] = nil
        waiting[version] = nodes
        return (
            .unicast(
                reason:
                    "fewer than \(settings.policyMinNodes) nodes asked for \(image)@\(version.prefix(12)) within \(settings.policyWaitSeconds) s"
            ), .MC6
        )
    }

    /// The lowest port slot no running session holds, nil when all `maxSessions` are taken.
    public func freeSlot(_ settings: MulticastSettings) -> Int? {
        let taken = Set(sessions.filter { $0.running || $0.senderAlive }.map(\.slot))
        return (0..<settings.maxSessions).first { !taken.contains($0) }
    }

    /// How long a receiver waits for its round to start: the sender's wait for receivers, a round
    /// already under way (at the capped rate, with slack), and a margin.
    public static func startTimeout(streamBytes: Int, maxWaitSeconds: Int, bitsPerSecond: Int) -> Int {
        let round = Double(streamBytes) * 8 / Double(max(bitsPerSecond, 1))
        return maxWaitSeconds + Int((round * 1.5).rounded(.up)) + 30
    }
}
