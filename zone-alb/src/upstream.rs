//! Connections to backends: HTTP/1.1 over TCP, or over TLS for `backend-protocol: HTTPS`,
//! opened from the ALB's own address and kept alive for reuse per endpoint. A connection goes
//! back to the idle pool the moment its response body ends, so the next request on any client
//! connection can take it without a handshake.
//!
//! Timeouts follow nginx's meaning: `connect` bounds the TCP (and TLS) handshake, `send` the
//! wait for one write to the backend to make progress, `read` the wait for the response head
//! and then for each piece of the body.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::keepalive;
use crate::proxy::{Body, BoxError};

/// Where a request goes: one endpoint, in plain HTTP or HTTPS.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub addr: SocketAddr,
    pub tls: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub send: Duration,
    pub read: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("not connected within {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("no response within {0:?}")]
    ReadTimeout(Duration),
    #[error("backend accepted nothing for {0:?}")]
    SendTimeout(Duration),
    #[error("{0}")]
    Io(io::Error),
    /// The backend's response broke HTTP/1.1 (fast path; hyper reports its own as `Http`).
    #[error("invalid response: {0}")]
    Invalid(String),
}

impl UpstreamError {
    /// Nothing reached the backend: the request may be sent to another endpoint.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_) | UpstreamError::Tls(_)
        )
    }

    /// Connect, read or send timeout: the backend did not keep up (504, as nginx).
    pub fn is_timeout(&self) -> bool {
        match self {
            UpstreamError::ConnectTimeout(_) | UpstreamError::ReadTimeout(_) | UpstreamError::SendTimeout(_) => true,
            // The send timeout surfaces as an I/O error of the connection.
            UpstreamError::Http(e) => std::error::Error::source(e)
                .and_then(|source| source.downcast_ref::<io::Error>())
                .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut),
            _ => false,
        }
    }
}

type Idle = keepalive::Idle<Key, Conn>;

struct Conn {
    sender: SendRequest<Body>,
    /// The send timeout of the request in flight, read by the connection's writer.
    send_timeout: Arc<AtomicU64>,
}

impl keepalive::Open for Conn {
    fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// All upstream connections of one zone ALB.
pub struct Upstreams {
    source_ip: Option<IpAddr>,
    tls: TlsConnector,
    idle: Arc<Idle>,
    /// Connections opened, for the reuse figure (new connections per request).
    opened: Counter,
}

impl Upstreams {
    /// Connections opened so far (tests; the metric counts them in service).
    #[cfg(test)]
    fn opened(&self) -> u64 {
        self.opened.get()
    }

    /// `source_ip` binds upstream connections to the ALB's own address, so backends see the
    /// zone's IP as the peer (REMOTE_ADDR), as behind a cloud ALB.
    pub fn new(source_ip: Option<IpAddr>, opened: Counter) -> Self {
        Self {
            source_ip,
            tls: TlsConnector::from(Arc::new(insecure_client_config())),
            idle: Idle::new(),
            opened,
        }
    }

    /// Sends `req` (origin-form URI, Host set) to `key` and returns the response, whose body
    /// releases the connection for reuse when it ends. The read timeout runs from when `sent`
    /// fires (the request body has all been read; `None`: there is none), as nginx's
    /// `proxy_read_timeout` starts once the request is sent; until then an upload is governed
    /// by the send timeout and the client's body timeout.
    pub async fn send(
        &self,
        key: Key,
        req: Request<Body>,
        t: Timeouts,
        sent: Option<oneshot::Receiver<()>>,
    ) -> Result<Response<Body>, UpstreamError> {
        let mut req = req;
        let mut sent = sent;
        if let Some(mut conn) = self.idle.checkout(key) {
            // A backend may close a kept-alive connection at any moment; a request it never saw
            // comes back and goes out on a new connection.
            if conn.sender.ready().await.is_ok() {
                conn.send_timeout.store(nanos(t.send), Ordering::Relaxed);
                match read_within(t.read, &mut sent, conn.sender.try_send_request(req)).await {
                    Ok(Ok(resp)) => return Ok(self.hand_out(key, conn, resp, t.read)),
                    Ok(Err(mut e)) => match e.take_message() {
                        // Never sent, so its body was never polled: `sent` has not fired.
                        Some(unsent) => req = unsent,
                        None => return Err(e.into_error().into()),
                    },
                    Err(_) => return Err(UpstreamError::ReadTimeout(t.read)),
                }
            }
        }
        // Boxed: the handshake's state is large and rarely needed; inline it would be carried
        // by every request's future (and every idle client connection).
        let mut conn = Box::pin(self.connect(key, t)).await?;
        match read_within(t.read, &mut sent, conn.sender.send_request(req)).await {
            Ok(Ok(resp)) => Ok(self.hand_out(key, conn, resp, t.read)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(UpstreamError::ReadTimeout(t.read)),
        }
    }

    async fn connect(&self, key: Key, t: Timeouts) -> Result<Conn, UpstreamError> {
        let send_timeout = Arc::new(AtomicU64::new(nanos(t.send)));
        let handshake = async {
            let stream = connect_tcp(key.addr, self.source_ip)
                .await
                .map_err(UpstreamError::Connect)?;
            let stream = if key.tls {
                // No SNI and no certificate check, as ingress-nginx by default
                // (`proxy-ssl-verify: off`): the backend is addressed by Pod IP.
                let name = ServerName::IpAddress(key.addr.ip().into());
                let tls = self.tls.connect(name, stream).await.map_err(UpstreamError::Tls)?;
                Either::Right(tls)
            } else {
                Either::Left(stream)
            };
            let io = TokioIo::new(WriteTimeout::new(stream, send_timeout.clone()));
            let (sender, conn) = http1::Builder::new()
                .handshake::<_, Body>(io)
                .await
                .map_err(UpstreamError::Http)?;
            Ok::<_, UpstreamError>((sender, conn))
        };
        let (sender, conn) = tokio::time::timeout(t.connect, handshake)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(t.connect))??;
        self.opened.inc();
        tokio::spawn(async move {
            // Upgrades (WebSocket) take the socket over after a 101.
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(Conn { sender, send_timeout })
    }

    fn hand_out(&self, key: Key, conn: Conn, resp: Response<Incoming>, read: Duration) -> Response<Body> {
        let upgrade = resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS;
        let (parts, body) = resp.into_parts();
        let mut body = Pooled {
            body,
            conn: (!upgrade).then_some(conn),
            pool: Arc::downgrade(&self.idle),
            key,
            read,
            stalled: None,
        };
        if body.body.is_end_stream() {
            body.release();
        }
        Response::from_parts(parts, body.boxed())
    }
}

/// Runs `exchange` with the read timeout started once `sent` fires (at once without one). A
/// `sent` that has not fired stays in place, for the same request sent again on a new
/// connection (a kept-alive one the backend had closed hands it back unsent).
async fn read_within<T>(
    read: Duration,
    sent: &mut Option<oneshot::Receiver<()>>,
    exchange: impl Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    tokio::pin!(exchange);
    if let Some(rx) = sent.as_mut() {
        tokio::select! {
            done = &mut exchange => return Ok(done),
            // Sent, or failed (the exchange then fails on its own, within the timeout).
            _ = rx => *sent = None,
        }
    }
    tokio::time::timeout(read, exchange).await
}

/// A TCP connection to `addr`, from `source_ip` when given (and of the same family), with
/// Nagle off: request and response heads go out as soon as they are written.
pub async fn connect_tcp(addr: SocketAddr, source_ip: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        // Let connect() pick the port: bound first, each connection would hold its port
        // for every destination, capping all upstream connections at the ephemeral range.
        if ip.is_ipv4() {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
                .map_err(io::Error::from)?;
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A response body that returns its connection to the pool once it has been read to the end.
/// Dropped early, the connection goes with it (its state is unknown).
struct Pooled {
    body: Incoming,
    conn: Option<Conn>,
    pool: Weak<Idle>,
    key: Key,
    read: Duration,
    /// Running while the backend keeps us waiting for the next piece of the body.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Pooled {
    fn release(&mut self) {
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.upgrade()) {
            pool.release(self.key, conn);
        }
    }
}

impl hyper::body::Body for Pooled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stalled = None;
                if this.body.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let read = this.read;
                let stalled = this.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(read)));
                ready!(stalled.as_mut().poll(cx));
                this.conn = None;
                Poll::Ready(Some(Err(Box::new(UpstreamError::ReadTimeout(read)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A socket whose writes fail with `TimedOut` when the backend accepts nothing for the current
/// request's send timeout (nginx's `proxy_send_timeout`).
struct WriteTimeout<S> {
    io: S,
    timeout: Arc<AtomicU64>,
    blocked: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(io: S, timeout: Arc<AtomicU64>) -> Self {
        Self {
            io,
            timeout,
            blocked: None,
        }
    }

    fn guard<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.blocked = None;
            return polled;
        }
        let timeout = Duration::from_nanos(self.timeout.load(Ordering::Relaxed));
        let blocked = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(blocked.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("backend accepted nothing for {timeout:?}"),
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// TLS to backends without certificate verification: what ingress-nginx does unless
/// `proxy-ssl-verify` is on. The connection is still encrypted; the backend is reached by the
/// Pod IP the cluster gave us, not by a name a certificate could vouch for.
pub(crate) fn insecure_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    // Signatures are still checked: the handshake must prove possession of the key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{empty, full};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const T: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        send: Duration::from_secs(2),
        read: Duration::from_secs(2),
    };

    fn get() -> Request<Body> {
        let mut req = Request::new(empty());
        req.headers_mut().insert(hyper::header::HOST, "t".parse().unwrap());
        req
    }

    /// A backend answering every request with `response`; with `close_after_each` it closes the
    /// connection after each answer (without saying so in the response).
    async fn backend(response: &'static [u8], close_after_each: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if conn.write_all(response).await.is_err() {
                                return;
                            }
                            if close_after_each {
                                // Keep-alive as far as the headers go, then gone: what a
                                // backend with a short idle timeout looks like.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn body(resp: Response<Body>) -> Result<Bytes, BoxError> {
        Ok(resp.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn connections_are_reused_once_the_body_is_read() {
        let addr = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
        let up = Upstreams::new(None, Counter::default());
        let key = Key { addr, tls: false };
        for _ in 0..5 {
            let resp = up.send(key, get(), T, None).await.unwrap();
            assert_eq!(body(resp).await.unwrap(), "ok");
        }
        assert_eq!(up.opened(), 1);
        // A response dropped before its end takes its connection with it.
        let unread = up.send(key, get(), T, None).await.unwrap();
        drop(unread);
        let resp = up.send(key, get(), T, None).await.unwrap();
        assert_eq!(body(resp).await.unwrap(), "ok");
        assert_eq!(up.opened(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_replaced() {
        let addr = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true).await;
        let up = Upstreams::new(None, Counter::default());
        let key = Key { addr, tls: false };
        for _ in 0..3 {
            let resp = up.send(key, get(), T, None).await.unwrap();
            assert_eq!(body(resp).await.unwrap(), "ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(up.opened(), 3);
    }

    #[tokio::test]
    async fn a_body_that_stalls_past_the_read_timeout_fails() {
        // Promises 10 bytes, sends 2, then nothing.
        let addr = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", false).await;
        let up = Upstreams::new(None, Counter::default());
        let t = Timeouts {
            read: Duration::from_millis(200),
            ..T
        };
        let resp = up.send(Key { addr, tls: false }, get(), t, None).await.unwrap();
        let started = Instant::now();
        let error = body(resp).await.unwrap_err();
        assert!(error.to_string().contains("no response within"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_read_timeout_waits_for_the_body_even_across_a_resend() {
        let (tx, rx) = oneshot::channel::<()>();
        let mut sent = Some(rx);
        // A first exchange that ends before the body was sent (handed back unsent) leaves the
        // signal in place for the next one.
        assert_eq!(read_within(Duration::from_secs(1), &mut sent, async { 1 }).await, Ok(1));
        assert!(sent.is_some());
        // The next exchange outlasts the read timeout while the upload goes on: no timeout yet.
        let exchange = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            2
        };
        let upload = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = tx.send(());
        };
        let (result, ()) = tokio::join!(read_within(Duration::from_secs(3), &mut sent, exchange), upload);
        assert_eq!(
            result,
            Ok(2),
            "3 s of upload, then 2 s of reading: within the 3 s read timeout"
        );
        assert!(sent.is_none());
        // Once sent, the timeout applies.
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert!(read_within(Duration::from_secs(1), &mut sent, slow).await.is_err());
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let up = Upstreams::new(None, Counter::default());
        let mut req = get();
        *req.body_mut() = full("x");
        let error = up.send(Key { addr, tls: false }, req, T, None).await.unwrap_err();
        assert!(error.is_connect() && !error.is_timeout(), "{error}");
    }
}
