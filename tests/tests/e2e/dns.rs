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
