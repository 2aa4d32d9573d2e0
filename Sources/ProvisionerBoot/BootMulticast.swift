import ProvisionerAPI

/// What the agent asks the server before it syncs (M1).
public struct MulticastQuery: Hashable, Sendable {
    public var image: String
    /// A version id, or `latest`: the server resolves it as the sync will.
    public var version: String

    public init(image: String, version: String) {
        self.image = image
        self.version = version
    }
}

/// Receive one multicast session's objects into a store directory (M2).
public struct MulticastTask: Hashable, Sendable {
    public var offer: MulticastOffer
    /// Where the objects go: a store directory inside the root's sync state, which the sync never
    /// treats as the node's files and the agent removes after the sync.
    public var directory: String

    public init(offer: MulticastOffer, directory: String) {
        self.offer = offer
        self.directory = directory
    }
}

extension BootStateMachine {
    /// Relative to the root: where received objects wait for the sync (inside `.provisioner-state`,
    /// which the image sync never compares, deletes or captures).
    public static let receivedDirectory = ".provisioner-state/received"
    /// The longest a node waits, in all, for the server's multicast policy to gather nodes (M3).
    public static let longestMulticastWaitSeconds = 600

    /// The server answered the question of M1.
    public mutating func multicastAnswered(_ answer: MulticastAnswer) -> BootDecision {
        expect([.multicasting], "the server's multicast answer")
        let task = run!.pendingSync!
        if let offer = answer.offer {
            guard offer.image == task.image else {
                return syncWithoutMulticast(
                    [.M4], warning: "the server offered multicast of image \(offer.image), not \(task.image); syncing over HTTPS")
            }
            let directory = settings.root + "/" + Self.receivedDirectory
            return BootDecision(.receiveMulticast(MulticastTask(offer: offer, directory: directory)), [.M2])
        }
        if let seconds = answer.retryAfterSeconds {
            let wait = min(max(seconds, 1), 30)
            guard run!.multicastWaited + wait <= Self.longestMulticastWaitSeconds else {
                return syncWithoutMulticast(
                    [.M3, .M4],
                    warning: "waited \(run!.multicastWaited) s for a multicast session (\(answer.reason)); syncing over HTTPS")
            }
            run!.multicastWaited += wait
            return BootDecision(.waitForMulticast(afterSeconds: wait, reason: answer.reason), [.M3])
        }
        return syncWithoutMulticast([.M4], info: "no multicast: \(answer.reason)")
    }

    /// The wait of M3 is over: ask again.
    public mutating func multicastWaitEnded() -> BootDecision {
        expect([.multicasting], "the end of a multicast wait")
        let task = run!.pendingSync!
        return BootDecision(.askMulticast(MulticastQuery(image: task.image, version: task.version)), [.M3, .M1])
    }

    /// The question of M1 got no answer (a server without multicast, the network): the image
    /// comes over HTTPS as always (M4).
    public mutating func multicastUnavailable(_ detail: String) -> BootDecision {
        expect([.multicasting], "an unanswered multicast question")
        return syncWithoutMulticast([.M4], warning: "could not ask about multicast (\(detail)); syncing over HTTPS")
    }

    /// The receive of M2 ended: `objects` whole objects arrived (`problem`: why it stopped early).
    /// The sync uses them and fetches the rest (M5); a receive that got nothing is only a warning.
    public mutating func multicastReceived(objects: Int, problem: String?) -> BootDecision {
        expect([.multicasting], "a finished multicast receive")
        var task = run!.pendingSync!
        run!.pendingSync = nil
        state = .syncing
        var warnings: [String] = []
        if let problem {
            warnings.append("multicast: \(problem); the sync fetches what is missing over HTTPS")
        }
        if objects > 0 { task.received = settings.root + "/" + Self.receivedDirectory }
        return BootDecision(.runSync(task), [.M5], warnings: warnings)
    }

    private mutating func syncWithoutMulticast(_ rules: [BootRule], warning: String? = nil, info: String? = nil)
        -> BootDecision
    {
        let task = run!.pendingSync!
        run!.pendingSync = nil
        state = .syncing
        return BootDecision(.runSync(task), rules, warnings: warning.map { [$0] } ?? [], notes: info.map { [$0] } ?? [])
    }
}
