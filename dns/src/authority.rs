//! Compiles an [`AnswerSet`] into hickory zone handlers and publishes them atomically.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_server::net::runtime::Time;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RrKey, rdata};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

use crate::{AnswerSet, Error, Result, ZoneAnswers};

/// A zone's last published addresses and the SOA serial they were published under.
type Published = (Vec<IpAddr>, u32);

/// The zones this server is authoritative for. Cheap to clone the handle; queries read the
/// current catalog through `ArcSwap` and never wait for a publish.
#[derive(Clone, Default)]
pub struct Authority {
    catalog: Arc<ArcSwap<Catalog>>,
    /// Last published addresses and serial per zone; only the (rare) publish path locks it.
    serials: Arc<Mutex<HashMap<String, Published>>>,
}

impl Authority {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces everything served. A zone's SOA serial increases whenever its addresses change.
    pub fn publish(&self, set: &AnswerSet) -> Result<()> {
        let mut serials = self.serials.lock().expect("serial map poisoned");
        let mut next_serials = HashMap::new();
        let mut catalog = Catalog::new();
        for zone in &set.zones {
            let serial = match serials.get(&zone.origin) {
                Some((addresses, serial)) if *addresses == zone.addresses => *serial,
                Some((_, serial)) => serial.wrapping_add(1).max(1),
                // Time-based start, so a restarted server does not go back in serial.
                None => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs() as u32),
            };
            let (origin, handler) = build_zone(zone, serial)?;
            catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
            next_serials.insert(zone.origin.clone(), (zone.addresses.clone(), serial));
        }
        *serials = next_serials;
        self.catalog.store(Arc::new(catalog));
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

fn build_zone(zone: &ZoneAnswers, serial: u32) -> Result<(Name, InMemoryZoneHandler)> {
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
    let soa = &zone.soa;

    let mut records = BTreeMap::new();
    let mut add = |name: &Name, ttl: u32, data: RData| {
        let key = RrKey::new(LowerName::new(name), data.record_type());
        let set = records
            .entry(key)
            .or_insert_with(|| RecordSet::new(name.clone(), data.record_type(), serial));
        set.insert(Record::from_rdata(name.clone(), ttl, data), serial);
    };
    add(
        &origin,
        soa.minimum,
        RData::SOA(rdata::SOA::new(
            mname.clone(),
            rname,
            serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum,
        )),
    );
    add(&origin, soa.refresh.max(0) as u32, RData::NS(rdata::NS(mname)));
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
    Ok((origin, handler))
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        // One atomic load: the whole query sees one consistent answer set.
        let catalog = self.catalog.load_full();
        catalog.handle_request::<R, T>(request, response_handle).await
    }
}
