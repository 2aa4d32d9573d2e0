/// The steps of the boot flow, as the console and the session's events name them.
public enum BootPhase: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case register, disks, image, plugins, bootloader, fallback, system, pivot
    public var description: String { rawValue }
}

/// What kind of failure a step had: the retry rules (docs/boot.md, rows E1–E3) decide by this alone.
public enum FailureKind: String, Hashable, Sendable, CaseIterable {
    /// The server did not answer at all (connection refused, timed out, no route).
    case unreachable
    /// Something that can pass: the network, a mirror, I/O, a tool that failed.
    case transient
    /// The node's configuration (or the config saved on the ESP) is wrong: a stateful node
    /// without a layout, a layout that does not parse, a plugin with bad parameters.
    case configuration
    /// The layout planner refused the layout: nothing was written.
    case refused
    /// The layout does not map onto this machine's disks.
    case unmatched
    /// The fallback found nothing it may boot: never installed, the last sync unfinished, or
    /// disks that no longer match the saved layout.
    case notInstalled

    /// Whether the same boot can succeed when tried again (E1) or fails the same way every time (E3).
    public var mayPass: Bool {
        switch self {
        case .unreachable, .transient, .notInstalled: true
        case .configuration, .refused, .unmatched: false
        }
    }
}

/// A failure of the boot flow: in which phase, what kind, and what happened to what.
public struct BootFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public var phase: BootPhase
    public var kind: FailureKind
    public var message: String

    public init(_ phase: BootPhase, _ kind: FailureKind, _ message: String) {
        self.phase = phase
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(phase): \(message)" }
}
