//! `enable-cors` and `cors-*`: CORS preflight answers and response fields, as ingress-nginx's template writes them.
//!
//! ingress-nginx v1.15.1 (`internal/ingress/annotations/cors`): `enable-cors` (false),
//! `cors-allow-origin` (`*`; a comma list of `http(s)://host[:port]`, `http(s)://*.host[:port]`,
//! or `*`, which wins over the rest; entries that are no origin are skipped),
//! `cors-allow-methods` (`GET, PUT, POST, DELETE, PATCH, OPTIONS`), `cors-allow-headers`
//! (`DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization`),
//! `cors-expose-headers` (none), `cors-allow-credentials` (true), `cors-max-age` (1728000). A
//! value that is not valid keeps the default. What the fields do at run time is in
//! [`crate::policy::cors`].

use super::{Policy, Reader, parse_bool};
use crate::policy::cors::{AllowOrigin, OriginPattern};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
];

pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: u64 = 1_728_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Cors {
    pub enabled: bool,
    pub allow_origin: AllowOrigin,
    /// Written as given (validated: tokens separated by `,` and single spaces).
    pub allow_methods: String,
    pub allow_headers: String,
    /// `None`: no `Access-Control-Expose-Headers` field.
    pub expose_headers: Option<String>,
    pub allow_credentials: bool,
    pub max_age: u64,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_origin: AllowOrigin::Any,
            allow_methods: DEFAULT_METHODS.to_owned(),
            allow_headers: DEFAULT_HEADERS.to_owned(),
            expose_headers: None,
            allow_credentials: true,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl Cors {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        self.enabled
    }
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    let mut c = Cors::default();
    if let Some(v) = r.get("enable-cors") {
        match parse_bool(v) {
            Some(b) => c.enabled = b,
            None => r.invalid("enable-cors", "expected true or false"),
        }
    }
    if let Some(v) = r.get("cors-allow-origin") {
        match parse_origins(v) {
            Ok(origins) => c.allow_origin = origins,
            Err((origins, bad)) => {
                c.allow_origin = origins;
                let expected = format!(
                    "{bad:?} is not an origin (http(s)://host[:port], http(s)://*.host[:port] or *); \
                     it is skipped"
                );
                r.report("cors-allow-origin", super::FindingKind::Invalid, expected);
            }
        }
    }
    if let Some(v) = r.get("cors-allow-methods") {
        if is_list(v, |b| b.is_ascii_alphabetic(), false) {
            c.allow_methods = v.to_owned();
        } else {
            r.invalid("cors-allow-methods", "expected methods such as `GET, POST`");
        }
    }
    if let Some(v) = r.get("cors-allow-headers") {
        if is_list(v, is_header_char, false) {
            c.allow_headers = v.to_owned();
        } else {
            r.invalid(
                "cors-allow-headers",
                "expected field names such as `X-Custom, Authorization`",
            );
        }
    }
    if let Some(v) = r.get("cors-expose-headers") {
        if is_list(v, is_header_char, true) {
            c.expose_headers = Some(v.to_owned());
        } else if !v.is_empty() {
            r.invalid("cors-expose-headers", "expected field names such as `X-Custom, *`");
        }
    }
    if let Some(v) = r.get("cors-allow-credentials") {
        match parse_bool(v) {
            Some(b) => c.allow_credentials = b,
            None => r.invalid("cors-allow-credentials", "expected true or false"),
        }
    }
    if let Some(v) = r.get("cors-max-age") {
        match v.parse::<u64>() {
            Ok(n) if n <= u64::from(u32::MAX) => c.max_age = n,
            _ => r.invalid("cors-max-age", "expected seconds"),
        }
    }
    if !c.enabled {
        for name in READ.iter().skip(1) {
            if !r.findings.contains_key(name) {
                r.ignored(name, "no effect: enable-cors is not true");
            }
        }
    }
    p.cors = c;
}

/// ingress-nginx's header-list characters (`[A-Za-z0-9\-\_]`).
fn is_header_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// ingress-nginx's list shape, `^(item,?\s?)+$`: items of `item` bytes, each followed by at most
/// one comma and then at most one space or tab (never CR, LF or another control byte, which Go's
/// `\s` would let into a header). `star`: `*` is an item too (expose-headers).
fn is_list(v: &str, item: impl Fn(u8) -> bool, star: bool) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    if b.is_empty() {
        return false;
    }
    while i < b.len() {
        if star && b[i] == b'*' {
            i += 1;
        } else {
            let start = i;
            while i < b.len() && item(b[i]) {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
        if i < b.len() && b[i] == b',' {
            i += 1;
        }
        if i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
    }
    true
}

/// `cors-allow-origin`: `*` anywhere in the list means any origin, as in ingress-nginx; other
/// entries must be origins (the first that is not is returned with what was usable: it is
/// skipped, as ingress-nginx skips it). Empty entries are skipped (ingress-nginx turns a trailing
/// comma into an empty alternative that matches every origin; mzlb does not).
pub(crate) fn parse_origins(v: &str) -> Result<AllowOrigin, (AllowOrigin, String)> {
    if v.is_empty() {
        return Err((AllowOrigin::Any, String::new()));
    }
    let mut list = Vec::new();
    let mut bad = None;
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return match bad {
                None => Ok(AllowOrigin::Any),
                Some(bad) => Err((AllowOrigin::Any, bad)),
            };
        }
        match OriginPattern::parse(entry) {
            Some(pattern) => list.push(pattern),
            None => {
                bad.get_or_insert_with(|| entry.to_owned());
            }
        }
    }
    match bad {
        None => Ok(AllowOrigin::List(list)),
        Some(bad) => Err((AllowOrigin::List(list), bad)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::FindingKind;
    use super::super::FindingKind::{Ignored, Invalid};
    use super::*;

    fn cors(pairs: &[(&str, &str)]) -> (Cors, Vec<(String, FindingKind)>) {
        let (p, f) = super::super::parse_names(pairs, &Default::default());
        assert!(p.unenforced.is_empty());
        (p.cors, f)
    }

    #[test]
    fn defaults_are_ingress_nginx_ones() {
        let (c, f) = cors(&[("enable-cors", "true")]);
        assert!(f.is_empty());
        assert_eq!(
            c,
            Cors {
                enabled: true,
                ..Cors::default()
            }
        );
        assert_eq!(c.allow_origin, AllowOrigin::Any);
        assert!(c.allow_credentials && c.max_age == 1_728_000 && c.expose_headers.is_none());
        assert!(c.needs_hyper());
        assert!(!Cors::default().needs_hyper());
    }

    #[test]
    fn list_values_table() {
        // (value, methods ok, headers ok, expose ok)
        let rows: &[(&str, bool, bool, bool)] = &[
            ("GET", true, true, true),
            ("GET, POST", true, true, true),
            ("GET,POST", true, true, true),
            ("GET POST", true, true, true),
            ("GET,\tPOST", true, true, true),
            ("X-Custom-1, Authorization", false, true, true),
            ("X_Under", false, true, true),
            ("*", false, false, true),
            ("X-A, *", false, false, true),
            ("", false, false, false),
            ("GET,,POST", false, false, false),
            ("GET  POST", false, false, false),
            (", GET", false, false, false),
            ("GET ,POST", false, false, false),
            ("GET\r\nX-Evil: 1", false, false, false),
            ("GET,\nPOST", false, false, false),
            ("GET,\rPOST", false, false, false),
            ("GET\0", false, false, false),
            ("GET;POST", false, false, false),
            ("$request_uri", false, false, false),
            ("GÉT", false, false, false),
            ("X-A:1", false, false, false),
        ];
        for &(v, methods, headers, expose) in rows {
            assert_eq!(is_list(v, |b| b.is_ascii_alphabetic(), false), methods, "methods {v:?}");
            assert_eq!(is_list(v, is_header_char, false), headers, "headers {v:?}");
            assert_eq!(is_list(v, is_header_char, true), expose, "expose {v:?}");
        }
    }

    #[test]
    fn origins_table() {
        let any = AllowOrigin::Any;
        let list = |v: &[&str]| AllowOrigin::List(v.iter().map(|o| OriginPattern::parse(o).unwrap()).collect());
        type Parsed<'a> = Result<AllowOrigin, (AllowOrigin, &'a str)>;
        let rows: &[(&str, Parsed<'_>)] = &[
            ("*", Ok(any.clone())),
            ("https://a.test, *", Ok(any.clone())),
            ("https://a.test", Ok(list(&["https://a.test"]))),
            (
                "https://a.test, http://b.test:8080",
                Ok(list(&["https://a.test", "http://b.test:8080"])),
            ),
            ("https://*.a.test", Ok(list(&["https://*.a.test"]))),
            ("https://a.test,", Ok(list(&["https://a.test"]))),
            ("", Err((any.clone(), ""))),
            ("null", Err((list(&[]), "null"))),
            ("https://a.test, null", Err((list(&["https://a.test"]), "null"))),
            ("null, *", Err((any.clone(), "null"))),
            ("a.test", Err((list(&[]), "a.test"))),
            ("ftp://a.test", Err((list(&[]), "ftp://a.test"))),
            ("https://a.test/path", Err((list(&[]), "https://a.test/path"))),
            ("https://a.test:", Err((list(&[]), "https://a.test:"))),
            ("https://a.test:80x", Err((list(&[]), "https://a.test:80x"))),
            ("https://a.*.test", Err((list(&[]), "https://a.*.test"))),
            ("https://*.*.a.test", Err((list(&[]), "https://*.*.a.test"))),
            ("https://*a.test", Err((list(&[]), "https://*a.test"))),
            ("https://user@a.test", Err((list(&[]), "https://user@a.test"))),
            (
                "https://a.test\r\nX-Evil: 1",
                Err((list(&[]), "https://a.test\r\nX-Evil: 1")),
            ),
            (
                "https://a.test$http_origin",
                Err((list(&[]), "https://a.test$http_origin")),
            ),
            ("https://", Err((list(&[]), "https://"))),
        ];
        for (v, expected) in rows {
            let got = parse_origins(v);
            let expected = expected.clone().map_err(|(o, bad)| (o, bad.to_owned()));
            assert_eq!(got, expected, "{v:?}");
        }
    }

    #[test]
    fn annotations_land_in_their_class() {
        let (c, f) = cors(&[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://a.test, null"),
            ("cors-allow-methods", "GET\r\nX: 1"),
            ("cors-allow-headers", "X-A, X-B"),
            ("cors-expose-headers", "X-C"),
            ("cors-allow-credentials", "false"),
            ("cors-max-age", "60"),
        ]);
        assert_eq!(
            f,
            [
                ("cors-allow-methods".to_owned(), Invalid),
                ("cors-allow-origin".to_owned(), Invalid)
            ]
        );
        assert_eq!(c.allow_methods, DEFAULT_METHODS);
        assert_eq!(c.allow_headers, "X-A, X-B");
        assert_eq!(c.expose_headers.as_deref(), Some("X-C"));
        assert!(!c.allow_credentials);
        assert_eq!(c.max_age, 60);
        assert_eq!(c.allow_origin, parse_origins("https://a.test").unwrap());

        for (k, v) in [
            ("enable-cors", "yes"),
            ("cors-max-age", "-1"),
            ("cors-max-age", "1e3"),
            ("cors-allow-credentials", "maybe"),
            ("cors-allow-headers", "X-A;"),
            ("cors-expose-headers", "X\nA"),
        ] {
            let (c, f) = cors(&[("enable-cors", "true"), (k, v)]);
            if k == "enable-cors" {
                assert!(!c.enabled);
            } else {
                assert!(c.enabled);
            }
            assert_eq!(f, [(k.to_owned(), Invalid)], "{k}: {v:?}");
            assert!(c.allow_credentials && c.max_age == DEFAULT_MAX_AGE && c.expose_headers.is_none());
        }
        // Without enable-cors the rest asks for nothing.
        let (c, f) = cors(&[("cors-allow-origin", "https://a.test"), ("cors-max-age", "x")]);
        assert!(!c.enabled);
        assert_eq!(
            f,
            [
                ("cors-allow-origin".to_owned(), Ignored),
                ("cors-max-age".to_owned(), Invalid)
            ]
        );
        let (_, f) = cors(&[("enable-cors", "false"), ("cors-allow-headers", "X-A")]);
        assert_eq!(f, [("cors-allow-headers".to_owned(), Ignored)]);
    }
}
