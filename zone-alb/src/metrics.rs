//! Proxy metrics (Prometheus text at `/metrics` on the admin listener): requests by Ingress,
//! Service and status class, request duration per Ingress, upstream errors, open connections.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

// Label values are shared strings from the routing table: building a label set per request
// costs reference counts, not allocations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name`, or empty when no Ingress matched.
    pub ingress: Arc<str>,
    pub service: Arc<str>,
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    pub ingress: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub ingress: Arc<str>,
    pub service: Arc<str>,
    /// `connect`, `timeout`, `other`.
    pub kind: &'static str,
}

pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<IngressLabels, Histogram>,
    pub upstream_errors: Family<UpstreamLabels, Counter>,
    pub connections: Gauge,
    /// Upstream connections opened; with `requests`, how well connections are reused.
    pub upstream_connections: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms … ~8 s
        let duration = Family::<IngressLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        let connections = Gauge::default();
        let upstream_connections = Counter::default();
        let mut registry = Registry::with_prefix("zone_alb");
        registry.register(
            "requests",
            "Requests by Ingress, Service and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head, per Ingress",
            duration.clone(),
        );
        registry.register("upstream_errors", "Failed upstream exchanges", upstream_errors.clone());
        registry.register("connections", "Open client connections", connections.clone());
        registry.register(
            "upstream_connections_opened",
            "Connections opened to backends",
            upstream_connections.clone(),
        );
        Self {
            requests,
            duration,
            upstream_errors,
            connections,
            upstream_connections,
            registry,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
