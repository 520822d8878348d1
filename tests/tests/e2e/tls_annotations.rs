//! TLS annotations through a running zone-alb: `proxy-ssl-*` to an HTTPS backend of our own
//! (a tokio-rustls server with a certificate from a test CA, telling what SNI and client
//! certificate it saw), with real curl.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::harness::{curl, single_alb_site, tempdir, write, zone_alb};

/// A CA and what it signs.
pub(crate) struct Ca {
    pub(crate) cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub(crate) fn issuer(&self) -> &rcgen::Issuer<'static, rcgen::KeyPair> {
        &self.issuer
    }

    /// A leaf for `names` (empty: a client certificate named `cn`): (PEM cert, PEM key, DER, key DER).
    pub(crate) fn leaf(
        &self,
        cn: &str,
        names: &[&str],
    ) -> (String, String, CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der_key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone(), der_key)
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// An Opaque Secret with `fields` (name, PEM).
pub(crate) fn secret(name: &str, fields: &[(&str, &str)]) -> String {
    let data: String = fields.iter().map(|(k, v)| format!("  {k}: |\n{}", indent(v))).collect();
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\nstringData:\n{data}")
}

pub(crate) fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: '{v}'\n"))
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n{annotations}spec:\n  ingressClassName: mzlb\n  rules:\n  - host: '{host}'\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
    )
}

/// An HTTPS backend on `addr` showing `cert`; it asks for a client certificate signed by
/// `client_ca` (without requiring one) and answers every request with what it saw:
/// `sni: <name or ->` and `client: <CN or ->`.
pub(crate) fn https_backend(
    addr: &str,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    client_ca: CertificateDer<'static>,
) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(mut conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let sni = tls.conn.server_name().unwrap_or("-").to_owned();
                        let client = tls
                            .conn
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map_or("-".to_owned(), |c| common_name(c));
                        let body = format!("sni: {sni}\nclient: {client}\n");
                        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        if tls.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
}

/// The CN of a certificate we made (rcgen puts it as a UTF8String): found by its OID.
fn common_name(der: &CertificateDer<'_>) -> String {
    let bytes = der.as_ref();
    // OID 2.5.4.3, then a string type and its length.
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let Some(at) = bytes.windows(oid.len()).rposition(|w| w == oid) else {
        return "?".into();
    };
    let len = bytes[at + oid.len() + 1] as usize;
    let start = at + oid.len() + 2;
    String::from_utf8_lossy(&bytes[start..start + len]).into_owned()
}

#[test]
fn proxy_ssl_verifies_the_backend_and_presents_the_client_certificate() {
    let dir = tempdir();
    let ca = Ca::new("backend-ca");
    let stranger = Ca::new("stranger-ca");
    // The backend's certificate names ingress-nginx's upstream name and one more.
    let (_, _, backend_cert, backend_key) = ca.leaf("backend", &["default-app-80", "api.internal"]);
    let (client_pem, client_key_pem, _, _) = ca.leaf("alb-client", &[]);
    let ca_pem = ca.cert.pem();
    https_backend("127.0.80.11:9080", backend_cert, backend_key, ca.cert.der().clone());

    let verified = [
        ("backend-protocol", "HTTPS"),
        ("proxy-ssl-secret", "default/backend-ca"),
        ("proxy-ssl-verify", "on"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        verified.iter().copied().chain(extra.iter().copied()).collect()
    };
    let mut docs = single_alb_site("127.0.80.1", None, "127.0.80.11");
    docs.extend([
        secret(
            "backend-ca",
            &[
                ("ca.crt", &ca_pem),
                ("tls.crt", &client_pem),
                ("tls.key", &client_key_pem),
            ],
        ),
        secret("stranger-ca", &[("ca.crt", &stranger.cert.pem())]),
        secret(
            "only-client-cert",
            &[("tls.crt", &client_pem), ("tls.key", &client_key_pem)],
        ),
        ingress("verified", "verified.test", &with(&[])),
        ingress(
            "sni",
            "sni.test",
            &with(&[("proxy-ssl-name", "api.internal"), ("proxy-ssl-server-name", "on")]),
        ),
        ingress(
            "wrong-name",
            "wrong-name.test",
            &with(&[("proxy-ssl-name", "other.internal")]),
        ),
        ingress(
            "stranger",
            "stranger.test",
            &[
                ("backend-protocol", "HTTPS"),
                ("proxy-ssl-secret", "default/stranger-ca"),
                ("proxy-ssl-verify", "on"),
            ],
        ),
        ingress(
            "missing",
            "missing.test",
            &[
                ("backend-protocol", "HTTPS"),
                ("proxy-ssl-secret", "default/no-such-secret"),
                ("proxy-ssl-verify", "on"),
            ],
        ),
        ingress(
            "no-ca",
            "no-ca.test",
            &[
                ("backend-protocol", "HTTPS"),
                ("proxy-ssl-secret", "default/only-client-cert"),
                ("proxy-ssl-verify", "on"),
            ],
        ),
        ingress(
            "no-secret",
            "no-secret.test",
            &[("backend-protocol", "HTTPS"), ("proxy-ssl-verify", "on")],
        ),
        ingress(
            "client-cert-only",
            "client-cert-only.test",
            &[
                ("backend-protocol", "HTTPS"),
                ("proxy-ssl-secret", "default/only-client-cert"),
            ],
        ),
        ingress("insecure", "insecure.test", &[("backend-protocol", "HTTPS")]),
    ]);
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let alb = zone_alb(dir.path(), &[], "http://127.0.80.1:8080/healthz");
    let get = |host: &str| curl(&["-H", &format!("Host: {host}"), "http://127.0.80.1:8080/"]);

    // Verified against ca.crt for `default-app-80`, no SNI (proxy-ssl-server-name is off by
    // default), the Secret's certificate presented.
    let (code, body) = get("verified.test");
    assert_eq!(code, 200, "{body}\n{}", alb.output());
    assert_eq!(body, "sni: -\nclient: alb-client\n");
    // proxy-ssl-name is the name checked and, with proxy-ssl-server-name, sent.
    assert_eq!(get("sni.test"), (200, "sni: api.internal\nclient: alb-client\n".into()));
    // A certificate not for the name, or not from the CA: 502. The verified route's pooled
    // connection to the same endpoint is not lent to these.
    assert_eq!(get("wrong-name.test").0, 502);
    assert_eq!(get("stranger.test").0, 502);
    assert_eq!(get("verified.test").0, 200);
    assert_eq!(get("stranger.test").0, 502);
    // A Secret that cannot be used fails closed, as ingress-nginx denies the location.
    for host in ["missing.test", "no-ca.test", "no-secret.test"] {
        assert_eq!(get(host).0, 503, "{host}");
    }
    // A client certificate without a CA: presented, the backend not verified.
    assert_eq!(
        get("client-cert-only.test"),
        (200, "sni: -\nclient: alb-client\n".into())
    );
    // ingress-nginx's default for HTTPS backends: unverified, no SNI, no client certificate.
    assert_eq!(get("insecure.test"), (200, "sni: -\nclient: -\n".into()));
    let log = alb.output();
    assert!(log.contains("Secret default/no-such-secret not found"), "{log}");
}
