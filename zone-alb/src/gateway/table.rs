//! The compiled form of the Gateways an ALB serves: per port, its listeners; per listener, the
//! route rules attached to it, sorted once into the specification's precedence so a request
//! takes the first rule that matches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use regex::Regex;

use super::hostnames::Hostname;
use crate::router::{Backend, RoutePolicy};

/// Every Gateway listener of this ALB.
#[derive(Debug, Default)]
pub struct Table {
    pub(crate) ports: HashMap<u16, Port>,
    /// What to write to the status of each GatewayClass, Gateway and HTTPRoute of ours.
    pub status: super::status::Report,
}

impl Table {
    /// The Gateway listeners on `port`, if any.
    pub(crate) fn port(&self, port: u16) -> Option<&Port> {
        self.ports.get(&port)
    }

    /// The ports to listen on, and whether each terminates TLS.
    pub fn listen_ports(&self) -> Vec<(u16, bool)> {
        let mut ports: Vec<_> = self.ports.iter().map(|(&p, port)| (p, port.https)).collect();
        ports.sort();
        ports
    }

    /// Every (HTTPRoute, Service) pair a request can be counted under.
    pub(crate) fn label_pairs(&self) -> Vec<(Arc<str>, Arc<str>)> {
        let rules = self
            .ports
            .values()
            .flat_map(|p| &p.listeners)
            .flat_map(|l| &l.groups)
            .flat_map(|(_, entries)| entries.iter().map(|e| &e.rule));
        let mut out = Vec::new();
        for rule in rules {
            out.push((rule.route.clone(), Arc::from("")));
            for b in rule.backends.iter().filter_map(|b| b.backend.as_ref()) {
                out.push((rule.route.clone(), b.name.clone()));
            }
        }
        out
    }

    /// Every rule as attached: (port, listener, hostname or `*`, match, HTTPRoute and rule,
    /// backends), by port then listener then precedence.
    pub fn rules(&self) -> Vec<RuleLine> {
        let mut ports: Vec<_> = self.ports.iter().collect();
        ports.sort_by_key(|(p, _)| **p);
        let mut out = Vec::new();
        for (&port, p) in ports {
            for listener in &p.listeners {
                for (host, entries) in &listener.groups {
                    for e in entries {
                        let backends: Vec<String> = e
                            .rule
                            .backends
                            .iter()
                            .map(|b| {
                                let name = b
                                    .backend
                                    .as_ref()
                                    .map_or_else(|| "(unusable: 500)".to_owned(), |b| b.name.to_string());
                                format!("{name} weight {}", b.weight)
                            })
                            .collect();
                        out.push(RuleLine {
                            port,
                            listener: listener.name.to_string(),
                            host: host.as_ref().map_or_else(|| "*".to_owned(), ToString::to_string),
                            matches: e.describe(),
                            route: format!("{} {} rule {}", e.rule.kind, e.rule.route, e.order.rule),
                            to: if e.rule.redirect.is_some() {
                                "(redirect)".into()
                            } else if backends.is_empty() {
                                "(no backendRefs: 500)".into()
                            } else {
                                backends.join(", ")
                            },
                            exact_host: matches!(host, Some(Hostname::Exact(_))),
                            path: match &e.path {
                                PathMatch::Exact(p) | PathMatch::Prefix(p) => Some(p.clone()),
                                PathMatch::Regex(_) => None,
                            },
                        });
                    }
                }
            }
        }
        out
    }

    /// Whether any Gateway listener is served.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

/// One attached rule, for listings (`zone-alb --check --routes`, `mzlb routes`).
#[derive(Clone, Debug)]
pub struct RuleLine {
    pub port: u16,
    pub listener: String,
    pub host: String,
    pub matches: String,
    pub route: String,
    pub to: String,
    /// The rule's hostname is an exact name, and its path (`Exact` or `PathPrefix`) is `path`.
    pub exact_host: bool,
    pub path: Option<String>,
}

/// The listeners (of one or more Gateways) sharing one port.
#[derive(Debug, Default)]
pub(crate) struct Port {
    pub(crate) https: bool,
    /// Most specific hostname first; a listener without one last.
    pub(crate) listeners: Vec<Arc<ListenerRoutes>>,
}

impl Port {
    /// The listener a request for `host` (lower case, no port) belongs to: the one with the
    /// most specific matching hostname. Routes of other listeners never see it (listener
    /// isolation).
    pub(crate) fn listener(&self, host: &str) -> Option<&Arc<ListenerRoutes>> {
        self.listeners
            .iter()
            .find(|l| l.hostname.as_ref().is_none_or(|h| h.matches(host)))
    }
}

#[derive(Debug)]
pub(crate) struct ListenerRoutes {
    /// `namespace/name/listener`, for logs.
    pub(crate) name: Arc<str>,
    pub(crate) hostname: Option<Hostname>,
    /// HTTPS: the listener's certificate.
    pub(crate) certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    /// Rules by the hostname they were attached under, most specific first; `None` last.
    pub(crate) groups: Vec<(Option<Hostname>, Vec<Entry>)>,
}

impl ListenerRoutes {
    /// The first rule that matches, trying hostname groups from the most specific.
    pub(crate) fn lookup(&self, request: &Request<'_>) -> Option<&Entry> {
        self.groups
            .iter()
            .filter(|(h, _)| h.as_ref().is_none_or(|h| h.matches(request.host)))
            .find_map(|(_, entries)| entries.iter().find(|e| e.matches(request)))
    }
}

/// What a rule match reads of a request.
pub(crate) struct Request<'a> {
    /// Lower case, no port.
    pub(crate) host: &'a str,
    /// Normalized (dot segments resolved, percent-decoding of unreserved characters).
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) headers: &'a HeaderMap,
}

#[derive(Debug)]
pub(crate) enum PathMatch {
    Exact(String),
    /// Element-wise, a trailing `/` on the value ignored.
    Prefix(String),
    Regex(Regex),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(value) => path == value,
            PathMatch::Prefix(value) => {
                let prefix = value.trim_end_matches('/');
                path.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

#[derive(Debug)]
pub(crate) enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(want) => value == want,
            ValueMatch::Regex(re) => re.is_match(value),
        }
    }
}

/// One `matches` entry of one rule, with the rule it selects.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) path: PathMatch,
    pub(crate) method: Option<String>,
    pub(crate) headers: Vec<(HeaderName, ValueMatch)>,
    /// Names are case-sensitive.
    pub(crate) query: Vec<(String, ValueMatch)>,
    pub(crate) rule: Arc<Rule>,
    /// The specification's precedence, smallest first (see `compile::order`).
    pub(crate) order: Order,
}

/// Sort key: across routes, exact path, then longest prefix, method, most headers, most
/// query parameters; then the oldest route, then `namespace/name`; then rule and match order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Order {
    pub(crate) path_kind: u8,
    pub(crate) path_len: std::cmp::Reverse<usize>,
    pub(crate) no_method: bool,
    pub(crate) headers: std::cmp::Reverse<usize>,
    pub(crate) query: std::cmp::Reverse<usize>,
    pub(crate) created: Option<String>,
    pub(crate) route: String,
    pub(crate) rule: usize,
    pub(crate) matched: usize,
}

impl Entry {
    fn matches(&self, request: &Request<'_>) -> bool {
        self.path.matches(request.path)
            && self.method.as_deref().is_none_or(|m| m == request.method)
            && self.headers.iter().all(|(name, want)| {
                request
                    .headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| want.matches(v)))
            })
            && self
                .query
                .iter()
                .all(|(name, want)| query_value(request.query, name).is_some_and(|v| want.matches(&v)))
    }

    /// The match as people write it: `PathPrefix /a, method GET, headers [x], query [y]`.
    pub(crate) fn describe(&self) -> String {
        let mut out = match &self.path {
            PathMatch::Exact(p) => format!("Exact {p}"),
            PathMatch::Prefix(p) => format!("PathPrefix {p}"),
            PathMatch::Regex(r) => format!("RegularExpression {}", r.as_str()),
        };
        if let Some(m) = &self.method {
            out.push_str(&format!(", method {m}"));
        }
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
            out.push_str(&format!(", headers [{}]", names.join(", ")));
        }
        if !self.query.is_empty() {
            let names: Vec<&str> = self.query.iter().map(|(n, _)| n.as_str()).collect();
            out.push_str(&format!(", query [{}]", names.join(", ")));
        }
        out
    }

    /// The prefix this entry matched, for `ReplacePrefixMatch`.
    pub(crate) fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(p) => Some(p.trim_end_matches('/')),
            _ => None,
        }
    }
}

/// The first value of query parameter `name` (percent-decoded; `+` is a space).
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_decode(&s)
    };
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One rule of one HTTPRoute, as attached: its filters and backends.
#[derive(Debug)]
pub(crate) struct Rule {
    /// `HTTPRoute` or `GRPCRoute`.
    pub(crate) kind: &'static str,
    /// `namespace/name` of the route, for logs and metrics.
    pub(crate) route: Arc<str>,
    /// The forwarding policy (timeouts, balancing): the cluster's defaults.
    pub(crate) policy: Arc<RoutePolicy>,
    /// The same, speaking HTTP/2 in clear: for backends whose Service port's `appProtocol`
    /// is `kubernetes.io/h2c`.
    pub(crate) policy_h2c: Arc<RoutePolicy>,
    pub(crate) request_headers: Option<HeaderChanges>,
    pub(crate) response_headers: Option<HeaderChanges>,
    pub(crate) redirect: Option<Redirect>,
    pub(crate) rewrite: Option<Rewrite>,
    /// `CORS`: preflights answered here, origin fields on answers.
    pub(crate) cors: Option<super::cors::Cors>,
    /// Each mirror, and the share of requests copied to it (1.0: all).
    pub(crate) mirrors: Vec<(Arc<Backend>, f64)>,
    pub(crate) backends: Vec<WeightedBackend>,
    /// `timeouts.request`: the whole exchange, up to the response head.
    pub(crate) request_timeout: Option<Duration>,
}

impl Rule {
    /// A backend by weight; `None` when none can take the request (no backendRefs, all of
    /// weight 0).
    pub(crate) fn pick(&self) -> Option<&WeightedBackend> {
        let total: u64 = self.backends.iter().map(|b| u64::from(b.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut n = rand::random_range(0..total);
        for b in &self.backends {
            if n < u64::from(b.weight) {
                return Some(b);
            }
            n -= u64::from(b.weight);
        }
        None
    }
}

#[derive(Debug)]
pub(crate) struct WeightedBackend {
    pub(crate) weight: u32,
    /// `None`: a reference that cannot be resolved or is not permitted: its share of
    /// requests gets 500, as the specification says.
    pub(crate) backend: Option<Arc<Backend>>,
    pub(crate) request_headers: Option<HeaderChanges>,
    pub(crate) response_headers: Option<HeaderChanges>,
}

/// `RequestHeaderModifier` / `ResponseHeaderModifier`.
#[derive(Debug, Default)]
pub(crate) struct HeaderChanges {
    pub(crate) set: Vec<(HeaderName, HeaderValue)>,
    pub(crate) add: Vec<(HeaderName, HeaderValue)>,
    pub(crate) remove: Vec<HeaderName>,
}

impl HeaderChanges {
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

#[derive(Debug)]
pub(crate) enum PathChange {
    Full(String),
    Prefix(String),
}

impl PathChange {
    /// The new path for `path`, which `prefix` (the rule's PathPrefix match) matched.
    pub(crate) fn apply(&self, path: &str, prefix: Option<&str>) -> String {
        match self {
            PathChange::Full(full) => full.clone(),
            PathChange::Prefix(replacement) => {
                let rest = prefix.and_then(|p| path.strip_prefix(p)).unwrap_or(path);
                let joined = format!("{}{rest}", replacement.trim_end_matches('/'));
                if joined.is_empty() {
                    "/".into()
                } else if joined.starts_with('/') {
                    joined
                } else {
                    format!("/{joined}")
                }
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Redirect {
    pub(crate) scheme: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) path: Option<PathChange>,
    pub(crate) port: Option<u16>,
    pub(crate) status: hyper::StatusCode,
}

impl Redirect {
    /// The Location for a request on a listener of `scheme` and `listener_port`.
    pub(crate) fn location(
        &self,
        scheme: &str,
        host: &str,
        listener_port: u16,
        path: &str,
        query: Option<&str>,
        prefix: Option<&str>,
    ) -> String {
        let to_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let port = match (self.port, &self.scheme) {
            (Some(port), _) => port,
            (None, Some(s)) if s == "http" => 80,
            (None, Some(s)) if s == "https" => 443,
            (None, _) => listener_port,
        };
        let port = match (to_scheme, port) {
            ("http", 80) | ("https", 443) => String::new(),
            (_, port) => format!(":{port}"),
        };
        let host = self.hostname.as_deref().unwrap_or(host);
        let path = self
            .path
            .as_ref()
            .map_or_else(|| path.to_owned(), |p| p.apply(path, prefix));
        let query = query.map_or_else(String::new, |q| format!("?{q}"));
        format!("{to_scheme}://{host}{port}{path}{query}")
    }
}

#[derive(Debug)]
pub(crate) struct Rewrite {
    pub(crate) hostname: Option<HeaderValue>,
    pub(crate) path: Option<PathChange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_as_the_conformance_tests_expect() {
        let cases = [
            ("/one", "/prefix/one", "/prefix/one/two", "/one/two"),
            ("/", "/strip-prefix", "/strip-prefix/three", "/three"),
            ("/", "/strip-prefix", "/strip-prefix", "/"),
            ("/xyz/", "/prefix/four", "/prefix/four/a", "/xyz/a"),
            ("/bar", "/foo", "/foo/", "/bar/"),
        ];
        for (replacement, prefix, path, want) in cases {
            let got = PathChange::Prefix(replacement.into()).apply(path, Some(prefix));
            assert_eq!(got, want, "{prefix} → {replacement} on {path}");
        }
        assert_eq!(PathChange::Full("/x".into()).apply("/a/b", Some("/a")), "/x");
    }

    #[test]
    fn redirect_ports_follow_the_scheme() {
        let r = |scheme: Option<&str>, port: Option<u16>| Redirect {
            scheme: scheme.map(Into::into),
            hostname: Some("example.org".into()),
            path: None,
            port,
            status: hyper::StatusCode::FOUND,
        };
        let at = |r: Redirect| r.location("http", "a.test", 8080, "/p", Some("q=1"), None);
        assert_eq!(
            at(r(None, None)),
            "http://example.org:8080/p?q=1",
            "the listener's port"
        );
        assert_eq!(
            at(r(Some("https"), None)),
            "https://example.org/p?q=1",
            "443 not written"
        );
        assert_eq!(at(r(Some("http"), None)), "http://example.org/p?q=1");
        assert_eq!(at(r(None, Some(80))), "http://example.org/p?q=1");
        assert_eq!(at(r(Some("https"), Some(8443))), "https://example.org:8443/p?q=1");
    }

    #[test]
    fn query_values_are_decoded_and_first_wins() {
        assert_eq!(query_value(Some("a=1&b=x%20y&a=2"), "a").as_deref(), Some("1"));
        assert_eq!(query_value(Some("a=1&b=x%20y"), "b").as_deref(), Some("x y"));
        assert_eq!(query_value(Some("b=x+y"), "b").as_deref(), Some("x y"));
        assert_eq!(query_value(Some("flag"), "flag").as_deref(), Some(""));
        assert_eq!(query_value(Some("A=1"), "a"), None, "names are case-sensitive");
        assert_eq!(query_value(None, "a"), None);
        assert_eq!(
            query_value(Some("a=%zz%4"), "a").as_deref(),
            Some("%zz%4"),
            "bad escapes kept"
        );
    }
}
