//! The routing table: Ingress rules compiled into an immutable lookup structure, with Kubernetes
//! `pathType` semantics and each Ingress's annotation policy. A new table is built on every
//! change and swapped in whole.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use regex::Regex;

use crate::annotations::{self, BalanceKind, Policy};
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
            connection_limiter: self.connection_limiter.clone(),
            auth: self.auth.clone(),
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
#[derive(Debug)]
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
    pub connection_limiter: Option<Arc<ConcurrencyLimiter>>,
    /// `auth-type: basic` / `auth-url`, compiled (the basic-auth Secret resolved).
    pub auth: Option<Arc<crate::auth::RouteAuth>>,
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
    matcher: Matcher,
    backend: Arc<Backend>,
    policy: Arc<RoutePolicy>,
}

/// What a request was routed to.
pub struct Route<'a> {
    pub backend: &'a Arc<Backend>,
    pub policy: &'a Arc<RoutePolicy>,
    /// The path to send upstream when `rewrite-target` applies.
    pub rewritten: Option<String>,
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
    default_backend: Option<(Arc<Backend>, Arc<RoutePolicy>)>,
    /// How many Ingress objects were compiled in, for logs.
    pub ingresses: usize,
    /// `albhealth.<ingress subdomain>`: IBM's health-check host, answered by the ALB itself.
    pub health_host: Option<String>,
    /// Problems that did not stop the table: bad annotation values, bad path regexes,
    /// unusable TLS Secrets.
    pub warnings: Vec<String>,
    /// How each of our Ingresses fared.
    pub reports: Vec<IngressReport>,
    /// Certificates for TLS termination, by SNI host name.
    pub tls: TlsCerts,
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

    /// Finds the route for `host` (any case, with or without port) and `path`. As with
    /// ingress-nginx, the most specific host that has rules owns the request: its paths are
    /// tried, then the default backend.
    pub fn lookup(&self, host: &str, path: &str) -> Option<Route<'_>> {
        let host = normalize_host(host);
        let rules = self
            .exact_hosts
            .get(host.as_ref())
            .or_else(|| {
                let (_, parent) = host.split_once('.')?;
                self.wildcard_hosts.get(parent)
            })
            .unwrap_or(&self.any_host);
        rules.lookup(path).or_else(|| {
            self.default_backend.as_ref().map(|(backend, policy)| Route {
                backend,
                policy,
                rewritten: None,
            })
        })
    }

    /// Compiles the Ingresses of `class` in `objects` for an ALB in `zone`. An Ingress that
    /// cannot be served (a missing Service, a bad pathType) fails the whole table: in
    /// standalone mode the manifest directory is one change, kept or rejected as a whole.
    /// Runtime state (limits, endpoint health) comes from `state`, shared with earlier tables.
    pub fn compile(objects: &Objects, class: &str, zone: &str, state: &Store) -> Result<Self> {
        Self::compile_with(objects, class, zone, true, state)
    }

    /// Like [`compile`](Self::compile), but an Ingress that cannot be served is left out and
    /// reported, and the others are served: on a cluster every Ingress is its own change, and
    /// one tenant's mistake must not take down everybody's routes.
    pub fn compile_each(objects: &Objects, class: &str, zone: &str, state: &Store) -> Self {
        Self::compile_with(objects, class, zone, false, state).expect("lenient compilation reports instead of failing")
    }

    fn compile_with(objects: &Objects, class: &str, zone: &str, strict: bool, state: &Store) -> Result<Self> {
        let mut table = RouteTable::default();
        let class_is_default = objects.ingress_classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(class)
                && c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
        });
        let mut backends = BackendCache::new(objects, zone, state);
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
            match stage(objects, ingress, &mut backends, state, &mut report.warnings) {
                Ok(mut staged) => {
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
            table.warnings.extend(report.warnings.iter().map(|w| w.message.clone()));
            table.reports.push(report);
        }
        for rules in table.exact_hosts.values_mut().chain(table.wildcard_hosts.values_mut()) {
            rules.sort();
        }
        table.any_host.sort();
        Ok(table)
    }
}

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
    /// The first backend that could not be resolved (a missing Service or port): its paths are
    /// installed without endpoints, so they answer 503 instead of falling to another rule.
    unresolved: Option<Rejection>,
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
    }
}

/// Compiles one Ingress, collecting what only degrades it into `warnings`.
fn stage(
    objects: &Objects,
    ingress: &Ingress,
    backends: &mut BackendCache<'_>,
    state: &Store,
    warnings: &mut Vec<Problem>,
) -> std::result::Result<Staged, Rejection> {
    let mut staged = Staged::default();
    let what = objects.describe(&key_of("Ingress", &ingress.metadata, true));
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
    let (policy, findings) = annotations::parse(ingress.metadata.annotations.as_ref());
    warnings.extend(
        findings
            .iter()
            .map(|f| Problem::warning(f.reason(), format!("{what}: {f}"))),
    );
    if policy.canary {
        return Ok(staged);
    }
    let tls_hosts = compile_tls(objects, ingress, namespace, &what, &mut staged, warnings);
    let name: Arc<str> = format!("{namespace}/{}", ingress.metadata.name.as_deref().unwrap_or_default()).into();
    let mut unenforced: Vec<Arc<str>> = policy
        .unenforced
        .iter()
        .map(|k| Arc::from(format!("unenforced-annotation {k}")))
        .collect();
    let runtime = || state.auth_runtime(&name, crate::auth::digest(&policy.auth));
    let auth = crate::auth::compile(objects, namespace, &policy.auth, runtime).unwrap_or_else(|e| {
        warnings.push(Problem::warning(
            "UnsupportedAnnotation",
            format!("{what}: {e}; the Ingress's routes answer 503"),
        ));
        unenforced.push(Arc::from("unusable-auth-secret"));
        None
    });
    let policy = Arc::new(RoutePolicy {
        tls_hosts,
        auth,
        unenforced,
        rate_limiter: policy.rate_limit.map(|spec| state.rate_limiter(&name, spec)),
        connection_limiter: policy.connection_limit.map(|n| state.concurrency_limiter(&name, n)),
        ingress: name,
        policy,
    });
    let balance = policy.policy.balance;
    let Some(spec) = &ingress.spec else { return Ok(staged) };
    if let Some(default) = &spec.default_backend {
        let backend = backends.resolve(namespace, default, balance, &what, "spec.defaultBackend", &mut staged)?;
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
                            let backend =
                                backends.resolve(namespace, &path.backend, balance, &what, &field, &mut staged)?;
                            let rule = PathRule {
                                path: path_value,
                                matcher: Matcher::StringPrefix,
                                backend,
                                policy: Arc::new(policy.refusing("invalid-path-regex")),
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
                balance,
                &what,
                &format!("{field}.backend"),
                &mut staged,
            )?;
            let rule = PathRule {
                path: path_value,
                matcher,
                backend,
                policy: policy.clone(),
            };
            staged.rules.push((slot.clone(), rule));
        }
    }
    Ok(staged)
}

/// Stages the certificates an Ingress's `spec.tls` names; returns the hosts covered. A
/// missing or broken Secret is a warning: those hosts get the default certificate.
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
fn normalize_host(host: &str) -> Cow<'_, str> {
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
struct BackendCache<'a> {
    /// Services by (namespace, name), and EndpointSlices by (namespace, Service name): built
    /// once per compile, so resolving N backends is not N scans of every object.
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    zone: &'a str,
    state: &'a Store,
    built: HashMap<(String, BalanceKind), Arc<Backend>>,
}

impl<'a> BackendCache<'a> {
    /// [`get`](Self::get), except that a Service or port that is not found gives a backend
    /// without endpoints (503) and is remembered in `staged`; only malformed references fail.
    fn resolve(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        balance: BalanceKind,
        what: &str,
        field: &str,
        staged: &mut Staged,
    ) -> std::result::Result<Arc<Backend>, Rejection> {
        match self.get(namespace, backend, balance, what, field) {
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
            services,
            slices,
            zone,
            state,
            built: HashMap::new(),
        }
    }

    fn get(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        balance: BalanceKind,
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
        let name = format!("{namespace}/{}:{}", svc_ref.name, service_port.port);
        if let Some(b) = self.built.get(&(name.clone(), balance)) {
            return Ok(b.clone());
        }
        let slices = self
            .slices
            .get(&(namespace, svc_ref.name.as_str()))
            .map_or(&[][..], Vec::as_slice);
        let endpoints = ready_addresses(slices, service_port.name.as_deref(), self.zone);
        let backend = Arc::new(Backend::new(name.clone(), endpoints, balance, self.state));
        self.built.insert((name, balance), backend.clone());
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
