//! The load balancer's own metrics; with the DNS server's they are served as Prometheus text
//! at `/metrics` on the control API.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub cluster: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlbLabels {
    pub alb: String,
    pub zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlbStateLabels {
    pub alb: String,
    pub zone: String,
    pub state: String,
}

#[derive(Clone, Default)]
pub struct Metrics {
    /// 1 for each ALB's current state (pending, enabled, unhealthy, draining, disabled), 0
    /// for the others, as kube-state-metrics shows phases: a graph per state needs no mapping.
    pub alb_state: Family<AlbStateLabels, Gauge>,
    /// Addresses in each cluster's DNS answer now (0: resolvers get an empty answer).
    pub dns_answered_addresses: Family<ClusterLabels, Gauge>,
    /// Times a cluster started failing open (every enabled ALB unhealthy, all answered).
    pub fail_open: Family<ClusterLabels, Counter>,
    /// 1 while a cluster fails open.
    pub failing_open: Family<ClusterLabels, Gauge>,
    /// 1 while an ALB's IP is in the DNS answer.
    pub alb_in_dns: Family<AlbLabels, Gauge>,
    /// Health transitions per ALB.
    pub health_changes: Family<AlbLabels, Counter>,
    /// 1 for each cluster's active fail policy (`open` or `closed`).
    pub fail_policy: Family<PolicyLabels, Gauge>,
    /// Probers whose views count now, this replica included.
    pub probers_live: Gauge,
    /// 1 while a replica on a cluster hears from no other prober and decides alone.
    pub deciding_alone: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "fail_open",
            "Times a cluster began failing open",
            self.fail_open.clone(),
        );
        registry.register(
            "failing_open",
            "Whether a cluster is failing open now",
            self.failing_open.clone(),
        );
        registry.register(
            "alb_in_dns",
            "Whether an ALB's IP is answered in DNS",
            self.alb_in_dns.clone(),
        );
        registry.register(
            "alb_state",
            "1 for each ALB's current state (pending, enabled, unhealthy, draining, disabled)",
            self.alb_state.clone(),
        );
        registry.register(
            "dns_answered_addresses",
            "Addresses in a cluster's DNS answer now",
            self.dns_answered_addresses.clone(),
        );
        registry.register(
            "alb_health_changes",
            "ALB health transitions",
            self.health_changes.clone(),
        );
        registry.register(
            "probers_live",
            "Probers whose health views count now, this replica included",
            self.probers_live.clone(),
        );
        registry.register(
            "deciding_alone",
            "Whether this replica hears from no other prober and decides from its own probes alone",
            self.deciding_alone.clone(),
        );
    }
}

/// The whole registry: DNS metrics and ours, under the `mzlb_` prefix.
pub fn registry(dns: &dns::Metrics, ours: &Metrics) -> Registry {
    let mut registry = Registry::with_prefix("mzlb");
    dns.register(&mut registry);
    ours.register(&mut registry);
    registry
}
