//! `custom-http-errors` and `default-backend` through a running zone-alb, with real curl: the
//! backend's error responses (and the ALB's own 502) go to the error backend with
//! ingress-nginx's fields, the client gets the error backend's answer and status; without a
//! `default-backend` the ALB answers the code itself; a Service without endpoints is served by
//! the `default-backend`. Also the small recording HTTP server the CORS and redirect tests use.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::harness::{curl, service, single_alb_site, tempdir, write, zone_alb};
use crate::ingress::ingress;

/// One request a [`Fake`] received: method, target, fields (names lower-cased).
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    pub target: String,
    pub fields: BTreeMap<String, String>,
}

/// Status, extra fields and body of an answer.
pub(crate) type Answer = (u16, Vec<(String, String)>, String);

/// A tiny HTTP/1.1 server on `addr` that records every request and answers with `answer`, one
/// request per connection.
pub(crate) struct Fake {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    pub(crate) fn start(addr: &str, answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let recorded = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (recorded, answer) = (recorded.clone(), answer.clone());
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, target) = (
                        parts.next().unwrap_or("").to_owned(),
                        parts.next().unwrap_or("").to_owned(),
                    );
                    let mut fields = BTreeMap::new();
                    loop {
                        let mut l = String::new();
                        if reader.read_line(&mut l).unwrap_or(0) == 0 || l.trim_end().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.trim_end().split_once(':') {
                            fields.insert(k.to_ascii_lowercase(), v.trim().to_owned());
                        }
                    }
                    let length: usize = fields.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let req = Seen { method, target, fields };
                    let (status, extra, body) = answer(&req);
                    recorded.lock().unwrap().push(req);
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in extra {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&body);
                    let _ = stream.write_all(out.as_bytes());
                });
            }
        });
        Fake { seen }
    }

    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn last(&self) -> Seen {
        self.requests().pop().expect("a request reached the fake")
    }
}

/// Status, response head (lower-cased names) and body of `curl` to `url` through the ALB at
/// `alb` (`ip:port`), for `host`.
pub(crate) fn fetch(alb: &str, host: &str, path: &str, extra: &[&str]) -> (u16, BTreeMap<String, String>, String) {
    let (ip, port) = alb.split_once(':').unwrap();
    let resolve = format!("{host}:{port}:{ip}");
    let url = format!("http://{host}:{port}{path}");
    let dir = tempdir();
    let head = dir.path().join("head");
    let head_arg = head.to_str().unwrap().to_owned();
    let mut args = vec!["--resolve", &resolve, "-D", &head_arg];
    args.extend_from_slice(extra);
    args.push(&url);
    let (code, body) = curl(&args);
    let text = std::fs::read_to_string(&head).unwrap_or_default();
    let fields = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (code, fields, body)
}

/// An Ingress `name` for `host`, path `/` to `service`, with annotations.
pub(crate) fn ingress_to(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> String {
    ingress(name, host, annotations, "/", "Prefix").replace("name: app,", &format!("name: {service},"))
}

const ALB: &str = "127.0.66.1:8080";

#[test]
fn custom_errors_go_to_the_default_backend_with_ingress_nginx_fields() {
    let dir = tempdir();
    let docs = [
        single_alb_site("127.0.66.1", None, "127.0.66.11"),
        vec![
            service("errpages", &["127.0.66.21"], 9080),
            service("empty", &[], 9080),
            // Nothing listens there: the ALB's own 502.
            service("dead", &["127.0.66.13"], 9080),
            ingress_to(
                "errs",
                "errors.test",
                "app",
                &[("custom-http-errors", "404,503"), ("default-backend", "errpages")],
            ),
            ingress_to("own", "own.test", "app", &[("custom-http-errors", "404")]),
            ingress_to("noep", "noep.test", "empty", &[("default-backend", "errpages")]),
            ingress_to(
                "dead",
                "dead.test",
                "dead",
                &[("custom-http-errors", "502"), ("default-backend", "errpages")],
            ),
            ingress_to("plain", "plain.test", "app", &[]),
        ],
    ]
    .concat();
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let app = Fake::start("127.0.66.11:9080", |r| {
        let status = match r.target.split('?').next().unwrap() {
            "/missing" => 404,
            "/broken" => 503,
            "/teapot" => 418,
            _ => 200,
        };
        (status, vec![("X-From".into(), "app".into())], format!("app {status}"))
    });
    let pages = Fake::start("127.0.66.21:9080", |r| {
        match r.fields.get("x-code").map(String::as_str) {
            // The client gets the error backend's status, whatever it is (nginx's `error_page
            // <code> = @custom`).
            Some("503") => (200, vec![], "maintenance page".into()),
            Some(code) => (
                code.parse().unwrap(),
                vec![("Content-Type".into(), "text/html".into())],
                format!("custom page {code}"),
            ),
            None => (200, vec![], format!("fallback {}", r.target)),
        }
    });
    let _alb = zone_alb(dir.path(), &[], &format!("http://{ALB}/healthz"));

    // The backend's 404: discarded, and the error backend asked for `/` (with the query), with
    // every field ingress-nginx sends.
    let (code, head, body) = fetch(
        ALB,
        "errors.test",
        "/missing?q=1",
        &[
            "-H",
            "Accept: text/html",
            "-H",
            "X-Request-ID: req-42",
            "-H",
            "Cookie: a=b",
        ],
    );
    assert_eq!((code, body.as_str()), (404, "custom page 404"));
    assert_eq!(head.get("content-type").map(String::as_str), Some("text/html"));
    assert_eq!(head.get("x-from"), None, "nothing of the backend's answer: {head:?}");
    let asked = pages.last();
    assert_eq!((asked.method.as_str(), asked.target.as_str()), ("GET", "/?q=1"));
    let f = |name: &str| asked.fields.get(name).map(String::as_str);
    assert_eq!(f("x-code"), Some("404"));
    assert_eq!(f("x-format"), Some("text/html"));
    assert_eq!(f("x-original-uri"), Some("/missing?q=1"));
    assert_eq!(f("x-namespace"), Some("default"));
    assert_eq!(f("x-ingress-name"), Some("errs"));
    assert_eq!(f("x-service-name"), Some("app"));
    assert_eq!(f("x-service-port"), Some("80"));
    assert_eq!(f("x-request-id"), Some("req-42"));
    assert_eq!(f("host"), Some("errors.test:8080"));
    assert_eq!(f("cookie"), Some("a=b"));
    assert_eq!(app.last().target, "/missing?q=1", "the backend was asked first");

    // The X-Request-ID the backend got is the one the error backend gets.
    let (code, _, body) = fetch(ALB, "errors.test", "/broken", &["-X", "POST", "-d", "x=1"]);
    assert_eq!((code, body.as_str()), (200, "maintenance page"));
    let asked = pages.last();
    assert_eq!(
        asked.method, "POST",
        "the method is kept, as for nginx's named location"
    );
    let length = asked.fields.get("content-length");
    assert!(
        length.is_none_or(|v| v == "0"),
        "no body goes to the error backend: {length:?}"
    );
    assert_eq!(asked.fields.get("x-format"), Some(&"*/*".to_owned()));
    let id = asked.fields.get("x-request-id").cloned();
    assert_eq!(id.as_ref().map(String::len), Some(32), "{asked:?}");
    assert_eq!(app.last().fields.get("x-request-id"), id.as_ref());

    // Codes not listed pass through.
    let (code, head, body) = fetch(ALB, "errors.test", "/teapot", &[]);
    assert_eq!(
        (code, body.as_str(), head.get("x-from").map(String::as_str)),
        (418, "app 418", Some("app"))
    );
    assert_eq!(fetch(ALB, "errors.test", "/ok", &[]).0, 200);
    let asked_before = pages.requests().len();

    // Without a default-backend the ALB answers the code itself.
    let (code, _, body) = fetch(ALB, "own.test", "/missing", &[]);
    assert_eq!((code, body.trim()), (404, "Not Found"));
    // Without custom-http-errors nothing is intercepted.
    assert_eq!(fetch(ALB, "plain.test", "/missing", &[]).2, "app 404");
    assert_eq!(pages.requests().len(), asked_before);

    // The ALB's own errors are intercepted too (nginx's error_page catches them).
    let (code, _, body) = fetch(ALB, "dead.test", "/x", &[]);
    assert_eq!((code, body.as_str()), (502, "custom page 502"));
    let asked = pages.last();
    assert_eq!(asked.fields.get("x-service-name").map(String::as_str), Some("dead"));

    // default-backend alone serves a Service without endpoints, as a normal request.
    let (code, _, body) = fetch(ALB, "noep.test", "/foo?x=1", &[]);
    assert_eq!((code, body.as_str()), (200, "fallback /foo?x=1"));
    assert_eq!(pages.last().fields.get("x-code"), None);
}
