//! What an Ingress's annotations do to a request beyond proxying it, in hyper's path (routes
//! that need it never stay on the fast path: [`crate::annotations::Policy::needs_hyper`]):
//!
//! - [`early`]: answers the ALB gives before anything else is checked, in ingress-nginx's phase
//!   order: `app-root` (302 for `/`, server level), then the CORS preflight (204), then
//!   `permanent-redirect` / `temporal-redirect` (location `return`). Plain-HTTP-to-HTTPS, the
//!   allow-list, limits and authentication come after, as there.
//! - [`finish`]: on the way back, a response whose status is one of `custom-http-errors` (the
//!   backend's, or one the ALB produced itself: 403, 413, 502, 503, 504..., as nginx's
//!   `error_page` catches both) is discarded and the `default-backend` Service is asked
//!   instead, with ingress-nginx's fields (`X-Code`, `X-Format`, `X-Original-URI`,
//!   `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`, `X-Request-ID`) for
//!   the path `/` (its `rewrite (.*) / break`); the client gets that answer, with its status
//!   (nginx's `error_page <code> = @custom_...`). Without a `default-backend`, the ALB answers
//!   with the code itself. Any other response of a CORS request gets the CORS fields, replacing
//!   the backend's (`more_set_headers`); an intercepted one does not (the named location that
//!   answers it has none).
//! - [`serving_backend`]: with a `default-backend`, a route whose Service has no ready endpoint
//!   is served by it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};

use crate::policy::cors::{self, Decision};
use crate::policy::{forward, redirect};
use crate::proxy::{Body, Scheme, Seen, empty, own_answer};
use crate::router::{Backend, InFlight, Route, RoutePolicy};
use crate::upstream::{Timeouts, Upstreams};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the response of a request will need: kept in [`Seen`] from [`early`] to [`finish`].
pub(crate) struct Plan {
    policy: Arc<RoutePolicy>,
    /// The route's backend, `namespace/service:port`.
    service: Arc<str>,
    /// CORS fields for the response; empty for a request that is not a CORS one.
    cors: Vec<(HeaderName, HeaderValue)>,
    /// For the error backend (only with custom errors): the request as the client sent it.
    ask: Option<Asked>,
}

struct Asked {
    method: Method,
    /// `$request_uri`: the target as the client sent it.
    original: String,
    query: Option<String>,
    host: String,
    client: IpAddr,
    fields: HeaderMap,
    /// The X-Request-ID the backend was sent, once known.
    request_id: Option<HeaderValue>,
}

/// The answer the route gives before anything else, if any; otherwise records what its
/// response needs in `seen`. A route that fails closed gets neither: it refuses everything.
#[allow(clippy::too_many_arguments)] // one request's context, passed once
pub(crate) fn early<B>(
    route: &Route<'_>,
    req: &Request<B>,
    path: &str,
    host: &str,
    scheme: Scheme,
    client: IpAddr,
    seen: &mut Seen,
) -> Option<Response<Body>> {
    let rp = route.policy;
    if !rp.unenforced.is_empty() {
        return None;
    }
    let p = &rp.policy;
    if let Some((code, location)) = redirect::app_root(&p.redirects, path, scheme.as_str(), host) {
        return Some(redirect_answer(code, &location));
    }
    let cors = match cors::decide(&p.cors, req.method().as_str(), req.headers().get(header::ORIGIN)) {
        Decision::Preflight(fields) => return Some(preflight(fields)),
        Decision::Fields(fields) => fields,
        Decision::None => Vec::new(),
    };
    let ask = (!p.errors.codes.is_empty()).then(|| Asked {
        method: req.method().clone(),
        original: req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        query: req.uri().query().map(str::to_owned),
        host: host.to_owned(),
        client,
        fields: req.headers().clone(),
        request_id: None,
    });
    if !cors.is_empty() || ask.is_some() {
        seen.intercept = Some(Box::new(Plan {
            policy: rp.clone(),
            service: route.backend.name.clone(),
            cors,
            ask,
        }));
    }
    redirect::redirect(&p.redirects).map(|(code, location)| redirect_answer(code, &location))
}

/// Notes the X-Request-ID the backend was sent, so the error backend gets the same one.
pub(crate) fn sent_upstream(seen: &mut Seen, fields: &HeaderMap) {
    if let Some(ask) = seen.intercept.as_mut().and_then(|plan| plan.ask.as_mut()) {
        ask.request_id = fields.get(X_REQUEST_ID).cloned();
    }
}

/// The backend that serves the route: the one chosen for it (its own or a canary), or, when
/// that has no ready endpoint, the `default-backend` annotation's.
pub(crate) fn serving_backend<'a>(route: &Route<'a>, chosen: &'a Arc<Backend>) -> &'a Arc<Backend> {
    match &route.policy.error_backend {
        Some(fallback) if chosen.endpoints.is_empty() => fallback,
        _ => chosen,
    }
}

/// The response that goes back to the client for `resp` (see the module's documentation).
pub(crate) async fn finish(resp: Response<Body>, seen: &mut Seen, upstreams: &Upstreams) -> Response<Body> {
    let Some(plan) = seen.intercept.take() else {
        return resp;
    };
    let status = resp.status();
    let codes = &plan.policy.policy.errors.codes;
    if let Some(ask) = &plan.ask
        && codes.binary_search(&status.as_u16()).is_ok()
    {
        // A connection we must not reuse (a body we did not read) stays one.
        let close = resp.headers().get(header::CONNECTION).is_some_and(|v| v == "close");
        drop(resp);
        let mut answer = ask_error_backend(&plan, ask, status, upstreams).await;
        if close {
            answer
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return answer;
    }
    let mut resp = resp;
    for (name, value) in plan.cors {
        resp.headers_mut().insert(name, value);
    }
    resp
}

/// Asks the `default-backend` for the error page of `status`; without one, answers `status`.
async fn ask_error_backend(plan: &Plan, ask: &Asked, status: StatusCode, upstreams: &Upstreams) -> Response<Body> {
    let reason = |s: StatusCode| s.canonical_reason().unwrap_or("error");
    let Some(backend) = &plan.policy.error_backend else {
        return own_answer(status, reason(status), false, None);
    };
    let Some(index) = backend.pick() else {
        tracing::warn!(backend = %backend.name, "default-backend has no ready endpoint for a custom error");
        return own_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            reason(StatusCode::SERVICE_UNAVAILABLE),
            false,
            None,
        );
    };
    let mut in_flight = InFlight::new(backend, index);
    let endpoint = backend.endpoints[index];
    let target = match &ask.query {
        Some(q) => format!("/?{q}"),
        None => "/".to_owned(),
    };
    let mut req = Request::new(empty());
    *req.method_mut() = ask.method.clone();
    *req.uri_mut() = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = error_fields(plan, ask, status);
    let p = &plan.policy.policy;
    let timeouts = Timeouts {
        connect: p.connect_timeout,
        send: p.send_timeout,
        read: p.read_timeout,
    };
    let started = Instant::now();
    match upstreams.send(endpoint, None, req, timeouts, None).await {
        Ok(resp) => {
            in_flight.finished(Some(started.elapsed()));
            let (mut parts, body) = resp.into_parts();
            let listed: Vec<Vec<u8>> = parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| forward::connection_tokens(v.as_bytes()).map(<[u8]>::to_vec))
                .collect();
            let listed: Vec<&[u8]> = listed.iter().map(Vec::as_slice).collect();
            let dropped: Vec<HeaderName> = parts
                .headers
                .keys()
                .filter(|name| !forward::response_field(name.as_str().as_bytes(), &listed))
                .cloned()
                .collect();
            for name in dropped {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, body)
        }
        Err(error) => {
            in_flight.finished(None);
            tracing::warn!(backend = %backend.name, %endpoint, %error, "default-backend failed to answer a custom error");
            let status = if error.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            own_answer(status, reason(status), false, None)
        }
    }
}

/// The error backend's request fields: the client's end-to-end fields, `Host` as the client
/// sent it, `X-Forwarded-For` the client (the template's), and ingress-nginx's `X-*` fields.
fn error_fields(plan: &Plan, ask: &Asked, status: StatusCode) -> HeaderMap {
    let mut h = ask.fields.clone();
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| forward::connection_tokens(v.as_bytes()))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
    for name in listed {
        h.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
        "x-real-ip",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "forwarded",
    ] {
        h.remove(name);
    }
    let text = |s: &str| HeaderValue::from_str(s).ok();
    let set = |h: &mut HeaderMap, name: &'static str, value: Option<HeaderValue>| match value {
        Some(v) => {
            h.insert(HeaderName::from_static(name), v);
        }
        None => {
            h.remove(name);
        }
    };
    let (namespace, ingress) = plan
        .policy
        .ingress
        .split_once('/')
        .unwrap_or(("", &plan.policy.ingress));
    // `namespace/service:port`, perhaps with ` (unresolved)`: names have neither `/` nor `:`.
    let service = plan.service.split(' ').next().unwrap_or_default();
    let service = service.split_once('/').map_or(service, |(_, s)| s);
    let (service, port) = service.split_once(':').unwrap_or((service, ""));
    let accept = ask.fields.get(header::ACCEPT).cloned();
    set(&mut h, "host", text(&ask.host));
    set(&mut h, "x-code", Some(HeaderValue::from(status.as_u16())));
    set(&mut h, "x-format", accept);
    set(&mut h, "x-original-uri", text(&ask.original));
    set(&mut h, "x-namespace", text(namespace));
    set(&mut h, "x-ingress-name", text(ingress));
    set(&mut h, "x-service-name", text(service));
    set(&mut h, "x-service-port", text(port));
    let id = ask
        .request_id
        .clone()
        .or_else(|| ask.fields.get(X_REQUEST_ID).cloned())
        .unwrap_or_else(|| {
            HeaderValue::from_bytes(&crate::proxy::request_id()).expect("hex digits are a valid header value")
        });
    set(&mut h, "x-request-id", Some(id));
    set(&mut h, "x-forwarded-for", text(&ask.client.to_string()));
    h
}

/// `return <code> <url>` of nginx, with an empty body.
fn redirect_answer(code: StatusCode, location: &str) -> Response<Body> {
    // Validated when parsed (URL bytes only); the host is the request's, checked by then.
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    Response::builder()
        .status(code)
        .header(header::LOCATION, location)
        .body(crate::proxy::full(""))
        .expect("static response parts are valid")
}

/// The CORS preflight answer: 204 with the fields and nothing else.
fn preflight(fields: Vec<(HeaderName, HeaderValue)>) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut().extend(fields);
    resp
}

/// The `default-backend` annotation's Service as an Ingress backend: its first port, as
/// ingress-nginx takes it. `None` if the Service or its ports are missing.
pub(crate) fn first_port(
    objects: &crate::objects::Objects,
    namespace: &str,
    service: &str,
) -> Option<k8s_openapi::api::networking::v1::IngressBackend> {
    use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};
    let svc = objects
        .services
        .iter()
        .find(|s| s.metadata.namespace.as_deref() == Some(namespace) && s.metadata.name.as_deref() == Some(service))?;
    let port = svc.spec.as_ref()?.ports.as_ref()?.first()?.port;
    Some(IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_owned(),
            port: Some(ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        }),
        resource: None,
    })
}
