//! Redirects an Ingress asks for: `app-root`, `permanent-redirect`, `temporal-redirect` (and their codes).
//!
//! As ingress-nginx v1.15.1 (`internal/ingress/annotations/{rewrite,redirect}`):
//! - `app-root`: a path (not an absolute URL); `/` answers 302 to it.
//! - `temporal-redirect`: an absolute http(s) URL; every request answers 302 to it (or
//!   `temporal-redirect-code`, 300–307). It wins over `permanent-redirect`.
//! - `permanent-redirect`: an absolute http(s) URL; 301 (or `permanent-redirect-code`, 300–308).
//!   A code out of range keeps the default.
//!
//! The `Location` is the value as written: nothing of the request is appended, and nginx
//! variables (`$request_uri`) are refused (ingress-nginx v1.15.1's URL validation refuses `$`
//! too). A value with control bytes, spaces or anything else no URL has is refused.

use super::{Policy, Reader};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[
    "app-root",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
];

/// A redirect every request of the route gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub location: String,
    pub code: u16,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Redirects {
    /// `app-root`: the path `/` is redirected to (302).
    pub app_root: Option<String>,
    /// `temporal-redirect` or `permanent-redirect`.
    pub redirect: Option<Redirect>,
}

impl Redirects {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        self.app_root.is_some() || self.redirect.is_some()
    }
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    let mut out = Redirects::default();
    if let Some(v) = r.get("app-root") {
        match app_root(v) {
            Some(path) => out.app_root = Some(path),
            None => r.invalid("app-root", "expected a path such as /app"),
        }
    }
    let temporal_code = code(r, "temporal-redirect-code", 302, 307);
    let permanent_code = code(r, "permanent-redirect-code", 301, 308);
    const URL: &str = "expected an absolute http(s) URL without variables";
    let mut temporal = None;
    if let Some(v) = r.get("temporal-redirect").filter(|v| !v.is_empty()) {
        match location(v) {
            Some(url) => {
                temporal = Some(Redirect {
                    location: url,
                    code: temporal_code,
                })
            }
            None => r.invalid("temporal-redirect", URL),
        }
    }
    let mut permanent = None;
    if let Some(v) = r.get("permanent-redirect").filter(|v| !v.is_empty()) {
        match location(v) {
            Some(url) => {
                permanent = Some(Redirect {
                    location: url,
                    code: permanent_code,
                })
            }
            None => r.invalid("permanent-redirect", URL),
        }
    }
    // ingress-nginx: "If the Ingress contains both annotations the execution order is temporal
    // and then permanent".
    if temporal.is_some() && permanent.is_some() {
        r.ignored("permanent-redirect", "temporal-redirect is set and wins");
    }
    if temporal.is_none() {
        r.ignored("temporal-redirect-code", "no effect without a usable temporal-redirect");
    }
    if permanent.is_none() || temporal.is_some() {
        r.ignored(
            "permanent-redirect-code",
            "no effect without a permanent-redirect in use",
        );
    }
    out.redirect = temporal.or(permanent);
    p.redirects = out;
}

/// A redirect status in `300..=max`; `default` when unset or out of range (reported).
fn code<'a>(r: &mut Reader<'a>, name: &'a str, default: u16, max: u16) -> u16 {
    match r.get(name).map(str::parse::<u16>) {
        None => default,
        Some(Ok(c)) if (300..=max).contains(&c) => c,
        Some(_) => {
            r.invalid(name, &format!("expected a redirect status, 300 to {max}"));
            default
        }
    }
}

/// URL bytes (RFC 3986 unreserved, reserved and `%`), never `$` (an nginx variable mzlb would
/// not expand) nor a control byte, space, quote or backslash.
fn url_bytes(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!&'()*+,;=%".contains(&b))
}

/// `permanent-redirect` / `temporal-redirect`: `http(s)://host...` only.
fn location(v: &str) -> Option<String> {
    let lower = v.get(..8)?.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &v[8..]
    } else if lower.starts_with("http://") {
        &v[7..]
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_ok = !host.is_empty() && !host.starts_with(':');
    (host_ok && url_bytes(v)).then(|| v.to_owned())
}

/// `app-root`: a path from `/` (`//host` would be another host's), with an optional query.
fn app_root(v: &str) -> Option<String> {
    (v.starts_with('/') && !v.starts_with("//") && !v.contains('#') && url_bytes(v)).then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::FindingKind::{self, Ignored, Invalid};
    use super::*;

    fn redirects(pairs: &[(&str, &str)]) -> (Redirects, Vec<(String, FindingKind)>) {
        let (p, f) = super::super::parse_names(pairs, &Default::default());
        assert!(p.unenforced.is_empty());
        (p.redirects, f)
    }

    fn to(location: &str, code: u16) -> Option<Redirect> {
        Some(Redirect {
            location: location.into(),
            code,
        })
    }

    #[test]
    fn locations_table() {
        for ok in [
            "https://example.com",
            "http://example.com/",
            "HTTPS://Example.com:8443/a/b?c=d&e=f#g",
            "https://[::1]:8443/x",
            "https://user@example.com/",
            "https://example.com/%20a",
        ] {
            assert_eq!(location(ok).as_deref(), Some(ok), "{ok:?}");
        }
        for bad in [
            "",
            "/path",
            "example.com",
            "//example.com/x",
            "ftp://example.com",
            "javascript:alert(1)",
            "httpfoo://example.com",
            "https://",
            "https:///path",
            "https://:80/",
            "https://example.com$request_uri",
            "https://example.com/\r\nSet-Cookie: a=b",
            "https://example.com/\n",
            "https://example.com/a b",
            "https://example.com/\0",
            "https://example.com/\"",
            "https://example.com/\\",
            "https://exämple.com/",
            "https://example.com/<script>",
        ] {
            assert_eq!(location(bad), None, "{bad:?}");
        }
        for ok in ["/app", "/", "/app/?x=1", "/a%20b", "/a:b@c"] {
            assert_eq!(app_root(ok).as_deref(), Some(ok), "{ok:?}");
        }
        for bad in [
            "",
            "app",
            "//evil.test",
            "https://evil.test/",
            "/a b",
            "/a\r\nX: 1",
            "/$uri",
            "/a#b",
            "/é",
        ] {
            assert_eq!(app_root(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn precedence_and_codes() {
        let url = "https://new.test";
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<Redirect>, &'a [(&'a str, FindingKind)]);
        let rows: &[Row<'_>] = &[
            (&[("permanent-redirect", url)], to(url, 301), &[]),
            (&[("temporal-redirect", url)], to(url, 302), &[]),
            (
                &[("permanent-redirect", url), ("permanent-redirect-code", "308")],
                to(url, 308),
                &[],
            ),
            (
                &[("permanent-redirect", url), ("permanent-redirect-code", "300")],
                to(url, 300),
                &[],
            ),
            (
                &[("permanent-redirect", url), ("permanent-redirect-code", "309")],
                to(url, 301),
                &[("permanent-redirect-code", Invalid)],
            ),
            (
                &[("permanent-redirect", url), ("permanent-redirect-code", "299")],
                to(url, 301),
                &[("permanent-redirect-code", Invalid)],
            ),
            (
                &[("permanent-redirect", url), ("permanent-redirect-code", "-301")],
                to(url, 301),
                &[("permanent-redirect-code", Invalid)],
            ),
            (
                &[("permanent-redirect", url), ("permanent-redirect-code", "3O1")],
                to(url, 301),
                &[("permanent-redirect-code", Invalid)],
            ),
            (
                &[("temporal-redirect", url), ("temporal-redirect-code", "307")],
                to(url, 307),
                &[],
            ),
            (
                &[("temporal-redirect", url), ("temporal-redirect-code", "308")],
                to(url, 302),
                &[("temporal-redirect-code", Invalid)],
            ),
            (
                &[("temporal-redirect", url), ("permanent-redirect", "https://old.test")],
                to(url, 302),
                &[("permanent-redirect", Ignored)],
            ),
            (
                &[
                    ("temporal-redirect", "/relative"),
                    ("permanent-redirect", "https://old.test"),
                ],
                to("https://old.test", 301),
                &[("temporal-redirect", Invalid)],
            ),
            (
                &[("permanent-redirect-code", "308")],
                None,
                &[("permanent-redirect-code", Ignored)],
            ),
            (
                &[("permanent-redirect", "https://a.test$request_uri")],
                None,
                &[("permanent-redirect", Invalid)],
            ),
            (&[("permanent-redirect", "")], None, &[]),
        ];
        for (pairs, expected, findings) in rows {
            let (got, f) = redirects(pairs);
            assert_eq!(got.redirect, *expected, "{pairs:?}");
            let f: Vec<(&str, FindingKind)> = f.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            assert_eq!(f, *findings, "{pairs:?}");
            assert_eq!(got.needs_hyper(), expected.is_some());
        }
        let (got, f) = redirects(&[("app-root", "/app")]);
        assert_eq!(got.app_root.as_deref(), Some("/app"));
        assert!(f.is_empty() && got.needs_hyper());
        let (got, f) = redirects(&[("app-root", "http://evil.test/")]);
        assert_eq!(got.app_root, None);
        assert_eq!(f, [("app-root".to_owned(), Invalid)]);
    }
}
