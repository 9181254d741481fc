import HearthAggregation
import Prometheus

/// The aggregator's Prometheus metrics (`GET /metrics`, text exposition format).
public final class AggregatorMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let accepted: Counter
    let replayed: Counter
    let bufferFill: Gauge
    let modelVersion: Gauge
    let epsilonSpent: Gauge
    let connectionsOpen: Gauge

    private static var rejectedName: MetricNameDescriptor { MetricNameDescriptor(namespace: "hearth", metricName: "updates_rejected", unitName: "total",
                                                           helpText: "Uploads rejected, by reason.") }
    private static var refusedConnectionsName: MetricNameDescriptor {
        MetricNameDescriptor(namespace: "hearth", metricName: "connections_refused", unitName: "total",
                             helpText: "Connections refused over server.max_connections or cut off at server.request_timeout_seconds, by reason.")
    }
    private static var latencyName: MetricNameDescriptor { MetricNameDescriptor(namespace: "hearth", metricName: "request_duration", unitName: "seconds",
                                                          helpText: "Request latency by route.") }

    /// Every metric registered in a fresh registry (rejection counters for every known reason
    /// start at zero, so dashboards see them before the first rejection).
    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        accepted = registry.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "hearth", metricName: "updates_accepted", unitName: "total",
            helpText: "Device updates accepted (durable) and folded into the buffer."))
        replayed = registry.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "hearth", metricName: "updates_replayed", unitName: "total",
            helpText: "Uploads answered as duplicates of an accepted idempotency key."))
        bufferFill = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "hearth", metricName: "buffer", unitName: "updates",
            helpText: "Accepted updates waiting in the FedBuff buffer."))
        modelVersion = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "hearth", metricName: "model", unitName: "version", helpText: "The model version being served."))
        epsilonSpent = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "hearth", metricName: "epsilon", unitName: "spent",
            helpText: "Epsilon of the released model (central ledger)."))
        connectionsOpen = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "hearth", metricName: "connections", unitName: "open",
            helpText: "Connections open now (at most server.max_connections)."))
        for reason in ConnectionRefusal.all {
            _ = registry.makeCounter(descriptor: AggregatorMetrics.refusedConnectionsName, labels: [("reason", reason)])
        }
        for reason in AggregatorMetrics.knownReasons {
            _ = registry.makeCounter(descriptor: AggregatorMetrics.rejectedName, labels: [("reason", reason)])
        }
    }

    /// Reasons the server itself produces, besides the aggregation core's.
    static let knownReasons: [String] = AggregationError.reasons + [
        "unauthenticated", "unknown_device", "revoked_device", "body_too_large", "incomplete_body", "unsupported_media_type",
        "missing_idempotency_key", "idempotency_key_mismatch", "idempotency_key_conflict", "rate_limited", "already_contributed",
        "store_unavailable",
    ]

    func rejected(reason: String) {
        registry.makeCounter(descriptor: AggregatorMetrics.rejectedName, labels: [("reason", reason)]).increment()
    }

    /// Counts a connection refused or cut off by the server's limits (`ConnectionRefusal`).
    func connectionRefused(reason: String) {
        registry.makeCounter(descriptor: AggregatorMetrics.refusedConnectionsName, labels: [("reason", reason)]).increment()
    }

    /// A latency histogram for one route.
    func latency(route: String) -> DurationHistogram {
        registry.makeDurationHistogram(descriptor: AggregatorMetrics.latencyName, labels: [("route", route)],
                                       buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100),
                                                 .milliseconds(500), .seconds(2), .seconds(10)])
    }

    /// The exposition text.
    public func render() -> [UInt8] {
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }
}
