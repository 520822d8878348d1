//! Authentication on hyper's path, for Ingresses with `auth-type: basic` or `auth-url`
//! (`crate::annotations::auth` parses them). The table holds each Ingress's compiled
//! [`RouteAuth`] (the basic-auth users resolved from their Secret when the table is built);
//! what changes per request (the auth-answer cache, credentials already verified) lives in
//! [`Runtime`], kept in the state store across tables.
//!
//! [`check`] runs after admission: it either lets the request through with a [`Granted`] (fields
//! for the upstream request, cookies for the response), or answers it itself (401, 403, 302 to
//! the signin page, 500 when the auth service fails, 503 when verifications are saturated).

pub(crate) mod basic;
pub(crate) mod cache;
pub(crate) mod external;
pub(crate) mod htpasswd;
pub mod template;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;

use crate::annotations::auth::{Auth, External};
use crate::objects::Objects;
use crate::proxy::{Body, Scheme, full};
use crate::router::Route;

/// `allow-cross-namespace-resources`: ingress-nginx's default since v1.12 is `false`, so an
/// `auth-secret` in another namespace than the Ingress's is refused (the Ingress answers 503).
pub const ALLOW_CROSS_NAMESPACE: bool = false;

/// One Ingress's authentication, compiled into the routing table.
#[derive(Debug)]
pub struct RouteAuth {
    basic: Option<basic::Basic>,
    external: Option<External>,
    /// `auth-proxy-set-headers`, resolved from the ConfigMap.
    proxy_set_headers: Vec<(HeaderName, crate::snippet::Template)>,
    runtime: Arc<Runtime>,
}

/// Runtime state of one Ingress's authentication, outside the tables.
#[derive(Debug)]
pub struct Runtime {
    basic: basic::BasicState,
    answers: cache::Bounded<Cached>,
}

/// Auth answers kept per Ingress at most.
const ANSWERS_CAPACITY: usize = 4096;

impl Default for Runtime {
    fn default() -> Self {
        Self {
            basic: basic::BasicState::default(),
            answers: cache::Bounded::new(ANSWERS_CAPACITY),
        }
    }
}

/// An auth answer kept for `auth-cache-duration`.
#[derive(Clone, Debug)]
struct Cached {
    status: StatusCode,
    headers: HeaderMap,
}

/// Compiles an Ingress's authentication: resolves the basic-auth Secret and the
/// `auth-proxy-set-headers` ConfigMap (`Err` says why one cannot be used: the Ingress then
/// fails closed). `runtime` gives the state kept across tables
/// for this Ingress.
pub fn compile(
    objects: &Objects,
    namespace: &str,
    auth: &Auth,
    runtime: impl FnOnce() -> Arc<Runtime>,
) -> Result<Option<Arc<RouteAuth>>, String> {
    if auth.basic.is_none() && auth.external.is_none() {
        return Ok(None);
    }
    let basic = match &auth.basic {
        None => None,
        Some(b) => {
            let ns = b.namespace.as_deref().unwrap_or(namespace);
            if ns != namespace && !ALLOW_CROSS_NAMESPACE {
                return Err(format!(
                    "auth-secret {ns}/{}: Secrets in another namespace than the Ingress's are not allowed \
                     (ingress-nginx's allow-cross-namespace-resources is false by default)",
                    b.secret
                ));
            }
            let secret = objects
                .secrets
                .iter()
                .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(&b.secret))
                .ok_or_else(|| format!("auth-secret {ns}/{}: Secret not found", b.secret))?;
            let credentials = credentials(secret, b.map).map_err(|e| format!("auth-secret {ns}/{}: {e}", b.secret))?;
            if !credentials.skipped.is_empty() {
                tracing::warn!(secret = %format!("{ns}/{}", b.secret), skipped = ?credentials.skipped,
                    "basic-auth entries skipped: not in a format mzlb reads; those users cannot log in");
            }
            Some(basic::Basic {
                realm: b.realm.clone(),
                credentials,
            })
        }
    };
    let proxy_set_headers = match auth.external.as_ref().and_then(|e| e.proxy_set_headers.as_ref()) {
        Some(reference) => crate::configmaps::auth_proxy_set_headers(objects, namespace, reference)?,
        None => Vec::new(),
    };
    Ok(Some(Arc::new(RouteAuth {
        basic,
        external: auth.external.clone(),
        proxy_set_headers,
        runtime: runtime(),
    })))
}

/// A digest of an Ingress's auth configuration: the key of its [`Runtime`] beside the
/// Ingress's name, so a changed configuration starts with empty caches.
pub fn digest(auth: &Auth) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    format!("{auth:?}").hash(&mut h);
    h.finish()
}

/// For the Kubernetes watch of `Opaque` Secrets: keeps of a Secret only what basic auth can
/// use, its password hashes (the key `auth` holding htpasswd lines, or keys whose values are
/// all hashes, as `auth-map` has them) and public CA material (`ca.crt`, `ca.crl`, for
/// `proxy-ssl-secret` and `auth-tls-secret`), and drops every other Secret's data, so the ALB
/// holds no one's other secrets.
pub fn retain_credentials(secret: &mut Secret) {
    secret.string_data = None;
    secret.metadata.annotations = None;
    secret.metadata.labels = None;
    let Some(data) = secret.data.as_mut() else { return };
    // CA certificates and revocation lists are public, and `proxy-ssl-secret` and
    // `auth-tls-secret` name Opaque Secrets holding them.
    let public = |k: &str| k == "ca.crt" || k == "ca.crl";
    let file = data
        .get("auth")
        .and_then(|v| std::str::from_utf8(&v.0).ok())
        .is_some_and(|text| !htpasswd::parse_file(text).users.is_empty());
    if file {
        data.retain(|k, _| k == "auth" || public(k));
        return;
    }
    if data.keys().any(|k| public(k)) {
        data.retain(|k, _| public(k));
        return;
    }
    let map = !data.is_empty()
        && data.values().all(|v| {
            std::str::from_utf8(&v.0)
                .ok()
                .map(str::trim)
                .and_then(htpasswd::Hash::parse)
                .is_some()
        });
    if !map {
        data.clear();
    }
}

fn credentials(secret: &Secret, map: bool) -> Result<htpasswd::Credentials, String> {
    let data = secret.data.as_ref();
    if map {
        let entries = data
            .into_iter()
            .flatten()
            .map(|(user, value)| (user.as_str(), value.0.as_slice()));
        return Ok(htpasswd::parse_map(entries));
    }
    let auth = data
        .and_then(|d| d.get("auth"))
        .ok_or("the Secret has no key `auth` (auth-secret-type auth-file)")?;
    let text = std::str::from_utf8(&auth.0).map_err(|_| "key `auth` is not UTF-8 text")?;
    Ok(htpasswd::parse_file(text))
}

/// What a request that passed authentication carries on.
#[derive(Debug, Default)]
pub struct Granted {
    /// Set on the upstream request, replacing the client's; no value removes the field.
    upstream: Vec<(HeaderName, Vec<HeaderValue>)>,
    /// The auth answer's cookies, for the response.
    cookies: Vec<HeaderValue>,
    /// `auth-always-set-cookie`: whatever the status.
    always: bool,
}

impl Granted {
    /// Applies to the upstream request's fields, after the forwarding fields are set.
    pub fn apply_upstream(&self, headers: &mut HeaderMap) {
        for (name, values) in &self.upstream {
            headers.remove(name);
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
    }

    /// Adds the auth answer's cookies to the response, as nginx's `add_header Set-Cookie`:
    /// with 2xx and 3xx, or always with `auth-always-set-cookie`.
    pub fn apply_response(&self, status: StatusCode, headers: &mut HeaderMap) {
        if self.always || adds_headers(status) {
            for c in &self.cookies {
                headers.append(header::SET_COOKIE, c.clone());
            }
        }
    }
}

/// The statuses nginx's `add_header` (without `always`) applies to.
fn adds_headers(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// The request as authentication sees it.
pub struct Incoming<'a> {
    pub host: &'a str,
    pub client: IpAddr,
    pub local: SocketAddr,
    pub scheme: Scheme,
    /// `auth-tls-*`: the fields the backend (and the auth service) is told.
    pub client_cert: Option<&'a crate::client_cert::Fields>,
}

/// Authenticates a routed request. `Err` is the answer to send instead of proxying.
pub async fn check<B: hyper::body::Body>(
    route: &Route<'_>,
    req: &mut Request<B>,
    at: Incoming<'_>,
) -> Result<Granted, Response<Body>> {
    let Some(auth) = &route.policy.auth else {
        return Ok(Granted::default());
    };
    // An unread body must not be taken for the next request if we answer ourselves.
    let close = !req.body().is_end_stream();
    let mut granted = Granted::default();
    if let Some(b) = &auth.basic {
        match b.check(&auth.runtime.basic, req.headers()).await {
            basic::Verdict::Allowed => {
                // As ingress-nginx: `proxy_set_header Authorization ""`.
                granted.upstream.push((header::AUTHORIZATION, Vec::new()));
            }
            basic::Verdict::Denied => {
                let mut resp = answer(StatusCode::UNAUTHORIZED, close);
                if let Ok(v) = HeaderValue::from_str(&b.challenge()) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                return Err(resp);
            }
            basic::Verdict::Busy => return Err(answer(StatusCode::SERVICE_UNAVAILABLE, close)),
        }
    }
    let Some(ext) = &auth.external else {
        return Ok(granted);
    };
    // `$req_id`: the client's X-Request-ID, or a new one; the backend gets the same.
    let request_id = match req.headers().get("x-request-id") {
        Some(id) => id.clone(),
        None => {
            let id = HeaderValue::from_bytes(&crate::proxy::request_id()).expect("hex digits are a valid value");
            req.headers_mut().insert("x-request-id", id.clone());
            id
        }
    };
    let request_uri = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let http_host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(at.host)
        .to_owned();
    let host = bare_host(at.host);
    let method = req.method().as_str().to_owned();
    let original = external::Original {
        vars: template::Request {
            host: &host,
            http_host: &http_host,
            request_uri: &request_uri,
            scheme: at.scheme.as_str(),
            remote_addr: at.client,
            method: &method,
            server_port: at.local.port(),
            headers: req.headers(),
        },
        request_id: &request_id,
        client_cert: at.client_cert,
    };
    let policy = &route.policy.policy;
    let (status, headers) = match ask(
        ext,
        &auth.proxy_set_headers,
        &auth.runtime,
        &original,
        policy.connect_timeout,
        policy.read_timeout,
    )
    .await
    {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(ingress = %route.policy.ingress, %error, "auth subrequest failed: 500");
            return Err(answer(StatusCode::INTERNAL_SERVER_ERROR, close));
        }
    };
    let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    let with_cookies = |mut resp: Response<Body>, always: bool| {
        if always || adds_headers(resp.status()) {
            for c in &cookies {
                resp.headers_mut().append(header::SET_COOKIE, c.clone());
            }
        }
        resp
    };
    match status.as_u16() {
        200..=299 => {
            granted.upstream.extend(external::copied(ext, &headers));
            granted.cookies = cookies;
            granted.always = ext.always_set_cookie;
            Ok(granted)
        }
        401 => {
            if let Some(signin) = &ext.signin {
                let location = signin.expand(&original.vars);
                let Ok(location) = HeaderValue::from_str(&location) else {
                    return Err(answer(StatusCode::INTERNAL_SERVER_ERROR, close));
                };
                let mut resp = answer(StatusCode::FOUND, close);
                resp.headers_mut().insert(header::LOCATION, location);
                return Err(with_cookies(resp, ext.always_set_cookie));
            }
            let mut resp = answer(StatusCode::UNAUTHORIZED, close);
            // nginx's auth_request passes the auth service's challenge on.
            for v in headers.get_all(header::WWW_AUTHENTICATE) {
                resp.headers_mut().append(header::WWW_AUTHENTICATE, v.clone());
            }
            Err(with_cookies(resp, ext.always_set_cookie))
        }
        403 => Err(with_cookies(
            answer(StatusCode::FORBIDDEN, close),
            ext.always_set_cookie,
        )),
        other => {
            tracing::warn!(ingress = %route.policy.ingress, status = other, "auth service answered neither 2xx, 401 nor 403: 500");
            Err(with_cookies(
                answer(StatusCode::INTERNAL_SERVER_ERROR, close),
                ext.always_set_cookie,
            ))
        }
    }
}

/// The auth service's answer, from the cache when `auth-cache-key` allows.
async fn ask(
    ext: &External,
    sets: &[(HeaderName, crate::snippet::Template)],
    runtime: &Runtime,
    original: &external::Original<'_>,
    connect: Duration,
    read: Duration,
) -> Result<(StatusCode, HeaderMap), external::Failure> {
    let target = external::target(ext, original)?;
    let key = ext.cache.as_ref().map(|spec| {
        let k = spec.key.expand(&original.vars);
        cache::key(&[
            original.vars.host.as_bytes(),
            target.to_string().as_bytes(),
            k.as_bytes(),
        ])
    });
    if let Some(hit) = key.as_ref().and_then(|k| runtime.answers.get(k)) {
        return Ok((hit.status, hit.headers));
    }
    let fields = external::fields(ext, sets, &target, original)?;
    let method = match &ext.method {
        Some(m) => Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET),
        None => Method::GET,
    };
    static TLS: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();
    let tls = TLS.get_or_init(external::tls_connector);
    let answer = external::send(method, &target, fields, connect, read, tls).await?;
    if let (Some(key), Some(spec)) = (key, &ext.cache)
        && let Some(ttl) = cache_ttl(spec, &answer)
    {
        runtime.answers.insert(
            key,
            ttl,
            Cached {
                status: answer.status,
                headers: answer.headers.clone(),
            },
        );
    }
    Ok((answer.status, answer.headers))
}

/// How long nginx's proxy cache would keep this answer: never with Set-Cookie or
/// `Cache-Control: no-store/no-cache/private`; `max-age` wins over `auth-cache-duration`.
fn cache_ttl(spec: &crate::annotations::auth::CacheSpec, answer: &external::Answer) -> Option<Duration> {
    if answer.headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    let directives: Vec<String> = answer
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if directives
        .iter()
        .any(|d| d == "no-store" || d == "no-cache" || d == "private")
    {
        return None;
    }
    let max_age = directives
        .iter()
        .find_map(|d| d.strip_prefix("max-age=").and_then(|s| s.parse::<u64>().ok()));
    match max_age {
        Some(secs) => Some(Duration::from_secs(secs)).filter(|d| !d.is_zero()),
        None => spec.ttl(answer.status.as_u16()),
    }
}

/// nginx's `$host`: lower case, without port.
fn bare_host(host: &str) -> String {
    let without_port = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| h).trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    without_port.to_ascii_lowercase()
}

/// An answer of the authentication itself, with a short body naming the status.
fn answer(status: StatusCode, close: bool) -> Response<Body> {
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(format!("{}\n", status.canonical_reason().unwrap_or("error"))))
        .expect("static response parts are valid");
    if close {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::auth::{CacheCodes, CacheSpec};

    #[test]
    fn cookies_follow_add_header_rules() {
        let g = Granted {
            upstream: vec![],
            cookies: vec![HeaderValue::from_static("a=1"), HeaderValue::from_static("b=2")],
            always: false,
        };
        let mut h = HeaderMap::new();
        g.apply_response(StatusCode::OK, &mut h);
        assert_eq!(h.get_all(header::SET_COOKIE).iter().count(), 2);
        let mut h = HeaderMap::new();
        g.apply_response(StatusCode::NOT_FOUND, &mut h);
        assert!(h.is_empty(), "not with 404 unless always");
        let always = Granted { always: true, ..g };
        let mut h = HeaderMap::new();
        always.apply_response(StatusCode::NOT_FOUND, &mut h);
        assert_eq!(h.get_all(header::SET_COOKIE).iter().count(), 2);
    }

    #[test]
    fn upstream_fields_replace_the_clients() {
        let g = Granted {
            upstream: vec![
                (
                    HeaderName::from_static("x-user"),
                    vec![HeaderValue::from_static("alice")],
                ),
                (header::AUTHORIZATION, vec![]),
            ],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("admin"));
        h.append("x-user", HeaderValue::from_static("root"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        g.apply_upstream(&mut h);
        assert_eq!(h.get_all("x-user").iter().collect::<Vec<_>>(), ["alice"]);
        assert!(!h.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn cache_ttl_follows_nginx() {
        let spec = CacheSpec {
            key: template::Template::literal("k"),
            valid: vec![(CacheCodes::Some(vec![200, 401]), Duration::from_secs(60))],
        };
        let a = |status: u16, headers: &[(&str, &str)]| external::Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        };
        assert_eq!(cache_ttl(&spec, &a(200, &[])), Some(Duration::from_secs(60)));
        assert_eq!(cache_ttl(&spec, &a(403, &[])), None);
        assert_eq!(cache_ttl(&spec, &a(200, &[("set-cookie", "a=b")])), None);
        assert_eq!(cache_ttl(&spec, &a(200, &[("cache-control", "no-cache")])), None);
        assert_eq!(
            cache_ttl(&spec, &a(200, &[("cache-control", "Private, max-age=5")])),
            None
        );
        assert_eq!(
            cache_ttl(&spec, &a(200, &[("cache-control", "max-age=5")])),
            Some(Duration::from_secs(5))
        );
        assert_eq!(cache_ttl(&spec, &a(200, &[("cache-control", "max-age=0")])), None);
    }

    #[test]
    fn only_credentials_are_kept_of_opaque_secrets() {
        use k8s_openapi::ByteString;
        let secret = |pairs: &[(&str, &str)]| Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        let keys = |s: &Secret| {
            s.data
                .as_ref()
                .map(|d| d.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let sha = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
        let mut file = secret(&[("auth", &format!("alice:{sha}\n")), ("db-password", "hunter2")]);
        retain_credentials(&mut file);
        assert_eq!(keys(&file), ["auth"]);
        let mut map = secret(&[("alice", sha), ("bob", sha)]);
        retain_credentials(&mut map);
        assert_eq!(keys(&map), ["alice", "bob"]);
        // A CA is public: kept, and nothing else beside it.
        let mut ca = secret(&[
            ("ca.crt", "-----BEGIN CERTIFICATE-----"),
            ("tls.key", "private"),
            ("token", "abc"),
        ]);
        retain_credentials(&mut ca);
        assert_eq!(keys(&ca), ["ca.crt"]);
        for other in [
            secret(&[("password", "hunter2")]),
            secret(&[("alice", sha), ("token", "abc")]),
            secret(&[("auth", "not htpasswd")]),
        ] {
            let mut other = other;
            retain_credentials(&mut other);
            assert!(keys(&other).is_empty(), "{other:?}");
        }
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(bare_host("App.Test:8080"), "app.test");
        assert_eq!(bare_host("[::1]:80"), "::1");
        assert_eq!(bare_host("a.test"), "a.test");
    }
}
