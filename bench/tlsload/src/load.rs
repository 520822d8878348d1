//! The virtual clients: each loops connect, handshake, one request, close until the deadline,
//! with its own rustls ClientConfig and so its own session store, as each browser has its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme, SupportedProtocolVersion};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::response;

/// TLS protocol versions the clients offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tls {
    #[value(name = "1.2")]
    V12,
    #[value(name = "1.3")]
    V13,
}

/// What to load and how.
#[derive(Debug, Clone)]
pub struct Load {
    pub connect: SocketAddr,
    /// The SNI name, also the Host header.
    pub sni: String,
    pub path: String,
    pub connections: usize,
    pub duration: Duration,
    /// None: offer TLS 1.2 and 1.3.
    pub tls: Option<Tls>,
    pub resume: bool,
    /// For each connection, from connect to the response's end.
    pub timeout: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Connections that got a whole `HTTP/1.1 200` response.
    pub ok: u64,
    pub errors: u64,
    /// Handshakes completed, by kind (whatever came of the request after).
    pub resumed: u64,
    pub full: u64,
    /// Of each ok connection, microseconds from connect start to the response's last byte.
    pub latencies_us: Vec<u64>,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

impl Summary {
    fn add(&mut self, other: Summary) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.resumed += other.resumed;
        self.full += other.full;
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The `p`-quantile (0..=1) latency by nearest rank, 0 without any. Sorts the latencies.
    pub fn percentile_us(&mut self, p: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        self.latencies_us.sort_unstable();
        let rank = (p * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]
    }

    /// The one line the bench parses.
    pub fn line(&mut self) -> String {
        let rate = self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let (p50, p99) = (self.percentile_us(0.50), self.percentile_us(0.99));
        format!(
            "connections {} rate {rate:.1}/s p50_us {p50} p99_us {p99} resumed {} full {} errors {}",
            self.ok, self.resumed, self.full, self.errors
        )
    }
}

/// Runs `load.connections` virtual clients, each as a task (spread over the threads of a
/// multi-thread runtime), until `load.duration` has passed; a connection under way then ends.
pub async fn run(load: Load) -> anyhow::Result<Summary> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_name = ServerName::try_from(load.sni.clone()).with_context(|| format!("bad SNI name {:?}", load.sni))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        load.path, load.sni
    );
    let client = Arc::new(Client {
        load: load.clone(),
        server_name,
        request: request.into_bytes(),
    });
    let start = Instant::now();
    let deadline = start + load.duration;
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let connector = TlsConnector::from(Arc::new(client_config(&provider, load.tls, load.resume)?));
        tasks.push(tokio::spawn(client.clone().run(connector, deadline)));
    }
    let mut summary = Summary::default();
    for task in tasks {
        summary.add(task.await.context("a virtual client panicked")?);
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// One virtual client's configuration: its own session store (unless resumption is off).
fn client_config(provider: &Arc<CryptoProvider>, tls: Option<Tls>, resume: bool) -> anyhow::Result<ClientConfig> {
    let versions: &[&'static SupportedProtocolVersion] = match tls {
        None => rustls::ALL_VERSIONS,
        Some(Tls::V12) => &[&rustls::version::TLS12],
        Some(Tls::V13) => &[&rustls::version::TLS13],
    };
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A few entries are plenty: one server name. For TLS 1.3 each entry keeps up to 8 tickets,
    // each used once; the server sends new ones on every handshake, resumed or not. For TLS 1.2
    // the session ID or ticket (Tls12Resumption::SessionIdOrTickets, the default).
    config.resumption = if resume {
        Resumption::in_memory_sessions(4)
    } else {
        Resumption::disabled()
    };
    Ok(config)
}

/// What the virtual clients share.
struct Client {
    load: Load,
    server_name: ServerName<'static>,
    request: Vec<u8>,
}

impl Client {
    async fn run(self: Arc<Self>, connector: TlsConnector, deadline: Instant) -> Summary {
        let mut summary = Summary::default();
        let mut buf = Vec::with_capacity(16 * 1024);
        while Instant::now() < deadline {
            let start = Instant::now();
            let mut kind = None;
            let result =
                tokio::time::timeout(self.load.timeout, self.connection(&connector, &mut kind, &mut buf)).await;
            match kind {
                Some(HandshakeKind::Resumed) => summary.resumed += 1,
                Some(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest) => summary.full += 1,
                None => {}
            }
            let error = match result {
                Ok(Ok(end)) => {
                    summary.ok += 1;
                    summary.latencies_us.push(end.duration_since(start).as_micros() as u64);
                    continue;
                }
                Ok(Err(error)) => error,
                Err(_) => anyhow!("no whole response within {:?}", self.load.timeout),
            };
            summary.errors += 1;
            if summary.first_error.is_none() {
                summary.first_error = Some(format!("{error:#}"));
            }
        }
        summary
    }

    /// One connection: connect, handshake (its kind into `kind`), request, response, close.
    /// Returns when the response's last byte came.
    async fn connection(
        &self,
        connector: &TlsConnector,
        kind: &mut Option<HandshakeKind>,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<Instant> {
        let tcp = TcpStream::connect(self.load.connect).await.context("connect")?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let mut tls = connector
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        *kind = tls.get_ref().1.handshake_kind();
        tls.write_all(&self.request).await.context("sending the request")?;
        let response = response::read_response(&mut tls, buf).await?;
        let end = Instant::now();
        if !response.is_ok() {
            let status_line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
            return Err(anyhow!("response {:?}", String::from_utf8_lossy(status_line)));
        }
        // close_notify, then FIN; the server may have closed already (Connection: close).
        let _ = tls.shutdown().await;
        Ok(end)
    }
}

/// Accepts any certificate: the bench's are self-signed. The handshake's signatures are still
/// verified, with the provider's algorithms, so a client does the work a browser does there
/// (less the chain's validation).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::ServerConfig;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;

    #[derive(Clone, Copy)]
    enum Sessions {
        /// rustls's default: a server-side cache (TLS 1.2 session IDs, TLS 1.3 stateful tickets).
        Cache,
        /// Stateless tickets.
        Tickets,
    }

    /// A TLS server on 127.0.0.1 that answers every request 200 and closes.
    async fn server(sessions: Sessions) -> SocketAddr {
        let generated = rcgen::generate_simple_self_signed(vec!["load.test".to_owned()]).unwrap();
        let cert = generated.cert.der().clone();
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        if let Sessions::Tickets = sessions {
            config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
        }
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    while !request.ends_with(b"\r\n\r\n") {
                        match tls.read_buf(&mut request).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
                    let _ = tls.write_all(response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        addr
    }

    async fn load(sessions: Sessions, tls: Tls, resume: bool) -> Summary {
        let connect = server(sessions).await;
        let load = Load {
            connect,
            sni: "load.test".to_owned(),
            path: "/".to_owned(),
            connections: 4,
            duration: Duration::from_secs(1),
            tls: Some(tls),
            resume,
            timeout: Duration::from_secs(10),
        };
        let summary = run(load).await.unwrap();
        assert_eq!(summary.errors, 0, "{:?}", summary.first_error);
        assert!(summary.ok > 0);
        assert_eq!(summary.ok, summary.resumed + summary.full);
        summary
    }

    #[tokio::test]
    async fn resumes_tls12_session_ids() {
        let summary = load(Sessions::Cache, Tls::V12, true).await;
        assert!(summary.resumed > 0, "{summary:?}");
        // Only each client's first handshake is full.
        assert!(summary.full <= 4, "{summary:?}");
    }

    #[tokio::test]
    async fn resumes_tls12_tickets() {
        let summary = load(Sessions::Tickets, Tls::V12, true).await;
        assert!(summary.resumed > 0, "{summary:?}");
        // Only each client's first handshake is full.
        assert!(summary.full <= 4, "{summary:?}");
    }

    #[tokio::test]
    async fn resumes_tls13_stateful_tickets() {
        let summary = load(Sessions::Cache, Tls::V13, true).await;
        assert!(summary.resumed > 0, "{summary:?}");
        // Only each client's first handshake is full.
        assert!(summary.full <= 4, "{summary:?}");
    }

    #[tokio::test]
    async fn resumes_tls13_tickets() {
        let summary = load(Sessions::Tickets, Tls::V13, true).await;
        assert!(summary.resumed > 0, "{summary:?}");
        // Only each client's first handshake is full.
        assert!(summary.full <= 4, "{summary:?}");
    }

    #[tokio::test]
    async fn no_resume_tls12() {
        let summary = load(Sessions::Tickets, Tls::V12, false).await;
        assert_eq!(summary.resumed, 0, "{summary:?}");
    }

    #[tokio::test]
    async fn no_resume_tls13() {
        let summary = load(Sessions::Tickets, Tls::V13, false).await;
        assert_eq!(summary.resumed, 0, "{summary:?}");
    }

    #[tokio::test]
    async fn refused_connections_are_errors() {
        // A port just freed: nothing listens there.
        let connect = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let load = Load {
            connect,
            sni: "load.test".to_owned(),
            path: "/".to_owned(),
            connections: 1,
            duration: Duration::from_millis(50),
            tls: None,
            resume: true,
            timeout: Duration::from_secs(10),
        };
        let summary = run(load).await.unwrap();
        assert_eq!(summary.ok, 0);
        assert!(summary.errors > 0);
        assert!(summary.first_error.unwrap().starts_with("connect"));
    }

    #[test]
    fn percentiles() {
        let mut summary = Summary {
            latencies_us: (1..=100).rev().collect(),
            ..Summary::default()
        };
        assert_eq!(summary.percentile_us(0.50), 50);
        assert_eq!(summary.percentile_us(0.99), 99);
        assert_eq!(summary.percentile_us(1.0), 100);
        assert_eq!(Summary::default().percentile_us(0.5), 0);
        summary.elapsed = Duration::from_secs(2);
        summary.ok = 100;
        summary.resumed = 90;
        summary.full = 10;
        assert_eq!(
            summary.line(),
            "connections 100 rate 50.0/s p50_us 50 p99_us 99 resumed 90 full 10 errors 0"
        );
    }
}
