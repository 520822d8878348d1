//! The admin listener: `/metrics` (Prometheus text), `/healthz` and `/readyz` (the ALB only
//! runs once its routing table is loaded, so both answer `ok`).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = crate::server::accept(&listener).await;
        let metrics = metrics.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let metrics = metrics.clone();
            async move {
                let resp = match req.uri().path() {
                    "/metrics" => Response::builder()
                        .header(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(Full::new(Bytes::from(metrics.encode()))),
                    "/healthz" | "/readyz" => Response::builder().body(Full::new(Bytes::from_static(b"ok\n"))),
                    _ => Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::new(Bytes::from_static(b"not found\n"))),
                };
                Ok::<_, std::convert::Infallible>(resp.expect("static response parts are valid"))
            }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
