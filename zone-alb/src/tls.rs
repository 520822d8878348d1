//! TLS termination: certificates from the Secrets that Ingress `spec.tls` sections name,
//! chosen per connection by SNI; a generated default certificate for unknown names (as
//! ingress-nginx's fake certificate); HTTP/2 and HTTP/1.1 offered by ALPN. The certificates
//! live in the routing table, so a reload swaps them with the routes.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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

/// The certificate and key of a `kubernetes.io/tls` Secret.
pub fn certified_key(secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
    if let Some(t) = secret.type_.as_deref()
        && t != "kubernetes.io/tls"
    {
        return Err(format!("type is {t}, not kubernetes.io/tls"));
    }
    let field = |name: &str| -> Result<Vec<u8>, String> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(name)) {
            return Ok(v.0.clone());
        }
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(name)) {
            return Ok(v.as_bytes().to_vec());
        }
        Err(format!("data.{name} is missing"))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&field("tls.crt")?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("data.tls.crt is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("data.tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&field("tls.key")?)
        .map_err(|e| format!("data.tls.key is not a PEM private key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("data.tls.key: {e}"))?;
    let key = CertifiedKey::new(certs, signing);
    key.keys_match()
        .map_err(|e| format!("data.tls.key does not belong to data.tls.crt: {e}"))?;
    Ok(Arc::new(key))
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
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).expect("rcgen keys are supported");
    Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// Chooses the certificate for each TLS connection from the current routing table.
#[derive(Debug)]
pub struct SniResolver {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub default: Arc<CertifiedKey>,
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
        let chosen = name.and_then(|name| table.tls.get(&name).cloned());
        Some(chosen.unwrap_or_else(|| self.default.clone()))
    }
}

/// A server that always shows `key`, speaking HTTP/1.1 (the demo backend's HTTPS mode).
pub fn single_certificate_config(key: Arc<CertifiedKey>) -> Arc<rustls::ServerConfig> {
    #[derive(Debug)]
    struct Always(Arc<CertifiedKey>);
    impl ResolvesServerCert for Always {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    config(Arc::new(Always(key)), &[b"http/1.1"])
}

/// The server configuration: our resolver, HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(resolver: SniResolver) -> Arc<rustls::ServerConfig> {
    config(Arc::new(resolver), &[b"h2", b"http/1.1"])
}

/// `base` asking clients for a certificate through `verifier` (`auth-tls-*`): the same
/// certificates, ALPN and session handling.
pub fn with_client_verifier(
    base: &rustls::ServerConfig,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(base.crypto_provider().clone())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(base.cert_resolver.clone());
    config.alpn_protocols = base.alpn_protocols.clone();
    config.session_storage = base.session_storage.clone();
    config.ticketer = base.ticketer.clone();
    config.send_tls13_tickets = base.send_tls13_tickets;
    config.ignore_client_order = base.ignore_client_order;
    config.max_fragment_size = base.max_fragment_size;
    Arc::new(config)
}

fn config(resolver: Arc<dyn ResolvesServerCert>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
