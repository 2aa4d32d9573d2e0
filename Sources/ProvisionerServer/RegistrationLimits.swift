import Logging
import Synchronization

/// How many machines may wait unassigned, and how often one address or one MAC may open or refresh
/// a boot session (docs/threat-model.md, "Limits"). A real machine registers once per boot and its
/// iPXE loop asks again every `pollAfterSeconds`; the defaults leave room for both several times over.
public struct RegistrationLimits: Sendable, Equatable {
    /// Machines listed as pending at once; a new one beyond this is refused with 429 until an
    /// entry is assigned or expires.
    public var maxPending = 1024
    /// A pending entry not refreshed for this long no longer counts (its session is abandoned).
    public var pendingExpirySeconds = 600
    /// Session opens (agent registrations and iPXE requests) per minute from one address.
    public var perAddressPerMinute = 120
    /// Session opens per minute naming one MAC.
    public var perMACPerMinute = 30

    public init() {}
}

/// Token buckets, one per key: each holds up to `perMinute` tokens and refills at `perMinute` a
/// minute. Pure (time is passed in); `RegistrationLimiter` keeps it behind a lock.
public struct TokenBuckets: Sendable {
    public enum Decision: Equatable, Sendable {
        case allowed
        /// Refused; a token is back after this many seconds (at least 1). `first` is true for the
        /// first refusal since the key was last allowed, so a flood is logged once, not per request.
        case limited(retryAfter: Int, first: Bool)
    }

    struct Bucket: Sendable {
        var tokens: Double
        var updated: Duration
        var refusing = false
    }

    public let perMinute: Int
    /// Keys kept at most; past this, keys whose bucket is full again are forgotten, and while every
    /// key is still in use a new key is refused (a flood of made-up keys cannot grow memory).
    public let maxKeys: Int
    private var buckets: [String: Bucket] = [:]

    public init(perMinute: Int, maxKeys: Int = 65536) {
        self.perMinute = max(1, perMinute)
        self.maxKeys = max(1, maxKeys)
    }

    public var keyCount: Int { buckets.count }

    private var ratePerSecond: Double { Double(perMinute) / 60 }

    public mutating func take(_ key: String, now: Duration) -> Decision {
        var bucket: Bucket
        if let known = buckets[key] {
            bucket = known
            let elapsed = Double((now - known.updated).components.seconds)
                + Double((now - known.updated).components.attoseconds) / 1e18
            bucket.tokens = min(Double(perMinute), bucket.tokens + max(0, elapsed) * ratePerSecond)
        } else {
            if buckets.count >= maxKeys { forgetIdle(now: now) }
            guard buckets.count < maxKeys else { return .limited(retryAfter: 60, first: false) }
            bucket = Bucket(tokens: Double(perMinute), updated: now)
        }
        bucket.updated = now
        defer { buckets[key] = bucket }
        if bucket.tokens >= 1 {
            bucket.tokens -= 1
            bucket.refusing = false
            return .allowed
        }
        let first = !bucket.refusing
        bucket.refusing = true
        return .limited(retryAfter: max(1, Int(((1 - bucket.tokens) / ratePerSecond).rounded(.up))), first: first)
    }

    /// Drops the keys whose bucket has refilled completely: they behave exactly like new keys.
    private mutating func forgetIdle(now: Duration) {
        let full = Duration.seconds(60)
        buckets = buckets.filter { now - $0.value.updated < full }
    }
}

/// The server's registration guard: per-address and per-MAC buckets behind one lock.
public final class RegistrationLimiter: Sendable {
    public let limits: RegistrationLimits
    private static let start = ContinuousClock.now
    private let state: Mutex<(addresses: TokenBuckets, macs: TokenBuckets)>

    public init(_ limits: RegistrationLimits) {
        self.limits = limits
        state = Mutex((TokenBuckets(perMinute: limits.perAddressPerMinute), TokenBuckets(perMinute: limits.perMACPerMinute)))
    }

    /// Counts one session open from `address` naming `macs`; throws 429 with `Retry-After` when the
    /// address or any MAC is over its rate, and logs the first refusal of each burst.
    public func admit(address: String?, macs: [String], what: String, logger: Logger) throws {
        let now = ContinuousClock.now - Self.start
        let refusal: (key: String, retryAfter: Int, first: Bool)? = state.withLock { state in
            if let address, case .limited(let after, let first) = state.addresses.take("address " + address, now: now)
            {
                return ("address \(address)", after, first)
            }
            for mac in macs {
                if case .limited(let after, let first) = state.macs.take(mac, now: now) {
                    return ("MAC \(mac)", after, first)
                }
            }
            return nil
        }
        guard let refusal else { return }
        if refusal.first {
            logger.warning(
                "refusing \(what) from \(address ?? "?"): \(refusal.key) is over its rate (\(refusal.key.hasPrefix("MAC") ? limits.perMACPerMinute : limits.perAddressPerMinute) a minute); later refusals of this burst are not logged"
            )
        }
        throw APIError(
            .tooManyRequests, "rate-limited",
            "\(refusal.key) opened too many boot sessions; try again in \(refusal.retryAfter) s",
            retryAfter: refusal.retryAfter)
    }
}

