//! Snippet annotations through a running zone-alb, with real curl: response fields added,
//! hidden and set; fields sent upstream; `return` codes and bodies; rewrites; paths a
//! server-snippet blocks (for every Ingress of the host); and a directive outside the grammar
//! making its Ingress answer 503. Also the fake backend the buffering tests share.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::harness::{curl, poll, service, tempdir, write, zone_alb};

/// What the fake backend saw, in order: `head METHOD TARGET` when a request head arrived,
/// `body TARGET LEN SUM` when its body was complete.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    pub(crate) fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }
}

/// A byte sum, enough to tell a body that arrived intact from one that did not.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |h, (i, b)| {
        h.wrapping_mul(31).wrapping_add(u64::from(*b) ^ (i as u64))
    })
}

/// An HTTP/1.1 backend on `listen`: one request per connection. It answers with the request
/// head it received as the body, and with response fields a snippet may act on
/// (`X-Powered-By`, `Server`, `X-Secret-Token`); `/404…` answers 404, `/big-head…` sends a
/// 6 kB field.
pub(crate) fn backend(listen: &str) -> Seen {
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("bind {listen}: {e}"));
    let seen = Seen::default();
    let log = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            thread::spawn(move || serve(stream, &log));
        }
    });
    seen
}

fn serve(stream: TcpStream, seen: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let mut words = request_line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    seen.push(format!("head {method} {target}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        seen.push(format!("partial {target}"));
        return;
    }
    seen.push(format!("body {target} {length} {}", checksum(&body)));
    let status = if target.starts_with("/404") {
        "404 Not Found"
    } else {
        "200 OK"
    };
    let big = if target.starts_with("/big-head") {
        format!("X-Big: {}\r\n", "a".repeat(6000))
    } else {
        String::new()
    };
    let text = format!("{}\nbody-length: {length}\n", head.to_ascii_lowercase());
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nX-Powered-By: php\r\nServer: theirs\r\nX-Secret-Token: t\r\n{big}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}

/// An Ingress with annotations written as YAML block scalars (snippets span lines and quote).
pub(crate) fn ingress(name: &str, host: &str, path: &str, annotations: &[(&str, &str)]) -> String {
    let mut doc = format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n");
    if !annotations.is_empty() {
        doc.push_str("  annotations:\n");
        for (k, v) in annotations {
            doc.push_str(&format!("    nginx.ingress.kubernetes.io/{k}: |-\n"));
            for line in v.lines() {
                doc.push_str(&format!("      {line}\n"));
            }
        }
    }
    doc.push_str(&format!(
        "spec:\n  ingressClassName: mzlb\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: '{path}', pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
    ));
    doc
}

/// The cluster (snippets allowed), one ZoneALB on `alb_ip:8080`, Service `app` on `backend_ip:9080`.
pub(crate) fn site(alb_ip: &str, backend_ip: &str, snippets: bool) -> String {
    [
        format!(
            "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {{name: c}}\nspec:\n  subdomain: c.test\n  ingressNginx:\n    allow-snippet-annotations: '{snippets}'\n"
        ),
        format!("apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: a}}\nspec: {{zone: z, ip: {alb_ip}, port: 8080}}\n"),
        service("app", &[backend_ip], 9080),
    ]
    .join("---\n")
}

const ALB_IP: &str = "127.0.75.1";

/// `curl -i` to `host` at `path`: status, response head (lower-cased) and body.
fn fetch(host: &str, path: &str, extra: &[&str]) -> (u16, String, String) {
    let url = format!("http://{host}:8080{path}");
    let resolve = format!("{host}:8080:{ALB_IP}");
    let mut args = vec!["-i", "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    let (status, text) = curl(&args);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn snippets_through_a_running_zone_alb() {
    let seen = backend("127.0.75.11:9080");
    let dir = tempdir();
    let headers = "add_header X-Frame-Options DENY;\nadd_header X-Always yes always;\nmore_set_headers \"X-More: $host\";\n\
                   proxy_hide_header X-Powered-By;\nmore_clear_headers 'X-Secret-*';\n\
                   proxy_set_header X-Real-IP 198.51.100.1;\nproxy_set_header X-Snippet \"$scheme $request_uri\";\n\
                   more_set_input_headers 'X-In: added';\nchunked_transfer_encoding off;";
    let location = "if ($arg_teapot = 1) {\n  return 418 \"short and stout\";\n}\n\
                    rewrite ^/old/(.*)$ /new/$1 break;\nrewrite ^/moved$ https://elsewhere.test/ permanent;";
    let server = "location = /metrics { deny all; }\nlocation ~ ^/actuator {\n  return 403;\n}\n# a comment; }\n";
    let docs = [
        site(ALB_IP, "127.0.75.11", true),
        ingress("headers", "headers.test", "/", &[("configuration-snippet", headers)]),
        ingress(
            "gate",
            "gate.test",
            "/",
            &[("configuration-snippet", location), ("server-snippet", server)],
        ),
        // Another Ingress of the same host: the server-snippet is the host's, so it covers it.
        ingress("gate-actuator", "gate.test", "/actuator", &[]),
        ingress(
            "bad",
            "bad.test",
            "/",
            &[(
                "configuration-snippet",
                "add_header X-A b;\nlua_package_path '/tmp/?.lua';",
            )],
        ),
    ];
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let alb = zone_alb(dir.path(), &[], &format!("http://{ALB_IP}:8080/healthz"));

    // Response fields: add_header on 2xx, `always` everywhere, headers-more everywhere; the
    // backend's X-Powered-By hidden, X-Secret-* cleared.
    let (status, head, body) = fetch("headers.test", "/p?q=1", &["-H", "X-Real-IP: 6.6.6.6"]);
    assert_eq!(status, 200, "{head}\n{body}\n{}", alb.output());
    assert!(head.contains("\r\nx-frame-options: deny"), "{head}");
    assert!(head.contains("\r\nx-always: yes"), "{head}");
    assert!(head.contains("\r\nx-more: headers.test"), "{head}");
    assert!(
        !head.contains("x-powered-by") && !head.contains("x-secret-token"),
        "{head}"
    );
    // Fields sent upstream: proxy_set_header replaces, variables expand, input fields added.
    assert!(body.contains("\nx-real-ip: 198.51.100.1\r"), "{body}");
    assert!(!body.contains("6.6.6.6"), "{body}");
    assert!(body.contains("\nx-snippet: http /p?q=1\r"), "{body}");
    assert!(body.contains("\nx-in: added\r"), "{body}");
    let (status, head, _) = fetch("headers.test", "/404", &[]);
    assert_eq!(status, 404);
    assert!(!head.contains("x-frame-options"), "add_header only on 2xx/3xx: {head}");
    assert!(
        head.contains("x-always: yes") && head.contains("x-more: headers.test"),
        "{head}"
    );

    // return, rewrite ... break (the backend sees the new path), rewrite ... permanent.
    let (status, _, body) = fetch("gate.test", "/x?teapot=1", &[]);
    assert_eq!((status, body.as_str()), (418, "short and stout"));
    let (status, _, body) = fetch("gate.test", "/old/thing?k=v", &[]);
    assert_eq!(status, 200);
    assert!(body.starts_with("get /new/thing?k=v http/1.1"), "{body}");
    assert!(seen.events().contains(&"head GET /new/thing?k=v".to_owned()));
    let (status, head, _) = fetch("gate.test", "/moved", &[]);
    assert_eq!(status, 301);
    assert!(head.contains("\r\nlocation: https://elsewhere.test/"), "{head}");

    // Paths the server-snippet blocks: exact and regex locations, on every Ingress of the host.
    assert_eq!(fetch("gate.test", "/metrics", &[]).0, 403);
    assert_eq!(fetch("gate.test", "/metricsx", &[]).0, 200, "`=` is exact");
    assert_eq!(
        fetch("gate.test", "/actuator/env", &[]).0,
        403,
        "the other Ingress's path too"
    );
    assert_eq!(fetch("gate.test", "/", &[]).0, 200);
    assert!(
        !seen
            .events()
            .iter()
            .any(|e| e.contains("/metrics ") || e.contains("/actuator"))
    );

    // A directive outside the grammar: the Ingress answers 503, and says why.
    let (status, head, _) = fetch("bad.test", "/", &[]);
    assert_eq!(status, 503, "{head}");
    assert!(
        head.contains("x-mzlb-reason: unenforced-annotation nginx.ingress.kubernetes.io/configuration-snippet"),
        "{head}"
    );
    let log = poll(Duration::from_secs(5), || {
        let out = alb.output();
        out.contains("lua_package_path").then_some(out)
    })
    .expect("the finding names the directive");
    assert!(log.contains("line 2"), "{log}");
}

#[test]
fn snippets_fail_closed_while_the_cluster_disallows_them() {
    let _seen = backend("127.0.75.21:9080");
    let dir = tempdir();
    let docs = [
        site("127.0.75.2", "127.0.75.21", false),
        ingress(
            "headers",
            "off.test",
            "/",
            &[("configuration-snippet", "add_header X-A b;")],
        ),
        ingress("plain", "plain.test", "/", &[]),
    ];
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let alb = zone_alb(dir.path(), &[], "http://127.0.75.2:8080/healthz");
    let get = |host: &str| {
        let resolve = format!("{host}:8080:127.0.75.2");
        curl(&["--resolve", &resolve, &format!("http://{host}:8080/")]).0
    };
    assert_eq!(get("off.test"), 503);
    assert_eq!(get("plain.test"), 200);
    assert!(
        poll(Duration::from_secs(5), || alb
            .output()
            .contains("allow-snippet-annotations")
            .then_some(()))
        .is_some(),
        "{}",
        alb.output()
    );
}
