//! `GET /v1/status`: everything the status page shows, as one JSON document the page itself
//! renders (and scripts may read; the README documents it). Built by a pure function from
//! the registry's [`Overview`], so what the page says is tested without a browser.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use zone_alb::objects::FailPolicy;

use crate::events::Event;
use crate::registry::{AlbStatus, Overview};
use crate::timeline::{BUCKET_MS, Bucket, SPAN_MS};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// When this document was built (the server's clock, Unix milliseconds).
    pub now_ms: u64,
    /// The replica that answered (`local` outside a cluster).
    pub prober: String,
    pub clusters: Vec<ClusterStatus>,
    /// One card per zone, in the order the ALBs are configured.
    pub zones: Vec<ZoneStatus>,
    /// State transitions, newest first.
    pub events: Vec<Event>,
    pub timeline: TimelineInfo,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineInfo {
    pub span_ms: u64,
    pub bucket_ms: u64,
}

/// One cluster's DNS answer, as a client gets it now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    /// The zone served: the apex and every name below it get the same answer.
    pub subdomain: String,
    pub ttl: u32,
    /// The SOA serial now served (`None` before the first publish).
    pub serial: Option<u32>,
    pub a: Vec<IpAddr>,
    pub aaaa: Vec<IpAddr>,
    pub fail_policy: FailPolicy,
    /// Every enabled ALB is unhealthy and all of them are answered anyway.
    pub failing_open: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneStatus {
    pub zone: String,
    pub albs: Vec<AlbCard>,
}

/// One ALB: what `mzlb albs` shows, and more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlbCard {
    #[serde(flatten)]
    pub status: AlbStatus,
    /// The addresses its cluster would answer if this ALB were disabled now.
    pub answer_if_disabled: Vec<IpAddr>,
    /// This replica's probes over the last 15 minutes, oldest first.
    pub timeline: Vec<Bucket>,
}

pub fn build(overview: Overview) -> Status {
    let Overview {
        albs,
        clusters,
        failing_open,
        mut without,
        mut timelines,
        mut events,
        served,
        prober,
        now_ms,
    } = overview;
    let clusters = clusters
        .into_iter()
        .map(|c| {
            let served = served.iter().find(|s| same_name(&s.origin, &c.subdomain));
            let addresses = served.map(|s| s.addresses.clone()).unwrap_or_default();
            ClusterStatus {
                failing_open: failing_open.contains(&c.name),
                serial: served.map(|s| s.serial),
                a: addresses.iter().copied().filter(IpAddr::is_ipv4).collect(),
                aaaa: addresses.iter().copied().filter(IpAddr::is_ipv6).collect(),
                name: c.name,
                subdomain: c.subdomain,
                ttl: c.ttl,
                fail_policy: c.fail_policy,
            }
        })
        .collect();
    // Zones in the order their first ALB is configured: the order operators wrote them.
    let mut zones: Vec<ZoneStatus> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for status in albs {
        let card = AlbCard {
            answer_if_disabled: without.remove(&status.id).unwrap_or_default(),
            timeline: timelines.remove(&status.id).unwrap_or_default(),
            status,
        };
        let i = *index.entry(card.status.zone.clone()).or_insert_with(|| {
            zones.push(ZoneStatus {
                zone: card.status.zone.clone(),
                albs: Vec::new(),
            });
            zones.len() - 1
        });
        zones[i].albs.push(card);
    }
    events.reverse();
    Status {
        now_ms,
        prober,
        clusters,
        zones,
        events,
        timeline: TimelineInfo {
            span_ms: SPAN_MS,
            bucket_ms: BUCKET_MS,
        },
    }
}

/// DNS names compare without case and without a trailing dot.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    use super::*;
    use crate::config::ClusterConfig;
    use crate::registry::{AlbState, Health};

    fn alb(id: &str, zone: &str, ip: &str, state: AlbState) -> AlbStatus {
        AlbStatus {
            id: id.into(),
            cluster: "demo".into(),
            zone: zone.into(),
            ip: ip.parse().unwrap(),
            port: 8080,
            enabled: state != AlbState::Disabled,
            state,
            since_ms: 1,
            health: Health::Healthy,
            probers: Vec::new(),
            in_dns: state == AlbState::Enabled,
            fail_policy: FailPolicy::Open,
            last_probe: None,
            last_error: None,
        }
    }

    fn event(at_ms: u64, alb: &str) -> Event {
        Event {
            at_ms,
            alb: alb.into(),
            from: AlbState::Pending,
            to: AlbState::Enabled,
            cause: "probe: 200 OK".into(),
        }
    }

    fn overview() -> Overview {
        Overview {
            albs: vec![
                alb("alb1", "zone-1", "192.0.2.1", AlbState::Enabled),
                alb("alb2", "zone-2", "2001:db8::2", AlbState::Enabled),
                alb("alb3", "zone-1", "192.0.2.3", AlbState::Disabled),
            ],
            clusters: vec![ClusterConfig {
                name: "demo".into(),
                subdomain: "demo.mzlb.test".into(),
                ttl: 5,
                soa: Default::default(),
                fail_policy: FailPolicy::Open,
                drain: Duration::ZERO,
            }],
            failing_open: HashSet::new(),
            without: HashMap::from([
                ("alb1".into(), vec!["2001:db8::2".parse().unwrap()]),
                ("alb2".into(), vec!["192.0.2.1".parse().unwrap()]),
            ]),
            timelines: HashMap::from([(
                "alb1".into(),
                vec![Bucket {
                    at_ms: 0,
                    probes: 25,
                    failed: 1,
                    latency_ms_avg: 0.5,
                    latency_ms_max: 2.0,
                }],
            )]),
            events: vec![event(1, "alb1"), event(2, "alb2")],
            served: vec![dns::Served {
                origin: "Demo.mzlb.test.".into(),
                addresses: vec!["192.0.2.1".parse().unwrap(), "2001:db8::2".parse().unwrap()],
                serial: 42,
            }],
            prober: "local".into(),
            now_ms: 10,
        }
    }

    #[test]
    fn groups_albs_by_zone_and_gives_the_served_answer() {
        let status = build(overview());
        let zones: Vec<(&str, Vec<&str>)> = status
            .zones
            .iter()
            .map(|z| (z.zone.as_str(), z.albs.iter().map(|a| a.status.id.as_str()).collect()))
            .collect();
        assert_eq!(zones, [("zone-1", vec!["alb1", "alb3"]), ("zone-2", vec!["alb2"])]);
        let c = &status.clusters[0];
        assert_eq!(c.serial, Some(42));
        assert_eq!(c.a, ["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.aaaa, ["2001:db8::2".parse::<IpAddr>().unwrap()]);
        assert!(!c.failing_open);
        let alb1 = &status.zones[0].albs[0];
        assert_eq!(alb1.answer_if_disabled, ["2001:db8::2".parse::<IpAddr>().unwrap()]);
        assert_eq!(alb1.timeline.len(), 1);
        assert!(status.zones[0].albs[1].answer_if_disabled.is_empty());
        let times: Vec<u64> = status.events.iter().map(|e| e.at_ms).collect();
        assert_eq!(times, [2, 1], "newest first");
    }

    #[test]
    fn json_keeps_the_documented_field_names() {
        let json = serde_json::to_value(build(overview())).unwrap();
        let alb = &json["zones"][0]["albs"][0];
        // AlbStatus is flattened: the card carries `mzlb albs -o json`'s fields unchanged.
        for field in [
            "id",
            "state",
            "since_ms",
            "in_dns",
            "last_probe",
            "last_error",
            "probers",
            "answer_if_disabled",
            "timeline",
        ] {
            assert!(alb.get(field).is_some(), "{field} missing in {alb}");
        }
        assert_eq!(alb["state"], "enabled");
        let cluster = &json["clusters"][0];
        for field in ["subdomain", "ttl", "serial", "a", "aaaa", "failing_open", "fail_policy"] {
            assert!(cluster.get(field).is_some(), "{field} missing in {cluster}");
        }
        assert_eq!(json["timeline"]["bucket_ms"], BUCKET_MS);
        // And it reads back.
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(back, build(overview()));
    }

    #[test]
    fn no_serial_before_anything_is_served() {
        let mut o = overview();
        o.served.clear();
        let c = &build(o).clusters[0];
        assert_eq!((c.serial, c.a.len(), c.aaaa.len()), (None, 0, 0));
    }
}
