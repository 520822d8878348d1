//! How requests reach the backend: `upstream-hash-by`, `service-upstream`, `upstream-vhost`,
//! `x-forwarded-prefix`, `proxy-next-upstream(-tries)`, `server-alias`, `from-to-www-redirect`,
//! and the cookie-affinity extras (`session-cookie-expires`, `-secure`, `-domain`,
//! `-change-on-failure`, `affinity-mode`).

use std::time::{Duration, SystemTime};

use super::{CookieAffinity, Policy, Reader, is_token, parse_bool};
use crate::hash::HashBy;

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[
    "affinity-mode",
    "from-to-www-redirect",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "server-alias",
    "service-upstream",
    "session-cookie-change-on-failure",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-secure",
    "upstream-hash-by",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "upstream-vhost",
    "x-forwarded-prefix",
];

/// Longest header value we pass on from an annotation.
const MAX_VALUE: usize = 1024;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Upstream {
    /// `upstream-hash-by`: consistent hashing on this key instead of the balancer.
    pub hash_by: Option<HashBy>,
    /// `service-upstream`: the Service's cluster IP and port instead of its endpoints.
    pub service_upstream: bool,
    /// `server-alias`: more hosts (lower case) served by the rules of this Ingress's host.
    pub aliases: Vec<String>,
    /// `from-to-www-redirect`: `www.<host>` (or `<host>` for a `www.` host) answers 308 to the
    /// rule's host when no rule names it.
    pub from_to_www: bool,
    /// Set by the router on the route of a redirecting host: the host to redirect to.
    pub www_redirect_to: Option<String>,
    /// `upstream-vhost`: the Host sent upstream.
    pub vhost: Option<String>,
    /// `x-forwarded-prefix`: the X-Forwarded-Prefix sent upstream.
    pub forwarded_prefix: Option<String>,
    /// `proxy-next-upstream-tries`: endpoints tried for one request (0: as many as there are).
    pub tries: Option<u32>,
    /// `proxy-next-upstream: off`: never try another endpoint.
    pub retry_off: bool,
    /// Cookie-affinity extras are set: the Set-Cookie is hyper's path's.
    pub affinity_extras: bool,
}

/// Cookie-affinity settings beyond name, path, max-age and samesite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieExtras {
    /// `session-cookie-expires`: seconds from now, written as an Expires attribute.
    pub expires: Option<u64>,
    /// `session-cookie-secure`; unset: Secure when the request came over HTTPS.
    pub secure: Option<bool>,
    /// `session-cookie-domain`.
    pub domain: Option<String>,
    /// `session-cookie-change-on-failure`: a client whose endpoint failed gets a new cookie.
    pub change_on_failure: bool,
}

impl Upstream {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        self.hash_by.is_some()
            || self.www_redirect_to.is_some()
            || self.vhost.is_some()
            || self.forwarded_prefix.is_some()
            || self.tries.is_some()
            || self.retry_off
            || self.affinity_extras
    }

    /// Sets the fields this policy asks for on a request going upstream: Host
    /// (`upstream-vhost`; X-Forwarded-Host keeps the client's) and X-Forwarded-Prefix.
    pub fn set_fields(&self, headers: &mut hyper::HeaderMap) {
        use hyper::header::{HOST, HeaderValue};
        // Both were checked to be visible ASCII when parsed.
        if let Some(v) = self.vhost.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(HOST, v);
        }
        if let Some(v) = self
            .forwarded_prefix
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert("x-forwarded-prefix", v);
        }
    }

    /// Endpoints tried for one request whose connections fail, given how many there are and
    /// mzlb's own cap.
    pub fn attempts(&self, endpoints: usize, cap: usize) -> usize {
        let wanted = match self.tries {
            _ if self.retry_off => 1,
            Some(0) => endpoints,
            Some(n) => n as usize,
            None => cap,
        };
        wanted.clamp(1, endpoints.max(1))
    }
}

/// The Set-Cookie value for cookie affinity, with ingress-nginx's attributes in lua-resty-cookie's
/// order: `name=value; Expires=..; Max-Age=..; Domain=..; Path=..; Secure; HttpOnly; SameSite=..`.
pub fn affinity_set_cookie(a: &CookieAffinity, value: &str, https: bool, now: SystemTime) -> String {
    let mut c = format!("{}={value}", a.name);
    if let Some(secs) = a.extras.expires {
        c.push_str("; Expires=");
        c.push_str(&cookie_time(now + Duration::from_secs(secs)));
    }
    if let Some(age) = a.max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if let Some(domain) = &a.extras.domain {
        c.push_str(&format!("; Domain={domain}"));
    }
    c.push_str(&format!("; Path={}", a.path.as_deref().unwrap_or("/")));
    if a.extras.secure.unwrap_or(https) {
        c.push_str("; Secure");
    }
    c.push_str("; HttpOnly");
    if let Some(samesite) = &a.samesite {
        c.push_str(&format!("; SameSite={samesite}"));
    }
    c
}

/// nginx's `ngx_http_cookie_time` (`ngx.cookie_time`): `Thu, 18-Nov-10 11:27:35 GMT`, with a
/// two-digit year up to 2037 and four digits after.
pub fn cookie_time(t: SystemTime) -> String {
    // httpdate: `Thu, 18 Nov 2010 11:27:35 GMT` (fixed width).
    let http = httpdate::fmt_http_date(t.min(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)));
    let (weekday, rest) = http.split_at(5);
    let mut fields = rest.split(' ');
    let (Some(day), Some(month), Some(year), Some(time)) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return http;
    };
    let year = match year.parse::<u32>() {
        Ok(y) if y <= 2037 => format!("{:02}", y % 100),
        _ => year.to_owned(),
    };
    format!("{weekday}{day}-{month}-{year} {time} GMT")
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    const BOOL: &str = "expected true or false";
    let u = &mut p.upstream;
    if let Some(v) = r.get("upstream-hash-by") {
        match HashBy::parse(v) {
            Ok(_) if p.affinity.is_some() => {
                r.ignored(
                    "upstream-hash-by",
                    "cookie affinity is set and wins, as in ingress-nginx",
                );
            }
            Ok(h) => {
                u.hash_by = Some(h);
                r.differs(
                    "upstream-hash-by",
                    "rendezvous hashing, not nginx's: a key maps to a stable endpoint, but not the one \
                     ingress-nginx would pick",
                );
            }
            Err(e) => r.invalid("upstream-hash-by", &e),
        }
    }
    for name in ["upstream-hash-by-subset", "upstream-hash-by-subset-size"] {
        if r.get(name).is_some() {
            r.ignored(
                name,
                "subsets are not supported: upstream-hash-by hashes over all endpoints",
            );
        }
    }
    if let Some(v) = r.get("service-upstream") {
        match parse_bool(v) {
            Some(b) => u.service_upstream = b,
            None => r.invalid("service-upstream", BOOL),
        }
    }
    if let Some(v) = r.get("from-to-www-redirect") {
        match parse_bool(v) {
            Some(b) => u.from_to_www = b,
            None => r.invalid("from-to-www-redirect", BOOL),
        }
    }
    if let Some(v) = r.get("server-alias") {
        let aliases: Option<Vec<String>> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| is_host_name(s).then(|| s.to_ascii_lowercase()))
            .collect();
        match aliases {
            Some(aliases) => u.aliases = aliases,
            None => r.invalid(
                "server-alias",
                "expected comma-separated host names (no wildcards, no ports)",
            ),
        }
    }
    if let Some(v) = r.get("upstream-vhost") {
        let host_port = v.rsplit_once(':').map_or((v, "1"), |(h, port)| (h, port));
        let port_ok = host_port.1.parse::<u16>().is_ok_and(|p| p > 0);
        if is_host_name(host_port.0) && port_ok {
            u.vhost = Some(v.to_owned());
        } else if !v.is_empty() {
            r.invalid("upstream-vhost", "expected a host name, optionally with :port");
        }
    }
    if let Some(v) = r.get("x-forwarded-prefix") {
        if !v.is_empty() && v.len() <= MAX_VALUE && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            u.forwarded_prefix = Some(v.to_owned());
        } else if !v.is_empty() {
            r.invalid("x-forwarded-prefix", "expected visible ASCII, such as /api");
        }
    }
    if let Some(v) = r.get("proxy-next-upstream-tries") {
        match v.parse::<u32>() {
            Ok(n) => u.tries = Some(n),
            Err(_) => r.invalid(
                "proxy-next-upstream-tries",
                "expected a whole number (0: every endpoint)",
            ),
        }
    }
    if let Some(v) = r.get("proxy-next-upstream") {
        let tokens: Vec<&str> = v.split_whitespace().collect();
        const KNOWN: [&str; 11] = [
            "error",
            "timeout",
            "invalid_header",
            "http_500",
            "http_502",
            "http_503",
            "http_504",
            "http_403",
            "http_404",
            "http_429",
            "non_idempotent",
        ];
        if tokens == ["off"] {
            u.retry_off = true;
        } else if tokens.is_empty() || !tokens.iter().all(|t| KNOWN.contains(t)) {
            r.invalid(
                "proxy-next-upstream",
                "expected off, or nginx's conditions such as `error timeout`",
            );
        } else if !tokens.iter().all(|t| ["error", "timeout"].contains(t)) {
            r.ignored(
                "proxy-next-upstream",
                "mzlb tries another endpoint only when a connection cannot be made (nginx's `error`)",
            );
        }
    }

    // Cookie-affinity extras.
    let extras = [
        "affinity-mode",
        "session-cookie-change-on-failure",
        "session-cookie-domain",
        "session-cookie-expires",
        "session-cookie-secure",
    ];
    let Some(a) = p.affinity.as_mut() else {
        for name in extras {
            r.ignored(name, "no effect: affinity is not `cookie`");
        }
        return;
    };
    if let Some(v) = r.get("affinity-mode") {
        // mzlb's cookie names the endpoint: a session stays where it is until that endpoint
        // goes (persistent); balanced mode's rebalancing on scale-up is not done.
        match v {
            "persistent" => {}
            "balanced" => r.differs(
                "affinity-mode",
                "sessions are not moved to new endpoints when the backend scales up (as persistent)",
            ),
            _ => r.invalid("affinity-mode", "expected balanced or persistent"),
        }
    }
    let x = &mut a.extras;
    if let Some(v) = r.get("session-cookie-expires") {
        match v.parse::<u64>() {
            Ok(n) if n <= 100 * 365 * 86_400 => x.expires = Some(n),
            _ => r.invalid("session-cookie-expires", "expected seconds"),
        }
    }
    if let Some(v) = r.get("session-cookie-secure") {
        match parse_bool(v) {
            Some(b) => x.secure = Some(b),
            None => r.invalid("session-cookie-secure", BOOL),
        }
    }
    if let Some(v) = r.get("session-cookie-domain") {
        let bare = v.strip_prefix('.').unwrap_or(v);
        if is_host_name(bare) {
            x.domain = Some(v.to_ascii_lowercase());
        } else if !v.is_empty() {
            r.invalid("session-cookie-domain", "expected a domain name");
        }
    }
    if let Some(v) = r.get("session-cookie-change-on-failure") {
        match parse_bool(v) {
            Some(b) => x.change_on_failure = b,
            None => r.invalid("session-cookie-change-on-failure", BOOL),
        }
    }
    p.upstream.affinity_extras = *x != CookieExtras::default();
}

/// A DNS host name: dot-separated labels of letters, digits, `-` and `_`.
pub(crate) fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
        })
        && is_token(s)
}

#[cfg(test)]
mod tests {
    use super::super::FindingKind::{self, *};
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (Policy, Vec<(String, FindingKind)>) {
        super::super::parse_names(pairs, &Default::default())
    }

    #[test]
    fn malformed_and_hostile_values_keep_the_default() {
        let rows: &[(&str, &str)] = &[
            ("upstream-hash-by", "$request_uri\r\nX-Evil: 1"),
            ("upstream-hash-by", "$nope"),
            ("upstream-hash-by", "constant"),
            ("service-upstream", "yes"),
            ("from-to-www-redirect", "on"),
            ("server-alias", "a.test, *.b.test"),
            ("server-alias", "a.test:8080"),
            ("server-alias", "a..test"),
            ("server-alias", "a.test\nb.test"),
            ("upstream-vhost", "evil.test\r\nX-Injected: 1"),
            ("upstream-vhost", "a b"),
            ("upstream-vhost", "$host"),
            ("upstream-vhost", "x.test:99999"),
            ("upstream-vhost", "x.test:"),
            ("x-forwarded-prefix", "/api\r\nX-Injected: 1"),
            ("x-forwarded-prefix", "/api\u{7f}"),
            ("x-forwarded-prefix", "/é"),
            ("proxy-next-upstream-tries", "-1"),
            ("proxy-next-upstream-tries", "three"),
            ("proxy-next-upstream", "error bogus"),
            ("proxy-next-upstream", "off error"),
        ];
        for (name, value) in rows {
            let (p, f) = parse(&[(name, value)]);
            assert_eq!(f, [((*name).to_owned(), Invalid)], "{name}={value:?}");
            assert_eq!(p.upstream, Upstream::default(), "{name}={value:?}");
            assert!(p.unenforced.is_empty());
        }
    }

    #[test]
    fn usable_values_reach_the_policy() {
        let (p, f) = parse(&[
            ("upstream-hash-by", "$http_x_user$arg_id"),
            ("service-upstream", "true"),
            ("server-alias", "Alias.test, b.test,"),
            ("from-to-www-redirect", "true"),
            ("upstream-vhost", "internal.svc:8080"),
            ("x-forwarded-prefix", "/api"),
            ("proxy-next-upstream-tries", "5"),
            ("proxy-next-upstream", "error timeout"),
        ]);
        // Only the hash function is worth a word: it is not nginx's.
        assert_eq!(f, [("upstream-hash-by".to_owned(), FindingKind::Differs)], "{f:?}");
        let u = &p.upstream;
        assert!(u.hash_by.is_some() && u.service_upstream && u.from_to_www);
        assert_eq!(u.aliases, ["alias.test", "b.test"]);
        assert_eq!(u.vhost.as_deref(), Some("internal.svc:8080"));
        assert_eq!(u.forwarded_prefix.as_deref(), Some("/api"));
        assert_eq!(u.attempts(10, 3), 5);
        assert_eq!(u.attempts(2, 3), 2);
        assert!(p.needs_hyper());
        let (p, f) = parse(&[("proxy-next-upstream", "off"), ("proxy-next-upstream-tries", "0")]);
        assert!(f.is_empty());
        assert_eq!(p.upstream.attempts(4, 3), 1);
        let (p, _) = parse(&[("proxy-next-upstream-tries", "0")]);
        assert_eq!(p.upstream.attempts(4, 3), 4);
        assert_eq!(Upstream::default().attempts(4, 3), 3);
        assert_eq!(Upstream::default().attempts(0, 3), 1);
        let (_, f) = parse(&[("proxy-next-upstream", "error http_502")]);
        assert_eq!(f, [("proxy-next-upstream".to_owned(), Ignored)]);
        let (_, f) = parse(&[("upstream-hash-by-subset", "true")]);
        assert_eq!(f, [("upstream-hash-by-subset".to_owned(), Ignored)]);
        let (p, f) = parse(&[("affinity", "cookie"), ("upstream-hash-by", "$request_uri")]);
        assert_eq!(f, [("upstream-hash-by".to_owned(), Ignored)]);
        assert!(p.upstream.hash_by.is_none());
    }

    #[test]
    fn cookie_extras_need_cookie_affinity() {
        let (p, f) = parse(&[
            ("affinity", "cookie"),
            ("affinity-mode", "persistent"),
            ("session-cookie-expires", "172800"),
            ("session-cookie-secure", "true"),
            ("session-cookie-domain", ".Example.test"),
            ("session-cookie-change-on-failure", "true"),
        ]);
        assert!(f.is_empty(), "{f:?}");
        let x = &p.affinity.as_ref().unwrap().extras;
        assert_eq!(x.expires, Some(172_800));
        assert_eq!(x.secure, Some(true));
        assert_eq!(x.domain.as_deref(), Some(".example.test"));
        assert!(x.change_on_failure && p.upstream.affinity_extras);
        let (_, f) = parse(&[("session-cookie-expires", "60"), ("affinity-mode", "balanced")]);
        assert_eq!(
            f,
            [
                ("affinity-mode".to_owned(), Ignored),
                ("session-cookie-expires".to_owned(), Ignored)
            ]
        );
        for (name, bad) in [
            ("affinity-mode", "sticky"),
            ("session-cookie-expires", "-1"),
            ("session-cookie-expires", "1d"),
            ("session-cookie-expires", "99999999999999"),
            ("session-cookie-secure", "yes"),
            ("session-cookie-domain", "a.test; HttpOnly"),
            ("session-cookie-domain", "a.test\r\nSet-Cookie: x=1"),
            ("session-cookie-change-on-failure", "2"),
        ] {
            let (p, f) = parse(&[("affinity", "cookie"), (name, bad)]);
            assert_eq!(f, [(name.to_owned(), Invalid)], "{name}={bad:?}");
            assert_eq!(p.affinity.unwrap().extras, CookieExtras::default());
        }
    }

    #[test]
    fn set_cookie_has_ingress_nginx_attributes_and_order() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_290_079_655); // Thu, 18 Nov 2010 11:27:35
        let mut a = CookieAffinity {
            name: "route".into(),
            path: None,
            max_age: None,
            samesite: None,
            extras: CookieExtras::default(),
        };
        assert_eq!(affinity_set_cookie(&a, "v", false, now), "route=v; Path=/; HttpOnly");
        assert_eq!(
            affinity_set_cookie(&a, "v", true, now),
            "route=v; Path=/; Secure; HttpOnly"
        );
        a.extras.secure = Some(false);
        assert_eq!(affinity_set_cookie(&a, "v", true, now), "route=v; Path=/; HttpOnly");
        a.extras = CookieExtras {
            expires: Some(3600),
            secure: Some(true),
            domain: Some(".example.test".into()),
            change_on_failure: false,
        };
        a.max_age = Some(3600);
        a.path = Some("/shop".into());
        a.samesite = Some("Lax".into());
        assert_eq!(
            affinity_set_cookie(&a, "v", false, now),
            "route=v; Expires=Thu, 18-Nov-10 12:27:35 GMT; Max-Age=3600; Domain=.example.test; Path=/shop; Secure; \
             HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn cookie_time_is_nginx_s() {
        let at = |secs: u64| cookie_time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01-Jan-70 00:00:00 GMT");
        assert_eq!(at(1_290_079_655), "Thu, 18-Nov-10 11:27:35 GMT");
        assert_eq!(at(2_145_916_800), "Fri, 01-Jan-38 00:00:00 GMT".replace("-38", "-2038"));
        assert_eq!(at(2_114_380_800), "Thu, 01-Jan-37 00:00:00 GMT");
    }
}
