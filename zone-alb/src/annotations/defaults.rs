//! The cluster-wide settings ingress-nginx keeps in its ConfigMap that change what an
//! Ingress's annotations mean, read from `MultiZoneCluster.spec.ingressNginx` under
//! ingress-nginx's own keys and string values, so a ConfigMap's `data` can be pasted in.
//! Every default is ingress-nginx's. A value that cannot be used keeps the default, which is
//! never the less safe choice, and is reported; other keys are reported as ignored.

use std::collections::BTreeMap;

use ipnet::IpNet;

/// Cluster-wide defaults for annotation parsing and forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// `proxy-body-size`: the request-body cap when an Ingress sets none (`None`: unlimited).
    pub body_limit: Option<u64>,
    /// `ssl-redirect`: redirect plain HTTP to HTTPS for hosts with TLS.
    pub ssl_redirect: bool,
    /// `limit-req-status-code`: the status of a request refused by a rate limit.
    pub limit_req_status: u16,
    /// `limit-conn-status-code`: the status of a request refused by a connection limit.
    pub limit_conn_status: u16,
    /// `custom-http-errors`: codes intercepted for every Ingress that sets none of its own.
    pub custom_http_errors: Vec<u16>,
    /// `allow-snippet-annotations`: whether snippet annotations may be used at all.
    pub allow_snippets: bool,
    /// `use-forwarded-headers` with `proxy-real-ip-cidr`: the peers whose X-Forwarded-*
    /// fields are believed. `None`: the ALB's own `--trusted-proxies` decide.
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// `enable-underscores-in-headers`; `None`: the ALB's own flag decides.
    pub underscores_in_headers: Option<bool>,
    /// `global-allowed-response-headers`: the only names a `custom-headers` ConfigMap may set
    /// (compared exactly, as ingress-nginx does). Empty by default: every such ConfigMap is
    /// refused.
    pub allowed_response_headers: Vec<String>,
    /// `ssl-protocols` and `ssl-ciphers`: what the TLS listener offers.
    pub tls_policy: crate::tls::Policy,
    /// `hsts`, `hsts-max-age`, `hsts-include-subdomains`, `hsts-preload`: the
    /// Strict-Transport-Security value added to HTTPS answers; `None` with `hsts: false`.
    pub hsts: Option<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            body_limit: Some(1 << 20),
            ssl_redirect: true,
            limit_req_status: 503,
            limit_conn_status: 503,
            custom_http_errors: Vec::new(),
            allow_snippets: false,
            trusted_proxies: None,
            underscores_in_headers: None,
            allowed_response_headers: Vec::new(),
            tls_policy: crate::tls::Policy::default(),
            hsts: Some(hsts_value(HSTS_MAX_AGE, true, false)),
        }
    }
}

/// Keys read from the ConfigMap-style map.
pub const KEYS: [&str; 17] = [
    "allow-snippet-annotations",
    "custom-http-errors",
    "enable-underscores-in-headers",
    "global-allowed-response-headers",
    "hsts",
    "hsts-include-subdomains",
    "hsts-max-age",
    "hsts-preload",
    "limit-conn-status-code",
    "limit-req-status-code",
    "proxy-body-size",
    "proxy-real-ip-cidr",
    "ssl-ciphers",
    "ssl-protocols",
    "ssl-redirect",
    "use-forwarded-headers",
    // Read with use-forwarded-headers; listed so it is not reported as ignored.
    "forwarded-for-header",
];

impl Defaults {
    /// Reads `spec.ingressNginx`; returns the settings and one message per key that could not
    /// be used as written (each names the key and value).
    pub fn from_config(config: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let mut d = Defaults::default();
        let mut problems = Vec::new();
        let mut bad = |key: &str, value: &str, expected: &str| {
            problems.push(format!(
                "spec.ingressNginx.{key} = {value:?}: {expected}; the default applies"
            ));
        };
        let get = |key: &str| config.get(key).map(|v| v.trim());
        if let Some(v) = get("proxy-body-size") {
            match super::parse_size(v) {
                Some(0) => d.body_limit = None,
                Some(n) => d.body_limit = Some(n),
                None => bad("proxy-body-size", v, "expected a size such as 8k, 1m or 0 (unlimited)"),
            }
        }
        if let Some(v) = get("ssl-redirect") {
            match super::parse_bool(v) {
                Some(b) => d.ssl_redirect = b,
                None => bad("ssl-redirect", v, "expected true or false"),
            }
        }
        for (key, slot) in [
            ("limit-req-status-code", &mut d.limit_req_status),
            ("limit-conn-status-code", &mut d.limit_conn_status),
        ] {
            if let Some(v) = get(key) {
                // nginx's limit_req_status / limit_conn_status accept 400–599.
                match v.parse::<u16>() {
                    Ok(code) if (400..=599).contains(&code) => *slot = code,
                    _ => bad(key, v, "expected a status code from 400 to 599"),
                }
            }
        }
        if let Some(v) = get("custom-http-errors") {
            match parse_codes(v) {
                Some(codes) => d.custom_http_errors = codes,
                None => bad(
                    "custom-http-errors",
                    v,
                    "expected comma-separated status codes from 400 to 599",
                ),
            }
        }
        if let Some(v) = get("allow-snippet-annotations") {
            match super::parse_bool(v) {
                Some(b) => d.allow_snippets = b,
                None => bad("allow-snippet-annotations", v, "expected true or false"),
            }
        }
        if let Some(v) = get("enable-underscores-in-headers") {
            match super::parse_bool(v) {
                Some(b) => d.underscores_in_headers = Some(b),
                None => bad("enable-underscores-in-headers", v, "expected true or false"),
            }
        }
        if let Some(v) = get("use-forwarded-headers") {
            match super::parse_bool(v) {
                Some(true) => {
                    // ingress-nginx's default proxy-real-ip-cidr: every peer is believed.
                    let cidrs = get("proxy-real-ip-cidr").unwrap_or("0.0.0.0/0");
                    match super::parse_nets(cidrs) {
                        Some(nets) => d.trusted_proxies = Some(nets),
                        // Believing nobody is the safe reading of an unusable list.
                        None => {
                            bad("proxy-real-ip-cidr", cidrs, "expected comma-separated CIDRs");
                            d.trusted_proxies = Some(Vec::new());
                        }
                    }
                }
                Some(false) => d.trusted_proxies = Some(Vec::new()),
                None => bad("use-forwarded-headers", v, "expected true or false"),
            }
        }
        if let Some(v) = get("global-allowed-response-headers") {
            let names: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            let valid = |n: &&str| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            match names.iter().find(|n| !valid(n)) {
                // Allowing none is the safe reading of a list that cannot be used.
                Some(_) => bad(
                    "global-allowed-response-headers",
                    v,
                    "expected comma-separated header names",
                ),
                None => d.allowed_response_headers = names.into_iter().map(str::to_owned).collect(),
            }
        }
        if let Some(v) = get("ssl-protocols") {
            match parse_protocols(v) {
                Ok(versions) => d.tls_policy.versions = versions,
                Err(why) => bad("ssl-protocols", v, &why),
            }
        }
        if let Some(v) = get("ssl-ciphers") {
            match parse_ciphers(v) {
                Ok(suites) => d.tls_policy.tls12_suites = suites,
                Err(why) => bad("ssl-ciphers", v, &why),
            }
        }
        let mut hsts = (HSTS_MAX_AGE, true, false);
        if let Some(v) = get("hsts-max-age") {
            match v.parse::<u64>() {
                Ok(age) => hsts.0 = age,
                Err(_) => bad("hsts-max-age", v, "expected a number of seconds"),
            }
        }
        for (key, slot) in [("hsts-include-subdomains", &mut hsts.1), ("hsts-preload", &mut hsts.2)] {
            if let Some(v) = get(key) {
                match super::parse_bool(v) {
                    Some(b) => *slot = b,
                    None => bad(key, v, "expected true or false"),
                }
            }
        }
        d.hsts = Some(hsts_value(hsts.0, hsts.1, hsts.2));
        if let Some(v) = get("hsts") {
            match super::parse_bool(v) {
                Some(true) => {}
                Some(false) => d.hsts = None,
                None => bad("hsts", v, "expected true or false"),
            }
        }
        if let Some(v) = get("forwarded-for-header")
            && !v.eq_ignore_ascii_case("X-Forwarded-For")
        {
            bad("forwarded-for-header", v, "only X-Forwarded-For is read");
        }
        for (key, value) in config {
            if !KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "spec.ingressNginx.{key} = {value:?}: not a setting mzlb reads; ignored"
                ));
            }
        }
        (d, problems)
    }
}

/// ingress-nginx's `hsts-max-age`: one year.
const HSTS_MAX_AGE: u64 = 31_536_000;

fn hsts_value(max_age: u64, include_subdomains: bool, preload: bool) -> String {
    let mut v = format!("max-age={max_age}");
    if include_subdomains {
        v.push_str("; includeSubDomains");
    }
    if preload {
        v.push_str("; preload");
    }
    v
}

/// `ssl-protocols`: nginx's space-separated version names. Only versions mzlb speaks are
/// accepted: a list naming an older one is refused whole rather than quietly narrowed, so
/// nobody believes TLS 1.1 clients are served.
fn parse_protocols(v: &str) -> Result<Vec<crate::tls::TlsVersion>, String> {
    use crate::tls::TlsVersion;
    let mut versions = Vec::new();
    for word in v.split_ascii_whitespace() {
        let version = match word {
            "TLSv1.2" => TlsVersion::Tls12,
            "TLSv1.3" => TlsVersion::Tls13,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {
                return Err(format!("{word} is not offered (only TLSv1.2 and TLSv1.3 are)"));
            }
            _ => {
                return Err(format!(
                    "{word} is not a protocol name (expected TLSv1.2 and/or TLSv1.3)"
                ));
            }
        };
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        return Err("expected TLSv1.2 and/or TLSv1.3".into());
    }
    versions.sort();
    Ok(versions)
}

/// `ssl-ciphers`: an OpenSSL cipher list of suite names, in the server's order of preference.
/// Finite-field DHE suites are skipped, as nginx skips them without `ssl-dh-param` (which
/// ingress-nginx's own default list relies on); anything else mzlb cannot offer, and OpenSSL's
/// keywords and operators (`HIGH`, `!aNULL`), refuse the whole value.
fn parse_ciphers(v: &str) -> Result<Vec<rustls::CipherSuite>, String> {
    let mut suites = Vec::new();
    for name in v.split([':', ',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        if let Some((_, suite)) = crate::tls::TLS12_SUITES.iter().find(|(n, _)| *n == name) {
            if !suites.contains(suite) {
                suites.push(*suite);
            }
        } else if !name.starts_with("DHE-") {
            return Err(format!(
                "{name} is not a cipher suite mzlb offers (it offers {})",
                crate::tls::TLS12_SUITES.map(|(n, _)| n).join(", ")
            ));
        }
    }
    if suites.is_empty() {
        return Err("names no ECDHE suite, so TLS 1.2 clients could not connect".into());
    }
    Ok(suites)
}

/// Comma-separated status codes from 400 to 599, as `custom-http-errors` takes them.
pub(crate) fn parse_codes(v: &str) -> Option<Vec<u16>> {
    let mut codes = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let code: u16 = item.parse().ok().filter(|c| (400..=599).contains(c))?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    (!codes.is_empty()).then_some(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn an_empty_config_is_ingress_nginx_s_defaults() {
        assert_eq!(
            Defaults::from_config(&BTreeMap::new()),
            (Defaults::default(), Vec::new())
        );
    }

    #[test]
    fn a_pasted_configmap_is_read() {
        let (d, problems) = Defaults::from_config(&config(&[
            ("proxy-body-size", "8m"),
            ("ssl-redirect", "false"),
            ("limit-req-status-code", "429"),
            ("custom-http-errors", "404, 503,404"),
            ("allow-snippet-annotations", "true"),
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8,192.0.2.1"),
            ("enable-underscores-in-headers", "true"),
            (
                "global-allowed-response-headers",
                "X-Frame-Options, Content-Security-Policy,",
            ),
            ("worker-processes", "4"),
        ]));
        assert_eq!(
            d.allowed_response_headers,
            ["X-Frame-Options", "Content-Security-Policy"]
        );
        assert_eq!(d.body_limit, Some(8 << 20));
        assert!(!d.ssl_redirect && d.allow_snippets);
        assert_eq!(d.limit_req_status, 429);
        assert_eq!(d.limit_conn_status, 503);
        assert_eq!(d.custom_http_errors, [404, 503]);
        assert_eq!(d.trusted_proxies.as_ref().map(Vec::len), Some(2));
        assert_eq!(d.underscores_in_headers, Some(true));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("worker-processes") && problems[0].contains("ignored"));
    }

    #[test]
    fn tls_settings_as_ingress_nginx() {
        use crate::tls::{Policy, TlsVersion};
        use rustls::CipherSuite as S;
        let d = Defaults::default();
        assert_eq!(d.hsts.as_deref(), Some("max-age=31536000; includeSubDomains"));
        assert_eq!(d.tls_policy, Policy::default());
        // ingress-nginx's own default list: its DHE suites are skipped, as nginx does without
        // ssl-dh-param.
        let nginx_default = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
        let (d, problems) = Defaults::from_config(&config(&[
            ("ssl-protocols", "TLSv1.2 TLSv1.3"),
            ("ssl-ciphers", nginx_default),
        ]));
        assert_eq!((&d, problems.len()), (&Defaults::default(), 0), "{problems:?}");
        let (d, problems) = Defaults::from_config(&config(&[
            ("ssl-protocols", "TLSv1.3"),
            (
                "ssl-ciphers",
                "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384",
            ),
            ("hsts-max-age", "600"),
            ("hsts-include-subdomains", "false"),
            ("hsts-preload", "true"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(d.tls_policy.versions, [TlsVersion::Tls13]);
        assert_eq!(
            d.tls_policy.tls12_suites,
            [
                S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            ]
        );
        assert_eq!(d.hsts.as_deref(), Some("max-age=600; preload"));
        let (d, _) = Defaults::from_config(&config(&[("hsts", "false"), ("hsts-preload", "true")]));
        assert_eq!(d.hsts, None);
        // The refusal names the value that cannot be honoured.
        let (_, problems) = Defaults::from_config(&config(&[("ssl-protocols", "TLSv1.1 TLSv1.2")]));
        assert!(problems[0].contains("TLSv1.1 is not offered"), "{problems:?}");
        let (_, problems) = Defaults::from_config(&config(&[("ssl-ciphers", "AES128-SHA")]));
        assert!(
            problems[0].contains("AES128-SHA is not a cipher suite mzlb offers"),
            "{problems:?}"
        );
    }

    #[test]
    fn forwarded_headers_default_to_every_peer_as_ingress_nginx() {
        let (d, _) = Defaults::from_config(&config(&[("use-forwarded-headers", "true")]));
        assert_eq!(d.trusted_proxies, Some(vec!["0.0.0.0/0".parse().unwrap()]));
        let (d, _) = Defaults::from_config(&config(&[("use-forwarded-headers", "false")]));
        assert_eq!(d.trusted_proxies, Some(Vec::new()));
    }

    #[test]
    fn unusable_values_keep_the_safe_default_and_are_named() {
        let rows: &[(&str, &str)] = &[
            ("proxy-body-size", "lots"),
            ("ssl-redirect", "maybe"),
            ("limit-req-status-code", "200"),
            ("limit-req-status-code", "99999"),
            ("limit-conn-status-code", "-1"),
            ("custom-http-errors", "404,abc"),
            ("custom-http-errors", "302"),
            ("custom-http-errors", ","),
            ("allow-snippet-annotations", "yes please"),
            ("enable-underscores-in-headers", "\r\n"),
            ("use-forwarded-headers", "on"),
            ("forwarded-for-header", "X-Real-IP"),
            ("global-allowed-response-headers", "X-A, X B"),
            ("global-allowed-response-headers", "X-A:b"),
            ("ssl-protocols", "TLSv1.1 TLSv1.2"),
            ("ssl-protocols", "TLSv1"),
            ("ssl-protocols", "TLSv1.4"),
            ("ssl-protocols", " "),
            ("ssl-ciphers", "HIGH:!aNULL:!MD5"),
            ("ssl-ciphers", "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA"),
            ("ssl-ciphers", "DHE-RSA-AES128-GCM-SHA256"),
            ("hsts", "sometimes"),
            ("hsts-max-age", "a year"),
            ("hsts-include-subdomains", "1x"),
        ];
        for &(key, value) in rows {
            let (d, problems) = Defaults::from_config(&config(&[(key, value)]));
            assert_eq!(d, Defaults::default(), "{key}={value:?}");
            assert_eq!(problems.len(), 1, "{key}={value:?}: {problems:?}");
            assert!(problems[0].contains(key), "{problems:?}");
        }
        // An unusable CIDR list with forwarded headers on: believe nobody.
        let (d, problems) = Defaults::from_config(&config(&[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/33"),
        ]));
        assert_eq!(d.trusted_proxies, Some(Vec::new()));
        assert!(problems[0].contains("proxy-real-ip-cidr"));
    }
}
