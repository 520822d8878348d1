//! Client certificates per host (`auth-tls-*`), as ingress-nginx's server-wide
//! `ssl_verify_client` does it.
//!
//! - The handshake for a host with `auth-tls-secret` asks for a certificate (naming the CA's
//!   subjects, so browsers offer the right one) but never fails for a missing or bad one: as in
//!   nginx, the verdict is taken after the handshake and the *request* is answered 400 (or sent
//!   to `auth-tls-error-page`). The handshake still proves the client holds the certificate's key.
//! - The verdict is worked out once per connection ([`Connection`]) against the CA, the
//!   revocation lists (`ca.crl`) and the depth, and checked per request against the Host's
//!   settings: a request whose Host is not the name the handshake was for is answered 421, as
//!   nginx does, so a certificate verified for one host never admits a request to another.
//! - `ssl-client-verify`, `ssl-client-subject-dn`, `ssl-client-issuer-dn` (and with
//!   `auth-tls-pass-certificate-to-upstream`, `ssl-client-cert`) go upstream, replacing any the
//!   client sent.
//! - Plain HTTP to a host with `auth-tls-verify-client: on` (and no redirect to HTTPS) is
//!   answered 400: it carries no certificate. nginx would serve it unverified; we do not.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::annotations::tls::{ClientAuth, VerifyClient};
use crate::backend_tls::{find_secret, pem_certs, secret_field};
use crate::objects::Objects;

const SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
const SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
const SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
const SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// The client-certificate settings of one host: the first Ingress (in table order) with
/// `auth-tls-secret` among those naming the host, as ingress-nginx picks them.
#[derive(Debug)]
pub struct HostAuth {
    settings: ClientAuth,
    match_cn: Option<regex::Regex>,
    /// The CA material, or why it cannot be used (the host then answers 503).
    trust: Result<Trust, String>,
    /// Identifies the settings and material: a connection verified under an equal `HostAuth`
    /// (from a later table, say) stays valid.
    id: u64,
    /// The TLS configuration asking for this host's certificates, built on first use from the
    /// listener's own.
    config: OnceLock<Option<Arc<rustls::ServerConfig>>>,
}

#[derive(Debug)]
struct Trust {
    /// The CAs of `ca.crt`, parsed once, and beside each (same index) its dates.
    anchors: Vec<TrustAnchor<'static>>,
    roots: Vec<Root>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    /// The CAs' subjects, sent in the CertificateRequest.
    subjects: Vec<DistinguishedName>,
}

impl HostAuth {
    /// Reads `auth-tls-secret` for an Ingress in `namespace`. A Secret that cannot be used does
    /// not stop the table: the host answers 503 and the reason is returned for the report.
    pub fn new(objects: &Objects, namespace: &str, settings: &ClientAuth) -> (Self, Option<String>) {
        let (ns, name) = &settings.secret;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        settings.hash(&mut hasher);
        let trust = find_secret(objects, namespace, &settings.secret).and_then(|secret| {
            let at = |e: String| format!("auth-tls-secret {ns}/{name}: {e}");
            let ca = secret_field(secret, "ca.crt").ok_or_else(|| at("data.ca.crt is missing".into()))?;
            let crl = secret_field(secret, "ca.crl");
            ca.hash(&mut hasher);
            crl.hash(&mut hasher);
            Trust::read(&ca, crl.as_deref()).map_err(at)
        });
        let match_cn = settings.match_cn.as_deref().and_then(|re| {
            // Checked when the annotation was read; the same limit here.
            regex::RegexBuilder::new(re).size_limit(1 << 20).build().ok()
        });
        let problem = trust.as_ref().err().cloned();
        let auth = Self {
            settings: settings.clone(),
            match_cn,
            trust,
            id: hasher.finish(),
            config: OnceLock::new(),
        };
        (auth, problem)
    }

    /// Whether the handshake must ask for a certificate.
    pub fn asks(&self) -> bool {
        self.settings.verify != VerifyClient::Off && self.trust.is_ok()
    }

    /// The ALB's TLS configuration asking for this host's client certificates; `None` if it
    /// cannot be built (logged), and then nothing is asked and the host's requests are refused.
    pub fn server_config(&self, edge: &crate::tls::Edge) -> Option<Arc<rustls::ServerConfig>> {
        self.config
            .get_or_init(|| {
                let subjects = self.trust.as_ref().map(|t| t.subjects.clone()).unwrap_or_default();
                let verifier = Arc::new(AskAny {
                    provider: crate::tls::provider(),
                    subjects,
                });
                edge.with_client_verifier(verifier)
                    .map(Arc::new)
                    .inspect_err(|error| {
                        tracing::error!(%error, "cannot build a TLS configuration asking for client certificates")
                    })
                    .ok()
            })
            .clone()
    }

    /// The verdict on the certificates a client presented (none: `None`).
    fn verdict(&self, certs: Option<&[CertificateDer<'static>]>, provider: &CryptoProvider, now: UnixTime) -> Verdict {
        let Some((leaf, intermediates)) = certs.and_then(<[_]>::split_first) else {
            return Verdict::None;
        };
        let Ok(trust) = &self.trust else {
            return Verdict::Failed("certificate verify failed");
        };
        match trust.verify(leaf, intermediates, provider, now, self.settings.verify_depth) {
            Ok(()) => Verdict::Success,
            Err(reason) => Verdict::Failed(reason),
        }
    }
}

/// When a CA of `ca.crt` is valid (Unix seconds): webpki keeps only an anchor's name and key,
/// OpenSSL also checks its dates.
#[derive(Debug)]
struct Root {
    not_before: i64,
    not_after: i64,
}

impl Root {
    fn current(&self, now: UnixTime) -> bool {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.not_before <= now && now <= self.not_after
    }
}

impl Trust {
    fn read(ca: &[u8], crl: Option<&[u8]>) -> Result<Self, String> {
        let (mut anchors, mut roots, mut subjects) = (Vec::new(), Vec::new(), Vec::new());
        for (i, der) in pem_certs(ca, "ca.crt")?.into_iter().enumerate() {
            let der = CertificateDer::from(der);
            let at = |e: String| format!("data.ca.crt, certificate {}: {e}", i + 1);
            let (_, cert) =
                x509_parser::parse_x509_certificate(&der).map_err(|e| at(format!("not a certificate: {e}")))?;
            // OpenSSL signs nothing with a certificate that is not a CA (X509_V_ERR_INVALID_CA);
            // webpki would take any anchor as an issuer, so a pinned client certificate would
            // let its holder mint others.
            if !is_ca(&cert) {
                return Err(at(format!(
                    "{} is not a CA certificate (basicConstraints CA:FALSE or missing); mzlb does not trust it as an issuer",
                    rfc2253(cert.subject())
                )));
            }
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| at(format!("not a usable CA certificate: {e:?}")))?;
            subjects.push(DistinguishedName::in_sequence(&anchor.subject));
            anchors.push(anchor.to_owned());
            roots.push(Root {
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
            });
        }
        let mut crls = Vec::new();
        if let Some(pem) = crl {
            let ders: Vec<CertificateRevocationListDer<'static>> = CertificateRevocationListDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("data.ca.crl is not PEM revocation lists: {e}"))?;
            if ders.is_empty() {
                return Err("data.ca.crl holds no revocation list".into());
            }
            for der in ders {
                let crl = webpki::OwnedCertRevocationList::from_der(&der)
                    .map_err(|e| format!("data.ca.crl: not a usable revocation list: {e:?}"))?;
                crls.push(webpki::CertRevocationList::from(crl));
            }
        }
        Ok(Self {
            anchors,
            roots,
            crls,
            subjects,
        })
    }

    /// As nginx with `ssl_verify_depth` (at most `depth` intermediates) and, with `ssl_crl`,
    /// revocation checked for every certificate of the chain (a CA without a list fails).
    fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        provider: &CryptoProvider,
        now: UnixTime,
        depth: u32,
    ) -> Result<(), &'static str> {
        // Every CA in its dates (the usual case): the anchors as they are.
        let current: std::borrow::Cow<'_, [TrustAnchor<'static>]> = if self.roots.iter().all(|r| r.current(now)) {
            std::borrow::Cow::Borrowed(&self.anchors)
        } else {
            let zipped = self.anchors.iter().zip(&self.roots);
            std::borrow::Cow::Owned(zipped.filter(|(_, r)| r.current(now)).map(|(a, _)| a.clone()).collect())
        };
        match self.verify_with(&current, leaf, intermediates, provider, now, depth) {
            // Issued by a CA of ca.crt that is out of its dates: OpenSSL's words for that.
            Err(webpki::Error::UnknownIssuer)
                if current.len() < self.anchors.len()
                    && self
                        .verify_with(&self.anchors, leaf, intermediates, provider, now, depth)
                        .is_ok() =>
            {
                Err("certificate has expired")
            }
            result => result.map_err(|e| openssl_reason(&e)),
        }
    }

    fn verify_with(
        &self,
        anchors: &[TrustAnchor<'_>],
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        provider: &CryptoProvider,
        now: UnixTime,
        depth: u32,
    ) -> Result<(), webpki::Error> {
        let cert = webpki::EndEntityCert::try_from(leaf)?;
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build()
        });
        let depth = depth as usize;
        let within_depth = |path: &webpki::VerifiedPath<'_>| {
            if path.intermediate_certificates().count() > depth {
                Err(webpki::Error::MaximumPathDepthExceeded)
            } else {
                Ok(())
            }
        };
        cert.verify_for_usage(
            provider.signature_verification_algorithms.all,
            anchors,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            revocation,
            Some(&within_depth),
        )
        .map(|_| ())
    }
}

/// Whether OpenSSL takes `cert` as a CA: basicConstraints CA:TRUE, or without basicConstraints
/// a v1 certificate or one whose key usage allows signing certificates.
fn is_ca(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    match cert.basic_constraints() {
        Ok(Some(bc)) => bc.value.ca,
        Ok(None) => {
            cert.version() == x509_parser::x509::X509Version::V1
                || cert
                    .key_usage()
                    .ok()
                    .flatten()
                    .is_some_and(|ku| ku.value.key_cert_sign())
        }
        Err(_) => false,
    }
}

/// OpenSSL's words for a verification failure, as nginx puts them in `$ssl_client_verify`
/// (`FAILED:<reason>`).
fn openssl_reason(e: &webpki::Error) -> &'static str {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => UNKNOWN_ISSUER,
        E::CertExpired { .. } => "certificate has expired",
        E::CertNotValidYet { .. } => "certificate is not yet valid",
        E::CertRevoked => "certificate revoked",
        E::UnknownRevocationStatus => "unable to get certificate CRL",
        E::CrlExpired { .. } => "CRL has expired",
        E::MaximumPathDepthExceeded => "certificate chain too long",
        E::InvalidSignatureForPublicKey | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "certificate signature failure"
        }
        E::RequiredEkuNotFoundContext(_) => "unsupported certificate purpose",
        _ => "certificate verify failed",
    }
}

const UNKNOWN_ISSUER: &str = "unable to get local issuer certificate";

/// Asks for a certificate naming `subjects`, accepts whatever comes (the verdict is taken after
/// the handshake, see the module's note) but checks the handshake's signature with it.
#[derive(Debug)]
struct AskAny {
    provider: Arc<CryptoProvider>,
    subjects: Vec<DistinguishedName>,
}

impl ClientCertVerifier for AskAny {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The hosts with client certificates, as the routing table holds them.
#[derive(Debug, Default)]
pub struct Hosts {
    exact: HashMap<String, Arc<HostAuth>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<HostAuth>>,
}

impl Hosts {
    /// The first Ingress to claim a host keeps it.
    pub fn insert(&mut self, host: &str, auth: Arc<HostAuth>) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()).or_insert(auth),
            None => self.exact.entry(host).or_insert(auth),
        };
    }

    /// The settings of an Ingress host named exactly `host` (lower case, without port).
    pub fn exact(&self, host: &str) -> Option<&Arc<HostAuth>> {
        self.exact.get(host)
    }

    /// The settings of a wildcard Ingress host covering `host`.
    pub fn wildcard(&self, host: &str) -> Option<&Arc<HostAuth>> {
        self.wildcard.get(host.split_once('.')?.1)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

/// `$ssl_client_verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// No certificate (or none asked for).
    None,
    Success,
    /// OpenSSL's reason.
    Failed(&'static str),
}

/// What one TLS connection established about its client; shared by its requests.
#[derive(Debug)]
pub struct Connection {
    /// The SNI name (lower case), if the client sent one.
    sni: Option<String>,
    /// The [`HostAuth::id`] of the settings the handshake asked under.
    asked_under: Option<u64>,
    verdict: Verdict,
    /// The client's certificate, as the backend is told of it.
    peer: Option<Peer>,
}

#[derive(Debug)]
struct Peer {
    subject_dn: String,
    issuer_dn: String,
    /// `$ssl_client_escaped_cert`: the PEM, URL-encoded.
    escaped_pem: String,
}

impl Connection {
    /// After the handshake: `asked` is the host whose certificates the handshake asked for.
    pub fn new(
        sni: Option<&str>,
        asked: Option<&HostAuth>,
        certs: Option<&[CertificateDer<'static>]>,
        provider: &CryptoProvider,
    ) -> Self {
        let verdict = match asked {
            Some(auth) => auth.verdict(certs, provider, UnixTime::now()),
            None => Verdict::None,
        };
        let peer = asked
            .and(certs)
            .and_then(<[_]>::first)
            .and_then(|leaf| Peer::read(leaf));
        Self {
            // As hosts are compared: lower case, without a trailing dot.
            sni: sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()),
            asked_under: asked.map(|a| a.id),
            verdict,
            peer,
        }
    }
}

impl Peer {
    fn read(leaf: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let pem = pem_of(leaf);
        Some(Self {
            subject_dn: rfc2253(cert.subject()),
            issuer_dn: rfc2253(cert.issuer()),
            escaped_pem: percent_encoding::utf8_percent_encode(&pem, URI_COMPONENT).to_string(),
        })
    }
}

/// What nginx's `ngx_escape_uri(..., NGX_ESCAPE_URI_COMPONENT)` leaves alone: letters, digits
/// and `-._~`.
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A name as OpenSSL's `X509_NAME_print_ex(.., XN_FLAG_RFC2253)` writes it (nginx's
/// `$ssl_client_s_dn`): the last RDN first, `,` between RDNs and `+` inside one, short
/// attribute names, RFC 2253 escapes, bytes above 0x7f as `\XX`, non-strings as `#` and hex.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    let dotted = oid.to_id_string();
                    let key = short_name(&dotted).map_or(dotted.clone(), str::to_owned);
                    let value = match atv.as_str() {
                        Ok(s) => escape_2253(s),
                        Err(_) => format!("#{}", hex(atv.attr_value().data)),
                    };
                    format!("{key}={value}")
                })
                .collect();
            parts.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// OpenSSL's short names for the attributes certificates carry; any other is written as its
/// dotted OID (OpenSSL knows a few more by name; clients' subjects do not use them).
fn short_name(dotted: &str) -> Option<&'static str> {
    Some(match dotted {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

fn escape_2253(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, &b) in bytes.iter().enumerate() {
        let edge = (i == 0 && (b == b'#' || b == b' ')) || (i + 1 == bytes.len() && b == b' ');
        match b {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(b as char);
            }
            _ if edge => {
                out.push('\\');
                out.push(b as char);
            }
            0..=0x1f | 0x7f..=0xff => out.push_str(&format!("\\{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Why a request to a host with client certificates is not let through.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The Host is not the name the connection's handshake was for (421).
    Misdirected,
    /// nginx's 495/496: no certificate where one is required, or one that failed (400, or a
    /// redirect to `auth-tls-error-page`).
    Certificate {
        error_page: Option<String>,
        no_certificate: bool,
    },
    /// `auth-tls-match-cn` did not match (403).
    Unauthorized,
    /// The CA Secret cannot be used, or a route asks for client certificates its host does
    /// not have (503).
    Unusable(String),
}

/// The fields for the backend, once a request has passed.
#[derive(Debug)]
pub struct Fields {
    verify: HeaderValue,
    subject: Option<HeaderValue>,
    issuer: Option<HeaderValue>,
    cert: Option<HeaderValue>,
}

impl Fields {
    /// Replaces whatever the client sent under these names (nginx's `proxy_set_header`; an
    /// empty value is not sent).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in [
            &SSL_CLIENT_VERIFY,
            &SSL_CLIENT_SUBJECT_DN,
            &SSL_CLIENT_ISSUER_DN,
            &SSL_CLIENT_CERT,
        ] {
            headers.remove(name);
        }
        headers.insert(SSL_CLIENT_VERIFY, self.verify.clone());
        let rest = [
            (SSL_CLIENT_SUBJECT_DN, &self.subject),
            (SSL_CLIENT_ISSUER_DN, &self.issuer),
            (SSL_CLIENT_CERT, &self.cert),
        ];
        for (name, value) in rest {
            if let Some(v) = value {
                headers.insert(name, v.clone());
            }
        }
    }
}

/// The checks for a request to `host` (lower case, without port or trailing dot), whose
/// settings are `auth`. `route_asks`: the route's own Ingress has `auth-tls-secret`. `conn`:
/// the connection's verdict, `None` on plain HTTP (`https` false) or on a TLS connection
/// accepted before any host had client certificates.
pub fn check(
    auth: Option<&HostAuth>,
    host: &str,
    route_asks: bool,
    https: bool,
    conn: Option<&Connection>,
) -> Result<Option<Fields>, Refusal> {
    let Some(auth) = auth else {
        // Every host of an Ingress with auth-tls-secret is in `hosts`; a rule without a host
        // (or one shadowed in a way the table did not foresee) is refused, never served bare.
        return if route_asks {
            Err(Refusal::Unusable(
                "auth-tls-secret: client certificates are asked for per host; this request's host has none".into(),
            ))
        } else {
            Ok(None)
        };
    };
    if let Err(reason) = &auth.trust {
        return Err(Refusal::Unusable(reason.clone()));
    }
    let none = Connection {
        sni: None,
        asked_under: None,
        verdict: Verdict::None,
        peer: None,
    };
    let conn = match conn {
        Some(conn) => {
            // nginx: a Host other than the SNI name, on a host that verifies clients, is 421.
            if conn.sni.as_deref().is_some_and(|sni| sni != host) {
                return Err(Refusal::Misdirected);
            }
            // The handshake asked under other settings (another host's, the table's before a
            // change) or did not ask (no SNI, or one rustls does not take, such as an IP
            // address): as nginx, 421, and a new connection made for this host will be asked.
            if auth.asks() && conn.asked_under != Some(auth.id) {
                return Err(Refusal::Misdirected);
            }
            conn
        }
        // A TLS connection from before client certificates were configured: reconnect.
        None if https => return Err(Refusal::Misdirected),
        None => &none,
    };
    let error_page = || auth.settings.error_page.clone();
    let verdict = if auth.settings.verify == VerifyClient::Off {
        &Verdict::None
    } else {
        &conn.verdict
    };
    match (auth.settings.verify, verdict) {
        (VerifyClient::On, Verdict::None) => {
            return Err(Refusal::Certificate {
                error_page: error_page(),
                no_certificate: true,
            });
        }
        (VerifyClient::OptionalNoCa, Verdict::Failed(UNKNOWN_ISSUER)) => {}
        (VerifyClient::On | VerifyClient::Optional | VerifyClient::OptionalNoCa, Verdict::Failed(_)) => {
            return Err(Refusal::Certificate {
                error_page: error_page(),
                no_certificate: false,
            });
        }
        _ => {}
    }
    let peer = conn.peer.as_ref();
    let subject = peer.map_or("", |p| p.subject_dn.as_str());
    if let Some(re) = &auth.match_cn
        && !re.is_match(subject)
    {
        return Err(Refusal::Unauthorized);
    }
    let value = |s: &str| (!s.is_empty()).then(|| HeaderValue::from_str(s).ok()).flatten();
    let verify = match verdict {
        Verdict::None => HeaderValue::from_static("NONE"),
        Verdict::Success => HeaderValue::from_static("SUCCESS"),
        Verdict::Failed(reason) => HeaderValue::from_str(&format!("FAILED:{reason}")).expect("static words"),
    };
    Ok(Some(Fields {
        verify,
        subject: peer.and_then(|p| value(&p.subject_dn)),
        issuer: peer.and_then(|p| value(&p.issuer_dn)),
        cert: peer
            .filter(|_| auth.settings.pass_certificate)
            .and_then(|p| value(&p.escaped_pem)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        crate::tls::provider()
    }

    struct Ca {
        pem: String,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A CA signed by `parent`.
    fn intermediate(parent: &Ca, name: &str) -> (Ca, CertificateDer<'static>) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &parent.issuer).unwrap();
        let der = cert.der().clone();
        (
            Ca {
                pem: cert.pem(),
                issuer: rcgen::Issuer::new(params, key),
            },
            der,
        )
    }

    fn leaf_with(ca: &Ca, edit: impl FnOnce(&mut rcgen::CertificateParams)) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        params.serial_number = Some(rcgen::SerialNumber::from(7u64));
        edit(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn leaf(ca: &Ca) -> CertificateDer<'static> {
        leaf_with(ca, |_| {})
    }

    fn crl(ca: &Ca, serials: &[u64]) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&ca.issuer).unwrap().pem().unwrap()
    }

    fn settings(verify: VerifyClient) -> ClientAuth {
        ClientAuth {
            secret: ("default".into(), "ca".into()),
            verify,
            verify_depth: 1,
            pass_certificate: false,
            error_page: None,
            match_cn: None,
        }
    }

    fn auth(settings: ClientAuth, ca_pem: &str, crl: Option<&str>) -> HostAuth {
        let match_cn = settings.match_cn.as_deref().map(|re| regex::Regex::new(re).unwrap());
        HostAuth {
            trust: Trust::read(ca_pem.as_bytes(), crl.map(str::as_bytes)),
            settings,
            match_cn,
            id: 1,
            config: OnceLock::new(),
        }
    }

    fn verdict(auth: &HostAuth, chain: &[CertificateDer<'static>]) -> Verdict {
        auth.verdict(Some(chain), &provider(), UnixTime::now())
    }

    #[test]
    fn verdicts_as_openssl_words_them() {
        let root = ca("Root");
        let other = ca("Other");
        let (inter, inter_der) = intermediate(&root, "Intermediate");
        let (inter2, inter2_der) = intermediate(&inter, "Intermediate 2");
        let on = auth(settings(VerifyClient::On), &root.pem, None);
        let fail = |reason| Verdict::Failed(reason);

        assert_eq!(on.verdict(None, &provider(), UnixTime::now()), Verdict::None);
        assert_eq!(verdict(&on, &[leaf(&root)]), Verdict::Success);
        assert_eq!(verdict(&on, &[leaf(&other)]), fail(UNKNOWN_ISSUER));
        let expired = leaf_with(&root, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        assert_eq!(verdict(&on, &[expired]), fail("certificate has expired"));
        let future = leaf_with(&root, |p| {
            p.not_before = rcgen::date_time_ymd(2090, 1, 1);
            p.not_after = rcgen::date_time_ymd(2091, 1, 1);
        });
        assert_eq!(verdict(&on, &[future]), fail("certificate is not yet valid"));
        let server_only = leaf_with(&root, |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        });
        assert_eq!(verdict(&on, &[server_only]), fail("unsupported certificate purpose"));

        // Depth counts intermediates, as ssl_verify_depth does: the default 1 allows one.
        assert_eq!(verdict(&on, &[leaf(&inter), inter_der.clone()]), Verdict::Success);
        let chain2 = [leaf(&inter2), inter2_der, inter_der.clone()];
        assert_eq!(verdict(&on, &chain2), fail("certificate chain too long"));
        let deeper = auth(
            ClientAuth {
                verify_depth: 2,
                ..settings(VerifyClient::On)
            },
            &root.pem,
            None,
        );
        assert_eq!(verdict(&deeper, &chain2), Verdict::Success);
        let flat = auth(
            ClientAuth {
                verify_depth: 0,
                ..settings(VerifyClient::On)
            },
            &root.pem,
            None,
        );
        assert_eq!(
            verdict(&flat, &[leaf(&inter), inter_der.clone()]),
            fail("certificate chain too long")
        );
        // An intermediate the client does not send is not found.
        assert_eq!(verdict(&on, &[leaf(&inter)]), fail(UNKNOWN_ISSUER));

        // With ca.crl: revoked serials fail, others pass; a CA of the chain without a list
        // fails as nginx's ssl_crl does (X509_V_FLAG_CRL_CHECK_ALL).
        let with_crl = auth(settings(VerifyClient::On), &root.pem, Some(&crl(&root, &[7])));
        assert_eq!(verdict(&with_crl, &[leaf(&root)]), fail("certificate revoked"));
        let other_serial = leaf_with(&root, |p| p.serial_number = Some(rcgen::SerialNumber::from(8u64)));
        assert_eq!(verdict(&with_crl, &[other_serial]), Verdict::Success);
        let inter_leaf = leaf_with(&inter, |p| p.serial_number = Some(rcgen::SerialNumber::from(9u64)));
        assert_eq!(
            verdict(&with_crl, &[inter_leaf.clone(), inter_der.clone()]),
            fail("unable to get certificate CRL")
        );
        let both = format!("{}{}", crl(&root, &[]), crl(&inter, &[]));
        let with_both = auth(settings(VerifyClient::On), &root.pem, Some(&both));
        assert_eq!(verdict(&with_both, &[inter_leaf, inter_der]), Verdict::Success);

        // A CA of ca.crt out of its dates issues nothing valid (OpenSSL checks an anchor's
        // dates; webpki alone does not).
        let old_root = {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, "Old root");
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            let key = rcgen::KeyPair::generate().unwrap();
            let pem = params.self_signed(&key).unwrap().pem();
            Ca {
                pem,
                issuer: rcgen::Issuer::new(params, key),
            }
        };
        let with_old = auth(settings(VerifyClient::On), &old_root.pem, None);
        assert_eq!(verdict(&with_old, &[leaf(&old_root)]), fail("certificate has expired"));
        let both = format!("{}{}", old_root.pem, root.pem);
        let with_old_and_new = auth(settings(VerifyClient::On), &both, None);
        assert_eq!(verdict(&with_old_and_new, &[leaf(&root)]), Verdict::Success);
        assert_eq!(verdict(&with_old_and_new, &[leaf(&other)]), fail(UNKNOWN_ISSUER));

        // A Secret that could not be read never verifies anything.
        let broken = auth(settings(VerifyClient::On), "not pem", None);
        assert_eq!(verdict(&broken, &[leaf(&root)]), fail("certificate verify failed"));
    }

    #[test]
    fn unusable_ca_material_is_refused_with_its_field() {
        let root = ca("Root");
        let key_only = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let non_ca = {
            let mut params = rcgen::CertificateParams::new(vec!["x.test".to_owned()]).unwrap();
            params.is_ca = rcgen::IsCa::ExplicitNoCa;
            params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()
        };
        let truncated = &root.pem[..root.pem.len() / 2];
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("", None, "ca.crt"),
            ("garbage", None, "ca.crt"),
            (&key_only, None, "ca.crt"),
            (truncated, None, "ca.crt"),
            (&root.pem, Some(""), "ca.crl"),
            (&root.pem, Some("garbage"), "ca.crl"),
            (&root.pem, Some(&root.pem), "ca.crl"),
            (
                &root.pem,
                Some("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"),
                "ca.crl",
            ),
        ];
        for (ca_pem, crl, field) in cases {
            match Trust::read(ca_pem.as_bytes(), crl.map(str::as_bytes)) {
                Ok(_) => panic!("accepted ca {ca_pem:?} crl {crl:?}"),
                Err(e) => assert!(e.contains(field), "{e} should name {field}"),
            }
        }
        // A certificate that is not a CA is refused as an issuer (OpenSSL's INVALID_CA),
        // alone or beside a real CA.
        for ca_pem in [non_ca.clone(), format!("{}{non_ca}", root.pem)] {
            let e = Trust::read(ca_pem.as_bytes(), None).unwrap_err();
            assert!(e.contains("is not a CA certificate") && e.contains("ca.crt"), "{e}");
        }
        assert_eq!(Trust::read(root.pem.as_bytes(), None).unwrap().subjects.len(), 1);
    }

    fn conn(sni: Option<&str>, asked_under: Option<u64>, verdict: Verdict, cn: Option<&str>) -> Connection {
        Connection {
            sni: sni.map(str::to_owned),
            asked_under,
            verdict,
            peer: cn.map(|cn| Peer {
                subject_dn: format!("CN={cn},O=Example"),
                issuer_dn: "CN=Root".into(),
                escaped_pem: "-----BEGIN%20CERTIFICATE-----".into(),
            }),
        }
    }

    fn outcome(result: Result<Option<Fields>, Refusal>) -> Result<String, Refusal> {
        result.map(|fields| {
            let mut headers = HeaderMap::new();
            headers.insert(SSL_CLIENT_SUBJECT_DN, HeaderValue::from_static("CN=forged"));
            headers.insert(SSL_CLIENT_CERT, HeaderValue::from_static("forged"));
            if let Some(f) = fields {
                f.apply(&mut headers);
            }
            let mut seen: Vec<String> = headers
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
                .collect();
            seen.sort();
            seen.join(" ")
        })
    }

    #[test]
    fn check_decides_as_nginx_does() {
        let root = ca("Root");
        let with = |verify, edit: fn(&mut ClientAuth)| {
            let mut s = settings(verify);
            edit(&mut s);
            auth(s, &root.pem, None)
        };
        let on = with(VerifyClient::On, |_| {});
        let optional = with(VerifyClient::Optional, |_| {});
        let no_ca = with(VerifyClient::OptionalNoCa, |_| {});
        let off = with(VerifyClient::Off, |_| {});
        let paged = with(VerifyClient::On, |s| s.error_page = Some("https://x.test/err".into()));
        let cn = with(VerifyClient::On, |s| s.match_cn = Some("CN=alice".into()));
        let pass = with(VerifyClient::On, |s| s.pass_certificate = true);
        let broken = auth(settings(VerifyClient::On), "garbage", None);

        let good = conn(Some("a.test"), Some(1), Verdict::Success, Some("alice"));
        let bob = conn(Some("a.test"), Some(1), Verdict::Success, Some("bob"));
        let none = conn(Some("a.test"), Some(1), Verdict::None, None);
        let unknown = conn(Some("a.test"), Some(1), Verdict::Failed(UNKNOWN_ISSUER), Some("alice"));
        let expired = conn(
            Some("a.test"),
            Some(1),
            Verdict::Failed("certificate has expired"),
            Some("alice"),
        );
        let other_sni = conn(Some("b.test"), Some(1), Verdict::Success, Some("alice"));
        let no_sni = conn(None, None, Verdict::None, None);
        let ip_sni = conn(None, Some(7), Verdict::Success, Some("alice"));
        let ip_sni_same = conn(None, Some(1), Verdict::Success, Some("alice"));
        let stale = conn(Some("a.test"), Some(2), Verdict::Success, Some("alice"));
        let cert = |no_certificate, error_page: Option<&str>| {
            Err(Refusal::Certificate {
                error_page: error_page.map(str::to_owned),
                no_certificate,
            })
        };
        let passed = |verify: &str, subject: bool| {
            Ok(if subject {
                format!(
                    "ssl-client-issuer-dn=CN=Root ssl-client-subject-dn=CN=alice,O=Example ssl-client-verify={verify}"
                )
            } else {
                format!("ssl-client-verify={verify}")
            })
        };

        // (case, host's settings, route asks, HTTPS, connection, outcome)
        type Row<'a> = (
            &'a str,
            Option<&'a HostAuth>,
            bool,
            bool,
            Option<&'a Connection>,
            Result<String, Refusal>,
        );
        let table: Vec<Row<'_>> = vec![
            (
                "no settings, no ask",
                None,
                false,
                true,
                Some(&good),
                Ok("ssl-client-cert=forged ssl-client-subject-dn=CN=forged".into()),
            ),
            (
                "route asks, host has none",
                None,
                true,
                true,
                Some(&good),
                Err(Refusal::Unusable(
                    "auth-tls-secret: client certificates are asked for per host; this request's host has none".into(),
                )),
            ),
            (
                "on, verified",
                Some(&on),
                true,
                true,
                Some(&good),
                passed("SUCCESS", true),
            ),
            ("on, none sent", Some(&on), true, true, Some(&none), cert(true, None)),
            (
                "on, unknown CA",
                Some(&on),
                true,
                true,
                Some(&unknown),
                cert(false, None),
            ),
            ("on, expired", Some(&on), true, true, Some(&expired), cert(false, None)),
            ("on, plain HTTP", Some(&on), true, false, None, cert(true, None)),
            (
                "on, error page",
                Some(&paged),
                true,
                true,
                Some(&none),
                cert(true, Some("https://x.test/err")),
            ),
            (
                "optional, none",
                Some(&optional),
                true,
                true,
                Some(&none),
                passed("NONE", false),
            ),
            (
                "optional, verified",
                Some(&optional),
                true,
                true,
                Some(&good),
                passed("SUCCESS", true),
            ),
            (
                "optional, unknown CA",
                Some(&optional),
                true,
                true,
                Some(&unknown),
                cert(false, None),
            ),
            (
                "optional_no_ca, unknown CA",
                Some(&no_ca),
                true,
                true,
                Some(&unknown),
                passed("FAILED:unable to get local issuer certificate", true),
            ),
            (
                "optional_no_ca, expired",
                Some(&no_ca),
                true,
                true,
                Some(&expired),
                cert(false, None),
            ),
            (
                "off ignores the verdict",
                Some(&off),
                true,
                true,
                Some(&unknown),
                passed("NONE", true),
            ),
            (
                "Host is not the SNI name",
                Some(&on),
                true,
                true,
                Some(&other_sni),
                Err(Refusal::Misdirected),
            ),
            (
                "asked under older settings",
                Some(&on),
                true,
                true,
                Some(&stale),
                Err(Refusal::Misdirected),
            ),
            (
                "TLS connection from before",
                Some(&on),
                true,
                true,
                None,
                Err(Refusal::Misdirected),
            ),
            (
                "no SNI, nothing asked",
                Some(&on),
                true,
                true,
                Some(&no_sni),
                Err(Refusal::Misdirected),
            ),
            (
                "no SNI (an IP address), asked under another host's settings",
                Some(&on),
                true,
                true,
                Some(&ip_sni),
                Err(Refusal::Misdirected),
            ),
            (
                "no SNI, asked under this host's settings",
                Some(&on),
                true,
                true,
                Some(&ip_sni_same),
                passed("SUCCESS", true),
            ),
            (
                "match-cn matches",
                Some(&cn),
                true,
                true,
                Some(&good),
                passed("SUCCESS", true),
            ),
            (
                "match-cn does not",
                Some(&cn),
                true,
                true,
                Some(&bob),
                Err(Refusal::Unauthorized),
            ),
            (
                "unusable Secret",
                Some(&broken),
                true,
                true,
                Some(&good),
                Err(Refusal::Unusable(broken.trust.as_ref().unwrap_err().clone())),
            ),
        ];
        for (name, auth, route_asks, https, conn, want) in table {
            let got = outcome(check(auth, "a.test", route_asks, https, conn));
            assert_eq!(got, want, "{name}");
        }
        let got = outcome(check(Some(&pass), "a.test", true, true, Some(&good))).unwrap();
        assert!(got.contains("ssl-client-cert=-----BEGIN%20CERTIFICATE-----"), "{got}");
    }

    #[test]
    fn names_are_written_as_openssl_rfc2253_does() {
        let cases = [
            ("plain", "plain"),
            ("a,b+c\"d\\e<f>g;h", "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"),
            ("#lead", "\\#lead"),
            (" both ", "\\ both\\ "),
            ("mid#dle", "mid#dle"),
            ("tab\there", "tab\\09here"),
            ("del\u{7f}", "del\\7F"),
            ("café", "caf\\C3\\A9"),
            ("CN=x,O=y", "CN=x\\,O=y"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(escape_2253(raw), want, "{raw:?}");
        }

        let root = ca("Root");
        let der = leaf_with(&root, |p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(rcgen::DnType::CountryName, "DE");
            p.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme, Inc.");
            p.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, "Ops");
            p.distinguished_name.push(rcgen::DnType::CommonName, "alice");
            p.distinguished_name.push(
                rcgen::DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                rcgen::DnValue::Ia5String("a@x.test".try_into().unwrap()),
            );
            p.distinguished_name
                .push(rcgen::DnType::CustomDnType(vec![1, 2, 3, 4]), "odd");
        });
        let peer = Peer::read(&der).unwrap();
        assert_eq!(
            peer.subject_dn,
            "1.2.3.4=odd,emailAddress=a@x.test,CN=alice,OU=Ops,O=Acme\\, Inc.,C=DE"
        );
        assert_eq!(peer.issuer_dn, "CN=Root");
        assert!(
            peer.escaped_pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
            "{}",
            peer.escaped_pem
        );
        assert!(
            !peer.escaped_pem.contains(['\n', ' ', '+', '/', '=']),
            "{}",
            peer.escaped_pem
        );
    }

    #[test]
    fn hosts_match_exact_before_wildcard_and_first_claim_wins() {
        let root = ca("Root");
        let mk = |id| {
            let mut a = auth(settings(VerifyClient::On), &root.pem, None);
            a.id = id;
            Arc::new(a)
        };
        let mut hosts = Hosts::default();
        assert!(hosts.exact("a.test").is_none() && hosts.wildcard("a.test").is_none());
        hosts.insert("*.Example.test", mk(1));
        hosts.insert("a.example.test", mk(2));
        hosts.insert("A.example.test", mk(3));
        let id = |h: &str| hosts.exact(h).or_else(|| hosts.wildcard(h)).map(|a| a.id);
        assert_eq!(id("a.example.test"), Some(2));
        assert_eq!(id("b.example.test"), Some(1));
        assert_eq!(id("example.test"), None);
        assert_eq!(id("x.b.example.test"), None);
        assert_eq!(id("other.test"), None);
    }
}
