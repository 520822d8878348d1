//! HTTPRoute's CORS filter (`HTTPRouteCORS`): preflights answered by the ALB, and the
//! `Access-Control-*` fields of actual requests, as the Gateway API specifies them (an origin
//! wildcard matches one or more labels; `*` methods or headers echo the request's when
//! credentials are allowed, since browsers refuse `*` then).

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

/// One allowed origin.
#[derive(Debug, PartialEq)]
enum Origin {
    Any,
    /// `scheme://host[:port]`, lower case.
    Exact(String),
    /// `scheme://*.suffix[:port]`: (`scheme://`, `.suffix`, `:port` or empty).
    Wildcard(String, String, String),
}

#[derive(Debug, PartialEq)]
pub(crate) struct Cors {
    origins: Vec<Origin>,
    /// Methods as written; `["*"]` for any.
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    credentials: bool,
    max_age: u32,
}

impl Cors {
    /// Reads the filter's `cors` object; an error names the field.
    pub(crate) fn parse(v: &serde_json::Value) -> Result<Cors, String> {
        let list = |name: &str| -> Result<Vec<String>, String> {
            match v.get(name) {
                None => Ok(Vec::new()),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
                            .map(str::to_owned)
                            .ok_or_else(|| format!("cors.{name}: {i} is not a token"))
                    })
                    .collect(),
                Some(other) => Err(format!("cors.{name}: {other} is not a list")),
            }
        };
        let origins = list("allowOrigins")?
            .iter()
            .map(|o| parse_origin(o).ok_or_else(|| format!("cors.allowOrigins: {o:?} is not an origin")))
            .collect::<Result<Vec<_>, _>>()?;
        let methods = list("allowMethods")?;
        for m in &methods {
            if m != "*" && m.parse::<Method>().is_err() {
                return Err(format!("cors.allowMethods: {m:?} is not a method"));
            }
        }
        let headers = list("allowHeaders")?;
        let expose = list("exposeHeaders")?;
        for h in headers.iter().chain(&expose) {
            if h != "*" && hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(format!("cors: {h:?} is not a header name"));
            }
        }
        let credentials = match v.get("allowCredentials") {
            None => false,
            Some(b) => b.as_bool().ok_or("cors.allowCredentials: not true or false")?,
        };
        let max_age = match v.get("maxAge") {
            None => 5,
            Some(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("cors.maxAge: not a number of seconds")?,
        };
        if let Some(key) = v.as_object().and_then(|o| {
            o.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "allowOrigins" | "allowMethods" | "allowHeaders" | "exposeHeaders" | "allowCredentials" | "maxAge"
                )
            })
        }) {
            return Err(format!("cors.{key} is not supported"));
        }
        Ok(Cors {
            origins,
            methods,
            headers,
            expose,
            credentials,
            max_age,
        })
    }

    fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|o| match o {
            Origin::Any => true,
            Origin::Exact(e) => *e == origin,
            Origin::Wildcard(scheme, suffix, port) => origin
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_suffix(port.as_str()))
                .is_some_and(|host| {
                    host.len() > suffix.len()
                        && host.ends_with(suffix.as_str())
                        && !host.contains(':')
                        && host[..host.len() - suffix.len()]
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }),
        })
    }

    /// The ALB's answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), if this is one.
    pub(crate) fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response<crate::proxy::Body>> {
        let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
        let wanted = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        if method != Method::OPTIONS {
            return None;
        }
        let mut resp = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(crate::proxy::empty())
            .expect("static response parts are valid");
        if !self.allows(origin) {
            return Some(resp); // no Access-Control-* field: the browser refuses
        }
        let h = resp.headers_mut();
        self.origin_fields(origin, h);
        let any = |list: &[String]| list.iter().any(|m| m == "*");
        let methods = if any(&self.methods) && self.credentials {
            Some(wanted.clone())
        } else {
            joined(&self.methods)
        };
        if let Some(methods) = methods {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        let allow_headers = if any(&self.headers) && self.credentials {
            headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned()
        } else {
            joined(&self.headers)
        };
        if let Some(allow_headers) = allow_headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age));
        Some(resp)
    }

    /// The fields of an actual request's answer, when its `Origin` is allowed.
    pub(crate) fn respond(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
            return;
        };
        if self.allows(origin) {
            self.origin_fields(origin, response);
        }
    }

    fn origin_fields(&self, origin: &str, h: &mut HeaderMap) {
        // With credentials, `*` is refused by browsers: the origin is echoed.
        let any = self.origins.contains(&Origin::Any) && !self.credentials;
        let value = if any {
            HeaderValue::from_static("*")
        } else {
            HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("null"))
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if !any {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = joined(&self.expose) {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
    }
}

fn joined(list: &[String]) -> Option<HeaderValue> {
    if list.is_empty() {
        return None;
    }
    HeaderValue::from_str(&list.join(", ")).ok()
}

fn parse_origin(o: &str) -> Option<Origin> {
    if o == "*" {
        return Some(Origin::Any);
    }
    let lower = o.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, format!(":{p}")),
        Some(_) => return None,
        None => (rest, String::new()),
    };
    let valid = |h: &str| {
        !h.is_empty()
            && h.split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    match host.strip_prefix("*.") {
        Some(suffix) if valid(suffix) => Some(Origin::Wildcard(format!("{scheme}://"), format!(".{suffix}"), port)),
        Some(_) => None,
        None if valid(host) => Some(Origin::Exact(lower)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn preflight(cors: &Cors, origin: &str, method: &str, req_headers: Option<&str>) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        if let Some(r) = req_headers {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(r).unwrap(),
            );
        }
        cors.preflight(&Method::OPTIONS, &h).map(|r| r.headers().clone())
    }

    #[test]
    fn the_conformance_suites_preflights() {
        let cors = Cors::parse(&json!({
            "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
            "allowMethods": ["GET", "OPTIONS"], "allowHeaders": ["x-header-1", "x-header-2"],
            "exposeHeaders": ["x-header-3", "x-header-4"], "allowCredentials": true, "maxAge": 3600
        }))
        .unwrap();
        for origin in [
            "https://www.foo.com",
            "https://xpto.bar.com",
            "https://xpto.www.bar.com",
        ] {
            let h = preflight(&cors, origin, "GET", None).unwrap();
            assert_eq!(h["access-control-allow-origin"], origin);
            assert_eq!(h["access-control-allow-methods"], "GET, OPTIONS");
            assert_eq!(h["access-control-allow-headers"], "x-header-1, x-header-2");
            assert_eq!(h["access-control-expose-headers"], "x-header-3, x-header-4");
            assert_eq!(h["access-control-max-age"], "3600");
            assert_eq!(h["access-control-allow-credentials"], "true");
        }
        for origin in [
            "https://foo.com",
            "http://www.foo.com",
            "https://bar.com",
            "https://www.foo.com.evil.test",
            "https://a.bar.com:8443",
            "https://evil.test/.bar.com",
        ] {
            let h = preflight(&cors, origin, "GET", None).unwrap();
            assert!(!h.contains_key("access-control-allow-origin"), "{origin}");
        }
        let wild = Cors::parse(&json!({"allowOrigins": ["*"], "allowMethods": ["PUT"]})).unwrap();
        let h = preflight(&wild, "https://foobar.com:12345", "PUT", None).unwrap();
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(!h.contains_key("access-control-allow-credentials"));
        let echo = Cors::parse(&json!({"allowOrigins": ["https://other.foo.com"], "allowMethods": ["*"], "allowHeaders": ["*"], "allowCredentials": true})).unwrap();
        let h = preflight(&echo, "https://other.foo.com", "PUT", Some("x-a, x-b")).unwrap();
        assert_eq!(h["access-control-allow-methods"], "PUT", "with credentials, `*` echoes");
        assert_eq!(h["access-control-allow-headers"], "x-a, x-b");
    }

    #[test]
    fn malformed_settings_are_refused() {
        for bad in [
            json!({"allowOrigins": ["www.foo.com"]}),
            json!({"allowOrigins": ["https://*"]}),
            json!({"allowOrigins": ["https://a b.com"]}),
            json!({"allowOrigins": ["https://a.com:port"]}),
            json!({"allowOrigins": "https://a.com"}),
            json!({"allowMethods": ["GE T"]}),
            json!({"allowHeaders": ["x y"]}),
            json!({"allowCredentials": "yes"}),
            json!({"maxAge": -1}),
            json!({"allowPrivateNetwork": true}),
        ] {
            assert!(Cors::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn actual_requests_get_the_origin_fields() {
        let cors = Cors::parse(&json!({"allowOrigins": ["https://www.foo.com"], "allowCredentials": true})).unwrap();
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, HeaderValue::from_static("https://www.foo.com"));
        let mut resp = HeaderMap::new();
        cors.respond(req.get(header::ORIGIN), &mut resp);
        assert_eq!(resp["access-control-allow-origin"], "https://www.foo.com");
        assert_eq!(resp["access-control-allow-credentials"], "true");
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, HeaderValue::from_static("https://evil.test"));
        let mut resp = HeaderMap::new();
        cors.respond(req.get(header::ORIGIN), &mut resp);
        assert!(resp.is_empty());
    }
}
