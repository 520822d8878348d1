//! In-process tests of both HTTP/1.1 paths, the fast path and hyper's, driven through
//! `tokio::io::duplex` against a fake backend on loopback that parses and records every
//! request: the rung below the end-to-end hostile table (`tests/e2e/hostile.rs`), for the
//! rules the two paths share through `policy`. Every row runs on both paths and must give the
//! same client status and the same requests at the backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fastpath::{self, Exit, Rewound};
use crate::metrics::Metrics;
use crate::objects::Objects;
use crate::proxy::{Proxy, Scheme, Settings};
use crate::router::RouteTable;
use crate::state::Store;

/// One request as the backend parsed it.
#[derive(Clone, Debug, PartialEq)]
struct Received {
    method: String,
    target: String,
    /// Lower-case names and values, in order.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A backend that parses requests strictly (head, then a `Content-Length` body; chunked ones
/// are not sent by these rows) and answers each `200 ok`.
async fn backend() -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = seen.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                loop {
                    let mut fields = [httparse::EMPTY_HEADER; 64];
                    let mut req = httparse::Request::new(&mut fields);
                    let len = match req.parse(&buf) {
                        Ok(httparse::Status::Complete(len)) => len,
                        Ok(httparse::Status::Partial) => match conn.read_buf(&mut buf).await {
                            Ok(n) if n > 0 => continue,
                            _ => return,
                        },
                        Err(_) => return,
                    };
                    let fields: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|f| {
                            (
                                f.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(f.value).into_owned(),
                            )
                        })
                        .collect();
                    let length: usize = fields
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    let (method, target) = (req.method.unwrap().to_owned(), req.path.unwrap().to_owned());
                    while buf.len() < len + length {
                        if !matches!(conn.read_buf(&mut buf).await, Ok(n) if n > 0) {
                            return;
                        }
                    }
                    let body = buf[len..len + length].to_vec();
                    let _ = buf.split_to(len + length);
                    log.lock().unwrap().push(Received {
                        method,
                        target,
                        fields,
                        body,
                    });
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

/// Ingresses on `h.test`: `/admin` allowed only from 10.0.0.0/8, `/` open; on `auth.test`:
/// `/admin` behind client certificates (`auth-tls-verify-client`, which mzlb does not enforce:
/// it fails closed), `/` open.
fn manifests(backend: SocketAddr) -> String {
    let ingress = |name: &str, host: &str, annotation: &str, path: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{{annotation}}}}}\n\
             spec:\n  ingressClassName: mzlb\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
             - {{path: {path}, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
        )
    };
    [
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\n".to_owned(),
        "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: a}\nspec: {zone: z, ip: 127.0.0.1}\n".to_owned(),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: app}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: app-1, labels: {{kubernetes.io/service-name: app}}}}\n\
             addressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: ['{}']}}]\n",
            backend.port(),
            backend.ip()
        ),
        ingress("admin", "h.test", "nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/8", "/admin"),
        ingress("open", "h.test", "", "/"),
        ingress("guarded", "auth.test", "nginx.ingress.kubernetes.io/auth-tls-verify-client: 'on'", "/admin"),
        ingress("pub", "auth.test", "", "/"),
    ]
    .join("---\n")
}

fn proxy(backend: SocketAddr) -> Arc<Proxy> {
    let mut objects = Objects::default();
    crate::source::dir::load_str(&manifests(backend), Path::new("site.yaml"), &mut objects).unwrap();
    let mut table = RouteTable::compile(&objects, "mzlb", "z", &Store::default()).unwrap();
    table.health_host = Some("albhealth.c.test".into());
    let settings = Settings {
        fast_path: true,
        ..Settings::default()
    };
    Arc::new(Proxy::new(
        Arc::new(ArcSwap::from_pointee(table)),
        settings,
        Arc::new(Metrics::default()),
    ))
}

#[derive(Clone, Copy, Debug)]
enum HttpPath {
    Fast,
    Hyper,
}

const PEER: &str = "127.0.0.77:5000";
const LOCAL: &str = "127.0.0.1:8080";

/// hyper's server on `io`, as `server::serve` runs it.
async fn serve_hyper<S>(proxy: Arc<Proxy>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (peer, local) = (PEER.parse().unwrap(), LOCAL.parse().unwrap());
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, peer, local, Scheme::Http).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

/// Sends `raw` on a new client connection through `path`; returns what the client got, until
/// the connection closed or stayed silent for a moment.
async fn through(path: HttpPath, proxy: &Arc<Proxy>, raw: &[u8]) -> (String, bool) {
    let (mut client, server): (DuplexStream, DuplexStream) = tokio::io::duplex(256 * 1024);
    let proxy = proxy.clone();
    tokio::spawn(async move {
        match path {
            HttpPath::Hyper => serve_hyper(proxy, server).await,
            HttpPath::Fast => {
                let mut server = server;
                let (peer, local) = (PEER.parse().unwrap(), LOCAL.parse().unwrap());
                let exit = fastpath::serve(&proxy, &mut server, peer, local, &CancellationToken::new()).await;
                if let Exit::HandOff(read) = exit {
                    serve_hyper(proxy, Rewound::new(read, server)).await;
                }
            }
        }
    });
    client.write_all(raw).await.unwrap();
    let mut got = Vec::new();
    let closed = loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(300), client.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).to_ascii_lowercase(), closed)
}

/// Runs `raw` through both paths; returns, per path, the client's view and what the backend
/// received, after checking the two paths agree on the status and the requests.
async fn both(raw: &str) -> Vec<(String, bool, Vec<Received>)> {
    let mut out = Vec::new();
    for path in [HttpPath::Fast, HttpPath::Hyper] {
        // A backend (and proxy) per path: each path's requests are its own.
        let (addr, log) = backend().await;
        let proxy = proxy(addr);
        let (response, closed) = through(path, &proxy, raw.as_bytes()).await;
        let received = log.lock().unwrap().clone();
        out.push((response, closed, received));
    }
    let status = |r: &str| r.split(' ').nth(1).map(str::to_owned);
    assert_eq!(
        status(&out[0].0),
        status(&out[1].0),
        "the paths answer alike: {raw:?}\n{out:?}"
    );
    let shape = |r: &[Received]| {
        r.iter()
            .map(|x| (x.method.clone(), x.target.clone(), x.body.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&out[0].2), shape(&out[1].2), "the backend gets the same: {raw:?}");
    out
}

#[tokio::test]
async fn connection_cannot_unframe_a_request_on_either_path() {
    let smuggled = "GET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n";
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: h.test\r\nConnection: content-length, host\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    for (response, _, received) in both(&raw).await {
        assert!(response.starts_with("http/1.1 200"), "{response}");
        assert_eq!(received.len(), 1, "one request, not two: {received:?}");
        let r = &received[0];
        assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/"));
        assert_eq!(r.body, smuggled.as_bytes());
        assert_eq!(r.field("host"), Some("h.test"));
    }
}

#[tokio::test]
async fn the_forwarding_family_and_underscore_names_are_ours_on_either_path() {
    let raw = "GET /x HTTP/1.1\r\nHost: h.test\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-For: 6.6.6.6\r\n\
               X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Scheme: https\r\n\
               X-Forwarded-Prefix: /evil\r\nX_Forwarded_For: 6.6.6.6\r\nX-Scheme: https\r\n\
               X-Original-URL: /admin\r\nConnection: close\r\n\r\n";
    for (response, _, received) in both(raw).await {
        assert!(response.starts_with("http/1.1 200"), "{response}");
        let r = &received[0];
        assert_eq!(r.field("x-forwarded-for"), Some("127.0.0.77"));
        assert_eq!(r.field("x-real-ip"), Some("127.0.0.77"));
        assert_eq!(r.field("x-forwarded-proto"), Some("http"));
        assert_eq!(r.field("x-forwarded-port"), Some("8080"));
        assert_eq!(r.field("x-forwarded-host"), Some("h.test"));
        for gone in [
            "forwarded",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "x-forwarded-prefix",
            "x_forwarded_for",
            "x-scheme",
            "x-original-url",
        ] {
            assert_eq!(r.field(gone), None, "{gone} reached the backend: {r:?}");
        }
    }
}

#[tokio::test]
async fn spelling_tricks_meet_the_rule_they_spell_on_either_path() {
    for target in [
        "//admin",
        "/%61dmin",
        "/x/../admin",
        "/./admin",
        "/admin/",
        "/admin%2Fusers",
        "/public/..%2Fadmin",
        "/admin#x",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: h.test\r\n\r\n");
        for (response, _, received) in both(&raw).await {
            assert!(response.starts_with("http/1.1 403"), "{target}: {response}");
            assert!(received.is_empty(), "{target} reached the backend");
        }
    }
    for target in ["/../admin", "/%2e%2e/admin", "/%zz"] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: h.test\r\n\r\n");
        for (response, closed, received) in both(&raw).await {
            assert!(response.starts_with("http/1.1 400"), "{target}: {response}");
            assert!(closed && received.is_empty(), "{target}");
        }
    }
    // Matching is normalised; the backend still gets the target as sent.
    for (_, _, received) in both("GET /x/../public HTTP/1.1\r\nHost: h.test\r\n\r\n").await {
        assert_eq!(received[0].target, "/x/../public");
    }
}

#[tokio::test]
async fn ambiguous_hosts_are_refused_on_either_path() {
    for raw in [
        "GET /admin HTTP/1.1\r\nHost: h.test\r\nHost: other.test\r\n\r\n",
        "GET /admin HTTP/1.1\r\nHost: other.test:1@h.test\r\n\r\n",
        "GET /admin HTTP/1.1\r\nHost: h.test/admin\r\n\r\n",
    ] {
        for (response, closed, received) in both(raw).await {
            assert!(response.starts_with("http/1.1 400"), "{raw:?}: {response}");
            assert!(closed && received.is_empty(), "{raw:?}");
        }
    }
    // Upper case, a port and a trailing dot are one host.
    for raw in [
        "GET /admin HTTP/1.1\r\nHost: H.TEST:8080\r\n\r\n",
        "GET /admin HTTP/1.1\r\nHost: h.test.\r\n\r\n",
    ] {
        for (response, _, _) in both(raw).await {
            assert!(response.starts_with("http/1.1 403"), "{raw:?}: {response}");
        }
    }
}

#[tokio::test]
async fn connect_is_refused_on_either_path() {
    for raw in [
        "CONNECT /admin HTTP/1.1\r\nHost: h.test\r\n\r\n",
        "CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n\r\n",
    ] {
        for (response, closed, received) in both(raw).await {
            assert!(response.starts_with("http/1.1 405"), "{raw:?}: {response}");
            assert!(closed && received.is_empty(), "{raw:?}");
        }
    }
}

#[tokio::test]
async fn unenforced_protection_fails_closed_on_either_path() {
    for target in ["/admin", "//admin", "/%61dmin", "/admin/x"] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: auth.test\r\n\r\n");
        for (response, _, received) in both(&raw).await {
            assert!(response.starts_with("http/1.1 503"), "{target}: {response}");
            assert!(
                response.contains(
                    "x-mzlb-reason: unenforced-annotation nginx.ingress.kubernetes.io/auth-tls-verify-client"
                ),
                "{response}"
            );
            assert!(received.is_empty(), "{target} reached the backend");
        }
    }
}

#[tokio::test]
async fn a_body_sent_to_the_albs_own_answer_is_never_read_as_a_request() {
    // The head first; the body, a whole request, is still on its way when the ALB answers.
    for (response, closed, received) in both(
        "POST / HTTP/1.1\r\nHost: albhealth.c.test\r\nContent-Length: 1000\r\n\r\nGET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n",
    )
    .await
    {
        assert!(response.starts_with("http/1.1 200") && response.contains("healthy"), "{response}");
        assert_eq!(response.matches("http/1.1").count(), 1, "one response: {response}");
        assert!(closed, "the connection closes rather than read the body as a request");
        assert!(received.is_empty());
    }
    // `/healthz` on a tenant's host is the tenant's.
    for (_, _, received) in both("GET /healthz HTTP/1.1\r\nHost: h.test\r\n\r\n").await {
        assert_eq!(received[0].target, "/healthz");
    }
}
