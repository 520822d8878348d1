//! The HTTP/1.1 fast path for plain-HTTP connections and HTTPS ones that chose HTTP/1.1 (the
//! caller terminates TLS; `Scheme` says which): the common exchange (a request without
//! a body or with a `Content-Length` one, to a route whose policy is at most limits,
//! allow-lists and cookie affinity) parsed with `httparse`, sent to a pooled backend connection
//! as one write and answered with one write, bodies relayed as they arrive. It does what nginx
//! does per request and no more: no header map, no channel between tasks, no second task per
//! upstream connection.
//!
//! Everything else is hyper's: the first request the fast path does not take (a chunked body,
//! `Expect`, an upgrade, HTTP/1.0, a malformed or oversized head, a trusted peer's forwarding
//! headers, a route with rewrites, redirects or HTTPS backends) hands the connection, with the
//! bytes already read, to hyper's server for the rest of its life. So each behaviour has one
//! full implementation (`proxy`), and this one only where it is simple.

pub(crate) mod backend;
pub mod framing;
pub mod pool;

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::annotations::BackendProtocol;
use crate::policy::{self, ProxyError, forward};
use crate::proxy::{
    MAX_ATTEMPTS, Proxy, RequestLine, Scheme, Seen, affinity_cookie, cookie_in, request_id, sticky_endpoint,
};
use crate::router::{InFlight, Route, RouteTable};
use crate::server::{HEADER_READ_TIMEOUT, MAX_HEADER_BYTES, MAX_HEADERS};
use crate::upstream::UpstreamError;
use framing::{Chunks, Framing};
use pool::Conn;

/// A client that accepts nothing of its response for this long is dropped (nginx's
/// `send_timeout`).
const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// A client sending a request body must send some of it within this time (nginx's
/// `client_body_timeout`).
const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Read size for request heads; most fit in far less.
pub(crate) const CLIENT_READ: usize = 4096;
/// Names listed in a request's Connection header that can be removed; more go to hyper.
const MAX_LISTED: usize = 8;
/// Cookie fields of one request (HTTP/1.1 clients send one); more go to hyper.
const MAX_COOKIE_FIELDS: usize = 4;
/// Interim (1xx) responses relayed before the final one; a backend sending more is broken.
const MAX_INTERIM: usize = 8;

/// Request-head buffers between uses, per worker: a connection holds one only while a request
/// is arriving or in flight, and taking one back costs no allocation.
#[derive(Default)]
pub struct Spare(Mutex<Vec<BytesMut>>);

impl Spare {
    /// As many as requests are usually in flight on one worker; beyond, buffers are freed.
    const KEEP: usize = 256;

    fn take(&self) -> BytesMut {
        let spare = self.0.lock().unwrap_or_else(|poison| poison.into_inner()).pop();
        spare.unwrap_or_else(|| BytesMut::with_capacity(CLIENT_READ))
    }

    /// Buffers kept for reuse.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner()).len()
    }

    fn give(&self, mut buf: BytesMut) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        // Requests taken from its front shrank its view; this takes the space back (in place:
        // the buffer is empty and ours alone).
        buf.reserve(CLIENT_READ);
        // Only the usual size: a buffer grown for a huge head is not kept.
        if buf.capacity() > 2 * CLIENT_READ {
            return;
        }
        let mut spare = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if spare.len() < Self::KEEP {
            spare.push(buf);
        }
    }
}

/// How a connection left the fast path.
pub enum Exit {
    /// It is finished: closed by the client, after `Connection: close`, on an error, on
    /// shutdown or after the header read timeout.
    Closed,
    /// hyper serves it from here on, starting with these bytes (the head of a request the
    /// fast path does not take, and anything after it).
    HandOff(BytesMut),
}

/// What the fast path needs of a client connection: a byte stream, and two things a TCP socket
/// gives for free, with fallbacks for in-memory streams (tests drive the fast path through
/// `tokio::io::duplex`).
pub(crate) trait Client: AsyncRead + AsyncWrite + Unpin {
    /// Ready to read, as far as the event loop knows, without reading: an idle connection waits
    /// holding no buffer.
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A write that never waits: most responses fit the socket's buffer, and need no timer.
    fn try_write(&self, _bytes: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl Client for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        TcpStream::try_write(self, bytes)
    }
}

#[cfg(test)]
impl Client for tokio::io::DuplexStream {}

/// A connection whose ClientHello was read before the handshake: those bytes come first.
impl<S: Client> Client for Rewound<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.read.is_empty() {
            self.io.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        self.io.try_write(bytes)
    }
}

/// An HTTPS connection. Its writes go through rustls's buffer, so they take the default (a
/// write then a flush, see `write_within`).
impl<S: Client> Client for tokio_rustls::server::TlsStream<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let (io, tls) = self.get_ref();
        // rustls may hold decrypted bytes (records that came in one read with an earlier one,
        // or with the handshake's last flight) or the peer's close_notify, while the socket
        // itself has nothing more: then it is ready now. Otherwise rustls holds at most part
        // of a record, and only the socket can bring the rest.
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        io.poll_read_ready(cx)
    }
}

/// Serves requests on a plain-HTTP connection, or the plaintext side of an HTTPS one
/// (`Scheme::Https`), until it ends or needs hyper.
pub(crate) async fn serve<C: Client>(
    proxy: &Proxy,
    stream: &mut C,
    peer: SocketAddr,
    local: SocketAddr,
    scheme: Scheme,
    cancel: &CancellationToken,
) -> Exit {
    // A trusted proxy's forwarding headers are kept and extended, which hyper's path does.
    // (Settled per connection, from the table at its start.)
    let (rules, gateway) = {
        let table = proxy.table.load();
        let port = proxy.settings.gateway_port(local.port());
        (proxy.rules(&table, peer), table.gateway.port(port).is_some())
    };
    // Gateway listeners' requests (filters, weights, matches on headers) are hyper's.
    if rules.trusted || gateway {
        return Exit::HandOff(BytesMut::new());
    }
    // The same for every request of the connection: peer and port do not change.
    let forwarded = forwarded_fields(peer, local, scheme);
    // Registered once for the connection, not once per request.
    let stop = cancel.cancelled();
    tokio::pin!(stop);
    let mut buf = BytesMut::new();
    loop {
        let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
        let request = loop {
            if !buf.is_empty() {
                match prepare(&buf, peer, &forwarded, rules) {
                    Prepared::Request(request) => break request,
                    Prepared::HandOff => return Exit::HandOff(buf),
                    Prepared::Incomplete if buf.len() >= MAX_HEADER_BYTES => return Exit::HandOff(buf),
                    Prepared::Incomplete => {}
                }
            } else if !readable_now(stream).await {
                // Idle between requests: hold no buffer while waiting (as nginx frees its
                // header buffer on a kept-alive connection), so an idle connection costs little
                // more than its socket.
                proxy.spare.give(std::mem::take(&mut buf));
                let ready = tokio::select! {
                    // The wait first: woken by it, the stop is not even looked at.
                    biased;
                    ready = tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| stream.poll_read_ready(cx))) => ready,
                    () = &mut stop => return Exit::Closed,
                };
                if !matches!(ready, Ok(Ok(()))) {
                    return Exit::Closed;
                }
            }
            if buf.capacity() == 0 {
                buf = proxy.spare.take();
            } else if buf.capacity() - buf.len() < CLIENT_READ / 4 {
                buf.reserve(CLIENT_READ);
            }
            // The rest of a head that has begun is awaited even on shutdown.
            let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // The client closed, reset, or sent no (complete) head in time: as hyper, close.
                _ => return Exit::Closed,
            }
        };
        let mut request = request;
        // Draining: this request is served, and its response says the connection closes.
        if cancel.is_cancelled() {
            request.close = true;
        }
        let (consumed, close) = (request.consumed(), request.close);
        // Boxed: only the connection's idle state stays in its task, not an exchange's.
        match Box::pin(handle(proxy, request, stream, scheme)).await {
            Handled::Done => {}
            Handled::Close => return Exit::Closed,
            Handled::HandOff => return Exit::HandOff(buf),
        }
        if close {
            return Exit::Closed;
        }
        buf.advance(consumed);
    }
}

/// Whether the socket already has bytes (or an EOF) waiting, as far as the event loop knows.
async fn readable_now<C: Client>(stream: &C) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(stream.poll_read_ready(cx).is_ready())).await
}

/// A connection handed to hyper: the bytes the fast path already read come first (over TCP,
/// or over TLS, where they are plaintext). Also a TCP connection whose ClientHello was read
/// before the handshake.
pub struct Rewound<S> {
    read: BytesMut,
    io: S,
}

impl<S> Rewound<S> {
    pub fn new(read: BytesMut, io: S) -> Self {
        Self { read, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        if self.read.is_empty() {
            self.read = BytesMut::new(); // give the memory back
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request the fast path takes, with the head to send upstream already built.
struct Request<'b> {
    /// Length of the client's head in the buffer.
    len: usize,
    method: &'b str,
    host: &'b str,
    path: &'b str,
    /// The client asked to close after this response.
    close: bool,
    idempotent: bool,
    head_request: bool,
    peer: SocketAddr,
    upstream_head: Vec<u8>,
    /// `Content-Length` of the request body (0 without one).
    body_len: u64,
    /// The part of the body that came with the head; the rest is still on the socket.
    body_read: &'b [u8],
    /// The values of its Cookie fields, for session affinity.
    cookies: [&'b [u8]; MAX_COOKIE_FIELDS],
}

impl Request<'_> {
    /// Bytes of the client's buffer this request takes: its head and the body read with it.
    fn consumed(&self) -> usize {
        self.len + self.body_read.len()
    }

    /// Whether part of the body must still be read from the client, so the request cannot be
    /// sent twice and the connection cannot go on if it is not.
    fn streams_body(&self) -> bool {
        (self.body_read.len() as u64) < self.body_len
    }

    /// The value of cookie `name`, if the client sent it.
    fn cookie(&self, name: &str) -> Option<&'_ str> {
        cookie_in(self.cookies.iter().copied(), name)
    }
}

// Short-lived, on the stack: boxing the request would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Prepared<'b> {
    Incomplete,
    HandOff,
    Request(Request<'b>),
}

/// The forwarding fields for a connection's requests: from an untrusted peer (the only kind
/// served here) they are ours, whatever the client sent.
fn forwarded_fields(peer: SocketAddr, local: SocketAddr, scheme: Scheme) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    forward::untrusted_fields(peer.ip(), scheme.as_str(), local.port(), |name, value| {
        let _ = write!(out, "{name}: {value}\r\n");
    });
    out
}

/// Parses a request head and decides whether the fast path takes it; if so, builds the head
/// the backend gets.
fn prepare<'b>(buf: &'b [u8], peer: SocketAddr, forwarded: &[u8], rules: forward::Rules) -> Prepared<'b> {
    // Uninitialised: zeroing 100 fields would cost more than parsing a typical head.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Prepared::Incomplete,
        Err(_) => return Prepared::HandOff,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Prepared::HandOff;
    };
    // Refused on hyper's path (405).
    if method == "CONNECT" {
        return Prepared::HandOff;
    }
    // Other forms, targets over the limit (hyper's path answers 414) and targets with a
    // fragment (hyper's URI drops it before routing) are hyper's.
    if !target.starts_with('/') || policy::check_target(target).is_err() || target.contains('#') {
        return Prepared::HandOff;
    }
    let mut host = None;
    let mut body_len: Option<u64> = None;
    let mut close = false;
    let mut has_id = false;
    let mut listed: [&[u8]; MAX_LISTED] = [&[]; MAX_LISTED];
    let mut listed_len = 0;
    let mut cookies: [&[u8]; MAX_COOKIE_FIELDS] = [&[]; MAX_COOKIE_FIELDS];
    let mut cookie_count = 0;
    for field in req.headers.iter() {
        let name = field.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("host") {
            match (host, std::str::from_utf8(field.value)) {
                // A host hyper's path would refuse is refused there (400).
                (None, Ok(value)) if policy::check_host(field.value).is_ok() => host = Some(value),
                _ => return Prepared::HandOff,
            }
        } else if is("content-length") {
            match (body_len, content_length(field.value)) {
                (None, Some(n)) => body_len = Some(n),
                // Repeated, even with the same value, or not a number: hyper's to judge.
                _ => return Prepared::HandOff,
            }
        } else if is("transfer-encoding") || is("upgrade") || is("expect") {
            return Prepared::HandOff;
        } else if is("connection") {
            for token in field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") || listed_len == MAX_LISTED {
                    return Prepared::HandOff;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                    listed[listed_len] = token;
                    listed_len += 1;
                }
            }
        } else if is("x-request-id") {
            has_id = true;
        } else if is("cookie") {
            if cookie_count == MAX_COOKIE_FIELDS {
                return Prepared::HandOff;
            }
            cookies[cookie_count] = field.value;
            cookie_count += 1;
        }
    }
    // HTTP/1.1 requires Host; hyper decides what to do without one.
    let Some(host) = host else { return Prepared::HandOff };
    let listed = &listed[..listed_len];

    let mut head = Vec::with_capacity(len + 192);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for field in req.headers.iter() {
        if !forward::request_field(field.name.as_bytes(), listed, rules) {
            continue;
        }
        head.extend_from_slice(field.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(field.value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(forwarded);
    if !host.is_empty() {
        head.extend_from_slice(b"x-forwarded-host: ");
        head.extend_from_slice(host.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !has_id {
        head.extend_from_slice(b"x-request-id: ");
        head.extend_from_slice(&request_id());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let parsed_method = hyper::Method::from_bytes(method.as_bytes());
    Prepared::Request(Request {
        len,
        method,
        host,
        path,
        close,
        idempotent: parsed_method.as_ref().is_ok_and(hyper::Method::is_idempotent),
        head_request: method == "HEAD",
        peer,
        upstream_head: head,
        body_len: body_len.unwrap_or(0),
        cookies,
        body_read: &buf[len..buf
            .len()
            .min(len.saturating_add(usize::try_from(body_len.unwrap_or(0)).unwrap_or(usize::MAX)))],
    })
}

/// A Content-Length value: digits only (no sign, no spaces inside, no list).
fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value
        .iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// Whether a route needs nothing the fast path leaves to `proxy`.
fn plain(route: &Route<'_>, host: &str, https_port: Option<u16>, scheme: Scheme) -> bool {
    let p = &route.policy;
    route.rewritten.is_none()
        && route.canary.is_none()
        && p.policy.backend_protocol == BackendProtocol::Http
        && !p.policy.needs_hyper()
        // On plain HTTP, a redirect to HTTPS, or a forced one without an HTTPS listener
        // (refused), is hyper's. A request that came over HTTPS is never redirected.
        && !(scheme == Scheme::Http
            && (https_port.is_some() || p.policy.force_ssl_redirect)
            && RouteTable::redirects_to_https(route, host))
}

enum Handled {
    /// Answered; the connection can carry the next request.
    Done,
    /// Answered (or cut short); the connection must close.
    Close,
    HandOff,
}

async fn handle<C: Client>(proxy: &Proxy, request: Request<'_>, stream: &mut C, scheme: Scheme) -> Handled {
    let started = Instant::now();
    let line = RequestLine {
        peer: request.peer,
        method: request.method,
        host: request.host,
        path: request.path,
    };
    // One table for the whole request, even if a reload swaps it meanwhile.
    let table = proxy.table.load_full();
    // A body still arriving would be taken for the next request: close after our answer.
    let close = request.close || request.streams_body();
    if table.is_alb_health_check(request.host) {
        // Without HSTS, as hyper's path answers it.
        return answer(stream, StatusCode::OK, "healthy", close, None, None).await;
    }
    // ingress-nginx's `hsts`: on every other HTTPS answer, ours or relayed, over any the
    // backend sent (as `Proxy::handle`).
    let hsts = match scheme {
        Scheme::Https => table.hsts.as_ref(),
        Scheme::Http => None,
    };
    let mut seen = Seen::default();
    let outcome = match policy::route_path(request.path) {
        Err(error) => Err(Failure::Proxy(error)),
        Ok(path) => match table.lookup(request.host, &path) {
            None => Err(Failure::Proxy(ProxyError::NoRoute)),
            // A host with client certificates (auth-tls-*) decides plain HTTP on hyper's path.
            Some(route)
                if !plain(&route, request.host, proxy.settings.https_port, scheme)
                    || table.client_auth_for(request.host).is_some() =>
            {
                return Handled::HandOff;
            }
            Some(route) => {
                seen.ingress = route.policy.ingress.clone();
                seen.service = route.backend.name.clone();
                // The client is the peer: a trusted proxy's connections are not on the fast path.
                match policy::admit(&route, request.peer.ip(), Some(request.body_len)) {
                    // The connection-limit slot is held until the exchange is over.
                    Ok(_slot) => {
                        let at = Exchange { started, scheme, hsts };
                        exchange(proxy, &route, &request, stream, &mut seen, at).await
                    }
                    Err(error) => Err(Failure::Proxy(error)),
                }
            }
        },
    };
    match outcome {
        Ok(relayed) => {
            proxy.record(seen, relayed.status, relayed.elapsed, &line, None);
            if relayed.close { Handled::Close } else { Handled::Done }
        }
        Err(Failure::Proxy(error)) => {
            let status = proxy.failed(&error, &seen, &line);
            proxy.record(seen, status.as_u16(), started.elapsed(), &line, Some(&error));
            // Never leak internals into the body: the reason phrase is enough.
            let reason = error.reason();
            let close = close || error.closes();
            answer(
                stream,
                status,
                status.canonical_reason().unwrap_or("error"),
                close,
                reason.as_deref(),
                hsts,
            )
            .await
        }
        Err(Failure::Client(error)) => {
            tracing::debug!(peer = %request.peer, %error, "client failed while sending its body");
            proxy.record(seen, StatusCode::BAD_REQUEST.as_u16(), started.elapsed(), &line, None);
            Handled::Close
        }
        Err(Failure::Cut { status, elapsed, error }) => {
            tracing::debug!(peer = %request.peer, %error, "response cut short");
            proxy.record(seen, status, elapsed, &line, None);
            Handled::Close
        }
    }
}

/// What was relayed: the status and the time to the response head, for metrics and the log.
struct Relayed {
    status: u16,
    elapsed: Duration,
    close: bool,
}

enum Failure {
    /// Nothing was sent to the client: it gets an error response.
    Proxy(ProxyError),
    /// The response was under way when the client or the backend failed; the client's
    /// connection is closed, as the only way left to say the response is incomplete.
    Cut {
        status: u16,
        elapsed: Duration,
        error: String,
    },
    /// The client went away or stalled while sending its body.
    Client(std::io::Error),
}

/// What an exchange needs to know of its request beyond the request itself.
struct Exchange<'t> {
    started: Instant,
    scheme: Scheme,
    /// The Strict-Transport-Security value of HTTPS answers.
    hsts: Option<&'t hyper::header::HeaderValue>,
}

/// Sends the request to an endpoint of the route (another one if connecting fails) and relays
/// the response.
async fn exchange<C: Client>(
    proxy: &Proxy,
    route: &Route<'_>,
    request: &Request<'_>,
    client: &mut C,
    seen: &mut Seen,
    at: Exchange<'_>,
) -> Result<Relayed, Failure> {
    let Exchange { started, scheme, hsts } = at;
    let backend = route.backend;
    let policy = &route.policy.policy;
    let no_endpoint = || Failure::Proxy(ProxyError::NoEndpoint(backend.name.clone()));
    let affinity = policy.affinity.as_ref();
    let sticky = affinity
        .and_then(|a| request.cookie(&a.name))
        .and_then(|value| sticky_endpoint(backend, value));
    let mut index = match sticky {
        Some(index) => index,
        None => backend.pick().ok_or_else(no_endpoint)?,
    };
    let mut in_flight = InFlight::new(backend, index);
    let attempts = if request.idempotent && request.body_len == 0 {
        backend.endpoints.len().min(MAX_ATTEMPTS)
    } else {
        1
    };
    let mut attempt = 1;
    let (endpoint, mut conn, head, head_at) = loop {
        let endpoint = backend.endpoints[index];
        seen.upstream = Some(endpoint);
        let sent = if attempt == 1 { started } else { Instant::now() };
        match send(proxy, endpoint, request, policy, client, hsts.is_some()).await {
            Ok((conn, head)) => {
                let now = Instant::now();
                in_flight.finished(Some(now - sent));
                break (endpoint, conn, head, now);
            }
            Err(Sent::Upstream(e)) if e.is_connect() && attempt < attempts => {
                in_flight.finished(None);
                tracing::debug!(%endpoint, error = %e, "connect failed; retrying on another endpoint");
                index = backend.pick_other(index).ok_or_else(no_endpoint)?;
                in_flight.moved(index);
                attempt += 1;
            }
            // The client's fault: no outcome for the endpoint (the guard gives its count back).
            Err(Sent::Client(e)) => return Err(Failure::Client(e)),
            Err(Sent::Upstream(e)) => {
                in_flight.finished(None);
                return Err(Failure::Proxy(ProxyError::Upstream(endpoint, e)));
            }
        }
    };
    let elapsed = head_at - started;
    let cut = |error: String| Failure::Cut {
        status: head.status,
        elapsed,
        error,
    };
    let close = request.close || head.framing == Framing::UntilClose;
    let mut out = head.client_head;
    if let Some(affinity) = affinity
        && sticky.is_none()
    {
        add_field(
            &mut out,
            "set-cookie",
            &affinity_cookie(affinity, &endpoint, scheme == Scheme::Https),
        );
    }
    if let Some(hsts) = hsts.and_then(|v| v.to_str().ok()) {
        add_field(&mut out, "strict-transport-security", hsts);
    }
    if close {
        add_field(&mut out, "connection", "close");
    }
    let read_timeout = policy.read_timeout;
    // The first piece of the body usually came with the head: one write for both.
    let mut reusable = head.reusable;
    match head.framing {
        Framing::Empty => {
            write(client, &out).await.map_err(|e| cut(e.to_string()))?;
        }
        Framing::Length(length) => {
            let mut left = length;
            let take = conn.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            out.extend_from_slice(&conn.buf[..take]);
            conn.buf.advance(take);
            left -= take as u64;
            write(client, &out).await.map_err(|e| cut(e.to_string()))?;
            while left > 0 {
                read_more(&mut conn, read_timeout)
                    .await
                    .map_err(|e| cut(e.to_string()))?;
                let take = conn.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                write(client, &conn.buf[..take]).await.map_err(|e| cut(e.to_string()))?;
                conn.buf.advance(take);
                left -= take as u64;
            }
        }
        Framing::Chunked(mut chunks) => {
            let take = chunks.feed(&conn.buf).map_err(|e| cut(e.to_string()))?;
            out.extend_from_slice(&conn.buf[..take]);
            conn.buf.advance(take);
            write(client, &out).await.map_err(|e| cut(e.to_string()))?;
            while !chunks.done() {
                read_more(&mut conn, read_timeout)
                    .await
                    .map_err(|e| cut(e.to_string()))?;
                let take = chunks.feed(&conn.buf).map_err(|e| cut(e.to_string()))?;
                write(client, &conn.buf[..take]).await.map_err(|e| cut(e.to_string()))?;
                conn.buf.advance(take);
            }
        }
        Framing::UntilClose => {
            reusable = false;
            out.extend_from_slice(&conn.buf);
            conn.buf.clear();
            write(client, &out).await.map_err(|e| cut(e.to_string()))?;
            loop {
                match read_more(&mut conn, read_timeout).await {
                    Ok(()) => {}
                    Err(UpstreamError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(cut(e.to_string())),
                }
                write(client, &conn.buf).await.map_err(|e| cut(e.to_string()))?;
                conn.buf.clear();
            }
        }
    }
    // Anything after the response is a protocol error of the backend's; the connection is
    // not trusted with another request.
    if reusable && conn.buf.is_empty() {
        proxy.fast.release(endpoint, conn);
    }
    Ok(Relayed {
        status: head.status,
        elapsed,
        close,
    })
}

/// Adds a field at the end of a head (before its empty line). A value with control characters
/// is not added (ours are checked when annotations are parsed; this keeps it so).
fn add_field(head: &mut Vec<u8>, name: &str, value: &str) {
    if value.bytes().any(|b| b.is_ascii_control()) {
        return;
    }
    head.truncate(head.len() - 2);
    for part in [name, ": ", value, "\r\n\r\n"] {
        head.extend_from_slice(part.as_bytes());
    }
}

/// Writes the request head on a pooled (or new) connection to `endpoint` and reads the
/// response head. A pooled connection the backend had already closed is replaced by a new one
/// for an idempotent request, as it cannot have been processed.
async fn send<C: Client>(
    proxy: &Proxy,
    endpoint: SocketAddr,
    request: &Request<'_>,
    policy: &crate::annotations::Policy,
    client: &mut C,
    hsts: bool,
) -> Result<(Conn, ResponseHead), Sent> {
    let mut conn = proxy.fast.get(endpoint, policy.connect_timeout).await?;
    // Sending again needs the whole request at hand: not the case once its body is streamed.
    let replayable = request.idempotent && !request.streams_body();
    loop {
        match round_trip(&mut conn, request, policy, client, hsts).await {
            Ok(head) => return Ok((conn, head)),
            Err(RoundTrip::Stale(_)) if conn.reused && replayable => {
                conn = proxy.fast.connect(endpoint, policy.connect_timeout).await?;
            }
            Err(RoundTrip::Stale(e) | RoundTrip::Failed(e)) => return Err(Sent::Upstream(e)),
            Err(RoundTrip::Client(e)) => return Err(Sent::Client(e)),
        }
    }
}

/// Why a request did not get a response head.
enum Sent {
    Upstream(UpstreamError),
    Client(std::io::Error),
}

impl From<UpstreamError> for Sent {
    fn from(e: UpstreamError) -> Self {
        Sent::Upstream(e)
    }
}

enum RoundTrip {
    /// The connection failed before any byte of a response: closed by the backend while idle.
    Stale(UpstreamError),
    Failed(UpstreamError),
    /// Reading the rest of the body from the client failed.
    Client(std::io::Error),
}

impl From<Trip> for RoundTrip {
    fn from(trip: Trip) -> Self {
        match trip {
            Trip::Stale(e) => RoundTrip::Stale(e),
            Trip::Failed(e) => RoundTrip::Failed(e),
        }
    }
}

/// `hsts`: the backend's Strict-Transport-Security is left out, as ours replaces it.
async fn round_trip<C: Client>(
    conn: &mut Conn,
    request: &Request<'_>,
    policy: &crate::annotations::Policy,
    client: &mut C,
    hsts: bool,
) -> Result<ResponseHead, RoundTrip> {
    let send = policy.send_timeout;
    if request.body_read.is_empty() {
        write_within(&mut conn.stream, &request.upstream_head, send).await
    } else {
        // The head and the body that came with it, in one write.
        let mut out = Vec::with_capacity(request.upstream_head.len() + request.body_read.len());
        out.extend_from_slice(&request.upstream_head);
        out.extend_from_slice(request.body_read);
        write_within(&mut conn.stream, &out, send).await
    }
    .map_err(|e| write_failed(e, send))?;
    if request.streams_body() {
        let mut left = request.body_len - request.body_read.len() as u64;
        let mut chunk = BytesMut::with_capacity(pool::READ_BUFFER);
        while left > 0 {
            chunk.clear();
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(pool::READ_BUFFER);
            let mut limited = (&mut *client).take(want as u64);
            match tokio::time::timeout(CLIENT_BODY_TIMEOUT, limited.read_buf(&mut chunk)).await {
                Ok(Ok(0)) => return Err(RoundTrip::Client(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(n)) => left -= n as u64,
                Ok(Err(e)) => return Err(RoundTrip::Client(e)),
                Err(_) => return Err(RoundTrip::Client(std::io::ErrorKind::TimedOut.into())),
            }
            write_within(&mut conn.stream, &chunk, send)
                .await
                // Part of the body is gone: not a request that can be sent again.
                .map_err(|e| RoundTrip::Failed(write_failed(e, send).into_error()))?;
        }
    }
    // 1xx before the real response (103 Early Hints): passed on with it.
    let mut interim = Vec::new();
    let parse = |buf: &[u8]| parse_response(buf, request.head_request, hsts);
    let more = |early: ResponseHead| interim.extend_from_slice(&early.client_head);
    let mut head = read_final_head(conn, policy.read_timeout, parse, more).await?;
    if !interim.is_empty() {
        interim.append(&mut head.client_head);
        head.client_head = interim;
    }
    Ok(head)
}

/// How a round trip to a backend failed, for whether the request may be sent again.
enum Trip {
    /// Nothing came back on a reused connection: the backend had closed it while idle, so the
    /// request cannot have been processed.
    Stale(UpstreamError),
    Failed(UpstreamError),
}

impl Trip {
    fn into_error(self) -> UpstreamError {
        match self {
            Trip::Stale(e) | Trip::Failed(e) => e,
        }
    }
}

/// An I/O error before any byte of the response: `Stale` when it says the backend had closed
/// the connection.
fn stale_or_failed(e: std::io::Error) -> Trip {
    if pool::is_stale(&e) {
        Trip::Stale(UpstreamError::Io(e))
    } else {
        Trip::Failed(UpstreamError::Io(e))
    }
}

/// Writing (part of) a request failed: within `send`, or the backend took nothing for that long.
fn write_failed(e: std::io::Error, send: Duration) -> Trip {
    if e.kind() == std::io::ErrorKind::TimedOut {
        Trip::Failed(UpstreamError::SendTimeout(send))
    } else {
        stale_or_failed(e)
    }
}

/// A response head as [`read_final_head`] needs to see it.
trait ParsedHead {
    /// Its length in the backend's bytes.
    fn len(&self) -> usize;
    /// A 1xx other than 101: another head follows.
    fn interim(&self) -> bool;
}

impl ParsedHead for ResponseHead {
    fn len(&self) -> usize {
        self.len
    }
    fn interim(&self) -> bool {
        self.interim
    }
}

/// Reads the backend's final response head from `conn` once the request is sent, each head
/// parsed and checked by `parse` (`None` while incomplete); up to [`MAX_INTERIM`] interim
/// ones before it go to `on_interim`. Each head is bounded by [`MAX_HEADER_BYTES`]. The
/// connection ending before any byte of a response is [`Trip::Stale`].
async fn read_final_head<H: ParsedHead>(
    conn: &mut Conn,
    read_timeout: Duration,
    parse: impl Fn(&[u8]) -> Result<Option<H>, UpstreamError>,
    mut on_interim: impl FnMut(H),
) -> Result<H, Trip> {
    let mut interims = 0;
    loop {
        let parsed = if conn.buf.is_empty() {
            Ok(None)
        } else {
            parse(&conn.buf)
        };
        match parsed {
            Ok(Some(head)) if head.interim() => {
                interims += 1;
                if interims > MAX_INTERIM {
                    let invalid = format!("more than {MAX_INTERIM} interim responses");
                    return Err(Trip::Failed(UpstreamError::Invalid(invalid)));
                }
                conn.buf.advance(head.len());
                on_interim(head);
                continue;
            }
            Ok(Some(head)) => {
                conn.buf.advance(head.len());
                return Ok(head);
            }
            Ok(None) if conn.buf.len() < MAX_HEADER_BYTES => {}
            Ok(None) => return Err(Trip::Failed(UpstreamError::Invalid("response head too large".into()))),
            Err(e) => return Err(Trip::Failed(e)),
        }
        let nothing_yet = conn.buf.is_empty() && interims == 0;
        match read_more(conn, read_timeout).await {
            Ok(()) => {}
            Err(UpstreamError::Io(e)) if nothing_yet => return Err(stale_or_failed(e)),
            Err(e) => return Err(Trip::Failed(e)),
        }
    }
}

/// Reads what the backend sent next, within the read timeout; the end of the stream is an
/// `UnexpectedEof` error.
async fn read_more(conn: &mut Conn, timeout: Duration) -> Result<(), UpstreamError> {
    if conn.buf.capacity() - conn.buf.len() < pool::READ_BUFFER / 4 {
        conn.buf.reserve(pool::READ_BUFFER);
    }
    match tokio::time::timeout(timeout, conn.stream.read_buf(&mut conn.buf)).await {
        Ok(Ok(0)) => Err(UpstreamError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(UpstreamError::Io(e)),
        Err(_) => Err(UpstreamError::ReadTimeout(timeout)),
    }
}

async fn write<C: Client>(client: &mut C, bytes: &[u8]) -> std::io::Result<()> {
    write_within(client, bytes, CLIENT_SEND_TIMEOUT).await
}

/// Writes all of `bytes`, failing with `TimedOut` if the peer accepts nothing for `timeout`.
/// Flushed: over TLS, what rustls has encrypted but the socket has not taken yet is sent
/// before this returns (nothing else would send it while the connection waits to read).
async fn write_within<C: Client>(stream: &mut C, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
    // Usually the socket takes it all at once: no timer needed.
    let bytes = match stream.try_write(bytes) {
        Ok(n) if n == bytes.len() => return Ok(()),
        Ok(n) => &bytes[n..],
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => bytes,
        Err(e) => return Err(e),
    };
    let written = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, written).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// A small plain-text response of our own, as `proxy::own_answer` makes for hyper.
async fn answer<C: Client>(
    client: &mut C,
    status: StatusCode,
    body: &str,
    close: bool,
    reason: Option<&str>,
    hsts: Option<&hyper::header::HeaderValue>,
) -> Handled {
    let mut out = Vec::with_capacity(160 + body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\ndate: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len() + 1,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        if close { "connection: close\r\n" } else { "" },
    );
    if let Some(reason) = reason {
        add_field(&mut out, "x-mzlb-reason", reason);
    }
    if let Some(hsts) = hsts.and_then(|v| v.to_str().ok()) {
        add_field(&mut out, "strict-transport-security", hsts);
    }
    let _ = writeln!(out, "{body}");
    match write(client, &out).await {
        Ok(()) if !close => Handled::Done,
        Ok(()) => {
            linger(client).await;
            Handled::Close
        }
        Err(_) => Handled::Close,
    }
}

/// How long, and how much, a closing connection's unread input is read and thrown away.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// After an answer that closes the connection while the client may still be sending (a body
/// we refused to read), our side is shut and the rest read and discarded for a moment: closed
/// with unread bytes, the kernel would reset the connection and the client could lose the
/// answer (nginx's lingering close).
async fn linger<C: Client>(client: &mut C) {
    let _ = tokio::time::timeout(LINGER, client.shutdown()).await;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    let mut read = 0;
    while read < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, client.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
}

/// A backend's response head, with the head the client gets already built.
#[derive(Debug)]
struct ResponseHead {
    len: usize,
    status: u16,
    /// A 1xx other than 101: another head follows.
    interim: bool,
    framing: Framing,
    /// The backend keeps the connection open after this response.
    reusable: bool,
    client_head: Vec<u8>,
}

/// What a response head says about the message it starts.
#[derive(Debug)]
struct HeadFacts {
    len: usize,
    status: u16,
    /// A 1xx other than 101: another head follows.
    interim: bool,
    framing: Framing,
    /// The backend keeps the connection open after this response.
    reusable: bool,
}

/// Parses a response head; `None` while incomplete. With `hsts`, the backend's
/// Strict-Transport-Security is left out of the client's head (ours replaces it).
fn parse_response(buf: &[u8], head_request: bool, hsts: bool) -> Result<Option<ResponseHead>, UpstreamError> {
    let parsed = parse_head(buf, head_request, |resp, listed, framing, len| {
        let keep_encoding = matches!(framing, Framing::Chunked(_));
        let mut head = Vec::with_capacity(len + 32);
        // httparse accepts three-digit status codes only.
        let status = resp.code.unwrap_or_default();
        let digits = [
            b'0' + (status / 100 % 10) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(&digits);
        head.push(b' ');
        head.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
        head.extend_from_slice(b"\r\n");
        for field in resp.headers.iter() {
            let name = field.name;
            // Hop-by-hop fields stay with the backend's connection; a chunked body is relayed
            // as it is, so its Transfer-Encoding goes with it.
            let kept = if name.eq_ignore_ascii_case("transfer-encoding") {
                keep_encoding
            } else if hsts && name.eq_ignore_ascii_case("strict-transport-security") {
                false
            } else {
                forward::response_field(name.as_bytes(), listed)
            };
            if !kept {
                continue;
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(field.value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        Ok(head)
    })?;
    Ok(parsed.map(|(facts, client_head)| ResponseHead {
        len: facts.len,
        status: facts.status,
        interim: facts.interim,
        framing: facts.framing,
        reusable: facts.reusable,
        client_head,
    }))
}

/// Parses and checks a response head (`None` while incomplete) and hands its fields, the
/// names its Connection field lists, its framing and its length to `build`, which makes what the caller
/// passes on: the client's head (fast path) or a response for hyper's server
/// ([`backend`]).
fn parse_head<R>(
    buf: &[u8],
    head_request: bool,
    build: impl FnOnce(&httparse::Response<'_, '_>, &[&[u8]], &Framing, usize) -> Result<R, UpstreamError>,
) -> Result<Option<(HeadFacts, R)>, UpstreamError> {
    let invalid = |what: &str| UpstreamError::Invalid(what.to_owned());
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(UpstreamError::Invalid(e.to_string())),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(invalid("no status line"));
    };
    if status == 101 {
        return Err(invalid("101 Switching Protocols without an upgrade request"));
    }
    let interim = (100..200).contains(&status);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked.
    let mut reusable = version == 1;
    let mut listed: [&[u8]; MAX_LISTED] = [&[]; MAX_LISTED];
    let mut listed_len = 0;
    for field in resp.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(field.value.trim_ascii())
                .ok()
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| invalid("bad Content-Length"))?;
            if length.is_some_and(|l| l != value) {
                return Err(invalid("conflicting Content-Length"));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the final coding; otherwise the body runs to the close.
            let last = field.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    reusable |= version == 0;
                } else if !token.is_empty() {
                    if listed_len == MAX_LISTED {
                        return Err(invalid("too many names in Connection"));
                    }
                    listed[listed_len] = token;
                    listed_len += 1;
                }
            }
        }
    }
    let no_body = interim || head_request || status == 204 || status == 304;
    let framing = match (chunked, length) {
        _ if no_body => Framing::Empty,
        (Some(_), Some(_)) => return Err(invalid("both Transfer-Encoding and Content-Length")),
        (Some(true), None) if version == 1 => Framing::Chunked(Chunks::default()),
        (Some(_), None) => Framing::UntilClose,
        (None, Some(0)) => Framing::Empty,
        (None, Some(length)) => Framing::Length(length),
        (None, None) => Framing::UntilClose,
    };
    let built = build(&resp, &listed[..listed_len], &framing, len)?;
    let facts = HeadFacts {
        len,
        status,
        interim,
        framing,
        reusable,
    };
    Ok(Some((facts, built)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: forward::Rules = forward::Rules {
        trusted: false,
        underscores: false,
    };

    fn prepared(raw: &str) -> Option<String> {
        let peer = "127.0.0.77:5000".parse().unwrap();
        let local = "127.0.10.2:8080".parse().unwrap();
        match prepare(
            raw.as_bytes(),
            peer,
            &forwarded_fields(peer, local, Scheme::Http),
            RULES,
        ) {
            Prepared::Request(r) => {
                assert_eq!(r.len, raw.find("\r\n\r\n").unwrap() + 4);
                Some(String::from_utf8(r.upstream_head).unwrap())
            }
            Prepared::HandOff => None,
            Prepared::Incomplete => Some("incomplete".into()),
        }
    }

    #[test]
    fn spare_buffers_come_back_whole_and_are_handed_out_again() {
        let spare = Spare::default();
        let mut buf = spare.take();
        let at = buf.as_ptr();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        buf.advance(buf.len());
        spare.give(buf);
        assert_eq!(spare.0.lock().unwrap().len(), 1, "kept");
        let again = spare.take();
        assert_eq!(again.as_ptr(), at, "the same allocation");
        assert!(again.is_empty() && again.capacity() >= CLIENT_READ);
        // A buffer grown for a huge head is freed, not kept.
        let mut big = BytesMut::with_capacity(MAX_HEADER_BYTES);
        big.extend_from_slice(b"x");
        spare.give(big);
        assert_eq!(spare.0.lock().unwrap().len(), 0);
    }

    #[test]
    fn the_upstream_head_has_our_forwarding_headers_and_no_hop_by_hop_ones() {
        let head = prepared(
            "GET /a?b=1 HTTP/1.1\r\nHost: demo.test:8080\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
             Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Request-ID: abc\r\n\
             Accept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            head,
            "GET /a?b=1 HTTP/1.1\r\nHost: demo.test:8080\r\nX-Request-ID: abc\r\nAccept: */*\r\n\
             x-forwarded-for: 127.0.0.77\r\nx-real-ip: 127.0.0.77\r\nx-forwarded-proto: http\r\n\
             x-forwarded-port: 8080\r\nx-forwarded-host: demo.test:8080\r\n\r\n"
        );
        let head = prepared("GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let id = head.split("x-request-id: ").nth(1).unwrap();
        assert_eq!(id.find('\r'), Some(32), "a request ID is generated: {head}");
    }

    #[test]
    fn connection_cannot_remove_framing_host_or_forwarding_fields() {
        let smuggled = "GET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n";
        let raw = format!(
            "POST / HTTP/1.1\r\nHost: h.test\r\nConnection: content-length, host, x-forwarded-for, x-other\r\n\
             Content-Length: {}\r\nX-Other: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n{smuggled}",
            smuggled.len()
        );
        let head = prepared(&raw).unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", smuggled.len())),
            "{head}"
        );
        assert!(head.contains("Host: h.test\r\n"), "{head}");
        assert!(head.contains("x-forwarded-for: 127.0.0.77\r\n"), "{head}");
        assert!(!head.contains("6.6.6.6") && !head.contains("X-Other"), "{head}");
    }

    #[test]
    fn the_forwarding_family_and_underscore_names_are_dropped() {
        let head = prepared(
            "GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-Ssl: on\r\n\
             X-Forwarded-Scheme: https\r\nX-Forwarded-Prefix: /evil\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Port: 443\r\nX-Forwarded-Host: evil\r\nX_Forwarded_For: 6.6.6.6\r\n\
             Transfer_Encoding: chunked\r\nHTTP2-Settings: AAA\r\nX-Request-ID: id\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nHost: h\r\nX-Request-ID: id\r\nx-forwarded-for: 127.0.0.77\r\n\
             x-real-ip: 127.0.0.77\r\nx-forwarded-proto: http\r\nx-forwarded-port: 8080\r\n\
             x-forwarded-host: h\r\n\r\n"
        );
    }

    #[test]
    fn requests_the_fast_path_does_not_take_go_to_hyper() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost x\r\n\r\n",
            &format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(policy::MAX_TARGET)),
        ] {
            assert_eq!(prepared(raw), None, "{raw}");
        }
        assert_eq!(prepared("GET / HTTP/1.1\r\nHost: x\r\n").as_deref(), Some("incomplete"));
        assert!(prepared("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").is_some());
    }

    #[test]
    fn a_body_is_taken_as_far_as_it_came_with_the_head() {
        let peer = "127.0.0.77:5000".parse().unwrap();
        let fields = forwarded_fields(peer, "127.0.10.2:8080".parse().unwrap(), Scheme::Http);
        let head = "POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
        for (raw, read, streams) in [
            (format!("{head}hel"), "hel", true),
            (format!("{head}hello"), "hello", false),
            // Pipelined: the next request is not part of the body.
            (format!("{head}helloGET / HTTP/1.1\r\n"), "hello", false),
        ] {
            let Prepared::Request(r) = prepare(raw.as_bytes(), peer, &fields, RULES) else {
                panic!("not taken: {raw}");
            };
            assert_eq!(
                (r.body_len, r.body_read, r.streams_body()),
                (5, read.as_bytes(), streams)
            );
            assert_eq!(r.consumed(), head.len() + read.len());
            assert!(
                String::from_utf8(r.upstream_head)
                    .unwrap()
                    .contains("Content-Length: 5\r\n")
            );
        }
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"99999999999999999999"), None);
        assert_eq!(content_length(b""), None);
    }

    #[test]
    fn cookies_are_found_in_every_cookie_field() {
        let peer = "127.0.0.77:5000".parse().unwrap();
        let fields = forwarded_fields(peer, "127.0.10.2:8080".parse().unwrap(), Scheme::Http);
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; route=abc\r\nCookie: x=2\r\n\r\n";
        let Prepared::Request(r) = prepare(raw.as_bytes(), peer, &fields, RULES) else {
            panic!("not taken");
        };
        assert_eq!(
            (r.cookie("route"), r.cookie("x"), r.cookie("rout")),
            (Some("abc"), Some("2"), None)
        );
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "Cookie: a=1\r\n".repeat(5));
        assert!(matches!(
            prepare(many.as_bytes(), peer, &fields, RULES),
            Prepared::HandOff
        ));
    }

    fn response(raw: &str, head_request: bool) -> Result<ResponseHead, String> {
        parse_response(raw.as_bytes(), head_request, false)
            .map_err(|e| e.to_string())
            .map(|h| h.expect("complete"))
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap();
        assert_eq!((r.framing, r.reusable, r.len), (Framing::Length(5), true, 38));
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!(r.framing, Framing::Empty, "HEAD");
        for status in ["204 No Content", "304 Not Modified"] {
            let r = response(&format!("HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\n"), false).unwrap();
            assert_eq!(r.framing, Framing::Empty, "{status}");
        }
        let r = response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false).unwrap();
        assert!(matches!(r.framing, Framing::Chunked(_)));
        assert!(
            String::from_utf8(r.client_head)
                .unwrap()
                .contains("Transfer-Encoding: chunked\r\n")
        );
        let r = response("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false).unwrap();
        assert_eq!((r.framing, r.reusable), (Framing::UntilClose, false));
        let r = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!r.reusable, "HTTP/1.0 closes by default");
        let r = response(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(r.reusable);
        let r = response("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false).unwrap();
        assert!(r.interim && r.framing == Framing::Empty);
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(response(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_gets_the_response_head_without_hop_by_hop_fields() {
        let r = response(
            "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
            false,
        )
        .unwrap();
        assert_eq!(r.framing, Framing::Length(5));
        assert_eq!(
            String::from_utf8(r.client_head).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            "a listed Content-Length is the framing: kept"
        );
        let r = response(
            "HTTP/1.1 404 Nope\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
             Content-Length: 0\r\nX-Kept: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r.client_head).unwrap(),
            "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\nX-Kept: 1\r\n\r\n"
        );
    }
}
