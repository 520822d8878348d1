//! The authoritative DNS server, checked with the real `dig` (and raw sockets for what dig
//! cannot send): two clusters from one server, NODATA/REFUSED, 0x20, EDNS, TC and TCP,
//! pipelining, rotation, serial changes, fail-open, malformed packets and metrics.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Proc, bin, dig, metric, poll, run, scrape, serve_cmd, tempdir, write};

const DNS: &str = "127.0.16.53:5353";
const API: &str = "127.0.16.53:9916";

/// Cluster `web`: three IPv4 ALBs whose health endpoints are echo servers. Cluster `big`:
/// forty IPv6 ALBs with nothing behind them, so it fails open.
fn manifests() -> String {
    let mut docs = vec![
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: web}\nspec:\n  subdomain: web.example.test\n  ttl: 7\n  health: {intervalMs: 100, timeoutMs: 100, rise: 1, fall: 2}\n  soa: {primaryNameServer: ns1.dns.example, hostmaster: admin@example.org, refresh: 1000, retry: 100, expire: 10000, minimum: 3}\n".to_owned(),
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: big}\nspec: {subdomain: big.example.test}\n".to_owned(),
    ];
    for i in 1..=3 {
        docs.push(format!("apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: w{i}}}\nspec: {{zone: z{i}, ip: 127.0.16.{i}, port: 8080, cluster: web}}\n"));
    }
    for i in 1..=40 {
        docs.push(format!("apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: b{i}}}\nspec: {{zone: z{}, ip: 'fd00::{i:x}', port: 8080, cluster: big}}\n", i % 3));
    }
    docs.join("---\n")
}

/// A DNS query in wire format, built by hand so tests can send what dig will not.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    q
}

#[test]
fn authoritative_dns_behaves_like_a_real_server() {
    let dir = tempdir();
    let state = tempdir();
    write(dir.path(), "clusters.yaml", &manifests());
    let dns: SocketAddr = DNS.parse().unwrap();
    let _alb_stand_ins: Vec<Proc> = (1..=3)
        .map(|i| {
            Proc::start(
                "echo",
                Command::new(bin("mzlb")).args(["echo", "--listen", &format!("127.0.16.{i}:8080"), "--name", "alb"]),
            )
        })
        .collect();
    let serve = Proc::start(
        "mzlb serve",
        // Three UDP threads: more than this machine's cores, so queries spread over several
        // sockets whatever the core count.
        serve_cmd(DNS, API, dir.path(), state.path()).args(["--dns-threads", "3"]),
    );
    let web = ["127.0.16.1", "127.0.16.2", "127.0.16.3"];
    poll(Duration::from_secs(20), || {
        (dig(dns, "web.example.test", "A", &[]).answers == web).then_some(())
    })
    .unwrap_or_else(|| panic!("web never answered; serve said:\n{}", serve.output()));

    // Authoritative, no recursion, wildcard below the apex, TTL from the cluster.
    let a = dig(dns, "shop.web.example.test", "A", &[]);
    assert_eq!(
        (a.status.as_str(), a.answers.clone()),
        ("NOERROR", web.map(String::from).to_vec()),
        "{}",
        a.raw
    );
    assert!(
        a.flags.contains(&"aa".into()) && !a.flags.contains(&"ra".into()),
        "{:?}",
        a.flags
    );
    assert!(a.raw.contains("shop.web.example.test.\t7\tIN\tA"), "{}", a.raw);
    // 0x20: the client's letter case comes back in question and answer.
    let mixed = dig(dns, "ShOp.WeB.eXaMpLe.TeSt", "A", &[]);
    assert!(
        mixed.raw.contains("\nShOp.WeB.eXaMpLe.TeSt.\t7\tIN\tA\t"),
        "{}",
        mixed.raw
    );

    // NODATA with the configured SOA; REFUSED outside our zones.
    let nodata = dig(dns, "web.example.test", "AAAA", &[]);
    assert_eq!(
        (nodata.status.as_str(), nodata.answers.len()),
        ("NOERROR", 0),
        "{}",
        nodata.raw
    );
    assert!(
        nodata
            .raw
            .contains("web.example.test.\t3\tIN\tSOA\tns1.dns.example. admin.example.org. "),
        "{}",
        nodata.raw
    );
    let soa = dig(dns, "web.example.test", "SOA", &["+short"]).raw;
    assert!(
        soa.starts_with("ns1.dns.example. admin.example.org. ") && soa.trim_end().ends_with(" 1000 100 10000 3"),
        "{soa}"
    );
    assert_eq!(
        dig(dns, "web.example.test", "NS", &["+short"]).raw.trim(),
        "ns1.dns.example."
    );
    assert_eq!(dig(dns, "example.test", "A", &[]).status, "REFUSED");
    assert_eq!(dig(dns, "xweb.example.test", "A", &[]).status, "REFUSED");
    // ANY gets one RRset, not everything (RFC 8482).
    let any = dig(dns, "web.example.test", "ANY", &[]);
    let types: BTreeSet<&str> = any
        .raw
        .split(";; ANSWER SECTION:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(types.len(), 1, "{}", any.raw);

    // Rotation: clients taking the first address spread over the zones.
    let firsts: BTreeSet<String> = (0..12)
        .filter_map(|_| {
            dig(dns, "web.example.test", "A", &["+short"])
                .raw
                .lines()
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(firsts.len(), 3, "each ALB leads some answers: {firsts:?}");

    // Too big for 512 bytes: TC over UDP without EDNS, all of it over TCP or with EDNS.
    let udp = dig(dns, "big.example.test", "AAAA", &["+noedns", "+ignore"]);
    assert!(udp.flags.contains(&"tc".into()), "{}", udp.raw);
    assert_eq!(
        dig(dns, "big.example.test", "AAAA", &["+tcp"]).answers.len(),
        40,
        "fail-open answers every enabled ALB"
    );
    let edns = dig(dns, "big.example.test", "AAAA", &["+bufsize=4096", "+ignore"]);
    assert!(
        !edns.flags.contains(&"tc".into()) && edns.answers.len() == 40,
        "{}",
        edns.raw
    );
    let badvers = dig(dns, "web.example.test", "A", &["+edns=1", "+noednsneg"]);
    assert_eq!(badvers.status, "BADVERS", "{}", badvers.raw);

    // TCP pipelining: three queries written at once, three answers read back.
    let mut tcp = TcpStream::connect(dns).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut burst = Vec::new();
    for (id, name) in [
        (11u16, "a.web.example.test"),
        (12, "b.web.example.test"),
        (13, "web.example.test"),
    ] {
        let q = query(id, name, 1);
        burst.extend_from_slice(&(q.len() as u16).to_be_bytes());
        burst.extend_from_slice(&q);
    }
    tcp.write_all(&burst).unwrap();
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        tcp.read_exact(&mut msg).unwrap();
        assert_eq!(msg[3] & 0x0F, 0, "NOERROR");
        ids.insert(u16::from_be_bytes([msg[0], msg[1]]));
    }
    assert_eq!(ids, BTreeSet::from([11, 12, 13]));

    // Malformed packets: FORMERR or silence, and the server keeps answering.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut bad = query(77, "web.example.test", 1);
    bad.truncate(20); // the question stops mid-name
    let mut garbage = vec![0u8; 64];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i * 37 % 251) as u8;
    }
    garbage[2] = 0x01; // a query, not a response
    for packet in [
        bad,
        vec![1, 2, 3],
        garbage,
        query(78, "web.example.test", 1)[..12].to_vec(),
    ] {
        udp.send_to(&packet, dns).unwrap();
        let mut buf = [0u8; 512];
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            assert!(
                n >= 12 && buf[2] & 0x80 != 0 && buf[3] & 0x0F == 1,
                "FORMERR expected, got {:?}",
                &buf[..n]
            );
        }
    }
    assert_eq!(
        dig(dns, "web.example.test", "A", &[]).answers,
        web,
        "still serving after malformed input"
    );

    // The SOA serial moves when the answer does.
    let serial = |d: &str| d.split_whitespace().nth(2).and_then(|s| s.parse::<u32>().ok()).unwrap();
    let before = serial(&dig(dns, "web.example.test", "SOA", &["+short"]).raw);
    let out = run(Command::new(bin("mzlb"))
        .args(["alb-configure", "--alb-id", "w2", "--disable"])
        .env("MZLB_STATE_DIR", state.path()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        dig(dns, "web.example.test", "A", &[]).answers,
        ["127.0.16.1", "127.0.16.3"],
        "visible to the very next query"
    );
    assert_eq!(
        serial(&dig(dns, "web.example.test", "SOA", &["+short"]).raw),
        before + 1
    );

    // Metrics on the control port.
    let metrics = scrape(&format!("http://{API}/metrics"));
    let value = |series: &str| metric(&metrics, series);
    assert!(
        value("mzlb_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}").unwrap_or(0.0) >= 10.0,
        "{metrics}"
    );
    assert!(
        value("mzlb_dns_queries_total{qtype=\"A\",rcode=\"REFUSED\"}").unwrap_or(0.0) >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        value("mzlb_dns_queries_total{qtype=\"A\",rcode=\"BADVERS\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(value("mzlb_failing_open{cluster=\"big\"}"), Some(1.0), "{metrics}");
    assert_eq!(value("mzlb_failing_open{cluster=\"web\"}"), Some(0.0), "{metrics}");
    assert!(
        value("mzlb_dns_answer_set_changes_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
}

/// `q` with `records` appended to its additional section.
fn with_additional(mut q: Vec<u8>, count: u16, records: &[u8]) -> Vec<u8> {
    q[10..12].copy_from_slice(&count.to_be_bytes());
    q.extend_from_slice(records);
    q
}

/// An OPT record: payload 1232, version 0, `flags` high byte, and `rdata`.
fn opt(flags: u8, rdata: &[u8]) -> Vec<u8> {
    let mut o = vec![0, 0, 41, 0x04, 0xD0, 0, 0, flags, 0];
    o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    o.extend_from_slice(rdata);
    o
}

/// Sends `q` over UDP and returns the response, or `None` after a quiet 500 ms.
fn udp_exchange(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    udp.send_to(q, server).unwrap();
    let mut buf = [0u8; 4096];
    udp.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}

/// Writes each message on one TCP connection at once and reads back `answers` responses.
fn tcp_exchange(server: SocketAddr, messages: &[&[u8]], answers: usize) -> Vec<Vec<u8>> {
    let mut tcp = TcpStream::connect(server).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut burst = Vec::new();
    for m in messages {
        burst.extend_from_slice(&(m.len() as u16).to_be_bytes());
        burst.extend_from_slice(m);
    }
    tcp.write_all(&burst).unwrap();
    (0..answers)
        .map(|_| {
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).unwrap();
            let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
            tcp.read_exact(&mut msg).unwrap();
            msg
        })
        .collect()
}

/// A header-only FORMERR answering query `id`: the well-formed answer NSD gives.
fn assert_header_only_formerr(what: &str, id: u16, msg: &[u8]) {
    assert!(
        msg.len() == 12
            && msg[..2] == id.to_be_bytes()
            && msg[2] & 0x80 != 0
            && msg[3] & 0x0F == 1
            && msg[4..].iter().all(|&b| b == 0),
        "{what}: header-only FORMERR expected, got {msg:?}"
    );
}

const NSC_DNS: &str = "127.0.14.53:5353";
const NSC_API: &str = "127.0.14.53:9914";

/// What a compliance tester found, each checked the way it found it: the DO bit, malformed
/// EDNS, compressed questions, responses over TCP, and the name server's own name.
#[test]
fn dns_answers_edge_cases_as_nsd_does() {
    let dir = tempdir();
    let state = tempdir();
    write(
        dir.path(),
        "clusters.yaml",
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: glued}\n\
         spec: {subdomain: glued.example.test, soa: {nameServerAddresses: [192.0.2.53], nsTtl: 3600}}\n---\n\
         apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: plain}\nspec: {subdomain: plain.example.test}\n---\n\
         apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: g1}\nspec: {zone: z1, ip: 127.0.14.1, port: 8080, cluster: glued}\n---\n\
         apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: p1}\nspec: {zone: z1, ip: 127.0.14.2, port: 8080, cluster: plain}\n",
    );
    let dns: SocketAddr = NSC_DNS.parse().unwrap();
    let serve = Proc::start("mzlb serve", &mut serve_cmd(NSC_DNS, NSC_API, dir.path(), state.path()));
    // Nothing listens behind the ALBs: both clusters fail open and answer their one ALB.
    poll(Duration::from_secs(20), || {
        (dig(dns, "plain.example.test", "A", &[]).answers == ["127.0.14.2"]).then_some(())
    })
    .unwrap_or_else(|| panic!("plain never answered; serve said:\n{}", serve.output()));

    // 1. DO is copied into the response's OPT, on the hot path (A) and hickory's (SOA), over
    // UDP and TCP; without DO it stays clear.
    for (rtype, transport) in [("A", "+notcp"), ("SOA", "+notcp"), ("A", "+tcp"), ("SOA", "+tcp")] {
        let d = dig(dns, "glued.example.test", rtype, &["+dnssec", transport]);
        assert!(
            d.raw.contains("; EDNS: version: 0, flags: do;"),
            "{rtype} {transport}: {}",
            d.raw
        );
        let d = dig(dns, "glued.example.test", rtype, &[transport]);
        assert!(
            d.raw.contains("; EDNS: version: 0, flags:;"),
            "{rtype} {transport}: {}",
            d.raw
        );
    }
    // An option overrunning OPT, a truncated option header, two OPTs: FORMERR, on both
    // transports.
    let a = query(0x0101, "glued.example.test", 1);
    let malformed = [
        (
            "option overruns OPT",
            with_additional(a.clone(), 1, &opt(0, &[0, 10, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8])),
        ),
        (
            "option header cut",
            with_additional(a.clone(), 1, &opt(0x80, &[0, 10, 0])),
        ),
        (
            "two OPT records",
            with_additional(a.clone(), 2, &[opt(0, &[]), opt(0, &[])].concat()),
        ),
        // 2. A compressed question: the pointer leads into the header (`www` + offset 2).
        ("pointer in the question", {
            let mut q = a[..12].to_vec();
            q.extend_from_slice(b"\x03www\xC0\x02\x00\x01\x00\x01");
            q
        }),
        ("question is a pointer", {
            let mut q = a[..12].to_vec();
            q.extend_from_slice(b"\xC0\x0C\x00\x01\x00\x01");
            q
        }),
    ];
    for (what, q) in &malformed {
        let udp = udp_exchange(dns, q).unwrap_or_else(|| panic!("{what}: no UDP answer"));
        assert_header_only_formerr(what, 0x0101, &udp);
        assert_header_only_formerr(what, 0x0101, &tcp_exchange(dns, &[q], 1)[0]);
    }
    let badvers = dig(dns, "glued.example.test", "A", &["+edns=1", "+noednsneg", "+tcp"]);
    assert_eq!(badvers.status, "BADVERS", "{}", badvers.raw);

    // 3. Responses are never answered: not over UDP, not over TCP, parseable or not; the
    // query after them on the same connection is.
    let mut response = query(0x0202, "glued.example.test", 1);
    response[2] |= 0x80;
    let mut broken_response = response[..20].to_vec();
    broken_response[1] = 0x03;
    for r in [&response, &broken_response] {
        assert_eq!(udp_exchange(dns, r), None, "UDP response answered");
    }
    let next = query(0x0204, "glued.example.test", 1);
    let answers = tcp_exchange(dns, &[&response, &broken_response, &next], 1);
    assert_eq!(answers[0][..2], [0x02, 0x04], "the first TCP answer is the query's");

    // 4. The name server's name: its configured address (glue), never the ALBs'.
    for transport in ["+notcp", "+tcp"] {
        let ns = dig(dns, "ns.glued.example.test", "A", &[transport]);
        assert_eq!(ns.answers, ["192.0.2.53"], "{}", ns.raw);
        assert!(
            ns.raw.contains("ns.glued.example.test.\t3600\tIN\tA\t192.0.2.53"),
            "{}",
            ns.raw
        );
        let ns = dig(dns, "ns.plain.example.test", "A", &[transport]);
        assert_eq!((ns.status.as_str(), ns.answers.len()), ("NOERROR", 0), "{}", ns.raw);
        let ns = dig(dns, "NS.Plain.example.test", "ANY", &[transport]);
        assert_eq!((ns.status.as_str(), ns.answers.len()), ("NOERROR", 0), "{}", ns.raw);
        let below = dig(dns, "x.ns.plain.example.test", "A", &[transport]);
        assert_eq!(below.status, "NXDOMAIN", "{}", below.raw);
    }
    let apex = dig(dns, "glued.example.test", "NS", &[]);
    assert!(
        apex.raw
            .contains("glued.example.test.\t3600\tIN\tNS\tns.glued.example.test."),
        "{}",
        apex.raw
    );
    assert!(
        apex.raw.contains("ns.glued.example.test.\t3600\tIN\tA\t192.0.2.53"),
        "glue: {}",
        apex.raw
    );
    // 5. The NS TTL is a day by default, and the ALBs are nobody's glue.
    let apex = dig(dns, "plain.example.test", "NS", &[]);
    assert!(
        apex.raw
            .contains("plain.example.test.\t86400\tIN\tNS\tns.plain.example.test."),
        "{}",
        apex.raw
    );
    assert!(!apex.raw.contains("127.0.14.2"), "{}", apex.raw);
    assert_eq!(
        dig(dns, "www.plain.example.test", "A", &[]).answers,
        ["127.0.14.2"],
        "the wildcard still answers"
    );
}

const RRL_DNS: &str = "127.0.15.53:5353";
const RRL_API: &str = "127.0.15.53:9915";

/// A flood from one address gets at most the limit in full answers, some truncated ones and
/// silence for the rest, while another prefix, and TCP from the flooded one, are answered.
#[test]
fn udp_responses_are_rate_limited_per_prefix() {
    const LIMIT: usize = 20;
    let dir = tempdir();
    let state = tempdir();
    write(
        dir.path(),
        "clusters.yaml",
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: rl}\nspec: {subdomain: rl.example.test}\n---\n\
         apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: r1}\nspec: {zone: z1, ip: 127.0.15.1, port: 8080}\n",
    );
    let dns: SocketAddr = RRL_DNS.parse().unwrap();
    let serve = Proc::start(
        "mzlb serve",
        serve_cmd(RRL_DNS, RRL_API, dir.path(), state.path()).args([
            "--dns-rate-limit",
            &LIMIT.to_string(),
            "--dns-rate-limit-slip",
            "2",
        ]),
    );
    poll(Duration::from_secs(20), || {
        (dig(dns, "rl.example.test", "A", &["-b", "127.0.34.1"]).answers == ["127.0.15.1"]).then_some(())
    })
    .unwrap_or_else(|| panic!("rl never answered; serve said:\n{}", serve.output()));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let udp = UdpSocket::bind("127.0.32.1:0").unwrap();
            // Reading paces the flood: at most 20 queries per 10 ms, so the machine stays usable.
            udp.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            let started = std::time::Instant::now();
            let (mut sent, mut full, mut truncated) = (0usize, 0usize, 0usize);
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() < Duration::from_secs(1) {
                for _ in 0..20 {
                    udp.send_to(&query(sent as u16, "www.rl.example.test", 1), dns).unwrap();
                    sent += 1;
                }
                while let Ok((n, _)) = udp.recv_from(&mut buf) {
                    let (tc, answers) = (buf[2] & 0x02 != 0, u16::from_be_bytes([buf[6], buf[7]]));
                    match (tc, answers) {
                        (false, a) if a > 0 => full += 1,
                        (true, 0) if n > 12 && buf[5] == 1 => truncated += 1,
                        _ => panic!("neither an answer nor an empty truncated one: {:?}", &buf[..n]),
                    }
                }
            }
            (sent, full, truncated, started.elapsed())
        })
    };
    // While the flood runs: another prefix is answered over UDP, the flooded one over TCP.
    for _ in 0..3 {
        assert_eq!(
            dig(dns, "other.rl.example.test", "A", &["-b", "127.0.33.1"]).answers,
            ["127.0.15.1"],
            "another /24 keeps its budget"
        );
        assert_eq!(
            dig(dns, "tcp.rl.example.test", "A", &["-b", "127.0.32.9", "+tcp"]).answers,
            ["127.0.15.1"],
            "TCP is never limited"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, full, truncated, elapsed) = flood.join().unwrap();
    // Fixed one-second windows: a flood lasting d seconds touches at most ⌊d⌋ + 2 of them.
    let windows = elapsed.as_secs() as usize + 2;
    assert!(
        full <= LIMIT * windows,
        "{full} full answers to {sent} queries in {elapsed:?}"
    );
    assert!(truncated > 0, "no truncated answers to {sent} queries");
    assert!(
        full + truncated < sent,
        "nothing dropped: {full} + {truncated} of {sent}"
    );
    let metrics = scrape(&format!("http://{RRL_API}/metrics"));
    for action in ["dropped", "slipped"] {
        let n = metric(&metrics, &format!("mzlb_dns_rate_limited_total{{action=\"{action}\"}}")).unwrap_or(0.0);
        assert!(n > 0.0, "{action}: {metrics}");
    }
}
