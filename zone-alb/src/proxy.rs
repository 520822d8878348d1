//! The request path: find the route, pick an endpoint, rewrite the forwarding headers and relay
//! the exchange. Reads the routing table through `ArcSwap`, so a reload never blocks a request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use crate::access_log;
use crate::annotations::{BackendProtocol, CookieAffinity};
use crate::backend_tls::BackendTls;
use crate::metrics::{IngressLabels, Metrics, RequestLabels, UpstreamLabels, status_class};
use crate::policy::error::Side;
use crate::policy::{self, ProxyError, forward};
use crate::router::{Backend, InFlight, RouteTable};
use crate::splice::splice;
use crate::upload::{Fault, Upload};
use crate::upstream::{Key, Timeouts, UpstreamError, Upstreams};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Says why the ALB itself refused a request (fail-closed routes), beside the status.
const X_MZLB_REASON: HeaderName = HeaderName::from_static("x-mzlb-reason");

/// Endpoints tried for one request when connections fail.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// How a zone ALB's proxy behaves, from its options.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Upstream connections leave from this address (the ALB's own), so backends see the
    /// zone's IP as the peer (REMOTE_ADDR), as behind a cloud ALB.
    pub source_ip: Option<IpAddr>,
    /// Peers whose X-Forwarded-* headers are believed (an L4 balancer or proxy in front).
    pub trusted: Vec<IpNet>,
    /// Where HTTPS is served, for ssl-redirect; `None` without a TLS listener.
    pub https_port: Option<u16>,
    /// Fraction of requests written to the access log (0 off, 1 all).
    pub access_sample: f64,
    /// Plain connections, and HTTPS ones that chose HTTP/1.1, start on the fast path, and
    /// HTTP/2 requests without a body go upstream over its connections; `false` gives them all
    /// to hyper (server and client).
    pub fast_path: bool,
    /// Request fields with `_` in their names go upstream.
    pub underscores: bool,
    /// The ports of the ALB's own (Ingress) listeners: a Gateway listener on one of them
    /// shares it with the Ingress rules.
    pub ingress_ports: Vec<u16>,
    /// `--gateway-ports`: (Gateway listener port, local port serving it).
    pub gateway_ports: Vec<(u16, u16)>,
}

impl Settings {
    /// The Gateway listener port a connection to local port `local` is for.
    pub(crate) fn gateway_port(&self, local: u16) -> u16 {
        self.gateway_ports
            .iter()
            .find(|(_, l)| *l == local)
            .map_or(local, |(listener, _)| *listener)
    }
}

/// The proxy shared by every connection of one zone ALB's worker.
pub struct Proxy {
    pub(crate) table: Arc<ArcSwap<RouteTable>>,
    upstreams: Upstreams,
    /// HTTP/2 connections to gRPC backends.
    h2: crate::upstream_h2::H2Upstreams,
    /// The fast path's own upstream connections (plain HTTP/1.1 sockets).
    pub(crate) fast: crate::fastpath::pool::Pool,
    /// The fast path's request-head buffers not in use.
    pub(crate) spare: crate::fastpath::Spare,
    pub(crate) settings: Settings,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RouteTable>>, settings: Settings, metrics: Arc<Metrics>) -> Self {
        Self {
            table,
            upstreams: Upstreams::new(settings.source_ip, metrics.upstream_connections.clone()),
            h2: crate::upstream_h2::H2Upstreams::new(settings.source_ip),
            fast: crate::fastpath::pool::Pool::new(settings.source_ip, metrics.upstream_connections.clone()),
            spare: crate::fastpath::Spare::default(),
            settings,
            metrics,
        }
    }

    /// The forwarding rules for a connection from `peer`: the cluster's ingress-nginx
    /// settings when it has them, else this ALB's flags.
    pub(crate) fn rules(&self, table: &RouteTable, peer: SocketAddr) -> forward::Rules {
        forward::Rules {
            trusted: self.trusted(table).iter().any(|net| net.contains(&peer.ip())),
            underscores: table.underscores_in_headers.unwrap_or(self.settings.underscores),
        }
    }

    /// The peers whose X-Forwarded-* fields are believed.
    fn trusted<'a>(&'a self, table: &'a RouteTable) -> &'a [IpNet] {
        table.trusted_proxies.as_deref().unwrap_or(&self.settings.trusted)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
        scheme: Scheme,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        // Shared views of the request's own bytes, kept for the log line: no copies.
        let uri = req.uri().clone();
        let path = uri.path();
        let host_value = request_host(&req);
        let host = host_value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default();
        // One table for the whole request, even if a reload swaps it meanwhile.
        let table = self.table.load_full();
        if table.is_alb_health_check(host) {
            // A body we do not read must not be taken for the next request: close after.
            return own_answer(StatusCode::OK, "healthy", !req.body().is_end_stream(), None);
        }
        let mut seen = Seen::default();
        let request = RequestLine {
            peer,
            method: method.as_str(),
            host,
            path,
        };
        let (resp, error) = match self.forward(&table, req, host, peer, local, scheme, &mut seen).await {
            Ok(resp) => (resp, None),
            Err(err) => {
                let status = self.failed(&err, &seen, &request);
                // Never leak internals into the body: the reason phrase is enough.
                let resp = own_answer(
                    status,
                    status.canonical_reason().unwrap_or("error"),
                    err.closes(),
                    err.reason(),
                );
                (resp, Some(err))
            }
        };
        let mut resp = if seen.intercept.is_some() {
            Box::pin(crate::intercept::finish(resp, &mut seen, &self.upstreams)).await
        } else {
            resp
        };
        if let Some(fields) = seen.custom_headers.take() {
            // custom-headers: ingress-nginx's more_set_headers, on every answer of the route.
            for (name, value) in fields.iter() {
                resp.headers_mut().insert(name.clone(), value.clone());
            }
        }
        if let Some(respond) = seen.respond.take() {
            respond.apply(&mut resp); // snippets' response fields, on every answer
        }
        if scheme == Scheme::Https
            && let Some(hsts) = &table.hsts
        {
            // ingress-nginx's `hsts`: on every HTTPS answer, over any the backend sent.
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        self.record(
            seen,
            resp.status().as_u16(),
            started.elapsed(),
            &request,
            error.as_ref(),
        );
        resp
    }

    /// Logs and counts a request that failed; returns the status to answer with.
    pub(crate) fn failed(&self, err: &ProxyError, seen: &Seen, request: &RequestLine<'_>) -> StatusCode {
        let status = err.status();
        // The client's mistakes are its own business; ours and the backends' are worth a line.
        if err.side() != Side::Client {
            let r = request;
            tracing::warn!(peer = %r.peer, method = %r.method, host = %r.host, path = %r.path,
                status = status.as_u16(), error = %err, "request failed");
        }
        let kind = match err {
            ProxyError::Upstream(_, e) if e.is_connect() => Some("connect"),
            ProxyError::Upstream(_, e) if e.is_timeout() => Some("timeout"),
            ProxyError::Upstream(..) => Some("other"),
            _ => None,
        };
        if let Some(kind) = kind {
            let labels = UpstreamLabels {
                ingress: seen.ingress.clone(),
                service: seen.service.clone(),
                kind,
            };
            self.metrics.upstream_errors.get_or_create(&labels).inc();
        }
        status
    }

    /// Counts a finished request (status and time to the response head) and writes its access
    /// log line when sampled.
    pub(crate) fn record(
        &self,
        seen: Seen,
        status: u16,
        elapsed: Duration,
        request: &RequestLine<'_>,
        error: Option<&ProxyError>,
    ) {
        let labels = RequestLabels {
            ingress: seen.ingress,
            service: seen.service,
            status: status_class(status),
        };
        self.metrics.requests.get_or_create(&labels).inc();
        self.metrics
            .duration
            .get_or_create(&IngressLabels {
                ingress: labels.ingress.clone(),
            })
            .observe(elapsed.as_secs_f64());
        let sample = self.settings.access_sample;
        if sample > 0.0 && (sample >= 1.0 || rand::random::<f64>() < sample) && access_log::enabled() {
            access_log::write(&access_log::Line {
                peer: request.peer,
                method: request.method,
                host: request.host,
                path: request.path,
                status,
                elapsed,
                ingress: &labels.ingress,
                upstream: seen.upstream,
                error: error.map(|e| e as &dyn std::fmt::Display),
            });
        }
    }

    #[allow(clippy::too_many_arguments)] // one request's context, passed once
    async fn forward(
        &self,
        table: &RouteTable,
        req: Request<Incoming>,
        host: &str,
        peer: SocketAddr,
        local: SocketAddr,
        scheme: Scheme,
        seen: &mut Seen,
    ) -> Result<Response<Body>, ProxyError> {
        let rules = self.rules(table, peer);
        let trusted = rules.trusted.then_some(self.trusted(table));
        let client = client_ip(req.headers(), peer, trusted);
        if req.method() == hyper::Method::CONNECT {
            return Err(ProxyError::Connect);
        }
        // Framing and target, as the fast path checks them (it hands these to us otherwise).
        policy::check_target(req.uri().path_and_query().map_or("", |p| p.as_str()))?;
        // One Host, and one a backend cannot read as another: the route is chosen by it.
        let mut hosts = req.headers().get_all(header::HOST).iter();
        if let Some(first) = hosts.next() {
            policy::check_host(first.as_bytes())?;
        }
        if hosts.next().is_some() {
            return Err(ProxyError::BadRequest);
        }
        policy::check_transfer_codings(
            req.headers()
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .map(HeaderValue::as_bytes),
        )?;
        // A shared view of the target (no copy), so the request itself can move on.
        let uri = req.uri().clone();
        let path = policy::route_path(uri.path())?;
        // A Gateway listener's port: its routes, but where an Ingress listener shares the port,
        // an Ingress rule for the very host wins (ingress-nginx users keep their Ingresses
        // while they move).
        let at = Forwarding {
            peer,
            local,
            scheme,
            client,
            rules,
            trusted,
            gateway: false,
        };
        if let Some(port) = table.gateway.port(self.settings.gateway_port(local.port()))
            && !(self.settings.ingress_ports.contains(&local.port()) && table.lookup_host_rules(host, &path).is_some())
        {
            let forwarding = Forwarding { gateway: true, ..at };
            // Boxed, as the other rare branches below: inline, their state would be carried
            // (and moved) by every request's future.
            return Box::pin(self.gateway(table, port, req, (host, &path), forwarding, seen)).await;
        }
        let route = table.lookup(host, &path).ok_or(ProxyError::NoRoute)?;
        self.forward_route(table, req, host, &path, route, at, seen).await
    }

    /// Relays a request to `route` (found by an Ingress rule or a Gateway API rule).
    #[allow(clippy::too_many_arguments)] // one request's context, passed once
    pub(crate) async fn forward_route(
        &self,
        table: &RouteTable,
        req: Request<Incoming>,
        host: &str,
        path: &str,
        route: crate::router::Route<'_>,
        at: Forwarding<'_>,
        seen: &mut Seen,
    ) -> Result<Response<Body>, ProxyError> {
        let Forwarding {
            peer,
            local,
            scheme,
            client,
            rules,
            trusted,
            gateway,
        } = at;
        // Client certificates (auth-tls-*): on TLS before anything else, as nginx's check at
        // request read; on plain HTTP after the redirect to HTTPS.
        let client_cert = || {
            let conn = req.extensions().get::<Arc<crate::client_cert::Connection>>();
            crate::client_cert::check(
                table.client_auth_for(host).map(|a| &**a),
                &crate::router::normalize_host(host),
                route.policy.policy.tls.client_auth.is_some(),
                scheme == Scheme::Https,
                conn.map(|c| &**c),
            )
        };
        let mut client_fields = None;
        if scheme == Scheme::Https && !gateway {
            match client_cert() {
                Ok(fields) => client_fields = fields,
                Err(refusal) => return client_cert_refused(refusal),
            }
        }
        let (route, mut snippet) =
            crate::snippet::request(table, host, route, path, &req, client, local.port(), scheme.as_str())?;
        seen.ingress = route.policy.ingress.clone();
        seen.service = route.backend.name.clone();
        seen.respond = snippet.respond.take();
        if route.policy.unenforced.is_empty() {
            seen.custom_headers = route.policy.custom_headers.clone();
        }
        if let Some(answer) = snippet.answer.take() {
            return Ok(answer);
        }
        let policy = &route.policy.policy;
        if let Some(resp) = crate::intercept::early(&route, &req, path, host, scheme, client, seen) {
            return Ok(resp);
        }
        if scheme == Scheme::Http && RouteTable::redirects_to_https(&route, host) && route.policy.unenforced.is_empty()
        {
            match self.settings.https_port {
                Some(https_port) => return Ok(redirect_to_https(host, https_port, req.uri())),
                // Demanded HTTPS this ALB cannot serve: refused rather than served in clear.
                None if policy.force_ssl_redirect => {
                    return Err(ProxyError::Unenforced(Arc::from(
                        "force-ssl-redirect: this ALB has no HTTPS listener",
                    )));
                }
                None => {}
            }
        }
        if scheme == Scheme::Http && !gateway {
            match client_cert() {
                Ok(fields) => client_fields = fields,
                Err(refusal) => return client_cert_refused(refusal),
            }
        }
        let length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // Held until the response head is back (the body streams on afterwards), or for the
        // life of a spliced upgrade.
        let slot = policy::admit(&route, client, length)?;
        if let Some(to) = &policy.upstream.www_redirect_to {
            return Ok(crate::router::www_redirect(
                to,
                scheme.as_str(),
                local.port(),
                req.uri(),
            ));
        }
        let mut req = req;
        let at = crate::auth::Incoming {
            host,
            client,
            local,
            scheme,
            client_cert: client_fields.as_ref(),
        };
        let granted = if route.policy.auth.is_none() {
            crate::auth::Granted::default()
        } else {
            match Box::pin(crate::auth::check(&route, &mut req, at)).await {
                Ok(granted) => granted,
                Err(answer) => return Ok(answer),
            }
        };

        // The body streams upstream as it arrives, the limit enforced as it passes.
        let (head, incoming) = req.into_parts();
        let (upload, mut watch) = Upload::new(incoming, policy.body_limit);
        let replayable_body = upload.is_end_stream();
        let mut req = Request::from_parts(head, upload.boxed());
        if policy.buffers.request_buffering {
            req = crate::buffering::buffer_request(req, &watch, policy.buffers.body_buffer).await?;
        }

        let sticky_cookie = policy.affinity.as_ref().and_then(|a| cookie(req.headers(), &a.name));
        let (backend, hash_by) = route.pick_backend(req.headers(), sticky_cookie);
        let backend = crate::intercept::serving_backend(&route, backend);
        seen.service = backend.name.clone();
        let sticky = sticky_cookie.and_then(|value| sticky_endpoint(backend, value));
        let index = match (sticky, hash_by) {
            (Some(i), _) => Some(i),
            (None, Some(hash_by)) => {
                let input = crate::hash::Request {
                    path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                    remote: client,
                    host,
                    scheme: scheme.as_str(),
                    method: req.method().as_str(),
                    headers: req.headers(),
                };
                crate::hash::pick(&hash_by.key(&input), &backend.endpoints).map(|i| backend.take(i))
            }
            (None, None) => backend.pick(),
        };
        let index = index.ok_or_else(|| ProxyError::NoEndpoint(backend.name.clone()))?;
        let endpoint = backend.endpoints[index];
        let mut in_flight = InFlight::new(backend, index);

        // Origin-form for the backend: the client's path and query, or the rewritten path.
        let target = match (&route.rewritten, req.uri().query()) {
            _ if let Some(rewritten) = snippet.target.take() => PathAndQuery::try_from(rewritten).ok(),
            (None, _) => req.uri().path_and_query().cloned(),
            (Some(path), None) => PathAndQuery::try_from(path.as_str()).ok(),
            (Some(path), Some(query)) => PathAndQuery::try_from(format!("{path}?{query}")).ok(),
        };
        let target = Uri::from(target.ok_or(ProxyError::BadRequest)?);
        // An upgrade the route allows (WebSocket, or one its annotation lists) goes through with
        // `Connection: upgrade`, and after a 101 the two connections are spliced. Any other
        // (h2c above all) is not honoured: its fields are dropped and the request is served
        // as an ordinary one.
        let upgrade = upgrade_token(req.headers())
            .filter(|token| policy::upgrade_allowed(&route, token.as_bytes()))
            .filter(|_| connection_has(req.headers(), "upgrade"));
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let headers = &mut parts.headers;
        retain_fields(headers, |name, listed| forward::request_field(name, listed, rules));
        snippet.input(headers);
        if let Some(protocol) = &upgrade {
            headers.insert(header::UPGRADE, protocol.clone());
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        if !headers.contains_key(header::HOST) && !host.is_empty() {
            // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need it as Host.
            if let Ok(v) = HeaderValue::from_str(host) {
                headers.insert(header::HOST, v);
            }
        }
        set_forwarded(headers, peer, local, host, scheme, trusted);
        policy.upstream.set_fields(headers);
        crate::intercept::sent_upstream(seen, headers);
        snippet.upstream(headers);
        granted.apply_upstream(headers);
        if let Some(fields) = &client_fields {
            fields.apply(headers);
        }

        // A request without a body can be sent again elsewhere when the connection could not
        // even be made; one with a body cannot be replayed.
        let replayable = parts.method.is_idempotent() && replayable_body;
        let attempts = if replayable {
            policy.upstream.attempts(backend.endpoints.len(), MAX_ATTEMPTS)
        } else {
            1
        };
        let mut body = Some(body);
        let timeouts = Timeouts {
            connect: policy.connect_timeout,
            send: policy.send_timeout,
            read: policy.read_timeout,
        };
        let protocol = policy.backend_protocol;
        let tls_wanted = match protocol {
            BackendProtocol::Https | BackendProtocol::Grpcs => true,
            BackendProtocol::AutoHttp => scheme == Scheme::Https,
            // A Gateway API backend with a BackendTLSPolicy: TLS, verified as it says.
            BackendProtocol::Http | BackendProtocol::Grpc => gateway && backend.tls.is_some(),
        };
        // Verified as the route's proxy-ssl-* settings say, or ingress-nginx's unverified default.
        let tls = tls_wanted.then(|| backend.tls.clone().unwrap_or_else(BackendTls::insecure));
        if protocol.is_h2() {
            // HTTP/2 carries the host as :authority; gRPC servers want `te: trailers`, which
            // nginx's gRPC proxy always sends.
            parts.headers.remove(header::HOST);
            parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // An HTTP/2 client's request without a body to a plain HTTP/1.1 backend goes over the
        // fast path's connections, without hyper's client task and channels.
        let own_leg = self.settings.fast_path
            && parts.version == Version::HTTP_2
            && tls.is_none()
            && !protocol.is_h2()
            && upgrade.is_none()
            && replayable_body
            && crate::fastpath::backend::takes(&parts.method)
            // It holds heads to the fast path's bound; a larger `proxy-buffer-size` is hyper's.
            && policy.buffers.response_head_limit.is_none_or(|limit| limit <= crate::server::MAX_HEADER_BYTES as u64);
        let (mut index, mut endpoint) = (index, endpoint);
        seen.upstream = Some(endpoint);
        let mut attempt = 1;
        let resp = loop {
            let mut upstream = Request::new(body.take().unwrap_or_else(empty));
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = target.clone();
            *upstream.version_mut() = Version::HTTP_11;
            // The last attempt takes the headers; earlier ones keep a copy for the next.
            *upstream.headers_mut() = if attempt == attempts {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            let started = Instant::now();
            let sent = if protocol.is_h2() {
                // gRPC over TLS is not verified for Ingresses (ingress-nginx's grpcs:// has no
                // proxy-ssl-*). A Gateway API backend's BackendTLSPolicy is verified (its settings' identity
                // in the pool key); otherwise unverified (id 0).
                let verified = tls.as_ref().filter(|t| gateway && t.id != 0);
                let key = Key {
                    addr: endpoint,
                    tls: tls.as_ref().map(|t| if verified.is_some() { t.id } else { 0 }),
                };
                *upstream.version_mut() = Version::HTTP_2;
                *upstream.uri_mut() = h2_uri(tls.is_some(), host, &target)?;
                self.h2
                    .send(key, upstream, timeouts, verified)
                    .await
                    .map(|resp| resp.map(|body| body.map_err(BoxError::from).boxed()))
            } else if own_leg {
                crate::fastpath::backend::send(&self.fast, endpoint, &upstream, timeouts).await
            } else {
                (self.upstreams)
                    .send(endpoint, tls.as_ref(), upstream, timeouts, watch.sent.take())
                    .await
            };
            match sent {
                Ok(resp) => break (resp, started.elapsed()),
                Err(e) if e.is_connect() && attempt < attempts => {
                    in_flight.finished(None);
                    tracing::debug!(%endpoint, error = %e, "connect failed; retrying on another endpoint");
                    index = backend
                        .pick_other(index)
                        .ok_or_else(|| ProxyError::NoEndpoint(backend.name.clone()))?;
                    in_flight.moved(index);
                    endpoint = backend.endpoints[index];
                    seen.upstream = Some(endpoint);
                    attempt += 1;
                }
                // The client's body failed on its way (over the limit, malformed, stalled): its
                // fault, not the backend's, so no outcome for the endpoint (the guard gives its
                // in-flight count back).
                Err(_) if let Some(fault) = watch.fault() => {
                    return Err(match fault {
                        Fault::TooLarge => ProxyError::TooLarge,
                        Fault::Malformed => ProxyError::BadRequest,
                        Fault::Stalled => ProxyError::BodyTimeout,
                    });
                }
                Err(e) => {
                    in_flight.finished(None);
                    return Err(ProxyError::Upstream(endpoint, e));
                }
            }
        };
        let (resp, latency) = resp;
        // Both framings at once is a smuggling attempt or a broken backend (RFC 9112 §6.3):
        // refused, as the fast path refuses it; the connection goes with the response.
        if resp.headers().contains_key(header::TRANSFER_ENCODING) && resp.headers().contains_key(header::CONTENT_LENGTH)
        {
            in_flight.finished(None);
            let invalid = UpstreamError::Invalid("both Transfer-Encoding and Content-Length".into());
            return Err(ProxyError::Upstream(endpoint, invalid));
        }
        // proxy-buffer-size, else the fast path's bound: nginx's "upstream sent too big header".
        if !crate::buffering::head_fits(&resp, policy.buffers.response_head_limit) {
            in_flight.finished(None);
            let invalid = UpstreamError::Invalid("upstream sent too big header".into());
            return Err(ProxyError::Upstream(endpoint, invalid));
        }
        in_flight.finished(Some(latency));
        let mut resp = resp;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // A 101 to a request that asked for no upgrade we allow, or to another protocol than
            // the one asked for, would hand the backend a connection of its own choosing: refused.
            let switched_to = resp.headers().get(header::UPGRADE).map(HeaderValue::as_bytes);
            let asked = upgrade.as_ref().map(HeaderValue::as_bytes);
            let same = matches!((switched_to, asked), (Some(to), Some(asked)) if to.eq_ignore_ascii_case(asked));
            let (Some(client_upgrade), true) = (client_upgrade, same) else {
                return Err(ProxyError::Upstream(
                    endpoint,
                    UpstreamError::Invalid("101 Switching Protocols to a protocol not asked for".into()),
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let idle = policy.read_timeout;
            tokio::spawn(async move {
                // The in-flight slot is held as long as the spliced connection lives.
                let _slot = slot;
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        if let Err(error) = splice(TokioIo::new(client), TokioIo::new(upstream), idle).await {
                            tracing::debug!(%error, "spliced connection ended");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            });
            let (mut parts, body) = resp.into_parts();
            let protocol = parts.headers.get(header::UPGRADE).cloned();
            retain_fields(&mut parts.headers, forward::response_field);
            if let Some(protocol) = protocol {
                parts.headers.insert(header::UPGRADE, protocol);
            }
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            return Ok(Response::from_parts(parts, body));
        }
        let (mut parts, body) = resp.into_parts();
        retain_fields(&mut parts.headers, forward::response_field);
        granted.apply_response(parts.status, &mut parts.headers);
        if let Some(affinity) = &policy.affinity
            && (sticky.is_none() || (affinity.extras.change_on_failure && sticky != Some(index)))
            && let Ok(v) = HeaderValue::from_str(&crate::annotations::upstream::affinity_set_cookie(
                affinity,
                &affinity_value(&endpoint),
                scheme == Scheme::Https,
                std::time::SystemTime::now(),
            ))
        {
            parts.headers.append(header::SET_COOKIE, v);
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// A request's connection facts and forwarding rules, for [`Proxy::forward_route`].
#[derive(Clone, Copy)]
pub(crate) struct Forwarding<'a> {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) scheme: Scheme,
    pub(crate) client: IpAddr,
    pub(crate) rules: forward::Rules,
    pub(crate) trusted: Option<&'a [IpNet]>,
    /// Routed by a Gateway API rule: an Ingress's client-certificate settings for the same
    /// host do not apply.
    pub(crate) gateway: bool,
}

/// What a request was routed to, for metrics and the access log (filled as it becomes known).
#[derive(Default)]
pub struct Seen {
    pub(crate) ingress: Arc<str>,
    pub(crate) service: Arc<str>,
    pub(crate) upstream: Option<SocketAddr>,
    /// What the response needs (CORS fields, custom errors), from [`crate::intercept::early`].
    pub(crate) intercept: Option<Box<crate::intercept::Plan>>,
    /// Response fields a snippet sets, for whatever answer the request gets.
    pub(crate) respond: Option<crate::snippet::Respond>,
    /// `custom-headers` of the route, for whatever answer the request gets (set before the
    /// snippet's, so a snippet's more_set_headers of the same name wins, as it comes later).
    pub(crate) custom_headers: Option<Arc<[(HeaderName, HeaderValue)]>>,
}

/// Who asked for what, for the logs.
pub(crate) struct RequestLine<'a> {
    pub peer: SocketAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

/// How the client reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The absolute URI of an HTTP/2 request to a backend: scheme, the client's host as
/// authority, and the origin-form target.
fn h2_uri(tls: bool, host: &str, target: &Uri) -> Result<Uri, ProxyError> {
    let scheme = if tls { "https" } else { "http" };
    let authority = if host.is_empty() { "localhost" } else { host };
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(target.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| ProxyError::BadRequest)
}

/// 308 to the same host and path over HTTPS (ingress-nginx's ssl-redirect).
fn redirect_to_https(host: &str, https_port: u16, uri: &Uri) -> Response<Body> {
    let bare = host
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with(']') || host.starts_with('['))
        .map_or(host, |(h, _)| h);
    let authority = if https_port == 443 {
        bare.to_owned()
    } else {
        format!("{bare}:{https_port}")
    };
    let target = format!(
        "https://{authority}{}",
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(
            header::LOCATION,
            HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/")),
        )
        .body(full(""))
        .expect("static response parts are valid")
}

/// The client's address: the peer's, or, behind a trusted proxy, the rightmost address in
/// X-Forwarded-For that is not itself a trusted proxy.
fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted: Option<&[IpNet]>) -> IpAddr {
    let Some(nets) = trusted else { return peer.ip() };
    let entries: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // From the right: trusted hops are skipped; the first other address is the client. An
    // entry that is no address ends the walk at the peer: skipping it would let whatever the
    // client wrote to its left pass for the client.
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_ip(entry) else {
            return peer.ip();
        };
        if !nets.iter().any(|n| n.contains(&ip)) {
            return ip;
        }
    }
    peer.ip()
}

/// An X-Forwarded-For entry's address: `ip`, `ip:port` or `[v6]:port` (some balancers append
/// the port).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// Whether the Connection header lists `token`.
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_listed(headers)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The value of cookie `name` in the request, if any.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    cookie_in(headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes), name)
}

/// The value of cookie `name` in these Cookie field values, if any.
pub(crate) fn cookie_in<'v>(values: impl Iterator<Item = &'v [u8]>, name: &str) -> Option<&'v str> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The endpoint an affinity cookie's value names, if it is still one of the backend's (counted
/// as picked, for the balancer's in-flight figures).
pub(crate) fn sticky_endpoint(backend: &Backend, value: &str) -> Option<usize> {
    backend
        .endpoints
        .iter()
        .position(|ep| affinity_value(ep) == value)
        .map(|i| backend.take(i))
}

/// The Set-Cookie value that pins a client to `endpoint` (ingress-nginx's attributes: `Secure`
/// on HTTPS unless the Ingress says otherwise).
pub(crate) fn affinity_cookie(affinity: &CookieAffinity, endpoint: &SocketAddr, https: bool) -> String {
    let now = std::time::SystemTime::now();
    crate::annotations::upstream::affinity_set_cookie(affinity, &affinity_value(endpoint), https, now)
}

/// The affinity cookie's value for an endpoint: a stable hash, so every zone's ALB (same build,
/// same endpoints) sends the client to the same place, and no address is revealed.
pub(crate) fn affinity_value(endpoint: &SocketAddr) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    endpoint.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The host the client asked for: `Host`, or the URI authority (HTTP/2, absolute-form).
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// The names the request's or response's `Connection` fields list.
fn connection_listed(headers: &HeaderMap) -> Vec<&[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| forward::connection_tokens(v.as_bytes()))
        .collect()
}

/// Removes the fields `keep` refuses, given each name and the names `Connection` lists: the
/// request's ([`forward::request_field`]) or the response's ([`forward::response_field`]).
fn retain_fields(headers: &mut HeaderMap, keep: impl Fn(&[u8], &[&[u8]]) -> bool) {
    let listed = connection_listed(headers);
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| !keep(name.as_str().as_bytes(), &listed))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// The request fields a copy of a request (a Gateway API mirror) carries: those a relayed
/// request keeps, with the forwarding fields set by us, as for the original.
pub(crate) fn forwarded_copy(headers: &HeaderMap, at: &Forwarding<'_>, host: &str) -> HeaderMap {
    let mut copy = headers.clone();
    retain_fields(&mut copy, |name, listed| forward::request_field(name, listed, at.rules));
    set_forwarded(&mut copy, at.peer, at.local, host, at.scheme, at.trusted);
    copy
}

/// The upgrade a request asks for: the first token of its `Upgrade` field.
fn upgrade_token(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(header::UPGRADE)?;
    let first = forward::connection_tokens(value.as_bytes()).next()?;
    HeaderValue::from_bytes(first).ok()
}

/// Sets the forwarding headers. From an untrusted peer (the default: `trusted` is `None`)
/// whatever arrived in X-Forwarded-* / X-Real-IP is replaced, so a client cannot choose the
/// address backends see. From a trusted proxy they are kept: X-Forwarded-For gets the peer
/// appended and X-Real-IP becomes the rightmost address that is not itself a trusted proxy.
fn set_forwarded(
    headers: &mut HeaderMap,
    peer: SocketAddr,
    local: SocketAddr,
    host: &str,
    scheme: Scheme,
    trusted: Option<&[IpNet]>,
) {
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    let Some(nets) = trusted else {
        forward::untrusted_fields(peer.ip(), scheme.as_str(), local.port(), |name, v| {
            headers.insert(HeaderName::from_static(name), value(&v.to_string()));
        });
        set_host_and_id(headers, host);
        return;
    };
    let mut chain: Vec<String> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    let peer_ip = peer.ip().to_string();
    chain.push(peer_ip.clone());
    let real_ip = chain
        .iter()
        .rev()
        .find(|a| {
            a.parse::<IpAddr>()
                .map_or(true, |ip| !nets.iter().any(|n| n.contains(&ip)))
        })
        .map_or(peer_ip.as_str(), String::as_str);
    let real_ip = value(real_ip);
    headers.insert(X_FORWARDED_FOR, value(&chain.join(", ")));
    headers.insert(X_REAL_IP, real_ip);
    // A trusted proxy's own values are kept.
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme.as_str()));
    }
    if !headers.contains_key(X_FORWARDED_PORT) {
        headers.insert(X_FORWARDED_PORT, HeaderValue::from(local.port()));
    }
    if headers.contains_key(X_FORWARDED_HOST) {
        set_request_id(headers);
    } else {
        set_host_and_id(headers, host);
    }
}

/// `X-Forwarded-Host` from the request's host, and an `X-Request-ID` unless the client sent one.
fn set_host_and_id(headers: &mut HeaderMap, host: &str) {
    match HeaderValue::from_str(host) {
        Ok(v) if !host.is_empty() => {
            headers.insert(X_FORWARDED_HOST, v);
        }
        _ => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    set_request_id(headers);
}

fn set_request_id(headers: &mut HeaderMap) {
    // Kept when the client sent one (so a trace can cross us), generated otherwise.
    if !headers.contains_key(X_REQUEST_ID) {
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_bytes(&request_id()).expect("hex digits are a valid header value"),
        );
    }
}

/// A new X-Request-ID: 128 random bits in hex, as ingress-nginx's `$req_id`.
pub(crate) fn request_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id: [u8; 16] = rand::random();
    let mut hex = [0u8; 32];
    for (i, b) in id.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(b >> 4)];
        hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    hex
}

/// A small plain-text answer of the ALB's own; `close` ends the connection after it (a body
/// or head we refused to read must not be taken for the next request). `reason` says why we
/// refused, for operators.
/// The answer to a request refused for its client certificate, as nginx gives it.
fn client_cert_refused(refusal: crate::client_cert::Refusal) -> Result<Response<Body>, ProxyError> {
    use crate::client_cert::Refusal;
    Ok(match refusal {
        Refusal::Misdirected => own_answer(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected Request",
            false,
            Some("the Host is not the name the TLS connection was made for".into()),
        ),
        Refusal::Certificate {
            error_page: Some(page), ..
        } => match HeaderValue::from_str(&page) {
            // nginx's `error_page 495 496 = <page>`.
            Ok(location) => {
                let mut resp = own_answer(StatusCode::FOUND, "Found", false, None);
                resp.headers_mut().insert(header::LOCATION, location);
                resp
            }
            Err(_) => return Err(ProxyError::BadRequest),
        },
        Refusal::Certificate { no_certificate, .. } => own_answer(
            StatusCode::BAD_REQUEST,
            if no_certificate {
                "No required SSL certificate was sent"
            } else {
                "The SSL certificate error"
            },
            false,
            None,
        ),
        Refusal::Unauthorized => own_answer(StatusCode::FORBIDDEN, "client certificate unauthorized", false, None),
        Refusal::Unusable(reason) => return Err(ProxyError::Unenforced(Arc::from(reason))),
    })
}

pub(crate) fn own_answer(status: StatusCode, body: &str, close: bool, reason: Option<String>) -> Response<Body> {
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(format!("{body}\n")))
        .expect("static response parts are valid");
    if close {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(v) = reason.and_then(|r| HeaderValue::from_str(&r).ok()) {
        resp.headers_mut().insert(X_MZLB_REASON, v);
    }
    resp
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_forwarding_headers_are_replaced_not_trusted() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let (peer, local) = ("127.0.0.77:5000".parse().unwrap(), "127.0.10.2:8080".parse().unwrap());
        set_forwarded(&mut h, peer, local, "demo.test:8080", Scheme::Http, None);
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.77");
        assert_eq!(h[X_REQUEST_ID].len(), 32);
        assert_eq!(h[X_REAL_IP], "127.0.0.77");
        assert_eq!(h[X_FORWARDED_HOST], "demo.test:8080");
        assert_eq!(h[X_FORWARDED_PORT], "8080");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn trusted_proxies_extend_the_chain_and_name_the_real_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7, 10.1.1.1"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc"));
        set_forwarded(
            &mut h,
            "10.2.2.2:1".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            "x",
            Scheme::Http,
            Some(&trusted),
        );
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.7, 10.1.1.1, 10.2.2.2");
        assert_eq!(h[X_REAL_IP], "203.0.113.7");
        assert_eq!(h[X_FORWARDED_PROTO], "https", "kept from a trusted proxy");
        assert_eq!(h[X_REQUEST_ID], "abc", "passed through");
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed_but_never_framing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret, content-length, host"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert("x_kept", HeaderValue::from_static("1"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(header::HOST, HeaderValue::from_static("h"));
        let rules = forward::Rules {
            trusted: false,
            underscores: false,
        };
        retain_fields(&mut h, |name, listed| forward::request_field(name, listed, rules));
        let mut kept: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["content-length", "host", "x-kept"]);
    }
}
