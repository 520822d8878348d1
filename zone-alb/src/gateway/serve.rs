//! A request on a Gateway listener's port: pick the listener (Host, and SNI on HTTPS), the
//! rule, then apply its filters and relay it through the same forwarding path as an Ingress
//! rule's (same framing checks, forwarding fields, upstream pool and metrics).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::table::{Port, Request as Matched};
use crate::policy::ProxyError;
use crate::proxy::{Body, Forwarding, Proxy, Scheme, Seen};
use crate::router::{Backend, Route, RouteTable, normalize_host};

/// A mirrored request that has not been answered by then is given up.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
/// Mirrored requests in flight at once, per process; beyond, requests are not mirrored (a slow
/// mirror must not hold an unbounded number of connections and tasks).
const MIRRORS_IN_FLIGHT: usize = 1024;
static MIRRORS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MIRRORS_IN_FLIGHT)));

/// The server name a TLS connection's handshake asked for (lower case, no trailing dot),
/// carried to its requests on Gateway ports for the misdirected-request check.
#[derive(Clone, Debug)]
pub(crate) struct Sni(pub(crate) Option<Arc<str>>);

impl Proxy {
    pub(crate) async fn gateway(
        &self,
        table: &RouteTable,
        port: &Port,
        mut req: Request<Incoming>,
        (request_host, path): (&str, &str),
        at: Forwarding<'_>,
        seen: &mut Seen,
    ) -> Result<Response<Body>, ProxyError> {
        let host = normalize_host(request_host);
        if port.https && at.scheme != Scheme::Https {
            // An HTTPS listener's routes are never served in clear, whatever port mapping
            // brought a plain connection here (`--gateway-ports 80=...` with an HTTPS listener
            // on 80).
            return Err(ProxyError::NoRoute);
        }
        let listener = port.listener(&host).ok_or(ProxyError::NoRoute)?;
        if at.scheme == Scheme::Https {
            // The handshake chose a listener (and its certificate) by SNI; a request for a host
            // of another listener on that connection is misdirected (RFC 9110 §15.5.20).
            let sni = req.extensions().get::<Sni>().and_then(|s| s.0.clone());
            let by_sni = port.listener(sni.as_deref().unwrap_or_default());
            if !by_sni.is_some_and(|l| Arc::ptr_eq(l, listener)) {
                return Err(ProxyError::Misdirected);
            }
        }
        let matched = Matched {
            host: &host,
            path,
            query: req.uri().query(),
            method: req.method().as_str(),
            headers: req.headers(),
        };
        let Some(entry) = listener.lookup(&matched) else {
            tracing::debug!(listener = %listener.name, host = %host, path, "no Gateway API rule matches");
            return Err(ProxyError::NoRoute);
        };
        let rule = &entry.rule;
        seen.ingress = rule.route.clone();
        if let Some(cors) = &rule.cors
            && let Some(mut answer) = cors.preflight(req.method(), req.headers())
        {
            if let Some(changes) = &rule.response_headers {
                changes.apply(answer.headers_mut());
            }
            return Ok(answer);
        }
        let origin = rule
            .cors
            .as_ref()
            .and_then(|_| req.headers().get(header::ORIGIN).cloned());
        if let Some(redirect) = &rule.redirect {
            let location = redirect.location(
                at.scheme.as_str(),
                &host,
                self.settings.gateway_port(at.local.port()),
                path,
                req.uri().query(),
                entry.prefix(),
            );
            let mut resp = Response::builder()
                .status(redirect.status)
                .body(crate::proxy::empty())
                .expect("static response parts are valid");
            let location = HeaderValue::from_str(&location).map_err(|_| ProxyError::BadRequest)?;
            resp.headers_mut().insert(header::LOCATION, location);
            if let Some(changes) = &rule.response_headers {
                changes.apply(resp.headers_mut());
            }
            return Ok(resp);
        }
        let invalid = || ProxyError::InvalidBackend(rule.route.clone());
        let picked = rule.pick().ok_or_else(invalid)?;
        let backend = picked.backend.as_ref().ok_or_else(invalid)?;
        seen.service = backend.name.clone();
        if let Some(changes) = &rule.request_headers {
            changes.apply(req.headers_mut());
        }
        let mut forward_host = request_host.to_owned();
        // The backend gets the path the rule was chosen by: a raw path that normalizes to
        // another (`/admin//../panel`) could be read by the backend as a path no rule allowed.
        let mut rewritten = (path != req.uri().path()).then(|| path.to_owned());
        if let Some(rewrite) = &rule.rewrite {
            if let Some(h) = &rewrite.hostname {
                req.headers_mut().insert(header::HOST, h.clone());
                forward_host = h.to_str().unwrap_or_default().to_owned();
            }
            if let Some(change) = &rewrite.path {
                rewritten = Some(change.apply(path, entry.prefix()));
            }
        }
        // Mirrors get the request as the rule's filters made it, before a backend's own.
        for (mirror, share) in &rule.mirrors {
            if *share >= 1.0 || rand::random::<f64>() < *share {
                self.mirror(mirror, &req, &at, &forward_host, rewritten.as_deref());
            }
        }
        if let Some(changes) = &picked.request_headers {
            changes.apply(req.headers_mut());
        }
        let route = Route {
            backend,
            policy: if backend.h2c { &rule.policy_h2c } else { &rule.policy },
            rewritten,
            canary: None,
        };
        let relay = self.forward_route(table, req, &forward_host, path, route, at, seen);
        let mut resp = match rule.request_timeout {
            None => relay.await?,
            Some(limit) => tokio::time::timeout(limit, relay)
                .await
                .map_err(|_| ProxyError::RouteTimeout(rule.route.clone()))??,
        };
        if let Some(changes) = &picked.response_headers {
            changes.apply(resp.headers_mut());
        }
        if let Some(cors) = &rule.cors {
            cors.respond(origin.as_ref(), resp.headers_mut());
        }
        if let Some(changes) = &rule.response_headers {
            changes.apply(resp.headers_mut());
        }
        Ok(resp)
    }

    /// Sends a copy of the request's head to one endpoint of `mirror`, answer ignored. Only
    /// requests without a body are mirrored (a streamed body cannot be read twice), and at most
    /// [`MIRRORS_IN_FLIGHT`] at once.
    fn mirror(&self, mirror: &Backend, req: &Request<Incoming>, at: &Forwarding<'_>, host: &str, path: Option<&str>) {
        use hyper::body::Body as _;
        if !req.body().is_end_stream() {
            tracing::debug!(backend = %mirror.name, "request with a body not mirrored");
            return;
        }
        let Ok(permit) = MIRRORS.clone().try_acquire_owned() else {
            tracing::debug!(backend = %mirror.name, "too many mirrored requests in flight; not mirrored");
            return;
        };
        let Some(index) = mirror.pick() else { return };
        mirror.release(index);
        let endpoint = mirror.endpoints[index];
        let target = match (path, req.uri().query()) {
            (None, _) => req
                .uri()
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            (Some(p), None) => p.to_owned(),
            (Some(p), Some(q)) => format!("{p}?{q}"),
        };
        let mut copy = Request::builder().method(req.method().clone()).uri(target);
        for (name, value) in &crate::proxy::forwarded_copy(req.headers(), at, host) {
            if !matches!(name.as_str(), "content-length" | "host" | "upgrade") {
                copy = copy.header(name, value);
            }
        }
        let Ok(copy) = copy
            .header(header::HOST, host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
        else {
            return;
        };
        let source = self.settings.source_ip;
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(MIRROR_TIMEOUT, send_once(endpoint, source, copy)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::debug!(%endpoint, %error, "mirrored request failed"),
                Err(_) => tracing::debug!(%endpoint, "mirrored request timed out"),
            }
        });
    }
}

/// One request on a new connection, the answer's body drained.
async fn send_once(
    endpoint: SocketAddr,
    source: Option<IpAddr>,
    req: Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::BodyExt;
    let socket = if endpoint.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == endpoint.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(endpoint).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}
