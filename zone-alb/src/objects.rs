//! The object model shared by every mode: mzlb's own resources (`ZoneALB`, `MultiZoneCluster`)
//! and the Kubernetes objects an ingress needs. A source (a manifest directory today, the API
//! server later) fills an [`Objects`] set; everything downstream is compiled from it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One zone's application load balancer: `metadata.name` is the ALB ID.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mzlb.io",
    version = "v1alpha1",
    kind = "ZoneALB",
    plural = "zonealbs",
    shortname = "zalb",
    status = "ZoneALBStatus",
    printcolumn = r#"{"name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled"}"#,
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.state"}"#,
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".spec.type"}"#,
    printcolumn = r#"{"name": "IP", "type": "string", "jsonPath": ".spec.ip"}"#,
    printcolumn = r#"{"name": "Zone", "type": "string", "jsonPath": ".spec.zone"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ZoneALBSpec {
    /// The zone (data centre) this ALB serves, e.g. `zone-1`.
    pub zone: String,
    /// The zone's portable IP: what DNS answers and what the ALB binds.
    pub ip: IpAddr,
    /// Listening port; standalone mode only (on a cluster the Service owns the port).
    #[serde(default = "default_alb_port")]
    pub port: u16,
    /// HTTPS port, if the ALB terminates TLS; standalone mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// A disabled ALB is never answered in DNS, whatever its health.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `public` (answered in the cluster's public subdomain) or `private`.
    #[serde(default, rename = "type")]
    pub type_: AlbType,
    /// The `MultiZoneCluster` this ALB belongs to; may be omitted when there is only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Health-check settings for this ALB only, over the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthOverride>,
}

/// Whom an ALB serves, as on IBM Cloud: the Internet, or only the private network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlbType {
    #[default]
    Public,
    Private,
}

impl std::fmt::Display for AlbType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlbType::Public => "public",
            AlbType::Private => "private",
        })
    }
}

/// What mzlb last observed of an ALB, written by the elected `mzlb serve` replica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneALBStatus {
    /// `pending`, `enabled`, `unhealthy`, `draining` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// RFC 3339 time `state` was entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// `Healthy` (the probes' verdict) and `InDNS` (answered now), as Kubernetes conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<LastProbe>,
    /// The last failed probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastProbe>,
}

/// One health probe's outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastProbe {
    /// RFC 3339 time of the probe.
    pub time: String,
    pub ok: bool,
    pub latency_ms: f64,
    /// `200 OK`, or what went wrong.
    pub detail: String,
}

/// Any of the cluster's health settings, overridden for one ALB.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthOverride {
    pub mode: Option<ProbeMode>,
    pub path: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

impl HealthSpec {
    /// These settings with `o`'s fields on top.
    pub fn with(&self, o: &HealthOverride) -> HealthSpec {
        HealthSpec {
            mode: o.mode.unwrap_or(self.mode),
            path: o.path.clone().unwrap_or_else(|| self.path.clone()),
            interval_ms: o.interval_ms.unwrap_or(self.interval_ms),
            timeout_ms: o.timeout_ms.unwrap_or(self.timeout_ms),
            rise: o.rise.unwrap_or(self.rise),
            fall: o.fall.unwrap_or(self.fall),
        }
    }
}

/// How an ALB is probed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    /// `GET <path>` must answer 2xx.
    #[default]
    Http,
    /// A TCP connection must be accepted.
    Tcp,
}

/// What DNS answers when every enabled ALB of a cluster is unhealthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailPolicy {
    /// Answer every enabled ALB: a guess that may work beats an answer that surely fails.
    #[default]
    Open,
    /// Answer nothing (NODATA).
    Closed,
}

/// A cluster's ingress subdomain and the policy for answering it: `metadata.name` is the
/// cluster's name.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mzlb.io",
    version = "v1alpha1",
    kind = "MultiZoneCluster",
    plural = "multizoneclusters",
    shortname = "mzc"
)]
#[serde(rename_all = "camelCase")]
pub struct MultiZoneClusterSpec {
    /// The DNS zone mzlb is authoritative for, e.g. `demo.mzlb.test`; the apex and every name
    /// below it resolve to the healthy, enabled ALBs.
    pub subdomain: String,
    /// TTL of the answers, in seconds: it bounds how long clients keep using a failed zone.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default)]
    pub health: HealthSpec,
    /// The zone's SOA and NS records.
    #[serde(default)]
    pub soa: SoaSpec,
    #[serde(default)]
    pub fail_policy: FailPolicy,
    /// How long a disabled ALB keeps being reported as draining (it left DNS at once, but
    /// clients may hold the old answer for a TTL); default TTL + 2 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<u32>,
    /// ingress-nginx's ConfigMap settings that change how Ingresses are served, under its own
    /// keys and string values (a ConfigMap's `data` pasted in): `proxy-body-size`,
    /// `ssl-redirect`, `limit-req-status-code`, `limit-conn-status-code`,
    /// `use-forwarded-headers`, `proxy-real-ip-cidr`, `enable-underscores-in-headers`,
    /// `custom-http-errors`, `allow-snippet-annotations`, `global-allowed-response-headers`.
    /// Other keys are reported and ignored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingress_nginx: BTreeMap<String, String>,
}

impl MultiZoneCluster {
    /// `albhealth.<subdomain>`: the host reserved for the ALBs' own health answer (IBM's
    /// convention). mzlb's probes send it; no tenant can be served under it.
    pub fn health_host(&self) -> String {
        format!(
            "albhealth.{}",
            self.spec.subdomain.trim_end_matches('.').to_ascii_lowercase()
        )
    }
}

/// SOA fields of a cluster's zone. The serial is not here: mzlb increases it on every change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SoaSpec {
    /// Primary name server, also served as the apex NS record; default `ns.<subdomain>`.
    /// Delegate the subdomain to this name.
    pub primary_name_server: Option<String>,
    /// Responsible mailbox, as `hostmaster@example.com` or in DNS form; default
    /// `hostmaster.<subdomain>`.
    pub hostmaster: Option<String>,
    /// Seconds; defaults 3600, 600, 86400.
    pub refresh: Option<i32>,
    pub retry: Option<i32>,
    pub expire: Option<i32>,
    /// Negative-caching TTL in seconds; default the cluster's `ttl`.
    pub minimum: Option<u32>,
    /// Addresses of the primary name server (mzlb's DNS Service), answered for its name when
    /// that is inside the subdomain. Without them the name server's name has no addresses here
    /// (it is never answered with the ALBs' addresses by the wildcard).
    pub name_server_addresses: Vec<IpAddr>,
    /// TTL of the NS record and the name server's addresses, in seconds; default 86400.
    pub ns_ttl: Option<u32>,
}

/// How mzlb probes each ALB of a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthSpec {
    pub mode: ProbeMode,
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive successes before an unhealthy ALB is answered again.
    pub rise: u32,
    /// Consecutive failures before a healthy ALB leaves the answer.
    pub fall: u32,
}

impl Default for HealthSpec {
    fn default() -> Self {
        // Sub-second detection (3 × 200 ms) while one lost probe never flaps DNS.
        Self {
            mode: ProbeMode::Http,
            path: "/healthz".into(),
            interval_ms: 200,
            timeout_ms: 150,
            rise: 2,
            fall: 3,
        }
    }
}

fn default_alb_port() -> u16 {
    80
}
fn default_true() -> bool {
    true
}
fn default_ttl() -> u32 {
    5
}

/// Where an object came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based index of the YAML document within the file.
    pub document: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// `kind namespace/name`, the way people name objects in messages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Every object mzlb reads, whatever the source. The many and big kinds are shared (`Arc`):
/// a snapshot of the API server's objects on every change then copies pointers, not objects.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub zone_albs: Vec<ZoneALB>,
    pub clusters: Vec<MultiZoneCluster>,
    pub ingresses: Vec<Arc<Ingress>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// TLS certificates (`kubernetes.io/tls`) referenced by Ingress `spec.tls`.
    pub secrets: Vec<Arc<Secret>>,
    /// ConfigMaps, for the annotations that name one (`custom-headers`,
    /// `auth-proxy-set-headers`); only their `data` is kept from the API server.
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// Gateway API objects (`gateway.networking.k8s.io/v1`).
    pub gateway_classes: Vec<Arc<crate::gateway::model::GatewayClass>>,
    pub gateways: Vec<Arc<crate::gateway::model::Gateway>>,
    pub http_routes: Vec<Arc<crate::gateway::model::HTTPRoute>>,
    pub grpc_routes: Vec<Arc<crate::gateway::model::GRPCRoute>>,
    pub reference_grants: Vec<Arc<crate::gateway::model::ReferenceGrant>>,
    pub backend_tls_policies: Vec<Arc<crate::gateway::model::BackendTLSPolicy>>,
    /// Namespaces, for their labels (Gateway listeners' `allowedRoutes` selectors).
    pub namespaces: Vec<Arc<k8s_openapi::api::core::v1::Namespace>>,
    /// Where each object was read from (empty for the API server).
    pub origins: BTreeMap<ObjectKey, Origin>,
}

impl Objects {
    /// Names the object and, when known, the file it came from.
    pub fn describe(&self, key: &ObjectKey) -> String {
        match self.origins.get(key) {
            Some(origin) => format!("{key} in {origin}"),
            None => key.to_string(),
        }
    }

    /// The ConfigMap `namespace/name`, if there is one.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .iter()
            .find(|c| c.metadata.namespace.as_deref() == Some(namespace) && c.metadata.name.as_deref() == Some(name))
            .map(|c| &**c)
    }

    pub fn zone_alb(&self, id: &str) -> Option<&ZoneALB> {
        self.zone_albs
            .iter()
            .find(|alb| alb.metadata.name.as_deref() == Some(id))
    }

    /// The cluster an ALB belongs to: the one it names, or the only one there is.
    pub fn cluster_of(&self, alb: &ZoneALB) -> Option<&MultiZoneCluster> {
        match &alb.spec.cluster {
            Some(name) => self.clusters.iter().find(|c| c.metadata.name.as_deref() == Some(name)),
            None if self.clusters.len() == 1 => self.clusters.first(),
            None => None,
        }
    }
}

/// The key of a namespaced object (`default` when the manifest names no namespace, as kubectl).
pub fn key_of(
    kind: &'static str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespaced: bool,
) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: namespaced.then(|| meta.namespace.clone().unwrap_or_else(|| "default".into())),
        name: meta.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn zone_alb_crd_reads_like_a_cloud_albs_listing() {
        let crd = ZoneALB::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.group, "mzlb.io");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Enabled", "Status", "Type", "IP", "Zone", "Age"]);
        assert!(
            version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "status is a subresource, so only the elected writer's patches touch it"
        );
        let schema = serde_json::to_value(&version.schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["type"]["enum"],
            serde_json::json!(["public", "private"])
        );
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        for field in ["state", "conditions", "lastProbe"] {
            assert!(status.get(field).is_some(), "status.{field} in the schema: {status}");
        }
    }

    #[test]
    fn a_zone_alb_from_the_api_server_round_trips() {
        let alb: ZoneALB = serde_json::from_value(serde_json::json!({
            "apiVersion": "mzlb.io/v1alpha1", "kind": "ZoneALB",
            "metadata": {"name": "alb1", "resourceVersion": "7"},
            "spec": {"zone": "zone-1", "ip": "2001:db8::1", "type": "private"},
            "status": {"state": "enabled", "lastProbe": {"time": "2026-01-01T00:00:00Z", "ok": true, "latencyMs": 1.5, "detail": "200 OK"}}
        }))
        .unwrap();
        assert_eq!(alb.spec.type_, AlbType::Private);
        assert!(alb.spec.enabled, "enabled by default");
        assert_eq!(alb.status.unwrap().last_probe.unwrap().detail, "200 OK");
    }

    #[test]
    fn objects_from_the_api_server_are_read_leniently() {
        // A newer chart's CRD may carry fields this replica does not know yet: the API server
        // keeps them, and they must not fail the whole list for us during the rollout.
        let alb: ZoneALB = serde_json::from_value(serde_json::json!({
            "apiVersion": "mzlb.io/v1alpha1", "kind": "ZoneALB",
            "metadata": {"name": "alb1"},
            "spec": {"zone": "zone-1", "ip": "10.0.0.1", "weight": 3, "health": {"rise": 1, "jitter": 5}},
            "status": {"state": "enabled", "newCondition": {}}
        }))
        .expect("unknown fields from a newer version are ignored");
        assert_eq!(alb.spec.health.and_then(|h| h.rise), Some(1));
        let cluster: MultiZoneCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "mzlb.io/v1alpha1", "kind": "MultiZoneCluster",
            "metadata": {"name": "c"},
            "spec": {"subdomain": "c.test", "soa": {"refresh": 60, "future": true}, "more": []}
        }))
        .expect("unknown fields from a newer version are ignored");
        assert_eq!(cluster.spec.soa.refresh, Some(60));
    }
}
