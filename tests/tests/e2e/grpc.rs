//! `backend-protocol` GRPC, GRPCS, AUTO_HTTP and FCGI through a running zone-alb: a gRPC call
//! (HTTP/2 from the client, prior knowledge) reaches an HTTP/2 backend, in clear or over TLS,
//! with `te: trailers` and the client's authority, and its `grpc-status` trailer comes back;
//! FCGI fails closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{curl, echo, service, tempdir, write, zone_alb};
use crate::ingress::ingress;

const ALB: &str = "127.0.52.1:8080";

/// What the backend saw of one call.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) version: hyper::Version,
    authority: Option<String>,
    pub(crate) path: String,
    pub(crate) te: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

/// One gRPC message: uncompressed flag, 4-byte length, payload.
fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A gRPC-shaped HTTP/2 backend named `name` on `addr` (over TLS with ALPN h2 when `tls`):
/// answers every call with its name as the message and `grpc-status: 0`.
pub(crate) fn grpc_backend(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    name: &'static str,
    tls: bool,
) -> Arc<Mutex<Vec<Seen>>> {
    let acceptor = tls.then(|| {
        let generated = rcgen::generate_simple_self_signed(vec!["backend.test".to_owned()]).unwrap();
        let cert = generated.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    grpc_backend_with(rt, addr, name, acceptor)
}

/// [`grpc_backend`], over TLS with `acceptor` when given.
pub(crate) fn grpc_backend_with(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    name: &'static str,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let listener = rt.block_on(TcpListener::bind(addr)).unwrap();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                        let mut seen = Seen {
                            version: req.version(),
                            authority: req.uri().authority().map(|a| a.to_string()),
                            path: req.uri().path().to_owned(),
                            te: header("te"),
                            content_type: header("content-type"),
                            body: Bytes::new(),
                        };
                        seen.body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        log.lock().unwrap().push(seen);
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", HeaderValue::from_static("0"));
                        trailers.insert("grpc-message", HeaderValue::from_static(name));
                        let frames = vec![
                            Ok::<_, Infallible>(Frame::data(grpc_frame(name.as_bytes()))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let body = StreamBody::new(futures::stream::iter(frames));
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = match acceptor {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                        Err(_) => return,
                    },
                    None => builder.serve_connection(TokioIo::new(stream), service).await,
                };
            });
        }
    });
    seen
}

/// A unary call to `host` through the ALB, over HTTP/2 with prior knowledge; returns the
/// status, the message bytes and the trailers.
fn call(rt: &tokio::runtime::Runtime, host: &str) -> (u16, Bytes, Option<HeaderMap>) {
    call_at(rt, ALB, host, "/echo.Echo/Say")
}

/// A unary call of `path` to `host` through the ALB at `alb`.
pub(crate) fn call_at(
    rt: &tokio::runtime::Runtime,
    alb: &str,
    host: &str,
    path: &str,
) -> (u16, Bytes, Option<HeaderMap>) {
    rt.block_on(async {
        let stream = TcpStream::connect(alb.parse::<SocketAddr>().unwrap()).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 with prior knowledge to the ALB");
        tokio::spawn(conn);
        let req = Request::post(format!("http://{host}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(grpc_frame(b"hello")))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .expect("answered in time")
            .expect("a response");
        let status = resp.status().as_u16();
        let collected = resp.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        (status, collected.to_bytes(), trailers)
    })
}

#[test]
fn grpc_backends_get_http2_and_their_trailers_come_back() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plain = grpc_backend(&rt, "127.0.52.11:9080", "plain", false);
    let tls = grpc_backend(&rt, "127.0.52.12:9080", "tls", true);
    let _web = echo("127.0.52.13:9080", "web");
    let dir = tempdir();
    let docs = [
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\n".to_owned(),
        "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: a}\nspec: {zone: z, ip: 127.0.52.1, port: 8080}\n".to_owned(),
        service("grpc", &["127.0.52.11"], 9080),
        service("grpcs", &["127.0.52.12"], 9080),
        service("web", &["127.0.52.13"], 9080),
        ingress("grpc", "grpc.test", &[("backend-protocol", "GRPC")], "/", "Prefix").replace("name: app,", "name: grpc,"),
        ingress("grpcs", "grpcs.test", &[("backend-protocol", "GRPCS")], "/", "Prefix")
            .replace("name: app,", "name: grpcs,"),
        ingress("auto", "auto.test", &[("backend-protocol", "AUTO_HTTP")], "/", "Prefix")
            .replace("name: app,", "name: web,"),
        ingress("fcgi", "fcgi.test", &[("backend-protocol", "FCGI")], "/", "Prefix").replace("name: app,", "name: web,"),
    ];
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let _alb = zone_alb(dir.path(), &[], &format!("http://{ALB}/healthz"));

    for (host, name, log) in [("grpc.test", "plain", &plain), ("grpcs.test", "tls", &tls)] {
        let (status, body, trailers) = call(&rt, host);
        assert_eq!(status, 200, "{host}");
        assert_eq!(body, grpc_frame(name.as_bytes()), "{host}: the backend's message");
        let trailers = trailers.unwrap_or_else(|| panic!("{host}: trailers came back"));
        assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{host}");
        assert_eq!(trailers.get("grpc-message").unwrap(), name, "{host}");
        let seen = log.lock().unwrap().last().cloned().expect("the backend was called");
        assert_eq!(seen.version, hyper::Version::HTTP_2, "{host}: HTTP/2 to the backend");
        assert_eq!(seen.authority.as_deref(), Some(host), "{host}: the client's authority");
        assert_eq!(seen.path, "/echo.Echo/Say");
        assert_eq!(seen.te.as_deref(), Some("trailers"));
        assert_eq!(seen.content_type.as_deref(), Some("application/grpc"));
        assert_eq!(seen.body, grpc_frame(b"hello"), "{host}: the request message");
    }

    // AUTO_HTTP: HTTP/1.1 in the client's scheme (plain here).
    let resolve = ["--resolve", "auto.test:8080:127.0.52.1", "http://auto.test:8080/"];
    let (status, page) = curl(&resolve);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Hostname: web"), "{page}");
    // FCGI is not spoken: the Ingress fails closed.
    let (status, _) = curl(&["--resolve", "fcgi.test:8080:127.0.52.1", "http://fcgi.test:8080/"]);
    assert_eq!(status, 503);
}
