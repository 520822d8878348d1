//! Cluster and ALB settings compiled from the objects, checked for consistency.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use zone_alb::objects::{FailPolicy, HealthSpec, Objects, key_of};

use crate::error::{Error, Result};

/// One cluster's ingress subdomain as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub subdomain: String,
    pub ttl: u32,
    pub soa: dns::SoaSettings,
    pub fail_policy: FailPolicy,
    /// How long a disabled ALB is reported as draining.
    pub drain: Duration,
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
    /// The `Host` probes send: `albhealth.<subdomain>`, the one host the ALB answers itself.
    pub health_host: String,
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
            health: match &alb.spec.health {
                Some(o) => cluster.spec.health.with(o),
                None => cluster.spec.health.clone(),
            },
            health_host: cluster.health_host(),
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
    // The name server's addresses are glue: answered only for a name inside the zone (an
    // outside name is some other server's to answer).
    if !soa.name_server_addresses.is_empty() {
        let ns = mname.as_deref().map_or_else(
            || format!("ns.{subdomain}"),
            |m| m.trim_end_matches('.').to_ascii_lowercase(),
        );
        if !ns.ends_with(&format!(".{subdomain}")) {
            return Err(invalid(
                "spec.soa.nameServerAddresses",
                format!(
                    "only served for a name server inside `{subdomain}`; `{ns}` (spec.soa.primaryNameServer) is not"
                ),
            ));
        }
        if let Some(ip) = soa
            .name_server_addresses
            .iter()
            .find(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(invalid(
                "spec.soa.nameServerAddresses",
                format!("{ip} is not a unicast address a resolver can query"),
            ));
        }
    }
    let defaults = dns::SoaSettings::default();
    Ok(ClusterConfig {
        name: c.metadata.name.clone().unwrap_or_default(),
        subdomain,
        ttl: c.spec.ttl,
        fail_policy: c.spec.fail_policy,
        drain: Duration::from_secs(u64::from(c.spec.drain_seconds.unwrap_or(c.spec.ttl.saturating_add(2)))),
        soa: dns::SoaSettings {
            mname,
            ns_addresses: soa.name_server_addresses.clone(),
            ns_ttl: soa.ns_ttl.unwrap_or(defaults.ns_ttl),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn name_server_settings_default_to_a_day_and_glue_only_in_the_zone() {
        let (clusters, _) = load(&format!("{CLUSTER}spec: {{subdomain: c.test}}\n")).unwrap();
        assert_eq!((clusters[0].soa.ns_ttl, clusters[0].soa.ns_addresses.len()), (86400, 0));
        let (clusters, _) = load(&format!(
            "{CLUSTER}spec: {{subdomain: c.test, soa: {{nsTtl: 3600, nameServerAddresses: [192.0.2.53, '2001:db8::53']}}}}\n"
        ))
        .unwrap();
        let soa = &clusters[0].soa;
        assert_eq!(soa.ns_ttl, 3600);
        assert_eq!(
            soa.ns_addresses,
            ["192.0.2.53".parse::<IpAddr>().unwrap(), "2001:db8::53".parse().unwrap()]
        );
        let (clusters, _) = load(&format!(
            "{CLUSTER}spec: {{subdomain: c.test, soa: {{primaryNameServer: NS1.C.Test., nameServerAddresses: [192.0.2.53]}}}}\n"
        ))
        .unwrap();
        assert_eq!(clusters[0].soa.ns_addresses.len(), 1);
        // (soa settings, what the error must say)
        let rows = [
            (
                "{primaryNameServer: ns.other.test, nameServerAddresses: [192.0.2.53]}",
                "`ns.other.test` (spec.soa.primaryNameServer) is not",
            ),
            (
                "{primaryNameServer: c.test, nameServerAddresses: [192.0.2.53]}",
                "inside `c.test`",
            ),
            (
                "{primaryNameServer: xc.test, nameServerAddresses: [192.0.2.53]}",
                "inside `c.test`",
            ),
            ("{nameServerAddresses: [0.0.0.0]}", "0.0.0.0 is not a unicast address"),
            ("{nameServerAddresses: ['ff02::1']}", "ff02::1 is not a unicast address"),
            ("{nameServerAddresses: [ns.c.test]}", "nameServerAddresses"),
            ("{nsTtl: -1}", "nsTtl"),
        ];
        for (soa, want) in rows {
            let err = load(&format!("{CLUSTER}spec: {{subdomain: c.test, soa: {soa}}}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{soa}: {err}");
            if !soa.contains("ns.c.test") && !soa.contains("-1") {
                assert!(err.contains("field `spec.soa.nameServerAddresses`"), "{soa}: {err}");
            }
        }
    }

    #[test]
    fn alb_health_overrides_the_clusters() {
        let (clusters, albs) = load(&format!(
            "{CLUSTER}spec: {{subdomain: c.test, ttl: 4, failPolicy: closed, health: {{intervalMs: 500}}}}\n---\n\
             apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: a}}\n\
             spec: {{zone: z, ip: 127.0.0.1, health: {{mode: tcp, fall: 5}}}}\n"
        ))
        .unwrap();
        assert_eq!(clusters[0].fail_policy, FailPolicy::Closed);
        assert_eq!(clusters[0].drain, Duration::from_secs(6), "TTL + 2 s by default");
        let h = &albs[0].health;
        assert_eq!(
            (h.mode, h.interval_ms, h.fall, h.rise),
            (zone_alb::objects::ProbeMode::Tcp, 500, 5, 2)
        );
    }
}
