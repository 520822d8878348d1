//! Proxy metrics (Prometheus text at `/metrics` on the admin listener): requests by Ingress,
//! Service and status class, request duration per Ingress, upstream errors, open connections.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::router::RouteTable;

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
pub struct RejectLabels {
    /// `change`: a whole new configuration refused (the last good table keeps serving);
    /// `ingress`: one Ingress refused on a cluster (its paths answer 503).
    pub scope: &'static str,
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
    /// Configurations refused, by scope; what an alert on a rejecting ALB watches.
    pub config_rejected: Family<RejectLabels, Counter>,
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
        let config_rejected = Family::<RejectLabels, Counter>::default();
        // Both series exist from the start, so `increase()` sees the first rejection.
        for scope in ["change", "ingress"] {
            let _ = config_rejected.get_or_create(&RejectLabels { scope });
        }
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
        registry.register(
            "config_rejected",
            "Configurations refused: a whole change (scope=change) or one Ingress (scope=ingress)",
            config_rejected.clone(),
        );
        Self {
            requests,
            duration,
            upstream_errors,
            connections,
            upstream_connections,
            config_rejected,
            registry,
        }
    }
}

impl Metrics {
    pub fn rejected(&self, scope: &'static str) {
        self.config_rejected.get_or_create(&RejectLabels { scope }).inc();
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

impl Metrics {
    /// Drops the label sets of every (Ingress, Service) pair `old` routed and `new` does not:
    /// without this, a cluster that keeps creating and deleting Ingresses grows them without
    /// bound. (A request still in flight on `old` may count once more under a dropped set.)
    pub fn forget(&self, old: &RouteTable, new: &RouteTable) {
        let (was, now) = (old.label_pairs(), new.label_pairs());
        let kept_ingresses: HashSet<&Arc<str>> = now.iter().map(|(i, _)| i).collect();
        for (ingress, service) in was.difference(&now) {
            for status in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                self.requests.remove(&RequestLabels {
                    ingress: ingress.clone(),
                    service: service.clone(),
                    status,
                });
            }
            for kind in ["connect", "timeout", "other"] {
                self.upstream_errors.remove(&UpstreamLabels {
                    ingress: ingress.clone(),
                    service: service.clone(),
                    kind,
                });
            }
            if !kept_ingresses.contains(ingress) {
                self.duration.remove(&IngressLabels {
                    ingress: ingress.clone(),
                });
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Objects;
    use crate::source::dir::load_str;

    fn table(ingress: &str) -> RouteTable {
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: app}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {ingress}}}\nspec:\n  ingressClassName: mzlb\n  rules:\n\
             \x20 - host: {ingress}.test\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}]}}\n"
        );
        let mut objects = Objects::default();
        load_str(&yaml, std::path::Path::new("t.yaml"), &mut objects).unwrap();
        RouteTable::compile(&objects, "mzlb", "z", &Default::default()).unwrap()
    }

    #[test]
    fn label_sets_of_ingresses_no_longer_routed_are_dropped() {
        let m = Metrics::default();
        let labels = |ingress: &str, status| RequestLabels {
            ingress: Arc::from(ingress),
            service: Arc::from("default/app:80"),
            status,
        };
        let (a, b) = (table("a"), table("b"));
        for ingress in ["default/a", "default/b", ""] {
            m.requests.get_or_create(&labels(ingress, "2xx")).inc();
        }
        m.requests.get_or_create(&labels("default/a", "5xx")).inc();
        m.duration
            .get_or_create(&IngressLabels {
                ingress: Arc::from("default/a"),
            })
            .observe(0.1);
        m.forget(&a, &b);
        let has = |ingress: &str, status| m.requests.get(&labels(ingress, status)).is_some();
        assert!(!has("default/a", "2xx") && !has("default/a", "5xx"));
        let a = IngressLabels {
            ingress: Arc::from("default/a"),
        };
        assert!(m.duration.get(&a).is_none());
        assert!(has("default/b", "2xx"), "still routed");
        assert!(has("", "2xx"), "unmatched requests are always counted");
    }
}
