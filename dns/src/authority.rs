//! Compiles an [`AnswerSet`] into hickory zone handlers plus pre-built wire answers, and
//! publishes both together atomically.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};
use hickory_server::net::runtime::Time;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RrKey, rdata};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

use crate::metrics::Metrics;
use crate::prebuilt::Prebuilt;
use crate::{AnswerSet, Error, Result, ZoneAnswers};

/// A zone's last published addresses and the SOA serial they were published under.
type Published = (Vec<IpAddr>, u32);

/// One zone as served now.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    pub origin: String,
    pub addresses: Vec<IpAddr>,
    pub serial: u32,
}

/// One consistent view of everything served.
#[derive(Default)]
pub(crate) struct Compiled {
    /// hickory's full request path: every query the hot path does not take, and all of TCP.
    pub catalog: Catalog,
    /// The hot path for UDP.
    pub prebuilt: Prebuilt,
}

/// The zones this server is authoritative for. Cheap to clone the handle; queries read the
/// current view through `ArcSwap` and never wait for a publish.
#[derive(Clone, Default)]
pub struct Authority {
    compiled: Arc<ArcSwap<Compiled>>,
    /// Last published addresses and serial per zone; only the (rare) publish path locks it.
    serials: Arc<Mutex<HashMap<String, Published>>>,
    pub(crate) metrics: Metrics,
}

impl Authority {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters for queries and answer-set changes, to register with a Prometheus registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What is being served now, per zone: the addresses (as a client gets them, before
    /// rotation) and the SOA serial. For status displays; the query path never calls it.
    pub fn served(&self) -> Vec<Served> {
        let serials = self.serials.lock().expect("serial map poisoned");
        let mut zones: Vec<Served> = serials
            .iter()
            .map(|(origin, (addresses, serial))| Served {
                origin: origin.clone(),
                addresses: addresses.clone(),
                serial: *serial,
            })
            .collect();
        zones.sort_by(|a, b| a.origin.cmp(&b.origin));
        zones
    }

    pub(crate) fn current(&self) -> Guard<Arc<Compiled>> {
        self.compiled.load()
    }

    /// Replaces everything served. A zone's SOA serial increases whenever its addresses change.
    pub fn publish(&self, set: &AnswerSet) -> Result<()> {
        let mut serials = self.serials.lock().expect("serial map poisoned");
        let mut next_serials = HashMap::new();
        let mut compiled = Compiled::default();
        for zone in &set.zones {
            let serial = match serials.get(&zone.origin) {
                Some((addresses, serial)) if *addresses == zone.addresses => *serial,
                Some((_, serial)) => serial.wrapping_add(1).max(1),
                // Time-based start, so a restarted server does not go back in serial.
                None => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs() as u32),
            };
            let (origin, soa, handler) = build_zone(zone, serial)?;
            compiled.prebuilt.add_zone(zone, &origin, &soa)?;
            compiled
                .catalog
                .upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
            next_serials.insert(zone.origin.clone(), (zone.addresses.clone(), serial));
        }
        if *serials != next_serials {
            self.metrics.answer_set_changes.inc();
        }
        *serials = next_serials;
        self.compiled.store(Arc::new(compiled));
        Ok(())
    }
}

fn zone_error(zone: &ZoneAnswers, message: impl std::fmt::Display) -> Error {
    Error::Zone {
        origin: zone.origin.clone(),
        message: message.to_string(),
    }
}

fn name_in(zone: &ZoneAnswers, value: &str) -> Result<Name> {
    let mut name =
        Name::from_ascii(value).map_err(|e| zone_error(zone, format!("`{value}` is not a DNS name: {e}")))?;
    name.set_fqdn(true);
    Ok(name)
}

fn build_zone(zone: &ZoneAnswers, serial: u32) -> Result<(Name, rdata::SOA, InMemoryZoneHandler)> {
    let origin = name_in(zone, &zone.origin)?;
    let child = |label: &str| {
        Name::from_ascii(label)
            .and_then(|l| l.append_domain(&origin))
            .map_err(|e| zone_error(zone, e))
    };
    let mname = match &zone.soa.mname {
        Some(m) => name_in(zone, m)?,
        None => child("ns")?,
    };
    let rname = match &zone.soa.rname {
        Some(r) => name_in(zone, r)?,
        None => child("hostmaster")?,
    };
    let wildcard = child("*")?;
    let s = &zone.soa;
    let soa = rdata::SOA::new(mname.clone(), rname, serial, s.refresh, s.retry, s.expire, s.minimum);

    let mut records = BTreeMap::new();
    let mut add = |name: &Name, ttl: u32, data: RData| {
        let key = RrKey::new(LowerName::new(name), data.record_type());
        let set = records
            .entry(key)
            .or_insert_with(|| RecordSet::new(name.clone(), data.record_type(), serial));
        set.insert(Record::from_rdata(name.clone(), ttl, data), serial);
    };
    add(&origin, s.minimum, RData::SOA(soa.clone()));
    add(&origin, s.ns_ttl, RData::NS(rdata::NS(mname.clone())));
    let in_zone = origin.zone_of(&mname) && mname.num_labels() > origin.num_labels();
    if !s.ns_addresses.is_empty() && !in_zone {
        return Err(zone_error(
            zone,
            format!("name server addresses are only served for a name server inside the zone, not `{mname}`"),
        ));
    }
    for ip in &s.ns_addresses {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(rdata::A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(rdata::AAAA(*v6)),
        };
        add(&mname, s.ns_ttl, data);
    }
    for name in [&origin, &wildcard] {
        for ip in &zone.addresses {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(rdata::A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(rdata::AAAA(*v6)),
            };
            add(name, zone.ttl, data);
        }
    }
    let handler = InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
        .map_err(|e| zone_error(zone, e))?;
    Ok((origin, soa, handler))
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        // One atomic load: the whole query sees one consistent answer set.
        let compiled = self.compiled.load_full();
        let info = compiled.catalog.handle_request::<R, T>(request, response_handle).await;
        let qtype = request
            .queries
            .queries()
            .first()
            .map_or(0, |q| u16::from(q.query_type()));
        self.metrics.count(qtype, u16::from(info.response_code));
        info
    }
}
