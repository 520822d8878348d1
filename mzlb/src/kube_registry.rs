//! `mzlb serve` on a cluster: ZoneALB and MultiZoneCluster objects are the registry. Every
//! replica watches them, probes every ALB and answers DNS on its own (no replica depends on
//! another, nor on the API server once it has the objects: an unreachable API server leaves
//! the last known ALBs answered). One replica, elected with a Lease, writes what it sees to
//! each ZoneALB's status. `spec.enabled` is the operator's switch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zone_alb::lease;
use zone_alb::objects::{LastProbe, Objects, ZoneALB, ZoneALBStatus};
use zone_alb::source::kube_watch::{self, KubeOptions, Scope, Watched};

use crate::error::{Error, Result};
use crate::registry::{self, AlbState, AlbStatus, Health, Probe, Registry, millis, rfc3339};
use crate::serve::{Running, ServeOptions};

/// The Lease electing the replica that writes ZoneALB status.
pub const STATUS_LEASE: &str = "mzlb-serve-status";
/// How long to wait for the API server's first complete lists.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// `lastProbe` alone is refreshed this often; state changes are written at once.
const PROBE_REFRESH: Duration = Duration::from_secs(30);

/// Starts serving from the cluster's objects.
pub async fn start(kube: &KubeOptions, opts: ServeOptions, cancel: CancellationToken) -> Result<Running> {
    let client = kube.client().await?;
    let mut watched = kube_watch::start(&client, Scope::Registry, None);
    watched.ready(SYNC_TIMEOUT).await?;
    let objects = first_config(&mut watched).await?;
    let running = crate::serve::start_with(objects, opts, cancel.clone(), Some(client.clone())).await?;
    tokio::spawn(follow(watched.clone(), running.registry.clone(), cancel.clone()));
    let namespace = KubeOptions::namespace(&client);
    // Replicas agree on health through one ProberReport each.
    let me = lease::identity();
    running.registry.set_identity(me.clone());
    tokio::spawn(crate::probers::publish(
        client.clone(),
        namespace.clone(),
        running.registry.clone(),
        me.clone(),
        cancel.clone(),
    ));
    tokio::spawn(crate::probers::follow(
        client.clone(),
        namespace.clone(),
        running.registry.clone(),
        me,
        cancel.clone(),
    ));
    let leader = lease::campaign(
        client.clone(),
        &namespace,
        STATUS_LEASE,
        lease::identity(),
        cancel.clone(),
    );
    tokio::spawn(write_status(client, watched, running.registry.clone(), leader, cancel));
    Ok(running)
}

/// Waits until the objects make a valid configuration (a MultiZoneCluster may come later).
async fn first_config(watched: &mut Watched) -> Result<Objects> {
    let mut last = String::new();
    loop {
        let objects = watched.snapshot();
        match registry::configs(&objects) {
            Ok(_) => return Ok(objects),
            Err(error) => {
                if error.to_string() != last {
                    tracing::warn!(%error, "waiting for a valid set of MultiZoneCluster and ZoneALB objects");
                    last = error.to_string();
                }
            }
        }
        watched
            .changes
            .changed()
            .await
            .map_err(|_| Error::Objects(zone_alb::Error::Kube("the watchers stopped".into())))?;
    }
}

/// Applies every change of the objects to the registry; a bad change is logged and the last
/// good configuration kept.
async fn follow(mut watched: Watched, registry: Arc<Registry>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            r = watched.changes.changed() => if r.is_err() { return },
            () = cancel.cancelled() => return,
        }
        let objects = watched.snapshot();
        let result = registry::configs(&objects).and_then(|(clusters, albs)| registry.reconfigure(clusters, albs));
        if let Err(error) = result {
            tracing::error!(%error, "ZoneALB change rejected; DNS keeps answering from the last good configuration");
        }
    }
}

/// While elected, keeps every ZoneALB's status in step with the registry.
async fn write_status(
    client: Client,
    watched: Watched,
    registry: Arc<Registry>,
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let api: Api<ZoneALB> = Api::all(client);
    let mut changes = registry.subscribe_changes();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // What we last wrote per ALB (without lastProbe), and when.
    let mut written: HashMap<String, (ZoneALBStatus, tokio::time::Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            _ = leader.changed() => written.clear(),
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        if !*leader.borrow() {
            continue;
        }
        let objects = watched.snapshot();
        for alb in registry.status() {
            let current = objects.zone_alb(&alb.id).and_then(|a| a.status.clone());
            let status = status_of(&alb, current.as_ref());
            let mut comparable = status.clone();
            comparable.last_probe = None;
            let fresh = written
                .get(&alb.id)
                .is_some_and(|(s, at)| *s == comparable && at.elapsed() < PROBE_REFRESH);
            if fresh {
                continue;
            }
            let patch = json!({ "status": status });
            match api
                .patch_status(&alb.id, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    written.insert(alb.id.clone(), (comparable, tokio::time::Instant::now()));
                }
                Err(error) => tracing::warn!(alb = %alb.id, %error, "could not write ZoneALB status"),
            }
        }
    }
}

/// The status subresource for one ALB; condition transition times are kept from `current`
/// while a condition's status stays the same.
pub fn status_of(alb: &AlbStatus, current: Option<&ZoneALBStatus>) -> ZoneALBStatus {
    let (healthy, reason) = match alb.health {
        Health::Healthy => ("True", "ProbesPassing"),
        Health::Unhealthy => ("False", "ProbesFailing"),
        Health::Pending => ("Unknown", "NotProbedYet"),
    };
    let detail = alb.last_probe.as_ref().map_or_else(String::new, |p| p.detail.clone());
    let in_dns = if alb.in_dns { "True" } else { "False" };
    let condition = |type_: &str, status: &str, reason: &str, message: String| {
        let since = current
            .and_then(|c| c.conditions.iter().find(|x| x.type_ == type_ && x.status == status))
            .map_or_else(|| Time(Timestamp::now()), |x| x.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: None,
        }
    };
    ZoneALBStatus {
        state: Some(alb.state.to_string()),
        since: Some(rfc3339(alb.since_ms)),
        conditions: vec![
            condition("Healthy", healthy, reason, detail),
            condition(
                "InDNS",
                in_dns,
                if alb.in_dns { "Answered" } else { "NotAnswered" },
                format!("state {}", alb.state),
            ),
        ],
        last_probe: alb.last_probe.as_ref().map(last_probe),
        last_error: alb.last_error.as_ref().map(last_probe),
    }
}

fn last_probe(p: &Probe) -> LastProbe {
    LastProbe {
        time: rfc3339(p.at_ms),
        ok: p.ok,
        latency_ms: (p.latency_ms * 1000.0).round() / 1000.0,
        detail: p.detail.clone(),
    }
}

/// What `mzlb albs` shows for a ZoneALB read from the API server, with every prober's view
/// from `reports`.
pub fn alb_status(alb: &ZoneALB, objects: &Objects, reports: &[crate::probers::ProberReport]) -> AlbStatus {
    let status = alb.status.clone().unwrap_or_default();
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    let state = status
        .state
        .as_deref()
        .and_then(|s| serde_json::from_value::<AlbState>(json!(s)).ok())
        .unwrap_or(if alb.spec.enabled {
            AlbState::Pending
        } else {
            AlbState::Disabled
        });
    let probe = |p: &LastProbe| Probe {
        at_ms: millis(&p.time).unwrap_or(0),
        ok: p.ok,
        latency_ms: p.latency_ms,
        detail: p.detail.clone(),
    };
    let cluster = objects.cluster_of(alb);
    let mut probers: Vec<crate::verdict::View> = reports
        .iter()
        .filter_map(|r| {
            let mut view = crate::probers::views_of(r).remove(&alb.name_any())?;
            view.fresh = crate::probers::looks_fresh(r);
            Some(view)
        })
        .collect();
    probers.sort_by(|a, b| a.prober.cmp(&b.prober));
    AlbStatus {
        probers,
        id: alb.name_any(),
        cluster: cluster.and_then(|c| c.metadata.name.clone()).unwrap_or_default(),
        zone: alb.spec.zone.clone(),
        ip: alb.spec.ip,
        port: alb.spec.port,
        enabled: alb.spec.enabled,
        state,
        since_ms: status.since.as_deref().and_then(millis).unwrap_or(0),
        health: match condition("Healthy").as_deref() {
            Some("True") => Health::Healthy,
            Some("False") => Health::Unhealthy,
            _ => Health::Pending,
        },
        in_dns: condition("InDNS").as_deref() == Some("True"),
        fail_policy: cluster.map(|c| c.spec.fail_policy).unwrap_or_default(),
        last_probe: status.last_probe.as_ref().map(probe),
        last_error: status.last_error.as_ref().map(probe),
    }
}

/// `mzlb albs` over a kubeconfig.
pub async fn list(client: &Client) -> Result<Vec<AlbStatus>> {
    let albs: Api<ZoneALB> = Api::all(client.clone());
    let clusters: Api<zone_alb::objects::MultiZoneCluster> = Api::all(client.clone());
    let kube_error = |e: kube::Error| Error::Objects(zone_alb::Error::Kube(e.to_string()));
    let objects = Objects {
        zone_albs: albs.list(&Default::default()).await.map_err(kube_error)?.items,
        clusters: clusters.list(&Default::default()).await.map_err(kube_error)?.items,
        ..Default::default()
    };
    // Without the ProberReport CRD (an older chart) there are just no views to show.
    let reports = match crate::probers::list(client).await {
        Ok(reports) => reports,
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(kube_error(e)),
    };
    let mut out: Vec<AlbStatus> = objects
        .zone_albs
        .iter()
        .map(|a| alb_status(a, &objects, &reports))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
