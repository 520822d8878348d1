//! The routing table: Ingress rules compiled into an immutable lookup structure, with Kubernetes
//! `pathType` semantics and each Ingress's annotation policy. A new table is built on every
//! change and swapped in whole.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use regex::Regex;

use crate::annotations::{self, BalanceKind, Defaults, Policy};
use crate::balance::{RoundRobin, epoch_us, pick_ewma};
use crate::endpoints::{SERVICE_NAME_LABEL, ready_addresses};
use crate::error::{Error, Result};
use crate::objects::{Objects, key_of};
use crate::ratelimit::{ConcurrencyLimiter, RateLimiter};
use crate::state::{EndpointState, Store};
use crate::tls::TlsCerts;

/// Our IngressClass name unless configured otherwise.
pub const DEFAULT_INGRESS_CLASS: &str = "mzlb";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// Bounds the memory a user-supplied path regex may compile to.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One Service port and its ready endpoints.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs and errors.
    pub name: Arc<str>,
    pub endpoints: Vec<SocketAddr>,
    balance: BalanceKind,
    round_robin: RoundRobin,
    /// Each endpoint's passive health and latency figures, from the state store: kept by
    /// address across tables.
    states: Vec<Arc<EndpointState>>,
    /// How HTTPS to it is verified (`proxy-ssl-*`); `None`: ingress-nginx's unverified default.
    pub tls: Option<Arc<crate::backend_tls::BackendTls>>,
    /// The Service port's `appProtocol` is `kubernetes.io/h2c`: Gateway API routes speak
    /// HTTP/2 in clear to it (Ingresses say so with `backend-protocol` instead).
    pub(crate) h2c: bool,
}

/// Consecutive failures (connect errors, timeouts) that eject an endpoint...
const EJECT_AFTER: u32 = 3;
/// ...for this long.
const EJECT_FOR: Duration = Duration::from_secs(10);

impl Backend {
    fn new(name: String, endpoints: Vec<SocketAddr>, balance: BalanceKind, state: &Store) -> Self {
        let states = endpoints.iter().map(|&ep| state.endpoint(ep)).collect();
        Self {
            name: name.into(),
            endpoints,
            balance,
            round_robin: RoundRobin::default(),
            states,
            tls: None,
            h2c: false,
        }
    }

    fn raw_pick(&self) -> Option<usize> {
        match self.balance {
            BalanceKind::RoundRobin => self.round_robin.pick_index(self.endpoints.len()),
            BalanceKind::Ewma => pick_ewma(self.states.len(), |i| &self.states[i].ewma),
        }
    }

    fn ejected(&self, i: usize) -> bool {
        self.states[i].ejected_until.load(Ordering::Relaxed) > epoch_us()
    }

    /// The index of the endpoint to use, skipping ejected ones while any other is left;
    /// report back with [`Backend::finished`].
    pub fn pick(&self) -> Option<usize> {
        let first = self.raw_pick()?;
        if !self.ejected(first) {
            return Some(first);
        }
        self.release(first);
        for _ in 0..self.endpoints.len() {
            let i = self.raw_pick()?;
            if !self.ejected(i) {
                return Some(i);
            }
            self.release(i);
        }
        // Everything is ejected: trying one beats refusing outright.
        self.raw_pick()
    }

    /// Another endpoint than `failed`, for a retry.
    pub fn pick_other(&self, failed: usize) -> Option<usize> {
        let i = self.pick()?;
        if i != failed || self.endpoints.len() < 2 {
            return Some(i);
        }
        self.release(i);
        Some(self.take((i + 1) % self.endpoints.len()))
    }

    /// An endpoint chosen by other means (session affinity) is used: count it in flight.
    pub fn take(&self, index: usize) -> usize {
        if self.balance == BalanceKind::Ewma {
            self.states[index].ewma.started();
        }
        index
    }

    /// Undoes a pick that was not used.
    pub(crate) fn release(&self, index: usize) {
        if self.balance == BalanceKind::Ewma {
            self.states[index].ewma.cancel();
        }
    }

    /// Records the outcome of a request: `latency` for an answer, `None` for a failure.
    pub fn finished(&self, index: usize, latency: Option<Duration>) {
        let Some(h) = self.states.get(index) else { return };
        if self.balance == BalanceKind::Ewma {
            h.ewma.finished(latency);
        }
        if latency.is_some() {
            h.failures.store(0, Ordering::Relaxed);
        } else if h.failures.fetch_add(1, Ordering::Relaxed) + 1 >= EJECT_AFTER {
            h.failures.store(0, Ordering::Relaxed);
            h.ejected_until
                .store(epoch_us() + EJECT_FOR.as_micros() as u64, Ordering::Relaxed);
            tracing::warn!(backend = %self.name, endpoint = %self.endpoints[index], "endpoint ejected for {EJECT_FOR:?} after {EJECT_AFTER} failures in a row");
        }
    }
}

impl RoutePolicy {
    /// The same policy, refusing every request with `reason` (fail closed).
    fn refusing(&self, reason: &str) -> RoutePolicy {
        RoutePolicy {
            ingress: self.ingress.clone(),
            tls_hosts: self.tls_hosts.clone(),
            policy: self.policy.clone(),
            unenforced: vec![Arc::from(reason)],
            rate_limiter: self.rate_limiter.clone(),
            rpm_limiter: self.rpm_limiter.clone(),
            connection_limiter: self.connection_limiter.clone(),
            auth: self.auth.clone(),
            error_backend: self.error_backend.clone(),
            custom_headers: self.custom_headers.clone(),
        }
    }
}

/// One request's claim on an endpoint: counted in flight (EWMA) from the pick until
/// [`InFlight::finished`] reports the outcome, once. Dropped unreported (the client went away
/// mid-request, or the request was refused before it was sent) it gives the count back without
/// an outcome, so an endpoint's figures never drift with abandoned requests: they outlive the
/// routing table, in the state store.
pub(crate) struct InFlight<'b> {
    backend: &'b Backend,
    index: Option<usize>,
}

impl<'b> InFlight<'b> {
    pub(crate) fn new(backend: &'b Backend, index: usize) -> Self {
        Self {
            backend,
            index: Some(index),
        }
    }

    /// Reports the outcome: `latency` for an answer, `None` for a failure. Later calls do
    /// nothing.
    pub(crate) fn finished(&mut self, latency: Option<Duration>) {
        if let Some(index) = self.index.take() {
            self.backend.finished(index, latency);
        }
    }

    /// The request moves on to another endpoint (a retry), already picked and counted.
    pub(crate) fn moved(&mut self, index: usize) {
        self.index = Some(index);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.index.take() {
            self.backend.release(index);
        }
    }
}

/// An Ingress's policy and the state that goes with it.
#[derive(Clone, Debug)]
pub struct RoutePolicy {
    /// `namespace/name` of the Ingress, for logs.
    pub ingress: Arc<str>,
    /// Hosts this Ingress has TLS for (lower case; `*.x` wildcards), for ssl-redirect.
    pub tls_hosts: Vec<String>,
    pub policy: Policy,
    /// Annotations that make this Ingress fail closed: every request to its routes gets 503.
    pub unenforced: Vec<Arc<str>>,
    /// From the state store: shared with the tables before and after this one.
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// `limit-rpm`'s, beside `limit-rps`'s.
    pub rpm_limiter: Option<Arc<RateLimiter>>,
    pub connection_limiter: Option<Arc<ConcurrencyLimiter>>,
    /// `auth-type: basic` / `auth-url`, compiled (the basic-auth Secret resolved).
    pub auth: Option<Arc<crate::auth::RouteAuth>>,
    /// The `default-backend` annotation's Service: custom errors, and requests whose Service
    /// has no ready endpoint (`crate::intercept`).
    pub error_backend: Option<Arc<Backend>>,
    /// `custom-headers`, resolved from the ConfigMap: set on every response of these routes.
    pub custom_headers: Option<Arc<[(HeaderName, HeaderValue)]>>,
}

#[derive(Debug)]
enum Matcher {
    Exact,
    /// `Prefix`: element-wise, as Kubernetes defines it.
    Prefix,
    /// `ImplementationSpecific`: a plain string prefix, as ingress-nginx's `location /path`.
    /// Its users put protection on such paths expecting it to cover `/admin.json`,
    /// `/admin-panel` and `/admin;jsessionid=...` too; element-wise, those would fall to `/`.
    StringPrefix,
    /// `use-regex` / `rewrite-target`: case-insensitive, anchored at the start, as nginx's `~*`.
    Regex(Regex),
}

#[derive(Debug)]
struct PathRule {
    path: String,
    /// The pathType as written, which a canary must repeat to attach here.
    path_type: String,
    matcher: Matcher,
    backend: Arc<Backend>,
    policy: Arc<RoutePolicy>,
    /// The canary Ingress's backend attached to this rule, if any (the first one wins).
    canary: Option<Arc<CanaryRoute>>,
}

/// A canary Ingress's backend on a main Ingress's rule: the main's policy serves it; the
/// canary's own rules say which requests go to it, and its backend settings how.
#[derive(Debug)]
pub struct CanaryRoute {
    /// `namespace/name` of the canary Ingress, for logs and metrics.
    pub ingress: Arc<str>,
    pub backend: Arc<Backend>,
    pub rules: annotations::canary::Canary,
    /// The canary's own `upstream-hash-by`.
    pub hash_by: Option<crate::hash::HashBy>,
}

/// What a request was routed to.
pub struct Route<'a> {
    pub backend: &'a Arc<Backend>,
    pub policy: &'a Arc<RoutePolicy>,
    /// The path to send upstream when `rewrite-target` applies.
    pub rewritten: Option<String>,
    /// A canary that may take this request instead of `backend` (hyper's path decides).
    pub canary: Option<&'a Arc<CanaryRoute>>,
}

impl<'a> Route<'a> {
    /// The backend this request goes to, and the `upstream-hash-by` that picks its endpoint:
    /// the canary's when its rules choose it (balancer.lua's `route_to_alternative_balancer`),
    /// the main's otherwise. A request whose affinity cookie names an endpoint of either keeps
    /// to it.
    pub fn pick_backend(
        &self,
        headers: &HeaderMap,
        affinity: Option<&str>,
    ) -> (&'a Arc<Backend>, Option<&'a crate::hash::HashBy>) {
        let main = (self.backend, self.policy.policy.upstream.hash_by.as_ref());
        let Some(canary) = self.canary else { return main };
        let names = |b: &Backend, v: &str| b.endpoints.iter().any(|ep| crate::proxy::affinity_value(ep) == v);
        let to_canary = match affinity {
            Some(v) if names(self.backend, v) => false,
            Some(v) if names(&canary.backend, v) => true,
            _ => canary
                .rules
                .chooses(&Carrier(headers), |total| rand::random_range(1..=total)),
        };
        if to_canary {
            (&canary.backend, canary.hash_by.as_ref())
        } else {
            main
        }
    }
}

/// A request's fields, as the canary rules read them.
struct Carrier<'h>(&'h HeaderMap);

impl annotations::canary::Carries for Carrier<'_> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self
            .0
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        let first = values.next()?;
        Some(values.fold(first, |all, v| Cow::Owned(format!("{all}, {v}"))))
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        crate::proxy::cookie_in(self.0.get_all(hyper::header::COOKIE).iter().map(|v| v.as_bytes()), name)
    }
}

/// ingress-nginx's from-to-www redirect: 308 to the same scheme on `to`, the request URI kept
/// but for one trailing `/` (nginx.tmpl strips it, so `/` becomes nothing), and the port when
/// it is not the scheme's own.
pub fn www_redirect(to: &str, scheme: &str, port: u16, uri: &hyper::Uri) -> hyper::Response<crate::proxy::Body> {
    let request_uri = uri.path_and_query().map_or("/", |p| p.as_str());
    let request_uri = request_uri.strip_suffix('/').unwrap_or(request_uri);
    let port = match (scheme, port) {
        ("http", 80) | ("https", 443) => String::new(),
        (_, port) => format!(":{port}"),
    };
    let location = format!("{scheme}://{to}{port}{request_uri}");
    hyper::Response::builder()
        .status(hyper::StatusCode::PERMANENT_REDIRECT)
        .header(
            hyper::header::LOCATION,
            hyper::header::HeaderValue::from_str(&location).unwrap_or(hyper::header::HeaderValue::from_static("/")),
        )
        .body(crate::proxy::full(""))
        .expect("static response parts are valid")
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.path,
            Matcher::Prefix => {
                // Element-wise: `/foo` matches `/foo` and `/foo/bar` but not `/foobar`; a
                // trailing slash on the rule is ignored.
                let prefix = self.path.trim_end_matches('/');
                match path.strip_prefix(prefix) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
            Matcher::StringPrefix => path.starts_with(self.path.as_str()),
            Matcher::Regex(re) => re.is_match(path),
        }
    }

    fn route(&self, path: &str) -> Route<'_> {
        let rewritten = match (&self.matcher, &self.policy.policy.rewrite_target) {
            (Matcher::Regex(re), Some(target)) => re.captures(path).map(|caps| {
                let mut out = String::new();
                caps.expand(target, &mut out);
                out
            }),
            _ => None,
        };
        Route {
            backend: &self.backend,
            policy: &self.policy,
            rewritten,
            canary: self.canary.as_ref(),
        }
    }
}

#[derive(Debug, Default)]
struct HostRules {
    paths: Vec<PathRule>,
}

impl HostRules {
    /// Longest path first; at equal length Exact before the others, so the first match wins.
    fn sort(&mut self) {
        self.paths.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then_with(|| (!matches!(a.matcher, Matcher::Exact)).cmp(&!matches!(b.matcher, Matcher::Exact)))
        });
    }

    fn lookup(&self, path: &str) -> Option<Route<'_>> {
        self.paths.iter().find(|r| r.matches(path)).map(|r| r.route(path))
    }
}

/// Everything one zone ALB needs to route a request.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<String, HostRules>,
    /// `*.example.com` stored under `example.com`: matches exactly one more label.
    wildcard_hosts: HashMap<String, HostRules>,
    any_host: HostRules,
    /// `server-alias` hosts → the exact host whose rules serve them.
    aliases: HashMap<String, String>,
    default_backend: Option<(Arc<Backend>, Arc<RoutePolicy>)>,
    /// How many Ingress objects were compiled in, for logs.
    pub ingresses: usize,
    /// The cluster's `use-forwarded-headers`/`proxy-real-ip-cidr`: peers whose X-Forwarded-*
    /// fields are believed; `None`: the ALB's `--trusted-proxies`.
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    /// The cluster's `enable-underscores-in-headers`; `None`: the ALB's flag.
    pub underscores_in_headers: Option<bool>,
    /// `albhealth.<ingress subdomain>`: IBM's health-check host, answered by the ALB itself.
    pub health_host: Option<String>,
    /// Problems that did not stop the table: bad annotation values, bad path regexes,
    /// unusable TLS Secrets.
    pub warnings: Vec<String>,
    /// How each of our Ingresses fared.
    pub reports: Vec<IngressReport>,
    /// Certificates for TLS termination, by SNI host name.
    pub tls: TlsCerts,
    /// `ssl-passthrough` hosts (exact names, lower case): TLS for them is spliced, not
    /// terminated.
    pub passthrough: HashMap<String, crate::passthrough::Target>,
    /// `auth-tls-*`: hosts whose clients are asked for certificates.
    pub(crate) client_auth: crate::client_cert::Hosts,
    /// The cluster's `ssl-protocols` and `ssl-ciphers`.
    pub tls_policy: crate::tls::Policy,
    /// The cluster's `hsts*`: the Strict-Transport-Security field of every HTTPS answer.
    pub hsts: Option<hyper::header::HeaderValue>,
    /// Gateway API: the listeners of every Gateway of our class, and their routes.
    pub gateway: crate::gateway::Table,
    /// Session-ticket keys shared by the zone's replicas (`--session-ticket-secret`); `None`:
    /// each process seals tickets with its own keys.
    pub ticket_keys: Option<Arc<crate::tls::TicketKeys>>,
}

impl RouteTable {
    /// Every (Ingress, Service) pair a request can be counted under, as the metrics label
    /// them (`namespace/name` of each; both empty for requests no rule matched).
    pub(crate) fn label_pairs(&self) -> std::collections::HashSet<(Arc<str>, Arc<str>)> {
        let rules = self
            .exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .chain(std::iter::once(&self.any_host))
            .flat_map(|h| h.paths.iter().map(|p| (&p.policy, &p.backend)));
        rules
            .chain(self.default_backend.as_ref().map(|(b, p)| (p, b)))
            .map(|(policy, backend)| (policy.ingress.clone(), backend.name.clone()))
            .chain(self.gateway.label_pairs())
            .chain(std::iter::once((Arc::from(""), Arc::from(""))))
            .collect()
    }

    /// Whether a plain-HTTP request to `host` must be redirected to HTTPS.
    pub fn redirects_to_https(route: &Route<'_>, host: &str) -> bool {
        let p = &route.policy;
        let host = normalize_host(host);
        let covered = p.tls_hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(_, rest)| rest == parent),
            None => *h == *host,
        });
        p.policy.force_ssl_redirect || (p.policy.ssl_redirect && covered)
    }

    /// Whether this request is for the ALB itself: any request to `albhealth.<subdomain>`, the
    /// host reserved for health checks (IBM's convention; mzlb probes with it). No other host
    /// is answered by the ALB, so no tenant's path is ever shadowed.
    pub fn is_alb_health_check(&self, host: &str) -> bool {
        self.health_host.as_deref().is_some_and(|h| normalize_host(host) == h)
    }

    /// Whether any rule names exactly this host (lower case, no port).
    pub fn has_host(&self, host: &str) -> bool {
        self.exact_hosts.contains_key(host)
    }

    /// The client-certificate settings for `host` (any case, with or without port), also
    /// through a `server-alias`.
    pub(crate) fn client_auth_for(&self, host: &str) -> Option<&Arc<crate::client_cert::HostAuth>> {
        if self.client_auth.is_empty() {
            return None;
        }
        let host = normalize_host(host);
        let host = host.as_ref();
        // Resolved as `lookup` routes, so the settings checked are those of the Ingress that
        // serves the request: nginx's exact server name (host or alias) before a wildcard.
        if let Some(auth) = self.client_auth.exact(host) {
            return Some(auth);
        }
        if self.exact_hosts.contains_key(host) {
            return None;
        }
        if let Some(target) = self.aliases.get(host) {
            return self.client_auth.exact(target);
        }
        self.client_auth.wildcard(host)
    }

    /// Every Ingress rule: (host, pathType, path, Ingress, Service), hosts sorted; `*` for
    /// rules of any host, `(default backend)` for the default backend.
    pub fn ingress_rules(&self) -> Vec<IngressRuleLine> {
        let mut out = Vec::new();
        let hosts = (self.exact_hosts.iter().map(|(h, r)| (h.clone(), r)))
            .chain(self.wildcard_hosts.iter().map(|(h, r)| (format!("*.{h}"), r)))
            .chain(std::iter::once(("*".to_owned(), &self.any_host)));
        for (host, rules) in hosts {
            for rule in &rules.paths {
                let ingress = rule.policy.ingress.clone();
                out.push((
                    host.clone(),
                    rule.path_type.clone(),
                    rule.path.clone(),
                    ingress,
                    rule.backend.name.clone(),
                ));
            }
        }
        if let Some((backend, policy)) = &self.default_backend {
            out.push((
                "*".into(),
                "(default backend)".into(),
                String::new(),
                policy.ingress.clone(),
                backend.name.clone(),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| b.2.len().cmp(&a.2.len())));
        out
    }

    /// The route of an Ingress rule naming this very host (exactly, by alias or by wildcard),
    /// if one matches; not rules for any host, nor the default backend.
    pub(crate) fn lookup_host_rules(&self, host: &str, path: &str) -> Option<Route<'_>> {
        self.host_rules(host)?.lookup(path)
    }

    /// The rules of the most specific host that has any: exact, alias, then wildcard.
    fn host_rules(&self, host: &str) -> Option<&HostRules> {
        let host = normalize_host(host);
        self.exact_hosts
            .get(host.as_ref())
            .or_else(|| self.exact_hosts.get(self.aliases.get(host.as_ref())?))
            .or_else(|| {
                let (_, parent) = host.split_once('.')?;
                self.wildcard_hosts.get(parent)
            })
    }

    /// Finds the route for `host` (any case, with or without port) and `path`. As with
    /// ingress-nginx, the most specific host that has rules owns the request: its paths are
    /// tried, then the default backend.
    pub fn lookup(&self, host: &str, path: &str) -> Option<Route<'_>> {
        let rules = self.host_rules(host).unwrap_or(&self.any_host);
        rules.lookup(path).or_else(|| {
            self.default_backend.as_ref().map(|(backend, policy)| Route {
                backend,
                policy,
                rewritten: None,
                canary: None,
            })
        })
    }

    /// Compiles the Ingresses of `class` in `objects` for an ALB in `zone`. An Ingress that
    /// cannot be served (a missing Service, a bad pathType) fails the whole table: in
    /// standalone mode the manifest directory is one change, kept or rejected as a whole.
    /// Runtime state (limits, endpoint health) comes from `state`, shared with earlier tables.
    pub fn compile(objects: &Objects, class: &str, zone: &str, state: &Store) -> Result<Self> {
        Self::compile_with(objects, class, zone, &Defaults::default(), true, state)
    }

    /// Like [`compile`](Self::compile), but an Ingress that cannot be served is left out and
    /// reported, and the others are served: on a cluster every Ingress is its own change, and
    /// one tenant's mistake must not take down everybody's routes.
    pub fn compile_each(objects: &Objects, class: &str, zone: &str, state: &Store) -> Self {
        Self::compile_with(objects, class, zone, &Defaults::default(), false, state)
            .expect("lenient compilation reports instead of failing")
    }

    /// Compiles with a cluster's ingress-nginx settings (`spec.ingressNginx`); `strict` as
    /// [`compile`](Self::compile), otherwise as [`compile_each`](Self::compile_each).
    pub(crate) fn compile_with(
        objects: &Objects,
        class: &str,
        zone: &str,
        defaults: &Defaults,
        strict: bool,
        state: &Store,
    ) -> Result<Self> {
        let mut table = RouteTable {
            trusted_proxies: defaults.trusted_proxies.clone(),
            underscores_in_headers: defaults.underscores_in_headers,
            tls_policy: defaults.tls_policy.clone(),
            hsts: defaults
                .hsts
                .as_deref()
                .map(|v| hyper::header::HeaderValue::from_str(v).expect("digits and ASCII words")),
            ..RouteTable::default()
        };
        let class_is_default = objects.ingress_classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(class)
                && c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
        });
        let mut backends = BackendCache::new(objects, zone, state);
        let mut canaries = Vec::new();
        let mut extras = Vec::new();
        for ingress in &objects.ingresses {
            if !ingress_is_ours(ingress, class, class_is_default) {
                continue;
            }
            let mut report = IngressReport {
                namespace: ingress.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                name: ingress.metadata.name.clone().unwrap_or_default(),
                uid: ingress.metadata.uid.clone(),
                generation: ingress.metadata.generation,
                warnings: Vec::new(),
                rejected: None,
            };
            match stage(objects, ingress, defaults, &mut backends, state, &mut report.warnings) {
                Ok(mut staged) => {
                    if let Some(canary) = staged.canary.take() {
                        table.ingresses += 1;
                        canaries.push((canary, table.reports.len()));
                        table.reports.push(report);
                        continue;
                    }
                    if let Some(host_extras) = staged.host_extras.take() {
                        extras.push((host_extras, table.reports.len()));
                    }
                    match staged.unresolved.take() {
                        // A manifest directory is one change: refused whole.
                        Some(rejection) if strict => return Err(rejection.error),
                        Some(rejection) => {
                            report.rejected = Some(Problem {
                                reason: rejection.reason,
                                message: rejection.error.to_string(),
                            })
                        }
                        None => {}
                    }
                    table.ingresses += 1;
                    staged.install(&mut table);
                }
                Err(rejection) if strict => return Err(rejection.error),
                Err(rejection) => {
                    report.rejected = Some(Problem {
                        reason: rejection.reason,
                        message: rejection.error.to_string(),
                    })
                }
            }
            table.reports.push(report);
        }
        for (host_extras, report) in extras {
            let warnings = host_extras.install(&mut table);
            table.reports[report].warnings.extend(warnings);
        }
        for (canary, report) in canaries {
            let warnings = canary.attach(&mut table);
            table.reports[report].warnings.extend(warnings);
        }
        for report in &table.reports {
            table.warnings.extend(report.warnings.iter().map(|w| w.message.clone()));
        }
        // server-snippet belongs to the host: one Ingress's, for every path of the host.
        let order = crate::snippet::ingress_order(objects);
        let hosts = (table.exact_hosts.iter_mut().map(|(h, r)| (h.clone(), r)))
            .chain(table.wildcard_hosts.iter_mut().map(|(h, r)| (format!("*.{h}"), r)))
            .chain(std::iter::once(("_".to_owned(), &mut table.any_host)));
        for (host, rules) in hosts {
            let policies = rules.paths.iter_mut().map(|p| &mut p.policy);
            table
                .warnings
                .extend(crate::snippet::host_wide(&host, policies, &order));
        }
        for rules in table.exact_hosts.values_mut().chain(table.wildcard_hosts.values_mut()) {
            rules.sort();
        }
        table.any_host.sort();
        table.gateway = crate::gateway::compile::compile(objects, defaults, &mut backends);
        Ok(table)
    }
}

/// One Ingress rule, for listings: (host, pathType, path, Ingress, Service).
pub type IngressRuleLine = (String, String, String, Arc<str>, Arc<str>);

/// How one Ingress fared in a compilation: for logs, and on a cluster for its events.
#[derive(Clone, Debug)]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub generation: Option<i64>,
    /// Problems that left part of the Ingress out (a bad annotation value, path regex or TLS
    /// Secret); the rest is served.
    pub warnings: Vec<Problem>,
    /// Why the whole Ingress is not served (only from [`RouteTable::compile_each`]).
    pub rejected: Option<Problem>,
}

/// One problem with an Ingress: a `PascalCase` reason, as Kubernetes events have, and a
/// message naming the object, field and value.
#[derive(Clone, Debug)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn warning(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

/// Why an Ingress cannot be served at all.
struct Rejection {
    reason: &'static str,
    error: Error,
}

impl Rejection {
    fn new(reason: &'static str, error: Error) -> Self {
        Self { reason, error }
    }
}

/// Where a path rule goes in the table.
#[derive(Clone)]
enum HostSlot {
    Any,
    Exact(String),
    Wildcard(String),
}

/// One Ingress compiled but not yet in the table, so a rejected one leaves no trace.
#[derive(Default)]
struct Staged {
    default: Option<(Arc<Backend>, Arc<RoutePolicy>)>,
    rules: Vec<(HostSlot, PathRule)>,
    certs: Vec<(String, Arc<rustls::sign::CertifiedKey>)>,
    /// `ssl-passthrough` hosts and where their connections go.
    passthrough: Vec<(String, crate::passthrough::Target)>,
    /// `auth-tls-secret`: the Ingress's hosts and their client-certificate settings.
    client_auth: Vec<(String, Arc<crate::client_cert::HostAuth>)>,
    /// The first backend that could not be resolved (a missing Service or port): its paths are
    /// installed without endpoints, so they answer 503 instead of falling to another rule.
    unresolved: Option<Rejection>,
    /// A canary Ingress: attached to main Ingresses' rules once they are all in the table.
    canary: Option<StagedCanary>,
    /// `server-alias` / `from-to-www-redirect`: installed once every Ingress's hosts are known.
    host_extras: Option<HostExtras>,
}

impl Staged {
    fn install(self, table: &mut RouteTable) {
        if self.default.is_some() {
            table.default_backend = self.default;
        }
        for (slot, rule) in self.rules {
            let hosts = match slot {
                HostSlot::Any => &mut table.any_host,
                HostSlot::Exact(host) => table.exact_hosts.entry(host).or_default(),
                HostSlot::Wildcard(parent) => table.wildcard_hosts.entry(parent).or_default(),
            };
            hosts.paths.push(rule);
        }
        for (host, key) in self.certs {
            table.tls.insert(&host, key);
        }
        for (host, target) in self.passthrough {
            // The first Ingress to claim a host keeps it, as for certificates.
            table.passthrough.entry(host).or_insert(target);
        }
        for (host, auth) in self.client_auth {
            table.client_auth.insert(&host, auth);
        }
    }
}

/// Compiles one Ingress, collecting what only degrades it into `warnings`.
fn stage(
    objects: &Objects,
    ingress: &Ingress,
    defaults: &Defaults,
    backends: &mut BackendCache<'_>,
    state: &Store,
    warnings: &mut Vec<Problem>,
) -> std::result::Result<Staged, Rejection> {
    let mut staged = Staged::default();
    let what = objects.describe(&key_of("Ingress", &ingress.metadata, true));
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
    let (policy, mut findings) = annotations::parse_with(ingress.metadata.annotations.as_ref(), defaults);
    let is_canary = policy.canary_rules.enabled;
    if is_canary {
        findings = annotations::canary::on_canary(ingress.metadata.annotations.as_ref(), findings);
    }
    warnings.extend(
        findings
            .iter()
            .map(|f| Problem::warning(f.reason(), format!("{what}: {f}"))),
    );
    backends.service_upstream = policy.upstream.service_upstream;
    if is_canary {
        return stage_canary(ingress, policy, namespace, &what, backends, staged, warnings);
    }
    let tls_hosts = compile_tls(objects, ingress, namespace, &what, &mut staged, warnings);
    let (backend_tls, tls_refusal) = crate::backend_tls::for_ingress(objects, namespace, &policy.tls, &what, warnings);
    let name: Arc<str> = format!("{namespace}/{}", ingress.metadata.name.as_deref().unwrap_or_default()).into();
    let error_backend = policy.errors.default_backend.as_deref().and_then(|service| {
        let found = crate::intercept::first_port(objects, namespace, service).and_then(|r| {
            backends
                .get(namespace, &r, (policy.balance, None), &what, "default-backend")
                .ok()
        });
        if found.is_none() {
            let message = format!("{what}: default-backend: Service {namespace}/{service} not found; not used");
            warnings.push(Problem::warning("ServiceNotFound", message));
        }
        found
    });
    let mut unenforced: Vec<Arc<str>> = policy
        .unenforced
        .iter()
        .map(|k| Arc::from(format!("unenforced-annotation {k}")))
        .chain(tls_refusal)
        .collect();
    let runtime = || state.auth_runtime(&name, crate::auth::digest(&policy.auth));
    let auth = crate::auth::compile(objects, namespace, &policy.auth, runtime).unwrap_or_else(|e| {
        warnings.push(Problem::warning(
            "UnsupportedAnnotation",
            format!("{what}: {e}; the Ingress's routes answer 503"),
        ));
        unenforced.push(Arc::from("unusable-auth-reference"));
        None
    });
    let custom_headers = policy.custom_headers.as_ref().and_then(|reference| {
        let allowed = &defaults.allowed_response_headers;
        match crate::configmaps::custom_headers(objects, namespace, reference, allowed) {
            Ok(fields) => Some(Arc::from(fields)),
            Err(e) => {
                warnings.push(Problem::warning(
                    "UnsupportedAnnotation",
                    format!("{what}: {e}; the Ingress's routes answer 503"),
                ));
                unenforced.push(Arc::from("unusable-custom-headers"));
                None
            }
        }
    });
    let policy = Arc::new(RoutePolicy {
        tls_hosts,
        auth,
        unenforced,
        rate_limiter: policy.rate_limit.map(|spec| state.rate_limiter(&name, spec)),
        rpm_limiter: policy.rate_limit_rpm.map(|spec| state.rate_limiter(&name, spec)),
        connection_limiter: policy.connection_limit.map(|n| state.concurrency_limiter(&name, n)),
        error_backend,
        custom_headers,
        ingress: name,
        policy,
    });
    let balance = policy.policy.balance;
    let Some(spec) = &ingress.spec else { return Ok(staged) };
    let up = &policy.policy.upstream;
    if !up.aliases.is_empty() || up.from_to_www {
        staged.host_extras = Some(HostExtras {
            what: what.clone(),
            hosts: spec
                .rules
                .iter()
                .flatten()
                .filter_map(|r| r.host.as_deref().map(str::to_ascii_lowercase))
                .filter(|h| !h.is_empty() && !h.starts_with("*."))
                .collect(),
            policy: policy.clone(),
        });
    }
    if let Some(default) = &spec.default_backend {
        let backend = backends.resolve(
            namespace,
            default,
            (balance, backend_tls.as_ref()),
            &what,
            "spec.defaultBackend",
            &mut staged,
        )?;
        staged.default = Some((backend, policy.clone()));
    }
    for (r, rule) in spec.rules.iter().flatten().enumerate() {
        let slot = match rule.host.as_deref().map(str::to_ascii_lowercase) {
            None => HostSlot::Any,
            Some(host) if host.is_empty() => HostSlot::Any,
            Some(host) => match host.strip_prefix("*.") {
                Some(parent) => HostSlot::Wildcard(parent.to_owned()),
                None => HostSlot::Exact(host),
            },
        };
        let Some(http) = &rule.http else { continue };
        for (p, path) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{r}].http.paths[{p}]");
            let invalid = |field: String, message: String| {
                Rejection::new(
                    "InvalidIngress",
                    Error::Invalid {
                        object: what.clone(),
                        field,
                        message,
                    },
                )
            };
            let path_value = path.path.clone().unwrap_or_else(|| "/".into());
            if !path_value.starts_with('/') {
                return Err(invalid(
                    format!("{field}.path"),
                    format!("`{path_value}` must start with `/`"),
                ));
            }
            let matcher = match path.path_type.as_str() {
                _ if policy.policy.use_regex => {
                    let re = regex::RegexBuilder::new(&format!("^(?:{path_value})"))
                        .case_insensitive(true)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build();
                    match re {
                        Ok(re) => Matcher::Regex(re),
                        Err(e) => {
                            // Left out, its requests would fall to a less specific rule, perhaps
                            // without the protection this one has: the literal path answers 503.
                            warnings.push(Problem::warning(
                                "InvalidPathRegex",
                                format!(
                                    "{what}: {field}.path `{path_value}` is not a valid regular expression: {e}; \
                                     it answers 503"
                                ),
                            ));
                            let how = (balance, backend_tls.as_ref());
                            let backend =
                                backends.resolve(namespace, &path.backend, how, &what, &field, &mut staged)?;
                            let rule = PathRule {
                                path: path_value,
                                path_type: path.path_type.clone(),
                                matcher: Matcher::StringPrefix,
                                backend,
                                policy: Arc::new(policy.refusing("invalid-path-regex")),
                                canary: None,
                            };
                            staged.rules.push((slot.clone(), rule));
                            continue;
                        }
                    }
                }
                "Exact" => Matcher::Exact,
                "Prefix" => Matcher::Prefix,
                "ImplementationSpecific" => Matcher::StringPrefix,
                other => {
                    return Err(invalid(
                        format!("{field}.pathType"),
                        format!("`{other}` is not one of Exact, Prefix, ImplementationSpecific"),
                    ));
                }
            };
            let backend = backends.resolve(
                namespace,
                &path.backend,
                (balance, backend_tls.as_ref()),
                &what,
                &format!("{field}.backend"),
                &mut staged,
            )?;
            let rule = PathRule {
                path: path_value,
                path_type: path.path_type.clone(),
                matcher,
                backend,
                policy: policy.clone(),
                canary: None,
            };
            staged.rules.push((slot.clone(), rule));
        }
    }
    if policy.policy.tls.passthrough {
        stage_passthrough(&mut staged, spec, &policy, &what, warnings);
    }
    if let Some(settings) = &policy.policy.tls.client_auth {
        let (auth, problem) = crate::client_cert::HostAuth::new(objects, namespace, settings);
        if let Some(problem) = problem {
            let message = format!("{what}: {problem}; its hosts answer 503");
            warnings.push(Problem::warning("InvalidAuthTLSSecret", message));
        }
        let auth = Arc::new(auth);
        for host in spec.rules.iter().flatten().filter_map(|r| r.host.as_deref()) {
            if !host.is_empty() {
                staged.client_auth.push((host.to_owned(), auth.clone()));
            }
        }
    }
    Ok(staged)
}

/// The pass-through hosts of an Ingress with `ssl-passthrough: "true"`: each exact host's
/// connections go to the backend of its `/` rule (ingress-nginx's root location), or else to
/// the Ingress's default backend; with neither they are closed, never terminated here.
fn stage_passthrough(
    staged: &mut Staged,
    spec: &k8s_openapi::api::networking::v1::IngressSpec,
    policy: &RoutePolicy,
    what: &str,
    warnings: &mut Vec<Problem>,
) {
    for host in spec.rules.iter().flatten().filter_map(|r| r.host.as_deref()) {
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            continue;
        }
        if host.starts_with("*.") {
            warnings.push(Problem::warning(
                "UnsupportedAnnotation",
                format!("{what}: ssl-passthrough: wildcard host {host} is not passed through (as ingress-nginx, only exact SNI names are)"),
            ));
            continue;
        }
        let root = staged.rules.iter().find_map(|(slot, rule)| match slot {
            HostSlot::Exact(h) if *h == host && rule.path == "/" => Some(rule.backend.clone()),
            _ => None,
        });
        let backend = root.or_else(|| staged.default.as_ref().map(|(b, _)| b.clone()));
        if backend.is_none() {
            warnings.push(Problem::warning(
                "UnsupportedAnnotation",
                format!("{what}: ssl-passthrough: host {host} has no `/` rule and the Ingress no default backend; its TLS connections are closed"),
            ));
        }
        let target = crate::passthrough::Target {
            backend,
            connect_timeout: policy.policy.connect_timeout,
            ingress: policy.ingress.clone(),
        };
        staged.passthrough.push((host, target));
    }
}

/// Stages the certificates an Ingress's `spec.tls` names; returns the hosts covered. A
/// missing or broken Secret is a warning: those hosts get the default certificate.
/// A canary Ingress's backends, one per (host, path, pathType), waiting for the main rules.
struct StagedCanary {
    what: String,
    ingress: Arc<str>,
    rules: annotations::canary::Canary,
    hash_by: Option<crate::hash::HashBy>,
    paths: Vec<(HostSlot, String, String, Arc<Backend>)>,
}

/// Stages a canary Ingress: its backends, to attach to the main rules with the same host, path
/// and pathType (ingress-nginx's `mergeAlternativeBackends`).
fn stage_canary(
    ingress: &Ingress,
    policy: Policy,
    namespace: &str,
    what: &str,
    backends: &mut BackendCache<'_>,
    mut staged: Staged,
    warnings: &mut Vec<Problem>,
) -> std::result::Result<Staged, Rejection> {
    let mut canary = StagedCanary {
        what: what.to_owned(),
        ingress: format!("{namespace}/{}", ingress.metadata.name.as_deref().unwrap_or_default()).into(),
        rules: policy.canary_rules.clone(),
        hash_by: policy.upstream.hash_by.clone(),
        paths: Vec::new(),
    };
    let balance = policy.balance;
    let Some(spec) = &ingress.spec else {
        staged.canary = Some(canary);
        return Ok(staged);
    };
    if spec.default_backend.is_some() {
        warnings.push(Problem::warning(
            "CanaryDefaultBackendIgnored",
            format!("{what}: spec.defaultBackend of a canary Ingress is not supported by mzlb; ignored"),
        ));
    }
    for (r, rule) in spec.rules.iter().flatten().enumerate() {
        let slot = match rule.host.as_deref().map(str::to_ascii_lowercase) {
            None => HostSlot::Any,
            Some(host) if host.is_empty() => HostSlot::Any,
            Some(host) => match host.strip_prefix("*.") {
                Some(parent) => HostSlot::Wildcard(parent.to_owned()),
                None => HostSlot::Exact(host),
            },
        };
        let Some(http) = &rule.http else { continue };
        for (p, path) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{r}].http.paths[{p}].backend");
            let backend = backends.resolve(namespace, &path.backend, (balance, None), what, &field, &mut staged)?;
            let path_value = path.path.clone().unwrap_or_else(|| "/".into());
            canary
                .paths
                .push((slot.clone(), path_value, path.path_type.clone(), backend));
        }
    }
    // A canary whose Service is missing is not attached (ingress-nginx deletes it): the main
    // Ingress keeps all the traffic, and the problem is reported.
    if let Some(rejection) = staged.unresolved.take() {
        warnings.push(Problem::warning(
            rejection.reason,
            format!("{}; the canary is not attached", rejection.error),
        ));
        canary.paths.clear();
    }
    staged.canary = Some(canary);
    Ok(staged)
}

impl StagedCanary {
    /// Attaches the canary to every main rule with its host, path and pathType; reports those
    /// it found none for (ignored, as ingress-nginx does).
    fn attach(self, table: &mut RouteTable) -> Vec<Problem> {
        let mut warnings = Vec::new();
        for (slot, path, path_type, backend) in self.paths {
            let rules = match &slot {
                HostSlot::Any => Some(&mut table.any_host),
                HostSlot::Exact(host) => table.exact_hosts.get_mut(host),
                HostSlot::Wildcard(parent) => table.wildcard_hosts.get_mut(parent),
            };
            let route = Arc::new(CanaryRoute {
                ingress: self.ingress.clone(),
                backend: backend.clone(),
                rules: self.rules.clone(),
                hash_by: self.hash_by.clone(),
            });
            let mut attached = false;
            for rule in rules.into_iter().flat_map(|r| r.paths.iter_mut()) {
                if rule.path != path
                    || rule.path_type != path_type
                    || rule.policy.policy.upstream.www_redirect_to.is_some()
                {
                    continue;
                }
                if rule.canary.is_some() {
                    attached = true; // an earlier canary has it: ingress-nginx uses the first
                } else if rule.backend.name != backend.name {
                    rule.canary = Some(route.clone());
                    attached = true;
                }
            }
            if !attached {
                let host = match &slot {
                    HostSlot::Any => "*".to_owned(),
                    HostSlot::Exact(h) => h.clone(),
                    HostSlot::Wildcard(p) => format!("*.{p}"),
                };
                warnings.push(Problem::warning(
                    "CanaryWithoutMain",
                    format!(
                        "{}: no main Ingress serves host {host} path {path} ({path_type}) with another backend; \
                         this canary path is ignored",
                        self.what
                    ),
                ));
            }
        }
        warnings
    }
}

/// `server-alias` and `from-to-www-redirect` of one Ingress.
struct HostExtras {
    what: String,
    /// The Ingress's exact rule hosts, lower case.
    hosts: Vec<String>,
    policy: Arc<RoutePolicy>,
}

impl HostExtras {
    /// Installs the aliases and www redirects that no rule or earlier Ingress claims, as
    /// ingress-nginx: a host some rule names is served by that rule, never by an alias or a
    /// redirect.
    fn install(self, table: &mut RouteTable) -> Vec<Problem> {
        let mut warnings = Vec::new();
        let up = &self.policy.policy.upstream;
        let warn = |warnings: &mut Vec<Problem>, message: String| {
            warnings.push(Problem::warning("HostConflict", format!("{}: {message}", self.what)));
        };
        if let Some(first) = self.hosts.first() {
            for alias in &up.aliases {
                if table.exact_hosts.contains_key(alias) {
                    warn(
                        &mut warnings,
                        format!("server-alias {alias} is a host some rule names; the alias is ignored"),
                    );
                } else if let Some(owner) = table.aliases.get(alias) {
                    warn(
                        &mut warnings,
                        format!("server-alias {alias} is already an alias of {owner}; ignored"),
                    );
                } else {
                    table.aliases.insert(alias.clone(), first.clone());
                }
            }
        } else if !up.aliases.is_empty() {
            warn(
                &mut warnings,
                "server-alias needs a rule with a host; ignored".to_owned(),
            );
        }
        if up.from_to_www {
            for host in &self.hosts {
                let other = match host.strip_prefix("www.") {
                    Some(bare) => bare.to_owned(),
                    None => format!("www.{host}"),
                };
                if table.exact_hosts.contains_key(&other) || table.aliases.contains_key(&other) {
                    continue; // served by its own rules: no redirect, as ingress-nginx
                }
                let backend = table
                    .exact_hosts
                    .get(host)
                    .and_then(|r| r.paths.first())
                    .map(|r| r.backend.clone());
                let Some(backend) = backend else { continue };
                let mut policy = self.policy.policy.clone();
                policy.upstream.www_redirect_to = Some(host.clone());
                // ingress-nginx's redirect server block asks for no client certificate.
                policy.tls.client_auth = None;
                let route = RoutePolicy {
                    ingress: self.policy.ingress.clone(),
                    tls_hosts: self.policy.tls_hosts.clone(),
                    policy,
                    unenforced: self.policy.unenforced.clone(),
                    rate_limiter: self.policy.rate_limiter.clone(),
                    rpm_limiter: self.policy.rpm_limiter.clone(),
                    connection_limiter: self.policy.connection_limiter.clone(),
                    error_backend: self.policy.error_backend.clone(),
                    auth: self.policy.auth.clone(),
                    custom_headers: self.policy.custom_headers.clone(),
                };
                let rule = PathRule {
                    path: "/".into(),
                    path_type: "Prefix".into(),
                    matcher: Matcher::StringPrefix,
                    backend,
                    policy: Arc::new(route),
                    canary: None,
                };
                table.exact_hosts.entry(other).or_default().paths.push(rule);
            }
        }
        warnings
    }
}

fn compile_tls(
    objects: &Objects,
    ingress: &Ingress,
    namespace: &str,
    what: &str,
    staged: &mut Staged,
    warnings: &mut Vec<Problem>,
) -> Vec<String> {
    let mut covered = Vec::new();
    let Some(spec) = &ingress.spec else { return covered };
    let rule_hosts: Vec<String> = spec.rules.iter().flatten().filter_map(|r| r.host.clone()).collect();
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let hosts: Vec<String> = match &tls.hosts {
            Some(h) if !h.is_empty() => h.clone(),
            _ => rule_hosts.clone(),
        };
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        covered.extend(hosts.iter().cloned());
        let Some(secret_name) = &tls.secret_name else { continue };
        let secret = objects.secrets.iter().find(|s| {
            s.metadata.name.as_ref() == Some(secret_name) && s.metadata.namespace.as_deref() == Some(namespace)
        });
        let key = match secret {
            None => Err(("SecretNotFound", format!("Secret {namespace}/{secret_name} not found"))),
            Some(secret) => crate::tls::certified_key(secret)
                .map_err(|e| ("InvalidTLSSecret", format!("Secret {namespace}/{secret_name}: {e}"))),
        };
        match key {
            Ok(key) => hosts.iter().for_each(|h| staged.certs.push((h.clone(), key.clone()))),
            Err((reason, e)) => warnings.push(Problem::warning(
                reason,
                format!("{what}: spec.tls[{i}]: {e}; the default certificate is used"),
            )),
        }
    }
    covered
}

fn ingress_is_ours(ingress: &Ingress, class: &str, class_is_default: bool) -> bool {
    let named = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        });
    match named {
        Some(name) => name == class,
        None => class_is_default,
    }
}

/// Lower case, no port, no trailing dot: the form host rules are stored in. Borrowed when the
/// host is already lower case, as nearly every client sends it: no allocation per request.
pub(crate) fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| h).trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let bare = without_port.trim_end_matches('.');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}

/// Resolves Ingress backends to Services and endpoints, sharing one `Backend` (and so one
/// balancer) between every rule that names the same Service port with the same balancing.
pub(crate) struct BackendCache<'a> {
    /// `service-upstream` of the Ingress being staged: the Service's cluster IP and port
    /// instead of its endpoints.
    service_upstream: bool,
    /// Services by (namespace, name), and EndpointSlices by (namespace, Service name): built
    /// once per compile, so resolving N backends is not N scans of every object.
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    zone: &'a str,
    state: &'a Store,
    built: HashMap<(String, BalanceKind, Option<u64>), Arc<Backend>>,
    /// Gateway API BackendTLSPolicies by the Service (namespace, name) they target: the TLS
    /// material to verify it with, or why the policy cannot be used.
    pub(crate) backend_tls: HashMap<(String, String), std::result::Result<Arc<crate::backend_tls::Material>, String>>,
}

impl<'a> BackendCache<'a> {
    /// [`get`](Self::get), except that a Service or port that is not found gives a backend
    /// without endpoints (503) and is remembered in `staged`; only malformed references fail.
    fn resolve(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        (balance, tls): (BalanceKind, Option<&Arc<crate::backend_tls::Material>>),
        what: &str,
        field: &str,
        staged: &mut Staged,
    ) -> std::result::Result<Arc<Backend>, Rejection> {
        match self.get(namespace, backend, (balance, tls), what, field) {
            Ok(backend) => Ok(backend),
            Err(rejection) if rejection.reason == "InvalidIngress" => Err(rejection),
            Err(rejection) => {
                let name = backend.service.as_ref().map_or("", |s| s.name.as_str());
                let unresolved = Backend::new(
                    format!("{namespace}/{name} (unresolved)"),
                    Vec::new(),
                    balance,
                    self.state,
                );
                staged.unresolved.get_or_insert(rejection);
                Ok(Arc::new(unresolved))
            }
        }
    }

    /// A Gateway API backendRef's Service port (round robin, plain HTTP), or why not.
    pub(crate) fn get_gateway(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        field: &str,
    ) -> std::result::Result<Arc<Backend>, (&'static str, String)> {
        let service = backend.service.as_ref().map_or("", |s| s.name.as_str());
        let tls = match self.backend_tls.get(&(namespace.to_owned(), service.to_owned())) {
            None => None,
            Some(Ok(material)) => Some(material.clone()),
            // Never plain text to a backend its policy says is TLS.
            Some(Err(why)) => return Err(("InvalidBackendTLSPolicy", format!("{field}: {why}"))),
        };
        self.get(
            namespace,
            backend,
            (BalanceKind::RoundRobin, tls.as_ref()),
            field,
            field,
        )
        .map_err(|rejection| ("BackendNotFound", rejection.error.to_string()))
    }

    fn new(objects: &'a Objects, zone: &'a str, state: &'a Store) -> Self {
        let services = objects
            .services
            .iter()
            .filter_map(|s| Some(((s.metadata.namespace.as_deref()?, s.metadata.name.as_deref()?), &**s)))
            .collect();
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in &objects.endpoint_slices {
            let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(service)) = (slice.metadata.namespace.as_deref(), service) {
                slices.entry((ns, service.as_str())).or_default().push(slice);
            }
        }
        Self {
            service_upstream: false,
            services,
            slices,
            zone,
            state,
            built: HashMap::new(),
            backend_tls: HashMap::new(),
        }
    }

    fn get(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        (balance, tls): (BalanceKind, Option<&Arc<crate::backend_tls::Material>>),
        what: &str,
        field: &str,
    ) -> std::result::Result<Arc<Backend>, Rejection> {
        let invalid = |reason: &'static str, field: String, message: String| {
            Rejection::new(
                reason,
                Error::Invalid {
                    object: what.to_owned(),
                    field,
                    message,
                },
            )
        };
        let Some(svc_ref) = &backend.service else {
            return Err(invalid(
                "InvalidIngress",
                format!("{field}.service"),
                "only Service backends are supported".into(),
            ));
        };
        let service = *self.services.get(&(namespace, svc_ref.name.as_str())).ok_or_else(|| {
            invalid(
                "ServiceNotFound",
                format!("{field}.service.name"),
                format!("Service {namespace}/{} not found", svc_ref.name),
            )
        })?;
        let port_ref = svc_ref.port.as_ref();
        let service_port = find_service_port(service, port_ref).ok_or_else(|| {
            let wanted = port_ref
                .and_then(|p| p.name.clone().or_else(|| p.number.map(|n| n.to_string())))
                .unwrap_or_else(|| "<none>".into());
            invalid(
                "ServicePortNotFound",
                format!("{field}.service.port"),
                format!("Service {namespace}/{} has no port {wanted}", svc_ref.name),
            )
        })?;
        let mut name = format!("{namespace}/{}:{}", svc_ref.name, service_port.port);
        let cluster_ip = service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .filter(|_| self.service_upstream);
        if cluster_ip.is_some() {
            name.push_str(" (service-upstream)");
        }
        let tls = tls.map(|m| crate::backend_tls::for_backend(m, namespace, svc_ref));
        let tls_id = tls.as_ref().map(|t| t.id);
        if let Some(b) = self.built.get(&(name.clone(), balance, tls_id)) {
            return Ok(b.clone());
        }
        let slices = self
            .slices
            .get(&(namespace, svc_ref.name.as_str()))
            .map_or(&[][..], Vec::as_slice);
        let endpoints = match cluster_ip {
            // A headless Service (no cluster IP) keeps its endpoints, as in ingress-nginx.
            Some(ip) => vec![SocketAddr::new(
                ip,
                u16::try_from(service_port.port).unwrap_or_default(),
            )],
            None => ready_addresses(slices, service_port.name.as_deref(), self.zone),
        };
        let mut backend = Backend::new(name.clone(), endpoints, balance, self.state);
        backend.tls = tls;
        backend.h2c = service_port.app_protocol.as_deref() == Some("kubernetes.io/h2c");
        let backend = Arc::new(backend);
        self.built.insert((name, balance, tls_id), backend.clone());
        Ok(backend)
    }
}

fn find_service_port<'s>(
    service: &'s Service,
    port: Option<&k8s_openapi::api::networking::v1::ServiceBackendPort>,
) -> Option<&'s k8s_openapi::api::core::v1::ServicePort> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    match port {
        Some(p) if p.name.is_some() => ports.iter().find(|sp| sp.name == p.name),
        Some(p) => ports.iter().find(|sp| Some(sp.port) == p.number),
        // No port named: fine only when the Service has exactly one.
        None if ports.len() == 1 => ports.first(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dir::load_str;
    use std::path::Path;

    const BASE: &str = "
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec: {ports: [{port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, labels: {kubernetes.io/service-name: a}}
addressType: IPv4
ports: [{name: http, port: 9001}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: b-1, labels: {kubernetes.io/service-name: b}}
addressType: IPv4
ports: [{port: 9002}]
endpoints: [{addresses: [10.0.0.2]}]
";

    fn table(ingress: &str) -> Result<RouteTable> {
        let mut objects = Objects::default();
        load_str(&format!("{BASE}---\n{ingress}"), Path::new("t.yaml"), &mut objects)?;
        RouteTable::compile(&objects, "mzlb", "zone-1", &Store::default())
    }

    fn target(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.lookup(host, path).map(|r| r.backend.name.to_string())
    }

    #[test]
    fn prefix_is_element_wise_and_longest_wins() {
        let t = table(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - host: x.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {name: http}}}}\n      - {path: /foo/, pathType: Prefix, backend: {service: {name: b, port: {number: 8080}}}}\n",
        )
        .unwrap();
        assert_eq!(target(&t, "x.test", "/foo").as_deref(), Some("default/b:8080"));
        assert_eq!(target(&t, "X.Test:8080", "/foo/bar").as_deref(), Some("default/b:8080"));
        assert_eq!(target(&t, "x.test", "/foobar").as_deref(), Some("default/a:80"));
        assert_eq!(
            target(&t, "other.test", "/foo"),
            None,
            "no rule for the host and no default"
        );
        assert_eq!(
            t.lookup("x.test", "/").unwrap().backend.endpoints,
            vec!["10.0.0.1:9001".parse().unwrap()]
        );
    }

    #[test]
    fn implementation_specific_is_a_string_prefix_as_in_ingress_nginx() {
        let t = table(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - host: x.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {name: http}}}}\n      - {path: /admin, pathType: ImplementationSpecific, backend: {service: {name: b, port: {number: 8080}}}}\n",
        )
        .unwrap();
        for path in [
            "/admin",
            "/admin/x",
            "/admin.json",
            "/admin-panel",
            "/admin;jsessionid=1/users",
        ] {
            assert_eq!(target(&t, "x.test", path).as_deref(), Some("default/b:8080"), "{path}");
        }
        assert_eq!(target(&t, "x.test", "/adm").as_deref(), Some("default/a:80"));
    }

    #[test]
    fn exact_beats_prefix_and_wildcard_is_one_label() {
        let t = table(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec:\n  ingressClassName: mzlb\n  defaultBackend: {service: {name: a, port: {number: 80}}}\n  rules:\n  - host: '*.w.test'\n    http:\n      paths:\n      - {path: /p, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}\n      - {path: /p, pathType: Exact, backend: {service: {name: b, port: {number: 8080}}}}\n",
        )
        .unwrap();
        assert_eq!(target(&t, "one.w.test", "/p").as_deref(), Some("default/b:8080"));
        assert_eq!(target(&t, "one.w.test", "/p/q").as_deref(), Some("default/a:80"));
        assert_eq!(
            target(&t, "two.one.w.test", "/p").as_deref(),
            Some("default/a:80"),
            "default backend"
        );
        assert_eq!(
            target(&t, "w.test", "/p").as_deref(),
            Some("default/a:80"),
            "default backend"
        );
    }

    #[test]
    fn passthrough_hosts_go_to_their_root_rule_or_the_default_backend() {
        let t = table(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, annotations: {nginx.ingress.kubernetes.io/ssl-passthrough: 'true'}}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - host: Pass.Test\n    http:\n      paths:\n      - {path: /x, pathType: Prefix, backend: {service: {name: a, port: {name: http}}}}\n      - {path: /, pathType: Prefix, backend: {service: {name: b, port: {number: 8080}}}}\n  - host: '*.w.test'\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}\n  - host: nothing.test\n    http:\n      paths:\n      - {path: /y, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}\n",
        )
        .unwrap();
        let backend = |h: &str| {
            t.passthrough
                .get(h)
                .map(|p| p.backend.as_ref().map(|b| b.name.to_string()))
        };
        assert_eq!(backend("pass.test"), Some(Some("default/b:8080".into())));
        // No `/` rule and no default backend: known, so closed rather than terminated.
        assert_eq!(backend("nothing.test"), Some(None));
        // Wildcards are not matched by SNI, as in ingress-nginx: reported.
        assert_eq!(t.passthrough.len(), 2);
        assert!(
            t.warnings.iter().any(|w| w.contains("wildcard host *.w.test")),
            "{:?}",
            t.warnings
        );
        // Plain HTTP is served by the rules.
        assert_eq!(target(&t, "pass.test", "/x").as_deref(), Some("default/a:80"));
    }

    #[test]
    fn other_classes_are_ignored() {
        let t = table(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec:\n  ingressClassName: nginx\n  defaultBackend: {service: {name: a, port: {number: 80}}}\n",
        )
        .unwrap();
        assert_eq!(t.ingresses, 0);
        assert_eq!(target(&t, "x", "/"), None);
    }

    #[test]
    fn missing_service_names_the_ingress_and_field() {
        let err = table(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: nope, port: {number: 80}}}}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Ingress default/web in t.yaml (document 5)"), "{err}");
        assert!(
            err.contains("spec.rules[0].http.paths[0].backend.service.name"),
            "{err}"
        );
        assert!(err.contains("Service default/nope not found"), "{err}");
    }

    #[test]
    fn rewrite_target_uses_regex_captures_and_bad_values_are_warnings() {
        let t = table(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: rw\n  annotations:\n    nginx.ingress.kubernetes.io/rewrite-target: /$2\n    nginx.ingress.kubernetes.io/load-balance: nope\nspec:\n  ingressClassName: mzlb\n  rules:\n  - http:\n      paths:\n      - {path: '/api(/|$)(.*)', pathType: ImplementationSpecific, backend: {service: {name: a, port: {number: 80}}}}\n      - {path: '/bad(', pathType: ImplementationSpecific, backend: {service: {name: a, port: {number: 80}}}}\n",
        )
        .unwrap();
        let route = t.lookup("x", "/API/items/1").unwrap();
        assert_eq!(route.rewritten.as_deref(), Some("/items/1"));
        assert_eq!(t.lookup("x", "/api").unwrap().rewritten.as_deref(), Some("/"));
        assert!(t.lookup("x", "/other").is_none());
        // The path whose regex does not compile is not left out: it refuses (503).
        let refused = t.lookup("x", "/bad(").unwrap();
        assert_eq!(&*refused.policy.unenforced[0], "invalid-path-regex");
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(
            t.warnings[0].contains("Ingress default/rw") && t.warnings[0].contains("load-balance"),
            "{:?}",
            t.warnings
        );
        assert!(
            t.warnings[1].contains("not a valid regular expression"),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn limits_and_ejection_survive_a_rebuild() {
        let text = format!(
            "{BASE}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, annotations: {{nginx.ingress.kubernetes.io/limit-rps: '1', nginx.ingress.kubernetes.io/limit-burst-multiplier: '1'}}}}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - host: h.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: a, port: {{number: 80}}}}}}}}\n"
        );
        let mut objects = Objects::default();
        load_str(&text, Path::new("t.yaml"), &mut objects).unwrap();
        let state = Store::default();
        let client = "192.0.2.9".parse().unwrap();
        let first = RouteTable::compile(&objects, "mzlb", "z", &state).unwrap();
        let route = first.lookup("h.test", "/").unwrap();
        assert!(route.policy.rate_limiter.as_ref().unwrap().allow(client));
        for _ in 0..EJECT_AFTER {
            route.backend.take(0);
            route.backend.finished(0, None);
        }
        // Each next table is built while the one before still serves, as during a swap.
        let check = |table: &RouteTable| {
            let route = table.lookup("h.test", "/").unwrap();
            assert!(
                !route.policy.rate_limiter.as_ref().unwrap().allow(client),
                "the bucket is not refilled by a rebuild"
            );
            assert!(route.backend.ejected(0), "the endpoint stays ejected");
        };
        let second = RouteTable::compile(&objects, "mzlb", "z", &state).unwrap();
        check(&second);
        drop(first);
        let third = RouteTable::compile(&objects, "mzlb", "z", &state).unwrap();
        check(&third);
        drop((second, third));
        state.sweep();
        assert_eq!(state.len(), (0, 0, 0), "nothing holds them: swept");
    }

    #[test]
    fn an_abandoned_request_gives_its_in_flight_count_back_once() {
        let eps = vec!["10.0.0.1:80".parse().unwrap()];
        let b = Backend::new("b".into(), eps, BalanceKind::Ewma, &Store::default());
        let i = b.pick().unwrap();
        assert_eq!(b.states[i].ewma.in_flight(), 1);
        drop(InFlight::new(&b, i));
        assert_eq!(b.states[i].ewma.in_flight(), 0, "dropped unreported: given back");
        let i = b.pick().unwrap();
        let mut claim = InFlight::new(&b, i);
        claim.finished(Some(Duration::from_millis(1)));
        claim.finished(None);
        drop(claim);
        assert_eq!(b.states[i].ewma.in_flight(), 0, "reported once, not again on drop");
    }

    #[test]
    fn failing_endpoints_are_ejected_and_skipped() {
        let eps = vec!["10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap()];
        for balance in [BalanceKind::RoundRobin, BalanceKind::Ewma] {
            let b = Backend::new("b".into(), eps.clone(), balance, &Store::default());
            for _ in 0..EJECT_AFTER {
                b.take(0);
                b.finished(0, None);
            }
            for _ in 0..10 {
                let i = b.pick().unwrap();
                assert_eq!(i, 1, "{balance:?}: the ejected endpoint is skipped");
                b.finished(i, Some(Duration::from_millis(1)));
            }
            assert_eq!(
                b.pick_other(1),
                Some(0),
                "a retry goes elsewhere, even to an ejected endpoint"
            );
        }
    }

    #[test]
    fn on_a_cluster_an_unresolvable_backend_answers_503_and_never_falls_through() {
        let text = format!(
            "{BASE}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: good, uid: u1, generation: 3}}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - host: good.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: a, port: {{number: 80}}}}}}}}\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: bad}}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - host: bad.test\n    http:\n      paths:\n      - {{path: /x, pathType: Prefix, backend: {{service: {{name: a, port: {{number: 80}}}}}}}}\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: gone, port: {{number: 80}}}}}}}}\n"
        );
        let mut objects = Objects::default();
        load_str(&text, Path::new("t.yaml"), &mut objects).unwrap();
        let err =
            RouteTable::compile(&objects, DEFAULT_INGRESS_CLASS, "z", &Store::default()).expect_err("strict fails");
        assert!(err.to_string().contains("Service default/gone not found"), "{err}");

        let t = RouteTable::compile_each(&objects, DEFAULT_INGRESS_CLASS, "z", &Store::default());
        assert_eq!(t.ingresses, 2);
        assert!(t.lookup("good.test", "/").is_some());
        assert_eq!(
            t.lookup("bad.test", "/x").unwrap().backend.endpoints.len(),
            1,
            "its good paths are served"
        );
        let unresolved = t.lookup("bad.test", "/y").unwrap();
        assert!(
            unresolved.backend.endpoints.is_empty(),
            "the unresolved path is installed without endpoints (503), so nothing falls through"
        );
        let good = t.reports.iter().find(|r| r.name == "good").unwrap();
        assert!(good.rejected.is_none());
        assert_eq!((good.uid.as_deref(), good.generation), (Some("u1"), Some(3)));
        let bad = t.reports.iter().find(|r| r.name == "bad").unwrap();
        let problem = bad.rejected.as_ref().unwrap();
        assert_eq!(problem.reason, "ServiceNotFound");
        assert!(
            problem
                .message
                .contains("spec.rules[0].http.paths[1].backend.service.name"),
            "{}",
            problem.message
        );
    }
}

#[cfg(test)]
mod route_extras_tests {
    use super::*;
    use crate::source::dir::load_str;
    use std::path::Path;

    const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec: {ports: [{port: 80}]}
";

    fn ing(name: &str, host: &str, svc: &str, path_type: &str, annotations: &str) -> String {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{{annotations}}}}}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: {path_type}, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
        )
    }

    fn table(docs: &[String]) -> RouteTable {
        let mut objects = Objects::default();
        load_str(
            &format!("{SERVICES}---\n{}", docs.join("---\n")),
            Path::new("t.yaml"),
            &mut objects,
        )
        .unwrap();
        RouteTable::compile(&objects, "mzlb", "zone-1", &Store::default()).unwrap()
    }

    const CANARY: &str = "nginx.ingress.kubernetes.io/canary: 'true'";

    #[test]
    fn a_canary_attaches_to_the_same_host_path_and_path_type_only() {
        let t = table(&[
            ing("canary", "x.test", "b", "Prefix", CANARY), // before its main: order does not matter
            ing("main", "x.test", "a", "Prefix", ""),
            ing("other-type", "y.test", "a", "Exact", ""),
            ing("canary-y", "y.test", "b", "Prefix", CANARY),
            ing("canary-z", "z.test", "b", "Prefix", CANARY),
        ]);
        let route = t.lookup("x.test", "/").unwrap();
        assert_eq!(&*route.backend.name, "default/a:80");
        assert_eq!(route.canary.map(|c| &*c.backend.name), Some("default/b:80"));
        assert!(t.lookup("y.test", "/").unwrap().canary.is_none(), "another pathType");
        assert!(t.lookup("z.test", "/").is_none(), "a canary alone serves nothing");
        assert_eq!(
            t.warnings.iter().filter(|w| w.contains("no main Ingress")).count(),
            2,
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn aliases_and_www_redirects_never_take_a_host_a_rule_names() {
        let alias = "nginx.ingress.kubernetes.io/server-alias: 'al.test, b.test'";
        let www = "nginx.ingress.kubernetes.io/from-to-www-redirect: 'true'";
        let t = table(&[
            ing("a", "a.test", "a", "Prefix", alias),
            ing("b", "b.test", "b", "Prefix", www),
            ing("wb", "www.b.test", "a", "Prefix", ""),
            ing("c", "c.test", "a", "Prefix", www),
        ]);
        assert_eq!(&*t.lookup("al.test", "/").unwrap().backend.name, "default/a:80");
        assert_eq!(&*t.lookup("b.test", "/").unwrap().backend.name, "default/b:80");
        assert!(
            t.lookup("www.b.test", "/")
                .unwrap()
                .policy
                .policy
                .upstream
                .www_redirect_to
                .is_none()
        );
        let to = t.lookup("WWW.c.test:8080", "/x").unwrap();
        assert_eq!(to.policy.policy.upstream.www_redirect_to.as_deref(), Some("c.test"));
        let uri: hyper::Uri = "/a/?q=1/".parse().unwrap();
        let resp = www_redirect("c.test", "http", 8080, &uri);
        assert_eq!(resp.status(), 308);
        assert_eq!(resp.headers()["location"], "http://c.test:8080/a/?q=1");
        let resp = www_redirect("c.test", "https", 443, &"/".parse().unwrap());
        assert_eq!(resp.headers()["location"], "https://c.test");
    }
}
