//! `auth-*` annotations: external authentication (`auth-url` and its family, a subrequest per request) and basic authentication (`auth-type`, `auth-secret`, `auth-realm`).
//!
//! Parsed here into typed policy; the Secret a basic-auth Ingress names is resolved when the
//! table is compiled, and the requests are checked in `crate::auth`. Anything this family
//! cannot honour fails closed: a key that asks for authentication mzlb cannot give (an unknown
//! variable, a ConfigMap that is missing or holds unusable fields, `digest`, a signin URL
//! without `auth-url`) makes the Ingress answer 503. `auth-snippet` is read by the snippet
//! family (and lands in [`External::snippet`]); `auth-tls-*` by the `tls` family.

use std::time::Duration;

use super::{Policy, Reader};
pub use crate::auth::template::Template;

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-always-set-cookie",
    "auth-proxy-set-headers",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-keepalive-share-vars",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
];

const EXTERNAL_KEYS: &[&str] = &[
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-always-set-cookie",
    "auth-proxy-set-headers",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-keepalive-share-vars",
];

const BASIC_KEYS: &[&str] = &["auth-secret", "auth-secret-type", "auth-realm"];

/// The methods ingress-nginx accepts in `auth-method`.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Auth {
    pub external: Option<External>,
    pub basic: Option<Basic>,
}

/// `auth-url` and its family: a subrequest before every request.
#[derive(Clone, Debug, PartialEq)]
pub struct External {
    /// `http(s)://…`, perhaps with variables; checked again once expanded.
    pub url: Template,
    /// `auth-method`; `None`: GET, as nginx's subrequests.
    pub method: Option<String>,
    /// `auth-signin` with the redirect parameter added as ingress-nginx adds it: a 401 from the
    /// auth service becomes a 302 here.
    pub signin: Option<Template>,
    /// `auth-response-headers`, lower case: copied from the auth response onto the upstream
    /// request, replacing (or removing) what the client sent.
    pub response_headers: Vec<String>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` sent to the auth service
    /// (default `$request_uri`).
    pub request_redirect: Option<Template>,
    pub cache: Option<CacheSpec>,
    /// `auth-always-set-cookie`: the auth response's cookies go to the client whatever the
    /// status, not only with 2xx/3xx.
    pub always_set_cookie: bool,
    /// `auth-proxy-set-headers`: the ConfigMap (namespace, name) whose keys and values are set
    /// on the subrequest; resolved when the table is compiled (`crate::auth::compile`).
    pub proxy_set_headers: Option<(Option<String>, String)>,
    /// `auth-snippet` (set by the snippet family): directives of the auth location, run after
    /// ingress-nginx's own fields and `auth-proxy-set-headers`.
    pub snippet: Option<std::sync::Arc<crate::snippet::Snippet>>,
}

/// `auth-cache-key` and `auth-cache-duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheSpec {
    pub key: Template,
    /// `proxy_cache_valid` rules: the statuses (empty: 200, 301, 302; `any`: all) and how long.
    pub valid: Vec<(CacheCodes, Duration)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CacheCodes {
    Any,
    Some(Vec<u16>),
}

impl CacheSpec {
    /// How long an auth answer with `status` is kept; `None`: not cached.
    pub fn ttl(&self, status: u16) -> Option<Duration> {
        self.valid.iter().find_map(|(codes, ttl)| match codes {
            CacheCodes::Any => Some(*ttl),
            CacheCodes::Some(c) if c.is_empty() => [200, 301, 302].contains(&status).then_some(*ttl),
            CacheCodes::Some(c) => c.contains(&status).then_some(*ttl),
        })
    }
}

/// `auth-type: basic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basic {
    /// `auth-secret`'s namespace, when it names one (`namespace/name`).
    pub namespace: Option<String>,
    pub secret: String,
    /// `auth-secret-type: auth-map` (keys are users); otherwise `auth-file` (key `auth`).
    pub map: bool,
    pub realm: String,
}

impl Auth {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        self.external.is_some() || self.basic.is_some()
    }
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    parse_external(r, p);
    parse_basic(r, p);
}

fn parse_external(r: &mut Reader<'_>, p: &mut Policy) {
    let Some(url) = r.get("auth-url") else {
        for name in EXTERNAL_KEYS {
            if r.get(name).is_some() {
                r.unusable(
                    name,
                    "has no effect without auth-url, so what it protects would be open",
                );
            }
        }
        return;
    };
    let mut ok = true;
    let lower = url.to_ascii_lowercase();
    let url = if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() <= "http://".len() {
        r.unusable("auth-url", "expected an http:// or https:// URL");
        ok = false;
        None
    } else {
        match Template::parse(url) {
            Ok(t) => Some(t),
            Err(e) => {
                r.unusable("auth-url", &e);
                ok = false;
                None
            }
        }
    };
    let method = match r.get("auth-method") {
        None | Some("") => None,
        Some(m) if METHODS.contains(&m) => Some(m.to_owned()),
        Some(_) => {
            r.unusable(
                "auth-method",
                "expected one of GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE",
            );
            ok = false;
            None
        }
    };
    let redirect_param = match r.get("auth-signin-redirect-param") {
        None | Some("") => "rd",
        Some(v) if v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) => v,
        Some(_) => {
            r.invalid("auth-signin-redirect-param", "expected a query parameter name");
            "rd"
        }
    };
    let signin = match r.get("auth-signin") {
        None | Some("") => None,
        Some(v) => match Template::parse(&signin_url(v, redirect_param)) {
            Ok(t) => Some(t),
            Err(e) => {
                r.unusable("auth-signin", &e);
                ok = false;
                None
            }
        },
    };
    let mut response_headers = Vec::new();
    if let Some(v) = r.get("auth-response-headers") {
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                response_headers.push(name.to_ascii_lowercase());
            } else {
                r.unusable("auth-response-headers", "expected comma-separated header names");
                ok = false;
                break;
            }
        }
    }
    let request_redirect = match r.get("auth-request-redirect") {
        None | Some("") => None,
        Some(v) => match Template::parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                r.unusable("auth-request-redirect", &e);
                ok = false;
                None
            }
        },
    };
    let durations = r.get("auth-cache-duration");
    let cache = match r.get("auth-cache-key") {
        None | Some("") => {
            if durations.is_some() {
                r.ignored("auth-cache-duration", "no effect without auth-cache-key");
            }
            None
        }
        Some(key) => match (Template::parse(key), parse_cache_durations(durations.unwrap_or(""))) {
            (Ok(key), Ok(valid)) => Some(CacheSpec { key, valid }),
            (Err(e), _) => {
                r.unusable("auth-cache-key", &e);
                ok = false;
                None
            }
            (_, Err(e)) => {
                r.unusable("auth-cache-duration", &e);
                ok = false;
                None
            }
        },
    };
    let always_set_cookie = match r.get("auth-always-set-cookie") {
        None => false,
        Some(v) => super::parse_bool(v).unwrap_or_else(|| {
            r.invalid("auth-always-set-cookie", "expected true or false");
            false
        }),
    };
    let proxy_set_headers = match r.get("auth-proxy-set-headers") {
        None | Some("") => None,
        Some(v) => match parse_secret_ref(v) {
            Some(reference) => Some(reference),
            None => {
                r.unusable("auth-proxy-set-headers", "expected a ConfigMap name or namespace/name");
                ok = false;
                None
            }
        },
    };
    for name in [
        "auth-keepalive",
        "auth-keepalive-requests",
        "auth-keepalive-timeout",
        "auth-keepalive-share-vars",
    ] {
        r.ignored(name, "connection reuse to the auth service is not tunable in mzlb");
    }
    if let (true, Some(url)) = (ok, url) {
        p.auth.external = Some(External {
            url,
            method,
            signin,
            response_headers,
            request_redirect,
            cache,
            always_set_cookie,
            proxy_set_headers,
            snippet: None,
        });
    }
}

/// ingress-nginx's `buildAuthSignURL`: the signin URL gets
/// `<param>=$pass_access_scheme://$http_host$escaped_request_uri`, unless it already carries a
/// non-empty `<param>`.
fn signin_url(url: &str, param: &str) -> String {
    let query = url
        .split_once('?')
        .map(|(_, q)| q.split_once('#').map_or(q, |(q, _)| q));
    let redirect = format!("{param}=$pass_access_scheme://$http_host$escaped_request_uri");
    match query {
        None | Some("") if !url.contains('?') => format!("{url}?{redirect}"),
        None | Some("") => format!("{url}{redirect}"),
        Some(q) => {
            let has = q
                .split(['&', ';'])
                .filter_map(|pair| pair.split_once('='))
                .any(|(k, v)| k == param && !v.is_empty());
            if has {
                url.to_owned()
            } else {
                format!("{url}&{redirect}")
            }
        }
    }
}

/// `auth-cache-duration`: comma-separated nginx `proxy_cache_valid` rules, `[code ...] time`
/// (default `200 202 401 5m`, ingress-nginx's).
fn parse_cache_durations(v: &str) -> Result<Vec<(CacheCodes, Duration)>, String> {
    let v = if v.trim().is_empty() { "200 202 401 5m" } else { v };
    let mut rules = Vec::new();
    for rule in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut codes = Vec::new();
        let mut any = false;
        let mut ttl = Duration::ZERO;
        let mut seen_time = false;
        for word in rule.split_whitespace() {
            if word == "any" && !seen_time {
                any = true;
            } else if word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) && !seen_time {
                let code: u16 = word.parse().map_err(|_| format!("bad status {word}"))?;
                if !(100..=599).contains(&code) {
                    return Err(format!("bad status {word}"));
                }
                codes.push(code);
            } else {
                ttl = ttl
                    .checked_add(parse_nginx_time(word).ok_or_else(|| format!("invalid cache duration: {rule}"))?)
                    .ok_or("duration too long")?;
                seen_time = true;
            }
        }
        if !seen_time {
            return Err(format!("invalid cache duration: {rule}"));
        }
        rules.push((if any { CacheCodes::Any } else { CacheCodes::Some(codes) }, ttl));
    }
    Ok(rules)
}

/// An nginx time: digits and one of ms, s, m, h, d, w, M, y.
fn parse_nginx_time(word: &str) -> Option<Duration> {
    let split = word.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = word.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        "M" => 2_592_000_000,
        "y" => 31_536_000_000,
        _ => return None,
    };
    n.checked_mul(ms).map(Duration::from_millis)
}

fn parse_basic(r: &mut Reader<'_>, p: &mut Policy) {
    let kind = r.get("auth-type");
    match kind {
        Some("basic") => {}
        Some("digest") => {
            r.unusable("auth-type", "digest authentication is not supported by mzlb");
            for name in BASIC_KEYS {
                r.get(name);
            }
            return;
        }
        Some(_) => {
            r.unusable("auth-type", "expected basic");
            for name in BASIC_KEYS {
                r.get(name);
            }
            return;
        }
        None => {
            for name in BASIC_KEYS {
                if r.get(name).is_some() {
                    r.unusable(
                        name,
                        "has no effect without auth-type: basic, so what it protects would be open",
                    );
                }
            }
            return;
        }
    }
    let map = match r.get("auth-secret-type") {
        None | Some("") | Some("auth-file") => Some(false),
        Some("auth-map") => Some(true),
        Some(_) => {
            r.unusable("auth-secret-type", "expected auth-file or auth-map");
            None
        }
    };
    let realm = match r.get("auth-realm") {
        None => String::new(),
        Some(v) if v.bytes().all(|b| !b.is_ascii_control() && b != b'"' && b != b'\\') => v.to_owned(),
        Some(_) => {
            r.invalid(
                "auth-realm",
                "quotes, backslashes and control characters are not allowed",
            );
            String::new()
        }
    };
    let secret = match r.get("auth-secret") {
        None | Some("") => {
            r.unusable("auth-type", "auth-type: basic needs auth-secret");
            None
        }
        Some(v) => match parse_secret_ref(v) {
            Some(parsed) => Some(parsed),
            None => {
                r.unusable("auth-secret", "expected a Secret name or namespace/name");
                None
            }
        },
    };
    if let (Some((namespace, secret)), Some(map)) = (secret, map) {
        p.auth.basic = Some(Basic {
            namespace,
            secret,
            map,
            realm,
        });
    }
}

/// `name` or `namespace/name`, each a DNS subdomain as Kubernetes names are (Secrets and
/// ConfigMaps alike).
pub(super) fn parse_secret_ref(v: &str) -> Option<(Option<String>, String)> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !s.starts_with(['-', '.'])
    };
    match v.split_once('/') {
        None if valid(v) => Some((None, v.to_owned())),
        Some((ns, name)) if valid(ns) && valid(name) => Some((Some(ns.to_owned()), name.to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::FindingKind::{self, Ignored, Invalid, Unenforced};

    fn parse(pairs: &[(&str, &str)]) -> (Auth, Vec<(String, FindingKind)>) {
        let (p, f) = crate::annotations::parse_names(pairs, &Default::default());
        (p.auth, f)
    }

    #[test]
    fn external_annotations_table() {
        type Row<'a> = (&'a [(&'a str, &'a str)], bool, &'a [(&'a str, FindingKind)]);
        let rows: &[Row<'_>] = &[
            (&[("auth-url", "http://oauth2-proxy.auth.svc/oauth2/auth")], true, &[]),
            (&[("auth-url", "https://$host/oauth2/auth")], true, &[]),
            (&[("auth-url", "HTTPS://auth.example/")], true, &[]),
            (&[("auth-url", "")], false, &[("auth-url", Unenforced)]),
            (&[("auth-url", "ftp://a/")], false, &[("auth-url", Unenforced)]),
            (
                &[("auth-url", "auth.example/verify")],
                false,
                &[("auth-url", Unenforced)],
            ),
            (&[("auth-url", "http://")], false, &[("auth-url", Unenforced)]),
            (
                &[("auth-url", "http://a/$request_body")],
                false,
                &[("auth-url", Unenforced)],
            ),
            (&[("auth-url", "http://a/\r\nx")], false, &[("auth-url", Unenforced)]),
            (&[("auth-url", "http://a/"), ("auth-method", "POST")], true, &[]),
            (
                &[("auth-url", "http://a/"), ("auth-method", "post")],
                false,
                &[("auth-method", Unenforced)],
            ),
            (&[("auth-url", "http://a/"), ("auth-method", "GET\r\n")], true, &[]), // trimmed
            (
                &[("auth-url", "http://a/"), ("auth-method", "BREW")],
                false,
                &[("auth-method", Unenforced)],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-signin", "https://$host/oauth2/start?rd=$escaped_request_uri"),
                ],
                true,
                &[],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-signin", "https://$hostname/")],
                false,
                &[("auth-signin", Unenforced)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-signin-redirect-param", "a b")],
                true,
                &[("auth-signin-redirect-param", Invalid)],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-response-headers", "X-Auth-Request-User, X-Auth-Request-Email,,"),
                ],
                true,
                &[],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-response-headers", "X-User\r\nX-Evil: 1"),
                ],
                false,
                &[("auth-response-headers", Unenforced)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-response-headers", "X User")],
                false,
                &[("auth-response-headers", Unenforced)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-response-headers", "X:User")],
                false,
                &[("auth-response-headers", Unenforced)],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-request-redirect", "$scheme://$host$request_uri"),
                ],
                true,
                &[],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-request-redirect", "$nope")],
                false,
                &[("auth-request-redirect", Unenforced)],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-cache-key", "$remote_user$http_authorization"),
                ],
                false,
                &[("auth-cache-key", Unenforced)],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-cache-key", "$cookie__oauth2_proxy"),
                    ("auth-cache-duration", "200 202 10m, 401 1m"),
                ],
                true,
                &[],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-cache-key", "$http_authorization"),
                    ("auth-cache-duration", "10 minutes"),
                ],
                false,
                &[("auth-cache-duration", Unenforced)],
            ),
            (
                &[
                    ("auth-url", "http://a/"),
                    ("auth-cache-key", "$http_authorization"),
                    ("auth-cache-duration", "5m 200"),
                ],
                false,
                &[("auth-cache-duration", Unenforced)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-cache-duration", "5m")],
                true,
                &[("auth-cache-duration", Ignored)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-always-set-cookie", "true")],
                true,
                &[],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-always-set-cookie", "yes")],
                true,
                &[("auth-always-set-cookie", Invalid)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-proxy-set-headers", "auth/headers")],
                true,
                &[],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-proxy-set-headers", "headers")],
                true,
                &[],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-proxy-set-headers", "a/b/c")],
                false,
                &[("auth-proxy-set-headers", Unenforced)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-proxy-set-headers", "Auth/Headers")],
                false,
                &[("auth-proxy-set-headers", Unenforced)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-proxy-set-headers", "ns/$host")],
                false,
                &[("auth-proxy-set-headers", Unenforced)],
            ),
            (
                &[("auth-proxy-set-headers", "auth/headers")],
                false,
                &[("auth-proxy-set-headers", Unenforced)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-keepalive", "10")],
                true,
                &[("auth-keepalive", Ignored)],
            ),
            (
                &[("auth-url", "http://a/"), ("auth-snippet", "return 200;")],
                true,
                &[("auth-snippet", Unenforced)],
            ),
            // The family without auth-url: what it protects would be open.
            (&[("auth-signin", "https://a/")], false, &[("auth-signin", Unenforced)]),
            (
                &[("auth-response-headers", "X-User")],
                false,
                &[("auth-response-headers", Unenforced)],
            ),
            (&[("auth-method", "GET")], false, &[("auth-method", Unenforced)]),
        ];
        for (i, (pairs, external, findings)) in rows.iter().enumerate() {
            let (auth, got) = parse(pairs);
            assert_eq!(auth.external.is_some(), *external, "row {i}: {pairs:?}");
            let got: Vec<(&str, FindingKind)> = got.iter().map(|(k, f)| (k.as_str(), *f)).collect();
            assert_eq!(got, *findings, "row {i}: {pairs:?}");
        }
    }

    #[test]
    fn values_reach_the_policy() {
        let (auth, _) = parse(&[
            ("auth-url", "http://a/"),
            ("auth-method", "POST"),
            ("auth-response-headers", "X-Auth-Request-User, Remote-Groups"),
            ("auth-cache-key", "$http_authorization"),
        ]);
        let e = auth.external.unwrap();
        assert_eq!(e.method.as_deref(), Some("POST"));
        assert_eq!(e.response_headers, ["x-auth-request-user", "remote-groups"]);
        let cache = e.cache.unwrap();
        assert_eq!(
            cache.ttl(200),
            Some(Duration::from_secs(300)),
            "ingress-nginx's default"
        );
        assert_eq!(cache.ttl(401), Some(Duration::from_secs(300)));
        assert_eq!(cache.ttl(403), None);
        assert!(auth.basic.is_none());
    }

    #[test]
    fn signin_gets_the_redirect_parameter_as_ingress_nginx_adds_it() {
        let rd = "$pass_access_scheme://$http_host$escaped_request_uri";
        for (url, param, expected) in [
            (
                "https://auth.example/oauth2/start",
                "rd",
                format!("https://auth.example/oauth2/start?rd={rd}"),
            ),
            (
                "https://auth.example/start?x=1",
                "rd",
                format!("https://auth.example/start?x=1&rd={rd}"),
            ),
            (
                "https://$host/oauth2/start?rd=$escaped_request_uri",
                "rd",
                "https://$host/oauth2/start?rd=$escaped_request_uri".to_owned(),
            ),
            ("https://a/start?rd=", "rd", format!("https://a/start?rd=&rd={rd}")),
            ("https://a/start?", "rd", format!("https://a/start?rd={rd}")),
            (
                "https://auth.example/",
                "redirect_url",
                format!("https://auth.example/?redirect_url={rd}"),
            ),
            (
                "https://a/?rm=$request_method",
                "rd",
                format!("https://a/?rm=$request_method&rd={rd}"),
            ),
        ] {
            assert_eq!(signin_url(url, param), expected, "{url}");
        }
    }

    #[test]
    fn cache_durations_table() {
        let ok = |v: &str| parse_cache_durations(v).unwrap();
        assert_eq!(ok("200 5m"), [(CacheCodes::Some(vec![200]), Duration::from_secs(300))]);
        assert_eq!(ok("1h 30m"), [(CacheCodes::Some(vec![]), Duration::from_secs(5400))]);
        assert_eq!(ok("any 10s"), [(CacheCodes::Any, Duration::from_secs(10))]);
        assert_eq!(ok("200 202 10m, 401 1m").len(), 2);
        assert_eq!(ok("").len(), 1);
        for bad in [
            "5",
            "200",
            "m",
            "200 5x",
            "5m 200",
            "999 5m",
            "200 -5m",
            "200 5m,",
            "18446744073709551615y",
        ] {
            if bad == "200 5m," {
                assert!(parse_cache_durations(bad).is_ok(), "trailing comma is skipped");
                continue;
            }
            assert!(parse_cache_durations(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_annotations_table() {
        type Row<'a> = (&'a [(&'a str, &'a str)], bool, &'a [(&'a str, FindingKind)]);
        let rows: &[Row<'_>] = &[
            (&[("auth-type", "basic"), ("auth-secret", "basic-auth")], true, &[]),
            (
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "other-ns/basic-auth"),
                    ("auth-realm", "Authentication Required - foo"),
                ],
                true,
                &[],
            ),
            (
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "basic-auth"),
                    ("auth-secret-type", "auth-map"),
                ],
                true,
                &[],
            ),
            (
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "basic-auth"),
                    ("auth-secret-type", "auth-maps"),
                ],
                false,
                &[("auth-secret-type", Unenforced)],
            ),
            (&[("auth-type", "basic")], false, &[("auth-type", Unenforced)]),
            (
                &[("auth-type", "basic"), ("auth-secret", "")],
                false,
                &[("auth-type", Unenforced)],
            ),
            (
                &[("auth-type", "basic"), ("auth-secret", "a/b/c")],
                false,
                &[("auth-secret", Unenforced)],
            ),
            (
                &[("auth-type", "basic"), ("auth-secret", "../etc")],
                false,
                &[("auth-secret", Unenforced)],
            ),
            (
                &[("auth-type", "basic"), ("auth-secret", "Basic_Auth")],
                false,
                &[("auth-secret", Unenforced)],
            ),
            (
                &[("auth-type", "basic"), ("auth-secret", "/x")],
                false,
                &[("auth-secret", Unenforced)],
            ),
            (
                &[("auth-type", "basic"), ("auth-secret", "s"), ("auth-realm", "a\"b")],
                true,
                &[("auth-realm", Invalid)],
            ),
            (
                &[("auth-type", "basic"), ("auth-secret", "s"), ("auth-realm", "a\r\nb")],
                true,
                &[("auth-realm", Invalid)],
            ),
            (
                &[("auth-type", "digest"), ("auth-secret", "s")],
                false,
                &[("auth-type", Unenforced)],
            ),
            (
                &[("auth-type", "Basic"), ("auth-secret", "s")],
                false,
                &[("auth-type", Unenforced)],
            ),
            (&[("auth-secret", "s")], false, &[("auth-secret", Unenforced)]),
            (&[("auth-realm", "r")], false, &[("auth-realm", Unenforced)]),
            (
                &[
                    ("auth-tls-secret", "ns/ca"),
                    ("auth-type", "basic"),
                    ("auth-secret", "s"),
                ],
                true,
                &[],
            ),
        ];
        for (i, (pairs, basic, findings)) in rows.iter().enumerate() {
            let (auth, got) = parse(pairs);
            assert_eq!(auth.basic.is_some(), *basic, "row {i}: {pairs:?}");
            let got: Vec<(&str, FindingKind)> = got.iter().map(|(k, f)| (k.as_str(), *f)).collect();
            assert_eq!(got, *findings, "row {i}: {pairs:?}");
        }
        let (auth, _) = parse(&[("auth-type", "basic"), ("auth-secret", "ns/s"), ("auth-realm", "Hi")]);
        assert_eq!(
            auth.basic.unwrap(),
            Basic {
                namespace: Some("ns".into()),
                secret: "s".into(),
                map: false,
                realm: "Hi".into()
            }
        );
    }
}
