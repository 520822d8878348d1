//! The Gateway API conformance suite's backend (`echo-basic`), in process: every request is
//! answered 200 with `application/json` naming the request as the backend saw it (`path` is
//! the request target with its query, `host`, `method`, `headers`) and the pod that served it
//! (`namespace`, `pod`). `X-Echo-Set-Header: Name:Value,...` sets response fields; `?delay=1s`
//! waits first. Each request is also logged, for the mirroring tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

/// One pod: where it listens, its namespace and name.
#[derive(Clone, Debug)]
pub struct Pod {
    pub addr: SocketAddr,
    pub namespace: String,
    pub name: String,
    /// Serve HTTPS with this configuration (the echo page then says `tls: true`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Running pods; stopped when dropped.
pub struct Pods {
    /// (pod name, request target) of every request served.
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Pods {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Pods {
    /// Whether `pod` (a name prefix) served a request for `target`.
    pub fn served(&self, pod: &str, target: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|(p, t)| p.starts_with(pod) && t == target)
    }
}

/// Starts every pod, each listening before this returns.
pub fn start(pods: &[Pod]) -> Pods {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let pods = pods.to_vec();
    let served = log.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            for pod in pods {
                let listener = tokio::net::TcpListener::bind(pod.addr).await.expect("echo pod address");
                let pod = Arc::new(pod);
                let log = served.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (pod, log) = (pod.clone(), log.clone());
                        tokio::spawn(async move {
                            let tls = pod.tls.clone();
                            let service = hyper::service::service_fn(move |req| answer(req, pod.clone(), log.clone()));
                            let builder =
                                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                            let _ = match tls {
                                None => {
                                    builder
                                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                        .await
                                }
                                Some(config) => match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                                    Ok(tls) => {
                                        builder
                                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                            .await
                                    }
                                    Err(_) => return,
                                },
                            };
                        });
                    }
                });
            }
            ready.send(()).unwrap();
            let _ = stopped.await;
        });
    });
    is_ready
        .recv_timeout(Duration::from_secs(10))
        .expect("echo pods listening");
    Pods {
        log,
        stop: Some(stop),
        thread: Some(thread),
    }
}

async fn answer(
    req: Request<Incoming>,
    pod: Arc<Pod>,
    log: Arc<Mutex<Vec<(String, String)>>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    log.lock().unwrap().push((pod.name.clone(), target.clone()));
    let delay = req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| kv.strip_prefix("delay=")).and_then(|d| {
            d.strip_suffix("ms")
                .map(|n| n.parse().ok().map(Duration::from_millis))
                .unwrap_or_else(|| {
                    d.strip_suffix('s')
                        .and_then(|n| n.parse().ok())
                        .map(Duration::from_secs)
                })
        })
    });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(canonical(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let body = serde_json::json!({
        "path": target,
        "host": host,
        "method": req.method().as_str(),
        "proto": format!("{:?}", req.version()),
        "headers": headers,
        "namespace": pod.namespace,
        "pod": pod.name,
        "tls": pod.tls.is_some(),
    });
    let mut resp = Response::builder()
        .header("content-type", "application/json")
        .header("x-content-type-options", "nosniff");
    if let Some(set) = req.headers().get("x-echo-set-header").and_then(|v| v.to_str().ok()) {
        for pair in set.split(',').filter(|p| !p.is_empty()) {
            if let Some((name, value)) = pair.split_once(':') {
                resp = resp.header(name.trim(), value.trim());
            }
        }
    }
    Ok(resp.body(Full::new(Bytes::from(body.to_string()))).unwrap())
}

/// `x-header-set` → `X-Header-Set`, as Go's net/http shows header names.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
