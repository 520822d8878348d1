//! The control API used by `mzlb albs` and `mzlb alb-configure`: JSON over HTTP on loopback,
//! every `/v1` call authenticated with the bearer token from the state directory.
//!
//! - `GET /v1/albs` — status of every ALB
//! - `GET /v1/albs/{id}` — one ALB
//! - `PATCH /v1/albs/{id}` with `{"enabled": false}` — disable (or enable) an ALB
//! - `GET /v1/events` — recent ALB state transitions, oldest first
//! - `GET /v1/status` — everything the status page shows ([`crate::status`]), no token needed
//! - `GET /v1/status/stream` — the same as server-sent events, one at every change
//! - `GET /` — the status page, no token needed (its buttons send the token)
//! - `GET /healthz` — liveness, no token needed
//! - `GET /metrics` — Prometheus text, no token needed (the API listens on loopback)
//!
//! Reading is open, changing is not: a state-changing call needs the bearer token and, when
//! it comes from a browser, an `Origin` that is this listener's own. The browser never sends
//! the token by itself (no cookies), so another site's page cannot act with it; the `Origin`
//! check refuses such a request even before the token is looked at.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::registry::Registry;

/// Request bodies are tiny; anything bigger is a mistake or an attack.
const MAX_BODY: usize = 64 * 1024;

/// The status page: one file, its script and styles inline, nothing fetched from elsewhere.
const PAGE: &str = include_str!("page/index.html");

/// The stream also sends the status this often without a change, so probe latencies, the
/// timeline and "since" ages move on the page.
const STREAM_REFRESH: Duration = Duration::from_secs(2);

/// Inline script and styles only, talking to this origin only; never framed, so no other
/// site can overlay its buttons (clickjacking).
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                        img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Body of `PATCH /v1/albs/{id}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    pub enabled: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    Ok(zone_alb::server::bind(addr).await?)
}

pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    prometheus: Arc<prometheus_client::registry::Registry>,
    token: String,
    cancel: CancellationToken,
) {
    let token: Arc<str> = token.into();
    loop {
        let (stream, _) = tokio::select! {
            accepted = zone_alb::server::accept(&listener) => accepted,
            () = cancel.cancelled() => return,
        };
        let (registry, prometheus, token, cancel) =
            (registry.clone(), prometheus.clone(), token.clone(), cancel.clone());
        let service = service_fn(move |req| {
            let (registry, prometheus, token, cancel) =
                (registry.clone(), prometheus.clone(), token.clone(), cancel.clone());
            async move { Ok::<_, Infallible>(handle(req, &registry, &prometheus, &token, &cancel).await) }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    registry: &Arc<Registry>,
    prometheus: &prometheus_client::registry::Registry,
    token: &str,
    cancel: &CancellationToken,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    if path == "/healthz" {
        return Response::new(full(Bytes::from_static(b"ok\n")));
    }
    if read && path == "/" {
        return Response::builder()
            .header(CONTENT_TYPE, "text/html; charset=utf-8")
            .header(CONTENT_SECURITY_POLICY, PAGE_CSP)
            .header(X_FRAME_OPTIONS, "DENY")
            .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
            .header(CACHE_CONTROL, "no-cache")
            .body(full(Bytes::from_static(PAGE.as_bytes())))
            .expect("static response parts are valid");
    }
    if read && path == "/v1/status" {
        return json(StatusCode::OK, &crate::status::build(registry.overview()));
    }
    if read && path == "/v1/status/stream" {
        return Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .body(status_stream(registry.clone(), cancel.clone()))
            .expect("static response parts are valid");
    }
    if !read && !same_origin(&req) {
        return error(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: changes are accepted from this server's own page or a client without Origin"
                .into(),
        );
    }
    if path == "/metrics" {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, prometheus).is_err() {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics".into());
        }
        return Response::builder()
            .header(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(full(Bytes::from(text)))
            .expect("static response parts are valid");
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"));
    };
    if !authorized(&req, token) {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (see api.json in the state directory)".into(),
        );
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
        return resp;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["albs"]) => json(StatusCode::OK, &registry.status()),
        (Method::GET, ["events"]) => json(StatusCode::OK, &registry.events()),
        (Method::GET, ["albs", id]) => match registry.status().into_iter().find(|s| s.id == *id) {
            Some(status) => json(StatusCode::OK, &status),
            None => error(StatusCode::NOT_FOUND, format!("unknown ALB `{id}`")),
        },
        (Method::PATCH, ["albs", id]) => {
            let id = (*id).to_owned();
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
            };
            let configure: Configure = match serde_json::from_slice(&body) {
                Ok(c) => c,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("body must be {{\"enabled\": true|false}}: {e}"),
                    );
                }
            };
            match registry.configure(&id, configure.enabled).await {
                Ok(status) => json(StatusCode::OK, &status),
                Err(Error::UnknownAlb(id)) => error(StatusCode::NOT_FOUND, format!("unknown ALB `{id}`")),
                Err(e) => {
                    tracing::error!(error = %e, "could not apply an ALB change");
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "could not save the change; see the server log".into(),
                    )
                }
            }
        }
        (_, ["albs"] | ["albs", _]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

/// Server-sent events: the status at once, then at every change (within the time it takes to
/// build it) and every [`STREAM_REFRESH`]. Ends when the server stops or the client goes.
fn status_stream(registry: Arc<Registry>, cancel: CancellationToken) -> Body {
    let changes = registry.subscribe_changes();
    let events = futures::stream::unfold(
        (registry, changes, cancel, true),
        |(registry, mut changes, cancel, first)| async move {
            if !first {
                tokio::select! {
                    changed = changes.changed() => changed.ok()?,
                    () = tokio::time::sleep(STREAM_REFRESH) => {}
                    () = cancel.cancelled() => return None,
                }
            }
            // Marked seen before building, so a change made meanwhile sends another event.
            changes.borrow_and_update();
            let status = crate::status::build(registry.overview());
            let data = serde_json::to_string(&status).expect("status serializes");
            let event = Bytes::from(format!("event: status\ndata: {data}\n\n"));
            Some((event, (registry, changes, cancel, false)))
        },
    );
    StreamBody::new(events.map(|event| Ok(Frame::data(event)))).boxed_unsync()
}

/// Whether a state-changing request may proceed as far as the token check. Browsers send
/// `Origin` on every cross-origin request and on same-origin ones that are not GET/HEAD; a
/// request without it (the CLI, curl) is not from another site's page. With it, it must name
/// this very listener, as the `Host` the browser dialled.
pub fn same_origin<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
    {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return false;
    };
    let Some(origin_host) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        // `null` (a sandboxed frame, a file: page, a redirect) and anything odd.
        return false;
    };
    origin_host.eq_ignore_ascii_case(host)
}

fn authorized<B>(req: &Request<B>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant-time comparison: the time taken must not reveal how much of the token matched.
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed_unsync()
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("API types serialize");
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(full(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    json(status, &ApiError { error: message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().method(method).uri("/v1/albs/alb2");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn origin_check_admits_the_own_page_and_clients_without_origin() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            // The CLI and curl send no Origin: only the token decides.
            (&[("host", "127.0.0.1:9901")], true),
            // The page itself.
            (&[("host", "127.0.0.1:9901"), ("origin", "http://127.0.0.1:9901")], true),
            (
                &[
                    ("host", "127.0.0.1:9901"),
                    ("origin", "http://127.0.0.1:9901"),
                    ("sec-fetch-site", "same-origin"),
                ],
                true,
            ),
            (
                &[("host", "mzlb.example:443"), ("origin", "https://MZLB.example:443")],
                true,
            ),
            // Another site, another port, a sandboxed frame or file: page.
            (&[("host", "127.0.0.1:9901"), ("origin", "http://evil.example")], false),
            (
                &[("host", "127.0.0.1:9901"), ("origin", "http://127.0.0.1:9902")],
                false,
            ),
            (&[("host", "127.0.0.1:9901"), ("origin", "null")], false),
            (
                &[
                    ("host", "127.0.0.1:9901"),
                    ("origin", "http://127.0.0.1:9901.evil.example"),
                ],
                false,
            ),
            // The Origin is right but the browser says the request came from another site.
            (
                &[
                    ("host", "127.0.0.1:9901"),
                    ("origin", "http://127.0.0.1:9901"),
                    ("sec-fetch-site", "cross-site"),
                ],
                false,
            ),
            (&[("host", "127.0.0.1:9901"), ("sec-fetch-site", "same-site")], false),
            // An Origin but no Host to compare it with.
            (&[("origin", "http://127.0.0.1:9901")], false),
        ];
        for (headers, expected) in cases {
            assert_eq!(same_origin(&request(Method::PATCH, headers)), *expected, "{headers:?}");
        }
    }

    #[test]
    fn page_is_self_contained() {
        // No external assets: nothing the browser would fetch from another origin.
        for needle in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
            assert!(!PAGE.contains(needle), "the page refers to {needle}…");
        }
        assert!(PAGE.contains("/v1/status/stream"));
    }
}
