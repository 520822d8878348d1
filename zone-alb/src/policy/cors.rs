//! CORS at run time, as ingress-nginx v1.15.1's template does it (`nginx.tmpl` "CORS" and
//! `buildCorsOriginRegex`): a request is a CORS one when the allowed origins are `*` (then the
//! origin sent back is `*`, whether or not the request had one) or when its `Origin` matches one
//! of them, case-insensitively (then that `Origin` is echoed). A CORS `OPTIONS` is answered 204 by
//! the ALB in the rewrite phase, before allow-lists, limits and authentication; any other CORS
//! request gets the fields set on its response with `more_set_headers` semantics (the backend's
//! are replaced). A request whose origin is not allowed gets no field, and its `OPTIONS` goes to
//! the backend.
//!
//! One difference: ingress-nginx's origin regex is anchored only at the end, so it would also
//! accept an `Origin` that merely ends with an allowed one (no browser sends such an origin);
//! mzlb compares the whole value.

use hyper::header::{HeaderName, HeaderValue};

use crate::annotations::cors::Cors;

/// `cors-allow-origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowOrigin {
    Any,
    /// Empty when every entry was refused: no request is a CORS one.
    List(Vec<OriginPattern>),
}

/// One allowed origin: `scheme://host[:port]`, or `scheme://*.host[:port]` for exactly one more
/// DNS label (`[A-Za-z0-9-]+`, as ingress-nginx's `buildOriginRegex`). Stored lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    /// `https://` or `http://`.
    scheme: &'static str,
    /// One label more than `rest` (`*.`).
    wildcard: bool,
    /// `host[:port]`.
    rest: String,
}

impl OriginPattern {
    /// ingress-nginx's `^https?://(\*\.)?[A-Za-z0-9\-\.]*(:[0-9]+)?$`, with a host required.
    pub fn parse(v: &str) -> Option<Self> {
        let (scheme, after) = if let Some(after) = v.strip_prefix("https://") {
            ("https://", after)
        } else {
            ("http://", v.strip_prefix("http://")?)
        };
        let (wildcard, rest) = match after.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, after),
        };
        let (host, port) = match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        (host_ok && port_ok).then(|| Self {
            scheme,
            wildcard,
            rest: rest.to_ascii_lowercase(),
        })
    }

    /// Whether the request's `Origin` is this one (ASCII case-insensitive, whole value).
    pub fn matches(&self, origin: &[u8]) -> bool {
        let Some(after) = strip_prefix_ci(origin, self.scheme.as_bytes()) else {
            return false;
        };
        if !self.wildcard {
            return after.eq_ignore_ascii_case(self.rest.as_bytes());
        }
        let label = after
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
            .count();
        label > 0 && after.get(label) == Some(&b'.') && after[label + 1..].eq_ignore_ascii_case(self.rest.as_bytes())
    }
}

fn strip_prefix_ci<'a>(v: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &v[prefix.len()..])
}

/// What a route with CORS does with one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not a CORS request (CORS off, or an origin not allowed): nothing added.
    None,
    /// Answer 204 with these fields, before anything else is checked.
    Preflight(Vec<(HeaderName, HeaderValue)>),
    /// Set these fields on whatever response goes back.
    Fields(Vec<(HeaderName, HeaderValue)>),
}

const ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
const ALLOW_CREDENTIALS: HeaderName = HeaderName::from_static("access-control-allow-credentials");
const ALLOW_METHODS: HeaderName = HeaderName::from_static("access-control-allow-methods");
const ALLOW_HEADERS: HeaderName = HeaderName::from_static("access-control-allow-headers");
const EXPOSE_HEADERS: HeaderName = HeaderName::from_static("access-control-expose-headers");
const MAX_AGE: HeaderName = HeaderName::from_static("access-control-max-age");

/// The decision for a request with method `method` and `Origin` field `origin`.
pub(crate) fn decide(cors: &Cors, method: &str, origin: Option<&HeaderValue>) -> Decision {
    if !cors.enabled {
        return Decision::None;
    }
    let echoed = match (&cors.allow_origin, origin) {
        (AllowOrigin::Any, _) => HeaderValue::from_static("*"),
        (AllowOrigin::List(list), Some(origin)) if list.iter().any(|p| p.matches(origin.as_bytes())) => origin.clone(),
        _ => return Decision::None,
    };
    // Validated when parsed: tokens, commas, spaces and tabs only.
    let value = |s: &str| HeaderValue::from_str(s).expect("validated CORS value");
    let mut fields = vec![(ALLOW_ORIGIN, echoed)];
    if cors.allow_credentials {
        fields.push((ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
    }
    fields.push((ALLOW_METHODS, value(&cors.allow_methods)));
    fields.push((ALLOW_HEADERS, value(&cors.allow_headers)));
    if let Some(expose) = &cors.expose_headers {
        fields.push((EXPOSE_HEADERS, value(expose)));
    }
    fields.push((MAX_AGE, HeaderValue::from(cors.max_age)));
    if method == "OPTIONS" {
        // The template also sets `Content-Type: text/plain charset=UTF-8` and
        // `Content-Length: 0`, but nginx's header filter drops both from every 204
        // (`ngx_http_header_filter`: `NGX_HTTP_NO_CONTENT` clears content_type and
        // content_length), so neither reaches the client; nor do they here.
        Decision::Preflight(fields)
    } else {
        Decision::Fields(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::cors::parse_origins;

    fn allowed(list: &str, origin: &str) -> bool {
        let cors = Cors {
            enabled: true,
            allow_origin: parse_origins(list).unwrap(),
            ..Cors::default()
        };
        let origin = HeaderValue::from_bytes(origin.as_bytes()).unwrap();
        decide(&cors, "GET", Some(&origin)) != Decision::None
    }

    #[test]
    fn origins_are_matched_whole_and_case_insensitively() {
        let list = "https://example.com, http://a.test:8080, https://*.wild.test";
        for (origin, ok) in [
            ("https://example.com", true),
            ("HTTPS://EXAMPLE.COM", true),
            ("http://example.com", false),
            ("https://example.com:443", false),
            ("https://example.com.evil", false),
            ("https://evil.com.example.com", false),
            ("https://evilexample.com", false),
            ("https://evil.example.com", false),
            ("https://example.com/", false),
            ("https://example.com/https://example.com", false),
            ("xhttps://example.com", false),
            ("null", false),
            ("", false),
            ("http://a.test:8080", true),
            ("http://a.test", false),
            ("http://a.test:80800", false),
            ("https://x.wild.test", true),
            ("https://X-1.WILD.test", true),
            ("https://wild.test", false),
            ("https://.wild.test", false),
            ("https://a.b.wild.test", false),
            ("https://evil.com.wild.test", false),
            ("https://x.wild.test.evil", false),
            ("https://x_y.wild.test", false),
            ("http://x.wild.test", false),
            ("https://x.wild.test:443", false),
        ] {
            assert_eq!(allowed(list, origin), ok, "{origin:?}");
        }
        // An empty list (every entry refused) allows nothing.
        let none = Cors {
            enabled: true,
            allow_origin: AllowOrigin::List(Vec::new()),
            ..Cors::default()
        };
        let origin = HeaderValue::from_static("https://example.com");
        assert_eq!(decide(&none, "OPTIONS", Some(&origin)), Decision::None);
    }

    #[test]
    fn fields_are_the_templates() {
        let cors = Cors {
            enabled: true,
            ..Cors::default()
        };
        let Decision::Preflight(fields) = decide(&cors, "OPTIONS", None) else {
            panic!("`*` answers every preflight");
        };
        let got: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(
            got,
            [
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET, PUT, POST, DELETE, PATCH, OPTIONS"),
                (
                    "access-control-allow-headers",
                    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
                ),
                ("access-control-max-age", "1728000"),
            ]
        );
        let cors = Cors {
            enabled: true,
            allow_origin: parse_origins("https://a.test").unwrap(),
            allow_credentials: false,
            expose_headers: Some("X-A, *".into()),
            max_age: 5,
            ..Cors::default()
        };
        let origin = HeaderValue::from_static("https://A.test");
        let Decision::Fields(fields) = decide(&cors, "POST", Some(&origin)) else {
            panic!("an allowed origin gets the fields");
        };
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "access-control-allow-origin",
                "access-control-allow-methods",
                "access-control-allow-headers",
                "access-control-expose-headers",
                "access-control-max-age"
            ]
        );
        assert_eq!(fields[0].1, "https://A.test", "the request's Origin, as sent");
        assert_eq!(decide(&Cors::default(), "OPTIONS", Some(&origin)), Decision::None);
    }
}
