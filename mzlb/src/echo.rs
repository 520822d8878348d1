//! The demo backend (`mzlb echo`): answers every request with who served it and what the
//! proxy told it — X-Forwarded-*, the peer address (REMOTE_ADDR) and the path — as text, or as
//! JSON for `Accept: application/json`. Plain HTTP, or HTTPS with a self-signed certificate.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::error::Result;

#[derive(Debug, Serialize)]
struct Page<'a> {
    hostname: &'a str,
    remote_addr: String,
    x_forwarded_for: Option<&'a str>,
    x_forwarded_proto: Option<&'a str>,
    x_forwarded_host: Option<&'a str>,
    x_request_id: Option<&'a str>,
    method: &'a str,
    path: &'a str,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    Ok(zone_alb::server::bind(addr).await?)
}

/// Serves until `shutdown` resolves, answering each request after `delay` (to show timeouts).
/// With `tls`, every connection is HTTPS (a backend for `backend-protocol: HTTPS`).
pub async fn serve(
    listener: TcpListener,
    name: String,
    delay: std::time::Duration,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let name: Arc<str> = name.into();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = zone_alb::server::accept(&listener) => accepted,
            () = &mut shutdown => return,
        };
        let name = name.clone();
        let service = service_fn(move |req| {
            let name = name.clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, std::convert::Infallible>(respond(&req, &name, peer))
            }
        });
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = match tls {
                None => builder.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => builder.serve_connection(TokioIo::new(stream), service).await,
                    Err(error) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                },
            };
        });
    }
}

fn respond(req: &Request<Incoming>, name: &str, peer: SocketAddr) -> Response<Full<Bytes>> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let page = Page {
        hostname: name,
        remote_addr: peer.ip().to_string(),
        x_forwarded_for: header("x-forwarded-for"),
        x_forwarded_proto: header("x-forwarded-proto"),
        x_forwarded_host: header("x-forwarded-host"),
        x_request_id: header("x-request-id"),
        method: req.method().as_str(),
        path: req.uri().path(),
    };
    let wants_json = header(ACCEPT.as_str()).is_some_and(|a| a.contains("application/json"));
    let (content_type, body) = if wants_json {
        (
            "application/json",
            serde_json::to_string_pretty(&page).expect("page serializes") + "\n",
        )
    } else {
        let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
        let body = format!(
            "Hostname: {}\nREMOTE_ADDR: {}\nX-Forwarded-For: {}\nX-Forwarded-Proto: {}\nX-Forwarded-Host: {}\nX-Request-ID: {}\nRequest: {} {}\n",
            page.hostname,
            page.remote_addr,
            or_dash(page.x_forwarded_for),
            or_dash(page.x_forwarded_proto),
            or_dash(page.x_forwarded_host),
            or_dash(page.x_request_id),
            page.method,
            page.path,
        );
        ("text/plain; charset=utf-8", body)
    };
    Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
