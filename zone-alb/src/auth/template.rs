//! The nginx variables ingress-nginx users write in auth annotation values (`auth-url`,
//! `auth-signin`, `auth-request-redirect`, `auth-cache-key`), parsed once into a typed template
//! and expanded per request. Only the variables listed in [`Var`] exist; any other makes the
//! value unusable (the annotation fails closed). Nothing is ever handed to an interpreter.

use std::fmt::Write as _;

use hyper::header::HeaderMap;

/// One variable a template may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$host`: the request's host, lower case, without port.
    Host,
    /// `$http_host` (and `$best_http_host`): the Host field as sent.
    HttpHost,
    /// `$request_uri`: the target as sent (path and query).
    RequestUri,
    /// `$escaped_request_uri`: `$request_uri` escaped as a URI component (nginx's
    /// `set_escape_uri`), what ingress-nginx puts in `rd=`.
    EscapedRequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args` / `$query_string`: the query, without `?`.
    Args,
    /// `$is_args`: `?` when there is a query.
    IsArgs,
    /// `$scheme` / `$pass_access_scheme`: `http` or `https`.
    Scheme,
    /// `$remote_addr`: the client's address.
    RemoteAddr,
    /// `$request_method`.
    RequestMethod,
    /// `$server_port`: the port the ALB took the request on.
    ServerPort,
    /// `$http_<name>`: a request field (`_` stands for `-`), lower-cased name.
    Http(String),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`: a query argument.
    Arg(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A value with variables, parsed at compile time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a request offers to a template.
pub struct Request<'a> {
    pub host: &'a str,
    pub http_host: &'a str,
    /// Path and query as sent.
    pub request_uri: &'a str,
    pub scheme: &'a str,
    pub remote_addr: std::net::IpAddr,
    pub method: &'a str,
    pub server_port: u16,
    pub headers: &'a HeaderMap,
}

impl Request<'_> {
    fn path(&self) -> &str {
        self.request_uri.split_once('?').map_or(self.request_uri, |(p, _)| p)
    }

    fn query(&self) -> Option<&str> {
        self.request_uri.split_once('?').map(|(_, q)| q)
    }
}

impl Template {
    /// Parses `$name` and `${name}` references; `Err` names what is wrong. Control bytes are
    /// refused outright: the value may end up in a request field.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err("control characters are not allowed".into());
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = value;
        while let Some(i) = rest.find('$') {
            literal.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
                let end = braced.find('}').ok_or("unterminated ${")?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            if name.is_empty() {
                return Err("a lone `$`".into());
            }
            let var = var(name).ok_or_else(|| format!("unknown variable `${name}`"))?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// A template without variables.
    pub fn literal(value: &str) -> Self {
        Self {
            parts: vec![Part::Literal(value.to_owned())],
        }
    }

    /// Whether it names any variable.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The value for this request. Unknown fields, cookies and arguments are empty, as in
    /// nginx. The result may hold whatever the client sent: callers put it in a header only
    /// through `HeaderValue::from_str`, which refuses CR, LF and other control bytes.
    pub fn expand(&self, r: &Request<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(v) => expand_var(v, r, &mut out),
            }
        }
        out
    }
}

fn var(name: &str) -> Option<Var> {
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    Some(match name {
        "host" => Var::Host,
        "http_host" | "best_http_host" => Var::HttpHost,
        "request_uri" => Var::RequestUri,
        "escaped_request_uri" => Var::EscapedRequestUri,
        "uri" | "document_uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "is_args" => Var::IsArgs,
        "scheme" | "pass_access_scheme" => Var::Scheme,
        "remote_addr" => Var::RemoteAddr,
        "request_method" => Var::RequestMethod,
        "server_port" | "pass_port" => Var::ServerPort,
        _ => {
            if let Some(h) = name.strip_prefix("http_").filter(|s| valid(s)) {
                Var::Http(h.replace('_', "-").to_ascii_lowercase())
            } else if let Some(c) = name.strip_prefix("cookie_").filter(|s| valid(s)) {
                Var::Cookie(c.to_owned())
            } else if let Some(a) = name.strip_prefix("arg_").filter(|s| valid(s)) {
                Var::Arg(a.to_owned())
            } else {
                return None;
            }
        }
    })
}

fn expand_var(v: &Var, r: &Request<'_>, out: &mut String) {
    match v {
        Var::Host => out.push_str(r.host),
        Var::HttpHost => out.push_str(r.http_host),
        Var::RequestUri => out.push_str(r.request_uri),
        Var::EscapedRequestUri => escape_component(r.request_uri, out),
        Var::Uri => out.push_str(r.path()),
        Var::Args => out.push_str(r.query().unwrap_or("")),
        Var::IsArgs => {
            if r.query().is_some() {
                out.push('?');
            }
        }
        Var::Scheme => out.push_str(r.scheme),
        Var::RemoteAddr => {
            let _ = write!(out, "{}", r.remote_addr);
        }
        Var::RequestMethod => out.push_str(r.method),
        Var::ServerPort => {
            let _ = write!(out, "{}", r.server_port);
        }
        Var::Http(name) => {
            let values: Vec<&str> = r
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            out.push_str(&values.join(", "));
        }
        Var::Cookie(name) => {
            let values = r.headers.get_all(hyper::header::COOKIE);
            let found = values
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case(name));
            if let Some((_, value)) = found {
                out.push_str(value);
            }
        }
        Var::Arg(name) => {
            let found = r
                .query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .find(|(k, _)| k.eq_ignore_ascii_case(name));
            if let Some((_, value)) = found {
                out.push_str(value);
            }
        }
    }
}

/// nginx's `set_escape_uri`: every byte but unreserved characters (RFC 3986) as `%XX`.
pub fn escape_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &HeaderMap) -> Request<'_> {
        Request {
            host: "app.test",
            http_host: "App.test:8080",
            request_uri: "/a b/x?q=1&Next=/p&x",
            scheme: "https",
            remote_addr: "192.0.2.7".parse().unwrap(),
            method: "POST",
            server_port: 8443,
            headers,
        }
    }

    #[test]
    fn expansion_table() {
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        h.append("x-multi", "a".parse().unwrap());
        h.append("x-multi", "b".parse().unwrap());
        h.insert("cookie", "_oauth2_proxy=tok; other=1".parse().unwrap());
        let r = request(&h);
        let rows: &[(&str, &str)] = &[
            (
                "https://$host/oauth2/start?rd=$escaped_request_uri",
                "https://app.test/oauth2/start?rd=%2Fa%20b%2Fx%3Fq%3D1%26Next%3D%2Fp%26x",
            ),
            (
                "$scheme://$http_host$request_uri",
                "https://App.test:8080/a b/x?q=1&Next=/p&x",
            ),
            ("${scheme}x", "httpsx"),
            ("$pass_access_scheme://$best_http_host", "https://App.test:8080"),
            ("$uri$is_args$args", "/a b/x?q=1&Next=/p&x"),
            ("$remote_addr:$server_port $request_method", "192.0.2.7:8443 POST"),
            ("$http_x_user|$http_x_missing|$http_x_multi", "alice||a, b"),
            ("$cookie__oauth2_proxy", "tok"),
            ("$arg_next $arg_x $arg_none.", "/p  ."),
            ("no variables at all", "no variables at all"),
            ("", ""),
            ("$host$host", "app.testapp.test"),
            ("a$host-b", "aapp.test-b"),
        ];
        for (template, expected) in rows {
            let t = Template::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(t.expand(&r), *expected, "{template}");
        }
    }

    #[test]
    fn malformed_and_unknown_are_refused() {
        for bad in [
            "$",
            "a$",
            "${",
            "${host",
            "${}",
            "$unknown",
            "$request_body",
            "$http_",
            "$cookie_",
            "$arg_",
            "$1",
            "${http_a-b}",
            "x\r\nSet-Cookie: a=b",
            "x\ny",
            "\u{0}",
            "$hostname",
            "$upstream_http_location",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
        // `$host` followed by a non-name character is the variable, then the literal.
        assert!(Template::parse("$host.example").is_ok());
        assert!(!Template::parse("$host").unwrap().is_static());
        assert!(Template::parse("https://a/").unwrap().is_static());
    }

    #[test]
    fn hostile_values_expand_but_cannot_make_a_header() {
        let mut h = HeaderMap::new();
        h.insert("x-a", hyper::header::HeaderValue::from_bytes(b"\xff").unwrap());
        let r = Request {
            request_uri: "/%0d%0aSet-Cookie:x",
            ..request(&h)
        };
        let escaped = Template::parse("$escaped_request_uri").unwrap().expand(&r);
        assert_eq!(escaped, "%2F%250d%250aSet-Cookie%3Ax");
        assert_eq!(
            Template::parse("[$http_x_a]").unwrap().expand(&r),
            "[]",
            "non-UTF-8 is dropped"
        );
    }
}
