//! `auth-url`: the subrequest ingress-nginx's auth location sends before every request, and
//! what its answer means (2xx passes; 401 and 403 go to the client; anything else, or no
//! answer, is 500).
//!
//! The subrequest carries the client's request fields (not its body), with the fields
//! ingress-nginx's template sets: `Host` of the auth URL (no port), `X-Original-URL`,
//! `X-Original-Method`, `X-Sent-From`, `X-Real-IP`, `X-Forwarded-For`, `X-Auth-Request-Redirect`,
//! `X-Request-ID`, and with `auth-method` also `X-Original-URI` and `X-Scheme`. One difference:
//! the client's own `X-Forwarded-*` and `X-Original-*` fields are dropped rather than passed
//! on, so a client cannot tell the auth service it asked for another URL than it did.
//!
//! After those come, as in ingress-nginx's auth location, the `proxy_set_header`s of
//! `auth-proxy-set-headers` (sorted) and then the `auth-snippet`'s, with nginx's rules: a name
//! set there replaces the client's field of that name, a name also set above is sent twice
//! (nginx sends every `proxy_set_header` of a location), an empty value sends nothing. The
//! snippet's `more_set_input_headers` / `more_clear_input_headers` change the client's fields
//! before that (a field they set is passed even if it is an `X-Forwarded-*` one). Variables
//! are expanded against the original request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::template;
use crate::annotations::auth::External;
use crate::snippet::{self, Directive};

/// Fields of the client's request never passed to the auth service: hop-by-hop, framing (the
/// body is not sent), and those the subrequest sets itself.
const NOT_PASSED: [&str; 17] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "host",
    "x-real-ip",
    "x-sent-from",
    "x-auth-request-redirect",
    "x-scheme",
    "x-request-id",
    "proxy",
    "forwarded",
];

/// What the auth service answered (the parts that matter).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("auth URL `{0}` is not a usable http(s) URL once expanded")]
    BadUrl(String),
    #[error("auth service {0}: cannot resolve: {1}")]
    Resolve(String, std::io::Error),
    #[error("auth service {0}: connect: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("auth service {0}: TLS: {1}")]
    Tls(SocketAddr, std::io::Error),
    #[error("auth service: {0}")]
    Http(#[from] hyper::Error),
    #[error("auth service: no answer within {0:?}")]
    Timeout(Duration),
    #[error("auth subrequest: {0}")]
    Build(String),
}

/// The request an auth subrequest is made for.
pub struct Original<'a> {
    pub vars: template::Request<'a>,
    /// The X-Request-ID the backend gets too.
    pub request_id: &'a HeaderValue,
    /// `auth-tls-*`: what the connection's certificate check established.
    pub client_cert: Option<&'a crate::client_cert::Fields>,
}

/// The auth URL for this request, checked: http or https, with a host.
pub fn target(config: &External, original: &Original<'_>) -> Result<Uri, Failure> {
    let url = config.url.expand(&original.vars);
    let uri: Uri = url.parse().map_err(|_| Failure::BadUrl(url.clone()))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    match (scheme_ok, uri.host()) {
        (true, Some(host)) if !host.is_empty() && uri.authority().is_some_and(|a| !a.as_str().contains('@')) => Ok(uri),
        _ => Err(Failure::BadUrl(url)),
    }
}

/// The subrequest's fields, from the client's. `sets` are the `auth-proxy-set-headers`
/// resolved from their ConfigMap.
pub fn fields(
    config: &External,
    sets: &[(HeaderName, snippet::Template)],
    target: &Uri,
    original: &Original<'_>,
) -> Result<HeaderMap, Failure> {
    let client = original.vars.headers;
    let directives: &[Directive] = config.snippet.as_deref().map_or(&[], |s| &s.directives);
    let path = original.vars.request_uri.split_once('?');
    let remote_addr = original.vars.remote_addr.to_string();
    let snippet_vars = snippet::Vars {
        headers: client,
        host: original.vars.host,
        remote_addr: &remote_addr,
        scheme: original.vars.scheme,
        server_port: original.vars.server_port,
        request_uri: original.vars.request_uri,
        method: original.vars.method,
        uri: path.map_or(original.vars.request_uri, |(p, _)| p),
        args: path.map(|(_, q)| q),
        captures: &[],
    };
    let (input, snippet_set) = input_fields(client, directives, &snippet_vars);
    let listed: Vec<String> = client
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut h = HeaderMap::new();
    for (name, value) in &input {
        let n = name.as_str();
        let operators = snippet_set.contains(name);
        if NOT_PASSED.contains(&n)
            || listed.iter().any(|l| l == n)
            || (!operators && (n.starts_with("x-forwarded-") || n.starts_with("x-original-")))
        {
            continue;
        }
        h.append(name.clone(), value.clone());
    }
    let v = |s: String| HeaderValue::from_str(&s).map_err(|_| Failure::Build(format!("a field value {s:?}")));
    let vars = &original.vars;
    let host = target
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    h.insert(header::HOST, v(host.to_owned())?);
    h.insert(
        "x-original-url",
        v(format!("{}://{}{}", vars.scheme, vars.http_host, vars.request_uri))?,
    );
    h.insert("x-original-method", v(vars.method.to_owned())?);
    h.insert("x-sent-from", HeaderValue::from_static("nginx-ingress-controller"));
    h.insert("x-real-ip", v(vars.remote_addr.to_string())?);
    h.insert("x-forwarded-for", v(vars.remote_addr.to_string())?);
    let redirect = match &config.request_redirect {
        Some(t) => t.expand(vars),
        None => vars.request_uri.to_owned(),
    };
    // nginx sends no field whose value is empty.
    if !redirect.is_empty() {
        h.insert("x-auth-request-redirect", v(redirect)?);
    }
    h.insert("x-request-id", original.request_id.clone());
    if config.method.is_some() {
        h.insert("x-original-uri", v(vars.request_uri.to_owned())?);
        h.insert("x-scheme", v(vars.scheme.to_owned())?);
    }
    // The names ingress-nginx's auth location sets with proxy_set_header (some empty: the
    // client's field is then not passed, and nothing is sent).
    let mut set: Vec<HeaderName> = [
        "content-length",
        "x-forwarded-proto",
        "x-request-id",
        "host",
        "x-original-url",
        "x-original-method",
        "x-sent-from",
        "x-real-ip",
        "x-forwarded-for",
        "x-auth-request-redirect",
    ]
    .into_iter()
    .chain(
        config
            .method
            .as_ref()
            .map(|_| ["x-original-uri", "x-scheme"])
            .into_iter()
            .flatten(),
    )
    .map(HeaderName::from_static)
    .collect();
    let snippet_sets = directives.iter().filter_map(|d| match d {
        Directive::ProxySetHeader { name, value } => Some((name, value)),
        _ => None,
    });
    for (name, value) in sets.iter().map(|(n, t)| (n, t)).chain(snippet_sets) {
        if !set.contains(name) {
            h.remove(name);
            set.push(name.clone());
        }
        let expanded = value.expand(&snippet_vars);
        if !expanded.is_empty() {
            h.append(name.clone(), v(expanded)?);
        }
    }
    // A host with client certificates: the verified ones, as nginx's auth location sets them,
    // never what the client sent under those names.
    if let Some(fields) = original.client_cert {
        fields.apply(&mut h);
    }
    Ok(h)
}

/// The client's fields as the auth-snippet's headers-more input directives leave them, and
/// the names those directives set.
fn input_fields(
    client: &HeaderMap,
    directives: &[Directive],
    vars: &snippet::Vars<'_>,
) -> (HeaderMap, Vec<HeaderName>) {
    let mut fields = client.clone();
    let mut set = Vec::new();
    for d in directives {
        match d {
            Directive::MoreSetInputHeaders {
                replace_only,
                types,
                fields: specs,
            } if snippet::types_match(types, client) => {
                for (name, value) in specs {
                    if *replace_only && !fields.contains_key(name) {
                        continue;
                    }
                    let value = value.as_ref().map(|t| t.expand(vars));
                    match value
                        .filter(|v| !v.is_empty())
                        .and_then(|v| HeaderValue::from_str(&v).ok())
                    {
                        Some(v) => {
                            fields.insert(name.clone(), v);
                            set.push(name.clone());
                        }
                        None => {
                            fields.remove(name);
                        }
                    }
                }
            }
            Directive::MoreClearInputHeaders { types, names } if snippet::types_match(types, client) => {
                snippet::remove_matching(&mut fields, names);
            }
            _ => {}
        }
    }
    (fields, set)
}

/// Sends the subrequest (no body) and returns the answer's status and fields; the body is not
/// read. `connect` bounds resolving, connecting and the TLS handshake; `read` the wait for the
/// answer.
pub async fn send(
    method: Method,
    target: &Uri,
    fields: HeaderMap,
    connect: Duration,
    read: Duration,
    tls: &TlsConnector,
) -> Result<Answer, Failure> {
    let host = target
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let https = target.scheme_str() == Some("https");
    let port = target.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = target.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().map_err(|_| Failure::Build(path.to_owned()))?;
    *req.headers_mut() = fields;

    let open = async {
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Failure::Resolve(host.clone(), e))?
            .next()
            .ok_or_else(|| Failure::Resolve(host.clone(), std::io::ErrorKind::NotFound.into()))?;
        let tcp = crate::upstream::connect_tcp(addr, None)
            .await
            .map_err(|e| Failure::Connect(addr, e))?;
        let io: Box<dyn Io> = if https {
            // SNI as `proxy_ssl_server_name on`; no certificate check, as ingress-nginx's auth
            // location (it sets no proxy_ssl_verify).
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(host.clone()).map_err(|e| Failure::Build(e.to_string()))?,
            };
            Box::new(tls.connect(name, tcp).await.map_err(|e| Failure::Tls(addr, e))?)
        } else {
            Box::new(tcp)
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "auth connection ended with an error");
            }
        });
        Ok::<_, Failure>(sender)
    };
    let mut sender = tokio::time::timeout(connect, open)
        .await
        .map_err(|_| Failure::Timeout(connect))??;
    let resp = tokio::time::timeout(read, sender.send_request(req))
        .await
        .map_err(|_| Failure::Timeout(read))??;
    let (parts, body) = resp.into_parts();
    // Drained in the background (bounded by the read timeout), so the exchange ends cleanly;
    // nothing of it is used.
    tokio::spawn(async move {
        let _ = tokio::time::timeout(read, body.collect()).await;
    });
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
    })
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// The TLS client for auth services (shared by every request).
pub fn tls_connector() -> TlsConnector {
    TlsConnector::from(Arc::new(crate::upstream::insecure_client_config()))
}

/// The fields copied from a 2xx auth answer onto the upstream request (`auth-response-headers`):
/// each named field takes the auth service's value(s), or is removed when it sent none, as
/// nginx's `proxy_set_header` with an empty variable.
pub fn copied(config: &External, answer: &HeaderMap) -> Vec<(HeaderName, Vec<HeaderValue>)> {
    config
        .response_headers
        .iter()
        .filter_map(|name| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let values = answer.get_all(&name).iter().cloned().collect();
            Some((name, values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::template::Template;

    fn config() -> External {
        External {
            url: Template::parse("http://oauth2-proxy.auth.svc:4180/oauth2/auth").unwrap(),
            method: None,
            signin: None,
            response_headers: vec!["x-auth-request-user".into(), "x-auth-request-email".into()],
            request_redirect: None,
            cache: None,
            always_set_cookie: false,
            proxy_set_headers: None,
            snippet: None,
        }
    }

    fn client() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "app.test"),
            ("cookie", "_oauth2_proxy=abc"),
            ("authorization", "Bearer t"),
            ("user-agent", "curl/8"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-uri", "/public"),
            ("x-original-url", "https://evil.test/public"),
            ("x-original-method", "GET"),
            ("x-real-ip", "6.6.6.6"),
            ("x-auth-request-redirect", "https://evil.test/"),
            ("x-sent-from", "me"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        h
    }

    fn original(headers: &HeaderMap) -> template::Request<'_> {
        template::Request {
            host: "app.test",
            http_host: "app.test:8080",
            request_uri: "/private/x?y=1",
            scheme: "http",
            remote_addr: "192.0.2.9".parse().unwrap(),
            method: "POST",
            server_port: 8080,
            headers,
        }
    }

    #[test]
    fn the_subrequest_carries_what_ingress_nginx_sends() {
        let headers = client();
        let id = HeaderValue::from_static("0123");
        let o = Original {
            vars: original(&headers),
            request_id: &id,
            client_cert: None,
        };
        let c = config();
        let target = target(&c, &o).unwrap();
        assert_eq!(target.path(), "/oauth2/auth");
        let h = fields(&c, &[], &target, &o).unwrap();
        let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap());
        assert_eq!(
            get("host"),
            Some("oauth2-proxy.auth.svc"),
            "the URL's host, without port"
        );
        assert_eq!(get("x-original-url"), Some("http://app.test:8080/private/x?y=1"));
        assert_eq!(get("x-original-method"), Some("POST"));
        assert_eq!(get("x-sent-from"), Some("nginx-ingress-controller"));
        assert_eq!(get("x-real-ip"), Some("192.0.2.9"));
        assert_eq!(get("x-forwarded-for"), Some("192.0.2.9"));
        assert_eq!(get("x-auth-request-redirect"), Some("/private/x?y=1"));
        assert_eq!(get("x-request-id"), Some("0123"));
        assert_eq!(get("cookie"), Some("_oauth2_proxy=abc"));
        assert_eq!(get("authorization"), Some("Bearer t"));
        assert_eq!(get("user-agent"), Some("curl/8"));
        for gone in [
            "connection",
            "x-hop",
            "content-length",
            "transfer-encoding",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-uri",
            "x-original-method-evil",
            "x-original-uri",
            "x-scheme",
        ] {
            assert_eq!(get(gone), None, "{gone}");
        }
        assert_eq!(h.get_all("x-original-url").iter().count(), 1);

        let with_method = External {
            method: Some("POST".into()),
            request_redirect: Some(Template::parse("$scheme://$host$request_uri").unwrap()),
            ..config()
        };
        let h = fields(&with_method, &[], &target, &o).unwrap();
        assert_eq!(h["x-original-uri"], "/private/x?y=1");
        assert_eq!(h["x-scheme"], "http");
        assert_eq!(h["x-auth-request-redirect"], "http://app.test/private/x?y=1");
    }

    /// auth-proxy-set-headers, then auth-snippet, after ingress-nginx's own fields: a name set
    /// there replaces the client's field, one set twice is sent twice (nginx sends every
    /// proxy_set_header), an empty value sends nothing; input directives change the client's
    /// fields first; variables are the original request's.
    #[test]
    fn auth_snippet_and_proxy_set_headers_follow_nginx() {
        let headers = client();
        let id = HeaderValue::from_static("0123");
        let o = Original {
            vars: original(&headers),
            request_id: &id,
            client_cert: None,
        };
        let snippet = crate::snippet::parse(
            "proxy_set_header X-Api-Key \"k1\";\n\
             proxy_set_header X-Original-URL $scheme://snippet$request_uri;\n\
             proxy_set_header Cookie \"\";\n\
             proxy_set_header X-From-Host $host;\n\
             proxy_set_header X-Team $http_x_team;\n\
             more_set_input_headers \"X-Forwarded-User: op\" \"User-Agent: ua2\";\n\
             more_clear_input_headers Authorization;\n",
            crate::snippet::Ctx::Auth,
        )
        .unwrap();
        let c = External {
            snippet: Some(Arc::new(snippet)),
            ..config()
        };
        let sets = [
            (
                HeaderName::from_static("x-api-key"),
                snippet::Template::parse("from-configmap", false).unwrap(),
            ),
            (
                HeaderName::from_static("x-hop-set"),
                snippet::Template::parse("$request_method", false).unwrap(),
            ),
        ];
        let target = target(&c, &o).unwrap();
        let h = fields(&c, &sets, &target, &o).unwrap();
        let all = |n: &str| h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(
            all("x-api-key"),
            ["from-configmap", "k1"],
            "both proxy_set_headers are sent"
        );
        assert_eq!(
            all("x-original-url"),
            ["http://app.test:8080/private/x?y=1", "http://snippet/private/x?y=1"],
            "ingress-nginx's first, the snippet's after"
        );
        assert_eq!(all("x-hop-set"), ["POST"]);
        assert!(
            all("cookie").is_empty(),
            "an empty value: the client's is not passed, nothing sent"
        );
        assert_eq!(all("x-from-host"), ["app.test"]);
        assert!(all("x-team").is_empty(), "an empty expansion sends nothing");
        assert_eq!(
            all("x-forwarded-user"),
            ["op"],
            "set by the operator's snippet, so passed"
        );
        assert!(
            all("x-forwarded-host").is_empty(),
            "the client's X-Forwarded-* still are not"
        );
        assert_eq!(all("user-agent"), ["ua2"]);
        assert!(all("authorization").is_empty());
        assert_eq!(all("host"), ["oauth2-proxy.auth.svc"]);

        // A snippet Host is sent after ingress-nginx's, as nginx does.
        let snippet = crate::snippet::parse("proxy_set_header Host other.test;", crate::snippet::Ctx::Auth).unwrap();
        let c = External {
            snippet: Some(Arc::new(snippet)),
            ..config()
        };
        let h = fields(&c, &[], &target, &o).unwrap();
        let hosts: Vec<_> = h.get_all("host").iter().collect();
        assert_eq!(hosts, ["oauth2-proxy.auth.svc", "other.test"]);
    }

    #[test]
    fn expanded_urls_are_checked() {
        let headers = HeaderMap::new();
        let id = HeaderValue::from_static("1");
        let mk = |url: &str, host: &'static str| {
            let c = External {
                url: Template::parse(url).unwrap(),
                ..config()
            };
            let o = Original {
                vars: template::Request {
                    host,
                    ..original(&headers)
                },
                request_id: &id,
                client_cert: None,
            };
            target(&c, &o).is_ok()
        };
        assert!(mk("https://$host/oauth2/auth", "app.test"));
        assert!(mk("http://[::1]:8080/x", "app.test"));
        assert!(!mk("https://$host/oauth2/auth", ""), "no host");
        assert!(!mk("https://$host/oauth2/auth", "a b"));
        assert!(!mk("http://user@$host/", "a.test"), "userinfo");
    }

    #[test]
    fn hostile_values_cannot_reach_a_field() {
        let headers = HeaderMap::new();
        let id = HeaderValue::from_static("1");
        let o = Original {
            vars: template::Request {
                request_uri: "/x\r\nEvil: 1",
                ..original(&headers)
            },
            request_id: &id,
            client_cert: None,
        };
        let c = config();
        let target: Uri = "http://a/".parse().unwrap();
        assert!(fields(&c, &[], &target, &o).is_err());
    }

    /// An https auth URL: a self-signed certificate is accepted (ingress-nginx does not verify),
    /// the name goes in SNI, and the answer comes back.
    #[tokio::test]
    async fn https_auth_services_are_reached_without_verification() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::single_certificate_config(crate::tls::self_signed(
            "auth.example",
        )));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let mut buf = vec![0u8; 4096];
            let n = tls.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            tls.write_all(b"HTTP/1.1 200 OK\r\nX-User: alice\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            (sni, head)
        });
        let target: Uri = format!("https://localhost:{port}/verify?x=1").parse().unwrap();
        let mut fields = HeaderMap::new();
        fields.insert(header::HOST, HeaderValue::from_static("localhost"));
        let t = Duration::from_secs(5);
        let answer = send(Method::GET, &target, fields, t, t, &tls_connector())
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["x-user"], "alice");
        let (sni, head) = server.await.unwrap();
        assert_eq!(sni.as_deref(), Some("localhost"));
        assert!(head.starts_with("GET /verify?x=1 HTTP/1.1\r\n"), "{head}");
    }

    #[tokio::test]
    async fn an_auth_service_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let target: Uri = format!("http://{addr}/").parse().unwrap();
        let t = Duration::from_millis(200);
        let failed = send(Method::GET, &target, HeaderMap::new(), t, t, &tls_connector()).await;
        assert!(matches!(failed, Err(Failure::Timeout(_))), "{failed:?}");
    }

    #[test]
    fn response_headers_replace_or_remove() {
        let mut answer = HeaderMap::new();
        answer.insert("x-auth-request-user", "alice".parse().unwrap());
        answer.insert("x-other", "nope".parse().unwrap());
        let got = copied(&config(), &answer);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "x-auth-request-user");
        assert_eq!(got[0].1, ["alice"]);
        assert_eq!(got[1].0, "x-auth-request-email");
        assert!(got[1].1.is_empty(), "absent: the client's value is removed");
    }
}
