//! Values with nginx variables, from a fixed list only, parsed once into typed parts and
//! expanded per request. No other `$` expansion exists: an unknown variable is refused when
//! the snippet is read.

use std::fmt::Write;

use hyper::header::HeaderMap;

/// A variable a snippet may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$host`: the request's host, lower case, without port.
    Host,
    /// `$server_name`: the same host (the server a request reached).
    ServerName,
    /// `$remote_addr`: the client's address.
    RemoteAddr,
    /// `$scheme`, `$pass_access_scheme`.
    Scheme,
    /// `$server_port`, `$pass_server_port`, `$pass_port`.
    ServerPort,
    /// `$request_uri`: path and query as the client sent them.
    RequestUri,
    /// `$uri`, `$document_uri`: the current (normalised, perhaps rewritten) path.
    Uri,
    /// `$args`, `$query_string`.
    Args,
    /// `$is_args`: `?` when there are arguments.
    IsArgs,
    /// `$request_method`.
    Method,
    /// `$proxy_add_x_forwarded_for`: the client's X-Forwarded-For with `$remote_addr` appended.
    ProxyAddXForwardedFor,
    /// `$http_NAME` (`$best_http_host` is `$http_host`): a request field, `_` for `-`.
    Http(String),
    /// `$cookie_NAME`.
    Cookie(String),
    /// `$arg_NAME`: a query argument.
    Arg(String),
    /// `$1`…`$9`: a capture of the `rewrite` regex (in its replacement only).
    Capture(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(Var),
}

/// A value with variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

/// What a request's variables expand to.
pub struct Vars<'a> {
    pub headers: &'a HeaderMap,
    pub host: &'a str,
    pub remote_addr: &'a str,
    pub scheme: &'a str,
    pub server_port: u16,
    pub request_uri: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub args: Option<&'a str>,
    pub captures: &'a [String],
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Template {
    /// Parses `text`; `captures` allows `$1`…`$9`. Errors name the variable.
    pub fn parse(text: &str, captures: bool) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, next) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or("`${` without `}`")?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = after.find(|c| !name_char(c)).unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if name.is_empty() {
                return Err(format!("`$` without a variable name in {text:?}"));
            }
            if !parts.is_empty() || !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(variable(name, captures)?));
            rest = next;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        parts.retain(|p| !matches!(p, Part::Lit(s) if s.is_empty()));
        Ok(Self { parts })
    }

    /// The text without variables, if it has none.
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(_) => return None,
            }
        }
        Some(out)
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn expand(&self, v: &Vars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(var) => expand_var(var, v, &mut out),
            }
        }
        out
    }
}

fn variable(name: &str, captures: bool) -> Result<Var, String> {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        let d = name;
        return match d.parse::<usize>() {
            Ok(n @ 1..=9) if captures => Ok(Var::Capture(n)),
            Ok(_) if !captures => Err(format!("`${d}` outside a rewrite replacement")),
            _ => Err(format!("`${d}` is not a capture (1 to 9)")),
        };
    }
    if !name.chars().all(name_char) {
        return Err(format!("`${name}` is not a variable name"));
    }
    let field = |prefix: &str| {
        name.strip_prefix(prefix)
            .filter(|rest| !rest.is_empty())
            .map(str::to_ascii_lowercase)
    };
    Ok(match name {
        "host" => Var::Host,
        "server_name" => Var::ServerName,
        "remote_addr" => Var::RemoteAddr,
        "scheme" | "pass_access_scheme" => Var::Scheme,
        "server_port" | "pass_server_port" | "pass_port" => Var::ServerPort,
        "request_uri" => Var::RequestUri,
        "uri" | "document_uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "is_args" => Var::IsArgs,
        "request_method" => Var::Method,
        "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
        "best_http_host" => Var::Http("host".into()),
        _ => {
            if let Some(f) = field("http_") {
                Var::Http(f.replace('_', "-"))
            } else if field("cookie_").is_some() {
                Var::Cookie(name["cookie_".len()..].to_owned())
            } else if field("arg_").is_some() {
                Var::Arg(name["arg_".len()..].to_owned())
            } else {
                return Err(format!("`${name}` is not a variable mzlb provides"));
            }
        }
    })
}

fn expand_var(var: &Var, v: &Vars<'_>, out: &mut String) {
    match var {
        Var::Host | Var::ServerName => out.push_str(v.host),
        Var::RemoteAddr => out.push_str(v.remote_addr),
        Var::Scheme => out.push_str(v.scheme),
        Var::ServerPort => {
            let _ = write!(out, "{}", v.server_port);
        }
        Var::RequestUri => out.push_str(v.request_uri),
        Var::Uri => out.push_str(v.uri),
        Var::Args => out.push_str(v.args.unwrap_or_default()),
        Var::IsArgs => {
            if v.args.is_some_and(|a| !a.is_empty()) {
                out.push('?');
            }
        }
        Var::Method => out.push_str(v.method),
        Var::ProxyAddXForwardedFor => {
            let prior: Vec<&str> = v
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|h| h.to_str().ok())
                .collect();
            for p in prior {
                out.push_str(p);
                out.push_str(", ");
            }
            out.push_str(v.remote_addr);
        }
        Var::Http(name) => {
            // nginx joins repeated fields with ", " (cookies with "; ").
            let sep = if name == "cookie" { "; " } else { ", " };
            let values: Vec<&str> = v
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|h| h.to_str().ok())
                .collect();
            out.push_str(&values.join(sep));
        }
        Var::Cookie(name) => {
            let values = v.headers.get_all(hyper::header::COOKIE).iter().map(|h| h.as_bytes());
            if let Some(value) = crate::proxy::cookie_in(values, name) {
                out.push_str(value);
            }
        }
        Var::Arg(name) => {
            let found = v.args.unwrap_or_default().split('&').find_map(|pair| {
                let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
                k.eq_ignore_ascii_case(name).then_some(val)
            });
            out.push_str(found.unwrap_or_default());
        }
        Var::Capture(n) => {
            if let Some(c) = v.captures.get(n - 1) {
                out.push_str(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_from_the_fixed_list_expand() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        headers.insert("x-user", "ann".parse().unwrap());
        headers.insert("cookie", "a=1; lang=fr".parse().unwrap());
        let captures = vec!["one".to_owned()];
        let v = Vars {
            headers: &headers,
            host: "demo.test",
            remote_addr: "127.0.0.5",
            scheme: "https",
            server_port: 8443,
            request_uri: "/a?b=2",
            method: "GET",
            uri: "/a",
            args: Some("b=2&c=3"),
            captures: &captures,
        };
        let rows: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$host", "demo.test"),
            ("${host}x", "demo.testx"),
            (
                "$scheme://$host:$server_port$request_uri",
                "https://demo.test:8443/a?b=2",
            ),
            ("$remote_addr", "127.0.0.5"),
            ("$proxy_add_x_forwarded_for", "203.0.113.9, 127.0.0.5"),
            ("<$http_x_user>", "<ann>"),
            ("$http_x_missing.", "."),
            ("$cookie_lang", "fr"),
            ("$arg_c", "3"),
            ("$uri$is_args$args", "/a?b=2&c=3"),
            ("$request_method $server_name", "GET demo.test"),
            ("$best_http_host", ""),
            ("/x/$1", "/x/one"),
        ];
        for (text, expected) in rows {
            let t = Template::parse(text, true).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.expand(&v), *expected, "{text}");
        }
    }

    #[test]
    fn other_dollars_are_refused() {
        let rows: &[(&str, bool)] = &[
            ("$(id)", false),
            ("$(curl evil)", true),
            ("${host", false),
            ("$", false),
            ("a$ b", false),
            ("$request_body", false),
            ("$ssl_client_s_dn", false),
            ("$document_root", false),
            ("$remote_user", false),
            ("$http_", false),
            ("$1", false),
            ("$0", true),
            ("$10", true),
            ("${ho st}", false),
            ("${lua}", false),
        ];
        for (text, captures) in rows {
            assert!(Template::parse(text, *captures).is_err(), "{text}");
        }
    }
}
