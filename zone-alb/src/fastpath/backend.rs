//! The upstream leg of HTTP/2 clients' requests to plain HTTP/1.1 backends, over the fast
//! path's pooled connections. hyper's server parses the request and `proxy` applies its policy
//! as for any request; only the exchange with the backend is done here, as the fast path does
//! it: the request head in one write, the response head parsed and checked as the fast path
//! parses it, and the body read on the request's own task, where hyper's HTTP/1.1 client adds
//! a task per backend connection and a channel each way (README, "HTTP/2's upstream leg", has
//! what that saved).
//!
//! Only requests that can be sent again and carry no body (GET and HEAD, no upgrade) come
//! here; the rest keep hyper's client (`upstream`), which streams bodies and splices upgrades.
//! A chunked response's trailer fields are passed on as HTTP/2 trailers, as hyper's client
//! passes them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Sleep;

use super::framing::{Chunks, Framing};
use super::pool::{self, Conn, Idle, Pool};
use super::{HeadFacts, ParsedHead, Trip, parse_head, read_final_head, write_failed, write_within};
use crate::proxy::{Body, BoxError, empty, full};
use crate::server::MAX_HEADER_BYTES;
use crate::upstream::{Timeouts, UpstreamError};

/// Body pieces up to this size are copied out of the connection's buffer, which then serves
/// the next read as it is; larger ones are handed over without a copy.
const COPY_BELOW: usize = 4096;

/// Whether a request of this method, without a body, is sent here rather than by hyper's
/// client.
pub(crate) fn takes(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Sends `req` (origin-form URI, Host set, fields already filtered for the backend; its body
/// is not sent) to `addr` and returns the response, whose body gives the connection back to
/// the pool when it ends. A pooled connection the backend had closed is replaced by a new
/// one, as the request cannot have been processed.
pub(crate) async fn send<B>(
    pool: &Pool,
    addr: SocketAddr,
    req: &Request<B>,
    t: Timeouts,
) -> Result<Response<Body>, UpstreamError> {
    let head = request_head(req);
    let head_request = req.method() == Method::HEAD;
    let mut conn = pool.get(addr, t.connect).await?;
    loop {
        match round_trip(&mut conn, &head, head_request, t).await {
            Ok((facts, resp)) => return Ok(respond(pool.idle(), addr, conn, facts, resp, t.read)),
            Err(Trip::Stale(_)) if conn.reused => conn = pool.connect(addr, t.connect).await?,
            Err(Trip::Stale(e) | Trip::Failed(e)) => return Err(e),
        }
    }
}

/// The HTTP/1.1 request head. Field values are `HeaderValue`s, which hold no CR, LF or NUL;
/// framing fields are left out, as no body follows.
fn request_head<B>(req: &Request<B>) -> Vec<u8> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(256);
    for part in [req.method().as_str(), " ", target, " HTTP/1.1\r\n"] {
        head.extend_from_slice(part.as_bytes());
    }
    for (name, value) in req.headers() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

impl ParsedHead for (HeadFacts, Response<()>) {
    fn len(&self) -> usize {
        self.0.len
    }
    fn interim(&self) -> bool {
        self.0.interim
    }
}

/// Writes the request head and reads the final response head (interim ones are dropped:
/// hyper's server has no way to pass them on).
async fn round_trip(
    conn: &mut Conn,
    head: &[u8],
    head_request: bool,
    t: Timeouts,
) -> Result<(HeadFacts, Response<()>), Trip> {
    write_within(&mut conn.stream, head, t.send)
        .await
        .map_err(|e| write_failed(e, t.send))?;
    let parse = |buf: &[u8]| parse_head(buf, head_request, response);
    read_final_head(conn, t.read, parse, drop).await
}

/// The head as hyper's server takes it: every field the backend sent (hop-by-hop ones are
/// removed by the caller, as from hyper's client's responses).
fn response(
    parsed: &httparse::Response<'_, '_>,
    _listed: &[&[u8]],
    _framing: &Framing,
    _len: usize,
) -> Result<Response<()>, UpstreamError> {
    let invalid = |what: String| UpstreamError::Invalid(what);
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| invalid("bad status".into()))?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| invalid(format!("bad field name {:?}", field.name)))?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| invalid(format!("bad value of {name}")))?;
        headers.append(name, value);
    }
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// The response with its body: whole at once when it came with the head (the connection goes
/// back to the pool before the response is even passed on), else read as the client takes it.
fn respond(
    idle: Weak<Idle>,
    addr: SocketAddr,
    mut conn: Conn,
    facts: HeadFacts,
    resp: Response<()>,
    read: Duration,
) -> Response<Body> {
    let release = |conn: Conn| give_back(&idle, addr, conn, facts.reusable);
    let body = match facts.framing {
        Framing::Empty => {
            release(conn);
            empty()
        }
        Framing::Length(length) if conn.buf.len() as u64 >= length => {
            let data = take(&mut conn.buf, length as usize);
            release(conn);
            full(data)
        }
        framing => {
            let reusable = facts.reusable;
            Relay {
                conn: Some(conn),
                framing,
                trailer: Vec::new(),
                trailers: None,
                reusable,
                idle: idle.clone(),
                addr,
                read,
                stalled: None,
            }
            .boxed()
        }
    };
    resp.map(|()| body)
}

/// Parks a connection whose response has ended, unless the backend closes it or sent bytes
/// after the response: that is a protocol error of the backend's, and the connection is not
/// trusted with another request.
fn give_back(idle: &Weak<Idle>, addr: SocketAddr, conn: Conn, reusable: bool) {
    if reusable
        && conn.buf.is_empty()
        && let Some(idle) = idle.upgrade()
    {
        idle.release(addr, conn);
    }
}

fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

/// A response body read from the backend's connection as the client's stream takes it.
/// Dropped before its end, the connection goes with it (its state is unknown).
struct Relay {
    /// `None` once the body has ended or failed.
    conn: Option<Conn>,
    framing: Framing,
    /// A chunked body's trailer section as read so far.
    trailer: Vec<u8>,
    /// Its fields, once the body has ended, until they are passed on.
    trailers: Option<HeaderMap>,
    reusable: bool,
    idle: Weak<Idle>,
    addr: SocketAddr,
    read: Duration,
    /// Running while the backend keeps us waiting for the next piece of the body.
    stalled: Option<Pin<Box<Sleep>>>,
}

/// What the bytes already read give.
enum Step {
    Data(Bytes),
    /// The body has ended.
    Done,
    /// More must be read.
    More,
}

impl Relay {
    /// The body has ended: its trailer fields are kept for the client, the connection goes
    /// back to the pool.
    fn finish(&mut self) {
        self.trailers = trailer_fields(&self.trailer);
        if let Some(conn) = self.conn.take() {
            give_back(&self.idle, self.addr, conn, self.reusable);
        }
    }

    fn fail(&mut self, error: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

/// The next piece of body in `buf`, as `framing` delimits it (chunked encoding taken off, its
/// trailer section kept in `trailer`).
fn next(framing: &mut Framing, buf: &mut BytesMut, trailer: &mut Vec<u8>) -> Result<Step, UpstreamError> {
    match framing {
        Framing::Empty | Framing::Length(0) => Ok(Step::Done),
        _ if buf.is_empty() => Ok(Step::More),
        Framing::Length(left) => {
            let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            *left -= n as u64;
            Ok(Step::Data(take(buf, n)))
        }
        Framing::UntilClose => Ok(Step::Data(take(buf, buf.len()))),
        Framing::Chunked(chunks) => loop {
            if chunks.done() {
                return Ok(Step::Done);
            }
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let due = chunks.data_due();
            if due > 0 {
                let n = buf.len().min(usize::try_from(due).unwrap_or(usize::MAX));
                chunks
                    .feed(&buf[..n])
                    .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
                return Ok(Step::Data(take(buf, n)));
            }
            framing_byte(chunks, buf, trailer)?;
        },
    }
}

/// Takes one framing byte (a chunk size, a CRLF, the trailer section) of `buf`; there are
/// few, and one at a time they stop where data begins.
fn framing_byte(chunks: &mut Chunks, buf: &mut BytesMut, trailer: &mut Vec<u8>) -> Result<(), UpstreamError> {
    let in_trailers = chunks.in_trailers();
    if in_trailers && trailer.len() >= MAX_HEADER_BYTES {
        return Err(UpstreamError::Invalid("trailer section too large".into()));
    }
    chunks
        .feed(&buf[..1])
        .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
    if in_trailers {
        trailer.push(buf[0]);
    }
    buf.advance(1);
    Ok(())
}

/// The fields of a trailer section (`None` for an empty one or one that does not parse, which
/// is dropped: the body itself was whole). Framing and hop-by-hop fields stay behind.
fn trailer_fields(section: &[u8]) -> Option<HeaderMap> {
    if section.len() <= 2 {
        return None;
    }
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let Ok(httparse::Status::Complete((_, fields))) = httparse::parse_headers(section, &mut fields) else {
        return None;
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields.iter() {
        let name = field.name.as_bytes();
        let framing = [&b"content-length"[..], b"transfer-encoding", b"host"]
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name));
        if framing || !crate::policy::forward::response_field(name, &[]) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(field.value)) {
            map.append(name, value);
        }
    }
    (!map.is_empty()).then_some(map)
}

/// Whether the body has ended, once the framing bytes already read (a chunked body's last
/// chunk and trailers) are taken. Bad framing is left for `next` to report.
fn ended(framing: &mut Framing, buf: &mut BytesMut, trailer: &mut Vec<u8>) -> bool {
    match framing {
        Framing::Empty | Framing::Length(0) => true,
        Framing::Length(_) | Framing::UntilClose => false,
        Framing::Chunked(chunks) => {
            while !chunks.done() && chunks.data_due() == 0 && !buf.is_empty() {
                if framing_byte(chunks, buf, trailer).is_err() {
                    return false;
                }
            }
            chunks.done()
        }
    }
}

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match next(&mut this.framing, &mut conn.buf, &mut this.trailer) {
                Ok(Step::Data(data)) => {
                    // Ended with this piece: the connection goes back now, and the stream can
                    // end with its last data.
                    if ended(&mut this.framing, &mut conn.buf, &mut this.trailer) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                Ok(Step::More) => {}
                Err(e) => return this.fail(e),
            }
            if conn.buf.capacity() - conn.buf.len() < pool::READ_BUFFER / 4 {
                conn.buf.reserve(pool::READ_BUFFER);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf) {
                Poll::Ready(Ok(0)) if matches!(this.framing, Framing::UntilClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    let cut = "the backend closed the connection before the body ended";
                    return this.fail(UpstreamError::Invalid(cut.into()));
                }
                Poll::Ready(Ok(_)) => this.stalled = None,
                Poll::Ready(Err(e)) => return this.fail(UpstreamError::Io(e)),
                Poll::Pending => {
                    let read = this.read;
                    let stalled = this.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(read)));
                    ready!(stalled.as_mut().poll(cx));
                    return this.fail(UpstreamError::ReadTimeout(read));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::fastpath::MAX_INTERIM;

    /// One response of the scripted backend: written in these pieces, a moment apart (so the
    /// body comes after the head), then the connection closed if `close`.
    struct Answer {
        pieces: Vec<Vec<u8>>,
        close: bool,
    }

    fn answer(pieces: &[&[u8]]) -> Answer {
        Answer {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            close: false,
        }
    }

    fn closing(pieces: &[&[u8]]) -> Answer {
        Answer {
            close: true,
            ..answer(pieces)
        }
    }

    /// A backend that answers each request head, on whichever connection, with the next of
    /// `answers`; returns its address and the request heads it read.
    async fn backend(answers: Vec<Answer>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (heads, answers) = (seen.clone(), answers.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut more = [0u8; 4096];
                            match conn.read(&mut more).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&more[..n]),
                            }
                            continue;
                        };
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        heads.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                        let Some(answer) = answers.lock().unwrap().pop_front() else {
                            return;
                        };
                        for (i, piece) in answer.pieces.iter().enumerate() {
                            if i > 0 {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if conn.write_all(piece).await.is_err() {
                                return;
                            }
                        }
                        if answer.close {
                            return;
                        }
                    }
                });
            }
        });
        (addr, heads)
    }

    const T: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        send: Duration::from_secs(2),
        read: Duration::from_secs(2),
    };

    fn get(method: Method, target: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(target)
            .header("host", "h.test")
            .header("x-b", "2")
            .header("content-length", "0")
            .body(())
            .unwrap()
    }

    /// The status, the fields and the body of one exchange, or what failed.
    async fn exchange(
        pool: &Pool,
        addr: SocketAddr,
        method: Method,
        t: Timeouts,
    ) -> Result<(u16, HeaderMap, Bytes), String> {
        let resp = send(pool, addr, &get(method, "/x?y=1"), t)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, parts.headers, body))
    }

    fn pool() -> Pool {
        Pool::new(None, Counter::default())
    }

    #[tokio::test]
    async fn responses_come_whole_in_every_framing_and_connections_are_reused() {
        let (addr, heads) = backend(vec![
            answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"]),
            answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel", b"lo", b"12345"]),
            answer(&[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r",
                b"\nhello\r\n6;ext=1\r\n w",
                b"orld\r\n0\r\nTrailer: t\r",
                b"\n\r\n",
            ]),
            answer(&[
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ]),
            answer(&[b"HTTP/1.1 204 No Content\r\n\r\n"]),
            closing(&[b"HTTP/1.1 200 OK\r\n\r\nuntil", b" close"]),
        ])
        .await;
        let pool = pool();
        let (status, fields, body) = exchange(&pool, addr, Method::GET, T).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"hello"[..]));
        assert_eq!(fields.get("x-a").unwrap(), "1");
        assert_eq!(
            &exchange(&pool, addr, Method::GET, T).await.unwrap().2[..],
            b"hello12345"
        );
        let (_, fields, body) = exchange(&pool, addr, Method::GET, T).await.unwrap();
        assert_eq!(&body[..], b"hello world");
        assert_eq!(
            fields.get("transfer-encoding").unwrap(),
            "chunked",
            "removed by the caller"
        );
        let (status, _, body) = exchange(&pool, addr, Method::GET, T).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"ok"[..]), "interim response dropped");
        assert_eq!(exchange(&pool, addr, Method::GET, T).await.unwrap().0, 204);
        assert_eq!(pool.opened(), 1, "one connection for five exchanges");
        assert_eq!(
            &exchange(&pool, addr, Method::GET, T).await.unwrap().2[..],
            b"until close"
        );
        assert_eq!(
            pool.parked(addr),
            0,
            "a body delimited by the close ends its connection"
        );
        let heads = heads.lock().unwrap();
        assert_eq!(heads.len(), 6);
        // Framing fields are not sent without a body; the target and fields as given.
        assert_eq!(heads[0], "GET /x?y=1 HTTP/1.1\r\nhost: h.test\r\nx-b: 2\r\n\r\n");
    }

    #[tokio::test]
    async fn trailer_fields_are_passed_on_without_framing_or_hop_by_hop_ones() {
        let (addr, _) = backend(vec![
            answer(&[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1",
                b"2\r\nContent-Length: 5\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Other: o\r",
                b"\n\r\n",
            ]),
            answer(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]),
        ])
        .await;
        let pool = pool();
        for expected in [Some(vec![("x-sum", "12"), ("x-other", "o")]), None] {
            let resp = send(&pool, addr, &get(Method::GET, "/"), T).await.unwrap();
            let collected = resp.into_body().collect().await.unwrap();
            let trailers = collected.trailers().map(|t| {
                t.iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                    .collect::<Vec<_>>()
            });
            let expected = expected.map(|e| e.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect());
            assert_eq!(trailers, expected);
            assert_eq!(&collected.to_bytes()[..], b"abc");
        }
        assert_eq!(pool.opened(), 1);
    }

    #[tokio::test]
    async fn a_head_request_has_no_body_whatever_its_length_says() {
        let (addr, heads) = backend(vec![
            answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"]),
            answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"]),
        ])
        .await;
        let pool = pool();
        let (status, fields, body) = exchange(&pool, addr, Method::HEAD, T).await.unwrap();
        assert_eq!((status, body.len()), (200, 0));
        assert_eq!(fields.get("content-length").unwrap(), "100");
        assert_eq!(&exchange(&pool, addr, Method::GET, T).await.unwrap().2[..], b"abc");
        assert_eq!(pool.opened(), 1);
        assert!(heads.lock().unwrap()[0].starts_with("HEAD /x?y=1 HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_while_idle_is_replaced_without_an_error() {
        // Closed after its answer without saying so: the next request finds it dead.
        let (addr, _) = backend(vec![
            closing(&[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"]),
            answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"]),
        ])
        .await;
        let pool = pool();
        assert_eq!(&exchange(&pool, addr, Method::GET, T).await.unwrap().2[..], b"a");
        assert_eq!(&exchange(&pool, addr, Method::GET, T).await.unwrap().2[..], b"b");
        assert_eq!(pool.opened(), 2);
    }

    #[tokio::test]
    async fn broken_and_hostile_responses_fail_and_their_connections_are_not_reused() {
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER_BYTES));
        let interims = "HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        let big_trailer = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        let rows: Vec<(&str, Vec<&[u8]>)> = vec![
            (
                "both framings (smuggling)",
                vec![
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                ],
            ),
            (
                "conflicting lengths",
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"],
            ),
            (
                "signed length",
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"],
            ),
            (
                "negative length",
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"],
            ),
            (
                "length list",
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc"],
            ),
            (
                "huge length",
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"],
            ),
            (
                "upgrade not asked for",
                vec![b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"],
            ),
            (
                "NUL in a value",
                vec![b"HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n"],
            ),
            (
                "DEL in a value",
                vec![b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 0\r\n\r\n"],
            ),
            (
                "bare CR",
                vec![b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n"],
            ),
            (
                "obsolete line folding",
                vec![b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"],
            ),
            (
                "space before the colon",
                vec![b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"],
            ),
            (
                "four-digit status",
                vec![b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"],
            ),
            ("not HTTP", vec![b"SSH-2.0-OpenSSH\r\n\r\n"]),
            ("HTTP/2 preface", vec![b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]),
            ("head too large", vec![big.as_bytes()]),
            ("endless interim responses", vec![interims.as_bytes()]),
            (
                "chunk size not hex",
                vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\nabc\r\n0\r\n\r\n"],
            ),
            (
                "chunk overrun",
                vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"],
            ),
            (
                "chunk size overflow",
                vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"],
            ),
            (
                "bare LF after a chunk size",
                vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"],
            ),
            ("trailer section too large", vec![big_trailer.as_bytes()]),
        ];
        for (name, pieces) in rows {
            let (addr, _) = backend(vec![
                closing(&pieces),
                answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]),
            ])
            .await;
            let pool = pool();
            let got = exchange(&pool, addr, Method::GET, T).await;
            assert!(got.is_err(), "{name}: accepted: {got:?}");
            assert_eq!(pool.parked(addr), 0, "{name}: connection kept");
        }
        // Cut short: the body fails (the client's stream is reset), not a short success.
        for (name, pieces) in [
            (
                "length cut short",
                &[&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..]][..],
            ),
            (
                "chunks cut short",
                &[
                    &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"[..],
                    b"c",
                ][..],
            ),
        ] {
            let (addr, _) = backend(vec![closing(pieces)]).await;
            let got = exchange(&pool(), addr, Method::GET, T).await;
            assert!(got.as_ref().is_err_and(|e| e.contains("closed")), "{name}: {got:?}");
        }
        // Bytes after a complete response: served, but the connection is not trusted again.
        let (addr, _) = backend(vec![answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"])]).await;
        let pool = pool();
        assert_eq!(&exchange(&pool, addr, Method::GET, T).await.unwrap().2[..], b"ok");
        assert_eq!(pool.parked(addr), 0);
    }

    #[tokio::test]
    async fn a_backend_that_stalls_mid_body_times_out() {
        let (addr, _) = backend(vec![answer(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])]).await;
        let t = Timeouts {
            read: Duration::from_millis(200),
            ..T
        };
        let got = exchange(&pool(), addr, Method::GET, t).await;
        assert!(got.as_ref().is_err_and(|e| e.contains("no response within")), "{got:?}");
        // And before the head.
        let (addr, _) = backend(vec![answer(&[])]).await;
        let got = exchange(&pool(), addr, Method::GET, t).await;
        assert!(got.as_ref().is_err_and(|e| e.contains("no response within")), "{got:?}");
    }

    #[test]
    fn the_request_head_has_no_framing_fields_and_takes_values_as_they_are() {
        let mut req = get(Method::GET, "/a%20b?q=%0d%0a");
        req.headers_mut()
            .insert("transfer-encoding", HeaderValue::from_static("chunked"));
        req.headers_mut().append("x-b", HeaderValue::from_static("3"));
        assert_eq!(
            String::from_utf8(request_head(&req)).unwrap(),
            "GET /a%20b?q=%0d%0a HTTP/1.1\r\nhost: h.test\r\nx-b: 2\r\nx-b: 3\r\n\r\n"
        );
    }
}
