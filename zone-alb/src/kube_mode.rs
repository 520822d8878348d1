//! zone-alb on a cluster: objects from the API server instead of a directory, compiled by the
//! same code; plus what a cluster expects of an ingress controller: our IngressClass, an event
//! on every Ingress we load or reject, and (from one elected replica) the Ingress status that
//! `kubectl get ingress` shows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::objects::Objects;
use crate::router::IngressReport;
use crate::source::kube_watch::{self, KubeOptions, Scope, Watched};
use crate::state::Store;
use crate::{Loaded, Options, lease};

/// The controller name in our IngressClass and in events.
pub const CONTROLLER: &str = "mzlb.io/zone-alb";
/// The Lease that elects the one replica writing Ingress status.
pub const STATUS_LEASE: &str = "mzlb-zone-alb-status";
/// A change is compiled once the API server has been quiet this long (a rollout or an
/// EndpointSlice storm arrives as a burst)…
const QUIET: Duration = Duration::from_millis(15);
/// …or once this long has passed since the burst began, whichever is first: one edit waits
/// `QUIET`, a storm never holds the table back longer than this.
const DEBOUNCE_MAX: Duration = Duration::from_millis(100);
/// How long to wait for the API server's first complete lists.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Kube {
    client: Client,
    watched: Watched,
    namespace: String,
    identity: String,
}

impl Kube {
    /// Connects, makes sure our IngressClass exists and starts the watchers.
    pub async fn connect(opts: &Options) -> Result<Self> {
        let client = opts.kube.client().await?;
        let namespace = KubeOptions::namespace(&client);
        ensure_ingress_class(&client, &opts.ingress_class).await;
        crate::gateway::writer::ensure_class(&client, crate::gateway::CLASS_NAME).await;
        let watched = kube_watch::start(&client, Scope::Ingress, opts.session_ticket_secret.as_ref());
        Ok(Self {
            client,
            watched,
            namespace,
            identity: format!("{}/{}", opts.alb_id, lease::identity()),
        })
    }

    /// Waits for the first complete lists and a table that compiles (our ZoneALB may be
    /// created after us).
    pub async fn first_load(&mut self, opts: &Options, state: &Store) -> Result<Loaded> {
        self.watched.ready(SYNC_TIMEOUT).await?;
        let mut last_error = String::new();
        loop {
            match compile(&self.watched.snapshot(), opts, state) {
                Ok(loaded) => return Ok(loaded),
                Err(error) => {
                    let text = error.to_string();
                    if text != last_error {
                        tracing::warn!(%error, "waiting for the objects this ALB needs");
                        last_error = text;
                    }
                }
            }
            self.watched
                .changes
                .changed()
                .await
                .map_err(|_| Error::Kube("the watchers stopped".into()))?;
        }
    }

    /// Rebuilds the table on every change (debounced) until `cancel`, recording events and,
    /// when elected, writing Ingress status.
    pub async fn follow(mut self, opts: Options, tables: crate::Tables, state: Arc<Store>, cancel: CancellationToken) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: CONTROLLER.into(),
                instance: Some(self.identity.clone()),
            },
        );
        let events = spawn_event_writer(recorder);
        let leader = lease::campaign(
            self.client.clone(),
            &self.namespace,
            STATUS_LEASE,
            self.identity.clone(),
            cancel.clone(),
        );
        let status = spawn_status_writer(self.client.clone(), opts.clone(), leader, cancel.clone());
        let mut reported: HashMap<String, String> = HashMap::new();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    r = self.watched.changes.changed() => if r.is_err() { return },
                    _ = housekeeping.tick() => { state.sweep(); continue }
                    () = cancel.cancelled() => return,
                }
                let burst = tokio::time::Instant::now();
                loop {
                    self.watched.changes.mark_unchanged();
                    let left = DEBOUNCE_MAX.saturating_sub(burst.elapsed());
                    match tokio::time::timeout(QUIET.min(left), self.watched.changes.changed()).await {
                        Ok(Err(_)) => return,
                        Ok(Ok(())) if burst.elapsed() < DEBOUNCE_MAX => {}
                        Ok(Ok(())) | Err(_) => break,
                    }
                }
                self.watched.changes.mark_unchanged();
            }
            first = false;
            let objects = self.watched.snapshot();
            match compile(&objects, &opts, &state) {
                Ok(loaded) => {
                    tracing::debug!(ingresses = loaded.table.ingresses, "routing table rebuilt");
                    for report in &loaded.table.reports {
                        if record(report, &mut reported, &events) && report.rejected.is_some() {
                            tables.metrics.rejected("ingress");
                        }
                    }
                    let reports = loaded.table.reports.clone();
                    let gateway = loaded.table.gateway.status.clone();
                    tables.install(loaded.table);
                    // The writer takes the latest; the next swap never waits on the API server.
                    status.send_replace(Some(Arc::new((objects, reports, gateway))));
                }
                Err(error) => {
                    tables.metrics.rejected("change");
                    tracing::error!(%error, "change rejected; the last good routing table keeps serving")
                }
            }
        }
    }
}

/// What the Ingress status should reflect: the objects and the reports of the latest table.
type StatusWork = Option<Arc<(Objects, Vec<IngressReport>, crate::gateway::status::Report)>>;

/// Writes Ingress status in its own task, while elected, from the latest table only: a slow or
/// absent API server delays status, never a routing-table swap.
fn spawn_status_writer(
    client: Client,
    opts: Options,
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
) -> watch::Sender<StatusWork> {
    let (tx, mut rx) = watch::channel::<StatusWork>(None);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                r = leader.changed() => if r.is_err() { return },
                () = cancel.cancelled() => return,
            }
            let work = rx.borrow_and_update().clone();
            if let Some(work) = work
                && *leader.borrow()
            {
                let (objects, reports, gateway) = &*work;
                write_ingress_status(&client, objects, &opts, reports).await;
                crate::gateway::writer::write(&client, objects, &status_ips(objects, &opts), gateway).await;
                crate::gateway::writer::write_policies(&client, objects, gateway).await;
            }
        }
    });
    tx
}

fn compile(objects: &Objects, opts: &Options, state: &Store) -> Result<Loaded> {
    crate::compile(objects, opts, "the API server", false, state)
}

/// Creates our IngressClass if there is none; leaves one that exists alone (an administrator
/// may have marked it default), warning if it names another controller.
async fn ensure_ingress_class(client: &Client, name: &str) {
    let api: Api<IngressClass> = Api::all(client.clone());
    match api.get_opt(name).await {
        Ok(Some(class)) => {
            let controller = class
                .spec
                .as_ref()
                .and_then(|s| s.controller.clone())
                .unwrap_or_default();
            if controller != CONTROLLER {
                tracing::warn!(class = %name, %controller, "IngressClass belongs to another controller; serving its Ingresses anyway");
            }
        }
        Ok(None) => {
            let class = IngressClass {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some([("app.kubernetes.io/managed-by".to_owned(), "mzlb".to_owned())].into()),
                    ..Default::default()
                },
                spec: Some(IngressClassSpec {
                    controller: Some(CONTROLLER.into()),
                    parameters: None,
                }),
            };
            match api.create(&PostParams::default(), &class).await {
                Ok(_) => tracing::info!(class = %name, "created IngressClass"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(error) => tracing::warn!(class = %name, %error, "could not create IngressClass"),
            }
        }
        Err(error) => tracing::warn!(class = %name, %error, "could not read IngressClass"),
    }
}

/// Events go out from one task, in order, so a slow API server never holds up routing.
fn spawn_event_writer(recorder: Recorder) -> mpsc::UnboundedSender<(Event, ObjectReference)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Event, ObjectReference)>();
    tokio::spawn(async move {
        while let Some((event, reference)) = rx.recv().await {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, ingress = ?reference.name, reason = %event.reason, "could not record event");
            }
        }
    });
    tx
}

/// Records what happened to one Ingress, once per distinct outcome (not on every rebuild);
/// true when the outcome is new.
fn record(
    report: &IngressReport,
    reported: &mut HashMap<String, String>,
    events: &mpsc::UnboundedSender<(Event, ObjectReference)>,
) -> bool {
    let key = format!("{}/{}", report.namespace, report.name);
    let signature = format!(
        "{:?}|{:?}|{:?}|{:?}",
        report.uid,
        report.generation,
        report.rejected.as_ref().map(|p| &p.message),
        report.warnings.iter().map(|p| &p.message).collect::<Vec<_>>()
    );
    if reported.get(&key) == Some(&signature) {
        return false;
    }
    reported.insert(key, signature);
    let reference = ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        name: Some(report.name.clone()),
        namespace: Some(report.namespace.clone()),
        uid: report.uid.clone(),
        ..Default::default()
    };
    let event = |type_, reason: &str, note: String, action: &str| Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note)),
        action: action.into(),
        secondary: None,
    };
    match &report.rejected {
        Some(problem) => {
            tracing::warn!(ingress = %format!("{}/{}", report.namespace, report.name), reason = problem.reason, "{}; the Ingress's paths that use it answer 503", problem.message);
            let _ = events.send((
                event(EventType::Warning, problem.reason, problem.message.clone(), "Reject"),
                reference.clone(),
            ));
        }
        None => {
            let _ = events.send((
                event(
                    EventType::Normal,
                    "Success",
                    "Successfully applied ingress resource.".into(),
                    "Apply",
                ),
                reference.clone(),
            ));
        }
    }
    for problem in &report.warnings {
        tracing::warn!("{}; the rest of the Ingress is served", problem.message);
        let _ = events.send((
            event(EventType::Warning, problem.reason, problem.message.clone(), "Apply"),
            reference.clone(),
        ));
    }
    true
}

/// Event notes are limited to 1 kB.
fn truncate(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    note
}

/// The addresses an Ingress's status lists: every enabled ALB of our cluster.
fn status_ips(objects: &Objects, opts: &Options) -> Vec<IpAddr> {
    let Some(me) = objects.zone_alb(&opts.alb_id) else {
        return Vec::new();
    };
    let cluster = objects.cluster_of(me).and_then(|c| c.metadata.name.clone());
    let mut ips: Vec<IpAddr> = objects
        .zone_albs
        .iter()
        .filter(|a| a.spec.enabled)
        .filter(|a| objects.cluster_of(a).and_then(|c| c.metadata.name.clone()) == cluster)
        .map(|a| a.spec.ip)
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Sets `status.loadBalancer.ingress` of every Ingress we serve to the enabled ALBs' IPs,
/// patching only those that differ.
async fn write_ingress_status(client: &Client, objects: &Objects, opts: &Options, reports: &[IngressReport]) {
    let ips = status_ips(objects, opts);
    let wanted: Vec<serde_json::Value> = ips.iter().map(|ip| serde_json::json!({"ip": ip.to_string()})).collect();
    for report in reports.iter().filter(|r| r.rejected.is_none()) {
        let Some(ingress) = objects.ingresses.iter().find(|i| {
            i.metadata.name.as_deref() == Some(&report.name) && i.namespace().as_deref() == Some(&report.namespace)
        }) else {
            continue;
        };
        if current_ips(ingress) == ips {
            continue;
        }
        let api: Api<Ingress> = Api::namespaced(client.clone(), &report.namespace);
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": wanted}}});
        match api
            .patch_status(&report.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(ingress = %format!("{}/{}", report.namespace, report.name), ?ips, "Ingress status updated")
            }
            Err(error) => tracing::warn!(ingress = %report.name, %error, "could not update Ingress status"),
        }
    }
}

fn current_ips(ingress: &Ingress) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    ips.sort();
    ips
}
