//! The hot path: the common queries answered from responses pre-built in wire format.
//!
//! On every answer-set change each zone's answer sections are encoded once (one variant per
//! rotation of the address list). A query is then answered by copying its question verbatim —
//! which keeps the client's letter case (0x20) — behind a patched header, and appending the
//! pre-built records, whose owner names are compression pointers into that question. Anything
//! unusual (other opcodes, SOA/NS/ANY, EDNS versions we do not speak, answers that would not
//! fit) is left to hickory's full request path.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_server::proto::rr::{RData, RecordType, rdata};
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::{Error, Result, ZoneAnswers};

use crate::wire::{HEADER_LEN, TYPE_OPT, options_fit};

const CLASS_IN: u16 = 1;
/// UDP payload size we advertise (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;

/// What the hot path made of a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The response is in the output buffer.
    Answered { qtype: u16, rcode: u8 },
    /// Not for the hot path: give it to the full resolver path.
    Slow,
    /// Not worth an answer (a response, or shorter than a header).
    Drop,
}

/// One zone, ready for the wire.
struct ZoneWire {
    /// Answer sections for A and AAAA, one per rotation; empty means NODATA.
    a: Vec<Vec<u8>>,
    a_count: u16,
    aaaa: Vec<Vec<u8>>,
    aaaa_count: u16,
    /// The SOA record after its owner name (type, class, TTL, length, data), for NODATA.
    soa_tail: Vec<u8>,
    /// The zone's name server, when its name is inside the zone.
    ns: Option<NsWire>,
    /// The apex NS record after its owner name, and its glue records for the additional
    /// section.
    ns_tail: Vec<u8>,
    glue: Vec<u8>,
    glue_count: u16,
}

/// An in-zone name server name: the wildcard must not answer it with the ALBs' addresses, or
/// resolvers following the NS record would send their DNS queries to the ALBs. Without
/// configured addresses it is NODATA, as NSD answers a name that owns records but none of the
/// type asked: the name exists (the zone's own NS record names it), and NXDOMAIN would deny
/// it and, by RFC 8020, everything below it.
struct NsWire {
    /// Lower-case wire-format name.
    key: Box<[u8]>,
    /// Its configured addresses (glue), as answer sections; empty means NODATA.
    a: Vec<Vec<u8>>,
    a_count: u16,
    aaaa: Vec<Vec<u8>>,
    aaaa_count: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NsPlace {
    Exact,
    Below,
}

impl NsWire {
    /// Where the query's name is relative to the name server's (the zone matched at label
    /// `zone_label`), if at or below it. Compared at label boundaries only: a label's bytes
    /// may themselves look like a length and a label.
    fn place(&self, q: &Query, zone_label: usize) -> Option<NsPlace> {
        let start = q.name_len.checked_sub(self.key.len())?;
        if q.lower_name[start..q.name_len] != *self.key || !q.label_starts[..zone_label].contains(&(start as u8)) {
            return None;
        }
        Some(if start == 0 { NsPlace::Exact } else { NsPlace::Below })
    }
}

/// Every zone's pre-built answers, keyed by the zone's lower-case wire-format name.
#[derive(Default)]
pub struct Prebuilt {
    zones: HashMap<Box<[u8]>, ZoneWire>,
}

impl Prebuilt {
    pub fn add_zone(
        &mut self,
        zone: &ZoneAnswers,
        origin: &hickory_server::proto::rr::Name,
        soa: &rdata::SOA,
    ) -> Result<()> {
        let encode_error = |e: hickory_server::proto::ProtoError| Error::Zone {
            origin: zone.origin.clone(),
            message: e.to_string(),
        };
        let key = origin
            .to_lowercase()
            .to_bytes()
            .map_err(encode_error)?
            .into_boxed_slice();
        let v4: Vec<IpAddr> = zone.addresses.iter().copied().filter(IpAddr::is_ipv4).collect();
        let v6: Vec<IpAddr> = zone.addresses.iter().copied().filter(IpAddr::is_ipv6).collect();
        // Negative answers are cached for min(SOA TTL, SOA minimum) (RFC 2308 §5).
        let soa_data = encode_rdata(&RData::SOA(soa.clone())).map_err(encode_error)?;
        let soa_tail = rr_tail(RecordType::SOA, soa.minimum, &soa_data);
        let ns = &soa.mname;
        let ns = if origin.zone_of(ns) && ns.num_labels() > origin.num_labels() {
            let key = ns.to_lowercase().to_bytes().map_err(encode_error)?.into_boxed_slice();
            let v4: Vec<IpAddr> = zone.soa.ns_addresses.iter().copied().filter(IpAddr::is_ipv4).collect();
            let v6: Vec<IpAddr> = zone.soa.ns_addresses.iter().copied().filter(IpAddr::is_ipv6).collect();
            Some(NsWire {
                key,
                a_count: v4.len() as u16,
                a: rotations(&v4, RecordType::A, zone.soa.ns_ttl),
                aaaa_count: v6.len() as u16,
                aaaa: rotations(&v6, RecordType::AAAA, zone.soa.ns_ttl),
            })
        } else {
            None
        };
        let ns_data = encode_rdata(&RData::NS(rdata::NS(soa.mname.clone()))).map_err(encode_error)?;
        let mut glue = Vec::new();
        let mut glue_count = 0;
        if ns.is_some() {
            let owner = soa.mname.to_bytes().map_err(encode_error)?;
            for ip in &zone.soa.ns_addresses {
                let (rtype, data) = match ip {
                    IpAddr::V4(v4) => (RecordType::A, v4.octets().to_vec()),
                    IpAddr::V6(v6) => (RecordType::AAAA, v6.octets().to_vec()),
                };
                glue.extend_from_slice(&owner);
                glue.extend_from_slice(&rr_tail(rtype, zone.soa.ns_ttl, &data));
                glue_count += 1;
            }
        }
        let wire = ZoneWire {
            ns,
            ns_tail: rr_tail(RecordType::NS, zone.soa.ns_ttl, &ns_data),
            glue,
            glue_count,
            a_count: v4.len() as u16,
            a: rotations(&v4, RecordType::A, zone.ttl),
            aaaa_count: v6.len() as u16,
            aaaa: rotations(&v6, RecordType::AAAA, zone.ttl),
            soa_tail,
        };
        self.zones.insert(key, wire);
        Ok(())
    }

    /// Answers `query` into `out`, or says why not. `turn` picks the rotation of the address
    /// list: each caller (one per hot-path thread) counts its own queries, so the order rotates
    /// for every client (a client's socket always lands on the same thread) without a counter
    /// shared between cores. Over TCP (`tcp`) any answer fits; over UDP the client's payload
    /// size (512 without EDNS) bounds it.
    pub fn answer(&self, query: &[u8], out: &mut Vec<u8>, turn: usize, tcp: bool) -> Verdict {
        let Some(mut q) = Query::parse(query) else {
            return if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
                Verdict::Drop
            } else {
                Verdict::Slow
            };
        };
        q.tcp = tcp;
        let mut zone = None;
        let mut apex_offset = 0;
        let mut zone_label = 0;
        for (i, &start) in q.label_starts[..q.labels].iter().enumerate() {
            if let Some(z) = self.zones.get(&q.lower_name[start as usize..q.name_len]) {
                zone = Some(z);
                apex_offset = HEADER_LEN + start as usize;
                zone_label = i;
                break;
            }
        }
        let Some(zone) = zone else {
            q.write_header(query, out, RCODE_REFUSED, false, [0, 0, 0]);
            return q.finish(out, RCODE_REFUSED);
        };
        let rtype = RecordType::from(q.qtype);
        if q.qtype == TYPE_OPT || (q.qtype >= 128 && rtype != RecordType::ANY) {
            return Verdict::Slow; // transfers and other meta types: the full path
        }
        let none = (&Vec::new(), 0);
        let ns = zone.ns.as_ref().and_then(|ns| Some((ns, ns.place(&q, zone_label)?)));
        let (variants, count) = match ns {
            // Below the name server's name the wildcard does not reach (RFC 4592 §2.2.1: the
            // closest encloser is the name server's name, which has no wildcard child).
            Some((_, NsPlace::Below)) => {
                q.write_header(query, out, RCODE_NXDOMAIN, true, [0, 1, 0]);
                out.extend_from_slice(&(0xC000 | apex_offset as u16).to_be_bytes());
                out.extend_from_slice(&zone.soa_tail);
                return q.finish(out, RCODE_NXDOMAIN);
            }
            Some((ns, NsPlace::Exact)) => match rtype {
                RecordType::A => (&ns.a, ns.a_count),
                RecordType::AAAA => (&ns.aaaa, ns.aaaa_count),
                // One RRset for ANY (RFC 8482).
                RecordType::ANY if ns.a.is_empty() => (&ns.aaaa, ns.aaaa_count),
                RecordType::ANY => (&ns.a, ns.a_count),
                _ => none,
            },
            None => match rtype {
                RecordType::A => (&zone.a, zone.a_count),
                RecordType::AAAA => (&zone.aaaa, zone.aaaa_count),
                // Here, not in hickory, which would add the wildcard's addresses as glue.
                RecordType::NS if zone_label == 0 => {
                    q.write_header(query, out, RCODE_NOERROR, true, [1, 0, zone.glue_count]);
                    out.extend_from_slice(&0xC00Cu16.to_be_bytes());
                    out.extend_from_slice(&zone.ns_tail);
                    out.extend_from_slice(&zone.glue);
                    return q.finish(out, RCODE_NOERROR);
                }
                // The other apex records and ANY (RFC 8482): the full path.
                RecordType::SOA | RecordType::ANY => return Verdict::Slow,
                _ => none,
            },
        };
        if variants.is_empty() {
            // NODATA: the name exists (the wildcard covers it, or it is the name server's)
            // but has no such record.
            q.write_header(query, out, RCODE_NOERROR, true, [0, 1, 0]);
            out.extend_from_slice(&(0xC000 | apex_offset as u16).to_be_bytes());
            out.extend_from_slice(&zone.soa_tail);
        } else {
            q.write_header(query, out, RCODE_NOERROR, true, [count, 0, 0]);
            out.extend_from_slice(&variants[turn % variants.len()]);
        }
        q.finish(out, RCODE_NOERROR)
    }
}

/// A query the hot path can take: one question, class IN, at most an OPT record.
struct Query {
    qtype: u16,
    /// End of the question section in the query.
    question_end: usize,
    /// The client's EDNS payload size, if it sent OPT (version 0).
    edns_payload: Option<u16>,
    /// DO in the client's OPT, copied to ours (RFC 3225).
    dnssec_ok: bool,
    /// Answered over TCP: no size limit but the message's.
    tcp: bool,
    lower_name: [u8; 255],
    name_len: usize,
    label_starts: [u8; 128],
    labels: usize,
}

impl Query {
    fn parse(p: &[u8]) -> Option<Query> {
        let u16_at = |i: usize| p.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        // QR clear, opcode QUERY; exactly one question, nothing else but an optional OPT.
        if p.len() < HEADER_LEN || p[2] & 0xF8 != 0 {
            return None;
        }
        if u16_at(4)? != 1 || u16_at(6)? != 0 || u16_at(8)? != 0 || u16_at(10)? > 1 {
            return None;
        }
        let mut q = Query {
            qtype: 0,
            question_end: 0,
            edns_payload: None,
            dnssec_ok: false,
            tcp: false,
            lower_name: [0; 255],
            name_len: 0,
            label_starts: [0; 128],
            labels: 0,
        };
        let mut pos = HEADER_LEN;
        loop {
            let len = *p.get(pos)? as usize;
            // Compression pointers or extended labels have no place in a question.
            if len > 63 || q.name_len + len + 1 > 255 {
                return None;
            }
            q.label_starts[q.labels] = q.name_len as u8;
            q.labels += 1;
            let label = p.get(pos..pos + 1 + len)?;
            for (dst, src) in q.lower_name[q.name_len..q.name_len + 1 + len].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            q.name_len += 1 + len;
            pos += 1 + len;
            if len == 0 {
                break;
            }
        }
        q.qtype = u16_at(pos)?;
        if u16_at(pos + 2)? != CLASS_IN {
            return None;
        }
        pos += 4;
        q.question_end = pos;
        if u16_at(10)? == 1 {
            // OPT: root owner, type 41, class = payload size, TTL = ext-rcode/version/flags.
            if *p.get(pos)? != 0 || u16_at(pos + 1)? != TYPE_OPT || *p.get(pos + 6)? != 0 {
                return None;
            }
            let rdlen = u16_at(pos + 9)? as usize;
            // Options (cookies, NSID, ...) are ignored, as RFC 6891 allows, but must be
            // well-formed: a malformed OPT goes to the slow path, which answers FORMERR.
            if pos + 11 + rdlen != p.len() || !options_fit(&p[pos + 11..]) {
                return None;
            }
            q.edns_payload = Some(u16_at(pos + 3)?.max(512));
            q.dnssec_ok = p[pos + 7] & 0x80 != 0;
        } else if pos != p.len() {
            return None;
        }
        Some(q)
    }

    /// `counts`: answer, authority and additional records (OPT is added to the last).
    fn write_header(&self, query: &[u8], out: &mut Vec<u8>, rcode: u8, authoritative: bool, counts: [u16; 3]) {
        out.clear();
        out.extend_from_slice(&query[..2]); // ID
        // QR, opcode 0, AA, TC clear, RD copied; RA clear (no recursion), CD copied.
        out.push(0x80 | if authoritative { 0x04 } else { 0 } | (query[2] & 0x01));
        out.push((query[3] & 0x10) | rcode);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&counts[0].to_be_bytes());
        out.extend_from_slice(&counts[1].to_be_bytes());
        out.extend_from_slice(&(counts[2] + u16::from(self.edns_payload.is_some())).to_be_bytes());
        out.extend_from_slice(&query[HEADER_LEN..self.question_end]);
    }

    /// Appends OPT when the client used EDNS; leaves oversize answers to the full path,
    /// which truncates them properly.
    fn finish(&self, out: &mut Vec<u8>, rcode: u8) -> Verdict {
        let limit = match self.edns_payload {
            Some(payload) => {
                out.extend_from_slice(&[0, 0, 41]);
                out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
                out.extend_from_slice(&[0, 0, if self.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
                usize::from(payload)
            }
            None => 512,
        };
        if out.len() > limit && !(self.tcp && out.len() <= usize::from(u16::MAX)) {
            return Verdict::Slow;
        }
        Verdict::Answered {
            qtype: self.qtype,
            rcode,
        }
    }
}

/// The empty, truncated (TC=1) response that tells a rate-limited client to retry over TCP:
/// the question is echoed, so resolvers match it to their query. False for anything the hot
/// path would not parse (such a packet is just dropped).
pub fn truncated(query: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(q) = Query::parse(query) else {
        return false;
    };
    q.write_header(query, out, RCODE_NOERROR, false, [0, 0, 0]);
    out[2] |= 0x02;
    matches!(q.finish(out, RCODE_NOERROR), Verdict::Answered { .. })
}

/// A FORMERR response for a packet with a readable header but nothing else usable.
pub fn formerr(query: &[u8], out: &mut Vec<u8>) -> bool {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
        return false;
    }
    out.clear();
    out.extend_from_slice(&query[..2]);
    out.push(0x80 | (query[2] & 0x78) | (query[2] & 0x01));
    out.push(RCODE_FORMERR);
    out.extend_from_slice(&[0; 8]);
    true
}

/// Every rotation of the address list as an answer section (owner: pointer to the question).
fn rotations(addresses: &[IpAddr], rtype: RecordType, ttl: u32) -> Vec<Vec<u8>> {
    (0..addresses.len())
        .map(|shift| {
            let mut section = Vec::new();
            for ip in addresses.iter().cycle().skip(shift).take(addresses.len()) {
                let data: Vec<u8> = match ip {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                section.extend_from_slice(&0xC00Cu16.to_be_bytes());
                section.extend_from_slice(&rr_tail(rtype, ttl, &data));
            }
            section
        })
        .collect()
}

fn rr_tail(rtype: RecordType, ttl: u32, data: &[u8]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(10 + data.len());
    tail.extend_from_slice(&u16::from(rtype).to_be_bytes());
    tail.extend_from_slice(&CLASS_IN.to_be_bytes());
    tail.extend_from_slice(&ttl.to_be_bytes());
    tail.extend_from_slice(&(data.len() as u16).to_be_bytes());
    tail.extend_from_slice(data);
    tail
}

/// Record data via hickory, with names uncompressed (they are spliced into other messages).
fn encode_rdata(data: &RData) -> Result<Vec<u8>, hickory_server::proto::ProtoError> {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_canonical_form(true);
    data.emit(&mut encoder)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SoaSettings;
    use hickory_server::proto::op::{Edns, Message, Query as DnsQuery, ResponseCode};
    use hickory_server::proto::rr::Name;

    fn prebuilt(addresses: &[&str]) -> Prebuilt {
        prebuilt_with(addresses, SoaSettings::default())
    }

    fn prebuilt_with(addresses: &[&str], soa: SoaSettings) -> Prebuilt {
        let zone = ZoneAnswers {
            origin: "demo.mzlb.test".into(),
            ttl: 5,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            soa,
        };
        let origin = Name::from_ascii("demo.mzlb.test.").unwrap();
        let ns = Name::from_ascii("ns.demo.mzlb.test.").unwrap();
        let hm = Name::from_ascii("hostmaster.demo.mzlb.test.").unwrap();
        let soa = rdata::SOA::new(ns, hm, 42, 3600, 600, 86400, 5);
        let mut p = Prebuilt::default();
        p.add_zone(&zone, &origin, &soa).unwrap();
        p
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u8>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0xBEEF;
        m.metadata.recursion_desired = true;
        m.add_query(DnsQuery::query(Name::from_ascii(name).unwrap(), rtype));
        if let Some(version) = edns {
            let mut e = Edns::new();
            e.set_max_payload(4096).set_version(version);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn ask(p: &Prebuilt, q: &[u8]) -> (Verdict, Option<Message>) {
        static TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        ask_on_turn(p, q, TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// [`ask`] on a given turn: tests run in parallel share `ask`'s counter, so a test of the
    /// rotation itself picks its turns.
    fn ask_on_turn(p: &Prebuilt, q: &[u8], turn: usize) -> (Verdict, Option<Message>) {
        let mut out = Vec::new();
        let verdict = p.answer(q, &mut out, turn, false);
        let msg = matches!(verdict, Verdict::Answered { .. })
            .then(|| Message::from_vec(&out).expect("hot-path responses parse"));
        (verdict, msg)
    }

    fn addresses(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn answers_apex_and_wildcard_names_authoritatively_keeping_case() {
        let p = prebuilt(&["127.0.10.1", "127.0.10.2", "::1"]);
        let (verdict, m) = ask(&p, &query("Cart.DEMO.mzlb.test.", RecordType::A, None));
        assert_eq!(verdict, Verdict::Answered { qtype: 1, rcode: 0 });
        let m = m.unwrap();
        assert_eq!(m.metadata.id, 0xBEEF);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired && !m.metadata.recursion_available);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            m.queries[0].name().to_string(),
            "Cart.DEMO.mzlb.test.",
            "0x20 case preserved"
        );
        assert_eq!(m.answers[0].name.to_string(), "Cart.DEMO.mzlb.test.");
        assert_eq!(m.answers[0].ttl, 5);
        let mut got = addresses(&m);
        got.sort();
        assert_eq!(got, ["127.0.10.1", "127.0.10.2"]);
        let (_, m) = ask(&p, &query("demo.mzlb.test.", RecordType::AAAA, None));
        assert_eq!(addresses(&m.unwrap()), ["::1"]);
    }

    #[test]
    fn the_name_server_is_never_answered_by_the_wildcard() {
        let glue = SoaSettings {
            ns_addresses: vec!["192.0.2.53".parse().unwrap(), "2001:db8::53".parse().unwrap()],
            ns_ttl: 86400,
            ..SoaSettings::default()
        };
        let v4_glue = SoaSettings {
            ns_addresses: vec!["192.0.2.53".parse().unwrap()],
            ..SoaSettings::default()
        };
        let none = SoaSettings::default();
        use RecordType::*;
        // (settings, name, type, rcode, answers, authority records)
        type Row<'a> = (&'a str, &'a SoaSettings, &'a str, RecordType, u8, &'a [&'a str], usize);
        let rows: Vec<Row<'_>> = vec![
            ("no glue", &none, "ns.demo.mzlb.test.", A, 0, &[], 1),
            ("no glue, case", &none, "NS.Demo.mzlb.test.", AAAA, 0, &[], 1),
            ("no glue", &none, "ns.demo.mzlb.test.", ANY, 0, &[], 1),
            ("no glue", &none, "ns.demo.mzlb.test.", TXT, 0, &[], 1),
            ("no glue", &none, "ns.demo.mzlb.test.", NS, 0, &[], 1),
            ("below", &none, "x.ns.demo.mzlb.test.", A, 3, &[], 1),
            ("below", &none, "a.b.ns.demo.mzlb.test.", SOA, 3, &[], 1),
            ("glue", &glue, "ns.demo.mzlb.test.", A, 0, &["192.0.2.53"], 0),
            ("glue", &glue, "ns.demo.mzlb.test.", AAAA, 0, &["2001:db8::53"], 0),
            ("glue", &glue, "ns.demo.mzlb.test.", ANY, 0, &["192.0.2.53"], 0),
            ("glue", &glue, "ns.demo.mzlb.test.", MX, 0, &[], 1),
            ("v4 glue", &v4_glue, "ns.demo.mzlb.test.", AAAA, 0, &[], 1),
            ("glue", &glue, "x.ns.demo.mzlb.test.", A, 3, &[], 1),
            (
                "neighbours keep the wildcard",
                &glue,
                "ns1.demo.mzlb.test.",
                A,
                0,
                &["127.0.10.1"],
                0,
            ),
            (
                "neighbours keep the wildcard",
                &glue,
                "ns.ns1.demo.mzlb.test.",
                A,
                0,
                &["127.0.10.1"],
                0,
            ),
            (
                "neighbours keep the wildcard",
                &glue,
                "xns.demo.mzlb.test.",
                A,
                0,
                &["127.0.10.1"],
                0,
            ),
            (
                "apex keeps the ALBs",
                &glue,
                "demo.mzlb.test.",
                A,
                0,
                &["127.0.10.1"],
                0,
            ),
        ];
        let mut wrong = Vec::new();
        for (what, soa, name, rtype, rcode, answers, authorities) in rows {
            let p = prebuilt_with(&["127.0.10.1"], soa.clone());
            let (verdict, m) = ask(&p, &query(name, rtype, None));
            let got = m.map(|m| {
                assert!(m.metadata.authoritative, "{what}");
                (m.metadata.response_code.low(), addresses(&m), m.authorities.len())
            });
            let want = Some((
                rcode,
                answers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                authorities,
            ));
            if got != want {
                wrong.push(format!("{what}: {name} {rtype}: {verdict:?} {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        let p = prebuilt_with(&["127.0.10.1"], glue);
        let (_, m) = ask(&p, &query("ns.demo.mzlb.test.", A, None));
        assert_eq!(m.unwrap().answers[0].ttl, 86400, "glue has the NS TTL");
    }

    #[test]
    fn a_label_that_looks_like_the_name_servers_name_is_not_it() {
        // Label bytes "a\x02ns": its tail reads like the label `ns` but is not a boundary.
        let p = prebuilt(&["127.0.10.1"]);
        let mut q = query("q.demo.mzlb.test.", RecordType::A, None);
        q.splice(12..14, *b"\x04a\x02ns");
        let (_, m) = ask(&p, &q);
        assert_eq!(addresses(&m.unwrap()), ["127.0.10.1"]);
    }

    #[test]
    fn rotates_the_answer_order() {
        let p = prebuilt(&["127.0.10.1", "127.0.10.2", "127.0.10.3"]);
        let q = query("demo.mzlb.test.", RecordType::A, None);
        let firsts: std::collections::BTreeSet<String> = (7..10)
            .map(|turn| addresses(&ask_on_turn(&p, &q, turn).1.unwrap())[0].clone())
            .collect();
        assert_eq!(firsts.len(), 3, "each address leads once in three queries");
    }

    #[test]
    fn nodata_carries_the_soa_of_the_apex() {
        let p = prebuilt(&["127.0.10.1"]);
        for rtype in [RecordType::AAAA, RecordType::TXT, RecordType::MX] {
            let (verdict, m) = ask(&p, &query("x.demo.mzlb.test.", rtype, None));
            assert_eq!(
                verdict,
                Verdict::Answered {
                    qtype: u16::from(rtype),
                    rcode: 0
                }
            );
            let m = m.unwrap();
            assert!(m.answers.is_empty() && m.metadata.authoritative);
            assert_eq!(m.authorities.len(), 1);
            assert_eq!(m.authorities[0].name.to_string(), "demo.mzlb.test.");
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
            assert!(
                m.authorities[0].data.to_string().contains("42"),
                "serial in {}",
                m.authorities[0].data
            );
        }
    }

    #[test]
    fn refuses_other_zones_and_leaves_rare_cases_to_hickory() {
        let p = prebuilt(&["127.0.10.1"]);
        let (verdict, m) = ask(&p, &query("example.com.", RecordType::A, None));
        assert_eq!(
            verdict,
            Verdict::Answered {
                qtype: 1,
                rcode: RCODE_REFUSED
            }
        );
        assert!(!m.unwrap().metadata.authoritative);
        let (verdict, _) = ask(&p, &query("xdemo.mzlb.test.", RecordType::A, None));
        assert_eq!(
            verdict,
            Verdict::Answered {
                qtype: 1,
                rcode: RCODE_REFUSED
            },
            "label boundary"
        );
        for rtype in [RecordType::SOA, RecordType::ANY, RecordType::AXFR] {
            assert_eq!(
                ask(&p, &query("demo.mzlb.test.", rtype, None)).0,
                Verdict::Slow,
                "{rtype}"
            );
        }
        assert_eq!(
            ask(&p, &query("demo.mzlb.test.", RecordType::A, Some(1))).0,
            Verdict::Slow,
            "BADVERS by hickory"
        );
    }

    #[test]
    fn edns_queries_get_an_opt_record() {
        let p = prebuilt(&["127.0.10.1"]);
        let (_, m) = ask(&p, &query("demo.mzlb.test.", RecordType::A, Some(0)));
        let edns = m.unwrap().edns.expect("OPT in the response");
        assert_eq!((edns.version(), edns.max_payload()), (0, EDNS_PAYLOAD));
    }

    #[test]
    fn answers_that_would_not_fit_go_to_the_truncating_path() {
        let many: Vec<String> = (0..40).map(|i| format!("2001:db8::{i:x}")).collect();
        let p = prebuilt(&many.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            ask(&p, &query("demo.mzlb.test.", RecordType::AAAA, None)).0,
            Verdict::Slow,
            "over 512 bytes"
        );
        assert!(
            matches!(
                ask(&p, &query("demo.mzlb.test.", RecordType::AAAA, Some(0))).0,
                Verdict::Answered { .. }
            ),
            "fits in 4096"
        );
    }

    #[test]
    fn truncated_answers_echo_the_question_and_nothing_else() {
        let mut out = Vec::new();
        for edns in [None, Some(0)] {
            assert!(truncated(&query("Www.demo.mzlb.test.", RecordType::A, edns), &mut out));
            let m = Message::from_vec(&out).unwrap();
            assert!(m.metadata.truncation && m.answers.is_empty() && m.authorities.is_empty());
            assert_eq!(
                (m.metadata.id, m.queries[0].name().to_string()),
                (0xBEEF, "Www.demo.mzlb.test.".into())
            );
            assert_eq!(m.edns.is_some(), edns.is_some());
        }
        let mut pointer = query("a.demo.mzlb.test.", RecordType::A, None);
        pointer.splice(12..14, [0xC0, 0x0C]);
        assert!(!truncated(&pointer, &mut out), "only well-formed queries get one");
    }

    #[test]
    fn garbage_never_panics() {
        let p = prebuilt(&["127.0.10.1"]);
        let valid = query("a.demo.mzlb.test.", RecordType::A, Some(0));
        let mut out = Vec::new();
        for cut in 0..valid.len() {
            let v = p.answer(&valid[..cut], &mut out, cut, false);
            assert_ne!(
                v,
                Verdict::Answered { qtype: 1, rcode: 0 },
                "a truncated query is never answered as whole"
            );
        }
        // A cheap deterministic fuzz: flip bytes everywhere.
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut q = valid.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let i = seed as usize % q.len();
                q[i] = (seed >> 8) as u8;
            }
            let _ = p.answer(&q, &mut out, 0, false);
        }
        assert_eq!(p.answer(&[0; 5], &mut out, 0, false), Verdict::Drop);
        let mut response = valid.clone();
        response[2] |= 0x80;
        assert_eq!(
            p.answer(&response, &mut out, 0, false),
            Verdict::Drop,
            "responses are never answered"
        );
    }
}
