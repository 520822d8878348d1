//! The listeners: accept connections (completing the TLS handshake on the HTTPS one), serve
//! HTTP/1.1 and HTTP/2 through the proxy, and drain in-flight requests on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
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
    // This worker's turn for a TLS handshake's work on a ClientHello (`in_turn`).
    let turns = Arc::new(Semaphore::new(1));
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
        let (cancel, turns) = (cancel.clone(), turns.clone());
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
                    // The whole ClientHello is read first: its SNI picks pass-through and
                    // client-certificate hosts, and the answer to it is then given in the
                    // worker's turn (`in_turn`), never while waiting for the rest of it.
                    let Some(hello) = read_client_hello(&mut stream, &mut read, deadline, peer).await else {
                        return;
                    };
                    // Only a hello read here takes a turn: garbage and other protocols are
                    // refused by rustls at little cost, and should not delay real handshakes.
                    let (sni_name, take_turn) = match hello {
                        Hello::Sni(name) => (name, true),
                        _ => (None, false),
                    };
                    // The configuration asking for a host's client certificates, if any.
                    let (mut config, mut asked) = (None, None);
                    // Client certificates are asked for per host: the TLS configuration
                    // depends on the name, so its connections' verdicts go to their requests.
                    let verdicts = {
                        let table = proxy.table.load();
                        if let Some(target) = sni_name.as_ref().and_then(|name| table.passthrough.get(name)).cloned() {
                            drop(table);
                            let source = proxy.settings.source_ip;
                            // Boxed: inline, its state would size every connection's task.
                            let splice = Box::pin(passthrough::splice(stream, read, &target, source));
                            if let Err(error) = splice.await {
                                tracing::debug!(%peer, ingress = %target.ingress, %error, "pass-through ended");
                            }
                            return;
                        }
                        if let Some(auth) = sni_name.and_then(|name| table.client_auth_for(&name).cloned())
                            && auth.asks()
                            && let Some(asking) = auth.server_config(&edge)
                        {
                            config = Some(asking);
                            asked = Some(auth);
                        }
                        !table.client_auth.is_empty()
                    };
                    let stream = Rewound::new(read, stream);
                    let acceptor = TlsAcceptor::from(config.unwrap_or_else(|| edge.config()));
                    // The stream boxed inside the handshake's own future: inline, the TLS state
                    // (~1.2 KiB), or the result carrying it, would size every connection's task,
                    // plain and idle ones too.
                    let accept = acceptor.accept(stream);
                    let mut handshake = Box::pin(async move { accept.await.map(Box::new) });
                    let handshake = async {
                        if !take_turn {
                            return handshake.await;
                        }
                        match in_turn(&turns, deadline, &mut handshake).await {
                            Turn::Ended(done) => done,
                            Turn::Going => handshake.await,
                            // Its client waited out the handshake's time for the turn: no work
                            // is done for it.
                            Turn::Expired => Err(std::io::ErrorKind::TimedOut.into()),
                        }
                    };
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

/// What a handshake's poll in the worker's turn came to.
#[derive(Debug, PartialEq, Eq)]
enum Turn<T> {
    /// It ended (a server's handshake only ends there when it fails).
    Ended(T),
    /// It answered the ClientHello and waits for the client.
    Going,
    /// The deadline passed while it waited for the turn; it was not polled.
    Expired,
}

/// Polls a TLS handshake whose ClientHello has been read, once, in the worker's turn: the
/// answer to the first ClientHello (a key exchange, and a signature on a full handshake) is
/// most of a handshake's work. What follows (a second ClientHello after a HelloRetryRequest,
/// TLS 1.2's second flight, a client certificate's check) is done as it comes, outside the
/// turn. The turn is handed on only after the runtime next polls for I/O, so a worker answers
/// at most one ClientHello between two polls and requests that became readable meanwhile go
/// first, instead of waiting behind a burst of new connections' handshakes. nginx gets the same
/// from taking one connection off its accept queue per event-loop turn; a client that connects
/// early and sends its ClientHello late (as wrk does) would get past an accept-side bound.
async fn in_turn<F: Future + Unpin>(
    turns: &Semaphore,
    deadline: tokio::time::Instant,
    handshake: &mut F,
) -> Turn<F::Output> {
    // Never closed: the error cannot happen, and without a turn the handshake still goes on.
    let turn = turns.acquire().await.ok();
    if tokio::time::Instant::now() >= deadline {
        return Turn::Expired;
    }
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(Pin::new(&mut *handshake).poll(cx))).await;
    match polled {
        // Refused at once, most likely with little work done: the next one goes now.
        std::task::Poll::Ready(done) => Turn::Ended(done),
        std::task::Poll::Pending => {
            // Deferred to after the runtime's next I/O poll (tokio's `yield_now`), and so is
            // the next handshake waiting for the turn.
            tokio::task::yield_now().await;
            drop(turn);
            Turn::Going
        }
    }
}

/// Reads the ClientHello: `Some(Hello::Sni(name))` for one read here, `Some` of anything else
/// for bytes left to the TLS stack; `None` when the connection is to be dropped (nothing in
/// time, closed before a byte, or a read error).
async fn read_client_hello(
    stream: &mut TcpStream,
    read: &mut BytesMut,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
) -> Option<Hello> {
    match tokio::time::timeout_at(deadline, Box::pin(passthrough::read_hello(stream, read))).await {
        Ok(Ok(_)) if read.is_empty() => {
            tracing::debug!(%peer, "closed before a ClientHello");
            None
        }
        Ok(Ok(hello)) => Some(hello),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Three handshakes ready at once, and a request that becomes readable while the first one
    /// is answered: the request is served before the second handshake, not after the burst.
    /// (`tokio::test` runs it on a current-thread runtime, as each worker's.)
    #[tokio::test]
    async fn a_request_readable_during_a_handshake_goes_before_the_next_handshake() {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let (mut request, client) = tokio::net::UnixStream::pair().unwrap();
        let client = Arc::new(client);
        let reader = tokio::spawn({
            let log = log.clone();
            async move {
                let mut byte = [0u8; 1];
                request.read_exact(&mut byte).await.unwrap();
                log.lock().unwrap().push("request".to_string());
            }
        });
        // The reader waits on its socket before any handshake starts.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(log.lock().unwrap().is_empty());
        let turns = Arc::new(Semaphore::new(1));
        let handshakes: Vec<_> = (1..=3)
            .map(|i| {
                let (log, turns, client) = (log.clone(), turns.clone(), client.clone());
                tokio::spawn(async move {
                    // A handshake whose ClientHello is in: it answers on its first poll,
                    // then waits for its client.
                    let mut handshake = std::future::poll_fn(|_| {
                        log.lock().unwrap().push(format!("handshake {i}"));
                        if i == 1 {
                            // The request arrives while the first handshake is worked on.
                            assert_eq!(client.try_write(b"x").unwrap(), 1);
                        }
                        std::task::Poll::<()>::Pending
                    });
                    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
                    assert_eq!(in_turn(&turns, deadline, &mut handshake).await, Turn::Going);
                })
            })
            .collect();
        for handshake in handshakes {
            handshake.await.unwrap();
        }
        reader.await.unwrap();
        let log = log.lock().unwrap().clone();
        assert_eq!(log, ["handshake 1", "request", "handshake 2", "handshake 3"]);
    }

    /// A handshake that needs more from the client after its poll in turn gives the turn back
    /// (the next one is not held up by its round trip) and still completes.
    #[tokio::test]
    async fn a_handshake_waiting_on_its_client_gives_the_turn_back() {
        let turns = Semaphore::new(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let mut waiting = Box::pin(async move { rx.await.unwrap() });
        assert_eq!(in_turn(&turns, deadline, &mut waiting).await, Turn::Going);
        assert_eq!(turns.available_permits(), 1);
        let mut next = std::future::ready(7u8);
        assert_eq!(in_turn(&turns, deadline, &mut next).await, Turn::Ended(7));
        tx.send(3).unwrap();
        assert_eq!(waiting.await, 3);
    }

    /// A handshake whose time ran out while it waited for the turn is not worked on.
    #[tokio::test]
    async fn a_handshake_past_its_deadline_is_not_polled() {
        let turns = Semaphore::new(1);
        let polled = std::cell::Cell::new(false);
        let mut handshake = std::future::poll_fn(|_| {
            polled.set(true);
            std::task::Poll::Ready(())
        });
        let past = tokio::time::Instant::now();
        assert_eq!(in_turn(&turns, past, &mut handshake).await, Turn::Expired);
        assert!(!polled.get());
        assert_eq!(turns.available_permits(), 1);
    }
}
