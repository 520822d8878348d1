//! Consistent hashing for `upstream-hash-by`: the annotation's nginx-variable template, parsed
//! once into typed parts, gives each request a key; rendezvous (highest random weight) hashing
//! maps the key to one endpoint. The choice depends only on the key and the endpoint addresses,
//! so it is the same in every worker, every zone's ALB and every new routing table, whatever
//! the endpoints' order; adding or removing an endpoint moves only the keys that go to, or came
//! from, that endpoint.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use hyper::header::{self, HeaderMap};

/// Longest template accepted.
const MAX_TEMPLATE: usize = 1024;

/// One nginx variable a template may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$request_uri`: path and query as the client sent them.
    RequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args` / `$query_string`.
    Args,
    /// `$remote_addr`: the client's address (behind a trusted proxy, the forwarded one).
    RemoteAddr,
    /// `$host`: the host asked for, lower case, without port.
    Host,
    /// `$scheme`.
    Scheme,
    /// `$request_method`.
    Method,
    /// `$http_<name>`: a request header (`_` is `-`, any case).
    Header(String),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`: a query argument (any case, as nginx).
    Arg(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed `upstream-hash-by` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashBy {
    parts: Vec<Part>,
}

/// What a request offers a template.
pub struct Request<'a> {
    pub path_and_query: &'a str,
    pub remote: IpAddr,
    pub host: &'a str,
    pub scheme: &'a str,
    pub method: &'a str,
    pub headers: &'a HeaderMap,
}

impl HashBy {
    /// Parses `$var`, `${var}` and literal text. Only visible ASCII and spaces; an unknown
    /// variable, a lone `$` or an empty template is refused.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.is_empty() || template.len() > MAX_TEMPLATE {
            return Err("expected a template of nginx variables, such as $request_uri".into());
        }
        if let Some(b) = template.bytes().find(|b| !(b.is_ascii_graphic() || *b == b' ')) {
            return Err(format!("byte {b:#04x} is not allowed"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, next) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or("unclosed ${")?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            let var = var(name)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = next;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Var(_))) {
            return Err("names no variable, so every request would go to one endpoint".into());
        }
        Ok(Self { parts })
    }

    /// The request's key: the template with its variables filled in (absent ones empty).
    pub fn key(&self, r: &Request<'_>) -> Vec<u8> {
        let mut key = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => key.extend_from_slice(s.as_bytes()),
                Part::Var(v) => key.extend_from_slice(value(v, r).as_bytes()),
            }
        }
        key
    }
}

fn var(name: &str) -> Result<Var, String> {
    let valid = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let v = match name {
        "request_uri" => Var::RequestUri,
        "uri" | "document_uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "remote_addr" | "binary_remote_addr" => Var::RemoteAddr,
        "host" => Var::Host,
        "scheme" => Var::Scheme,
        "request_method" => Var::Method,
        _ => {
            if let Some(h) = name.strip_prefix("http_").filter(|n| valid(n)) {
                Var::Header(h.to_ascii_lowercase().replace('_', "-"))
            } else if let Some(c) = name.strip_prefix("cookie_").filter(|n| valid(n)) {
                Var::Cookie(c.to_owned())
            } else if let Some(a) = name.strip_prefix("arg_").filter(|n| valid(n)) {
                Var::Arg(a.to_owned())
            } else {
                return Err(format!("${name} is not a variable mzlb can hash on"));
            }
        }
    };
    Ok(v)
}

fn value<'r>(v: &Var, r: &Request<'r>) -> Cow<'r, str> {
    let query = || r.path_and_query.split_once('?').map_or("", |(_, q)| q);
    match v {
        Var::RequestUri => r.path_and_query.into(),
        Var::Uri => r
            .path_and_query
            .split_once('?')
            .map_or(r.path_and_query, |(p, _)| p)
            .into(),
        Var::Args => query().into(),
        Var::RemoteAddr => r.remote.to_string().into(),
        Var::Host => r.host.into(),
        Var::Scheme => r.scheme.into(),
        Var::Method => r.method.into(),
        Var::Header(name) => {
            let values: Vec<&str> = r
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            match values.as_slice() {
                [] => "".into(),
                [one] => (*one).into(),
                many => many.join(", ").into(),
            }
        }
        Var::Cookie(name) => {
            let values = r.headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes());
            crate::proxy::cookie_in(values, name).unwrap_or("").into()
        }
        Var::Arg(name) => query()
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v)
            .into(),
    }
}

/// FNV-1a, 64 bits: fixed, so every build and every ALB agrees.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads a combination of two hashes over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The endpoint `key` goes to: the one with the highest weight for it (rendezvous hashing).
pub fn pick(key: &[u8], endpoints: &[SocketAddr]) -> Option<usize> {
    let k = fnv1a(key);
    endpoints
        .iter()
        .enumerate()
        .max_by_key(|(_, ep)| (mix(k ^ fnv1a(ep.to_string().as_bytes())), **ep))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn eps(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)))
            .collect()
    }

    fn request<'a>(pq: &'a str, headers: &'a HeaderMap) -> Request<'a> {
        Request {
            path_and_query: pq,
            remote: "192.0.2.7".parse().unwrap(),
            host: "shop.test",
            scheme: "http",
            method: "GET",
            headers,
        }
    }

    #[test]
    fn templates_fill_in_their_variables() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("u42"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        h.insert(header::COOKIE, HeaderValue::from_static("sid=s1; other=2"));
        let r = request("/p/a?Tenant=acme&x=1", &h);
        let rows: &[(&str, &str)] = &[
            ("$request_uri", "/p/a?Tenant=acme&x=1"),
            ("$uri", "/p/a"),
            ("$args", "Tenant=acme&x=1"),
            ("$remote_addr", "192.0.2.7"),
            ("$host$uri", "shop.test/p/a"),
            ("${host}-x", "shop.test-x"),
            ("$http_x_user_id", "u42"),
            ("$HTTP_X_USER_ID", ""), // nginx variable names are case-sensitive: unknown
            ("$http_X_User_Id", "u42"),
            ("$http_x_multi", "a, b"),
            ("$http_absent", ""),
            ("$cookie_sid", "s1"),
            ("$cookie_none", ""),
            ("$arg_tenant", "acme"),
            ("$arg_x$arg_y", "1"),
            ("user:$http_x_user_id;$request_method $scheme", "user:u42;GET http"),
        ];
        for (template, expected) in rows {
            match HashBy::parse(template) {
                Ok(t) => assert_eq!(String::from_utf8(t.key(&r)).unwrap(), *expected, "{template}"),
                Err(e) => assert_eq!(*expected, "", "{template}: {e}"),
            }
        }
    }

    #[test]
    fn hostile_templates_are_refused() {
        for bad in [
            "",
            "$",
            "$$",
            "literal only",
            "${request_uri",
            "${}",
            "$request_uri\r\nX: 1",
            "$request_uri\u{0}",
            "$request_uri\t",
            "$nosuchvar",
            "$http_",
            "$cookie_",
            "${http_a b}",
            "$request_urié",
            &"$uri".repeat(300),
        ] {
            assert!(HashBy::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_choice_does_not_depend_on_endpoint_order() {
        let mut endpoints = eps(7);
        let before: Vec<SocketAddr> = (0..500)
            .map(|k| endpoints[pick(format!("k{k}").as_bytes(), &endpoints).unwrap()])
            .collect();
        endpoints.reverse();
        endpoints.swap(1, 4);
        let after: Vec<SocketAddr> = (0..500)
            .map(|k| endpoints[pick(format!("k{k}").as_bytes(), &endpoints).unwrap()])
            .collect();
        assert_eq!(before, after);
        assert_eq!(pick(b"x", &[]), None);
    }

    #[test]
    fn keys_spread_evenly_and_move_minimally() {
        let n = 10;
        let keys = 20_000;
        let endpoints = eps(n);
        let mut counts = vec![0usize; n];
        let chosen: Vec<usize> = (0..keys)
            .map(|k| pick(format!("/item/{k}").as_bytes(), &endpoints).unwrap())
            .collect();
        chosen.iter().for_each(|&i| counts[i] += 1);
        let mean = keys / n;
        for c in &counts {
            assert!(c.abs_diff(mean) < mean / 10, "uneven: {counts:?}");
        }
        // One more endpoint: only keys that now go to it move (about 1/11 of them).
        let mut grown = endpoints.clone();
        grown.push(SocketAddr::from(([10, 9, 9, 9], 8080)));
        let mut moved = 0usize;
        for k in 0..keys {
            let now = grown[pick(format!("/item/{k}").as_bytes(), &grown).unwrap()];
            if now != endpoints[chosen[k]] {
                assert_eq!(now, grown[n], "a key moved between old endpoints");
                moved += 1;
            }
        }
        assert!(moved.abs_diff(keys / (n + 1)) < keys / (n + 1) / 5, "moved {moved}");
        // One endpoint removed: only its keys move.
        let shrunk: Vec<SocketAddr> = endpoints.iter().copied().filter(|e| *e != endpoints[3]).collect();
        for k in 0..keys {
            let now = shrunk[pick(format!("/item/{k}").as_bytes(), &shrunk).unwrap()];
            if chosen[k] != 3 {
                assert_eq!(now, endpoints[chosen[k]]);
            }
        }
    }
}
