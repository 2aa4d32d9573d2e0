/// Multicast delivery of an image version (docs/multicast.md): the server sends the version's
/// objects once with udpcast's `udp-sender`; nodes receive them with `udp-receiver`, then sync and
/// fetch over HTTPS only what they missed or what failed its hash.

/// `POST /api/v1/images/{name}/multicast`: the admin starts a session for nodes in a range.
public struct MulticastStartRequest: Codable, Hashable, Sendable {
    /// A hostlist (`n[001-050],gpu1`): the nodes that may receive.
    public var nodes: String
    /// A version id (64 hex digits); nil: the image's latest.
    public var version: String?
    /// udp-sender `--min-receivers`: start as soon as this many nodes listen (default: every node
    /// of the range).
    public var minReceivers: Int?
    /// udp-sender `--max-wait`: start this many seconds after the first node listens, however many
    /// there are (default: the server's `multicast.maxWaitSeconds`).
    public var maxWaitSeconds: Int?

    public init(nodes: String, version: String? = nil, minReceivers: Int? = nil, maxWaitSeconds: Int? = nil) {
        self.nodes = nodes
        self.version = version
        self.minReceivers = minReceivers
        self.maxWaitSeconds = maxWaitSeconds
    }
}

/// One multicast session as the server runs it.
public struct MulticastSessionInfo: Codable, Hashable, Sendable {
    public enum Trigger: String, Codable, Hashable, Sendable {
        /// `provisionerctl image multicast`.
        case admin
        /// The server's policy: enough nodes waited for the same version (docs/multicast.md).
        case policy
    }

    public enum State: String, Codable, Hashable, Sendable {
        /// udp-sender runs: waiting for receivers, sending, or waiting for the next round.
        case running
        /// Stopped by the admin, its time limit, or udp-sender's end (`detail` says which).
        case stopped
    }

    public var id: String
    public var image: String
    public var version: String
    /// The hostlist of nodes it is for.
    public var nodes: String
    public var trigger: Trigger
    public var state: State
    public var interface: String
    public var portBase: Int
    public var maxBitrate: String
    public var minReceivers: Int
    public var maxWaitSeconds: Int
    /// The stream: every object of the version once, as a pack (bytes and objects).
    public var streamBytes: Int
    public var objects: Int
    /// Unix seconds.
    public var started: Int64
    /// When the time limit stops it (Unix seconds).
    public var ends: Int64
    /// Why it stopped, or udp-sender's last message.
    public var detail: String?

    public init(
        id: String, image: String, version: String, nodes: String, trigger: Trigger, state: State, interface: String,
        portBase: Int, maxBitrate: String, minReceivers: Int, maxWaitSeconds: Int, streamBytes: Int, objects: Int,
        started: Int64, ends: Int64, detail: String? = nil
    ) {
        self.id = id
        self.image = image
        self.version = version
        self.nodes = nodes
        self.trigger = trigger
        self.state = state
        self.interface = interface
        self.portBase = portBase
        self.maxBitrate = maxBitrate
        self.minReceivers = minReceivers
        self.maxWaitSeconds = maxWaitSeconds
        self.streamBytes = streamBytes
        self.objects = objects
        self.started = started
        self.ends = ends
        self.detail = detail
    }
}

/// What a node needs to receive a session: where to listen and for how long.
public struct MulticastOffer: Codable, Hashable, Sendable {
    /// udpcast's control channel (`--mcast-rdv-address`) on both sides: the all-hosts group,
    /// link-local, so sender and receivers find each other only on the provisioning network.
    public static let rendezvousAddress = "224.0.0.1"

    public var session: String
    public var image: String
    public var version: String
    /// udpcast's `--portbase` (two UDP ports: this one and the next).
    public var portBase: Int
    /// The provisioning network (CIDR, `10.0.0.0/24`): the node receives on its interface in it.
    public var network: String
    /// udp-receiver `--start-timeout`: how long to wait for the transmission to start.
    public var startTimeoutSeconds: Int
    /// udp-receiver `--receive-timeout`: how long a silence during it may last.
    public var receiveTimeoutSeconds: Int
    public var streamBytes: Int
    public var objects: Int

    public init(
        session: String, image: String, version: String, portBase: Int, network: String, startTimeoutSeconds: Int,
        receiveTimeoutSeconds: Int, streamBytes: Int, objects: Int
    ) {
        self.session = session
        self.image = image
        self.version = version
        self.portBase = portBase
        self.network = network
        self.startTimeoutSeconds = startTimeoutSeconds
        self.receiveTimeoutSeconds = receiveTimeoutSeconds
        self.streamBytes = streamBytes
        self.objects = objects
    }
}

/// `GET /api/v1/sessions/{id}/multicast?image=NAME&version=V`: the server's answer to a node about
/// to sync. Exactly one of: an offer to join; wait and ask again (the policy counts nodes waiting
/// for the same version); neither (sync over HTTPS), with why.
public struct MulticastAnswer: Codable, Hashable, Sendable {
    public var offer: MulticastOffer?
    public var retryAfterSeconds: Int?
    public var reason: String

    public init(offer: MulticastOffer? = nil, retryAfterSeconds: Int? = nil, reason: String) {
        self.offer = offer
        self.retryAfterSeconds = retryAfterSeconds
        self.reason = reason
    }
}
