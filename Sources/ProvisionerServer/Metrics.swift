import Foundation
import HTTPTypes
import Hummingbird
import Prometheus
import ProvisionerAPI
import Synchronization

/// The server's Prometheus metrics (docs/server-api.md, "Metrics"), kept in a registry of its own
/// (not swift-metrics' process-wide one, so every server in a process, every test's, counts alone),
/// served as text at `GET /metrics` to admin certificates, and on `metricsListen:` when the config
/// names one.
///
/// | metric | labels | what |
/// |---|---|---|
/// | `provisioner_http_requests_total` | listener, route, method, code | requests answered |
/// | `provisioner_http_errors_total` | listener, route, code | of those, 4xx and 5xx |
/// | `provisioner_http_response_bytes_total` | listener, route | body bytes sent (files, objects, JSON) |
/// | `provisioner_http_request_duration_seconds` | listener, route | histogram, to the response head |
/// | `provisioner_sessions_opened_total` | source (agent, ipxe) | boot sessions opened |
/// | `provisioner_sessions_finished_total` | outcome (succeeded, failed) | sessions the agent finished |
/// | `provisioner_sessions` | state, phase | sessions by state and last phase, read at each scrape |
/// | `provisioner_events_total` | level | events agents posted |
/// | `provisioner_boot_phase_duration_seconds` | phase | histogram of the phase durations agents report |
/// | `provisioner_boot_to_pivot_seconds` | | histogram: power-on to the switch into the image |
/// | `provisioner_multicast_sessions_total` | trigger (admin, policy) | multicast sessions started |
/// | `provisioner_multicast_stream_bytes_total` | | bytes of their streams (one round each) |
/// | `provisioner_multicast_sessions_running` | | multicast sessions running now |
///
/// Routes are the router's patterns (`/api/v1/sessions/{id}`), never the request's path, so labels
/// stay few whatever clients send.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    static let requestBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
        .seconds(10),
    ]
    static let phaseBuckets: [Double] = [0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600]
    static let pivotBuckets: [Double] = [5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200]

    public init() {}

    func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "provisioner", metricName: metric, unitName: unit, helpText: help)
    }

    /// One answered request.
    func request(listener: String, route: String, method: String, status: Int, bytes: Int, duration: Duration) {
        let code = String(status)
        registry.makeCounter(
            descriptor: name("http_requests", "total", "Requests answered, by route pattern and status."),
            labels: [("listener", listener), ("route", route), ("method", method), ("code", code)]
        ).increment()
        if status >= 400 {
            registry.makeCounter(
                descriptor: name("http_errors", "total", "Requests answered with 4xx or 5xx."),
                labels: [("listener", listener), ("route", route), ("code", code)]
            ).increment()
        }
        responseBytes(listener: listener, route: route).increment(by: Int64(bytes))
        registry.makeDurationHistogram(
            descriptor: name("http_request_duration", "seconds", "Time to the response head, by route pattern."),
            labels: [("listener", listener), ("route", route)], buckets: Self.requestBuckets
        ).record(duration)
    }

    /// The counter of a route's response bytes (a streamed body adds to it as it is written).
    func responseBytes(listener: String, route: String) -> Counter {
        registry.makeCounter(
            descriptor: name("http_response_bytes", "total", "Response body bytes, by route pattern."),
            labels: [("listener", listener), ("route", route)])
    }

    func sessionOpened(source: String) {
        registry.makeCounter(
            descriptor: name("sessions_opened", "total", "Boot sessions opened."), labels: [("source", source)]
        ).increment()
    }

    func sessionFinished(succeeded: Bool) {
        registry.makeCounter(
            descriptor: name("sessions_finished", "total", "Boot sessions their agent finished."),
            labels: [("outcome", succeeded ? "succeeded" : "failed")]
        ).increment()
    }

    /// Events an agent posted; those that carry a duration feed the phase and pivot histograms.
    func events(_ events: [AgentEvent]) {
        for event in events {
            registry.makeCounter(
                descriptor: name("events", "total", "Events agents posted."), labels: [("level", event.level.rawValue)]
            ).increment()
            guard let seconds = event.seconds, seconds.isFinite, seconds >= 0 else { continue }
            if event.phase == "pivot" {
                registry.makeValueHistogram(
                    descriptor: name("boot_to_pivot", "seconds", "Power-on to the switch into the image."),
                    labels: [], buckets: Self.pivotBuckets
                ).record(seconds)
            } else if Self.phases.contains(event.phase) {
                registry.makeValueHistogram(
                    descriptor: name("boot_phase_duration", "seconds", "How long each boot phase took."),
                    labels: [("phase", event.phase)], buckets: Self.phaseBuckets
                ).record(seconds)
            }
        }
    }

    /// The phases the agent reports durations of (others are not labels: an agent cannot make new series).
    static let phases: Set<String> = ["register", "disks", "image", "plugins", "bootloader", "fallback"]

    /// Sessions by state and last phase, as the database has them at a scrape. Series that went to
    /// zero are written as zero, not left at their last value.
    func setSessions(_ rows: [(state: String, phase: String, count: Int)]) {
        // A phase is whatever an agent last said: only the ones we know become labels.
        let counts = rows.map { (state: $0.state, phase: Self.phases.contains($0.phase) || $0.phase.isEmpty || $0.phase == "pivot" ? $0.phase : "other", count: $0.count) }
        let known = sessionSeries.withLock { seen -> Set<[String]> in
            for row in counts { seen.insert([row.state, row.phase]) }
            return seen
        }
        var values: [[String]: Int] = [:]
        for row in counts { values[[row.state, row.phase], default: 0] += row.count }
        for key in known {
            registry.makeGauge(
                descriptor: name("sessions", "", "Boot sessions by state and last phase."),
                labels: [("state", key[0]), ("phase", key[1])]
            ).set(Double(values[key] ?? 0))
        }
    }

    private let sessionSeries = Mutex(Set<[String]>())

    /// A multicast session started (docs/multicast.md); `streamBytes` is one round's size.
    func multicastStarted(trigger: String, streamBytes: Int) {
        registry.makeCounter(
            descriptor: name("multicast_sessions", "total", "Multicast sessions started."), labels: [("trigger", trigger)]
        ).increment()
        registry.makeCounter(
            descriptor: name("multicast_stream_bytes", "total", "Bytes of the streams multicast sessions send, one round each."),
            labels: []
        ).increment(by: Int64(streamBytes))
    }

    func setMulticastRunning(_ count: Int) {
        registry.makeGauge(descriptor: name("multicast_sessions_running", "", "Multicast sessions running now."), labels: [])
            .set(Double(count))
    }

    /// The Prometheus text format.
    public func render() -> String { registry.emitToString() }
}

/// Counts every request of a listener in `ServerMetrics`.
struct RequestMetricsMiddleware: RouterMiddleware {
    typealias Context = ProvisionerContext
    let metrics: ServerMetrics
    let listener: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        do {
            var response = try await next(request, context)
            let route = context.endpointPath ?? "unmatched"
            metrics.request(
                listener: listener, route: route, method: request.method.rawValue,
                status: response.status.code, bytes: response.body.contentLength ?? 0, duration: .now - start)
            if response.body.contentLength == nil {
                // A streamed body (object packs, large files): counted as its pieces go out.
                let counter = metrics.responseBytes(listener: listener, route: route)
                response.body = response.body.map { buffer in
                    counter.increment(by: Int64(buffer.readableBytes))
                    return buffer
                }
            }
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.request(
                listener: listener, route: context.endpointPath ?? "unmatched", method: request.method.rawValue,
                status: status, bytes: 0, duration: .now - start)
            throw error
        }
    }
}

extension Services {
    /// `GET /metrics`: the text format, sessions by phase read from the database first.
    func metricsResponse() async throws -> Response {
        metrics.setSessions(try await store.sessionCounts())
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }
}

extension Store {
    /// Sessions by state and last phase.
    func sessionCounts() async throws -> [(state: String, phase: String, count: Int)] {
        try await read {
            try await query("SELECT state, COALESCE(last_phase, '') AS phase, COUNT(*) AS n FROM sessions GROUP BY 1, 2")
                .map {
                    (
                        $0.column("state")?.string ?? "", $0.column("phase")?.string ?? "",
                        $0.column("n")?.integer ?? 0
                    )
                }
        }
    }
}
