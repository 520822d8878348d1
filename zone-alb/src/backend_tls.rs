//! TLS to `backend-protocol: HTTPS` backends as `proxy-ssl-*` asks: the backend's certificate
//! verified against the CA of `proxy-ssl-secret` (`ca.crt`) for the name ingress-nginx checks
//! (`proxy-ssl-name`, else `<namespace>-<service>-<port>`, its `$proxy_host`), within
//! `proxy-ssl-verify-depth` intermediates; SNI only with `proxy-ssl-server-name: on`; the
//! Secret's `tls.crt`/`tls.key` presented as client certificate.
//!
//! Each distinct setting gets a stable identity (an interned number), part of the upstream
//! pool's key: a connection verified for one route's trust is never handed to a route with
//! another, and connections stay reusable across routing-table rebuilds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use k8s_openapi::api::core::v1::Secret;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::annotations::tls::{ProxySsl, TlsVersion};
use crate::objects::Objects;

/// How the ALB speaks TLS to one backend: the pool key's `tls` part is [`BackendTls::id`].
#[derive(Debug)]
pub struct BackendTls {
    /// Equal for equal settings, across tables; 0 is the unverified default.
    pub id: u64,
    pub config: Arc<rustls::ClientConfig>,
    /// The same, offering HTTP/2 (ALPN `h2`), for gRPC backends.
    pub config_h2: Arc<rustls::ClientConfig>,
    /// The name verified (and sent as SNI when enabled); for the unverified default, the
    /// endpoint's address is used instead.
    pub name: Option<ServerName<'static>>,
}

impl BackendTls {
    /// TLS without certificate verification and without SNI: what ingress-nginx does unless
    /// `proxy-ssl-verify` is on. The backend is reached by the Pod IP the cluster gave us.
    pub fn insecure() -> Arc<BackendTls> {
        static INSECURE: OnceLock<Arc<BackendTls>> = OnceLock::new();
        INSECURE
            .get_or_init(|| {
                let provider = provider();
                let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("aws-lc-rs supports the default protocol versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Verifier { provider, check: None }))
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                config.enable_sni = false;
                let mut h2 = config.clone();
                h2.alpn_protocols = vec![b"h2".to_vec()];
                Arc::new(BackendTls {
                    id: 0,
                    config: Arc::new(config),
                    config_h2: Arc::new(h2),
                    name: None,
                })
            })
            .clone()
    }
}

/// What `proxy-ssl-secret` holds, read once per Ingress.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Material {
    /// `ca.crt`, DER; empty: the backend's certificate is not verified.
    roots: Vec<Vec<u8>>,
    /// `tls.crt` (DER chain) and `tls.key` (PKCS#8/PKCS#1/SEC1 DER), when present.
    client_cert: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    verify: bool,
    name: Option<String>,
    sni: bool,
    depth: u32,
    versions: Vec<TlsVersion>,
}

/// A field of a Secret, from `data` or `stringData`.
pub fn secret_field(secret: &Secret, name: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(name)) {
        return Some(v.0.clone());
    }
    secret.string_data.as_ref()?.get(name).map(|v| v.as_bytes().to_vec())
}

/// The Secret `namespace/name` in `objects`, if the Ingress in `ingress_ns` may use it: as
/// ingress-nginx (without `allow-cross-namespace-resources`), only its own namespace's.
pub fn find_secret<'o>(
    objects: &'o Objects,
    ingress_ns: &str,
    (ns, name): &(String, String),
) -> Result<&'o Secret, String> {
    if ns != ingress_ns {
        return Err(format!(
            "Secret {ns}/{name} is in another namespace than the Ingress ({ingress_ns}); cross-namespace Secrets are not allowed"
        ));
    }
    objects
        .secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(name) && s.metadata.namespace.as_deref() == Some(ns))
        .map(|s| &**s)
        .ok_or_else(|| format!("Secret {ns}/{name} not found"))
}

/// PEM certificates, DER; an error names the field.
pub fn pem_certs(pem: &[u8], field: &str) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("data.{field} is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("data.{field} holds no certificate"));
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// Reads `proxy-ssl-secret` for an Ingress in `ingress_ns`. An error makes the Ingress's
/// routes fail closed (ingress-nginx denies the location: 503).
pub fn material(objects: &Objects, ingress_ns: &str, ssl: &ProxySsl) -> Result<Arc<Material>, String> {
    let secret = find_secret(objects, ingress_ns, &ssl.secret)?;
    let (ns, name) = &ssl.secret;
    let at = |e: String| format!("proxy-ssl-secret {ns}/{name}: {e}");
    let roots = match secret_field(secret, "ca.crt") {
        Some(pem) => pem_certs(&pem, "ca.crt").map_err(at)?,
        None if ssl.verify => return Err(at("data.ca.crt is missing, so proxy-ssl-verify cannot be done".into())),
        None => Vec::new(),
    };
    for root in &roots {
        webpki::anchor_from_trusted_cert(&CertificateDer::from(root.as_slice()))
            .map_err(|e| at(format!("data.ca.crt: not a usable CA certificate: {e:?}")))?;
    }
    let client_cert = match (secret_field(secret, "tls.crt"), secret_field(secret, "tls.key")) {
        (Some(crt), Some(key)) => {
            let chain = pem_certs(&crt, "tls.crt").map_err(at)?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| at(format!("data.tls.key is not a PEM private key: {e}")))?;
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| at(format!("data.tls.key: {e}")))?;
            Some((chain, key.secret_der().to_vec()))
        }
        (None, None) => None,
        _ => return Err(at("tls.crt and tls.key go together".into())),
    };
    if roots.is_empty() && client_cert.is_none() {
        // ingress-nginx: "no keypair or CA cert could be found".
        return Err(at("holds neither ca.crt nor tls.crt/tls.key".into()));
    }
    Ok(Arc::new(Material {
        roots,
        client_cert,
        verify: ssl.verify,
        name: ssl.name.clone(),
        sni: ssl.server_name,
        depth: ssl.verify_depth,
        versions: ssl.versions.clone(),
    }))
}

/// The `proxy-ssl-*` material of one Ingress (compiling the routing table), and the reason its
/// routes refuse requests when the Secret cannot be used: they answer 503, as ingress-nginx's
/// denied locations do, rather than reach the backend without the trust asked for.
pub fn for_ingress(
    objects: &Objects,
    namespace: &str,
    policy: &crate::annotations::tls::TlsPolicy,
    what: &str,
    warnings: &mut Vec<crate::router::Problem>,
) -> (Option<Arc<Material>>, Option<Arc<str>>) {
    let Some(ssl) = &policy.proxy_ssl else {
        return (None, None);
    };
    match material(objects, namespace, ssl) {
        Ok(m) => (Some(m), None),
        Err(e) => {
            warnings.push(crate::router::Problem {
                reason: "InvalidProxySSLSecret",
                message: format!("{what}: {e}; its routes answer 503"),
            });
            (None, Some(Arc::from("unusable proxy-ssl-secret")))
        }
    }
}

/// The TLS settings for the Service port `service` of an Ingress in `namespace`.
pub fn for_backend(
    material: &Arc<Material>,
    namespace: &str,
    service: &k8s_openapi::api::networking::v1::IngressServiceBackend,
) -> Arc<BackendTls> {
    let port = service.port.as_ref();
    let port = match (port.and_then(|p| p.number), port.and_then(|p| p.name.as_deref())) {
        (Some(n), _) if n > 0 => n.to_string(),
        (_, Some(name)) if !name.is_empty() => name.to_owned(),
        _ => return material.for_upstream(&format!("{namespace}-INVALID")),
    };
    material.for_upstream(&upstream_name(namespace, &service.name, &port))
}

/// ingress-nginx's upstream name, `<namespace>-<service>-<port>`: what it verifies the backend's
/// certificate for (and sends as SNI) unless `proxy-ssl-name` says otherwise.
pub fn upstream_name(namespace: &str, service: &str, port: &str) -> String {
    format!("{namespace}-{service}-{port}")
}

impl Material {
    /// A Gateway API BackendTLSPolicy's: the backend's certificate verified against `roots`
    /// (DER) for `hostname`, which is also the SNI; no client certificate.
    pub fn verified_for(roots: Vec<Vec<u8>>, hostname: &str) -> Arc<Material> {
        Arc::new(Material {
            roots,
            client_cert: None,
            verify: true,
            name: Some(hostname.to_ascii_lowercase()),
            sni: true,
            // Intermediates between the backend's certificate and the CA: as many as a
            // public chain has.
            depth: 5,
            versions: Vec::new(),
        })
    }

    /// The TLS settings for one backend (whose ingress-nginx upstream name is `upstream`),
    /// shared with every other backend with the same settings.
    pub fn for_upstream(self: &Arc<Self>, upstream: &str) -> Arc<BackendTls> {
        let name = self.name.clone().unwrap_or_else(|| upstream.to_ascii_lowercase());
        intern(self, &name)
    }
}

type Interned = HashMap<(Arc<Material>, String), (u64, Weak<BackendTls>)>;

/// Equal settings get the same identity and, while it lives, the same configuration.
fn intern(material: &Arc<Material>, name: &str) -> Arc<BackendTls> {
    static TABLE: OnceLock<Mutex<(u64, Interned)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new((0, HashMap::new())));
    let mut guard = table.lock().unwrap_or_else(|poison| poison.into_inner());
    let (next, map) = &mut *guard;
    let key = (material.clone(), name.to_owned());
    if let Some((_, weak)) = map.get(&key)
        && let Some(live) = weak.upgrade()
    {
        return live;
    }
    // Keep the identity of settings seen before: pooled connections stay reusable.
    let id = match map.get(&key) {
        Some((id, _)) => *id,
        None => {
            *next += 1;
            *next
        }
    };
    let built = Arc::new(build(material, name, id));
    map.insert(key, (id, Arc::downgrade(&built)));
    built
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn build(m: &Material, name: &str, id: u64) -> BackendTls {
    let provider = provider();
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match m.versions.as_slice() {
        [] => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        listed => listed
            .iter()
            .map(|v| match v {
                TlsVersion::Tls12 => &rustls::version::TLS12,
                TlsVersion::Tls13 => &rustls::version::TLS13,
            })
            .collect(),
    };
    // A name that is not a DNS name (or an address) is never matched: verification fails.
    let server_name = ServerName::try_from(name.to_owned()).ok();
    let check = (m.verify && !m.roots.is_empty()).then(|| Check {
        roots: m.roots.iter().map(|r| CertificateDer::from(r.clone())).collect(),
        depth: m.depth,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { provider, check }));
    let mut config = match &m.client_cert {
        Some((chain, key)) => {
            let chain = chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
            let key = PrivateKeyDer::try_from(key.clone()).expect("checked when read");
            builder.with_client_auth_cert(chain, key).expect("checked when read")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_sni = m.sni;
    let mut h2 = config.clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    BackendTls {
        id,
        config: Arc::new(config),
        config_h2: Arc::new(h2),
        name: Some(server_name.unwrap_or_else(|| ServerName::try_from("invalid.invalid").expect("a DNS name"))),
    }
}

/// What a verified backend certificate must satisfy.
#[derive(Debug)]
struct Check {
    roots: Vec<CertificateDer<'static>>,
    /// Intermediates allowed between the certificate and a root (nginx's verify depth).
    depth: u32,
}

#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// `None`: any certificate (the handshake still proves possession of its key).
    check: Option<Check>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(check) = &self.check else {
            return Ok(ServerCertVerified::assertion());
        };
        verify_chain(
            check,
            &self.provider,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        cert.verify_is_valid_for_subject_name(server_name).map_err(pki_error)?;
        Ok(ServerCertVerified::assertion())
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

/// Verifies `end_entity` up to one of `check.roots` with at most `check.depth` intermediates.
fn verify_chain(
    check: &Check,
    provider: &CryptoProvider,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<(), rustls::Error> {
    let anchors: Vec<rustls::pki_types::TrustAnchor<'_>> = check
        .roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
    let depth = check.depth as usize;
    let within_depth = |path: &webpki::VerifiedPath<'_>| {
        if path.intermediate_certificates().count() > depth {
            Err(webpki::Error::MaximumPathDepthExceeded)
        } else {
            Ok(())
        }
    };
    cert.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &anchors,
        intermediates,
        now,
        usage,
        None,
        Some(&within_depth),
    )
    .map_err(pki_error)?;
    Ok(())
}

fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let certificate = match e {
        E::UnknownIssuer | E::MaximumPathDepthExceeded => CertificateError::UnknownIssuer,
        E::CertNotValidForName(_) => CertificateError::NotValidForName,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertRevoked => CertificateError::Revoked,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        _ => CertificateError::BadEncoding,
    };
    rustls::Error::InvalidCertificate(certificate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(verify: bool, name: Option<&str>) -> Arc<Material> {
        Arc::new(Material {
            roots: vec![b"not really a certificate".to_vec()],
            client_cert: None,
            verify,
            name: name.map(str::to_owned),
            sni: false,
            depth: 1,
            versions: Vec::new(),
        })
    }

    #[test]
    fn equal_settings_share_an_identity_and_others_do_not() {
        let a = m(true, None).for_upstream("shop-api-443");
        let b = m(true, None).for_upstream("shop-api-443");
        assert_eq!(a.id, b.id);
        assert!(Arc::ptr_eq(&a, &b), "the live configuration is shared");
        let other_name = m(true, None).for_upstream("shop-admin-443");
        let unverified = m(false, None).for_upstream("shop-api-443");
        let explicit = m(true, Some("api.shop")).for_upstream("shop-api-443");
        let ids = [
            a.id,
            other_name.id,
            unverified.id,
            explicit.id,
            BackendTls::insecure().id,
        ];
        for (i, x) in ids.iter().enumerate() {
            for y in &ids[i + 1..] {
                assert_ne!(x, y, "{ids:?}");
            }
        }
        // Dropped and built again: the same identity (pooled connections stay usable).
        let id = a.id;
        drop((a, b));
        assert_eq!(m(true, None).for_upstream("shop-api-443").id, id);
    }

    /// A CA, an intermediate it signed, and leaves for `name` signed by each.
    struct Pki {
        root: CertificateDer<'static>,
        intermediate: CertificateDer<'static>,
        by_root: CertificateDer<'static>,
        by_intermediate: CertificateDer<'static>,
    }

    fn pki(name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let mid_key = KeyPair::generate().unwrap();
        let mid_params = ca_params("intermediate");
        let intermediate = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
        let mid_issuer = Issuer::new(mid_params, mid_key);
        let leaf = |issuer: &Issuer<'_, KeyPair>| {
            let key = KeyPair::generate().unwrap();
            CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, issuer)
                .unwrap()
                .der()
                .clone()
        };
        Pki {
            by_root: leaf(&root_issuer),
            by_intermediate: leaf(&mid_issuer),
            root: root.der().clone(),
            intermediate: intermediate.der().clone(),
        }
    }

    #[test]
    fn backend_certificates_are_verified_for_the_name_within_the_depth() {
        let ours = pki("shop-api-443");
        let other = pki("shop-api-443");
        let verifier = |depth: u32| Verifier {
            provider: provider(),
            check: Some(Check {
                roots: vec![ours.root.clone()],
                depth,
            }),
        };
        let name = |n: &str| ServerName::try_from(n.to_owned()).unwrap();
        let now = UnixTime::now();
        let verify = |depth: u32, leaf: &CertificateDer<'_>, chain: &[CertificateDer<'_>], n: &str| {
            verifier(depth)
                .verify_server_cert(leaf, chain, &name(n), &[], now)
                .map(|_| ())
        };
        let mid = std::slice::from_ref(&ours.intermediate);
        assert_eq!(verify(1, &ours.by_root, &[], "shop-api-443"), Ok(()));
        assert_eq!(verify(1, &ours.by_intermediate, mid, "shop-api-443"), Ok(()));
        // Each row: (depth, leaf, intermediates sent, name) → the error.
        let bad_issuer = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let bad_name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let bad_signature = rustls::Error::InvalidCertificate(CertificateError::BadSignature);
        let rows: &[(u32, &CertificateDer<'_>, &[CertificateDer<'_>], &str, &rustls::Error)] = &[
            // The intermediate not sent: no path.
            (1, &ours.by_intermediate, &[], "shop-api-443", &bad_issuer),
            // Another CA of the same name: its signature does not verify.
            (1, &other.by_root, &[], "shop-api-443", &bad_signature),
            (
                1,
                &other.by_intermediate,
                std::slice::from_ref(&other.intermediate),
                "shop-api-443",
                &bad_signature,
            ),
            // A CA's own certificate is not a server's.
            (1, &ours.by_root, &[], "shop-admin-443", &bad_name),
            (1, &ours.by_root, &[], "api.shop.svc", &bad_name),
            // The root presented as the leaf: a CA is not a server.
            (
                1,
                &ours.root,
                &[],
                "shop-api-443",
                &rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
            ),
            // Garbage.
            (
                1,
                &CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]),
                &[],
                "shop-api-443",
                &rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
            ),
        ];
        for (i, (depth, leaf, chain, n, error)) in rows.iter().enumerate() {
            assert_eq!(verify(*depth, leaf, chain, n).as_ref(), Err(*error), "row {i}");
        }
        // A second intermediate exceeds depth 1, not depth 2.
        let deep = pki_chain_of_two("shop-api-443");
        let v = |depth: u32| {
            Verifier {
                provider: provider(),
                check: Some(Check {
                    roots: vec![deep.0.clone()],
                    depth,
                }),
            }
            .verify_server_cert(&deep.2, &deep.1, &name("shop-api-443"), &[], now)
            .map(|_| ())
        };
        assert_eq!(v(1), Err(bad_issuer.clone()));
        assert_eq!(v(2), Ok(()));
        // Without a check (verify off), anything goes (the handshake still proves the key).
        let anything = Verifier {
            provider: provider(),
            check: None,
        };
        assert!(
            anything
                .verify_server_cert(&other.by_root, &[], &name("x"), &[], now)
                .is_ok()
        );
    }

    /// (root, [intermediate 2, intermediate 1], leaf): root → 1 → 2 → leaf.
    fn pki_chain_of_two(
        name: &str,
    ) -> (
        CertificateDer<'static>,
        Vec<CertificateDer<'static>>,
        CertificateDer<'static>,
    ) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p
        };
        let k0 = KeyPair::generate().unwrap();
        let p0 = ca_params("root");
        let root = p0.self_signed(&k0).unwrap().der().clone();
        let i0 = Issuer::new(p0, k0);
        let k1 = KeyPair::generate().unwrap();
        let p1 = ca_params("one");
        let one = p1.signed_by(&k1, &i0).unwrap().der().clone();
        let i1 = Issuer::new(p1, k1);
        let k2 = KeyPair::generate().unwrap();
        let p2 = ca_params("two");
        let two = p2.signed_by(&k2, &i1).unwrap().der().clone();
        let i2 = Issuer::new(p2, k2);
        let kl = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&kl, &i2)
            .unwrap()
            .der()
            .clone();
        (root, vec![two, one], leaf)
    }

    #[test]
    fn the_default_name_is_ingress_nginx_upstream_name() {
        assert_eq!(upstream_name("shop", "api", "443"), "shop-api-443");
        let tls = m(true, None).for_upstream("Shop-API-443");
        assert_eq!(tls.name, Some(ServerName::try_from("shop-api-443".to_owned()).unwrap()));
    }
}
