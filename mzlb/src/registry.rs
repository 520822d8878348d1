//! The ALB registry: every zone ALB with its enabled flag and health, and the rule that turns
//! them into DNS answers. Changes are published to the DNS authority as a whole new answer set.
//!
//! Only the control path (probe results, enable/disable, status reads) takes the lock here;
//! DNS queries read the published answer set without locking.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zone_alb::objects::{HealthSpec, Objects, key_of};

use crate::error::{Error, Result};
use crate::state::StateDir;

/// One cluster's ingress subdomain as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub subdomain: String,
    pub ttl: u32,
}

/// One ALB as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct AlbConfig {
    pub id: String,
    pub zone: String,
    pub ip: IpAddr,
    pub port: u16,
    pub cluster: String,
    /// `spec.enabled` in the manifest; an operator's choice in the state dir overrides it.
    pub enabled: bool,
    pub health: HealthSpec,
}

impl AlbConfig {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// Clusters and ALBs from the objects, checked for consistency.
pub fn configs(objects: &Objects) -> Result<(Vec<ClusterConfig>, Vec<AlbConfig>)> {
    if objects.clusters.is_empty() {
        return Err(Error::Config {
            object: "manifests".into(),
            field: "kind".into(),
            message: "no MultiZoneCluster object (mzlb.io/v1alpha1): nothing says which subdomain to serve".into(),
        });
    }
    let clusters: Vec<ClusterConfig> = objects
        .clusters
        .iter()
        .map(|c| ClusterConfig {
            name: c.metadata.name.clone().unwrap_or_default(),
            subdomain: c.spec.subdomain.trim_end_matches('.').to_ascii_lowercase(),
            ttl: c.spec.ttl,
        })
        .collect();
    let mut albs = Vec::new();
    let mut addrs = HashSet::new();
    for alb in &objects.zone_albs {
        let what = objects.describe(&key_of("ZoneALB", &alb.metadata, false));
        let cluster = objects.cluster_of(alb).ok_or_else(|| Error::Config {
            object: what.clone(),
            field: "spec.cluster".into(),
            message: match &alb.spec.cluster {
                Some(name) => format!("no MultiZoneCluster named `{name}`"),
                None => "required when there is more than one MultiZoneCluster".into(),
            },
        })?;
        let config = AlbConfig {
            id: alb.metadata.name.clone().unwrap_or_default(),
            zone: alb.spec.zone.clone(),
            ip: alb.spec.ip,
            port: alb.spec.port,
            cluster: cluster.metadata.name.clone().unwrap_or_default(),
            enabled: alb.spec.enabled,
            health: cluster.spec.health.clone(),
        };
        if !addrs.insert(config.addr()) {
            return Err(Error::Config {
                object: what,
                field: "spec.ip".into(),
                message: format!("{} is used by another ZoneALB", config.addr()),
            });
        }
        albs.push(config);
    }
    Ok((clusters, albs))
}

/// Health as far as mzlb knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not probed yet: never answered on a guess.
    Pending,
    Healthy,
    Unhealthy,
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
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            at_ms,
            ok,
            latency_ms: latency.as_secs_f64() * 1000.0,
            detail,
        }
    }
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
    pub health: Health,
    /// Whether DNS currently answers this ALB's IP.
    pub in_dns: bool,
    pub last_probe: Option<Probe>,
}

struct Entry {
    config: AlbConfig,
    enabled: bool,
    health: Health,
    last_probe: Option<Probe>,
}

pub struct Registry {
    clusters: Vec<ClusterConfig>,
    entries: Mutex<Vec<Entry>>,
    authority: dns::Authority,
    state: StateDir,
}

impl Registry {
    /// Starts from the manifests' `spec.enabled`, overridden by choices saved in `state`, and
    /// publishes an empty answer until probes report.
    pub fn new(
        clusters: Vec<ClusterConfig>,
        albs: Vec<AlbConfig>,
        authority: dns::Authority,
        state: StateDir,
    ) -> Result<Self> {
        let choices = state.read_choices()?;
        let entries = albs
            .into_iter()
            .map(|config| Entry {
                enabled: choices.enabled.get(&config.id).copied().unwrap_or(config.enabled),
                config,
                health: Health::Pending,
                last_probe: None,
            })
            .collect();
        let registry = Self {
            clusters,
            entries: Mutex::new(entries),
            authority,
            state,
        };
        registry.publish(&registry.entries.lock().expect("registry poisoned"))?;
        Ok(registry)
    }

    pub fn albs(&self) -> Vec<AlbConfig> {
        self.entries
            .lock()
            .expect("registry poisoned")
            .iter()
            .map(|e| e.config.clone())
            .collect()
    }

    /// Records a probe; republishes DNS when `health` differs from before.
    pub fn report(&self, id: &str, health: Health, probe: Probe) {
        let mut entries = self.entries.lock().expect("registry poisoned");
        let Some(entry) = entries.iter_mut().find(|e| e.config.id == id) else {
            return;
        };
        entry.last_probe = Some(probe);
        if entry.health == health {
            return;
        }
        tracing::info!(alb = %id, from = ?entry.health, to = ?health, detail = %entry.last_probe.as_ref().map_or("", |p| p.detail.as_str()), "ALB health changed");
        entry.health = health;
        if let Err(error) = self.publish(&entries) {
            tracing::error!(%error, "could not publish DNS answers; the previous ones stay");
        }
    }

    /// Enables or disables an ALB: saved durably first, then DNS follows at once.
    pub fn set_enabled(&self, id: &str, enabled: bool) -> Result<AlbStatus> {
        let mut entries = self.entries.lock().expect("registry poisoned");
        if !entries.iter().any(|e| e.config.id == id) {
            return Err(Error::UnknownAlb(id.to_owned()));
        }
        let mut choices = self.state.read_choices()?;
        choices.enabled.insert(id.to_owned(), enabled);
        self.state.write_choices(&choices)?;
        let entry = entries.iter_mut().find(|e| e.config.id == id).expect("checked above");
        if entry.enabled != enabled {
            tracing::info!(alb = %id, enabled, "ALB {}", if enabled { "enabled" } else { "disabled" });
            entry.enabled = enabled;
            self.publish(&entries)?;
        }
        let answered = answered(&self.clusters, &entries);
        Ok(status_of(
            entries.iter().find(|e| e.config.id == id).expect("checked above"),
            &answered,
        ))
    }

    pub fn status(&self) -> Vec<AlbStatus> {
        let entries = self.entries.lock().expect("registry poisoned");
        let answered = answered(&self.clusters, &entries);
        entries.iter().map(|e| status_of(e, &answered)).collect()
    }

    fn publish(&self, entries: &[Entry]) -> Result<()> {
        let answered = answered(&self.clusters, entries);
        let zones = self
            .clusters
            .iter()
            .map(|cluster| dns::ZoneAnswers {
                origin: cluster.subdomain.clone(),
                ttl: cluster.ttl,
                addresses: entries
                    .iter()
                    .filter(|e| e.config.cluster == cluster.name && answered.contains(&e.config.id))
                    .map(|e| e.config.ip)
                    .collect(),
                soa: dns::SoaSettings {
                    minimum: cluster.ttl,
                    ..Default::default()
                },
            })
            .collect();
        self.authority.publish(&dns::AnswerSet { zones })?;
        Ok(())
    }
}

fn status_of(entry: &Entry, answered: &HashSet<String>) -> AlbStatus {
    let c = &entry.config;
    AlbStatus {
        id: c.id.clone(),
        cluster: c.cluster.clone(),
        zone: c.zone.clone(),
        ip: c.ip,
        port: c.port,
        enabled: entry.enabled,
        health: entry.health,
        in_dns: answered.contains(&c.id),
        last_probe: entry.last_probe.clone(),
    }
}

/// Which ALBs DNS answers: per cluster, the enabled healthy ones. When every enabled, probed ALB
/// of a cluster is unhealthy, all of them are answered (fail-open, as Route 53 does): a guess
/// that may work beats an empty answer that surely fails. Disabled or unprobed ALBs never are.
fn answered(clusters: &[ClusterConfig], entries: &[Entry]) -> HashSet<String> {
    let mut out = HashSet::new();
    for cluster in clusters {
        let candidates: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.config.cluster == cluster.name && e.enabled && e.health != Health::Pending)
            .collect();
        let healthy: Vec<&&Entry> = candidates.iter().filter(|e| e.health == Health::Healthy).collect();
        if healthy.is_empty() && !candidates.is_empty() {
            tracing::warn!(cluster = %cluster.name, "every enabled ALB is unhealthy: failing open");
            out.extend(candidates.iter().map(|e| e.config.id.clone()));
        } else {
            out.extend(healthy.iter().map(|e| e.config.id.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, enabled: bool, health: Health) -> Entry {
        Entry {
            config: AlbConfig {
                id: id.into(),
                zone: "z".into(),
                ip: "127.0.0.1".parse().unwrap(),
                port: 80,
                cluster: "c".into(),
                enabled: true,
                health: HealthSpec::default(),
            },
            enabled,
            health,
            last_probe: None,
        }
    }

    fn ids(set: HashSet<String>) -> Vec<String> {
        let mut v: Vec<_> = set.into_iter().collect();
        v.sort();
        v
    }

    fn cluster() -> Vec<ClusterConfig> {
        vec![ClusterConfig {
            name: "c".into(),
            subdomain: "c.test".into(),
            ttl: 5,
        }]
    }

    #[test]
    fn answers_enabled_healthy_albs_only() {
        let e = [
            entry("a", true, Health::Healthy),
            entry("b", false, Health::Healthy),
            entry("c", true, Health::Unhealthy),
            entry("d", true, Health::Pending),
        ];
        assert_eq!(ids(answered(&cluster(), &e)), vec!["a"]);
    }

    #[test]
    fn fails_open_to_enabled_albs_when_all_are_unhealthy() {
        let e = [
            entry("a", true, Health::Unhealthy),
            entry("b", false, Health::Unhealthy),
            entry("c", true, Health::Unhealthy),
            entry("d", true, Health::Pending),
        ];
        assert_eq!(ids(answered(&cluster(), &e)), vec!["a", "c"]);
    }

    #[test]
    fn nothing_is_answered_before_the_first_probe() {
        let e = [entry("a", true, Health::Pending)];
        assert!(answered(&cluster(), &e).is_empty());
    }
}
