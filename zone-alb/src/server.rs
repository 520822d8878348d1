//! The listeners: accept connections (completing the TLS handshake on the HTTPS one), serve
//! HTTP/1.1 and HTTP/2 through the proxy, and drain in-flight requests on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::client_cert;
use crate::error::{Error, Result};
use crate::fastpath::{self, Rewound};
use crate::passthrough::{self, Hello};
use crate::proxy::{Proxy, Scheme};
use crate::proxy_protocol;

/// A client must send a request's head within this time (also the idle keep-alive timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Heads larger than this get 431 (the fast path leaves them to hyper, which says so).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Heads with more fields than this get 431.
pub const MAX_HEADERS: usize = 100;
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing TLS connection may take to send its close_notify.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
}

/// The next connection. Accept errors (out of file descriptors and the like) back off briefly
/// instead of spinning; they never stop the listener.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves until `cancel` fires, then drains open connections. With `tls`, every connection
/// is a TLS one and requests are marked `https`. Plain ones, and TLS ones that chose HTTP/1.1
/// (ALPN `http/1.1` or none), start on the HTTP/1.1 fast path (`fastpath`) and move to hyper
/// when they need it; HTTP/2 ones are hyper's.
/// With `proxy_protocol`, every connection must start with a PROXY header naming the client.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<crate::tls::Edge>>,
    proxy_protocol: bool,
    proxy: Arc<Proxy>,
    cancel: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection waits for its next request.
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    // Shared, not copied into every connection (it is a few hundred bytes).
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // This worker's own node: its connections register with it, not with one shared by all
    // workers (a lock every worker would take per request).
    let cancel = cancel.child_token();
    // Bound to one address (a zone's portable IP), the local end of every connection is known:
    // no `getsockname` per connection. Only a wildcard listener needs to ask.
    let bound = listener.local_addr().ok().filter(|a| !a.ip().is_unspecified());
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = cancel.cancelled() => break,
        };
        let Some(local) = bound.or_else(|| stream.local_addr().ok()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Registered now, so shutdown also waits for connections still in their handshake
        // or on the fast path.
        let (builder, watcher, tls, proxy) = (builder.clone(), graceful.watcher(), tls.clone(), proxy.clone());
        let cancel = cancel.clone();
        let open = Open::new(proxy.metrics().connections.clone());
        tokio::spawn(async move {
            let _open = open;
            let peer = if proxy_protocol {
                // Boxed, as the TLS handshake below: what a connection holds only at its start
                // should not be carried for its whole life.
                let header = Box::pin(proxy_protocol::read_header(&mut stream));
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, header).await {
                    Ok(Ok(proxy_protocol::Source::Client(client))) => client,
                    Ok(Ok(proxy_protocol::Source::Peer)) => peer,
                    Ok(Err(error)) => return tracing::debug!(%peer, %error, "PROXY header refused"),
                    Err(_) => return tracing::debug!(%peer, "no PROXY header in time"),
                }
            } else {
                peer
            };
            // What the TLS handshake established about the client, for its requests.
            let mut connection: Option<Arc<client_cert::Connection>> = None;
            // The SNI, for the requests of a Gateway listener's port.
            let mut sni: Option<crate::gateway::serve::Sni> = None;
            let (io, scheme) = match tls {
                None if !proxy.settings.fast_path => {
                    (Either::Left(Rewound::new(BytesMut::new(), stream)), Scheme::Http)
                }
                None => match fastpath::serve(&proxy, &mut stream, peer, local, Scheme::Http, &cancel).await {
                    fastpath::Exit::Closed => return,
                    fastpath::Exit::HandOff(read) => (Either::Left(Rewound::new(read, stream)), Scheme::Http),
                },
                Some(edge) => {
                    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
                    let mut read = BytesMut::new();
                    // The configuration asking for a host's client certificates, if any.
                    let (mut config, mut asked) = (None, None);
                    // Client certificates are asked for per host: the TLS configuration
                    // depends on the name, so its connections' verdicts go to their requests.
                    // Only with a pass-through or client-certificate host in the table is the
                    // ClientHello read first.
                    let (verdicts, read_hello) = {
                        let table = proxy.table.load();
                        let verdicts = !table.client_auth.is_empty();
                        (verdicts, verdicts || !table.passthrough.is_empty())
                    };
                    if read_hello {
                        let Some(sni) = read_sni(&mut stream, &mut read, deadline, peer).await else {
                            return;
                        };
                        let table = proxy.table.load();
                        if let Some(target) = sni.as_ref().and_then(|name| table.passthrough.get(name)).cloned() {
                            drop(table);
                            let source = proxy.settings.source_ip;
                            // Boxed: inline, its state would size every connection's task.
                            let splice = Box::pin(passthrough::splice(stream, read, &target, source));
                            if let Err(error) = splice.await {
                                tracing::debug!(%peer, ingress = %target.ingress, %error, "pass-through ended");
                            }
                            return;
                        }
                        if let Some(auth) = sni.and_then(|name| table.client_auth_for(&name).cloned())
                            && auth.asks()
                            && let Some(asking) = auth.server_config(&edge)
                        {
                            config = Some(asking);
                            asked = Some(auth);
                        }
                    }
                    let stream = Rewound::new(read, stream);
                    let acceptor = TlsAcceptor::from(config.unwrap_or_else(|| edge.config()));
                    // The stream boxed inside the handshake's own future: inline, the TLS state
                    // (~1.2 KiB), or the result carrying it, would size every connection's task,
                    // plain and idle ones too.
                    let accept = acceptor.accept(stream);
                    let handshake = Box::pin(async move { accept.await.map(Box::new) });
                    match tokio::time::timeout_at(deadline, handshake).await {
                        Ok(Ok(mut stream)) => {
                            let gateway_port = proxy.settings.gateway_port(local.port());
                            if proxy.table.load().gateway.port(gateway_port).is_some() {
                                let name = stream.get_ref().1.server_name();
                                let name = name.map(|n| Arc::from(n.trim_end_matches('.').to_ascii_lowercase()));
                                sni = Some(crate::gateway::serve::Sni(name));
                            }
                            if verdicts {
                                let (_, tls) = stream.get_ref();
                                let provider = acceptor.config().crypto_provider();
                                connection = Some(Arc::new(client_cert::Connection::new(
                                    tls.server_name(),
                                    asked.as_deref(),
                                    tls.peer_certificates(),
                                    provider,
                                )));
                            }
                            // HTTP/1.1 starts on the fast path, as on plain HTTP, unless the client
                            // was asked for a certificate (its host's requests are all hyper's,
                            // which checks the verdict). The connection's verdict and SNI above
                            // go with it to hyper if it is handed over.
                            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let read = if proxy.settings.fast_path && !h2 && asked.is_none() {
                                let exit = fastpath::serve(&proxy, &mut *stream, peer, local, Scheme::Https, &cancel);
                                match exit.await {
                                    fastpath::Exit::Closed => {
                                        // close_notify, as hyper sends when it closes: without
                                        // it, clients such as OpenSSL's report a truncation.
                                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
                                        return;
                                    }
                                    fastpath::Exit::HandOff(read) => read,
                                }
                            } else {
                                BytesMut::new()
                            };
                            (Either::Right(Rewound::new(read, stream)), Scheme::Https)
                        }
                        Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            };
            let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let proxy = proxy.clone();
                if let Some(connection) = &connection {
                    req.extensions_mut().insert(connection.clone());
                }
                if let Some(sni) = &sni {
                    req.extensions_mut().insert(sni.clone());
                }
                // Boxed per request: unboxed, hyper keeps a slot the size of this future in
                // every connection, idle or not (~4 KiB each).
                Box::pin(async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer, local, scheme).await) })
            });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            // Boxed: connections that stay on the fast path do not carry hyper's state.
            if let Err(error) = Box::pin(watcher.watch(conn)).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
        // One accept per turn of the event loop, as nginx (without `multi_accept`): the
        // requests of connections already open are served before the next handshake starts,
        // instead of waiting behind a whole burst of new connections' handshakes.
        tokio::task::yield_now().await;
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Reads the ClientHello for its SNI: `Some(name)` (`None` when it names none or cannot be
/// read here, which leaves it to the TLS stack); `None` when the connection is to be dropped
/// (nothing in time, or a read error).
async fn read_sni(
    stream: &mut TcpStream,
    read: &mut BytesMut,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
) -> Option<Option<String>> {
    match tokio::time::timeout_at(deadline, Box::pin(passthrough::read_hello(stream, read))).await {
        Ok(Ok(Hello::Sni(name))) => Some(name),
        Ok(Ok(_)) => Some(None),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "reading the ClientHello failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "no ClientHello in time");
            None
        }
    }
}

/// Counts a connection as open for as long as it lives.
struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}
