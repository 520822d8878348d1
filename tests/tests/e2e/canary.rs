//! Canary Ingresses through a running zone-alb, with real curl: by header (always/never, a
//! value), by cookie, by weight (0, 100 and a split), their precedence, and a canary with no
//! main Ingress. Loopback 127.0.70.x (ALB .1, backends .11–.13).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use crate::harness::{curl, service, tempdir, write, zone_alb};

const ALB_IP: &str = "127.0.70.1";

/// A fake backend on `addr` that answers every request with its `name` on the first line and
/// the request head it received (names lower-cased) after it, then closes the connection.
pub(crate) struct Fake;

impl Fake {
    pub(crate) fn start(addr: &str, name: &str) {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let name = name.to_owned();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let name = name.clone();
                thread::spawn(move || answer(stream, &name));
            }
        });
    }
}

fn answer(stream: TcpStream, name: &str) {
    let mut reader = BufReader::new(&stream);
    let mut head = String::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        let line = line.trim_end();
        if let Some((k, v)) = line.split_once(':') {
            let k = k.to_ascii_lowercase();
            if k == "content-length" {
                content_length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&format!("{k}: {}\n", v.trim()));
        } else {
            head.push_str(&format!("{line}\n"));
        }
    }
    let mut body = vec![0; content_length];
    let _ = std::io::Read::read_exact(&mut reader, &mut body);
    let text = format!("{name}\n{head}");
    let mut out = &stream;
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Which backend answered (the first line of a fake's page).
pub(crate) fn who(page: &str) -> &str {
    page.lines().next().unwrap_or("")
}

/// The value of request field `name` (lower case) as a fake backend saw it.
pub(crate) fn saw<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    page.lines()
        .skip(1)
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// An Ingress for `host` `/` (Prefix) to `svc`, with annotations under ingress-nginx's prefix.
pub(crate) fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    crate::ingress::ingress(name, host, annotations, "/", "Prefix").replace("name: app,", &format!("name: {svc},"))
}

pub(crate) fn cluster(alb_ip: &str) -> String {
    [
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\n".to_owned(),
        format!("apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: a}}\nspec: {{zone: z, ip: {alb_ip}, port: 8080}}\n"),
    ]
    .join("---\n")
}

/// GET `http://host:8080{path}` through the ALB at `alb_ip`.
pub(crate) fn get_via(alb_ip: &str, host: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:8080{path}");
    let resolve = format!("{host}:8080:{alb_ip}");
    let mut args = vec!["--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

fn get(host: &str, extra: &[&str]) -> (u16, String) {
    get_via(ALB_IP, host, "/", extra)
}

/// How many of `n` requests each backend answered.
fn count(n: usize, host: &str, extra: &[&str]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (code, page) = get(host, extra);
        assert_eq!(code, 200, "{host} {extra:?}: {page}");
        *seen.entry(who(&page).to_owned()).or_default() += 1;
    }
    seen
}

fn only(name: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(name.to_owned(), n)])
}

#[test]
fn canary_ingresses_take_traffic_by_header_cookie_and_weight() {
    Fake::start("127.0.70.11:9080", "main");
    Fake::start("127.0.70.12:9080", "canary");
    let dir = tempdir();
    let canary = |name: &str, host: &str, annotations: &[(&str, &str)]| {
        let mut all = vec![("canary", "true")];
        all.extend_from_slice(annotations);
        ingress(name, host, "canary", &all)
    };
    let docs = [
        cluster(ALB_IP),
        service("main", &["127.0.70.11"], 9080),
        service("canary", &["127.0.70.12"], 9080),
        ingress("main", "rules.test", "main", &[]),
        // A canary's own location settings are not applied (proxy-body-size here): reported.
        canary(
            "by-rules",
            "rules.test",
            &[
                ("canary-by-header", "X-Canary"),
                ("canary-by-cookie", "canary_user"),
                ("proxy-body-size", "1"),
            ],
        ),
        ingress("main-value", "value.test", "main", &[]),
        canary(
            "by-value",
            "value.test",
            &[("canary-by-header", "X-Region"), ("canary-by-header-value", "eu-west")],
        ),
        ingress("main-all", "all.test", "main", &[]),
        canary("weight-all", "all.test", &[("canary-weight", "100")]),
        ingress("main-none", "none.test", "main", &[]),
        canary("weight-none", "none.test", &[("canary-weight", "0")]),
        ingress("main-half", "half.test", "main", &[]),
        canary(
            "weight-half",
            "half.test",
            &[("canary-weight", "500"), ("canary-weight-total", "1000")],
        ),
        canary("orphan", "orphan.test", &[("canary-weight", "100")]),
    ];
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let alb = zone_alb(dir.path(), &[], &format!("http://{ALB_IP}:8080/healthz"));

    // Without a header or cookie, and weight 0: everything to the main backend.
    assert_eq!(count(8, "rules.test", &[]), only("main", 8));
    // Header always / never; any other value falls through to the cookie, then the weight.
    assert_eq!(count(4, "rules.test", &["-H", "X-Canary: always"]), only("canary", 4));
    assert_eq!(count(4, "rules.test", &["-H", "x-canary: always"]), only("canary", 4));
    assert_eq!(count(4, "rules.test", &["-H", "X-Canary: never"]), only("main", 4));
    assert_eq!(
        count(4, "rules.test", &["-H", "X-Canary: never", "-b", "canary_user=always"]),
        only("main", 4),
        "header beats cookie"
    );
    assert_eq!(
        count(4, "rules.test", &["-H", "X-Canary: always", "-b", "canary_user=never"]),
        only("canary", 4),
        "header beats cookie"
    );
    assert_eq!(
        count(4, "rules.test", &["-H", "X-Canary: maybe", "-b", "canary_user=always"]),
        only("canary", 4),
        "another header value falls through to the cookie"
    );
    assert_eq!(count(4, "rules.test", &["-b", "canary_user=always"]), only("canary", 4));
    assert_eq!(count(4, "rules.test", &["-b", "canary_user=never"]), only("main", 4));
    assert_eq!(count(4, "rules.test", &["-b", "canary_user=yes"]), only("main", 4));
    // The main Ingress's settings serve the canary: its proxy-body-size 1 is not applied.
    let (code, page) = get("rules.test", &["-H", "X-Canary: always", "--data-binary", "a body"]);
    assert_eq!((code, who(&page)), (200, "canary"), "{page}");
    assert!(
        alb.output().contains("Ingress default/by-rules") && alb.output().contains("not applied on a canary Ingress"),
        "{}",
        alb.output()
    );

    // canary-by-header-value: only that value; `always` is just another value then.
    assert_eq!(count(4, "value.test", &["-H", "X-Region: eu-west"]), only("canary", 4));
    assert_eq!(count(4, "value.test", &["-H", "X-Region: always"]), only("main", 4));
    assert_eq!(count(4, "value.test", &["-H", "X-Region: EU-WEST"]), only("main", 4));

    // Weight 100 of 100: all; 0: none; 500 of 1000: both, in about equal parts.
    assert_eq!(count(8, "all.test", &[]), only("canary", 8));
    assert_eq!(count(8, "none.test", &[]), only("main", 8));
    let half = count(60, "half.test", &[]);
    assert!(
        half.get("main").is_some_and(|&n| n >= 10) && half.get("canary").is_some_and(|&n| n >= 10),
        "{half:?}"
    );

    // A canary with no main Ingress: nothing serves its host, and it is reported.
    assert_eq!(get("orphan.test", &[]).0, 404);
    assert!(
        alb.output().contains("CanaryWithoutMain") || alb.output().contains("no main Ingress serves host orphan.test"),
        "{}",
        alb.output()
    );
}
