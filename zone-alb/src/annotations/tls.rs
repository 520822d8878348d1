//! TLS beyond termination: how the ALB talks TLS to `backend-protocol: HTTPS` backends
//! (`proxy-ssl-*`: verification against a CA, the name checked, SNI, a client certificate),
//! client certificates per host (`auth-tls-*`), and SNI-routed pass-through (`ssl-passthrough`).
//!
//! As in ingress-nginx, the `proxy-ssl-*` settings mean something only with `proxy-ssl-secret`
//! (`namespace/name`, the Ingress's own namespace): without it they are ignored, except
//! `proxy-ssl-verify: on`, which cannot be honoured without a CA and so fails closed.

use super::{BackendProtocol, Policy, Reader, parse_bool};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-verify-depth",
    "proxy-ssl-protocols",
    "proxy-ssl-ciphers",
    "ssl-passthrough",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-error-page",
    "auth-tls-match-cn",
];

/// A TLS protocol version rustls speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// TLS to an HTTPS backend, from `proxy-ssl-*` (with `proxy-ssl-secret` set).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProxySsl {
    /// `proxy-ssl-secret`: (namespace, name). Its `ca.crt` is what the backend's certificate is
    /// verified against, its `tls.crt`/`tls.key` the certificate the ALB presents.
    pub secret: (String, String),
    /// `proxy-ssl-verify: on`.
    pub verify: bool,
    /// `proxy-ssl-name`: the name the certificate must carry (and the SNI sent). Default:
    /// nginx's `$proxy_host`, which ingress-nginx sets to the upstream's name,
    /// `<namespace>-<service>-<port>`.
    pub name: Option<String>,
    /// `proxy-ssl-server-name: on`: send SNI (default off).
    pub server_name: bool,
    /// `proxy-ssl-verify-depth`: intermediate certificates allowed in the chain (default 1).
    pub verify_depth: u32,
    /// `proxy-ssl-protocols`, of those rustls speaks; empty: rustls's defaults (1.2 and 1.3).
    pub versions: Vec<TlsVersion>,
}

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VerifyClient {
    /// A verified certificate is required (400 otherwise).
    #[default]
    On,
    /// A certificate is asked for; without one, or with one that fails, the request passes and
    /// the backend is told (`ssl-client-verify`). ingress-nginx's `optional` lets one that fails
    /// verification through with 400, as nginx does; so does mzlb.
    Optional,
    /// A certificate is asked for and not verified; the backend is told it was not.
    OptionalNoCa,
    /// No certificate is asked for; the `ssl-client-*` fields still go upstream (empty).
    Off,
}

/// Client certificates for the Ingress's hosts, from `auth-tls-*` (with `auth-tls-secret` set).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientAuth {
    /// `auth-tls-secret`: (namespace, name); `ca.crt` and optionally `ca.crl`.
    pub secret: (String, String),
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth`: intermediates allowed (default 1).
    pub verify_depth: u32,
    /// `auth-tls-pass-certificate-to-upstream`: the certificate, URL-encoded PEM, in `ssl-client-cert`.
    pub pass_certificate: bool,
    /// `auth-tls-error-page`: where a failed verification is redirected (302) instead of 400.
    pub error_page: Option<String>,
    /// `auth-tls-match-cn`: a regular expression the subject DN must match (403 otherwise).
    pub match_cn: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsPolicy {
    pub proxy_ssl: Option<ProxySsl>,
    pub client_auth: Option<ClientAuth>,
    /// `ssl-passthrough: "true"`: TLS connections for the Ingress's hosts are spliced to the
    /// backend by SNI, not terminated.
    pub passthrough: bool,
}

impl TlsPolicy {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        // Client certificates only exist on TLS connections, which hyper serves; a plain
        // request to such a host is answered by hyper's path too.
        self.client_auth.is_some()
    }
}

/// ingress-nginx's `proxy-ssl-protocols` validation: these words, separated by spaces.
const PROTOCOL_WORDS: [&str; 6] = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// `namespace/name`, as ingress-nginx's `ParseNameNS` reads it, each a valid Kubernetes name:
/// the namespace a DNS label, the name a DNS subdomain.
fn name_ns(v: &str) -> Option<(String, String)> {
    let (ns, name) = v.split_once('/')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let subdomain = |s: &str| s.len() <= 253 && s.split('.').all(label);
    (label(ns) && subdomain(name)).then(|| (ns.to_owned(), name.to_owned()))
}

/// A DNS name as nginx accepts for `proxy_ssl_name` (ingress-nginx's `ValidateServerName`).
fn server_name(v: &str) -> bool {
    let bare = v.strip_prefix("*.").unwrap_or(v);
    !bare.is_empty()
        && v.len() <= 253
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !bare.starts_with('.')
        && !bare.contains("..")
}

fn on_off(v: &str) -> Option<bool> {
    match v {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

fn depth(v: &str) -> Option<u32> {
    // ingress-nginx: not a number, or 0, means the default (1).
    v.parse::<u32>().ok().filter(|&d| d > 0 && d <= 100)
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    parse_proxy_ssl(r, p);
    parse_client_auth(r, p);
    if let Some(v) = r.get("ssl-passthrough") {
        match parse_bool(v) {
            // The TLS listener splices the Ingress's hosts by SNI (`crate::passthrough`); plain
            // HTTP to them is served by the Ingress's rules, as ingress-nginx's port 80 does.
            Some(b) => p.tls.passthrough = b,
            None => r.invalid("ssl-passthrough", "expected true or false"),
        }
    }
}

fn parse_proxy_ssl(r: &mut Reader<'_>, p: &mut Policy) {
    const OTHERS: [&str; 6] = [
        "proxy-ssl-verify",
        "proxy-ssl-name",
        "proxy-ssl-server-name",
        "proxy-ssl-verify-depth",
        "proxy-ssl-protocols",
        "proxy-ssl-ciphers",
    ];
    let Some(secret) = r.get("proxy-ssl-secret") else {
        // Without a Secret ingress-nginx applies none of them; a verification asked for
        // cannot be done without a CA, so that one fails closed.
        let verify = r.get("proxy-ssl-verify").is_some_and(|v| v != "off");
        for name in OTHERS {
            r.ignored(name, "no effect without proxy-ssl-secret");
        }
        if verify {
            r.unusable(
                "proxy-ssl-verify",
                "needs proxy-ssl-secret with a ca.crt to verify against",
            );
        }
        return;
    };
    if p.backend_protocol != BackendProtocol::Https {
        for name in ["proxy-ssl-secret"].into_iter().chain(OTHERS) {
            r.ignored(name, "no effect: backend-protocol is not HTTPS");
        }
        return;
    }
    let Some(secret) = name_ns(secret) else {
        // ingress-nginx denies the location (503).
        r.unusable("proxy-ssl-secret", "expected namespace/name");
        return;
    };
    let mut ssl = ProxySsl {
        secret,
        verify: false,
        name: None,
        server_name: false,
        verify_depth: 1,
        versions: Vec::new(),
    };
    if let Some(v) = r.get("proxy-ssl-verify") {
        match on_off(v) {
            Some(b) => ssl.verify = b,
            // A garbled value may have meant on: verification is not silently dropped.
            None => r.unusable("proxy-ssl-verify", "expected on or off"),
        }
    }
    if let Some(v) = r.get("proxy-ssl-name") {
        if server_name(v) {
            ssl.name = Some(v.to_ascii_lowercase());
        } else {
            r.invalid("proxy-ssl-name", "expected a DNS name");
        }
    }
    if let Some(v) = r.get("proxy-ssl-server-name") {
        match on_off(v) {
            Some(b) => ssl.server_name = b,
            None => r.invalid("proxy-ssl-server-name", "expected on or off"),
        }
    }
    if let Some(v) = r.get("proxy-ssl-verify-depth") {
        match depth(v) {
            Some(d) => ssl.verify_depth = d,
            None if v == "0" => {}
            None => r.invalid("proxy-ssl-verify-depth", "expected a whole number from 1 to 100"),
        }
    }
    if let Some(v) = r.get("proxy-ssl-protocols") {
        let words: Vec<&str> = v.split(' ').filter(|w| !w.is_empty()).collect();
        if words.iter().any(|w| !PROTOCOL_WORDS.contains(w)) {
            r.invalid(
                "proxy-ssl-protocols",
                "expected protocols among TLSv1 TLSv1.1 TLSv1.2 TLSv1.3",
            );
        } else {
            let mut versions: Vec<TlsVersion> = words
                .iter()
                .filter_map(|w| match *w {
                    "TLSv1.2" => Some(TlsVersion::Tls12),
                    "TLSv1.3" => Some(TlsVersion::Tls13),
                    _ => None,
                })
                .collect();
            versions.sort();
            versions.dedup();
            if versions.is_empty() && !words.is_empty() {
                r.invalid(
                    "proxy-ssl-protocols",
                    "mzlb speaks only TLSv1.2 and TLSv1.3 to backends, and this names neither",
                );
            } else {
                ssl.versions = versions;
            }
        }
    }
    if r.get("proxy-ssl-ciphers").is_some() {
        r.ignored("proxy-ssl-ciphers", "mzlb offers rustls's safe cipher suites");
    }
    p.tls.proxy_ssl = Some(ssl);
}

fn parse_client_auth(r: &mut Reader<'_>, p: &mut Policy) {
    const OTHERS: [&str; 5] = [
        "auth-tls-verify-client",
        "auth-tls-verify-depth",
        "auth-tls-pass-certificate-to-upstream",
        "auth-tls-error-page",
        "auth-tls-match-cn",
    ];
    let Some(secret) = r.get("auth-tls-secret") else {
        for name in OTHERS {
            if r.get(name).is_some() {
                // Without a CA nothing is verified; a client-certificate setting alone is a
                // request for protection that cannot be given.
                r.unusable(name, "needs auth-tls-secret with the CA (ca.crt) to verify against");
            }
        }
        return;
    };
    let Some(secret) = name_ns(secret) else {
        r.unusable("auth-tls-secret", "expected namespace/name");
        return;
    };
    let mut auth = ClientAuth {
        secret,
        verify: VerifyClient::On,
        verify_depth: 1,
        pass_certificate: false,
        error_page: None,
        match_cn: None,
    };
    if let Some(v) = r.get("auth-tls-verify-client") {
        match v {
            "on" => auth.verify = VerifyClient::On,
            "optional" => auth.verify = VerifyClient::Optional,
            "optional_no_ca" => auth.verify = VerifyClient::OptionalNoCa,
            "off" => auth.verify = VerifyClient::Off,
            // ingress-nginx's default for a bad value is `on`, the strictest.
            _ => r.invalid("auth-tls-verify-client", "expected on, optional, optional_no_ca or off"),
        }
    }
    if let Some(v) = r.get("auth-tls-verify-depth") {
        match depth(v) {
            Some(d) => auth.verify_depth = d,
            None if v == "0" => {}
            None => r.invalid("auth-tls-verify-depth", "expected a whole number from 1 to 100"),
        }
    }
    if let Some(v) = r.get("auth-tls-pass-certificate-to-upstream") {
        match parse_bool(v) {
            Some(b) => auth.pass_certificate = b,
            None => r.invalid("auth-tls-pass-certificate-to-upstream", "expected true or false"),
        }
    }
    if let Some(v) = r.get("auth-tls-error-page") {
        let usable = (v.starts_with("http://") || v.starts_with("https://") || v.starts_with('/'))
            && !v.bytes().any(|b| b.is_ascii_control() || b == b' ');
        if usable {
            auth.error_page = Some(v.to_owned());
        } else {
            r.invalid("auth-tls-error-page", "expected a URL or a path");
        }
    }
    if let Some(v) = r.get("auth-tls-match-cn") {
        // ingress-nginx: `CN=...` and a regular expression; a bad one is dropped there, which
        // would admit every verified certificate: here it fails closed.
        match v.strip_prefix("CN=").filter(|re| !re.is_empty()) {
            Some(_) if regex::RegexBuilder::new(v).size_limit(1 << 20).build().is_ok() => {
                auth.match_cn = Some(v.to_owned());
            }
            _ => r.unusable("auth-tls-match-cn", "expected CN= followed by a regular expression"),
        }
    }
    p.tls.client_auth = Some(auth);
}

#[cfg(test)]
mod tests {
    use super::super::{FindingKind, PREFIXES, parse};
    use super::*;
    use std::collections::BTreeMap;

    fn policy(pairs: &[(&str, &str)]) -> (Policy, Vec<(String, FindingKind)>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{}{k}", PREFIXES[0]), (*v).to_owned()))
            .collect();
        let (p, findings) = parse(Some(&map));
        let findings = findings
            .into_iter()
            .map(|f| (f.annotation[PREFIXES[0].len()..].to_owned(), f.kind))
            .collect();
        (p, findings)
    }

    const HTTPS: (&str, &str) = ("backend-protocol", "HTTPS");

    #[test]
    fn proxy_ssl_settings_reach_the_policy() {
        let (p, findings) = policy(&[
            HTTPS,
            ("proxy-ssl-secret", "shop/backend-ca"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-name", "Backend.Shop.svc"),
            ("proxy-ssl-server-name", "on"),
            ("proxy-ssl-verify-depth", "2"),
            ("proxy-ssl-protocols", "TLSv1.3 TLSv1.2 TLSv1.1"),
        ]);
        assert_eq!(findings, []);
        assert_eq!(
            p.tls.proxy_ssl,
            Some(ProxySsl {
                secret: ("shop".into(), "backend-ca".into()),
                verify: true,
                name: Some("backend.shop.svc".into()),
                server_name: true,
                verify_depth: 2,
                versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            })
        );
        assert!(p.unenforced.is_empty());
    }

    #[test]
    fn proxy_ssl_defaults_as_ingress_nginx() {
        let (p, findings) = policy(&[HTTPS, ("proxy-ssl-secret", "ns/s")]);
        assert_eq!(findings, []);
        let ssl = p.tls.proxy_ssl.unwrap();
        assert!(!ssl.verify && !ssl.server_name && ssl.name.is_none());
        assert_eq!((ssl.verify_depth, ssl.versions.len()), (1, 0));
    }

    /// Each row: annotations → (proxy_ssl set, findings).
    #[test]
    fn hostile_and_malformed_proxy_ssl_values() {
        use FindingKind::*;
        type Row<'a> = (&'a [(&'a str, &'a str)], bool, &'a [(&'a str, FindingKind)]);
        let rows: &[Row<'_>] = &[
            // Verification without a Secret cannot be done: fail closed; the rest is ignored.
            (
                &[HTTPS, ("proxy-ssl-verify", "on")],
                false,
                &[("proxy-ssl-verify", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-verify", "off")],
                false,
                &[("proxy-ssl-verify", Ignored)],
            ),
            (
                &[HTTPS, ("proxy-ssl-verify", "ON")],
                false,
                &[("proxy-ssl-verify", Unenforced)],
            ),
            (&[("proxy-ssl-name", "a.b")], false, &[("proxy-ssl-name", Ignored)]),
            // A plain-HTTP backend has no TLS to configure.
            (
                &[("proxy-ssl-secret", "ns/s"), ("proxy-ssl-verify", "on")],
                false,
                &[("proxy-ssl-secret", Ignored), ("proxy-ssl-verify", Ignored)],
            ),
            // Secret references: namespace/name only.
            (
                &[HTTPS, ("proxy-ssl-secret", "s")],
                false,
                &[("proxy-ssl-secret", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "a/b/c")],
                false,
                &[("proxy-ssl-secret", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "/s")],
                false,
                &[("proxy-ssl-secret", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/")],
                false,
                &[("proxy-ssl-secret", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/S")],
                false,
                &[("proxy-ssl-secret", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/a;b")],
                false,
                &[("proxy-ssl-secret", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "../etc")],
                false,
                &[("proxy-ssl-secret", Unenforced)],
            ),
            // A garbled verify may have meant on.
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-verify", "true")],
                true,
                &[("proxy-ssl-verify", Unenforced)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-name", "a b")],
                true,
                &[("proxy-ssl-name", Invalid)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-name", "a..b")],
                true,
                &[("proxy-ssl-name", Invalid)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-name", "$host")],
                true,
                &[("proxy-ssl-name", Invalid)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-verify-depth", "-1")],
                true,
                &[("proxy-ssl-verify-depth", Invalid)],
            ),
            (
                &[
                    HTTPS,
                    ("proxy-ssl-secret", "ns/s"),
                    ("proxy-ssl-verify-depth", "99999999999"),
                ],
                true,
                &[("proxy-ssl-verify-depth", Invalid)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-verify-depth", "0")],
                true,
                &[],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-protocols", "TLSv1.2;")],
                true,
                &[("proxy-ssl-protocols", Invalid)],
            ),
            (
                &[
                    HTTPS,
                    ("proxy-ssl-secret", "ns/s"),
                    ("proxy-ssl-protocols", "TLSv1 TLSv1.1"),
                ],
                true,
                &[("proxy-ssl-protocols", Invalid)],
            ),
            (
                &[HTTPS, ("proxy-ssl-secret", "ns/s"), ("proxy-ssl-server-name", "yes")],
                true,
                &[("proxy-ssl-server-name", Invalid)],
            ),
            (
                &[
                    HTTPS,
                    ("proxy-ssl-secret", "ns/s"),
                    ("proxy-ssl-ciphers", "HIGH:!aNULL"),
                ],
                true,
                &[("proxy-ssl-ciphers", Ignored)],
            ),
        ];
        for (i, (pairs, set, expected)) in rows.iter().enumerate() {
            let (p, findings) = policy(pairs);
            let expected: Vec<(String, FindingKind)> = expected.iter().map(|(k, f)| ((*k).to_owned(), *f)).collect();
            assert_eq!(findings, expected, "row {i}: {pairs:?}");
            assert_eq!(p.tls.proxy_ssl.is_some(), *set, "row {i}: {pairs:?}");
        }
    }

    #[test]
    fn client_auth_settings_reach_the_policy() {
        let (p, findings) = policy(&[
            ("auth-tls-secret", "shop/client-ca"),
            ("auth-tls-verify-client", "optional_no_ca"),
            ("auth-tls-verify-depth", "3"),
            ("auth-tls-pass-certificate-to-upstream", "true"),
            ("auth-tls-error-page", "https://shop.test/no-cert"),
            ("auth-tls-match-cn", "CN=(alice|bob)"),
        ]);
        assert_eq!(findings, []);
        assert!(p.unenforced.is_empty());
        assert_eq!(
            p.tls.client_auth,
            Some(ClientAuth {
                secret: ("shop".into(), "client-ca".into()),
                verify: VerifyClient::OptionalNoCa,
                verify_depth: 3,
                pass_certificate: true,
                error_page: Some("https://shop.test/no-cert".into()),
                match_cn: Some("CN=(alice|bob)".into()),
            })
        );
        assert!(p.needs_hyper());
        // ingress-nginx's defaults: on, depth 1, the certificate not passed.
        let (p, _) = policy(&[("auth-tls-secret", "ns/ca")]);
        let auth = p.tls.client_auth.unwrap();
        assert_eq!(
            (auth.verify, auth.verify_depth, auth.pass_certificate),
            (VerifyClient::On, 1, false)
        );
    }

    /// Each row: annotations → (client_auth set, the route fails closed, findings). A setting
    /// that asks for protection without the CA to give it, or a match-cn that cannot be
    /// checked, fails closed; a bad value of a setting that only loosens falls back to the
    /// strictest default.
    #[test]
    fn hostile_and_malformed_client_auth_values() {
        use FindingKind::*;
        type Row<'a> = (&'a [(&'a str, &'a str)], bool, bool, &'a [(&'a str, FindingKind)]);
        let rows: &[Row<'_>] = &[
            (&[("auth-tls-secret", "ns/ca")], true, false, &[]),
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-verify-client", "off")],
                true,
                false,
                &[],
            ),
            // Unknown mode: `on`, the strictest, as ingress-nginx's default.
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-verify-client", "maybe")],
                true,
                false,
                &[("auth-tls-verify-client", Invalid)],
            ),
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-verify-client", "ON")],
                true,
                false,
                &[("auth-tls-verify-client", Invalid)],
            ),
            // Not namespace/name: nothing to verify against.
            (
                &[("auth-tls-secret", "ca")],
                false,
                true,
                &[("auth-tls-secret", Unenforced)],
            ),
            (
                &[("auth-tls-secret", "ns/ca/x")],
                false,
                true,
                &[("auth-tls-secret", Unenforced)],
            ),
            (
                &[("auth-tls-secret", "../etc/ca")],
                false,
                true,
                &[("auth-tls-secret", Unenforced)],
            ),
            (
                &[("auth-tls-secret", "")],
                false,
                true,
                &[("auth-tls-secret", Unenforced)],
            ),
            // Settings without a Secret.
            (
                &[("auth-tls-verify-client", "on")],
                false,
                true,
                &[("auth-tls-verify-client", Unenforced)],
            ),
            (
                &[("auth-tls-verify-depth", "2")],
                false,
                true,
                &[("auth-tls-verify-depth", Unenforced)],
            ),
            (
                &[("auth-tls-pass-certificate-to-upstream", "false")],
                false,
                true,
                &[("auth-tls-pass-certificate-to-upstream", Unenforced)],
            ),
            (
                &[("auth-tls-match-cn", "CN=a")],
                false,
                true,
                &[("auth-tls-match-cn", Unenforced)],
            ),
            // A match-cn that cannot be checked would admit every verified certificate.
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-match-cn", "CN=(")],
                true,
                true,
                &[("auth-tls-match-cn", Unenforced)],
            ),
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-match-cn", "alice")],
                true,
                true,
                &[("auth-tls-match-cn", Unenforced)],
            ),
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-match-cn", "CN=")],
                true,
                true,
                &[("auth-tls-match-cn", Unenforced)],
            ),
            (
                &[
                    ("auth-tls-secret", "ns/ca"),
                    ("auth-tls-match-cn", "CN=(a{1000}){1000}"),
                ],
                true,
                true,
                &[("auth-tls-match-cn", Unenforced)],
            ),
            // A header injection in the error page: not used (the answer is 400).
            (
                &[
                    ("auth-tls-secret", "ns/ca"),
                    ("auth-tls-error-page", "/a\r\nSet-Cookie: x"),
                ],
                true,
                false,
                &[("auth-tls-error-page", Invalid)],
            ),
            (
                &[
                    ("auth-tls-secret", "ns/ca"),
                    ("auth-tls-error-page", "javascript:alert(1)"),
                ],
                true,
                false,
                &[("auth-tls-error-page", Invalid)],
            ),
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-verify-depth", "-1")],
                true,
                false,
                &[("auth-tls-verify-depth", Invalid)],
            ),
            (
                &[("auth-tls-secret", "ns/ca"), ("auth-tls-verify-depth", "0")],
                true,
                false,
                &[],
            ),
            (
                &[
                    ("auth-tls-secret", "ns/ca"),
                    ("auth-tls-pass-certificate-to-upstream", "yes"),
                ],
                true,
                false,
                &[("auth-tls-pass-certificate-to-upstream", Invalid)],
            ),
        ];
        for (i, (pairs, set, closed, expected)) in rows.iter().enumerate() {
            let (p, findings) = policy(pairs);
            let findings: Vec<(&str, FindingKind)> = findings.iter().map(|(k, f)| (k.as_str(), *f)).collect();
            assert_eq!(findings, *expected, "row {i}: {pairs:?}");
            assert_eq!(p.tls.client_auth.is_some(), *set, "row {i}: {pairs:?}");
            assert_eq!(!p.unenforced.is_empty(), *closed, "row {i}: {pairs:?}");
        }
    }

    #[test]
    fn ssl_passthrough() {
        let (p, findings) = policy(&[("ssl-passthrough", "true")]);
        assert!(p.tls.passthrough && p.unenforced.is_empty());
        assert_eq!(findings, []);
        assert!(!policy(&[("ssl-passthrough", "false")]).0.tls.passthrough);
        assert_eq!(
            policy(&[("ssl-passthrough", "yes")]).1,
            [("ssl-passthrough".to_owned(), FindingKind::Invalid)]
        );
    }
}
