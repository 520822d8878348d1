//! The ALB registry: every zone ALB with its enabled flag, health and state, and the rule that
//! turns them into DNS answers. A change to the answered set is published to the DNS authority
//! as a whole new answer set.
//!
//! Only the control path (probe results, enable/disable, status reads) takes the lock here;
//! DNS queries read the published answer set without locking.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use zone_alb::objects::FailPolicy;

pub use crate::config::{AlbConfig, ClusterConfig, configs};
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::health::Hysteresis;
use crate::metrics::{AlbLabels, ClusterLabels, Metrics};
use crate::store::Store;
use crate::timeline::{Bucket, Timeline};
use crate::verdict::{self, Peer, View};

/// Health as the probes tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not probed yet: never answered on a guess.
    Pending,
    Healthy,
    Unhealthy,
}

/// What an operator sees: health and the enabled flag together. "Disabled" is a choice beside
/// health, never a health result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlbState {
    /// Enabled, but not yet proven healthy (first probe, or `rise` probes after an enable).
    Pending,
    /// Enabled and healthy: answered in DNS.
    Enabled,
    /// Enabled, failing its health checks.
    Unhealthy,
    /// Disabled: out of DNS, but clients may still hold the answer for a TTL.
    Draining,
    Disabled,
}

impl AlbState {
    pub const ALL: [AlbState; 5] = [
        AlbState::Pending,
        AlbState::Enabled,
        AlbState::Unhealthy,
        AlbState::Draining,
        AlbState::Disabled,
    ];
}

impl std::fmt::Display for AlbState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub ok: bool,
    pub latency_ms: f64,
    /// `200 OK`, or what went wrong.
    pub detail: String,
}

impl Probe {
    pub fn new(ok: bool, latency: Duration, detail: String) -> Self {
        Self {
            at_ms: now_ms(),
            ok,
            latency_ms: latency.as_secs_f64() * 1000.0,
            detail,
        }
    }
}

/// Unix milliseconds as RFC 3339, as the objects on the API server carry times.
pub(crate) fn rfc3339(ms: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms as i64).map_or_else(|_| String::new(), |t| t.to_string())
}

/// An RFC 3339 time as Unix milliseconds.
pub(crate) fn millis(rfc3339: &str) -> Option<u64> {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond().max(0) as u64)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What `mzlb albs` shows for one ALB.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlbStatus {
    pub id: String,
    pub cluster: String,
    pub zone: String,
    pub ip: IpAddr,
    pub port: u16,
    pub enabled: bool,
    pub state: AlbState,
    /// When `state` was entered (Unix milliseconds).
    pub since_ms: u64,
    /// The agreed verdict: from every fresh prober's view (see [`verdict`]).
    pub health: Health,
    /// Every prober's view of this ALB, this replica's own first.
    #[serde(default)]
    pub probers: Vec<View>,
    /// Whether DNS answers this ALB's IP now.
    pub in_dns: bool,
    /// The cluster's policy when every enabled ALB is unhealthy.
    pub fail_policy: FailPolicy,
    pub last_probe: Option<Probe>,
    pub last_error: Option<Probe>,
}

/// What [`Registry::overview`] returns: the registry's state for the status page.
#[derive(Clone, Debug)]
pub struct Overview {
    pub albs: Vec<AlbStatus>,
    pub clusters: Vec<ClusterConfig>,
    pub failing_open: HashSet<String>,
    /// Per ALB: the addresses its cluster would answer if it were disabled.
    pub without: HashMap<String, Vec<IpAddr>>,
    /// Per ALB: this replica's probes of the last 15 minutes.
    pub timelines: HashMap<String, Vec<Bucket>>,
    /// Oldest first.
    pub events: Vec<Event>,
    /// What DNS serves now, per zone.
    pub served: Vec<dns::Served>,
    /// This replica's name among the probers.
    pub prober: String,
    pub now_ms: u64,
}

struct Entry {
    config: AlbConfig,
    enabled: bool,
    /// This replica's own view, from its probes.
    hysteresis: Hysteresis,
    /// When the own view last changed (Unix milliseconds).
    own_since_ms: u64,
    /// The agreed health, from every fresh prober's view; what DNS follows.
    verdict: Health,
    /// The views the verdict was last taken from, and who carried it.
    views: Vec<View>,
    explained: String,
    /// Successful probes still needed after an enable before the ALB is answered again.
    rising: u32,
    /// A disabled ALB is draining until then.
    drain_until: Option<Instant>,
    state: AlbState,
    since_ms: u64,
    last_probe: Option<Probe>,
    last_error: Option<Probe>,
    /// The last 15 minutes of this replica's probes, for the status page.
    timeline: Timeline,
}

impl Entry {
    fn new(config: AlbConfig, enabled: bool) -> Self {
        Entry {
            hysteresis: Hysteresis::new(config.health.rise, config.health.fall),
            own_since_ms: now_ms(),
            verdict: Health::Pending,
            views: Vec::new(),
            explained: String::new(),
            config,
            enabled,
            rising: 0,
            drain_until: None,
            state: if enabled { AlbState::Pending } else { AlbState::Disabled },
            since_ms: now_ms(),
            last_probe: None,
            last_error: None,
            timeline: Timeline::default(),
        }
    }

    /// A disabled ALB drains for `drain`; an enabled one that was healthy must pass `rise`
    /// probes again before it is answered.
    fn set_enabled(&mut self, enabled: bool, drain: Duration) {
        self.enabled = enabled;
        if enabled {
            self.drain_until = None;
            self.rising = match self.health() {
                // Unhealthy already needs `rise` successes; pending needs a first probe.
                Health::Healthy => self.config.health.rise,
                Health::Pending | Health::Unhealthy => 0,
            };
        } else {
            self.drain_until = Some(Instant::now() + drain);
            self.rising = 0;
        }
    }

    fn health(&self) -> Health {
        self.verdict
    }

    fn own_view(&self, me: &str) -> View {
        View {
            prober: me.to_owned(),
            health: self.hysteresis.state(),
            since_ms: self.own_since_ms,
            last_error: self.last_error.as_ref().map(|p| p.detail.clone()),
            fresh: true,
            own: true,
        }
    }

    fn current_state(&self, now: Instant) -> AlbState {
        match (self.enabled, self.health()) {
            (false, _) if self.drain_until.is_some_and(|t| t > now) => AlbState::Draining,
            (false, _) => AlbState::Disabled,
            (true, Health::Pending) => AlbState::Pending,
            (true, Health::Healthy) if self.rising > 0 => AlbState::Pending,
            (true, Health::Healthy) => AlbState::Enabled,
            (true, Health::Unhealthy) => AlbState::Unhealthy,
        }
    }
}

#[derive(Default)]
struct Inner {
    clusters: Vec<ClusterConfig>,
    entries: Vec<Entry>,
    /// What was last published, to publish only changes.
    answered: Option<HashSet<String>>,
    failing_open: HashSet<String>,
    events: Events,
    /// This replica's name among the probers.
    me: String,
    /// The other probers' latest reports.
    peers: HashMap<String, Peer>,
    /// Whether the last refresh found no fresh peer while peers are expected (on a cluster).
    alone: bool,
}

pub struct Registry {
    inner: Mutex<Inner>,
    authority: dns::Authority,
    /// Where operators' choices are recorded (`None`: kept in memory only).
    store: Option<Store>,
    metrics: Metrics,
    /// Bumped when the set of ALBs or their settings change (health checks follow it), and
    /// when any state changes (status writers follow it).
    config: tokio::sync::watch::Sender<u64>,
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped when this replica's own view of any ALB changes (its report follows it).
    own: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    /// Starts from the manifests' `spec.enabled`, overridden by choices saved in `state` (if
    /// any), and publishes an empty answer until probes report.
    pub fn new(
        clusters: Vec<ClusterConfig>,
        albs: Vec<AlbConfig>,
        authority: dns::Authority,
        store: Option<Store>,
        metrics: Metrics,
    ) -> Result<Self> {
        let choices = match &store {
            Some(store) => store.initial_choices()?,
            None => Default::default(),
        };
        let entries = albs
            .into_iter()
            .map(|config| {
                let enabled = choices.get(&config.id).copied().unwrap_or(config.enabled);
                Entry::new(config, enabled)
            })
            .collect();
        set_policy_metrics(&metrics, &clusters);
        let registry = Self {
            inner: Mutex::new(Inner {
                clusters,
                entries,
                me: "local".into(),
                ..Default::default()
            }),
            authority,
            store,
            metrics,
            config: tokio::sync::watch::Sender::new(0),
            changes: tokio::sync::watch::Sender::new(0),
            own: tokio::sync::watch::Sender::new(0),
        };
        let mut inner = registry.inner.lock().expect("registry poisoned");
        registry.refresh(&mut inner, "start")?;
        drop(inner);
        Ok(registry)
    }

    /// Names this replica among the probers (its pod name on a cluster).
    pub fn set_identity(&self, me: String) {
        self.lock().me = me;
    }

    /// An operator's enable or disable: recorded in the store first (the state directory, or
    /// `spec.enabled` so every replica and the object agree), then applied here at once.
    pub async fn configure(&self, id: &str, enabled: bool) -> Result<AlbStatus> {
        if !self.lock().entries.iter().any(|e| e.config.id == id) {
            return Err(Error::UnknownAlb(id.to_owned()));
        }
        if let Some(store) = &self.store {
            store.record_choice(id, enabled).await?;
        }
        self.set_enabled(id, enabled)
    }

    pub fn albs(&self) -> Vec<AlbConfig> {
        self.lock().entries.iter().map(|e| e.config.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("registry poisoned")
    }

    /// Records one probe result and applies what follows from it.
    pub fn report(&self, id: &str, probe: Probe) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.iter_mut().find(|e| e.config.id == id) else {
            return;
        };
        let before = entry.hysteresis.state();
        let after = entry.hysteresis.observe(probe.ok);
        if before != after {
            entry.own_since_ms = now_ms();
        }
        if entry.rising > 0 {
            entry.rising = if probe.ok {
                entry.rising - 1
            } else {
                entry.config.health.rise
            };
        }
        let cause = format!("probe: {}", probe.detail);
        if !probe.ok {
            entry.last_error = Some(probe.clone());
        }
        entry.timeline.record(&probe);
        entry.last_probe = Some(probe);
        if before != after {
            self.own.send_modify(|n| *n += 1);
        }
        if let Err(error) = self.refresh(&mut inner, &cause) {
            tracing::error!(%error, "could not publish DNS answers; the previous ones stay");
        }
    }

    /// Enables or disables an ALB in memory (what [`Registry::configure`] recorded, or a changed
    /// `spec.enabled`): DNS follows at once. A disabled ALB drains; an enabled one must pass
    /// `rise` probes before it is answered again.
    pub fn set_enabled(&self, id: &str, enabled: bool) -> Result<AlbStatus> {
        let mut inner = self.lock();
        let drain = inner
            .entries
            .iter()
            .find(|e| e.config.id == id)
            .map(|e| drain_of(&inner.clusters, &e.config))
            .ok_or_else(|| Error::UnknownAlb(id.to_owned()))?;
        let entry = inner
            .entries
            .iter_mut()
            .find(|e| e.config.id == id)
            .expect("found above");
        if entry.enabled != enabled {
            entry.set_enabled(enabled, drain);
            let cause = if enabled {
                "enabled by operator"
            } else {
                "disabled by operator"
            };
            self.refresh(&mut inner, cause)?;
        }
        let answered = inner.answered.clone().unwrap_or_default();
        let entry = inner.entries.iter().find(|e| e.config.id == id).expect("found above");
        Ok(status_of(&inner.clusters, entry, &answered))
    }

    /// Takes a new set of clusters and ALBs (the objects changed): known ALBs keep their
    /// health, new ones start pending, removed ones leave DNS, and a changed `spec.enabled`
    /// acts as an operator's enable or disable.
    pub fn reconfigure(&self, clusters: Vec<ClusterConfig>, albs: Vec<AlbConfig>) -> Result<()> {
        let mut inner = self.lock();
        if inner.clusters == clusters && inner.entries.iter().map(|e| &e.config).eq(albs.iter()) {
            return Ok(());
        }
        set_policy_metrics(&self.metrics, &clusters);
        let mut old: Vec<Entry> = std::mem::take(&mut inner.entries);
        for config in albs {
            let drain = drain_of(&clusters, &config);
            let entry = match old.iter().position(|e| e.config.id == config.id) {
                Some(i) => {
                    let mut entry = old.swap_remove(i);
                    if entry.config.health != config.health {
                        entry.hysteresis.set_thresholds(config.health.rise, config.health.fall);
                    }
                    if entry.config.enabled != config.enabled && entry.enabled != config.enabled {
                        entry.set_enabled(config.enabled, drain);
                    }
                    entry.config = config;
                    entry
                }
                None => Entry::new(config.clone(), config.enabled),
            };
            inner.entries.push(entry);
        }
        for gone in &old {
            tracing::info!(alb = %gone.config.id, "ALB removed");
            for state in AlbState::ALL {
                self.metrics.alb_state.remove(&state_labels(&gone.config, state));
            }
        }
        inner.clusters = clusters;
        self.config.send_modify(|n| *n += 1);
        self.refresh(&mut inner, "configuration changed")
    }

    /// Takes a peer's report (its views of the ALBs it probes), seen changed just now.
    pub fn peer_report(&self, prober: &str, views: HashMap<String, View>) {
        let mut inner = self.lock();
        if prober == inner.me {
            return;
        }
        inner.peers.insert(
            prober.to_owned(),
            Peer {
                views,
                seen_at: Instant::now(),
            },
        );
        if let Err(error) = self.refresh(&mut inner, &format!("report from {prober}")) {
            tracing::error!(%error, "could not publish DNS answers; the previous ones stay");
        }
    }

    /// Forgets a peer whose report was deleted.
    pub fn peer_gone(&self, prober: &str) {
        let mut inner = self.lock();
        if inner.peers.remove(prober).is_some()
            && let Err(error) = self.refresh(&mut inner, &format!("{prober} stopped reporting"))
        {
            tracing::error!(%error, "could not publish DNS answers; the previous ones stay");
        }
    }

    /// This replica's own view of every ALB, for its report.
    pub fn own_views(&self) -> Vec<(String, View)> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .map(|e| (e.config.id.clone(), e.own_view(&inner.me)))
            .collect()
    }

    /// Wakes when this replica's own view of an ALB changes.
    pub fn subscribe_own(&self) -> tokio::sync::watch::Receiver<u64> {
        self.own.subscribe()
    }

    /// Wakes on every change of the ALBs' settings (not of their health).
    pub fn subscribe_config(&self) -> tokio::sync::watch::Receiver<u64> {
        self.config.subscribe()
    }

    /// Wakes on every state change and published answer.
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn status(&self) -> Vec<AlbStatus> {
        let mut inner = self.lock();
        // Let a finished drain show even between probes.
        let _ = self.refresh(&mut inner, "drain period over");
        let answered = inner.answered.clone().unwrap_or_default();
        inner
            .entries
            .iter()
            .map(|e| status_of(&inner.clusters, e, &answered))
            .collect()
    }

    pub fn events(&self) -> Vec<Event> {
        self.lock().events.list()
    }

    /// Everything the status page shows, taken under one lock so the parts agree.
    pub fn overview(&self) -> Overview {
        let mut inner = self.lock();
        let _ = self.refresh(&mut inner, "drain period over");
        let now = now_ms();
        let answered_now = inner.answered.clone().unwrap_or_default();
        let without = inner
            .entries
            .iter()
            .map(|e| {
                let (left, _) = answered(&inner.clusters, &inner.entries, Some(&e.config.id));
                let mut ips: Vec<IpAddr> = inner
                    .entries
                    .iter()
                    .filter(|o| o.config.cluster == e.config.cluster && left.contains(&o.config.id))
                    .map(|o| o.config.ip)
                    .collect();
                ips.sort();
                (e.config.id.clone(), ips)
            })
            .collect();
        Overview {
            albs: inner
                .entries
                .iter()
                .map(|e| status_of(&inner.clusters, e, &answered_now))
                .collect(),
            clusters: inner.clusters.clone(),
            failing_open: inner.failing_open.clone(),
            without,
            timelines: inner
                .entries
                .iter()
                .map(|e| (e.config.id.clone(), e.timeline.recent(now)))
                .collect(),
            events: inner.events.list(),
            served: self.authority.served(),
            prober: inner.me.clone(),
            now_ms: now,
        }
    }

    /// Recomputes every state (recording transitions with `cause`) and publishes the answer
    /// set if it changed.
    fn refresh(&self, inner: &mut Inner, cause: &str) -> Result<()> {
        let now = Instant::now();
        self.decide(inner, now);
        let Inner { entries, events, .. } = inner;
        for entry in entries.iter_mut() {
            let state = entry.current_state(now);
            if state != entry.state {
                let cause = if entry.views.len() > 1 {
                    format!("{cause}; {}", entry.explained)
                } else {
                    cause.to_owned()
                };
                self.changes.send_modify(|n| *n += 1);
                tracing::info!(alb = %entry.config.id, from = %entry.state, to = %state, %cause, "ALB state changed");
                let at_ms = now_ms();
                events.push(Event {
                    at_ms,
                    alb: entry.config.id.clone(),
                    from: entry.state,
                    to: state,
                    cause,
                });
                entry.state = state;
                entry.since_ms = at_ms;
            }
            for state in AlbState::ALL {
                self.metrics
                    .alb_state
                    .get_or_create(&state_labels(&entry.config, state))
                    .set(i64::from(state == entry.state));
            }
        }
        let (answered, failing_open) = answered(&inner.clusters, &inner.entries, None);
        for cluster in &inner.clusters {
            let n = inner
                .entries
                .iter()
                .filter(|e| e.config.cluster == cluster.name && answered.contains(&e.config.id))
                .count();
            self.metrics
                .dns_answered_addresses
                .get_or_create(&ClusterLabels {
                    cluster: cluster.name.clone(),
                })
                .set(n as i64);
        }
        for cluster in &inner.clusters {
            let labels = ClusterLabels {
                cluster: cluster.name.clone(),
            };
            let now_failing = failing_open.contains(&cluster.name);
            if now_failing && !inner.failing_open.contains(&cluster.name) {
                tracing::warn!(cluster = %cluster.name, "every enabled ALB is unhealthy: failing open, answering all of them");
                self.metrics.fail_open.get_or_create(&labels).inc();
            } else if !now_failing && inner.failing_open.contains(&cluster.name) {
                tracing::info!(cluster = %cluster.name, "no longer failing open");
            }
            self.metrics
                .failing_open
                .get_or_create(&labels)
                .set(i64::from(now_failing));
        }
        inner.failing_open = failing_open;
        if inner.answered.as_ref() == Some(&answered) {
            return Ok(());
        }
        for entry in &inner.entries {
            let in_dns = answered.contains(&entry.config.id);
            self.metrics
                .alb_in_dns
                .get_or_create(&alb_labels(&entry.config))
                .set(i64::from(in_dns));
        }
        let zones = inner
            .clusters
            .iter()
            .map(|cluster| dns::ZoneAnswers {
                origin: cluster.subdomain.clone(),
                ttl: cluster.ttl,
                addresses: inner
                    .entries
                    .iter()
                    .filter(|e| e.config.cluster == cluster.name && answered.contains(&e.config.id))
                    .map(|e| e.config.ip)
                    .collect(),
                soa: cluster.soa.clone(),
            })
            .collect();
        self.authority.publish(&dns::AnswerSet { zones })?;
        inner.answered = Some(answered);
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }
}

impl Registry {
    /// Takes every ALB's verdict from the fresh views, its own and its peers'.
    fn decide(&self, inner: &mut Inner, now: Instant) {
        inner
            .peers
            .retain(|_, p| now.saturating_duration_since(p.seen_at) < verdict::FORGET_AFTER);
        let fresh_peers = inner.peers.values().filter(|p| p.is_fresh(now)).count();
        let alone = self.store.as_ref().is_some_and(Store::is_cluster) && fresh_peers == 0;
        if alone != inner.alone {
            if alone {
                tracing::warn!("no fresh report from any other prober: deciding from this replica's own probes alone");
            } else {
                tracing::info!(peers = fresh_peers, "deciding with the other probers again");
            }
            inner.alone = alone;
        }
        self.metrics.probers_live.set(fresh_peers as i64 + 1);
        self.metrics.deciding_alone.set(i64::from(alone));
        let Inner { entries, peers, me, .. } = inner;
        for entry in entries.iter_mut() {
            let mut views = vec![entry.own_view(me)];
            let mut others: Vec<View> = peers
                .iter()
                .filter_map(|(name, peer)| {
                    let mut view = peer.views.get(&entry.config.id)?.clone();
                    view.prober.clone_from(name);
                    view.fresh = peer.is_fresh(now);
                    view.own = false;
                    Some(view)
                })
                .collect();
            others.sort_by(|a, b| a.prober.cmp(&b.prober));
            views.extend(others);
            let verdict = verdict::decide(entry.verdict, &views);
            entry.explained = verdict::explain(&verdict, &views);
            if verdict.health != entry.verdict {
                self.metrics
                    .health_changes
                    .get_or_create(&alb_labels(&entry.config))
                    .inc();
                entry.verdict = verdict.health;
            }
            entry.views = views;
        }
    }
}

fn status_of(clusters: &[ClusterConfig], entry: &Entry, answered: &HashSet<String>) -> AlbStatus {
    let c = &entry.config;
    let fail_policy = clusters
        .iter()
        .find(|k| k.name == c.cluster)
        .map_or_else(FailPolicy::default, |k| k.fail_policy);
    AlbStatus {
        id: c.id.clone(),
        cluster: c.cluster.clone(),
        zone: c.zone.clone(),
        ip: c.ip,
        port: c.port,
        enabled: entry.enabled,
        state: entry.state,
        since_ms: entry.since_ms,
        health: entry.health(),
        probers: entry.views.clone(),
        in_dns: answered.contains(&c.id),
        fail_policy,
        last_probe: entry.last_probe.clone(),
        last_error: entry.last_error.clone(),
    }
}

fn drain_of(clusters: &[ClusterConfig], config: &AlbConfig) -> Duration {
    clusters
        .iter()
        .find(|c| c.name == config.cluster)
        .map_or(Duration::ZERO, |c| c.drain)
}

fn set_policy_metrics(metrics: &Metrics, clusters: &[ClusterConfig]) {
    metrics.fail_policy.clear();
    for c in clusters {
        let policy = match c.fail_policy {
            FailPolicy::Open => "open",
            FailPolicy::Closed => "closed",
        };
        metrics
            .fail_policy
            .get_or_create(&crate::metrics::PolicyLabels {
                cluster: c.name.clone(),
                policy: policy.into(),
            })
            .set(1);
    }
}

fn state_labels(config: &AlbConfig, state: AlbState) -> crate::metrics::AlbStateLabels {
    crate::metrics::AlbStateLabels {
        alb: config.id.clone(),
        zone: config.zone.clone(),
        state: state.to_string(),
    }
}

fn alb_labels(config: &AlbConfig) -> AlbLabels {
    AlbLabels {
        alb: config.id.clone(),
        zone: config.zone.clone(),
    }
}

/// Which ALBs DNS answers: per cluster, the enabled ones that are healthy (and, after an
/// enable, have passed `rise` probes). When every enabled, probed ALB of a cluster is
/// unhealthy (not merely waiting for `rise`), a fail-open cluster answers all of them (as Route 53 does: a guess that may work
/// beats an empty answer that surely fails); a fail-closed one answers none. Disabled or
/// unprobed ALBs are never answered. Also returns the clusters failing open. `without` is
/// treated as disabled: what an operator's disable of it would leave.
fn answered(
    clusters: &[ClusterConfig],
    entries: &[Entry],
    without: Option<&str>,
) -> (HashSet<String>, HashSet<String>) {
    let mut out = HashSet::new();
    let mut failing_open = HashSet::new();
    for cluster in clusters {
        let candidates: Vec<&Entry> = entries
            .iter()
            .filter(|e| {
                e.config.cluster == cluster.name
                    && e.enabled
                    && without != Some(e.config.id.as_str())
                    && e.health() != Health::Pending
            })
            .collect();
        let healthy: Vec<&&Entry> = candidates
            .iter()
            .filter(|e| e.health() == Health::Healthy && e.rising == 0)
            .collect();
        let all_unhealthy = !candidates.is_empty() && candidates.iter().all(|e| e.health() == Health::Unhealthy);
        if all_unhealthy && cluster.fail_policy == FailPolicy::Open {
            failing_open.insert(cluster.name.clone());
            out.extend(candidates.iter().map(|e| e.config.id.clone()));
        } else {
            out.extend(healthy.iter().map(|e| e.config.id.clone()));
        }
    }
    (out, failing_open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zone_alb::objects::HealthSpec;

    fn entry(id: &str, enabled: bool, health: Health) -> Entry {
        let mut hysteresis = Hysteresis::new(2, 3);
        match health {
            Health::Pending => {}
            Health::Healthy => drop(hysteresis.observe(true)),
            Health::Unhealthy => drop(hysteresis.observe(false)),
        }
        Entry {
            own_since_ms: 0,
            verdict: health,
            views: Vec::new(),
            explained: String::new(),
            config: AlbConfig {
                id: id.into(),
                zone: "z".into(),
                ip: "127.0.0.1".parse().unwrap(),
                port: 80,
                cluster: "c".into(),
                enabled: true,
                health: HealthSpec::default(),
                health_host: "albhealth.c.test".into(),
            },
            enabled,
            hysteresis,
            rising: 0,
            drain_until: None,
            state: AlbState::Pending,
            since_ms: 0,
            last_probe: None,
            last_error: None,
            timeline: Timeline::default(),
        }
    }

    fn ids((set, _): (HashSet<String>, HashSet<String>)) -> Vec<String> {
        let mut v: Vec<_> = set.into_iter().collect();
        v.sort();
        v
    }

    fn cluster(fail_policy: FailPolicy) -> Vec<ClusterConfig> {
        vec![ClusterConfig {
            name: "c".into(),
            subdomain: "c.test".into(),
            ttl: 5,
            soa: Default::default(),
            fail_policy,
            drain: Duration::from_secs(7),
        }]
    }

    #[test]
    fn answers_enabled_healthy_albs_only() {
        let mut rising = entry("e", true, Health::Healthy);
        rising.rising = 1;
        let e = [
            entry("a", true, Health::Healthy),
            entry("b", false, Health::Healthy),
            entry("c", true, Health::Unhealthy),
            entry("d", true, Health::Pending),
            rising,
        ];
        assert_eq!(ids(answered(&cluster(FailPolicy::Open), &e, None)), vec!["a"]);
    }

    #[test]
    fn fails_open_to_enabled_albs_when_all_are_unhealthy_unless_closed() {
        let e = [
            entry("a", true, Health::Unhealthy),
            entry("b", false, Health::Unhealthy),
            entry("c", true, Health::Unhealthy),
            entry("d", true, Health::Pending),
        ];
        let open = answered(&cluster(FailPolicy::Open), &e, None);
        assert!(open.1.contains("c"), "cluster c fails open");
        assert_eq!(ids(open), vec!["a", "c"]);
        assert!(ids(answered(&cluster(FailPolicy::Closed), &e, None)).is_empty());
    }

    #[test]
    fn nothing_is_answered_before_the_first_probe() {
        let e = [entry("a", true, Health::Pending)];
        assert!(answered(&cluster(FailPolicy::Open), &e, None).0.is_empty());
    }

    #[test]
    fn states_combine_health_enabled_and_drain() {
        let now = Instant::now();
        let mut e = entry("a", true, Health::Healthy);
        assert_eq!(e.current_state(now), AlbState::Enabled);
        e.rising = 2;
        assert_eq!(e.current_state(now), AlbState::Pending);
        e.enabled = false;
        e.drain_until = Some(now + Duration::from_secs(1));
        assert_eq!(e.current_state(now), AlbState::Draining);
        assert_eq!(e.current_state(now + Duration::from_secs(2)), AlbState::Disabled);
        assert_eq!(
            entry("b", true, Health::Unhealthy).current_state(now),
            AlbState::Unhealthy
        );
    }

    fn registry(dir: &std::path::Path) -> Registry {
        let mut config = entry("a", true, Health::Pending).config;
        config.health.rise = 2;
        let state = crate::state::StateDir::resolve(Some(dir.to_path_buf()));
        state.create().unwrap();
        Registry::new(
            cluster(FailPolicy::Open),
            vec![config],
            dns::Authority::new(),
            Some(Store::files(state)),
            Metrics::default(),
        )
        .unwrap()
    }

    fn probe(r: &Registry, ok: bool) -> AlbState {
        r.report(
            "a",
            Probe::new(
                ok,
                Duration::ZERO,
                if ok { "200 OK" } else { "connection failed" }.into(),
            ),
        );
        r.status()[0].state
    }

    #[test]
    fn enable_waits_for_rise_and_disable_drains_with_events() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        assert_eq!(r.status()[0].state, AlbState::Pending);
        assert_eq!(probe(&r, true), AlbState::Enabled, "the first probe decides");
        let s = r.set_enabled("a", false).unwrap();
        assert_eq!((s.state, s.in_dns), (AlbState::Draining, false));
        let s = r.set_enabled("a", true).unwrap();
        assert_eq!(
            (s.state, s.in_dns),
            (AlbState::Pending, false),
            "back only after rise probes"
        );
        assert_eq!(probe(&r, true), AlbState::Pending);
        assert_eq!(probe(&r, true), AlbState::Enabled);
        assert!(r.status()[0].in_dns);
        let transitions: Vec<(AlbState, AlbState, String)> =
            r.events().into_iter().map(|e| (e.from, e.to, e.cause)).collect();
        assert_eq!(
            transitions,
            vec![
                (AlbState::Pending, AlbState::Enabled, "probe: 200 OK".into()),
                (AlbState::Enabled, AlbState::Draining, "disabled by operator".into()),
                (AlbState::Draining, AlbState::Pending, "enabled by operator".into()),
                (AlbState::Pending, AlbState::Enabled, "probe: 200 OK".into()),
            ]
        );
        assert!(matches!(r.set_enabled("nope", false), Err(Error::UnknownAlb(_))));
    }

    fn view(prober: &str, health: Health) -> HashMap<String, View> {
        let view = View {
            prober: prober.into(),
            health,
            since_ms: 0,
            last_error: (health == Health::Unhealthy).then(|| "timed out".into()),
            fresh: true,
            own: false,
        };
        HashMap::from([("a".to_owned(), view)])
    }

    #[test]
    fn peers_views_carry_the_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        r.set_identity("mzlb-0".into());
        assert_eq!(probe(&r, true), AlbState::Enabled);
        r.peer_report("mzlb-1", view("mzlb-1", Health::Healthy));
        r.peer_report("mzlb-2", view("mzlb-2", Health::Healthy));
        // Our own probes fail (fall 3): one prober of three is not a majority.
        for _ in 0..3 {
            assert_eq!(probe(&r, false), AlbState::Enabled);
        }
        let s = &r.status()[0];
        assert!(s.in_dns);
        let views: Vec<(&str, Health, bool)> = s.probers.iter().map(|v| (v.prober.as_str(), v.health, v.own)).collect();
        assert_eq!(
            views,
            [
                ("mzlb-0", Health::Unhealthy, true),
                ("mzlb-1", Health::Healthy, false),
                ("mzlb-2", Health::Healthy, false)
            ]
        );
        // A second prober sees it fail: out, and the event names who moved the verdict.
        r.peer_report("mzlb-1", view("mzlb-1", Health::Unhealthy));
        // (Its one ALB is still answered: the cluster fails open.)
        assert_eq!(r.status()[0].state, AlbState::Unhealthy);
        let last = r.events().pop().unwrap();
        assert_eq!(
            last.cause,
            "report from mzlb-1; 2 of 3 probers see it unhealthy: mzlb-0 (connection failed), mzlb-1 (timed out)"
        );
        // The peer leaves: alone again, our own view decides (still failing).
        r.peer_gone("mzlb-1");
        r.peer_gone("mzlb-2");
        assert_eq!(r.status()[0].state, AlbState::Unhealthy);
        assert_eq!(probe(&r, true), AlbState::Unhealthy, "rise 2");
        assert_eq!(probe(&r, true), AlbState::Enabled);
    }

    #[test]
    fn editing_health_settings_keeps_a_healthy_alb_answered() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        assert_eq!(probe(&r, true), AlbState::Enabled);
        let mut config = r.albs()[0].clone();
        config.health.interval_ms = 500;
        config.health.fall = 5;
        r.reconfigure(cluster(FailPolicy::Open), vec![config]).unwrap();
        let s = &r.status()[0];
        assert_eq!(
            (s.state, s.in_dns),
            (AlbState::Enabled, true),
            "no reset to pending (an empty answer resolvers cache)"
        );
        // The new thresholds apply: four failures keep it, the fifth takes it out.
        for _ in 0..4 {
            assert_eq!(probe(&r, false), AlbState::Enabled);
        }
        assert_eq!(probe(&r, false), AlbState::Unhealthy);
    }
}
