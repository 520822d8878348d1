//! The control API used by `mzlb albs` and `mzlb alb-configure`: JSON over HTTP on loopback,
//! every `/v1` call authenticated with the bearer token from the state directory.
//!
//! - `GET /v1/albs` — status of every ALB
//! - `GET /v1/albs/{id}` — one ALB
//! - `PATCH /v1/albs/{id}` with `{"enabled": false}` — disable (or enable) an ALB
//! - `GET /v1/events` — recent ALB state transitions, oldest first
//! - `GET /healthz` — liveness, no token needed
//! - `GET /metrics` — Prometheus text, no token needed (the API listens on loopback)

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
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
        let (registry, prometheus, token) = (registry.clone(), prometheus.clone(), token.clone());
        let service = service_fn(move |req| {
            let (registry, prometheus, token) = (registry.clone(), prometheus.clone(), token.clone());
            async move { Ok::<_, std::convert::Infallible>(handle(req, &registry, &prometheus, &token).await) }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    registry: &Registry,
    prometheus: &prometheus_client::registry::Registry,
    token: &str,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return Response::new(Full::new(Bytes::from_static(b"ok\n")));
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
            .body(Full::new(Bytes::from(text)))
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

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).expect("API types serialize");
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json(status, &ApiError { error: message })
}
