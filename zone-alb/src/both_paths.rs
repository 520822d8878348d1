//! In-process tests of both HTTP/1.1 paths, the fast path and hyper's, driven through
//! `tokio::io::duplex` against a fake backend on loopback that parses and records every
//! request: the rung below the end-to-end hostile table (`tests/e2e/hostile.rs`), for the
//! rules the two paths share through `policy`. Every row runs on both paths and must give the
//! same client status and the same requests at the backend. HTTP/2 requests, served by hyper,
//! have two upstream legs (the fast path's connections, hyper's client), held alike the same
//! way.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The names as they came: the fast path passes the client's spelling on, hyper's client
    /// writes lower case.
    names: Vec<String>,
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
                    let names = req.headers.iter().map(|f| f.name.to_owned()).collect();
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
                    // A backend's own HSTS, which the ALB's replaces on HTTPS.
                    let answer: Vec<u8> = match target.as_str() {
                        "/sts" => {
                            b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 2\r\n\r\nok"
                                .to_vec()
                        }
                        // A head over the proxy's default 64 KiB bound.
                        "/huge-head" => format!(
                            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
                            "a".repeat(70_000)
                        )
                        .into_bytes(),
                        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                    };
                    log.lock().unwrap().push(Received {
                        method,
                        target,
                        fields,
                        names,
                        body,
                    });
                    if conn.write_all(&answer).await.is_err() {
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
/// it fails closed), `/` open; on `s.test`, listed under `tls` (so redirected to HTTPS) and
/// with cookie affinity; on `r.test`, an annotation only hyper's path applies; on `b.test`,
/// `proxy-buffer-size: 128k`.
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
        ingress("prefixed", "r.test", "nginx.ingress.kubernetes.io/x-forwarded-prefix: /p", "/"),
        ingress("big-heads", "b.test", "nginx.ingress.kubernetes.io/proxy-buffer-size: 128k", "/"),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n\
         metadata: {name: secure, annotations: {nginx.ingress.kubernetes.io/affinity: cookie}}\n\
         spec:\n  ingressClassName: mzlb\n  tls: [{hosts: [s.test], secretName: s-tls}]\n  rules:\n  \
         - host: s.test\n    http:\n      paths:\n      \
         - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n"
            .to_owned(),
    ]
    .join("---\n")
}

fn proxy(backend: SocketAddr) -> Arc<Proxy> {
    proxy_with(backend, true)
}

/// `fast_path: false` is `--no-fast-path`: hyper's server and client for everything.
fn proxy_with(backend: SocketAddr, fast_path: bool) -> Arc<Proxy> {
    let mut objects = Objects::default();
    crate::source::dir::load_str(&manifests(backend), Path::new("site.yaml"), &mut objects).unwrap();
    let mut table = RouteTable::compile(&objects, "mzlb", "z", &Store::default()).unwrap();
    table.health_host = Some("albhealth.c.test".into());
    table.hsts = Some(hyper::header::HeaderValue::from_static("max-age=60"));
    let settings = Settings {
        fast_path,
        https_port: Some(8443),
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
async fn serve_hyper<S>(proxy: Arc<Proxy>, io: S, scheme: Scheme)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (peer, local) = (PEER.parse().unwrap(), LOCAL.parse().unwrap());
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, peer, local, scheme).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

/// Sends `raw` on a new client connection through `path`, as plaintext of a connection of
/// `scheme`; returns what the client got, until the connection closed or stayed silent for a
/// moment, and whether the fast path handed the connection to hyper.
async fn through(path: HttpPath, proxy: &Arc<Proxy>, raw: &[u8], scheme: Scheme) -> (String, bool, bool) {
    let (mut client, server): (DuplexStream, DuplexStream) = tokio::io::duplex(256 * 1024);
    let proxy = proxy.clone();
    let handed = Arc::new(AtomicBool::new(false));
    let handed_off = handed.clone();
    tokio::spawn(async move {
        match path {
            HttpPath::Hyper => serve_hyper(proxy, server, scheme).await,
            HttpPath::Fast => {
                let mut server = server;
                let (peer, local) = (PEER.parse().unwrap(), LOCAL.parse().unwrap());
                let exit = fastpath::serve(&proxy, &mut server, peer, local, scheme, &CancellationToken::new()).await;
                if let Exit::HandOff(read) = exit {
                    handed_off.store(true, Ordering::SeqCst);
                    serve_hyper(proxy, Rewound::new(read, server), scheme).await;
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
    let handed = handed.load(Ordering::SeqCst);
    (String::from_utf8_lossy(&got).to_ascii_lowercase(), closed, handed)
}

/// Runs `raw` through both paths; returns, per path, the client's view and what the backend
/// received, after checking the two paths agree on the status and the requests.
async fn both(raw: &str) -> Vec<(String, bool, Vec<Received>)> {
    both_as(raw, Scheme::Http)
        .await
        .into_iter()
        .map(|(response, closed, received, _)| (response, closed, received))
        .collect()
}

/// [`both`] on connections of `scheme`; also whether the fast path handed the connection over
/// (always `false` for hyper's path).
async fn both_as(raw: &str, scheme: Scheme) -> Vec<(String, bool, Vec<Received>, bool)> {
    let mut out = Vec::new();
    for path in [HttpPath::Fast, HttpPath::Hyper] {
        // A backend (and proxy) per path: each path's requests are its own.
        let (addr, log) = backend().await;
        let proxy = proxy(addr);
        let (response, closed, handed) = through(path, &proxy, raw.as_bytes(), scheme).await;
        let received = log.lock().unwrap().clone();
        out.push((response, closed, received, handed));
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

#[tokio::test]
async fn https_requests_are_forwarded_as_https_with_hsts_on_either_path() {
    for (i, (response, _, received, handed)) in both_as(
        "GET /x HTTP/1.1\r\nHost: h.test\r\nX-Forwarded-Proto: http\r\n\r\n",
        Scheme::Https,
    )
    .await
    .into_iter()
    .enumerate()
    {
        assert!(response.starts_with("http/1.1 200"), "{response}");
        assert!(!handed, "the fast path served it itself");
        let r = &received[0];
        assert_eq!(r.field("x-forwarded-proto"), Some("https"), "path {i}: {r:?}");
        assert_eq!(r.field("x-forwarded-port"), Some("8080"));
        assert_eq!(
            response.matches("strict-transport-security: max-age=60\r\n").count(),
            1,
            "{response}"
        );
    }
    // The backend's own HSTS gives way to ours; the ALB's own answers carry it too.
    for raw in [
        "GET /sts HTTP/1.1\r\nHost: h.test\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: nobody.test\r\n\r\n",
        "GET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n",
    ] {
        for (response, _, _, handed) in both_as(raw, Scheme::Https).await {
            assert!(!handed, "{raw:?}");
            assert!(
                response.contains("strict-transport-security: max-age=60\r\n") && !response.contains("max-age=1\r\n"),
                "{raw:?}: {response}"
            );
        }
    }
    // On plain HTTP, no HSTS of ours; the backend's passes.
    for (response, _, received, _) in both_as("GET /sts HTTP/1.1\r\nHost: h.test\r\n\r\n", Scheme::Http).await {
        assert!(
            response.contains("strict-transport-security: max-age=1\r\n"),
            "{response}"
        );
        assert!(!response.contains("max-age=60"), "{response}");
        assert_eq!(received[0].field("x-forwarded-proto"), Some("http"));
    }
}

#[tokio::test]
async fn an_https_request_is_never_redirected_to_https_on_either_path() {
    let raw = "GET /page?a=1 HTTP/1.1\r\nHost: s.test\r\n\r\n";
    for (response, _, received, _) in both_as(raw, Scheme::Http).await {
        assert!(response.starts_with("http/1.1 308"), "{response}");
        assert!(
            response.contains("location: https://s.test:8443/page?a=1"),
            "{response}"
        );
        assert!(received.is_empty());
    }
    for (response, _, received, handed) in both_as(raw, Scheme::Https).await {
        assert!(response.starts_with("http/1.1 200"), "{response}");
        assert!(!handed, "served on the fast path: nothing there needs hyper");
        assert_eq!(received.len(), 1);
        // The affinity cookie is Secure on HTTPS.
        let cookie = response
            .lines()
            .find(|l| l.starts_with("set-cookie: "))
            .unwrap_or_default();
        assert!(cookie.contains("; secure"), "{response}");
    }
}

/// Reads from `conn` until `n` responses (each ending with the backend's `ok`, or ours) came,
/// or nothing more comes for a while.
async fn responses<S: tokio::io::AsyncRead + Unpin>(conn: &mut S, n: usize) -> String {
    let mut got = Vec::new();
    while String::from_utf8_lossy(&got).matches("\r\n\r\nok").count() < n {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(3), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

#[tokio::test]
async fn https_connections_start_on_the_fast_path_and_are_handed_over_mid_stream() {
    let (addr, log) = backend().await;
    let proxy = proxy(addr);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let edge = Arc::new(crate::tls::Edge::new(proxy.table.clone(), port, true));
    let cancel = CancellationToken::new();
    tokio::spawn(crate::server::serve(
        listener,
        Some(edge),
        false,
        proxy.clone(),
        cancel.clone(),
    ));

    let config = crate::backend_tls::BackendTls::insecure().config.clone();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("h.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    // Two requests, each its own TLS record, in one write: rustls decrypts both at once. The
    // first fills the fast path's read exactly, so the second is left in rustls's buffer with
    // nothing on the socket: the connection must still count as readable.
    let head = "GET /one HTTP/1.1\r\nHost: h.test\r\nX-Pad: \r\n\r\n";
    let one = head.replace(
        "X-Pad: ",
        &format!("X-Pad: {}", "p".repeat(fastpath::CLIENT_READ - head.len())),
    );
    assert_eq!(one.len(), fastpath::CLIENT_READ);
    for request in [one.as_str(), "GET /two HTTP/1.1\r\nHost: h.test\r\n\r\n"] {
        std::io::Write::write_all(&mut tls.get_mut().1.writer(), request.as_bytes()).unwrap();
    }
    tls.flush().await.unwrap();
    let got = responses(&mut tls, 2).await;
    assert_eq!(got.matches("http/1.1 200").count(), 2, "{got}");
    assert_eq!(got.matches("strict-transport-security: max-age=60").count(), 2, "{got}");
    // Idle on the fast path, the connection holds no request buffer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(proxy.spare.kept(), 1, "the buffer went back while idle");

    // A request only hyper's path serves, pipelined with one after it: hyper gets both, in
    // order, once each, and answers over the same TLS connection.
    tls.write_all(b"GET /three HTTP/1.1\r\nHost: r.test\r\n\r\nGET /four HTTP/1.1\r\nHost: h.test\r\n\r\n")
        .await
        .unwrap();
    let got = responses(&mut tls, 2).await;
    assert_eq!(got.matches("http/1.1 200").count(), 2, "{got}");
    assert_eq!(got.matches("strict-transport-security: max-age=60").count(), 2, "{got}");

    let received = log.lock().unwrap().clone();
    let targets: Vec<&str> = received.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/one", "/two", "/three", "/four"]);
    for r in &received {
        assert_eq!(r.field("x-forwarded-proto"), Some("https"), "{r:?}");
        assert_eq!(r.field("x-forwarded-port"), Some(port.to_string().as_str()), "{r:?}");
    }
    // The fast path passes the client's spelling of names on; hyper's client writes lower case.
    let spelled = |r: &Received| r.names.iter().any(|n| n == "Host");
    assert!(
        spelled(&received[0]) && spelled(&received[1]),
        "fast path: {received:?}"
    );
    assert!(!spelled(&received[2]) && !spelled(&received[3]), "hyper: {received:?}");
    assert_eq!(received[2].field("x-forwarded-prefix"), Some("/p"));
    cancel.cancel();
}

/// Sends `requests` as an HTTP/2 client over one connection to hyper's server as `server::serve`
/// runs it; returns each response's status, fields and body.
async fn h2_exchanges(
    proxy: Arc<Proxy>,
    requests: Vec<hyper::Request<http_body_util::Full<bytes::Bytes>>>,
    scheme: Scheme,
) -> Vec<(u16, hyper::HeaderMap, bytes::Bytes)> {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    let (client, server) = tokio::io::duplex(256 * 1024);
    let (peer, local) = (PEER.parse().unwrap(), LOCAL.parse().unwrap());
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, peer, local, scheme).await) }
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    // A client that takes response heads up to 256 KiB, as browsers do.
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(256 << 10)
        .handshake(TokioIo::new(client))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for req in requests {
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .expect("answered in time")
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        out.push((parts.status.as_u16(), parts.headers, body));
    }
    out
}

/// A response head over the default 64 KiB is a 502 whichever leg fetches it, unless the
/// route's `proxy-buffer-size` is larger: then it is passed on, also for a request the fast
/// upstream leg would otherwise take (it holds heads to 64 KiB, so it leaves such routes).
#[tokio::test]
async fn response_heads_are_bounded_alike_over_either_http2_upstream_leg() {
    for fast_path in [true, false] {
        let (addr, _) = backend().await;
        let proxy = proxy_with(addr, fast_path);
        let get = |uri: &str| {
            hyper::Request::builder()
                .uri(uri)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap()
        };
        let requests = vec![get("https://h.test/huge-head"), get("https://b.test/huge-head")];
        let answers = h2_exchanges(proxy, requests, Scheme::Https).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        assert_eq!(statuses, [502, 200], "fast path {fast_path}");
        assert_eq!(answers[1].1.get("x-big").map(|v| v.len()), Some(70_000));
    }
}

#[tokio::test]
async fn http2_requests_reach_the_backend_alike_over_either_upstream_leg() {
    let requests = || {
        let req = |method: &str, uri: &str, body: &'static str| {
            hyper::Request::builder()
                .method(method)
                .uri(uri)
                .header("x-test", "1")
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .header("te", "trailers")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())))
                .unwrap()
        };
        vec![
            req("GET", "https://h.test/x?y=1", ""),
            req("HEAD", "https://h.test/head", ""),
            // The backend's own HSTS gives way to ours.
            req("GET", "https://h.test/sts", ""),
            // A body, and a route only hyper's client serves: hyper's client on both.
            req("POST", "https://h.test/post", "data"),
            req("GET", "https://r.test/prefixed", ""),
            // Refused before any leg.
            req("GET", "https://h.test/admin", ""),
        ]
    };
    let mut runs = Vec::new();
    for fast_path in [true, false] {
        let (addr, log) = backend().await;
        let proxy = proxy_with(addr, fast_path);
        let answers = h2_exchanges(proxy.clone(), requests(), Scheme::Https).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 403], "fast path {fast_path}");
        assert_eq!(&answers[0].2[..], b"ok");
        assert!(answers[1].2.is_empty(), "HEAD: no body");
        assert_eq!(answers[2].1.get_all("strict-transport-security").iter().count(), 1);
        assert_eq!(answers[2].1.get("strict-transport-security").unwrap(), "max-age=60");
        // Kept for the next request: on the fast path's pool only with it.
        assert_eq!(proxy.fast.parked(addr), usize::from(fast_path), "fast path {fast_path}");
        runs.push((answers, log.lock().unwrap().clone()));
    }
    let (fast, hyper) = (&runs[0].1, &runs[1].1);
    assert_eq!(fast.len(), 5, "{fast:?}");
    // The same requests, field for field (names and order included); x-request-id is new each time.
    let strip = |r: &[Received]| {
        r.iter()
            .map(|x| {
                let fields: Vec<_> = x.fields.iter().filter(|(n, _)| n != "x-request-id").cloned().collect();
                (x.method.clone(), x.target.clone(), fields, x.body.clone())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(fast), strip(hyper));
    let get = &fast[0];
    assert_eq!((get.method.as_str(), get.target.as_str()), ("GET", "/x?y=1"));
    assert_eq!(get.field("host"), Some("h.test"));
    assert_eq!(get.field("x-forwarded-proto"), Some("https"));
    assert_eq!(get.field("te"), None, "hop-by-hop");
    assert_eq!(get.field("content-length"), None);
}
