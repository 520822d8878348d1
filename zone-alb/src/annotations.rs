//! ingress-nginx annotations, accepted under `nginx.ingress.kubernetes.io/` and under our own
//! `mzlb.io/` (which wins when both are set), parsed into a typed per-Ingress [`Policy`].
//! Values are parsed, never interpolated into any configuration or interpreter. A bad value is
//! reported (naming the annotation and value) and that one setting falls back to its default;
//! the rest of the Ingress still works.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;

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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAffinity {
    pub name: String,
    pub path: Option<String>,
    pub max_age: Option<u64>,
    pub samesite: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Sustained requests per second per client address.
    pub rps: u32,
    /// Burst allowed on top, as a multiple of `rps` (ingress-nginx default 5).
    pub burst_multiplier: u32,
}

/// Everything the annotations of one Ingress ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub balance: BalanceKind,
    pub affinity: Option<CookieAffinity>,
    pub rate_limit: Option<RateLimitSpec>,
    /// Concurrent requests allowed per client address (`limit-connections`; 503 beyond).
    pub connection_limit: Option<u32>,
    /// Only these client networks may use the Ingress (403 otherwise).
    pub allow: Option<Vec<IpNet>>,
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
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            balance: BalanceKind::RoundRobin,
            affinity: None,
            rate_limit: None,
            connection_limit: None,
            allow: None,
            body_limit: Some(1 << 20),
            rewrite_target: None,
            use_regex: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            backend_protocol: BackendProtocol::Http,
            ssl_redirect: true,
            force_ssl_redirect: false,
        }
    }
}

/// A value that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationError {
    pub annotation: String,
    pub value: String,
    pub message: String,
}

impl std::fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation {} = {:?}: {}", self.annotation, self.value, self.message)
    }
}

/// Parses the annotations we understand; returns the policy and the values it rejected.
pub fn parse(annotations: Option<&BTreeMap<String, String>>) -> (Policy, Vec<AnnotationError>) {
    let mut ours: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for prefix in PREFIXES {
        for (key, value) in annotations.into_iter().flatten() {
            if let Some(name) = key.strip_prefix(prefix) {
                ours.insert(name, (key.as_str(), value.as_str())); // later prefix (ours) wins
            }
        }
    }
    let mut p = Policy::default();
    let mut errors = Vec::new();
    let mut bad = |name: &str, message: String| {
        let (key, value) = ours[name];
        errors.push(AnnotationError {
            annotation: key.to_owned(),
            value: value.to_owned(),
            message,
        });
    };
    let get = |name: &str| ours.get(name).map(|(_, v)| v.trim());

    if let Some(v) = get("load-balance") {
        match v {
            "round_robin" => p.balance = BalanceKind::RoundRobin,
            "ewma" => p.balance = BalanceKind::Ewma,
            _ => bad("load-balance", "expected round_robin or ewma".into()),
        }
    }
    if let Some(v) = get("affinity") {
        match v {
            "cookie" => {
                let mut a = CookieAffinity {
                    name: "INGRESSCOOKIE".into(),
                    path: None,
                    max_age: None,
                    samesite: None,
                };
                if let Some(n) = get("session-cookie-name") {
                    if is_cookie_token(n) {
                        a.name = n.to_owned();
                    } else {
                        bad("session-cookie-name", "not a valid cookie name".into());
                    }
                }
                if let Some(path) = get("session-cookie-path") {
                    if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
                        a.path = Some(path.to_owned());
                    } else {
                        bad("session-cookie-path", "must be a path starting with /".into());
                    }
                }
                if let Some(age) = get("session-cookie-max-age") {
                    match age.parse() {
                        Ok(n) => a.max_age = Some(n),
                        Err(_) => bad("session-cookie-max-age", "expected seconds".into()),
                    }
                }
                if let Some(s) = get("session-cookie-samesite") {
                    match s {
                        "None" | "Lax" | "Strict" => a.samesite = Some(s.to_owned()),
                        _ => bad("session-cookie-samesite", "expected None, Lax or Strict".into()),
                    }
                }
                p.affinity = Some(a);
            }
            _ => bad("affinity", "only `cookie` is supported".into()),
        }
    }
    if let Some(v) = get("limit-rps") {
        match v.parse::<u32>() {
            Ok(rps) if rps > 0 => {
                p.rate_limit = Some(RateLimitSpec {
                    rps,
                    burst_multiplier: 5,
                })
            }
            _ => bad("limit-rps", "expected a positive whole number".into()),
        }
    }
    if let Some(v) = get("limit-connections") {
        match v.parse::<u32>() {
            Ok(n) if n > 0 => p.connection_limit = Some(n),
            _ => bad("limit-connections", "expected a positive whole number".into()),
        }
    }
    if let Some(v) = get("limit-burst-multiplier") {
        match (v.parse::<u32>(), p.rate_limit.as_mut()) {
            (Ok(m), Some(limit)) if m > 0 => limit.burst_multiplier = m,
            (Ok(m), None) if m > 0 => {}
            _ => bad("limit-burst-multiplier", "expected a positive whole number".into()),
        }
    }
    for name in ["allowlist-source-range", "whitelist-source-range"] {
        if let Some(v) = get(name) {
            let nets: Result<Vec<IpNet>, _> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<IpNet>()
                        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                })
                .collect();
            match nets {
                Ok(nets) if !nets.is_empty() => p.allow = Some(nets),
                _ => bad(name, "expected comma-separated CIDRs".into()),
            }
            break; // allowlist- is the current name; whitelist- only when it is absent
        }
    }
    if let Some(v) = get("proxy-body-size") {
        match parse_size(v) {
            Some(0) => p.body_limit = None,
            Some(n) => p.body_limit = Some(n),
            None => bad(
                "proxy-body-size",
                "expected a size such as 8k, 1m or 0 (unlimited)".into(),
            ),
        }
    }
    for (name, slot) in [
        ("proxy-connect-timeout", &mut p.connect_timeout),
        ("proxy-read-timeout", &mut p.read_timeout),
        ("proxy-send-timeout", &mut p.send_timeout),
    ] {
        if let Some(v) = get(name) {
            match v.trim_end_matches('s').parse::<u64>() {
                Ok(secs) if secs > 0 => *slot = Duration::from_secs(secs),
                _ => bad(name, "expected seconds".into()),
            }
        }
    }
    if let Some(v) = get("backend-protocol") {
        match v.to_ascii_uppercase().as_str() {
            "HTTP" => p.backend_protocol = BackendProtocol::Http,
            "HTTPS" => p.backend_protocol = BackendProtocol::Https,
            "GRPC" | "GRPCS" | "AUTO_HTTP" | "FCGI" => bad(
                "backend-protocol",
                "not supported by mzlb; supported: HTTP, HTTPS".into(),
            ),
            _ => bad("backend-protocol", "expected HTTP or HTTPS".into()),
        }
    }
    for (name, slot) in [
        ("ssl-redirect", &mut p.ssl_redirect),
        ("force-ssl-redirect", &mut p.force_ssl_redirect),
    ] {
        if let Some(v) = get(name) {
            match v {
                "true" => *slot = true,
                "false" => *slot = false,
                _ => bad(name, "expected true or false".into()),
            }
        }
    }
    if let Some(v) = get("use-regex") {
        match v {
            "true" => p.use_regex = true,
            "false" => p.use_regex = false,
            _ => bad("use-regex", "expected true or false".into()),
        }
    }
    if let Some(v) = get("rewrite-target") {
        if v.starts_with('/') && !v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            p.rewrite_target = Some(v.to_owned());
            p.use_regex = true; // as in ingress-nginx: capture groups need regex paths
        } else {
            bad("rewrite-target", "must be a path starting with /".into());
        }
    }
    (p, errors)
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

fn is_cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn parses_the_common_ingress_nginx_annotations() {
        let a = annotations(&[
            ("nginx.ingress.kubernetes.io/load-balance", "ewma"),
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/session-cookie-name", "route"),
            ("nginx.ingress.kubernetes.io/session-cookie-max-age", "3600"),
            ("nginx.ingress.kubernetes.io/session-cookie-samesite", "Lax"),
            ("nginx.ingress.kubernetes.io/limit-rps", "10"),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "2"),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8, 192.0.2.1",
            ),
            ("nginx.ingress.kubernetes.io/proxy-body-size", "8k"),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "5"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
            ("mzlb.io/limit-rps", "20"),
        ]);
        let (p, errors) = parse(Some(&a));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(p.balance, BalanceKind::Ewma);
        let affinity = p.affinity.unwrap();
        assert_eq!(
            (affinity.name.as_str(), affinity.max_age, affinity.samesite.as_deref()),
            ("route", Some(3600), Some("Lax"))
        );
        assert_eq!(
            p.rate_limit,
            Some(RateLimitSpec {
                rps: 20,
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
    fn bad_values_are_reported_and_fall_back_to_defaults() {
        let a = annotations(&[
            ("nginx.ingress.kubernetes.io/load-balance", "fastest"),
            ("nginx.ingress.kubernetes.io/limit-rps", "-3"),
            ("nginx.ingress.kubernetes.io/proxy-body-size", "lots"),
            ("nginx.ingress.kubernetes.io/whitelist-source-range", "10.0.0.0/33"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "$(rm -rf /)"),
        ]);
        let (p, errors) = parse(Some(&a));
        assert_eq!(p, Policy::default());
        let names: Vec<&str> = errors
            .iter()
            .map(|e| e.annotation.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "load-balance",
                "limit-rps",
                "whitelist-source-range",
                "proxy-body-size",
                "rewrite-target"
            ]
        );
        assert!(errors[0].to_string().contains("\"fastest\""), "{}", errors[0]);
    }

    #[test]
    fn backend_protocol_is_http_or_https() {
        let (p, errors) = parse(Some(&annotations(&[(
            "nginx.ingress.kubernetes.io/backend-protocol",
            "https",
        )])));
        assert_eq!((p.backend_protocol, errors.len()), (BackendProtocol::Https, 0));
        let (p, errors) = parse(Some(&annotations(&[("mzlb.io/backend-protocol", "GRPC")])));
        assert_eq!(p.backend_protocol, BackendProtocol::Http);
        assert_eq!(errors[0].annotation, "mzlb.io/backend-protocol");
        assert!(errors[0].message.contains("not supported"), "{}", errors[0]);
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
}
