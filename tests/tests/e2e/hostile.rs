//! Hostile HTTP/1.1 through both of zone-alb's plain-HTTP paths: the hand-written fast path
//! (127.0.26.1) and hyper's (`--no-fast-path`, 127.0.26.2), run from the same manifests in front
//! of a recording backend written here, which parses requests as strictly and naively as an
//! origin server would and answers hostile responses on some targets.
//!
//! Each row is raw request bytes (in one or more writes) and the outcome the proxy must
//! produce: refused with a status (and then the backend gets nothing at all), or forwarded as
//! exactly these requests (no more, no fewer) with one response each. Every row runs on a fresh
//! client connection against both paths; a table of what each path did is printed, and every
//! failing row is listed at the end (the test does not stop at the first).
//!
//! Where `nginx` is installed, the same rows also run against it (127.0.26.3) for comparison;
//! that column is information only.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::harness::{Proc, bin, curl, poll, single_alb_site, tempdir, write};
use crate::ingress::ingress;

const FAST: &str = "127.0.26.1:8080";
const HYPER: &str = "127.0.26.2:8080";
const NGINX: &str = "127.0.26.3:8080";
const BACKEND: &str = "127.0.26.11:9080";
/// Rows that need a known client address connect from here.
const CLIENT_IP: &str = "127.0.26.77";
/// `Backend::settle` connects to the backend from here, never a lane.
const FENCE_IP: &str = "127.0.26.99";
/// The longest wait for anything that should arrive (other tests may be loading the machine).
const WAIT: Duration = Duration::from_secs(5);
/// How long to watch, after the expected responses, for one more (or for the close).
const WINDOW: Duration = Duration::from_millis(250);
/// How long to wait for the close a row requires.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Pause between the writes of one row, so they reach the proxy as separate reads.
const PAUSE: Duration = Duration::from_millis(50);

/// A complete request, smuggled in bodies: it must only ever reach the backend as body bytes.
const SMUGGLED: &str = "GET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// The recording backend.

/// One request as the backend parsed it.
#[derive(Clone, Debug)]
struct Got {
    conn: u64,
    method: String,
    target: String,
    /// In order, with the names' original case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Its size on the wire, head and body.
    wire: usize,
}

impl Got {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Event {
    /// Bytes read on a connection while it speaks HTTP, as they came.
    Raw(u64, Vec<u8>),
    Request(Got),
    /// The strict parse failed; the backend closed that connection.
    Unparsable(u64, String),
    /// Bytes read after a 101; `true` when they had come in before the switch (already in `Raw`).
    Tunnel(u64, Vec<u8>, bool),
}

/// Every event, with the address the connection came from (which ALB).
type Log = Arc<Mutex<Vec<(IpAddr, Event)>>>;

/// A connection the backend is serving, for [`Backend::settle`].
struct Live {
    conn: u64,
    peer: SocketAddr,
    /// A second handle on the socket, only ever peeked at without blocking.
    socket: TcpStream,
    /// Set from taking bytes off the socket until they are parsed and logged.
    busy: Arc<AtomicBool>,
}

struct Backend {
    addr: SocketAddr,
    log: Log,
    live: Arc<Mutex<Vec<Live>>>,
    stop: Arc<AtomicBool>,
    accepter: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(addr: &str) -> Backend {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("backend on {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let live: Arc<Mutex<Vec<Live>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accepter = {
            let (log, live, stop) = (log.clone(), live.clone(), stop.clone());
            let count = AtomicU64::new(0);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let Ok(peer) = stream.peer_addr() else { continue };
                    let Ok(socket) = stream.try_clone() else { continue };
                    let conn = count.fetch_add(1, Ordering::SeqCst) + 1;
                    let busy = Arc::new(AtomicBool::new(false));
                    live.lock().unwrap().push(Live {
                        conn,
                        peer,
                        socket,
                        busy: busy.clone(),
                    });
                    let (log, live, stop) = (log.clone(), live.clone(), stop.clone());
                    thread::spawn(move || {
                        serve_backend(stream, peer.ip(), conn, &log, &busy, &stop);
                        // Dropping the second handle too, so the proxy sees the close.
                        live.lock().unwrap().retain(|l| l.conn != conn);
                    });
                }
            })
        };
        Backend {
            addr,
            log,
            live,
            stop,
            accepter: Some(accepter),
        }
    }

    /// Waits until everything the proxy has sent so far from `lane` is in the log: every
    /// connection it opened is accepted, and every byte that reached a connection's socket is
    /// logged (and parsed, where it completes a request). A backend thread starved of CPU can
    /// otherwise read a row's bytes after the row was judged, and they would land in the next.
    fn settle(&self, lane: Option<IpAddr>) {
        // Accepts are first in, first out: once this connection is in `live`, so is every one
        // the proxy opened before it.
        let fence = connect(self.addr, Some(FENCE_IP.parse().unwrap()));
        if let Ok(fence) = &fence
            && let Ok(me) = fence.local_addr()
        {
            poll(WAIT, || {
                self.live.lock().unwrap().iter().any(|l| l.peer == me).then_some(())
            });
        }
        drop(fence);
        let settled = poll(WAIT, || {
            let live = self.live.lock().unwrap();
            live.iter()
                .filter(|l| lane.is_none_or(|ip| l.peer.ip() == ip))
                // Queue first, then `busy`: the thread raises `busy` before it takes bytes off.
                .all(|l| !has_unread(&l.socket) && !l.busy.load(Ordering::SeqCst))
                .then_some(())
        });
        assert!(
            settled.is_some(),
            "the backend did not catch up with the proxy within {WAIT:?}"
        );
    }

    /// Takes the events of connections from `lane` (all of them for `None`).
    fn drain(&self, lane: Option<IpAddr>) -> Vec<(IpAddr, Event)> {
        let mut log = self.log.lock().unwrap();
        let (mine, rest) = std::mem::take(&mut *log)
            .into_iter()
            .partition(|(ip, _)| lane.is_none_or(|l| *ip == l));
        *log = rest;
        mine
    }

    fn requests(&self, lane: Option<IpAddr>) -> usize {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(ip, e)| lane.is_none_or(|l| *ip == l) && matches!(e, Event::Request(_)))
            .count()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Connection threads see the flag within 100 ms; the accept loop on its next accept.
        self.stop.store(true, Ordering::SeqCst);
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(accepter) = self.accepter.take()
            && woken
        {
            let _ = accepter.join();
        }
    }
}

enum After {
    KeepAlive,
    Close,
    Tunnel,
}

/// Serves one connection from the proxy: parse, record, answer; until EOF, an unparsable
/// request, a minute of silence or the end of the test.
fn serve_backend(mut s: TcpStream, peer: IpAddr, conn: u64, log: &Log, busy: &AtomicBool, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let push = |e: Event| log.lock().unwrap().push((peer, e));
    let mut buf = Vec::new();
    let mut heard = Instant::now();
    let mut tmp = vec![0u8; 16384];
    loop {
        let parsed = parse_request(&buf);
        if matches!(parsed, Parsed::Need) {
            busy.store(false, Ordering::SeqCst);
        }
        match parsed {
            Parsed::Bad(why) => {
                push(Event::Unparsable(conn, why));
                return;
            }
            Parsed::Done(mut got, used) => {
                buf.drain(..used);
                got.conn = conn;
                let (answer, after) = backend_answer(&got);
                push(Event::Request(got));
                if s.write_all(&answer).is_err() {
                    return;
                }
                match after {
                    After::KeepAlive => continue,
                    After::Close => {
                        let _ = s.shutdown(Shutdown::Write);
                        return;
                    }
                    After::Tunnel => {
                        if !buf.is_empty() {
                            push(Event::Tunnel(conn, std::mem::take(&mut buf), true));
                        }
                        busy.store(false, Ordering::SeqCst);
                        tunnel(s, peer, conn, log, busy, stop);
                        return;
                    }
                }
            }
            Parsed::Need => {}
        }
        match take_logged(&mut s, &mut tmp, busy, |bytes| push(Event::Raw(conn, bytes.to_vec()))) {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                heard = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) || heard.elapsed() > Duration::from_secs(60) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Reads what has arrived into `tmp`, logging it before it leaves the kernel's queue and raising
/// `busy` before it does: at every moment, a byte that reached the socket is either still
/// queued, or logged with `busy` up until the caller has done with it (`Backend::settle`).
fn take_logged(
    s: &mut TcpStream,
    tmp: &mut [u8],
    busy: &AtomicBool,
    log: impl FnOnce(&[u8]),
) -> std::io::Result<usize> {
    let n = s.peek(tmp)?;
    if n > 0 {
        log(&tmp[..n]);
        busy.store(true, Ordering::SeqCst);
        s.read_exact(&mut tmp[..n])?;
    }
    Ok(n)
}

/// Whether bytes wait in the socket's receive queue (without blocking, and without touching the
/// blocking mode the serving thread's handle shares).
fn has_unread(s: &TcpStream) -> bool {
    let mut one = [std::mem::MaybeUninit::<u8>::uninit()];
    matches!(
        socket2::SockRef::from(s).recv_with_flags(&mut one, libc::MSG_PEEK | libc::MSG_DONTWAIT),
        Ok(n) if n > 0
    )
}

/// After a 101: every byte is recorded and sent back upper-cased.
fn tunnel(mut s: TcpStream, peer: IpAddr, conn: u64, log: &Log, busy: &AtomicBool, stop: &AtomicBool) {
    let mut tmp = vec![0u8; 16384];
    let mut heard = Instant::now();
    loop {
        let logged = take_logged(&mut s, &mut tmp, busy, |bytes| {
            log.lock()
                .unwrap()
                .push((peer, Event::Tunnel(conn, bytes.to_vec(), false)));
        });
        busy.store(false, Ordering::SeqCst);
        match logged {
            Ok(0) => return,
            Ok(n) => {
                if s.write_all(&tmp[..n].to_ascii_uppercase()).is_err() {
                    return;
                }
                heard = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) || heard.elapsed() > Duration::from_secs(60) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The canned answer for a request, chosen by its target (and an Upgrade field, which this
/// backend always accepts: a hostile backend the proxy must not splice for unless it should).
fn backend_answer(got: &Got) -> (Vec<u8>, After) {
    if let Some(protocol) = got.values("upgrade").first() {
        let mut r = format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n");
        if protocol.eq_ignore_ascii_case("websocket") {
            r.push_str("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n");
        }
        r.push_str("\r\n");
        return (r.into_bytes(), After::Tunnel);
    }
    let path = got.target.split('?').next().unwrap_or_default();
    let (answer, after): (Vec<u8>, After) = match path {
        // A 101 to a request that asked for no upgrade.
        "/resp/101" => (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec(),
            After::Tunnel,
        ),
        "/resp/cl-te" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            After::KeepAlive,
        ),
        "/resp/bad-cl" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok".to_vec(),
            After::Close,
        ),
        "/resp/conn-cl" => (
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            After::KeepAlive,
        ),
        // A head past the proxy's 64 KiB bound (one field of 70 000 bytes).
        "/resp/huge-head" => (
            format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
                "a".repeat(70_000)
            )
            .into_bytes(),
            After::KeepAlive,
        ),
        "/resp/early40" => {
            let mut r = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".repeat(40);
            r.extend_from_slice(OK);
            (r, After::KeepAlive)
        }
        _ => (OK.to_vec(), After::KeepAlive),
    };
    let close = got
        .values("connection")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"));
    match after {
        After::KeepAlive if close => (answer, After::Close),
        after => (answer, after),
    }
}

enum Parsed {
    Need,
    Done(Got, usize),
    Bad(String),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn preview(bytes: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        .escape_debug()
        .collect();
    if bytes.len() > 120 {
        format!("\"{shown}\"… ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

/// Parses one request from the start of `buf` as an origin server would: head up to CRLFCRLF
/// (no bare CR or LF, no obs-fold), request line split on single spaces, body by chunked when
/// Transfer-Encoding's last coding is chunked, else by Content-Length.
fn parse_request(buf: &[u8]) -> Parsed {
    let end = find(buf, b"\r\n\r\n");
    let region = &buf[..end.map_or(buf.len(), |e| e + 4)];
    for (i, &b) in region.iter().enumerate() {
        if b == b'\n' && (i == 0 || region[i - 1] != b'\r') {
            return Parsed::Bad(format!("bare LF in the head: {}", preview(region)));
        }
        if b == b'\r' && i + 1 < region.len() && region[i + 1] != b'\n' {
            return Parsed::Bad(format!("bare CR in the head: {}", preview(region)));
        }
    }
    let Some(end) = end else {
        return if buf.len() > 256 * 1024 {
            Parsed::Bad("head over 256 KiB".into())
        } else {
            Parsed::Need
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Parsed::Bad(format!("request line {line:?}"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) || target.is_empty() {
        return Parsed::Bad(format!("request line {line:?}"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Parsed::Bad(format!("version in {line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Parsed::Bad(format!("obs-fold line {line:?}"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Bad(format!("header line without a colon {line:?}"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Parsed::Bad(format!("header name {name:?}"));
        }
        headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    let mut got = Got {
        conn: 0,
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: Vec::new(),
        wire: 0,
    };
    let start = end + 4;
    let te = got.values("transfer-encoding").join(",");
    let lengths = got.values("content-length");
    let framed = if !te.is_empty() {
        let last = te.rsplit(',').next().unwrap_or_default().trim();
        if !last.eq_ignore_ascii_case("chunked") {
            return Parsed::Bad(format!("Transfer-Encoding {te:?} does not end in chunked"));
        }
        match parse_chunked(buf, start) {
            Ok(Some((body, used))) => Some((body, used)),
            Ok(None) => None,
            Err(e) => return Parsed::Bad(e),
        }
    } else if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first)
            || first.is_empty()
            || first.len() > 15
            || !first.bytes().all(|b| b.is_ascii_digit())
        {
            return Parsed::Bad(format!("Content-Length {lengths:?}"));
        }
        let n: usize = first.parse().unwrap();
        (buf.len() >= start + n).then(|| (buf[start..start + n].to_vec(), start + n))
    } else {
        Some((Vec::new(), start))
    };
    match framed {
        Some((body, used)) => {
            got.body = body;
            got.wire = used;
            Parsed::Done(got, used)
        }
        None => Parsed::Need,
    }
}

/// A chunked body from `pos`: the data and where it ends, `None` if incomplete.
fn parse_chunked(buf: &[u8], mut pos: usize) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    loop {
        let Some(le) = find(&buf[pos..], b"\r\n") else {
            return if buf.len() - pos > 4096 {
                Err("chunk-size line over 4 KiB".into())
            } else {
                Ok(None)
            };
        };
        let line = &buf[pos..pos + le];
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("chunk-size line {}", preview(line)));
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap();
        pos += le + 2;
        if size == 0 {
            loop {
                let Some(le) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                let line = &buf[pos..pos + le];
                pos += le + 2;
                if line.is_empty() {
                    return Ok(Some((body, pos)));
                }
                let name_ok = line
                    .iter()
                    .position(|&b| b == b':')
                    .is_some_and(|c| c > 0 && line[..c].iter().all(|&b| is_tchar(b)));
                if !name_ok {
                    return Err(format!("trailer line {}", preview(line)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

// ---------------------------------------------------------------------------------------------
// Rows: what is sent, and what must come of it.

/// A request the backend must receive.
#[derive(Clone)]
struct Want {
    method: &'static str,
    target: String,
    /// Fields that must be there, once each, with this value (names compared in any case).
    has: Vec<(&'static str, String)>,
    /// Fields that must not be there at all.
    lacks: Vec<&'static str>,
    /// Fields that must not be there with this value.
    lacks_value: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    /// The status the client then gets for it.
    status: u16,
    /// The body the client then gets for it, where it matters.
    response_body: Option<Vec<u8>>,
}

fn want(method: &'static str, target: &str) -> Want {
    Want {
        method,
        target: target.to_owned(),
        has: Vec::new(),
        lacks: Vec::new(),
        lacks_value: Vec::new(),
        body: Vec::new(),
        status: 200,
        response_body: None,
    }
}

impl Want {
    fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }
    fn has(mut self, name: &'static str, value: impl ToString) -> Self {
        self.has.push((name, value.to_string()));
        self
    }
    fn lacks(mut self, names: &[&'static str]) -> Self {
        self.lacks.extend_from_slice(names);
        self
    }
    fn lacks_value(mut self, name: &'static str, value: &'static str) -> Self {
        self.lacks_value.push((name, value));
        self
    }
    fn answered(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    fn response_body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.response_body = Some(body.as_ref().to_vec());
        self
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Closed {
    /// The proxy must close the client connection after the responses.
    Yes,
    /// Either way (what happened is shown in the table).
    Either,
}

#[derive(Clone)]
enum Gets {
    /// Exactly these requests, in order, and not one byte besides.
    Exactly(Vec<Want>),
    /// At most this many complete requests (partial bytes allowed), none unparsable.
    AtMost(usize),
}

#[derive(Clone)]
struct Outcome {
    backend: Gets,
    /// Responses the proxy adds itself, after those to forwarded requests.
    then: Vec<u16>,
    closed: Closed,
    /// Only acceptable on this path (`fast` / `hyper`).
    only_on: Option<&'static str>,
}

fn refused(status: u16, closed: Closed) -> Outcome {
    Outcome {
        backend: Gets::Exactly(Vec::new()),
        then: vec![status],
        closed,
        only_on: None,
    }
}

fn forwarded(requests: Vec<Want>) -> Outcome {
    Outcome {
        backend: Gets::Exactly(requests),
        then: Vec::new(),
        closed: Closed::Either,
        only_on: None,
    }
}

impl Outcome {
    fn then(mut self, status: u16) -> Self {
        self.then.push(status);
        self
    }
    fn closing(mut self) -> Self {
        self.closed = Closed::Yes;
        self
    }
    fn at_most(mut self, n: usize) -> Self {
        self.backend = Gets::AtMost(n);
        self
    }
    fn only_on(mut self, path: &'static str) -> Self {
        self.only_on = Some(path);
        self
    }
    /// The final statuses the client must get, in order.
    fn statuses(&self) -> Vec<u16> {
        let forwarded = match &self.backend {
            Gets::Exactly(wants) => wants.iter().map(|w| w.status).collect(),
            Gets::AtMost(_) => Vec::new(),
        };
        [forwarded, self.then.clone()].concat()
    }
    fn requests(&self) -> usize {
        match &self.backend {
            Gets::Exactly(wants) => wants.len(),
            Gets::AtMost(_) => 0,
        }
    }
}

type RawCheck = fn(&[u8]) -> Result<(), String>;

struct Row {
    name: String,
    writes: Vec<Vec<u8>>,
    from: Option<IpAddr>,
    /// Any of these passes; the first is the one failures are explained against.
    expect: Vec<Outcome>,
    window: Duration,
    /// After a 101: these bytes go through and come back upper-cased.
    tunnel: Option<&'static [u8]>,
    /// A check of every byte the backend read in HTTP mode during the row.
    raw: Option<RawCheck>,
}

fn row(name: &str, writes: Vec<Vec<u8>>, outcome: Outcome) -> Row {
    Row {
        name: name.to_owned(),
        writes,
        from: None,
        expect: vec![outcome],
        window: WINDOW,
        tunnel: None,
        raw: None,
    }
}

impl Row {
    fn or(mut self, outcome: Outcome) -> Self {
        self.expect.push(outcome);
        self
    }
    fn source(mut self, ip: &str) -> Self {
        self.from = Some(ip.parse().unwrap());
        self
    }
    fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    fn tunnel(mut self, bytes: &'static [u8]) -> Self {
        self.tunnel = Some(bytes);
        self
    }
    fn raw(mut self, check: RawCheck) -> Self {
        self.raw = Some(check);
        self
    }
}

fn get(target: &str, host: &str) -> Vec<Vec<u8>> {
    vec![format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()]
}

/// `POST /` to h.test with these header lines (each ending in CRLF) and this body, in one write.
fn post(fields: &str, body: &str) -> Vec<Vec<u8>> {
    vec![format!("POST / HTTP/1.1\r\nHost: h.test\r\n{fields}\r\n{body}").into_bytes()]
}

fn rows() -> Vec<Row> {
    use Closed::{Either, Yes};
    let s = SMUGGLED;
    let n = s.len();
    let hello = "5\r\nhello\r\n0\r\n\r\n";
    let mut rows = vec![
        // Sanity: the plain cases work on both paths.
        row(
            "baseline-get",
            get("/", "h.test"),
            forwarded(vec![want("GET", "/").response_body("ok")]),
        ),
        row("baseline-admin-403", get("/admin", "h.test"), refused(403, Either)),
        row(
            "baseline-post-cl",
            post("Content-Length: 5\r\n", "hello"),
            forwarded(vec![want("POST", "/").body("hello").has("Content-Length", 5)]),
        ),
        row(
            "baseline-post-chunked",
            post("Transfer-Encoding: chunked\r\n", hello),
            forwarded(vec![want("POST", "/").body("hello")]),
        ),
        // Framing fields named in Connection are not hop-by-hop for the proxy to drop.
        row(
            "smuggle-connection-cl",
            post(&format!("Connection: content-length\r\nContent-Length: {n}\r\n"), s),
            forwarded(vec![want("POST", "/").body(s).has("Content-Length", n)]),
        ),
        // The same with the body in a second write (read from the socket, not with the head).
        row(
            "smuggle-connection-cl-split",
            vec![
                format!("POST / HTTP/1.1\r\nHost: h.test\r\nConnection: content-length\r\nContent-Length: {n}\r\n\r\n")
                    .into_bytes(),
                s.as_bytes().to_vec(),
            ],
            forwarded(vec![want("POST", "/").body(s).has("Content-Length", n)]),
        ),
        row(
            "smuggle-connection-host",
            post(&format!("Connection: host\r\nContent-Length: {n}\r\n"), s),
            forwarded(vec![want("POST", "/").body(s).has("Host", "h.test")]),
        ),
        row(
            "smuggle-connection-te",
            post(
                "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n",
                &format!("{n:x}\r\n{s}\r\n0\r\n\r\n"),
            ),
            forwarded(vec![want("POST", "/").body(s)]),
        ),
        row(
            "smuggle-connection-xff",
            post(
                &format!("Connection: x-forwarded-for\r\nX-Forwarded-For: 6.6.6.6\r\nContent-Length: {n}\r\n"),
                s,
            ),
            forwarded(vec![
                want("POST", "/")
                    .body(s)
                    .has("X-Forwarded-For", CLIENT_IP)
                    .has("X-Real-IP", CLIENT_IP),
            ]),
        )
        .source(CLIENT_IP),
        // A response whose Content-Length its Connection names: still framed by it.
        row(
            "response-connection-cl",
            [get("/resp/conn-cl", "h.test"), get("/", "h.test")].concat(),
            forwarded(vec![
                want("GET", "/resp/conn-cl").response_body("hello"),
                want("GET", "/").response_body("ok"),
            ]),
        ),
        // The ALB's own health answer must consume the body, not serve it as the next request.
        row(
            "cl0-alb-health",
            vec![
                format!("POST / HTTP/1.1\r\nHost: albhealth.c.test\r\nContent-Length: {n}\r\n\r\n").into_bytes(),
                s.as_bytes().to_vec(),
            ],
            refused(200, Either),
        )
        .window(Duration::from_secs(1)),
        row(
            "healthz-is-tenant",
            get("/healthz", "h.test"),
            forwarded(vec![want("GET", "/healthz")]),
        ),
    ];
    // Paths are matched normalised (decoded, dot-segments resolved, slashes merged).
    for target in [
        "/admin/x",
        "//admin",
        "/%61dmin",
        "/x/../admin",
        "/./admin",
        "/admin/../admin",
        "/adm%69n/x",
        // `%2F` separates when matching, as in nginx (many backends decode it before routing).
        "/admin%2Fx",
        "/public/..%2Fadmin",
        // A fragment is no part of the path: hyper's URI drops it, the fast path hands it over.
        "/admin#x",
    ] {
        rows.push(row(
            &format!("path {target}"),
            get(target, "h.test"),
            refused(403, Either),
        ));
    }
    for target in ["/../admin", "/%2e%2e/admin", "/x/../../admin"] {
        rows.push(row(
            &format!("path {target}"),
            get(target, "h.test"),
            refused(400, Either),
        ));
    }
    // Matching is case-sensitive, and the backend gets the target as the client sent it.
    for target in ["/ADMIN", "/x/../public", "/public%2Fx"] {
        rows.push(row(
            &format!("path {target}"),
            get(target, "h.test"),
            forwarded(vec![want("GET", target)]),
        ));
    }
    // A protection the ALB does not enforce (client certificates) fails closed, however the
    // path is spelled.
    for target in ["/admin", "//admin", "/%61dmin", "/admin/x"] {
        rows.push(row(
            &format!("auth {target}"),
            get(target, "auth.test"),
            refused(503, Either),
        ));
    }
    rows.push(row(
        "auth /public",
        get("/public", "auth.test"),
        forwarded(vec![want("GET", "/public")]),
    ));
    // Forwarding fields come from the ALB only.
    rows.push(
        row(
            "forwarding-family",
            vec![
                "GET /fwd HTTP/1.1\r\nHost: h.test\r\nForwarded: for=6.6.6.6;proto=https\r\n\
                 X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Host: evil\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Ssl: on\r\n\
                 X-Forwarded-Scheme: https\r\nX-Forwarded-Prefix: /evil\r\nX_Forwarded_For: 6.6.6.6\r\n\
                 Transfer_Encoding: chunked\r\nContent_Length: 5\r\n\r\n"
                    .as_bytes()
                    .to_vec(),
            ],
            forwarded(vec![
                want("GET", "/fwd")
                    .has("X-Forwarded-For", CLIENT_IP)
                    .has("X-Real-IP", CLIENT_IP)
                    .has("X-Forwarded-Proto", "http")
                    .has("X-Forwarded-Host", "h.test")
                    .has("X-Forwarded-Port", 8080)
                    .lacks(&[
                        "Forwarded",
                        "X-Forwarded-Ssl",
                        "X-Forwarded-Scheme",
                        "X-Forwarded-Prefix",
                        "X_Forwarded_For",
                        "Transfer_Encoding",
                        "Content_Length",
                    ]),
            ]),
        )
        .source(CLIENT_IP),
    );
    // The classic desync set. Transfer-Encoding wins over Content-Length, which is removed,
    // and the connection closes after the response.
    rows.push(
        row(
            "cl-te",
            post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nG"),
            forwarded(vec![want("POST", "/").lacks_value("Content-Length", "6")]).closing(),
        )
        .raw(|raw| match find(raw, b"0\r\n\r\nG") {
            Some(_) => Err("the smuggled G reached the backend".into()),
            None => Ok(()),
        }),
    );
    let inner = "GPOST / HTTP/1.1\r\nHost: h.test\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 15\r\n\r\nx=1";
    rows.push(row(
        "te-cl",
        post(
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
            &format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len()),
        ),
        forwarded(vec![want("POST", "/").body(inner).lacks_value("Content-Length", "4")]).closing(),
    ));
    for (name, fields, status) in [
        ("te-xchunked", "Transfer-Encoding: xchunked\r\n", 400),
        ("te-space-before-colon", "Transfer-Encoding : chunked\r\n", 400),
        (
            "te-chunked-then-x",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
            400,
        ),
        ("te-chunked-identity", "Transfer-Encoding: chunked, identity\r\n", 400),
        ("te-gzip-chunked", "Transfer-Encoding: gzip, chunked\r\n", 501),
        ("te-obs-fold", "Transfer-Encoding:\r\n chunked\r\n", 400),
    ] {
        rows.push(row(name, post(fields, hello), refused(status, Yes)));
    }
    for (name, fields) in [
        ("te-tab", "Transfer-Encoding:\tchunked\r\n"),
        ("te-uppercase", "Transfer-Encoding: CHUNKED\r\n"),
    ] {
        rows.push(row(
            name,
            post(fields, hello),
            forwarded(vec![want("POST", "/").body("hello")]),
        ));
    }
    rows.push(row(
        "te-http10",
        vec![format!("POST / HTTP/1.0\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n{hello}").into_bytes()],
        refused(400, Yes),
    ));
    rows.push(row(
        "cl-dup-different",
        post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
        refused(400, Yes),
    ));
    rows.push(row(
        "cl-dup-same",
        post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
        forwarded(vec![want("POST", "/").body("hello")]),
    ));
    for (name, value) in [
        ("cl-plus", "+5"),
        ("cl-list", "5, 5"),
        ("cl-hex", "0x5"),
        ("cl-negative", "-1"),
        ("cl-overflow", "99999999999999999999"),
        ("cl-inner-space", " 5 5"),
    ] {
        rows.push(row(
            name,
            post(&format!("Content-Length: {value}\r\n"), "hello"),
            refused(400, Yes),
        ));
    }
    rows.push(row(
        "chunked-trailing-junk",
        post("Transfer-Encoding: chunked\r\n", "0\r\n\r\nGARBAGE\r\n\r\n"),
        forwarded(vec![want("POST", "/")]).then(400).closing(),
    ));
    for (name, body) in [
        ("chunk-size-junk", "5 x\r\nhello\r\n0\r\n\r\n"),
        ("chunk-size-zz", "zz\r\nhello\r\n0\r\n\r\n"),
        ("chunk-size-overflow", "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ] {
        rows.push(row(
            name,
            post("Transfer-Encoding: chunked\r\n", body),
            refused(400, Yes),
        ));
    }
    // A bad chunk after the head has gone on: a streaming proxy may have sent the head, but the
    // backend must never get a complete request, and that upstream connection is not reused
    // (the canary right after would land behind the half request).
    rows.push(row(
        "chunk-size-junk-split",
        vec![
            b"POST / HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"5 x\r\nhello\r\n0\r\n\r\n".to_vec(),
        ],
        refused(400, Yes).at_most(0),
    ));
    rows.push(row(
        "canary-after-aborted-body",
        [get("/c1", "h.test"), get("/c2", "h.test")].concat(),
        forwarded(vec![
            want("GET", "/c1").response_body("ok"),
            want("GET", "/c2").response_body("ok"),
        ]),
    ));
    rows.push(row(
        "chunk-extension",
        post("Transfer-Encoding: chunked\r\n", "5;ext=1\r\nhello\r\n0\r\n\r\n"),
        forwarded(vec![want("POST", "/").body("hello")]),
    ));
    rows.push(
        row(
            "chunk-bad-trailer",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
            ),
            refused(400, Either).at_most(1),
        )
        .or(Outcome {
            backend: Gets::AtMost(1),
            then: Vec::new(),
            closed: Yes,
            only_on: None,
        }),
    );
    rows.push(row(
        "pipelined-cl-then-get",
        vec![b"POST /a HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h.test\r\n\r\n".to_vec()],
        forwarded(vec![want("POST", "/a").body("hello"), want("GET", "/b")]),
    ));
    // Line endings.
    rows.push(row(
        "bare-lf-line-endings",
        vec![b"GET /lf HTTP/1.1\nHost: h.test\nX-Lf: 1\n\n".to_vec()],
        forwarded(vec![want("GET", "/lf").has("X-Lf", 1)]),
    ));
    rows.push(row(
        "bare-cr-in-head",
        vec![b"GET / HTTP/1.1\rHost: h.test\r\n\r\n".to_vec()],
        refused(400, Yes),
    ));
    rows.push(row(
        "obs-fold-header",
        vec![b"GET / HTTP/1.1\r\nHost: h.test\r\nX-Folded: a\r\n b\r\n\r\n".to_vec()],
        refused(400, Yes),
    ));
    rows.push(row(
        "target-over-8k",
        get(&format!("/{}", "a".repeat(9000)), "h.test"),
        refused(414, Either),
    ));
    // Upgrades: only WebSocket is spliced.
    let h2c = "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    rows.push(row(
        "upgrade-h2c",
        vec![format!("GET / HTTP/1.1\r\nHost: h.test\r\n{h2c}\r\n").into_bytes()],
        forwarded(vec![want("GET", "/").lacks(&["Upgrade", "HTTP2-Settings"])]),
    ));
    rows.push(row(
        "upgrade-h2c-backend-101",
        vec![format!("GET /resp/101 HTTP/1.1\r\nHost: h.test\r\n{h2c}\r\n").into_bytes()],
        forwarded(vec![
            want("GET", "/resp/101")
                .lacks(&["Upgrade", "HTTP2-Settings"])
                .answered(502),
        ]),
    ));
    rows.push(row(
        "upgrade-foo",
        vec![b"GET / HTTP/1.1\r\nHost: h.test\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n".to_vec()],
        forwarded(vec![want("GET", "/").lacks(&["Upgrade"])]),
    ));
    rows.push(
        row(
            "upgrade-websocket",
            vec![
                b"GET /ws HTTP/1.1\r\nHost: h.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    .to_vec(),
            ],
            forwarded(vec![want("GET", "/ws").has("Upgrade", "websocket").answered(101)]),
        )
        .tunnel(b"ping over the tunnel"),
    );
    // Hostile responses, last: a proxy that misreads one may leave its upstream connection
    // out of step; the canary after them shows it.
    for (name, target) in [
        ("response-cl-and-te", "/resp/cl-te"),
        ("response-bad-cl", "/resp/bad-cl"),
        ("response-101-unasked", "/resp/101"),
        ("response-head-over-64k", "/resp/huge-head"),
    ] {
        rows.push(row(
            name,
            get(target, "h.test"),
            forwarded(vec![want("GET", target).answered(502)]),
        ));
    }
    rows.push(
        row(
            "response-40-early-hints",
            get("/resp/early40", "h.test"),
            forwarded(vec![want("GET", "/resp/early40").answered(502)]),
        )
        // To be decided: hyper's client drops 1xx itself, so the client may get the 200.
        .or(forwarded(vec![want("GET", "/resp/early40")]).only_on("hyper")),
    );
    rows.push(row(
        "canary-after-hostile-responses",
        [get("/c1", "h.test"), get("/c2", "h.test"), get("/c3", "h.test")].concat(),
        forwarded(vec![
            want("GET", "/c1").response_body("ok"),
            want("GET", "/c2").response_body("ok"),
            want("GET", "/c3").response_body("ok"),
        ]),
    ));
    rows
}

// ---------------------------------------------------------------------------------------------
// The client side.

struct Resp {
    status: u16,
    body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
enum End {
    /// The proxy closed the connection (FIN or reset).
    Closed,
    /// Still open after the window.
    Open,
    /// Switched protocols after a 101.
    Upgraded,
    /// Nothing (more) came within the wait while a response was due.
    Stuck(String),
    /// Bytes that are no HTTP/1.1 response.
    Garbage(String),
}

struct Seen {
    interim: usize,
    finals: Vec<Resp>,
    end: End,
    tunnel: Option<Result<(), String>>,
    notes: Vec<String>,
    backend: Vec<Event>,
}

enum Fill {
    Data,
    Eof,
    Timeout,
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn fill(&mut self, deadline: Instant) -> Fill {
        let now = Instant::now();
        if now >= deadline {
            return Fill::Timeout;
        }
        let _ = self.s.set_read_timeout(Some(deadline - now));
        let mut tmp = [0u8; 16384];
        match self.s.read(&mut tmp) {
            Ok(0) => Fill::Eof,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Fill::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Fill::Timeout,
            Err(e) if e.kind() == ErrorKind::Interrupted => Fill::Data,
            // Reset or any other error: the connection is gone.
            Err(_) => Fill::Eof,
        }
    }

    /// Until `n` bytes are buffered.
    fn need(&mut self, n: usize, deadline: Instant, what: &str) -> Result<(), End> {
        while self.buf.len() < n {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof => return Err(End::Garbage(format!("closed in the {what}: {}", preview(&self.buf)))),
                Fill::Timeout => return Err(End::Stuck(format!("{what} incomplete: {}", preview(&self.buf)))),
            }
        }
        Ok(())
    }

    fn line(&mut self, deadline: Instant, what: &str) -> Result<Vec<u8>, End> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n") {
                let line = self.buf[..p].to_vec();
                self.buf.drain(..p + 2);
                return Ok(line);
            }
            if self.buf.len() > 8192 {
                return Err(End::Garbage(format!("{what} line too long")));
            }
            let n = self.buf.len() + 1;
            self.need(n, deadline, what)?;
        }
    }

    /// One response: head and body by its framing.
    fn response(&mut self, deadline: Instant) -> Result<Resp, End> {
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            if self.buf.len() > 65536 {
                return Err(End::Garbage("response head over 64 KiB".into()));
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof if self.buf.is_empty() => return Err(End::Closed),
                Fill::Eof => return Err(End::Garbage(format!("closed in a head: {}", preview(&self.buf)))),
                Fill::Timeout if self.buf.is_empty() => {
                    return Err(End::Stuck(format!("no response within {} s", WAIT.as_secs())));
                }
                Fill::Timeout => return Err(End::Stuck(format!("head incomplete: {}", preview(&self.buf)))),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| End::Garbage(format!("status line {status_line:?}")))?;
        let mut fields = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(End::Garbage(format!("response field {line:?}")));
            };
            fields.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let values = |name: &str| -> Vec<&str> {
            fields
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let te = values("transfer-encoding").join(",");
        let lengths = values("content-length");
        let mut body = Vec::new();
        if status < 200 || status == 204 || status == 304 {
        } else if !te.is_empty() && !lengths.is_empty() {
            return Err(End::Garbage(format!(
                "response {status} with both Transfer-Encoding and Content-Length"
            )));
        } else if !te.is_empty() {
            if !te
                .rsplit(',')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("chunked")
            {
                return Err(End::Garbage(format!("response Transfer-Encoding {te:?}")));
            }
            loop {
                let line = self.line(deadline, "chunk size")?;
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    .ok_or_else(|| End::Garbage(format!("chunk size {}", preview(&line))))?;
                if size == 0 {
                    while !self.line(deadline, "trailer")?.is_empty() {}
                    break;
                }
                self.need(size + 2, deadline, "chunk")?;
                body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
        } else if let Some(first) = lengths.first() {
            let n: usize = first
                .parse()
                .ok()
                .filter(|_| lengths.iter().all(|l| l == first))
                .ok_or_else(|| End::Garbage(format!("response Content-Length {lengths:?}")))?;
            self.need(n, deadline, "body")?;
            body = self.buf.drain(..n).collect();
        } else {
            // Until the close.
            loop {
                match self.fill(deadline) {
                    Fill::Data => {}
                    Fill::Eof => break,
                    Fill::Timeout => {
                        return Err(End::Stuck(format!(
                            "body until close never ended: {}",
                            preview(&self.buf)
                        )));
                    }
                }
            }
            body = std::mem::take(&mut self.buf);
        }
        Ok(Resp { status, body })
    }
}

fn connect(addr: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(from) = from else {
        return TcpStream::connect_timeout(&addr, WAIT);
    };
    // std cannot bind before connecting; tokio's socket can.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect timed out"))??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// Sends the row's bytes on a fresh connection and reads what comes back.
fn exchange(addr: SocketAddr, row: &Row) -> Seen {
    let mut seen = Seen {
        interim: 0,
        finals: Vec::new(),
        end: End::Open,
        tunnel: None,
        notes: Vec::new(),
        backend: Vec::new(),
    };
    let want = row.expect.iter().map(|o| o.statuses().len()).max().unwrap_or(0);
    let window = if row.expect.iter().any(|o| o.closed == Closed::Yes) {
        CLOSE_WAIT.max(row.window)
    } else {
        row.window
    };
    let stream = match connect(addr, row.from) {
        Ok(s) => s,
        Err(e) => {
            seen.end = End::Stuck(format!("connect: {e}"));
            return seen;
        }
    };
    let _ = stream.set_write_timeout(Some(WAIT));
    let mut c = Client {
        s: stream,
        buf: Vec::new(),
    };
    for (i, bytes) in row.writes.iter().enumerate() {
        if i > 0 {
            thread::sleep(PAUSE);
        }
        if let Err(e) = c.s.write_all(bytes) {
            seen.notes.push(format!("write {i} failed: {e}"));
            break;
        }
    }
    for _ in 0..want + 100 {
        if seen.finals.len() >= want {
            // Anything more, or the close, within the window.
            if c.buf.is_empty() {
                match c.fill(Instant::now() + window) {
                    Fill::Data => {}
                    Fill::Eof => {
                        seen.end = End::Closed;
                        return seen;
                    }
                    Fill::Timeout => {
                        seen.end = End::Open;
                        return seen;
                    }
                }
            }
        }
        match c.response(Instant::now() + WAIT) {
            Ok(r) if r.status == 101 => {
                seen.finals.push(r);
                seen.end = End::Upgraded;
                if let Some(bytes) = row.tunnel {
                    seen.tunnel = Some(through_tunnel(&mut c, bytes));
                }
                return seen;
            }
            Ok(r) if r.status < 200 => seen.interim += 1,
            Ok(r) => seen.finals.push(r),
            Err(end) => {
                seen.end = end;
                return seen;
            }
        }
    }
    seen.end = End::Garbage("more than 100 responses".into());
    seen
}

fn through_tunnel(c: &mut Client, bytes: &[u8]) -> Result<(), String> {
    c.s.write_all(bytes)
        .map_err(|e| format!("write into the tunnel: {e}"))?;
    c.need(bytes.len(), Instant::now() + WAIT, "tunnel echo")
        .map_err(|e| format!("{e:?}"))?;
    let echoed: Vec<u8> = c.buf.drain(..bytes.len()).collect();
    if echoed == bytes.to_ascii_uppercase() {
        Ok(())
    } else {
        Err(format!("tunnel echoed {}", preview(&echoed)))
    }
}

// ---------------------------------------------------------------------------------------------
// Judging.

struct BackendView<'a> {
    requests: Vec<&'a Got>,
    /// The backend connections that carried anything.
    conns: std::collections::BTreeSet<u64>,
    raw: Vec<u8>,
    unparsable: Vec<&'a str>,
    tunnel: Vec<u8>,
    /// HTTP-mode bytes that are no part of a complete request.
    leftover: usize,
}

fn view(events: &[Event]) -> BackendView<'_> {
    let mut v = BackendView {
        requests: Vec::new(),
        conns: std::collections::BTreeSet::new(),
        raw: Vec::new(),
        unparsable: Vec::new(),
        tunnel: Vec::new(),
        leftover: 0,
    };
    let mut before_switch = 0;
    for e in events {
        match e {
            Event::Raw(conn, bytes) => {
                v.conns.insert(*conn);
                v.raw.extend_from_slice(bytes);
            }
            Event::Request(got) => v.requests.push(got),
            Event::Unparsable(conn, why) => {
                v.conns.insert(*conn);
                v.unparsable.push(why);
            }
            Event::Tunnel(conn, bytes, early) => {
                v.conns.insert(*conn);
                v.tunnel.extend_from_slice(bytes);
                if *early {
                    before_switch += bytes.len();
                }
            }
        }
    }
    let parsed: usize = v.requests.iter().map(|g| g.wire).sum();
    v.leftover = v.raw.len().saturating_sub(parsed + before_switch);
    v
}

/// The backend connection an event happened on.
fn event_conn(e: &Event) -> u64 {
    match e {
        Event::Raw(conn, _) | Event::Unparsable(conn, _) | Event::Tunnel(conn, ..) => *conn,
        Event::Request(got) => got.conn,
    }
}

/// Connections that carried bytes that are no complete request, or an unparsable one.
fn unfinished_conns(events: &[Event]) -> Vec<u64> {
    let mut raw: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        match e {
            Event::Raw(conn, bytes) => *raw.entry(*conn).or_default() += bytes.len(),
            Event::Request(got) => {
                *raw.entry(got.conn).or_default() -= got.wire.min(raw.get(&got.conn).copied().unwrap_or(0))
            }
            Event::Unparsable(conn, _) => out.push(*conn),
            // A tunnel's bytes are its own; the connection is never an HTTP one again.
            Event::Tunnel(conn, ..) => out.push(*conn),
        }
    }
    out.extend(raw.into_iter().filter(|&(_, left)| left > 0).map(|(conn, _)| conn));
    out
}

fn summary(seen: &Seen) -> String {
    let statuses: Vec<String> = seen.finals.iter().map(|r| r.status.to_string()).collect();
    let mut s = if statuses.is_empty() {
        "-".to_owned()
    } else {
        statuses.join(",")
    };
    if seen.interim > 0 {
        s.push_str(&format!("(+{}×1xx)", seen.interim));
    }
    s.push_str(match &seen.end {
        End::Closed => " closed",
        End::Open => " open",
        End::Upgraded => " upgraded",
        End::Stuck(_) => " STUCK",
        End::Garbage(_) => " GARBAGE",
    });
    let v = view(&seen.backend);
    s.push_str(&format!(" be:{}", v.requests.len()));
    if v.leftover > 0 {
        s.push_str("+raw");
    }
    if !v.unparsable.is_empty() {
        s.push_str("+bad");
    }
    s
}

fn judge(outcome: &Outcome, seen: &Seen, row: &Row) -> Vec<String> {
    let mut errors = Vec::new();
    let statuses: Vec<u16> = seen.finals.iter().map(|r| r.status).collect();
    let wanted = outcome.statuses();
    if statuses != wanted {
        errors.push(format!("client got {statuses:?}, want {wanted:?}"));
    }
    match (&seen.end, outcome.closed) {
        (End::Stuck(why) | End::Garbage(why), _) => errors.push(format!("client: {why}")),
        (End::Closed, _) => {}
        (End::Upgraded, _) if wanted.last() == Some(&101) => {}
        (End::Upgraded, _) => errors.push("the connection was switched to another protocol".into()),
        (End::Open, Closed::Yes) => errors.push(format!(
            "connection still open {} s after the response",
            CLOSE_WAIT.as_secs()
        )),
        (End::Open, Closed::Either) => {}
    }
    let v = view(&seen.backend);
    for why in &v.unparsable {
        errors.push(format!("backend could not parse what it got: {why}"));
    }
    match &outcome.backend {
        Gets::Exactly(wants) if wants.is_empty() => {
            if !v.raw.is_empty() {
                errors.push(format!(
                    "backend got bytes on connections {:?}: {}",
                    v.conns,
                    preview(&v.raw)
                ));
            }
        }
        Gets::Exactly(wants) => {
            if v.requests.len() != wants.len() {
                let got: Vec<String> = v
                    .requests
                    .iter()
                    .map(|g| format!("{} {} (conn {})", g.method, g.target, g.conn))
                    .collect();
                errors.push(format!(
                    "backend got {} requests {got:?}, want {}",
                    got.len(),
                    wants.len()
                ));
            }
            if v.leftover > 0 {
                errors.push(format!(
                    "backend got {} bytes that are no complete request: {}",
                    v.leftover,
                    preview(&v.raw[v.raw.len() - v.leftover..])
                ));
            }
            for (i, (w, g)) in wants.iter().zip(&v.requests).enumerate() {
                errors.extend(compare(i, w, g));
            }
            for (i, (w, r)) in wants.iter().zip(&seen.finals).enumerate() {
                if let Some(body) = &w.response_body
                    && &r.body != body
                {
                    errors.push(format!(
                        "response {i}: body {}, want {}",
                        preview(&r.body),
                        preview(body)
                    ));
                }
            }
        }
        Gets::AtMost(n) => {
            if v.requests.len() > *n {
                errors.push(format!("backend got {} requests, want at most {n}", v.requests.len()));
            }
        }
    }
    if let Some(bytes) = row.tunnel
        && wanted.last() == Some(&101)
    {
        match &seen.tunnel {
            Some(Ok(())) if v.tunnel == bytes => {}
            Some(Ok(())) => errors.push(format!("backend's tunnel got {}", preview(&v.tunnel))),
            Some(Err(e)) => errors.push(e.clone()),
            None => errors.push("no tunnel".into()),
        }
    }
    if let Some(check) = row.raw
        && let Err(e) = check(&v.raw)
    {
        errors.push(e);
    }
    errors
}

fn compare(i: usize, w: &Want, g: &Got) -> Vec<String> {
    let mut errors = Vec::new();
    let at = format!("request {i} ({} {})", g.method, g.target);
    if g.method != w.method || g.target != w.target {
        errors.push(format!("{at}: want {} {}", w.method, w.target));
    }
    for (name, value) in &w.has {
        let values = g.values(name);
        if values != [value.as_str()] {
            errors.push(format!("{at}: {name} = {values:?}, want [{value:?}]"));
        }
    }
    for name in &w.lacks {
        let values = g.values(name);
        if !values.is_empty() {
            errors.push(format!("{at}: {name} present: {values:?}"));
        }
    }
    for (name, value) in &w.lacks_value {
        if g.values(name).contains(value) {
            errors.push(format!("{at}: {name}: {value} reached the backend"));
        }
    }
    if g.body != w.body {
        errors.push(format!("{at}: body {}, want {}", preview(&g.body), preview(&w.body)));
    }
    errors
}

struct Verdict {
    summary: String,
    took: Duration,
    /// Empty when the row passed.
    errors: Vec<String>,
}

/// Runs every row against one proxy; `lane` is the address its backend connections come from
/// (`None`: all of them, the rows of the proxies then not running at the same time).
fn run_rows(label: &'static str, addr: &str, lane: Option<IpAddr>, rows: &[Row], backend: &Backend) -> Vec<Verdict> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut verdicts: Vec<Verdict> = Vec::new();
    // Backend connections a row left with bytes that are no complete request (an aborted body):
    // a correct proxy never sends on them again, so bytes that still trickle in on them (a
    // backend thread starved of CPU reads them late) belong to that row, not to a later one.
    let mut unfinished: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for row in rows {
        // Whatever reached the backend after the previous row was judged belongs to that row.
        let mut late = backend.drain(lane);
        late.retain(|(_, e)| !unfinished.contains(&event_conn(e)));
        if let Some(previous) = verdicts.last_mut()
            && !late.is_empty()
        {
            let late: Vec<Event> = late.into_iter().map(|(_, e)| e).collect();
            let v = view(&late);
            previous.errors.push(format!(
                "late: after the row the backend got {} requests, bytes {}",
                v.requests.len(),
                preview(&v.raw)
            ));
            previous.summary.push_str(" +late");
        }
        let row_started = Instant::now();
        let mut seen = exchange(addr, row);
        // A request is logged before it is answered, so this waits only when one is missing.
        let expected = row.expect.iter().map(Outcome::requests).max().unwrap_or(0);
        if expected > 0 {
            poll(Duration::from_secs(1), || {
                (backend.requests(lane) >= expected).then_some(())
            });
        }
        backend.settle(lane);
        seen.backend = backend
            .drain(lane)
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| !unfinished.contains(&event_conn(e)))
            .collect();
        unfinished.extend(unfinished_conns(&seen.backend));
        let applicable: Vec<&Outcome> = row
            .expect
            .iter()
            .filter(|o| o.only_on.is_none_or(|p| p == label))
            .collect();
        let passed = applicable.iter().any(|o| judge(o, &seen, row).is_empty());
        let errors = if passed {
            Vec::new()
        } else {
            let mut errors = judge(applicable[0], &seen, row);
            errors.extend(seen.notes.iter().map(|n| format!("note: {n}")));
            errors
        };
        verdicts.push(Verdict {
            summary: summary(&seen),
            took: row_started.elapsed(),
            errors,
        });
    }
    let late = backend.drain(lane);
    if let Some(previous) = verdicts.last_mut()
        && !late.is_empty()
    {
        previous
            .errors
            .push(format!("late: {} backend events after the row", late.len()));
    }
    verdicts
}

// ---------------------------------------------------------------------------------------------
// The site and the proxies.

fn site() -> String {
    [
        single_alb_site("127.0.26.1", None, "127.0.26.11"),
        vec![
            ingress(
                "admin",
                "h.test",
                &[("whitelist-source-range", "10.0.0.0/8")],
                "/admin",
                "Prefix",
            ),
            ingress("open", "h.test", &[], "/", "Prefix"),
            ingress(
                "guarded",
                "auth.test",
                &[("auth-tls-verify-client", "on")],
                "/admin",
                "Prefix",
            ),
            ingress("pub", "auth.test", &[], "/", "Prefix"),
        ],
    ]
    .concat()
    .join("---\n")
}

/// nginx in front of the same backend, for comparison, where it is installed.
fn start_nginx(dir: &std::path::Path) -> Option<Proc> {
    let found = Command::new("sh")
        .args(["-c", "command -v nginx"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        return None;
    }
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).ok()?;
    let conf = write(
        &prefix,
        "nginx.conf",
        &format!(
            "worker_processes 1;\nerror_log stderr;\npid {pid};\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
             fastcgi_temp_path {tmp}/fcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n\
             upstream app {{ server {BACKEND}; keepalive 8; }}\n\
             server {{\n    listen {NGINX};\n    location / {{\n      proxy_pass http://app;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_bind 127.0.26.3;\n\
             }}\n  }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            tmp = prefix.display(),
        ),
    );
    let nginx = Proc::start(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off; master_process off;"]),
    );
    let url = format!("http://{NGINX}/nginx-probe");
    poll(Duration::from_secs(10), || (curl(&[&url]).0 == 200).then_some(()))
        .map(|()| nginx)
        .or_else(|| {
            println!("nginx did not come up; no nginx column");
            None
        })
}

/// The address `addr`'s connections reach the backend from, found with one request.
fn lane_of(addr: &str, backend: &Backend) -> Option<IpAddr> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), WAIT).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    s.write_all(b"GET /lane-probe HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    poll(WAIT, || (backend.requests(None) > 0).then_some(()));
    backend.drain(None).into_iter().find_map(|(ip, e)| match e {
        Event::Request(g) if g.target == "/lane-probe" => Some(ip),
        _ => None,
    })
}

#[test]
fn hostile_requests_and_responses_on_both_http1_paths() {
    let started = Instant::now();
    let dir = tempdir();
    write(dir.path(), "site.yaml", &site());
    let backend = Backend::start(BACKEND);
    let alb = |name: &str, extra: &[&str]| {
        Proc::start(
            name,
            Command::new(bin("zone-alb"))
                .args(["--alb-id", "a"])
                .args(extra)
                .arg("--manifests")
                .arg(dir.path()),
        )
    };
    let mut fast = alb("zone-alb (fast path)", &[]);
    let mut hyper = alb("zone-alb (hyper)", &["--no-fast-path", "--listen", HYPER]);
    for (proc, addr) in [(&fast, FAST), (&hyper, HYPER)] {
        let url = format!("http://{addr}/");
        poll(Duration::from_secs(20), || {
            (curl(&["-H", "Host: albhealth.c.test", &url]).0 == 200).then_some(())
        })
        .unwrap_or_else(|| panic!("{} not up:\n{}", proc.name, proc.output()));
    }
    let nginx = start_nginx(dir.path());

    let rows = rows();
    let mut targets: Vec<(&'static str, &str)> = vec![("fast", FAST), ("hyper", HYPER)];
    if nginx.is_some() {
        targets.push(("nginx", NGINX));
    }
    // Each proxy's upstream connections come from its own address, so the rows can run on all
    // of them at once, each reading only its own share of the backend's log; if they do not,
    // one after the other.
    let lanes: Vec<Option<IpAddr>> = targets.iter().map(|(_, addr)| lane_of(addr, &backend)).collect();
    let distinct = lanes.iter().all(Option::is_some)
        && lanes
            .iter()
            .enumerate()
            .all(|(i, l)| lanes[..i].iter().all(|other| other != l));
    let results: Vec<Vec<Verdict>> = if distinct {
        thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .zip(&lanes)
                .map(|(&(label, addr), &lane)| {
                    let (rows, backend) = (&rows, &backend);
                    scope.spawn(move || run_rows(label, addr, lane, rows, backend))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    } else {
        println!("backend connections of the proxies are not told apart by address ({lanes:?}): one at a time");
        targets
            .iter()
            .map(|&(label, addr)| run_rows(label, addr, None, &rows, &backend))
            .collect()
    };

    // The table: the zone-alb paths decide; nginx, if there, is for comparison.
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(10).max(8);
    let mut table = format!("{:width$} | {:28} | {:28} |", "row", "fast path", "hyper");
    if nginx.is_some() {
        table.push_str(&format!(" {:28} |", "nginx (info)"));
    }
    table.push_str(" result\n");
    let mut failures = Vec::new();
    let mut passed = 0;
    for (i, row) in rows.iter().enumerate() {
        let (f, h) = (&results[0][i], &results[1][i]);
        let verdict = match (f.errors.is_empty(), h.errors.is_empty()) {
            (true, true) => "PASS",
            (false, true) => "FAIL (fast)",
            (true, false) => "FAIL (hyper)",
            (false, false) => "FAIL (both)",
        };
        if verdict == "PASS" {
            passed += 1;
        }
        table.push_str(&format!("{:width$} | {:28} | {:28} |", row.name, f.summary, h.summary));
        if let Some(n) = results.get(2) {
            let mark = if n[i].errors.is_empty() { "" } else { " ✗" };
            table.push_str(&format!(" {:28} |", format!("{}{mark}", n[i].summary)));
        }
        table.push_str(&format!(" {verdict}\n"));
        for (label, v) in [("fast", f), ("hyper", h)] {
            if !v.errors.is_empty() {
                failures.push(format!(
                    "{} [{label}]: {}\n    {}",
                    row.name,
                    v.summary,
                    v.errors.join("\n    ")
                ));
            }
        }
    }
    println!(
        "\n{table}\n{passed} of {} rows pass on both paths ({:.1} s); \
         columns: final statuses (+1xx), connection after them, requests the backend parsed \
         (+raw: bytes that are no complete request, +bad: unparsable)\n",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    for (label, verdicts) in ["fast", "hyper"].iter().zip(&results) {
        let mut slow: Vec<(Duration, &str)> = verdicts
            .iter()
            .zip(&rows)
            .map(|(v, r)| (v.took, r.name.as_str()))
            .collect();
        slow.sort_by_key(|&(took, _)| std::cmp::Reverse(took));
        let total: Duration = verdicts.iter().map(|v| v.took).sum();
        let slowest: Vec<String> = slow
            .iter()
            .take(5)
            .map(|(took, name)| format!("{name} {:.1} s", took.as_secs_f64()))
            .collect();
        println!(
            "{label}: the rows took {:.1} s; slowest: {}",
            total.as_secs_f64(),
            slowest.join(", ")
        );
    }
    // A hostile row must not take a proxy down.
    for proc in [&mut fast, &mut hyper] {
        if !proc.is_running() {
            failures.push(format!("{} exited during the rows:\n{}", proc.name, proc.output()));
        }
    }
    drop(nginx);
    drop(fast);
    drop(hyper);
    drop(backend);
    assert!(
        failures.is_empty(),
        "{} failures in {} of {} rows:\n{}",
        failures.len(),
        rows.len() - passed,
        rows.len(),
        failures.join("\n")
    );
}
