//! What the server answers: per zone, the addresses of the ALBs to hand out.

use std::net::IpAddr;

/// Everything the DNS server serves; replaced whole on every change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerSet {
    pub zones: Vec<ZoneAnswers>,
}

/// One cluster's ingress subdomain.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneAnswers {
    /// The zone apex, e.g. `demo.mzlb.test`.
    pub origin: String,
    /// TTL of the address records; bounds how long clients keep a failed zone.
    pub ttl: u32,
    /// Answered for the apex and every name below it (A for IPv4, AAAA for IPv6).
    pub addresses: Vec<IpAddr>,
    pub soa: SoaSettings,
}

/// SOA fields other than the serial, which the server maintains itself.
#[derive(Clone, Debug, PartialEq)]
pub struct SoaSettings {
    /// Primary name server, also the zone's NS record; `None` means `ns.<origin>`.
    pub mname: Option<String>,
    /// The name server's addresses, answered for its name when that is inside the zone (glue).
    /// Empty: an in-zone name server name is answered NODATA, never by the wildcard.
    pub ns_addresses: Vec<IpAddr>,
    /// TTL of the NS record and of the name server's addresses.
    pub ns_ttl: u32,
    /// Hostmaster mailbox in DNS form; `None` means `hostmaster.<origin>`.
    pub rname: Option<String>,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

impl Default for SoaSettings {
    fn default() -> Self {
        Self {
            mname: None,
            ns_addresses: Vec::new(),
            // A day, as zone files usually give NS records: they change rarely.
            ns_ttl: 86400,
            rname: None,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 5,
        }
    }
}
