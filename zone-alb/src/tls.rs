//! TLS termination: certificates from the Secrets that Ingress `spec.tls` sections name,
//! chosen per connection by SNI; a generated default certificate for unknown names (as
//! ingress-nginx's fake certificate); HTTP/2 and HTTP/1.1 offered by ALPN. The certificates
//! live in the routing table, so a reload swaps them with the routes.
//!
//! Handshakes are the expensive part of HTTPS, so what can be prepared once is: a Secret's
//! chain and signing key are parsed once per content ([`certified_key`] keeps them while any
//! table uses them), and an ALB has one [`Edge`]: one server configuration, one session cache
//! and one ticket key set shared by all its workers, so a client resumes wherever it lands.
//! The crypto provider is aws-lc-rs (faster RSA signing and ECDHE than ring's).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};

pub use crate::annotations::tls::TlsVersion;
use crate::router::RouteTable;

/// Certificates by host name, as the Ingresses' `spec.tls[].hosts` list them.
#[derive(Debug, Default)]
pub struct TlsCerts {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl TlsCerts {
    pub fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        // The first Ingress to claim a host keeps it.
        match host.strip_prefix("*.") {
            Some(parent) => {
                self.wildcard.entry(parent.to_owned()).or_insert(key);
            }
            None => {
                self.exact.entry(host).or_insert(key);
            }
        }
    }

    pub fn get(&self, host: &str) -> Option<&Arc<CertifiedKey>> {
        let host = host.to_ascii_lowercase();
        self.exact
            .get(&host)
            .or_else(|| self.wildcard.get(host.split_once('.')?.1))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

/// The certificate and key of a `kubernetes.io/tls` Secret, with its `tls.ocsp` (a DER OCSP
/// response) stapled when present. Parsed once per content: every table compiled while the
/// Secret is unchanged shares the same key, and a changed Secret is parsed once.
pub fn certified_key(secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
    if let Some(t) = secret.type_.as_deref()
        && t != "kubernetes.io/tls"
    {
        return Err(format!("type is {t}, not kubernetes.io/tls"));
    }
    let field = |name: &str| -> Option<Vec<u8>> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(name)) {
            return Some(v.0.clone());
        }
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|v| v.as_bytes().to_vec())
    };
    let missing = |name: &str| format!("data.{name} is missing");
    let crt = field("tls.crt").ok_or_else(|| missing("tls.crt"))?;
    let key = field("tls.key").ok_or_else(|| missing("tls.key"))?;
    let ocsp = field("tls.ocsp").filter(|o| !o.is_empty());
    // Keyed by the content itself, not a digest of it: two Secrets can never share a key by
    // a collision, and the few KiB per certificate are nothing beside the parsed key.
    let mut content = Vec::with_capacity(crt.len() + key.len() + ocsp.as_ref().map_or(0, Vec::len) + 24);
    for part in [&crt[..], &key[..], ocsp.as_deref().unwrap_or_default()] {
        content.extend_from_slice(&(part.len() as u64).to_le_bytes());
        content.extend_from_slice(part);
    }
    static PARSED: LazyLock<Mutex<HashMap<Vec<u8>, Weak<CertifiedKey>>>> = LazyLock::new(Default::default);
    if let Some(key) = PARSED
        .lock()
        .expect("never poisoned")
        .get(&content)
        .and_then(Weak::upgrade)
    {
        return Ok(key);
    }
    let parsed = Arc::new(parse_key(&crt, &key, ocsp)?);
    let mut parsed_map = PARSED.lock().expect("never poisoned");
    // Keys no table uses any more go when a new one comes: the map stays as large as the
    // set of Secrets in use.
    parsed_map.retain(|_, k| k.strong_count() > 0);
    parsed_map.insert(content, Arc::downgrade(&parsed));
    Ok(parsed)
}

fn parse_key(crt: &[u8], key: &[u8], ocsp: Option<Vec<u8>>) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("data.tls.crt is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("data.tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("data.tls.key is not a PEM private key: {e}"))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("data.tls.key: {e}"))?;
    let mut key = CertifiedKey::new(certs, signing);
    key.keys_match()
        .map_err(|e| format!("data.tls.key does not belong to data.tls.crt: {e}"))?;
    key.ocsp = ocsp;
    Ok(key)
}

/// The crypto provider of every TLS configuration mzlb builds.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    PROVIDER.clone()
}

/// A self-signed certificate for names no Ingress has a certificate for.
pub fn default_certificate() -> Arc<CertifiedKey> {
    self_signed("mzlb-default-certificate")
}

/// A self-signed certificate for `name` (which must be a valid DNS name).
pub fn self_signed(name: &str) -> Arc<CertifiedKey> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("a valid DNS name");
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key_pair = rcgen::KeyPair::generate().expect("generating a key pair");
    let cert = params.self_signed(&key_pair).expect("self-signing a certificate");
    let key = PrivateKeyDer::try_from(key_pair.serialize_der()).expect("rcgen produces a PKCS#8 key");
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .expect("rcgen keys are supported");
    Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// Chooses the certificate for each TLS connection from the current routing table.
#[derive(Debug)]
pub struct SniResolver {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub default: Arc<CertifiedKey>,
    /// The Gateway listener port this listener serves: a Gateway HTTPS listener on it shows
    /// its own certificate.
    pub port: u16,
    /// Ingresses are served here too: their certificates come first for their own names.
    pub ingress: bool,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let name = hello.server_name().map(str::to_ascii_lowercase);
        // A pass-through name reaches the TLS stack only when its ClientHello could not be read
        // for splicing: the handshake fails rather than showing the ALB's certificate.
        if let Some(name) = &name
            && table.passthrough.contains_key(name)
        {
            return None;
        }
        // Where Ingresses are served, an Ingress's certificate for the name comes first (as its
        // rules win for their hosts); then the Gateway listener on this port with the most
        // specific matching hostname. A Gateway-only port never shows an Ingress's certificate.
        let name = name.map(|n| n.trim_end_matches('.').to_owned());
        if self.ingress
            && let Some(chosen) = name.as_ref().and_then(|n| table.tls.get(n))
        {
            return Some(chosen.clone());
        }
        let gateway = table.gateway.port(self.port).and_then(|port| {
            let listener = port.listener(name.as_deref().unwrap_or(""))?;
            listener.certificate.clone()
        });
        Some(gateway.unwrap_or_else(|| self.default.clone()))
    }
}

/// A server that always shows `key`, speaking HTTP/1.1 (the demo backend's HTTPS mode).
pub fn single_certificate_config(key: Arc<CertifiedKey>) -> Arc<ServerConfig> {
    #[derive(Debug)]
    struct Always(Arc<CertifiedKey>);
    impl ResolvesServerCert for Always {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let options = ServerOptions {
        resolver: Arc::new(Always(key)),
        alpn: vec![b"http/1.1".to_vec()],
        policy: Policy::default(),
        resumption: Resumption::new(),
        client_verifier: None,
    };
    Arc::new(server_config(&options).expect("the default policy is always usable"))
}

/// Which protocol versions and TLS 1.2 cipher suites an ALB offers: the cluster's
/// `ssl-protocols` and `ssl-ciphers`. TLS 1.3's suites are not chosen by `ssl-ciphers` (as in
/// nginx, whose `ssl_ciphers` does not touch them either): all three are offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Never empty.
    pub versions: Vec<TlsVersion>,
    /// TLS 1.2 suites in the server's order of preference; never empty.
    pub tls12_suites: Vec<CipherSuite>,
}

impl Default for Policy {
    /// ingress-nginx's defaults: TLS 1.2 and 1.3; its default ECDHE suites.
    fn default() -> Self {
        Self {
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            tls12_suites: TLS12_SUITES.iter().map(|(_, s)| *s).collect(),
        }
    }
}

/// OpenSSL's names (the ones `ssl-ciphers` is written in) of the TLS 1.2 suites mzlb offers,
/// in ingress-nginx's default order.
pub const TLS12_SUITES: [(&str, CipherSuite); 6] = [
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Session resumption state that every configuration built for one ALB shares: TLS 1.2
/// session IDs in one cache, TLS 1.3 (and 1.2) tickets sealed with one rotating key set. A
/// client resumes whichever worker (or configuration, once client certificates or a policy
/// change make another) it lands on.
#[derive(Clone)]
pub struct Resumption {
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

/// TLS 1.2 sessions kept for session-ID resumption (a few hundred bytes each): about what
/// nginx's `ssl_session_cache shared:SSL:10m`, ingress-nginx's default, holds.
const SESSION_CACHE_ENTRIES: usize = 40_000;

/// TLS 1.3 tickets sent after each handshake: OpenSSL's (and so nginx's) number. A browser
/// uses one per connection; the second lets a client open two resumed connections at once.
const TLS13_TICKETS: usize = 2;

impl Resumption {
    pub fn new() -> Self {
        Self {
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
            // rustls's rotator: a new key every 6 hours, the previous one still accepted, so a
            // ticket is good for between 6 and 12 hours and no key lives longer than that.
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new().expect("the system RNG works"),
        }
    }
}

impl Default for Resumption {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption").finish_non_exhaustive()
    }
}

/// Everything a server configuration is built from.
pub struct ServerOptions {
    pub resolver: Arc<dyn ResolvesServerCert>,
    /// ALPN protocols in order of preference.
    pub alpn: Vec<Vec<u8>>,
    pub policy: Policy,
    pub resumption: Resumption,
    /// Asks for (and checks) client certificates; `None`: never asked for.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// The one place a TLS server configuration is made.
pub fn server_config(options: &ServerOptions) -> Result<ServerConfig, rustls::Error> {
    let base = provider();
    let tls12: Vec<_> = options
        .policy
        .tls12_suites
        .iter()
        .filter_map(|want| base.cipher_suites.iter().find(|s| s.suite() == *want).copied())
        .collect();
    let cipher_suites = base
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .copied()
        .chain(tls12)
        .collect();
    let provider = Arc::new(CryptoProvider {
        cipher_suites,
        ..(*base).clone()
    });
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = options
        .policy
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions)?;
    let builder = match &options.client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(options.resolver.clone());
    config.alpn_protocols = options.alpn.clone();
    config.session_storage = options.resumption.sessions.clone();
    config.ticketer = options.resumption.ticketer.clone();
    config.send_tls13_tickets = TLS13_TICKETS;
    // The server's suite order, as ingress-nginx's `ssl-prefer-server-ciphers: on`.
    config.ignore_client_order = true;
    Ok(config)
}

/// HTTP/2, then HTTP/1.1, by ALPN.
const EDGE_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// An ALB's TLS listener state, shared by all its workers: one configuration for the current
/// policy, rebuilt (keeping the session cache and ticket keys) only when a reload changes the
/// cluster's `ssl-protocols` or `ssl-ciphers`.
pub struct Edge {
    table: Arc<ArcSwap<RouteTable>>,
    resolver: Arc<SniResolver>,
    resumption: Resumption,
    current: ArcSwap<(Policy, Arc<ServerConfig>)>,
}

impl Edge {
    /// The TLS state of the listener on `port`.
    pub fn new(table: Arc<ArcSwap<RouteTable>>, port: u16, ingress: bool) -> Self {
        let resolver = Arc::new(SniResolver {
            table: table.clone(),
            default: default_certificate(),
            port,
            ingress,
        });
        let resumption = Resumption::new();
        let policy = table.load().tls_policy.clone();
        let config = Self::build(&resolver, &resumption, &policy)
            .or_else(|error| {
                tracing::error!(%error, ?policy, "TLS policy unusable; ingress-nginx's default applies");
                Self::build(&resolver, &resumption, &Policy::default())
            })
            .expect("the default policy is always usable");
        Self {
            table,
            resolver,
            resumption,
            current: ArcSwap::from_pointee((policy, config)),
        }
    }

    fn build(
        resolver: &Arc<SniResolver>,
        resumption: &Resumption,
        policy: &Policy,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let options = ServerOptions {
            resolver: resolver.clone(),
            alpn: EDGE_ALPN.iter().map(|p| p.to_vec()).collect(),
            policy: policy.clone(),
            resumption: resumption.clone(),
            client_verifier: None,
        };
        server_config(&options).map(Arc::new)
    }

    /// A configuration like the current one that asks for client certificates: the same
    /// certificates, ALPN, policy, session cache and ticket keys (so resumption spans both).
    pub fn with_client_verifier(&self, verifier: Arc<dyn ClientCertVerifier>) -> Result<ServerConfig, rustls::Error> {
        server_config(&ServerOptions {
            resolver: self.resolver.clone(),
            alpn: EDGE_ALPN.iter().map(|p| p.to_vec()).collect(),
            policy: self.table.load().tls_policy.clone(),
            resumption: self.resumption.clone(),
            client_verifier: Some(verifier),
        })
    }

    /// The configuration for a new connection: the current table's policy.
    pub fn config(&self) -> Arc<ServerConfig> {
        let table = self.table.load();
        let current = self.current.load();
        if current.0 == table.tls_policy {
            return current.1.clone();
        }
        let policy = table.tls_policy.clone();
        match Self::build(&self.resolver, &self.resumption, &policy) {
            Ok(config) => {
                // Two workers may both build it once; either result is the same.
                self.current.store(Arc::new((policy, config.clone())));
                config
            }
            Err(error) => {
                // Parsing the settings refuses what cannot be built, so this is not expected;
                // remembered with the old configuration, so it is not retried per connection.
                tracing::error!(%error, ?policy, "TLS policy unusable; the previous one stays");
                let config = current.1.clone();
                self.current.store(Arc::new((policy, config.clone())));
                config
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(cert: &rcgen::Certificate, key: &rcgen::KeyPair, ocsp: Option<&[u8]>) -> Secret {
        let mut data = BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(cert.pem().into_bytes())),
            ("tls.key".to_owned(), ByteString(key.serialize_pem().into_bytes())),
        ]);
        if let Some(ocsp) = ocsp {
            data.insert("tls.ocsp".to_owned(), ByteString(ocsp.to_vec()));
        }
        Secret {
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Secret::default()
        }
    }

    fn issue(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert, key)
    }

    #[test]
    fn a_secret_is_parsed_once_per_content() {
        let (cert, key) = issue("a.test");
        let first = certified_key(&secret(&cert, &key, None)).unwrap();
        let again = certified_key(&secret(&cert, &key, None)).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same content, same parsed key");
        let stapled = certified_key(&secret(&cert, &key, Some(b"\x30\x03\x0a\x01\x00"))).unwrap();
        assert!(!Arc::ptr_eq(&first, &stapled), "another tls.ocsp is other content");
        assert_eq!(stapled.ocsp.as_deref(), Some(&b"\x30\x03\x0a\x01\x00"[..]));
        let (cert2, key2) = issue("a.test");
        let renewed = certified_key(&secret(&cert2, &key2, None)).unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed), "a renewed certificate is parsed anew");
        // Once no table holds it, the parsed key goes (and is parsed again if it comes back).
        let weak = Arc::downgrade(&first);
        drop((first, again));
        assert!(weak.upgrade().is_none());
        let (_, other) = issue("b.test");
        let err = certified_key(&secret(&cert, &other, None)).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
    }

    #[test]
    fn configs_of_one_alb_share_resumption_and_follow_the_policy() {
        let resolver: Arc<dyn ResolvesServerCert> = Arc::new(SniResolver {
            table: Default::default(),
            default: default_certificate(),
            port: 443,
            ingress: true,
        });
        let resumption = Resumption::new();
        let options = |policy: Policy| ServerOptions {
            resolver: resolver.clone(),
            alpn: vec![b"h2".to_vec()],
            policy,
            resumption: resumption.clone(),
            client_verifier: None,
        };
        let a = server_config(&options(Policy::default())).unwrap();
        let only13 = Policy {
            versions: vec![TlsVersion::Tls13],
            ..Policy::default()
        };
        let b = server_config(&options(only13)).unwrap();
        assert!(Arc::ptr_eq(&a.ticketer, &b.ticketer) && Arc::ptr_eq(&a.session_storage, &b.session_storage));
        assert!(a.ticketer.enabled() && a.ignore_client_order && a.send_tls13_tickets == TLS13_TICKETS);
        let suites = |c: &ServerConfig| {
            c.crypto_provider()
                .cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        let rsa_only = Policy {
            tls12_suites: vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384],
            ..Policy::default()
        };
        let c = server_config(&options(rsa_only)).unwrap();
        assert_eq!(
            suites(&c),
            [
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            ]
        );
    }
}
