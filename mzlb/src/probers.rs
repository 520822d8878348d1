//! How replicas share what they see on a cluster: every `mzlb serve` replica writes one small
//! `ProberReport` object (named after its pod) with its own view of every ALB, and watches
//! everyone else's. The registry decides from all fresh views ([`crate::verdict`]).
//!
//! One object per prober, not entries in `ZoneALB.status`: each replica is then the only
//! writer of its object (no conflicts, no read-modify-write), one write carries its view of
//! every ALB, and a replica that dies simply stops renewing (and its object goes with its pod,
//! through the owner reference).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::registry::{Health, Registry, millis, rfc3339};
use crate::verdict::{HEARTBEAT, View};

/// One prober's view of every ALB. Read leniently (no unknown-field refusal): a newer
/// replica's extra fields must not make older ones drop its report during a rollout.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mzlb.io",
    version = "v1alpha1",
    kind = "ProberReport",
    plural = "proberreports",
    namespaced,
    printcolumn = r#"{"name": "Renewed", "type": "string", "jsonPath": ".spec.renewTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProberReportSpec {
    /// Rewritten every second while the prober runs. Shown only: readers judge freshness by
    /// when they saw the report change, on their own clock.
    pub renew_time: String,
    #[serde(default)]
    pub albs: Vec<AlbView>,
}

/// One ALB as one prober sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbView {
    /// The ZoneALB's name.
    pub alb: String,
    pub health: Health,
    /// When this prober's view last changed (RFC 3339).
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Keeps this replica's report current: at once when its own view changes, else every
/// [`HEARTBEAT`]. Runs in its own task, so a slow API server delays nothing else.
pub async fn publish(
    client: Client,
    namespace: String,
    registry: Arc<Registry>,
    me: String,
    cancel: CancellationToken,
) {
    let api: Api<ProberReport> = Api::namespaced(client, &namespace);
    let mut own = registry.subscribe_own();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            r = own.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        let spec = spec_of(&registry.own_views());
        match write(&api, &me, spec).await {
            Ok(()) if failing => {
                tracing::info!("writing this replica's ProberReport again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::warn!(%error, "could not write this replica's ProberReport; the others stop counting its view");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

fn spec_of(views: &[(String, View)]) -> ProberReportSpec {
    ProberReportSpec {
        renew_time: Timestamp::now().to_string(),
        albs: views
            .iter()
            .map(|(alb, v)| AlbView {
                alb: alb.clone(),
                health: v.health,
                since: rfc3339(v.since_ms),
                last_error: v.last_error.clone(),
            })
            .collect(),
    }
}

/// A merge patch of the whole spec (only we write this object); created on first use, owned
/// by our pod when we know it.
async fn write(api: &Api<ProberReport>, me: &str, spec: ProberReportSpec) -> Result<(), kube::Error> {
    let patch = json!({ "spec": spec });
    match api.patch(me, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut report = ProberReport::new(me, spec);
            report.metadata = ObjectMeta {
                name: Some(me.to_owned()),
                owner_references: own_pod(me),
                ..Default::default()
            };
            api.create(&PostParams::default(), &report).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// The pod as owner, from the downward API (`POD_UID`), so the report goes with the pod.
fn own_pod(me: &str) -> Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>> {
    let uid = std::env::var("POD_UID").ok().filter(|u| !u.is_empty())?;
    Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: me.to_owned(),
        uid,
        ..Default::default()
    }])
}

/// Feeds every other prober's report to the registry as it changes. A report counts as seen
/// anew only when its resourceVersion moved: a relist after a reconnect re-sends every
/// object, and must not make a dead prober's last report look fresh.
pub async fn follow(client: Client, namespace: String, registry: Arc<Registry>, me: String, cancel: CancellationToken) {
    let api: Api<ProberReport> = Api::namespaced(client, &namespace);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut versions: HashMap<String, String> = HashMap::new();
    let mut failing = false;
    loop {
        let event = tokio::select! {
            e = stream.next() => match e { Some(e) => e, None => return },
            () = cancel.cancelled() => return,
        };
        match event {
            Ok(watcher::Event::Apply(report) | watcher::Event::InitApply(report)) => {
                failing = false;
                let name = report.name_any();
                let version = report.resource_version().unwrap_or_default();
                if name == me || versions.get(&name) == Some(&version) {
                    continue;
                }
                versions.insert(name.clone(), version);
                registry.peer_report(&name, views_of(&report));
            }
            Ok(watcher::Event::Delete(report)) => {
                let name = report.name_any();
                versions.remove(&name);
                registry.peer_gone(&name);
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => failing = false,
            Err(error) if !failing => {
                tracing::warn!(%error, "watching ProberReports failed; peers' views go stale and this replica decides alone until it is back");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// A report's views by ALB.
pub fn views_of(report: &ProberReport) -> HashMap<String, View> {
    let prober = report.name_any();
    report
        .spec
        .albs
        .iter()
        .map(|a| {
            let view = View {
                prober: prober.clone(),
                health: a.health,
                since_ms: millis(&a.since).unwrap_or(0),
                last_error: a.last_error.clone(),
                fresh: true,
                own: false,
            };
            (a.alb.clone(), view)
        })
        .collect()
}

/// Every report, for `mzlb albs` over a kubeconfig: one-shot, so freshness there is read
/// from `renewTime` against this machine's clock (shown, never used to decide).
pub async fn list(client: &Client) -> Result<Vec<ProberReport>, kube::Error> {
    let api: Api<ProberReport> = Api::all(client.clone());
    Ok(api.list(&Default::default()).await?.items)
}

/// Whether a report read once looks alive by its `renewTime` (display only).
pub fn looks_fresh(report: &ProberReport) -> bool {
    millis(&report.spec.renew_time).is_some_and(|at| {
        let now = Timestamp::now().as_millisecond().max(0) as u64;
        now.saturating_sub(at) < crate::verdict::STALE_AFTER.as_millis() as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_leniently_and_round_trip() {
        let report: ProberReport = serde_json::from_value(json!({
            "apiVersion": "mzlb.io/v1alpha1",
            "kind": "ProberReport",
            "metadata": {"name": "mzlb-1", "namespace": "mzlb-system", "resourceVersion": "7"},
            "spec": {
                "renewTime": "2026-12-02T10:00:00Z",
                "albs": [
                    {"alb": "a", "health": "unhealthy", "since": "2026-12-02T09:59:59Z",
                     "lastError": "timed out", "fromANewerVersion": 1},
                    {"alb": "b", "health": "healthy", "since": "2026-12-02T09:00:00Z"}
                ],
                "somethingNew": true
            }
        }))
        .expect("unknown fields from a newer replica are ignored");
        let views = views_of(&report);
        assert_eq!(views["a"].health, Health::Unhealthy);
        assert_eq!(views["a"].prober, "mzlb-1");
        assert_eq!(views["a"].last_error.as_deref(), Some("timed out"));
        assert_eq!(views["b"].since_ms, 1_796_202_000_000);
        // A health word it does not know is refused (the CRD's schema refuses it first).
        let bad = json!({"alb": "a", "health": "maybe", "since": ""});
        assert!(serde_json::from_value::<AlbView>(bad).is_err());
    }
}
