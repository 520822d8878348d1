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
use crate::metrics::{AlbLabels, ClusterLabels, Metrics};
use crate::state::StateDir;

/// One cluster's ingress subdomain as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub subdomain: String,
    pub ttl: u32,
    pub soa: dns::SoaSettings,
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
    let clusters = objects
        .clusters
        .iter()
        .map(|c| {
            let what = objects.describe(&key_of("MultiZoneCluster", &c.metadata, false));
            cluster_config(c, &what)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut subdomains = HashSet::new();
    for c in &clusters {
        if !subdomains.insert(c.subdomain.as_str()) {
            return Err(Error::Config {
                object: format!("MultiZoneCluster {}", c.name),
                field: "spec.subdomain".into(),
                message: format!("`{}` is served by another MultiZoneCluster", c.subdomain),
            });
        }
    }
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

fn cluster_config(c: &zone_alb::objects::MultiZoneCluster, what: &str) -> Result<ClusterConfig> {
    let invalid = |field: &str, message: String| Error::Config {
        object: what.to_owned(),
        field: field.into(),
        message,
    };
    let subdomain = c.spec.subdomain.trim_end_matches('.').to_ascii_lowercase();
    if !is_dns_name(&subdomain) {
        return Err(invalid(
            "spec.subdomain",
            format!("`{}` is not a DNS name", c.spec.subdomain),
        ));
    }
    let soa = &c.spec.soa;
    let mname = soa.primary_name_server.clone();
    if let Some(m) = &mname
        && !is_dns_name(m.trim_end_matches('.'))
    {
        return Err(invalid(
            "spec.soa.primaryNameServer",
            format!("`{m}` is not a DNS name"),
        ));
    }
    // `hostmaster@example.com` is written `hostmaster.example.com` in an SOA.
    let rname = match &soa.hostmaster {
        Some(h) => match h.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !local.contains('.') && is_dns_name(domain) => {
                Some(format!("{local}.{domain}"))
            }
            None if is_dns_name(h.trim_end_matches('.')) => Some(h.clone()),
            _ => {
                return Err(invalid(
                    "spec.soa.hostmaster",
                    format!("`{h}` is neither a mailbox nor a DNS name"),
                ));
            }
        },
        None => None,
    };
    let defaults = dns::SoaSettings::default();
    Ok(ClusterConfig {
        name: c.metadata.name.clone().unwrap_or_default(),
        subdomain,
        ttl: c.spec.ttl,
        soa: dns::SoaSettings {
            mname,
            rname,
            refresh: soa.refresh.unwrap_or(defaults.refresh),
            retry: soa.retry.unwrap_or(defaults.retry),
            expire: soa.expire.unwrap_or(defaults.expire),
            minimum: soa.minimum.unwrap_or(c.spec.ttl),
        },
    })
}

/// Letters, digits, hyphens and underscores in dot-separated labels of 1–63 bytes.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
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
    /// Clusters failing open at the last publish; locked only inside `publish`.
    failing_open: Mutex<HashSet<String>>,
    authority: dns::Authority,
    state: StateDir,
    metrics: Metrics,
}

impl Registry {
    /// Starts from the manifests' `spec.enabled`, overridden by choices saved in `state`, and
    /// publishes an empty answer until probes report.
    pub fn new(
        clusters: Vec<ClusterConfig>,
        albs: Vec<AlbConfig>,
        authority: dns::Authority,
        state: StateDir,
        metrics: Metrics,
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
            failing_open: Mutex::default(),
            authority,
            state,
            metrics,
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
        self.metrics
            .health_changes
            .get_or_create(&alb_labels(&entry.config))
            .inc();
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
        let (answered, _) = answered(&self.clusters, &entries);
        Ok(status_of(
            entries.iter().find(|e| e.config.id == id).expect("checked above"),
            &answered,
        ))
    }

    pub fn status(&self) -> Vec<AlbStatus> {
        let entries = self.entries.lock().expect("registry poisoned");
        let (answered, _) = answered(&self.clusters, &entries);
        entries.iter().map(|e| status_of(e, &answered)).collect()
    }

    fn publish(&self, entries: &[Entry]) -> Result<()> {
        let (answered, failing_open) = answered(&self.clusters, entries);
        let mut was_failing_open = self.failing_open.lock().expect("registry poisoned");
        for cluster in &self.clusters {
            let labels = ClusterLabels {
                cluster: cluster.name.clone(),
            };
            let now = failing_open.contains(&cluster.name);
            if now && !was_failing_open.contains(&cluster.name) {
                tracing::warn!(cluster = %cluster.name, "every enabled ALB is unhealthy: failing open, answering all of them");
                self.metrics.fail_open.get_or_create(&labels).inc();
            } else if !now && was_failing_open.contains(&cluster.name) {
                tracing::info!(cluster = %cluster.name, "no longer failing open");
            }
            self.metrics.failing_open.get_or_create(&labels).set(i64::from(now));
        }
        *was_failing_open = failing_open;
        for entry in entries {
            let in_dns = answered.contains(&entry.config.id);
            self.metrics
                .alb_in_dns
                .get_or_create(&alb_labels(&entry.config))
                .set(i64::from(in_dns));
        }
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
                soa: cluster.soa.clone(),
            })
            .collect();
        self.authority.publish(&dns::AnswerSet { zones })?;
        Ok(())
    }
}

fn alb_labels(config: &AlbConfig) -> AlbLabels {
    AlbLabels {
        alb: config.id.clone(),
        zone: config.zone.clone(),
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
/// Also returns the clusters failing open.
fn answered(clusters: &[ClusterConfig], entries: &[Entry]) -> (HashSet<String>, HashSet<String>) {
    let mut out = HashSet::new();
    let mut failing_open = HashSet::new();
    for cluster in clusters {
        let candidates: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.config.cluster == cluster.name && e.enabled && e.health != Health::Pending)
            .collect();
        let healthy: Vec<&&Entry> = candidates.iter().filter(|e| e.health == Health::Healthy).collect();
        if healthy.is_empty() && !candidates.is_empty() {
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

    fn ids((set, _): (HashSet<String>, HashSet<String>)) -> Vec<String> {
        let mut v: Vec<_> = set.into_iter().collect();
        v.sort();
        v
    }

    fn cluster() -> Vec<ClusterConfig> {
        vec![ClusterConfig {
            name: "c".into(),
            subdomain: "c.test".into(),
            ttl: 5,
            soa: Default::default(),
        }]
    }

    fn load(text: &str) -> Result<(Vec<ClusterConfig>, Vec<AlbConfig>)> {
        let mut objects = Objects::default();
        zone_alb::source::dir::load_str(text, std::path::Path::new("c.yaml"), &mut objects)?;
        configs(&objects)
    }

    const CLUSTER: &str = "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\n";

    #[test]
    fn soa_settings_take_a_mailbox_and_default_sensibly() {
        let (clusters, _) = load(&format!(
            "{CLUSTER}spec: {{subdomain: C.Test., ttl: 9, soa: {{hostmaster: ops@example.org, refresh: 60}}}}\n"
        ))
        .unwrap();
        let c = &clusters[0];
        assert_eq!(c.subdomain, "c.test");
        assert_eq!(c.soa.rname.as_deref(), Some("ops.example.org"));
        assert_eq!((c.soa.refresh, c.soa.retry, c.soa.minimum), (60, 600, 9));
    }

    #[test]
    fn bad_cluster_settings_name_the_field() {
        let err = load(&format!("{CLUSTER}spec: {{subdomain: 'bad name.test'}}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MultiZoneCluster c in c.yaml (document 1): field `spec.subdomain`"),
            "{err}"
        );
        let err = load(&format!(
            "{CLUSTER}spec: {{subdomain: c.test, soa: {{hostmaster: 'a.b@c'}}}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("spec.soa.hostmaster"), "{err}");
        let two = format!(
            "{CLUSTER}spec: {{subdomain: c.test}}\n---\n{}",
            CLUSTER.replace("name: c", "name: d")
        );
        let err = load(&format!("{two}spec: {{subdomain: c.test}}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("served by another MultiZoneCluster"), "{err}");
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
        assert!(answered(&cluster(), &e).1.contains("c"), "cluster c fails open");
    }

    #[test]
    fn nothing_is_answered_before_the_first_probe() {
        let e = [entry("a", true, Health::Pending)];
        assert!(answered(&cluster(), &e).0.is_empty());
    }
}
