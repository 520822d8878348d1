//! ingress-nginx annotations, accepted under `nginx.ingress.kubernetes.io/` and under our own
//! `mzlb.io/` (which wins when both are set), parsed into a typed per-Ingress [`Policy`].
//! Values are parsed, never interpolated into any configuration or interpreter.
//!
//! Every key under the two prefixes is accounted for, and doubt fails closed:
//! - a security setting mzlb does not enforce (authentication, client certificates, deny-lists,
//!   WAF, snippets, global rate limits), or an allow-list, limit or forced redirect whose value
//!   cannot be used, lands in [`Policy::unenforced`]: the Ingress's routes stay in the table and
//!   answer 503, rather than serve without the protection that was asked for;
//! - a bad value for any other setting is reported and that setting keeps its default, which is
//!   never the less safe choice;
//! - any other key is reported as ignored and the Ingress is served.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::IpNet;

pub mod auth;
pub mod buffers;
pub mod canary;
pub mod cors;
pub mod defaults;
pub mod errors;
pub mod headers;
pub mod redirect;
pub mod snippet;
pub mod tls;
pub mod upstream;

pub use defaults::Defaults;

pub const PREFIXES: [&str; 2] = ["nginx.ingress.kubernetes.io/", "mzlb.io/"];

/// How a backend's endpoints are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BalanceKind {
    #[default]
    RoundRobin,
    /// Peak-EWMA of response time, two random choices (ingress-nginx's `ewma`).
    Ewma,
}

/// How the ALB talks to the backend (`backend-protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendProtocol {
    #[default]
    Http,
    /// TLS to the backend, without certificate verification (ingress-nginx's default).
    Https,
    /// gRPC: HTTP/2 without TLS (prior knowledge) to the backend.
    Grpc,
    /// gRPC over TLS (ALPN h2), without certificate verification, as ingress-nginx.
    Grpcs,
    /// HTTP/1.1, over TLS when the client came over TLS (ingress-nginx's `$scheme://`).
    AutoHttp,
}

impl BackendProtocol {
    /// Whether the backend is spoken to in HTTP/2.
    pub fn is_h2(self) -> bool {
        matches!(self, BackendProtocol::Grpc | BackendProtocol::Grpcs)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAffinity {
    pub name: String,
    pub path: Option<String>,
    pub max_age: Option<u64>,
    pub samesite: Option<String>,
    /// Affinity extras (`session-cookie-expires`, `-secure`, `-domain`, `-change-on-failure`).
    pub extras: upstream::CookieExtras,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitSpec {
    /// Sustained requests per second (per minute with `per_minute`) per client address.
    pub rate: u32,
    /// `limit-rpm` rather than `limit-rps`.
    pub per_minute: bool,
    /// Burst allowed on top, as a multiple of `rps` (ingress-nginx default 5).
    pub burst_multiplier: u32,
}

/// Everything the annotations of one Ingress ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub balance: BalanceKind,
    pub affinity: Option<CookieAffinity>,
    pub rate_limit: Option<RateLimitSpec>,
    /// `limit-rpm`: a second limit, per minute; both apply when both are set.
    pub rate_limit_rpm: Option<RateLimitSpec>,
    /// `limit-allowlist` (`limit-whitelist`): clients the rate and connection limits skip.
    pub limit_exempt: Option<Vec<IpNet>>,
    /// Status of a request refused by the rate limit (cluster `limit-req-status-code`).
    pub limit_req_status: u16,
    /// Status of a request refused by the connection limit (cluster `limit-conn-status-code`).
    pub limit_conn_status: u16,
    /// Concurrent requests allowed per client address (`limit-connections`; 503 beyond).
    pub connection_limit: Option<u32>,
    /// Only these client networks may use the Ingress (403 otherwise).
    pub allow: Option<Vec<IpNet>>,
    /// These client networks may not use the Ingress (403), checked before `allow`.
    pub deny: Option<Vec<IpNet>>,
    /// Largest request body in bytes (413 beyond); `None` is unlimited. Default 1 MiB, as
    /// ingress-nginx.
    pub body_limit: Option<u64>,
    /// `rewrite-target`: paths become regular expressions and the matched URI is rewritten.
    pub rewrite_target: Option<String>,
    pub use_regex: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    pub backend_protocol: BackendProtocol,
    /// Redirect plain HTTP to HTTPS for hosts this Ingress has TLS for (default true).
    pub ssl_redirect: bool,
    /// Redirect plain HTTP to HTTPS even without a TLS section.
    pub force_ssl_redirect: bool,
    /// `upgrade-protocols`: HTTP upgrade tokens (lower-case) this Ingress's routes may splice
    /// besides `websocket`, which is always allowed. Never `h2c`.
    pub upgrade_protocols: Vec<String>,
    /// Annotation keys that make this Ingress fail closed (empty: served normally). Each of its
    /// routes answers 503.
    pub unenforced: Vec<String>,
    pub auth: auth::Auth,
    pub cors: cors::Cors,
    pub redirects: redirect::Redirects,
    pub errors: errors::CustomErrors,
    pub canary_rules: canary::Canary,
    pub upstream: upstream::Upstream,
    pub snippets: snippet::Snippets,
    pub buffers: buffers::Buffers,
    pub tls: tls::TlsPolicy,
    /// `custom-headers`: the ConfigMap (namespace, name) whose fields every response gets;
    /// resolved when the table is compiled (`crate::configmaps::custom_headers`).
    pub custom_headers: Option<(Option<String>, String)>,
}

impl Policy {
    /// Whether routes with this policy must take hyper's path: the fast path serves plain
    /// proxying only, and hands every request that needs more to hyper.
    pub fn needs_hyper(&self) -> bool {
        self.auth.needs_hyper()
            || self.cors.needs_hyper()
            || self.redirects.needs_hyper()
            || self.errors.needs_hyper()
            || self.canary_rules.needs_hyper()
            || self.upstream.needs_hyper()
            || self.snippets.needs_hyper()
            || self.buffers.needs_hyper()
            || self.tls.needs_hyper()
            || self.custom_headers.is_some()
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            balance: BalanceKind::RoundRobin,
            affinity: None,
            rate_limit: None,
            rate_limit_rpm: None,
            limit_exempt: None,
            limit_req_status: 503,
            limit_conn_status: 503,
            connection_limit: None,
            allow: None,
            deny: None,
            body_limit: Some(1 << 20),
            rewrite_target: None,
            use_regex: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            backend_protocol: BackendProtocol::Http,
            ssl_redirect: true,
            force_ssl_redirect: false,
            upgrade_protocols: Vec::new(),
            unenforced: Vec::new(),
            auth: Default::default(),
            cors: Default::default(),
            redirects: Default::default(),
            errors: Default::default(),
            canary_rules: Default::default(),
            upstream: Default::default(),
            snippets: Default::default(),
            buffers: Default::default(),
            tls: Default::default(),
            custom_headers: None,
        }
    }
}

/// What one annotation key/value led to, beyond the policy itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The full key as written, e.g. `nginx.ingress.kubernetes.io/auth-url`.
    pub annotation: String,
    pub value: String,
    pub kind: FindingKind,
    /// Says what happens, e.g. that the Ingress's routes answer 503.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// A value that could not be used; that setting keeps its default (only for settings whose
    /// default is not less safe).
    Invalid,
    /// A security setting mzlb does not enforce, or one whose value could not be used: the
    /// Ingress's routes are kept in the table and refuse every request (503).
    Unenforced,
    /// An annotation mzlb does not know or does not implement, with no security meaning:
    /// ignored, the Ingress is served.
    Ignored,
    /// Honoured, but not exactly as ingress-nginx does it: the message says what differs.
    Differs,
}

impl Finding {
    /// The reason of the Kubernetes event that reports it.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

impl FindingKind {
    /// The Kubernetes event reason for findings of this kind.
    pub fn reason(self) -> &'static str {
        match self {
            FindingKind::Invalid => "InvalidAnnotation",
            FindingKind::Unenforced => "UnsupportedAnnotation",
            FindingKind::Ignored => "IgnoredAnnotation",
            FindingKind::Differs => "AnnotationDiffers",
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation {} = {:?}: {}", self.annotation, self.value, self.message)
    }
}

/// Names mzlb reads (after the prefix). Keys are case-sensitive: `Proxy-Body-Size` is not one.
const READ: [&str; 26] = [
    "affinity",
    "allowlist-source-range",
    "backend-protocol",
    "blacklist-source-range",
    "denylist-source-range",
    "force-ssl-redirect",
    "limit-allowlist",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
    "load-balance",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "rewrite-target",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-samesite",
    "ssl-redirect",
    "upgrade-protocols",
    "use-regex",
    "whitelist-source-range",
];

/// Of [`READ`], those that protect: an unusable value, or a key that matches one only when
/// lower-cased, must not silently mean "no protection".
const PROTECTIVE: [&str; 9] = [
    "allowlist-source-range",
    "whitelist-source-range",
    "denylist-source-range",
    "blacklist-source-range",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "force-ssl-redirect",
];

/// Whether `name` is one mzlb reads, in any family.
fn is_read(name: &str) -> bool {
    READ.contains(&name)
        || [
            auth::READ,
            buffers::READ,
            canary::READ,
            cors::READ,
            errors::READ,
            headers::READ,
            redirect::READ,
            snippet::READ,
            tls::READ,
            upstream::READ,
        ]
        .iter()
        .any(|family| family.contains(&name))
}

/// The parse state: each key is read by its setting or classified at the end, exactly once.
struct Reader<'a> {
    /// The cluster-wide settings that change what annotations mean.
    #[allow(dead_code)] // read by the families that depend on cluster settings
    defaults: &'a Defaults,
    /// Name after the prefix → (key as written, value); the `mzlb.io/` key wins.
    ours: BTreeMap<&'a str, (&'a str, &'a str)>,
    /// Names some setting has dealt with; the rest are classified by [`unread`].
    read: BTreeSet<&'a str>,
    /// At most one per name, so they come out in key order.
    findings: BTreeMap<&'a str, Finding>,
}

impl<'a> Reader<'a> {
    fn new(annotations: Option<&'a BTreeMap<String, String>>, defaults: &'a Defaults) -> Self {
        let mut ours = BTreeMap::new();
        for prefix in PREFIXES {
            for (key, value) in annotations.into_iter().flatten() {
                if let Some(name) = key.strip_prefix(prefix) {
                    ours.insert(name, (key.as_str(), value.as_str())); // later prefix (ours) wins
                }
            }
        }
        Self {
            defaults,
            ours,
            read: BTreeSet::new(),
            findings: BTreeMap::new(),
        }
    }

    /// The trimmed value of `name`, if set; `name` counts as read.
    fn get(&mut self, name: &'a str) -> Option<&'a str> {
        let &(_, value) = self.ours.get(name)?;
        self.read.insert(name);
        Some(value.trim())
    }

    /// Records what `name` led to; nothing if it is not set.
    fn report(&mut self, name: &'a str, kind: FindingKind, message: String) {
        let Some(&(key, value)) = self.ours.get(name) else {
            return;
        };
        self.read.insert(name);
        let finding = Finding {
            annotation: key.to_owned(),
            value: value.to_owned(),
            kind,
            message,
        };
        self.findings.insert(name, finding);
    }

    fn invalid(&mut self, name: &'a str, expected: &str) {
        self.report(name, FindingKind::Invalid, format!("{expected}; the default applies"));
    }

    /// For [`PROTECTIVE`] settings: a value that cannot be used fails closed.
    fn unusable(&mut self, name: &'a str, expected: &str) {
        let message = format!("{expected}; unusable, so the Ingress's routes answer 503 until it is fixed");
        self.report(name, FindingKind::Unenforced, message);
    }

    /// A setting honoured with a difference from ingress-nginx, named in `what`.
    fn differs(&mut self, name: &'a str, what: &str) {
        self.report(
            name,
            FindingKind::Differs,
            format!("honoured; differs from ingress-nginx: {what}"),
        );
    }

    fn ignored(&mut self, name: &'a str, why: &str) {
        self.report(name, FindingKind::Ignored, format!("{why}; ignored"));
    }

    /// Classifies every key no setting read, and hands back the findings in key order.
    fn finish(mut self) -> Vec<Finding> {
        let rest: Vec<(&'a str, &'a str)> = self
            .ours
            .iter()
            .filter(|(name, _)| !self.read.contains(*name))
            .map(|(&name, &(_, value))| (name, value))
            .collect();
        for (name, value) in rest {
            let (kind, message) = unread(name, value);
            self.report(name, kind, message);
        }
        self.findings.into_values().collect()
    }
}

/// Parses the annotations under our prefixes with the default cluster settings.
#[cfg(test)]
pub fn parse(annotations: Option<&BTreeMap<String, String>>) -> (Policy, Vec<Finding>) {
    parse_with(annotations, &Defaults::default())
}

/// For the families' tests: parses `name = value` pairs under `nginx.ingress.kubernetes.io/`
/// with `defaults`; returns the policy and each finding as (name after the prefix, kind).
#[cfg(test)]
pub(crate) fn parse_names(pairs: &[(&str, &str)], defaults: &Defaults) -> (Policy, Vec<(String, FindingKind)>) {
    let annotations: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (format!("{}{k}", PREFIXES[0]), (*v).to_owned()))
        .collect();
    let (p, findings) = parse_with(Some(&annotations), defaults);
    let named = findings
        .into_iter()
        .map(|f| (f.annotation.trim_start_matches(PREFIXES[0]).to_owned(), f.kind))
        .collect();
    (p, named)
}

/// Parses the annotations under our prefixes; returns the policy and what else each key led to.
pub fn parse_with(annotations: Option<&BTreeMap<String, String>>, defaults: &Defaults) -> (Policy, Vec<Finding>) {
    let mut r = Reader::new(annotations, defaults);
    let mut p = Policy {
        body_limit: defaults.body_limit,
        ssl_redirect: defaults.ssl_redirect,
        limit_req_status: defaults.limit_req_status,
        limit_conn_status: defaults.limit_conn_status,
        ..Policy::default()
    };

    if let Some(v) = r.get("load-balance") {
        match v {
            "round_robin" => p.balance = BalanceKind::RoundRobin,
            "ewma" => p.balance = BalanceKind::Ewma,
            _ => r.invalid("load-balance", "expected round_robin or ewma"),
        }
    }
    let cookie_settings = [
        "session-cookie-name",
        "session-cookie-path",
        "session-cookie-max-age",
        "session-cookie-samesite",
    ];
    match r.get("affinity") {
        Some("cookie") => {
            let mut a = CookieAffinity {
                name: "INGRESSCOOKIE".into(),
                path: None,
                max_age: None,
                samesite: None,
                extras: Default::default(),
            };
            if let Some(n) = r.get("session-cookie-name") {
                if is_token(n) {
                    a.name = n.to_owned();
                } else {
                    r.invalid("session-cookie-name", "not a valid cookie name");
                }
            }
            if let Some(path) = r.get("session-cookie-path") {
                if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
                    a.path = Some(path.to_owned());
                } else {
                    r.invalid("session-cookie-path", "must be a path starting with /");
                }
            }
            if let Some(age) = r.get("session-cookie-max-age") {
                match age.parse() {
                    Ok(n) => a.max_age = Some(n),
                    Err(_) => r.invalid("session-cookie-max-age", "expected seconds"),
                }
            }
            if let Some(s) = r.get("session-cookie-samesite") {
                match s {
                    "None" | "Lax" | "Strict" => a.samesite = Some(s.to_owned()),
                    _ => r.invalid("session-cookie-samesite", "expected None, Lax or Strict"),
                }
            }
            p.affinity = Some(a);
        }
        affinity => {
            if affinity.is_some() {
                r.invalid("affinity", "only `cookie` is supported");
            }
            for name in cookie_settings {
                r.ignored(name, "no effect: affinity is not `cookie`");
            }
        }
    }

    // A limit that cannot be used fails closed rather than meaning "unlimited". `0` is no
    // limit, as ingress-nginx reads it (its users write it to switch a limit off).
    const POSITIVE: &str = "expected a whole number (0: no limit)";
    for (name, per_minute) in [("limit-rps", false), ("limit-rpm", true)] {
        if let Some(v) = r.get(name) {
            match positive(v) {
                Some(rate) => {
                    let spec = Some(RateLimitSpec {
                        rate,
                        per_minute,
                        burst_multiplier: 5,
                    });
                    if per_minute {
                        p.rate_limit_rpm = spec;
                    } else {
                        p.rate_limit = spec;
                    }
                }
                None if v == "0" => {}
                None => r.unusable(name, POSITIVE),
            }
        }
    }
    if let Some(v) = r.get("limit-connections") {
        match positive(v) {
            Some(n) => p.connection_limit = Some(n),
            None if v == "0" => {}
            None => r.unusable("limit-connections", POSITIVE),
        }
    }
    if let Some(v) = r.get("limit-burst-multiplier") {
        match positive(v) {
            Some(_) if p.rate_limit.is_none() && p.rate_limit_rpm.is_none() => r.ignored(
                "limit-burst-multiplier",
                "no effect without a usable limit-rps or limit-rpm",
            ),
            // The multiplier applies to both limits, as in ingress-nginx.
            Some(m) => {
                for limit in [p.rate_limit.as_mut(), p.rate_limit_rpm.as_mut()].into_iter().flatten() {
                    limit.burst_multiplier = m;
                }
            }
            None => r.unusable("limit-burst-multiplier", POSITIVE),
        }
    }
    // limit-allowlist is the current name; limit-whitelist counts only when it is absent.
    let exempt = match r.get("limit-allowlist") {
        Some(v) => {
            r.ignored("limit-whitelist", "limit-allowlist is set and wins");
            Some(("limit-allowlist", v))
        }
        None => r.get("limit-whitelist").map(|v| ("limit-whitelist", v)),
    };
    if let Some((name, v)) = exempt {
        match parse_nets(v) {
            Some(nets) => p.limit_exempt = Some(nets),
            None if v.split(',').all(|s| s.trim().is_empty()) => r.ignored(name, "empty, so it exempts nobody"),
            // Exempting nobody is the safe reading of a list that cannot be used.
            None => r.invalid(name, "expected comma-separated CIDRs or addresses"),
        }
    }

    // allowlist- is the current name; whitelist- counts only when it is absent, as in ingress-nginx.
    let allow = match r.get("allowlist-source-range") {
        Some(v) => {
            r.ignored("whitelist-source-range", "allowlist-source-range is set and wins");
            Some(("allowlist-source-range", v))
        }
        None => r.get("whitelist-source-range").map(|v| ("whitelist-source-range", v)),
    };
    if let Some((name, v)) = allow {
        match parse_nets(v) {
            Some(nets) => p.allow = Some(nets),
            None => r.unusable(name, "expected comma-separated CIDRs or addresses"),
        }
    }

    // denylist- is the current name, blacklist- the old one, read the same way as allow-lists.
    let deny = match r.get("denylist-source-range") {
        Some(v) => {
            r.ignored("blacklist-source-range", "denylist-source-range is set and wins");
            Some(("denylist-source-range", v))
        }
        None => r.get("blacklist-source-range").map(|v| ("blacklist-source-range", v)),
    };
    if let Some((name, v)) = deny {
        match parse_nets(v) {
            // Empty denies nobody, as in ingress-nginx.
            None if v.split(',').all(|s| s.trim().is_empty()) => r.ignored(name, "empty, so it asks for nothing"),
            Some(nets) => p.deny = Some(nets),
            None => r.unusable(name, "expected comma-separated CIDRs or addresses"),
        }
    }

    if let Some(v) = r.get("proxy-body-size") {
        match parse_size(v) {
            Some(0) => p.body_limit = None,
            Some(n) => p.body_limit = Some(n),
            None => r.invalid("proxy-body-size", "expected a size such as 8k, 1m or 0 (unlimited)"),
        }
    }
    for (name, slot) in [
        ("proxy-connect-timeout", &mut p.connect_timeout),
        ("proxy-read-timeout", &mut p.read_timeout),
        ("proxy-send-timeout", &mut p.send_timeout),
    ] {
        if let Some(v) = r.get(name) {
            match v.trim_end_matches('s').parse::<u64>() {
                Ok(secs) if secs > 0 => *slot = Duration::from_secs(secs),
                _ => r.invalid(name, "expected seconds"),
            }
        }
    }
    if let Some(v) = r.get("backend-protocol") {
        match v.to_ascii_uppercase().as_str() {
            "HTTP" => p.backend_protocol = BackendProtocol::Http,
            "HTTPS" => p.backend_protocol = BackendProtocol::Https,
            "GRPC" => p.backend_protocol = BackendProtocol::Grpc,
            "GRPCS" => p.backend_protocol = BackendProtocol::Grpcs,
            "AUTO_HTTP" => p.backend_protocol = BackendProtocol::AutoHttp,
            // Speaking HTTP to a FastCGI backend would hand it bytes it reads otherwise.
            "FCGI" => r.unusable("backend-protocol", "FCGI is not supported by mzlb"),
            _ => r.invalid("backend-protocol", "expected HTTP, HTTPS, GRPC, GRPCS or AUTO_HTTP"),
        }
    }

    const BOOL: &str = "expected true or false";
    if let Some(v) = r.get("ssl-redirect") {
        match parse_bool(v) {
            Some(b) => p.ssl_redirect = b,
            None => r.invalid("ssl-redirect", BOOL), // the default redirects
        }
    }
    if let Some(v) = r.get("force-ssl-redirect") {
        match parse_bool(v) {
            Some(b) => p.force_ssl_redirect = b,
            // The default would serve plain HTTP where HTTPS may have been demanded.
            None => r.unusable("force-ssl-redirect", BOOL),
        }
    }
    if let Some(v) = r.get("use-regex") {
        match parse_bool(v) {
            Some(b) => p.use_regex = b,
            None => r.invalid("use-regex", BOOL),
        }
    }
    if let Some(v) = r.get("rewrite-target") {
        if v.starts_with('/') && !v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            p.rewrite_target = Some(v.to_owned());
            p.use_regex = true; // as in ingress-nginx: capture groups need regex paths
        } else {
            r.invalid("rewrite-target", "must be a path starting with /");
        }
    }
    if let Some(v) = r.get("upgrade-protocols") {
        match parse_upgrade_protocols(v) {
            Ok(protocols) => p.upgrade_protocols = protocols,
            Err(message) => r.invalid("upgrade-protocols", &message),
        }
    }

    auth::parse(&mut r, &mut p);
    cors::parse(&mut r, &mut p);
    redirect::parse(&mut r, &mut p);
    errors::parse(&mut r, &mut p);
    canary::parse(&mut r, &mut p);
    upstream::parse(&mut r, &mut p);
    snippet::parse(&mut r, &mut p);
    buffers::parse(&mut r, &mut p);
    tls::parse(&mut r, &mut p);
    headers::parse(&mut r, &mut p);

    let findings = r.finish();
    p.unenforced = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Unenforced)
        .map(|f| f.annotation.clone())
        .collect();
    p.unenforced.sort();
    p.unenforced.dedup();
    (p, findings)
}

/// How a security setting mzlb does not implement fails closed.
enum Guard {
    /// Whatever the value: its meaning depends on other keys (auth) or on what was meant (a key
    /// that matches a [`PROTECTIVE`] one only when lower-cased).
    Always,
    /// An on/off switch: off or empty asks for nothing.
    Switch,
    /// Empty asks for nothing.
    Valued,
}

/// The security families mzlb does not enforce, by lower-cased name: on doubt, fail closed.
fn guard(n: &str) -> Option<Guard> {
    if n.starts_with("auth-") || PROTECTIVE.contains(&n) {
        return Some(Guard::Always);
    }
    match n {
        "enable-modsecurity" | "enable-owasp-core-rules" | "proxy-ssl-verify" => Some(Guard::Switch),
        "satisfy" => Some(Guard::Valued),
        _ if n.starts_with("modsecurity-") || n.ends_with("-snippet") || n.starts_with("global-rate-limit") => {
            Some(Guard::Valued)
        }
        _ => None,
    }
}

/// What a key no setting read leads to.
fn unread(name: &str, value: &str) -> (FindingKind, String) {
    let lower = name.to_ascii_lowercase();
    let n = lower.as_str();
    let v = value.trim().to_ascii_lowercase();
    let other_case = n != name && is_read(n);
    let Some(guard) = guard(n) else {
        let message = if other_case {
            format!("annotation keys are case-sensitive and this is not `{n}`; ignored")
        } else {
            "not supported by mzlb; ignored".to_owned()
        };
        return (FindingKind::Ignored, message);
    };
    let asks_nothing = match guard {
        Guard::Always => false,
        Guard::Switch => matches!(v.as_str(), "" | "false" | "f" | "0" | "off"),
        // `satisfy: all` is nginx's default: without auth it changes nothing.
        Guard::Valued => v.is_empty() || (n == "satisfy" && v == "all"),
    };
    if asks_nothing {
        (
            FindingKind::Ignored,
            "empty or off, so it asks for nothing; ignored".to_owned(),
        )
    } else if other_case {
        let message = format!(
            "annotation keys are case-sensitive and this is not `{n}`, so mzlb does not read it: \
             the Ingress's routes answer 503 until it is fixed"
        );
        (FindingKind::Unenforced, message)
    } else {
        let message = "not enforced by mzlb: the Ingress's routes answer 503 until it is removed".to_owned();
        (FindingKind::Unenforced, message)
    }
}

fn positive(v: &str) -> Option<u32> {
    v.parse().ok().filter(|&n| n > 0)
}

/// The values Go's `strconv.ParseBool` accepts, which is what ingress-nginx reads booleans with.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" | "t" | "T" | "1" => Some(true),
        "false" | "False" | "FALSE" | "f" | "F" | "0" => Some(false),
        _ => None,
    }
}

/// Comma-separated CIDRs or addresses; empty items are skipped, but the list must name one.
fn parse_nets(v: &str) -> Option<Vec<IpNet>> {
    let nets: Vec<IpNet> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .ok()
        })
        .collect::<Option<_>>()?;
    (!nets.is_empty()).then_some(nets)
}

/// Comma-separated upgrade tokens, lower-cased and deduplicated; empty items are skipped.
fn parse_upgrade_protocols(v: &str) -> Result<Vec<String>, String> {
    let mut protocols: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !is_token(item) {
            return Err(format!("expected comma-separated upgrade tokens; {item:?} is not one"));
        }
        let protocol = item.to_ascii_lowercase();
        // h2c would let a client speak HTTP/2 to the backend past every per-request check.
        if protocol == "h2c" {
            return Err("h2c is never allowed".to_owned());
        }
        if !protocols.contains(&protocol) {
            protocols.push(protocol);
        }
    }
    Ok(protocols)
}

/// nginx sizes: a number with an optional k/m/g suffix (either case).
fn parse_size(v: &str) -> Option<u64> {
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, ' '),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        ' ' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// An RFC 9110 token: cookie names and upgrade protocol names are both this.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::FindingKind::{Ignored, Invalid, Unenforced};
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The full key under `nginx.ingress.kubernetes.io/`.
    macro_rules! n {
        ($name:literal) => {
            concat!("nginx.ingress.kubernetes.io/", $name)
        };
    }
    /// The full key under `mzlb.io/`.
    macro_rules! m {
        ($name:literal) => {
            concat!("mzlb.io/", $name)
        };
    }

    #[test]
    fn parses_the_common_ingress_nginx_annotations() {
        let a = annotations(&[
            (n!("load-balance"), "ewma"),
            (n!("affinity"), "cookie"),
            (n!("session-cookie-name"), "route"),
            (n!("session-cookie-max-age"), "3600"),
            (n!("session-cookie-samesite"), "Lax"),
            (n!("limit-rps"), "10"),
            (n!("limit-burst-multiplier"), "2"),
            (n!("whitelist-source-range"), "10.0.0.0/8, 192.0.2.1"),
            (n!("proxy-body-size"), "8k"),
            (n!("proxy-read-timeout"), "5"),
            (n!("rewrite-target"), "/$2"),
            (m!("limit-rps"), "20"),
        ]);
        let (p, findings) = parse(Some(&a));
        assert!(findings.is_empty(), "{findings:?}");
        assert!(p.unenforced.is_empty());
        assert_eq!(p.balance, BalanceKind::Ewma);
        let affinity = p.affinity.unwrap();
        assert_eq!(
            (affinity.name.as_str(), affinity.max_age, affinity.samesite.as_deref()),
            ("route", Some(3600), Some("Lax"))
        );
        assert_eq!(
            p.rate_limit,
            Some(RateLimitSpec {
                rate: 20,
                per_minute: false,
                burst_multiplier: 2
            }),
            "mzlb.io/ wins"
        );
        assert_eq!(p.allow.unwrap().len(), 2);
        assert_eq!(p.body_limit, Some(8192));
        assert_eq!(p.read_timeout, Duration::from_secs(5));
        assert!(p.use_regex && p.rewrite_target.as_deref() == Some("/$2"));
    }

    #[test]
    fn no_annotations_is_the_default_policy() {
        assert_eq!(parse(None), (Policy::default(), Vec::new()));
        assert_eq!(parse(Some(&BTreeMap::new())), (Policy::default(), Vec::new()));
    }

    #[test]
    fn bad_values_are_reported_and_fall_back_to_defaults_or_fail_closed() {
        let a = annotations(&[
            (n!("load-balance"), "fastest"),
            (n!("limit-rps"), "-3"),
            (n!("proxy-body-size"), "lots"),
            (n!("whitelist-source-range"), "10.0.0.0/33"),
            (n!("rewrite-target"), "$(rm -rf /)"),
        ]);
        let (p, findings) = parse(Some(&a));
        // The protective settings fail closed; the others keep their defaults.
        assert_eq!(p.unenforced, [n!("limit-rps"), n!("whitelist-source-range")]);
        assert_eq!(
            Policy {
                unenforced: Vec::new(),
                ..p
            },
            Policy::default()
        );
        let got: Vec<(&str, FindingKind)> = findings.iter().map(|f| (f.annotation.as_str(), f.kind)).collect();
        assert_eq!(
            got,
            [
                (n!("limit-rps"), Unenforced),
                (n!("load-balance"), Invalid),
                (n!("proxy-body-size"), Invalid),
                (n!("rewrite-target"), Invalid),
                (n!("whitelist-source-range"), Unenforced),
            ]
        );
        assert_eq!(
            findings[1].to_string(),
            format!(
                "annotation {} = \"fastest\": expected round_robin or ewma; the default applies",
                n!("load-balance")
            )
        );
    }

    #[test]
    fn backend_protocols_as_ingress_nginx() {
        for (value, expected) in [
            ("https", BackendProtocol::Https),
            ("HTTP", BackendProtocol::Http),
            ("GRPC", BackendProtocol::Grpc),
            ("grpcs", BackendProtocol::Grpcs),
            ("AUTO_HTTP", BackendProtocol::AutoHttp),
        ] {
            let (p, findings) = parse(Some(&annotations(&[(n!("backend-protocol"), value)])));
            assert_eq!((p.backend_protocol, findings.len()), (expected, 0), "{value}");
        }
        // FastCGI would be spoken to in HTTP: refused, the routes answer 503.
        let (p, findings) = parse(Some(&annotations(&[(m!("backend-protocol"), "FCGI")])));
        assert_eq!(p.unenforced, [m!("backend-protocol")]);
        assert_eq!(findings[0].kind, Unenforced);
        for bad in ["HTTP/2", "h2c", "", "GRPC\r\nX: y", "AUTO"] {
            let (p, findings) = parse(Some(&annotations(&[(n!("backend-protocol"), bad)])));
            assert_eq!(p.backend_protocol, BackendProtocol::Http, "{bad:?}");
            assert_eq!(findings[0].kind, Invalid, "{bad:?}");
        }
    }

    #[test]
    fn sizes_follow_nginx() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size(""), None);
    }

    /// (annotations) → (expected `unenforced`, expected findings in order).
    type Row = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static [(&'static str, FindingKind)],
    );

    const ROWS: &[Row] = &[
        // Authentication: every auth-* key, whatever its value.
        (&[(n!("auth-url"), "https://auth.example/check")], &[], &[]),
        (
            &[(n!("auth-url"), "auth.example/check")],
            &[n!("auth-url")],
            &[(n!("auth-url"), Unenforced)],
        ),
        (
            &[
                (n!("auth-type"), "basic"),
                (n!("auth-secret"), "htpasswd"),
                (n!("auth-realm"), "Restricted"),
            ],
            &[],
            &[],
        ),
        (
            &[(n!("auth-type"), "digest"), (n!("auth-secret"), "htpasswd")],
            &[n!("auth-type")],
            &[(n!("auth-type"), Unenforced)],
        ),
        (
            &[
                (m!("auth-signin"), "https://login.example/start"),
                (m!("auth-response-headers"), "X-User"),
                (m!("auth-method"), "GET"),
                (m!("auth-snippet"), "proxy_set_header X-A b;"),
                (m!("auth-cache-key"), "$remote_user"),
                (m!("auth-keepalive-timeout"), "60"),
                (m!("auth-proxy-set-headers"), "ns/headers"),
                (m!("auth-always-set-cookie"), "false"),
                (m!("auth-request-redirect"), "/"),
                (m!("auth-secret-type"), "auth-map"),
            ],
            &[
                m!("auth-always-set-cookie"),
                m!("auth-cache-key"),
                m!("auth-keepalive-timeout"),
                m!("auth-method"),
                m!("auth-proxy-set-headers"),
                m!("auth-request-redirect"),
                m!("auth-response-headers"),
                m!("auth-secret-type"),
                m!("auth-signin"),
                m!("auth-snippet"),
            ],
            &[
                (m!("auth-always-set-cookie"), Unenforced),
                (m!("auth-cache-key"), Unenforced),
                (m!("auth-keepalive-timeout"), Unenforced),
                (m!("auth-method"), Unenforced),
                (m!("auth-proxy-set-headers"), Unenforced),
                (m!("auth-request-redirect"), Unenforced),
                (m!("auth-response-headers"), Unenforced),
                (m!("auth-secret-type"), Unenforced),
                (m!("auth-signin"), Unenforced),
                (m!("auth-snippet"), Unenforced),
            ],
        ),
        // Client certificates: read; a setting without the CA to verify against fails closed.
        (
            &[
                (n!("auth-tls-secret"), "ns/ca"),
                (n!("auth-tls-verify-client"), "on"),
                (n!("auth-tls-verify-depth"), "1"),
                (n!("auth-tls-pass-certificate-to-upstream"), "true"),
                (n!("auth-tls-error-page"), "https://example/denied"),
                (n!("auth-tls-match-cn"), "CN=client"),
            ],
            &[],
            &[],
        ),
        (
            &[(n!("auth-tls-verify-client"), "off")],
            &[n!("auth-tls-verify-client")],
            &[(n!("auth-tls-verify-client"), Unenforced)],
        ),
        // Deny-lists, and their old name: enforced; an unusable one fails closed.
        (&[(n!("denylist-source-range"), "203.0.113.0/24")], &[], &[]),
        (&[(m!("blacklist-source-range"), "203.0.113.7")], &[], &[]),
        (
            &[(n!("denylist-source-range"), "203.0.113.0/33")],
            &[n!("denylist-source-range")],
            &[(n!("denylist-source-range"), Unenforced)],
        ),
        (
            &[(n!("denylist-source-range"), " ")],
            &[],
            &[(n!("denylist-source-range"), Ignored)],
        ),
        // satisfy: only `any` changes anything.
        (
            &[(n!("satisfy"), "any")],
            &[n!("satisfy")],
            &[(n!("satisfy"), Unenforced)],
        ),
        (&[(n!("satisfy"), "")], &[], &[(n!("satisfy"), Ignored)]),
        (&[(n!("satisfy"), "all")], &[], &[(n!("satisfy"), Ignored)]),
        // WAF switches: off asks for nothing, on (or anything unclear) fails closed.
        (
            &[(n!("enable-modsecurity"), "true")],
            &[n!("enable-modsecurity")],
            &[(n!("enable-modsecurity"), Unenforced)],
        ),
        (
            &[(n!("enable-modsecurity"), "false")],
            &[],
            &[(n!("enable-modsecurity"), Ignored)],
        ),
        (
            &[(n!("enable-modsecurity"), "yes")],
            &[n!("enable-modsecurity")],
            &[(n!("enable-modsecurity"), Unenforced)],
        ),
        (
            &[(n!("enable-owasp-core-rules"), "True")],
            &[n!("enable-owasp-core-rules")],
            &[(n!("enable-owasp-core-rules"), Unenforced)],
        ),
        (
            &[(n!("enable-owasp-core-rules"), "OFF")],
            &[],
            &[(n!("enable-owasp-core-rules"), Ignored)],
        ),
        (
            &[
                (n!("modsecurity-snippet"), "SecRuleEngine On"),
                (n!("modsecurity-transaction-id"), "$request_id"),
            ],
            &[n!("modsecurity-snippet"), n!("modsecurity-transaction-id")],
            &[
                (n!("modsecurity-snippet"), Unenforced),
                (n!("modsecurity-transaction-id"), Unenforced),
            ],
        ),
        (
            &[(n!("modsecurity-snippet"), "\n")],
            &[],
            &[(n!("modsecurity-snippet"), Ignored)],
        ),
        // Snippets: raw nginx configuration is never interpreted; an empty one asks for nothing.
        (
            &[(n!("configuration-snippet"), "more_set_headers \"X: $(id)\";")],
            &[n!("configuration-snippet")],
            &[(n!("configuration-snippet"), Unenforced)],
        ),
        (
            &[
                (n!("server-snippet"), "location /metrics { deny all; }"),
                (m!("stream-snippet"), "x"),
            ],
            &[m!("stream-snippet"), n!("server-snippet")],
            &[(n!("server-snippet"), Unenforced), (m!("stream-snippet"), Unenforced)],
        ),
        (
            &[(n!("configuration-snippet"), "  \n ")],
            &[],
            &[(n!("configuration-snippet"), Ignored)],
        ),
        // Rate limits mzlb does not implement.
        (
            &[
                (n!("global-rate-limit"), "100"),
                (n!("global-rate-limit-window"), "1m"),
                (n!("global-rate-limit-key"), "$remote_addr"),
            ],
            &[
                n!("global-rate-limit"),
                n!("global-rate-limit-key"),
                n!("global-rate-limit-window"),
            ],
            &[
                (n!("global-rate-limit"), Unenforced),
                (n!("global-rate-limit-key"), Unenforced),
                (n!("global-rate-limit-window"), Unenforced),
            ],
        ),
        // limit-rpm: read like limit-rps (both apply); unusable fails closed.
        (&[(n!("limit-rpm"), "600")], &[], &[]),
        (
            &[(n!("limit-rpm"), "ten")],
            &[n!("limit-rpm")],
            &[(n!("limit-rpm"), Unenforced)],
        ),
        // limit-allowlist exempts clients from limits: an unusable one exempts nobody.
        (&[(n!("limit-allowlist"), "10.0.0.0/8")], &[], &[]),
        (
            &[(n!("limit-whitelist"), "10.0.0.0/99")],
            &[],
            &[(n!("limit-whitelist"), Invalid)],
        ),
        (
            &[(n!("limit-allowlist"), "10.0.0.1"), (n!("limit-whitelist"), "10.0.0.2")],
            &[],
            &[(n!("limit-whitelist"), Ignored)],
        ),
        // Backend certificate verification is not done: asking for it fails closed.
        (
            &[(n!("proxy-ssl-verify"), "on")],
            &[n!("proxy-ssl-verify")],
            &[(n!("proxy-ssl-verify"), Unenforced)],
        ),
        (
            &[(n!("proxy-ssl-verify"), "off")],
            &[],
            &[(n!("proxy-ssl-verify"), Ignored)],
        ),
        // Allow-lists: an unusable one fails closed; empty items between commas are skipped.
        (
            &[(n!("whitelist-source-range"), "10.0.0.0/33")],
            &[n!("whitelist-source-range")],
            &[(n!("whitelist-source-range"), Unenforced)],
        ),
        (
            &[(n!("whitelist-source-range"), "")],
            &[n!("whitelist-source-range")],
            &[(n!("whitelist-source-range"), Unenforced)],
        ),
        (
            &[(n!("allowlist-source-range"), " , ")],
            &[n!("allowlist-source-range")],
            &[(n!("allowlist-source-range"), Unenforced)],
        ),
        (
            &[(n!("allowlist-source-range"), "10.0.0.0/8, example.com")],
            &[n!("allowlist-source-range")],
            &[(n!("allowlist-source-range"), Unenforced)],
        ),
        (&[(n!("whitelist-source-range"), "10.0.0.0/8,,")], &[], &[]),
        (
            &[
                (m!("allowlist-source-range"), "10.0.0.0/8"),
                (n!("whitelist-source-range"), "192.0.2.0/24"),
            ],
            &[],
            &[(n!("whitelist-source-range"), Ignored)],
        ),
        (
            &[
                (m!("allowlist-source-range"), "10.0.0.0/8/8"),
                (n!("whitelist-source-range"), "192.0.2.0/24"),
            ],
            &[m!("allowlist-source-range")],
            &[
                (m!("allowlist-source-range"), Unenforced),
                (n!("whitelist-source-range"), Ignored),
            ],
        ),
        // Limits: an unusable one fails closed rather than meaning "unlimited".
        // `0` is no limit, as in ingress-nginx: nothing to enforce, nothing to report.
        (&[(n!("limit-rps"), "0")], &[], &[]),
        (
            &[(n!("limit-rps"), "00")],
            &[n!("limit-rps")],
            &[(n!("limit-rps"), Unenforced)],
        ),
        (
            &[(n!("limit-rps"), "-1")],
            &[n!("limit-rps")],
            &[(n!("limit-rps"), Unenforced)],
        ),
        (
            &[(n!("limit-rps"), "ten")],
            &[n!("limit-rps")],
            &[(n!("limit-rps"), Unenforced)],
        ),
        (
            &[(m!("limit-rps"), "99999999999")],
            &[m!("limit-rps")],
            &[(m!("limit-rps"), Unenforced)],
        ),
        (&[(n!("limit-connections"), "0")], &[], &[]),
        (
            &[(n!("limit-rps"), "5"), (n!("limit-burst-multiplier"), "x")],
            &[n!("limit-burst-multiplier")],
            &[(n!("limit-burst-multiplier"), Unenforced)],
        ),
        (
            &[(n!("limit-burst-multiplier"), "3")],
            &[],
            &[(n!("limit-burst-multiplier"), Ignored)],
        ),
        // Redirects: a garbled force-ssl-redirect may have meant true; ssl-redirect defaults to true.
        (
            &[(n!("force-ssl-redirect"), "yes")],
            &[n!("force-ssl-redirect")],
            &[(n!("force-ssl-redirect"), Unenforced)],
        ),
        (
            &[(n!("force-ssl-redirect"), "True"), (n!("ssl-redirect"), "0")],
            &[],
            &[],
        ),
        (&[(n!("ssl-redirect"), "yes")], &[], &[(n!("ssl-redirect"), Invalid)]),
        // Both prefixes: the mzlb.io/ key wins and is the one reported.
        (
            &[(n!("auth-url"), "https://a.example"), (m!("auth-url"), "b.example")],
            &[m!("auth-url")],
            &[(m!("auth-url"), Unenforced)],
        ),
        (
            &[
                (n!("configuration-snippet"), "deny all;"),
                (m!("configuration-snippet"), ""),
            ],
            &[],
            &[(m!("configuration-snippet"), Ignored)],
        ),
        (
            &[(n!("proxy-buffering"), "on"), (m!("proxy-buffering"), "off")],
            &[],
            &[(m!("proxy-buffering"), Ignored)],
        ),
        // Unknown keys, without security meaning: ignored.
        (
            &[
                (n!("proxy-buffering"), "on"),
                (n!("app-root"), "/app"),
                (n!("canary"), "true"),
                (m!("no-such-thing"), "1"),
            ],
            &[],
            &[(m!("no-such-thing"), Ignored), (n!("proxy-buffering"), Ignored)],
        ),
        // Keys are case-sensitive, but a security family in any case fails closed.
        (
            &[(n!("Auth-URL"), "https://auth.example")],
            &[n!("Auth-URL")],
            &[(n!("Auth-URL"), Unenforced)],
        ),
        (
            &[(n!("CONFIGURATION-SNIPPET"), "deny all;")],
            &[n!("CONFIGURATION-SNIPPET")],
            &[(n!("CONFIGURATION-SNIPPET"), Unenforced)],
        ),
        (
            &[(n!("Configuration-Snippet"), "")],
            &[],
            &[(n!("Configuration-Snippet"), Ignored)],
        ),
        (
            &[(m!("Limit-RPS"), "10")],
            &[m!("Limit-RPS")],
            &[(m!("Limit-RPS"), Unenforced)],
        ),
        (
            &[(n!("Whitelist-Source-Range"), "10.0.0.0/8")],
            &[n!("Whitelist-Source-Range")],
            &[(n!("Whitelist-Source-Range"), Unenforced)],
        ),
        (
            &[(n!("Proxy-Body-Size"), "8m")],
            &[],
            &[(n!("Proxy-Body-Size"), Ignored)],
        ),
        // A key that is exactly a prefix names nothing.
        (&[(n!(""), "x")], &[], &[(n!(""), Ignored)]),
        (&[(n!(""), "x"), (m!(""), "")], &[], &[(m!(""), Ignored)]),
        // Outside our prefixes: none of our business.
        (
            &[
                ("kubernetes.io/ingress.class", "nginx"),
                ("cert-manager.io/cluster-issuer", "letsencrypt"),
                ("example.com/auth-url", "https://auth.example"),
                ("Nginx.Ingress.Kubernetes.io/auth-url", "https://auth.example"),
                ("nginx.ingress.kubernetes.io", "x"),
                ("nginx.org/server-snippets", "x"),
            ],
            &[],
            &[],
        ),
        // upgrade-protocols: RFC 9110 tokens; h2c never.
        (&[(m!("upgrade-protocols"), "foo, Bar,,websocket")], &[], &[]),
        (&[(n!("upgrade-protocols"), "")], &[], &[]),
        (
            &[(m!("upgrade-protocols"), "h2c")],
            &[],
            &[(m!("upgrade-protocols"), Invalid)],
        ),
        (
            &[(m!("upgrade-protocols"), "foo, H2C")],
            &[],
            &[(m!("upgrade-protocols"), Invalid)],
        ),
        (
            &[(m!("upgrade-protocols"), "a b")],
            &[],
            &[(m!("upgrade-protocols"), Invalid)],
        ),
        (
            &[(m!("upgrade-protocols"), "foo/1")],
            &[],
            &[(m!("upgrade-protocols"), Invalid)],
        ),
        // Session-cookie settings count only with cookie affinity.
        (
            &[
                (n!("affinity"), "cookie"),
                (n!("session-cookie-name"), "route"),
                (n!("session-cookie-path"), "/"),
            ],
            &[],
            &[],
        ),
        (
            &[
                (n!("session-cookie-name"), "route"),
                (n!("session-cookie-max-age"), "60"),
            ],
            &[],
            &[
                (n!("session-cookie-max-age"), Ignored),
                (n!("session-cookie-name"), Ignored),
            ],
        ),
        (
            &[(n!("affinity"), "ip"), (n!("session-cookie-samesite"), "Lax")],
            &[],
            &[(n!("affinity"), Invalid), (n!("session-cookie-samesite"), Ignored)],
        ),
        (
            &[(n!("affinity"), "cookie"), (n!("session-cookie-name"), "a b")],
            &[],
            &[(n!("session-cookie-name"), Invalid)],
        ),
        // Findings come in key order, across kinds and prefixes.
        (
            &[
                (n!("proxy-buffering"), "on"),
                (n!("load-balance"), "random"),
                (m!("auth-url"), "auth.example"),
                (n!("backend-protocol"), "HTTP/3"),
            ],
            &[m!("auth-url")],
            &[
                (m!("auth-url"), Unenforced),
                (n!("backend-protocol"), Invalid),
                (n!("load-balance"), Invalid),
                (n!("proxy-buffering"), Ignored),
            ],
        ),
    ];

    #[test]
    fn every_key_under_our_prefixes_lands_in_its_class() {
        for (i, (pairs, unenforced, expected)) in ROWS.iter().enumerate() {
            let (p, findings) = parse(Some(&annotations(pairs)));
            assert_eq!(p.unenforced, *unenforced, "row {i}: {pairs:?}");
            let got: Vec<(&str, FindingKind)> = findings.iter().map(|f| (f.annotation.as_str(), f.kind)).collect();
            assert_eq!(got, *expected, "row {i}: {pairs:?}");
            for f in &findings {
                let shown = f.to_string();
                assert!(
                    shown.starts_with(&format!("annotation {} = {:?}: ", f.annotation, f.value)),
                    "{shown}"
                );
                let (reason, says) = match f.kind {
                    Invalid => ("InvalidAnnotation", "the default applies"),
                    Unenforced => ("UnsupportedAnnotation", "answer 503"),
                    Ignored => ("IgnoredAnnotation", "ignored"),
                    FindingKind::Differs => ("AnnotationDiffers", "differs from ingress-nginx"),
                };
                assert_eq!(f.reason(), reason);
                assert!(f.message.contains(says), "row {i}: {shown}");
            }
        }
    }

    /// The 40 annotations found most often in public manifests, and those asked for in
    /// migrations (/work/shared/ingress-nginx-annotations.md), each alone with a typical value:
    /// `None` is read with no finding.
    #[test]
    fn the_most_used_ingress_nginx_annotations_land_in_their_class() {
        let table: &[(&str, &str, Option<FindingKind>)] = &[
            ("proxy-body-size", "50m", None),
            ("backend-protocol", "HTTPS", None),
            ("backend-protocol", "GRPC", None),
            ("backend-protocol", "GRPCS", None),
            ("backend-protocol", "AUTO_HTTP", None),
            ("backend-protocol", "FCGI", Some(Unenforced)),
            (
                "configuration-snippet",
                "proxy_set_header X-Real-IP $remote_addr;",
                Some(Unenforced),
            ),
            ("ssl-redirect", "false", None),
            ("auth-url", "http://oauth2-proxy.auth.svc/oauth2/auth", None),
            (
                "auth-signin",
                "https://$host/oauth2/start?rd=$escaped_request_uri",
                Some(Unenforced),
            ),
            ("whitelist-source-range", "10.0.0.0/8,192.168.0.0/16", None),
            ("auth-response-headers", "X-Auth-Request-User", Some(Unenforced)),
            ("proxy-read-timeout", "3600", None),
            ("force-ssl-redirect", "true", None),
            ("proxy-send-timeout", "3600", None),
            ("proxy-buffering", "on", Some(Ignored)),
            (
                "auth-snippet",
                "proxy_set_header X-Forwarded-Host $http_host;",
                Some(Unenforced),
            ),
            ("proxy-request-buffering", "off", None), // mzlb's default: streamed
            ("proxy-buffer-size", "16k", None),
            ("rewrite-target", "/$1", None),
            ("server-snippet", "location /metrics { return 403; }", Some(Unenforced)),
            ("auth-secret", "basic-auth", Some(Unenforced)),
            ("proxy-connect-timeout", "30", None),
            ("auth-type", "basic", Some(Unenforced)),
            ("ssl-passthrough", "true", None),
            ("auth-method", "GET", Some(Unenforced)),
            ("affinity", "cookie", None),
            ("use-regex", "true", None),
            ("session-cookie-name", "route", Some(Ignored)), // alone: affinity is not cookie
            ("client-body-buffer-size", "1m", Some(Ignored)), // alone: the body streams
            ("session-cookie-expires", "172800", Some(Ignored)), // alone: affinity is not cookie
            ("session-cookie-max-age", "172800", Some(Ignored)), // alone: affinity is not cookie
            ("auth-realm", "Authentication Required", Some(Unenforced)),
            ("proxy-buffers-number", "8", Some(Ignored)),
            ("app-root", "/app", None),
            ("service-upstream", "true", None),
            ("custom-http-errors", "404,503", None),
            ("enable-cors", "true", None),
            ("cors-allow-headers", "DNT,Authorization", Some(Ignored)),
            ("upstream-hash-by", "$request_uri", Some(FindingKind::Differs)),
            ("cors-allow-origin", "https://example.com", Some(Ignored)),
            ("limit-rps", "10", None),
            ("canary", "true", None),
            ("canary-weight", "20", Some(Ignored)), // alone: canary is not "true"
            // Beyond the top 40.
            ("auth-tls-secret", "ns/ca", None),
            ("auth-tls-verify-client", "optional", Some(Unenforced)),
            ("auth-tls-verify-depth", "2", Some(Unenforced)),
            ("auth-tls-pass-certificate-to-upstream", "false", Some(Unenforced)),
            ("denylist-source-range", "198.51.100.0/24", None),
            ("permanent-redirect", "https://example.com", None),
            ("temporal-redirect", "https://example.com", None),
            ("from-to-www-redirect", "true", None),
            ("upstream-vhost", "internal.example", None),
            ("x-forwarded-prefix", "/api", None),
            ("canary-by-header", "X-Canary", Some(Ignored)), // alone: canary is not "true"
            ("canary-by-header-value", "always", Some(Ignored)),
            ("canary-by-cookie", "canary", Some(Ignored)),
            ("proxy-next-upstream-tries", "3", None),
            ("default-backend", "fallback", None),
            ("custom-headers", "ns/headers", None), // resolved when the table is compiled
            // The rest of what mzlb reads.
            ("load-balance", "ewma", None),
            ("limit-connections", "20", None),
            ("allowlist-source-range", "192.0.2.0/24", None),
            ("upgrade-protocols", "connect-udp", None),
        ];
        for &(name, value, kind) in table {
            let key = format!("{}{name}", PREFIXES[0]);
            let (p, findings) = parse(Some(&annotations(&[(&key, value)])));
            let got: Vec<FindingKind> = findings.iter().map(|f| f.kind).collect();
            assert_eq!(got, Vec::from_iter(kind), "{key}: {findings:?}");
            assert_eq!(p.unenforced.is_empty(), kind != Some(Unenforced), "{key}");
        }
    }

    #[test]
    fn usable_values_reach_the_policy() {
        let (p, _) = parse(Some(&annotations(&[(n!("whitelist-source-range"), "10.0.0.0/8,,")])));
        assert_eq!(p.allow, Some(vec!["10.0.0.0/8".parse().unwrap()]));
        let (p, _) = parse(Some(&annotations(&[(
            m!("upgrade-protocols"),
            "foo, Bar,,websocket,FOO",
        )])));
        assert_eq!(p.upgrade_protocols, ["foo", "bar", "websocket"]);
        let (p, _) = parse(Some(&annotations(&[(m!("upgrade-protocols"), "foo, h2c")])));
        assert!(p.upgrade_protocols.is_empty(), "a list naming h2c is rejected whole");
        let (p, _) = parse(Some(&annotations(&[
            (n!("force-ssl-redirect"), "True"),
            (n!("ssl-redirect"), "0"),
        ])));
        assert!(p.force_ssl_redirect && !p.ssl_redirect);
        let (p, _) = parse(Some(&annotations(&[(n!("limit-burst-multiplier"), "3")])));
        assert_eq!(p.rate_limit, None);
    }

    #[test]
    fn unenforced_lists_each_key_once_sorted() {
        let a = annotations(&[
            (n!("satisfy"), "any"),
            (n!("auth-url"), "https://a.example"),
            (m!("auth-url"), "b.example"),
            (m!("configuration-snippet"), "deny all;"),
        ]);
        let (p, findings) = parse(Some(&a));
        assert_eq!(
            p.unenforced,
            [m!("auth-url"), m!("configuration-snippet"), n!("satisfy")]
        );
        assert_eq!(findings.len(), 3);
    }
}
