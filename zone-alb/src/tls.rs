//! TLS termination: certificates from the Secrets that Ingress `spec.tls` sections name,
//! chosen per connection by SNI; a generated default certificate for unknown names (as
//! ingress-nginx's fake certificate); HTTP/2 and HTTP/1.1 offered by ALPN. The certificates
//! live in the routing table, so a reload swaps them with the routes.
//!
//! Handshakes are the expensive part of HTTPS, so what can be prepared once is: a Secret's
//! chain and signing key are parsed once per content ([`certified_key`] keeps them while any
//! table uses them), and an ALB has one [`Edge`]: one server configuration, one session cache
//! and one ticket key set shared by all its workers, so a client resumes wherever it lands;
//! with `--session-ticket-secret`, the ticket keys come from a Secret every replica of the zone
//! reads ([`TicketKeys`]), so a client resumes on whichever replica it reaches.
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

/// The Secret data field holding shared session-ticket keys.
pub const TICKET_KEYS_FIELD: &str = "tls.ticket-keys";

/// The Secret type made for session-ticket keys (`Opaque` is accepted too).
pub const TICKET_KEYS_TYPE: &str = "mzlb.io/session-ticket-keys";

/// How long a ticket sealed with shared keys is accepted (and what clients are told): 12
/// hours, as rustls's own rotating keys at most and about nginx's `ssl_session_timeout` scale.
/// Enforced from the issue time sealed inside the ticket, so it holds however long a key stays
/// in the Secret.
pub const TICKET_LIFETIME_SECS: u32 = 12 * 60 * 60;

/// The length of one key in `tls.ticket-keys` (nginx's 80-byte `ssl_session_ticket_key`
/// file); a field of exactly [`TICKET_KEY_LEN_SHORT`] bytes is one 48-byte nginx key.
pub const TICKET_KEY_LEN: usize = 80;
pub const TICKET_KEY_LEN_SHORT: usize = 48;

/// Key name (the first 16 bytes of a key, as nginx's), random nonce, AEAD tag.
const TICKET_NAME_LEN: usize = 16;
const TICKET_NONCE_LEN: usize = aws_lc_rs::aead::NONCE_LEN;
const TICKET_TAG_LEN: usize = 16;
/// The issue time (Unix seconds, big-endian) sealed in front of rustls's session state.
const TICKET_TIME_LEN: usize = 8;
/// Longer tickets are refused unopened (rustls's own are a few hundred bytes, a few KiB with
/// a client certificate chain; the TLS encoding caps them at 64 KiB).
const TICKET_MAX_LEN: usize = 1 << 16;
/// Replicas' clocks may differ: a ticket issued this far in the "future" is still accepted.
const TICKET_CLOCK_SKEW_SECS: u64 = 300;

/// Session-ticket keys shared by every replica of a zone: the first seals new tickets, all
/// open them. Tickets are `name (16) | nonce (12) | AES-256-GCM(issue time (8) | state) | tag
/// (16)`, the name authenticated as associated data; each key's AES key is SHA-256 of a
/// domain label and the whole key, so nginx's key files can be used as they are (their
/// format, not their tickets: nginx's tickets are not mzlb's).
pub struct TicketKeys {
    keys: Vec<TicketKey>,
}

struct TicketKey {
    name: [u8; TICKET_NAME_LEN],
    aead: aws_lc_rs::aead::RandomizedNonceKey,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("TicketKeys").field("keys", &self.keys.len()).finish()
    }
}

impl TicketKeys {
    /// Concatenated 80-byte keys, newest first, or exactly one 48-byte key.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let size = if bytes.len() == TICKET_KEY_LEN_SHORT {
            TICKET_KEY_LEN_SHORT
        } else if !bytes.is_empty() && bytes.len().is_multiple_of(TICKET_KEY_LEN) {
            TICKET_KEY_LEN
        } else {
            return Err(format!(
                "{} bytes: expected one or more {TICKET_KEY_LEN}-byte keys (or one {TICKET_KEY_LEN_SHORT}-byte key), \
                 e.g. `openssl rand 80`",
                bytes.len()
            ));
        };
        let keys = bytes
            .chunks_exact(size)
            .map(|key| {
                let mut name = [0; TICKET_NAME_LEN];
                name.copy_from_slice(&key[..TICKET_NAME_LEN]);
                let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                ctx.update(b"mzlb session ticket key v1\0");
                ctx.update(key);
                let aead =
                    aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, ctx.finish().as_ref())
                        .map_err(|_| "AES-256-GCM key setup failed".to_owned())?;
                Ok(TicketKey { name, aead })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { keys })
    }

    /// The keys of a Secret of type `Opaque` or [`TICKET_KEYS_TYPE`], in [`TICKET_KEYS_FIELD`].
    pub fn from_secret(secret: &Secret) -> Result<Self, String> {
        if let Some(t) = secret.type_.as_deref()
            && t != "Opaque"
            && t != TICKET_KEYS_TYPE
        {
            return Err(format!("type is {t}, not Opaque or {TICKET_KEYS_TYPE}"));
        }
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(TICKET_KEYS_FIELD))
            .map(|v| &v.0[..]);
        let string = || {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(TICKET_KEYS_FIELD))
                .map(String::as_bytes)
        };
        let bytes = data
            .or_else(string)
            .ok_or_else(|| format!("data.{TICKET_KEYS_FIELD} is missing"))?;
        Self::parse(bytes).map_err(|e| format!("data.{TICKET_KEYS_FIELD}: {e}"))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn seal(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut sealed = Vec::with_capacity(TICKET_TIME_LEN + plain.len() + TICKET_TAG_LEN);
        sealed.extend_from_slice(&now.to_be_bytes());
        sealed.extend_from_slice(plain);
        let nonce = key
            .aead
            .seal_in_place_append_tag(aws_lc_rs::aead::Aad::from(&key.name), &mut sealed)
            .ok()?;
        let mut ticket = Vec::with_capacity(TICKET_NAME_LEN + TICKET_NONCE_LEN + sealed.len());
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(nonce.as_ref());
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    /// The session state in `ticket`, if one of the keys sealed it less than
    /// [`TICKET_LIFETIME_SECS`] before `now`. Anything else (any bytes a client may send) is
    /// `None`.
    fn open(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < TICKET_NAME_LEN + TICKET_NONCE_LEN + TICKET_TIME_LEN + TICKET_TAG_LEN
            || ticket.len() > TICKET_MAX_LEN
        {
            return None;
        }
        let (name, rest) = ticket.split_at(TICKET_NAME_LEN);
        let (nonce, sealed) = rest.split_at(TICKET_NONCE_LEN);
        for key in self.keys.iter().filter(|k| k.name[..] == *name) {
            let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = sealed.to_vec();
            let Ok(plain) = key
                .aead
                .open_in_place(nonce, aws_lc_rs::aead::Aad::from(&key.name), &mut buf)
            else {
                continue;
            };
            let (time, state) = plain.split_at(TICKET_TIME_LEN);
            let issued = u64::from_be_bytes(time.try_into().ok()?);
            let fresh = issued <= now.saturating_add(TICKET_CLOCK_SKEW_SECS)
                && now.saturating_sub(issued) < u64::from(TICKET_LIFETIME_SECS);
            return fresh.then(|| state.to_vec());
        }
        None
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The session-ticket keys of the Secret `namespace/name` among `objects`' Secrets.
pub fn ticket_keys(objects: &crate::objects::Objects, namespace: &str, name: &str) -> Result<TicketKeys, String> {
    let mut found = objects.secrets.iter().filter(|s| {
        s.metadata.namespace.as_deref().unwrap_or("default") == namespace && s.metadata.name.as_deref() == Some(name)
    });
    let first = found.next().ok_or_else(|| "no such Secret".to_owned())?;
    // On a cluster the same Secret may also come stripped (an Opaque one, as basic auth's);
    // the whole copy is the one with the keys.
    let with_keys = std::iter::once(first).chain(found).find(|s| {
        s.data.as_ref().is_some_and(|d| d.contains_key(TICKET_KEYS_FIELD))
            || s.string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(TICKET_KEYS_FIELD))
    });
    TicketKeys::from_secret(with_keys.unwrap_or(first))
}

/// Tickets sealed with the current table's shared keys when it has them (read lock-free per
/// handshake: a changed Secret changes the table, and the keys with it), else with this
/// process's own rotating keys. Tickets of the process's own keys still open while shared keys
/// are in use, so sessions made before a Secret appeared still resume here.
struct SharedTicketer {
    table: Arc<ArcSwap<RouteTable>>,
    own: Arc<dyn ProducesTickets>,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTicketer").finish_non_exhaustive()
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        match &self.table.load().ticket_keys {
            Some(_) => TICKET_LIFETIME_SECS,
            None => self.own.lifetime(),
        }
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        match &self.table.load().ticket_keys {
            Some(keys) => keys.seal(plain, unix_now()),
            None => self.own.encrypt(plain),
        }
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let shared = self
            .table
            .load()
            .ticket_keys
            .as_ref()
            .and_then(|keys| keys.open(ticket, unix_now()));
        shared.or_else(|| self.own.decrypt(ticket))
    }
}

/// Session resumption state that every configuration built for one ALB shares: TLS 1.2
/// session IDs in one cache, TLS 1.3 (and 1.2) tickets sealed with one key set: the zone's
/// shared keys when a Secret provides them (see [`TicketKeys`]), else the process's own
/// rotating ones. A client resumes whichever worker (or configuration, once client
/// certificates or a policy change make another) it lands on; with shared keys, whichever
/// replica. Session IDs stay per process (sharing them would need a shared store).
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

    /// [`Resumption::new`], with tickets sealed by the shared keys of the current table of
    /// `table` whenever it has some.
    pub fn shared(table: Arc<ArcSwap<RouteTable>>) -> Self {
        let own = Self::new();
        Self {
            sessions: own.sessions,
            ticketer: Arc::new(SharedTicketer {
                table,
                own: own.ticketer,
            }),
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
        let resumption = Resumption::shared(table.clone());
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

    fn key(byte: u8) -> Vec<u8> {
        (0..TICKET_KEY_LEN as u8).map(|i| i.wrapping_mul(31) ^ byte).collect()
    }

    fn keys(list: &[u8]) -> TicketKeys {
        TicketKeys::parse(&list.iter().flat_map(|b| key(*b)).collect::<Vec<_>>()).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    fn with_keys(keys: TicketKeys) -> RouteTable {
        let mut table = RouteTable::default();
        table.ticket_keys = Some(Arc::new(keys));
        table
    }

    #[test]
    fn ticket_keys_round_trip_and_expire() {
        let k = keys(&[1]);
        let state = b"rustls session state".to_vec();
        let ticket = k.seal(&state, NOW).unwrap();
        assert_eq!(
            &ticket[..TICKET_NAME_LEN],
            &key(1)[..TICKET_NAME_LEN],
            "named by the key"
        );
        assert_eq!(k.open(&ticket, NOW).as_deref(), Some(&state[..]));
        assert_eq!(k.open(&ticket, NOW + 3600).as_deref(), Some(&state[..]));
        // Another replica, the same Secret: it opens.
        assert_eq!(keys(&[1]).open(&ticket, NOW + 1).as_deref(), Some(&state[..]));
        // A random nonce per ticket: the same state never seals the same way twice.
        assert_ne!(k.seal(&state, NOW).unwrap(), ticket);
        // Too old, or from too far in the future.
        assert_eq!(k.open(&ticket, NOW + u64::from(TICKET_LIFETIME_SECS)), None);
        assert_eq!(k.open(&ticket, NOW - TICKET_CLOCK_SKEW_SECS - 1), None);
        assert!(k.open(&ticket, NOW - TICKET_CLOCK_SKEW_SECS).is_some());
        // An empty state (rustls never seals one, but nothing breaks).
        assert_eq!(k.open(&k.seal(b"", NOW).unwrap(), NOW).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn ticket_key_rotation_old_opens_new_seals_removed_stops() {
        let old = keys(&[1]);
        let before = old.seal(b"before", NOW).unwrap();
        let rotated = keys(&[2, 1]);
        assert_eq!(
            rotated.open(&before, NOW).as_deref(),
            Some(&b"before"[..]),
            "the old key still opens"
        );
        let after = rotated.seal(b"after", NOW).unwrap();
        assert_eq!(
            &after[..TICKET_NAME_LEN],
            &key(2)[..TICKET_NAME_LEN],
            "the new key seals"
        );
        assert_eq!(
            old.open(&after, NOW),
            None,
            "a replica without the new key cannot open it"
        );
        let removed = keys(&[2]);
        assert_eq!(removed.open(&before, NOW), None, "a removed key stops opening");
        assert_eq!(removed.open(&after, NOW).as_deref(), Some(&b"after"[..]));
        // Two keys with the same name: each is tried.
        let mut same_name = key(3);
        same_name[TICKET_NAME_LEN..].fill(7);
        let both = TicketKeys::parse(&[key(3), same_name.clone()].concat()).unwrap();
        let sealed = TicketKeys::parse(&same_name).unwrap().seal(b"x", NOW).unwrap();
        assert_eq!(both.open(&sealed, NOW).as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn hostile_tickets_open_to_none() {
        let k = keys(&[1, 2]);
        let good = k.seal(b"a session", NOW).unwrap();
        let flip = |i: usize| {
            let mut t = good.clone();
            t[i] ^= 1;
            t
        };
        let minimum = TICKET_NAME_LEN + TICKET_NONCE_LEN + TICKET_TIME_LEN + TICKET_TAG_LEN;
        let mut wrong_name = good.clone();
        wrong_name[..TICKET_NAME_LEN].copy_from_slice(&key(9)[..TICKET_NAME_LEN]);
        let mut other_key = good.clone();
        other_key[..TICKET_NAME_LEN].copy_from_slice(&key(2)[..TICKET_NAME_LEN]);
        let table: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("one byte", vec![0]),
            ("name only", good[..TICKET_NAME_LEN].to_vec()),
            ("name and nonce", good[..TICKET_NAME_LEN + TICKET_NONCE_LEN].to_vec()),
            ("one short of the minimum", good[..minimum - 1].to_vec()),
            ("minimum length, garbage", vec![0xff; minimum]),
            ("truncated tag", good[..good.len() - 1].to_vec()),
            ("tag cut off", good[..good.len() - TICKET_TAG_LEN].to_vec()),
            ("one byte more", [&good[..], &[0]].concat()),
            ("wrong key name", wrong_name),
            ("another key's name", other_key),
            ("flipped name", flip(0)),
            ("flipped nonce", flip(TICKET_NAME_LEN)),
            ("flipped time", flip(TICKET_NAME_LEN + TICKET_NONCE_LEN)),
            ("flipped state", flip(good.len() - TICKET_TAG_LEN - 1)),
            ("flipped tag", flip(good.len() - 1)),
            ("all zero", vec![0; good.len()]),
            ("huge", [&good[..], &vec![0; TICKET_MAX_LEN]].concat()),
            ("huge, all ones", vec![0xff; 4 * TICKET_MAX_LEN]),
        ];
        for (what, ticket) in &table {
            assert_eq!(k.open(ticket, NOW), None, "{what}");
        }
        // Through the ticketer, falling back to the process's own keys: still nothing.
        let table_with_keys = Arc::new(ArcSwap::from_pointee(with_keys(keys(&[1, 2]))));
        let ticketer = Resumption::shared(table_with_keys).ticketer;
        for (what, ticket) in &table {
            assert_eq!(ticketer.decrypt(ticket), None, "{what}");
        }
        assert!(ticketer.decrypt(&ticketer.encrypt(b"s").unwrap()).is_some());
    }

    #[test]
    fn ticket_key_formats() {
        for len in [0, 1, 47, 49, 79, 81, 96, 159] {
            let err = TicketKeys::parse(&vec![1; len]).unwrap_err();
            assert!(err.contains(&format!("{len} bytes")), "{err}");
        }
        assert_eq!(TicketKeys::parse(&[1; 48]).unwrap().len(), 1);
        assert_eq!(TicketKeys::parse(&[1; 80]).unwrap().len(), 1);
        assert_eq!(TicketKeys::parse(&[1; 240]).unwrap().len(), 3);
        let secret = |type_: &str, data: Option<Vec<u8>>| Secret {
            type_: Some(type_.into()),
            metadata: kube::api::ObjectMeta {
                namespace: Some("mzlb".into()),
                name: Some("tickets".into()),
                ..Default::default()
            },
            data: data.map(|d| BTreeMap::from([(TICKET_KEYS_FIELD.to_owned(), ByteString(d))])),
            ..Secret::default()
        };
        assert!(TicketKeys::from_secret(&secret("Opaque", Some(key(1)))).is_ok());
        assert!(TicketKeys::from_secret(&secret(TICKET_KEYS_TYPE, Some(key(1)))).is_ok());
        let err = TicketKeys::from_secret(&secret("kubernetes.io/tls", Some(key(1)))).unwrap_err();
        assert!(err.contains("not Opaque"), "{err}");
        let err = TicketKeys::from_secret(&secret("Opaque", None)).unwrap_err();
        assert!(err.contains("tls.ticket-keys is missing"), "{err}");
        // A stripped copy (as basic auth keeps Opaque Secrets) beside the whole one.
        let objects = crate::objects::Objects {
            secrets: vec![
                Arc::new(secret("Opaque", None)),
                Arc::new(secret("Opaque", Some(key(1)))),
            ],
            ..Default::default()
        };
        assert_eq!(ticket_keys(&objects, "mzlb", "tickets").unwrap().len(), 1);
        assert_eq!(ticket_keys(&objects, "mzlb", "other").unwrap_err(), "no such Secret");
        assert_eq!(
            format!("{:?}", keys(&[1, 2])),
            "TicketKeys { keys: 2 }",
            "never the keys"
        );
    }

    #[test]
    fn the_ticketer_follows_the_table() {
        let table: Arc<ArcSwap<RouteTable>> = Default::default();
        let ticketer = Resumption::shared(table.clone()).ticketer;
        assert!(ticketer.enabled());
        // No shared keys: the process's own.
        let own = ticketer.encrypt(b"own").unwrap();
        assert_eq!(ticketer.decrypt(&own).as_deref(), Some(&b"own"[..]));
        assert_eq!(keys(&[1]).open(&own, unix_now()), None);
        // The Secret appears: tickets are sealed with its first key, and the process's own
        // tickets still resume here.
        table.store(Arc::new(with_keys(keys(&[1]))));
        assert_eq!(ticketer.lifetime(), TICKET_LIFETIME_SECS);
        let shared = ticketer.encrypt(b"shared").unwrap();
        assert_eq!(keys(&[1]).open(&shared, unix_now()).as_deref(), Some(&b"shared"[..]));
        assert_eq!(ticketer.decrypt(&shared).as_deref(), Some(&b"shared"[..]));
        assert_eq!(ticketer.decrypt(&own).as_deref(), Some(&b"own"[..]));
        // Rotated, then the old key removed.
        table.store(Arc::new(with_keys(keys(&[2]))));
        assert_eq!(ticketer.decrypt(&shared), None);
    }
}
