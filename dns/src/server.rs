//! The DNS listeners. UDP runs our own loop: hot-path threads receive and send in batches
//! (`recvmmsg`/`sendmmsg`) and answer from pre-built wire responses; everything else is queued
//! to a task that runs hickory's catalog. TCP is ours too (length framing, pipelining, idle
//! timeouts): the same hot path, then the same screening and catalog. hickory's own server is
//! not used because it answers FORMERR to responses it cannot parse, and its parse errors
//! come before any hook of ours.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::timeout;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol as DnsProtocol;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::Tally;
use crate::prebuilt::{RCODE_FORMERR, Verdict, formerr, truncated};
use crate::ratelimit::{Decision, Limiter, RateLimit};
use crate::wire::{HEADER_LEN, Screen, screen, set_dnssec_ok};
use crate::{Authority, Error, Result};

/// Idle TCP connections are closed after this long (DoS protection).
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connections served at once; beyond this new ones are closed at once.
const TCP_CONNECTIONS: usize = 1024;
/// Larger than any UDP query we accept (EDNS payloads are about responses).
const RECV_BUFFER: usize = 4096;
/// Packets taken per receive and answered per send on the hot path.
const BATCH: usize = 64;
/// Queries waiting for the slow path; beyond this they are dropped.
const SLOW_QUEUE: usize = 1024;

/// Bound DNS sockets, so a caller can fail at start-up before serving anything.
pub struct Listeners {
    /// One UDP socket per hot-path thread, all on the same address (`SO_REUSEPORT`): the
    /// kernel spreads client flows over them, and no two threads contend for one socket.
    udp: Vec<std::net::UdpSocket>,
    tcp: TcpListener,
}

impl Listeners {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Binds `udp_threads` UDP sockets (each served by its own thread; `None` is one per core) and
/// TCP on the same address.
pub async fn bind(addr: SocketAddr, udp_threads: Option<usize>) -> Result<Listeners> {
    let udp_threads = udp_threads.unwrap_or_else(hot_path_threads);
    let udp_error = |source| Error::Bind {
        addr,
        proto: "udp",
        source,
    };
    let first = reuseport_udp(addr).map_err(udp_error)?;
    // With port 0 the kernel picks the port; the other sockets and TCP take the same one.
    let addr = first.local_addr().map_err(udp_error)?;
    let mut udp = vec![first];
    for _ in 1..udp_threads {
        udp.push(reuseport_udp(addr).map_err(udp_error)?);
    }
    let tcp = TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr,
        proto: "tcp",
        source,
    })?;
    Ok(Listeners { udp, tcp })
}

fn reuseport_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Room for bursts: a full buffer drops queries, which clients only notice as timeouts.
    socket.set_recv_buffer_size(4 << 20)?;
    socket.set_send_buffer_size(4 << 20)?;
    socket.bind(&addr.into())?;
    // Blocking, but woken now and then to notice shutdown.
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket.into())
}

/// Serves `authority` on `listeners` until `shutdown` is cancelled, limiting UDP responses
/// per client prefix as `rate_limit` says.
pub async fn serve(
    listeners: Listeners,
    authority: Authority,
    rate_limit: RateLimit,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listeners.local_addr().ok();
    let io_error = |source| Error::Bind {
        addr: addr.unwrap_or(([0, 0, 0, 0], 0).into()),
        proto: "udp",
        source,
    };
    // Slow-path replies go out through a plain duplicate of the first socket: all of them
    // share the address, and a tokio-registered socket would wake on every packet.
    let reply_socket = Arc::new(listeners.udp[0].try_clone().map_err(io_error)?);
    let (slow_tx, slow_rx) = mpsc::channel(SLOW_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = listeners.udp.len();
    let limiter = Arc::new(Limiter::new(rate_limit));
    let mut handles = Vec::new();
    for (i, socket) in listeners.udp.into_iter().enumerate() {
        let (authority, slow_tx, stop) = (authority.clone(), slow_tx.clone(), stop.clone());
        let limiter = limiter.clone();
        let handle = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || hot_path(socket, &authority, &limiter, &slow_tx, &stop))
            .map_err(io_error)?;
        handles.push(handle);
    }
    drop(slow_tx);
    let slow = tokio::spawn(slow_path_loop(slow_rx, reply_socket, authority.clone()));

    tracing::info!(
        ?addr,
        udp_threads = threads,
        rate_limit = rate_limit.responses_per_second,
        slip = rate_limit.slip,
        "authoritative DNS serving (udp, tcp)"
    );
    tcp_serve(listeners.tcp, authority, shutdown).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || handles.into_iter().for_each(|h| drop(h.join()))).await;
    let _ = slow.await;
    Ok(())
}

/// One hot-path thread (and socket) per core.
fn hot_path_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Receives a batch (blocking for the first packet only), answers what the pre-built responses
/// cover, sends the answers in one batch, and queues the rest for hickory. Every packet that
/// may get a response is counted against its prefix's rate limit first.
fn hot_path(
    socket: std::net::UdpSocket,
    authority: &Authority,
    limiter: &Limiter,
    slow: &mpsc::Sender<(Vec<u8>, SocketAddr)>,
    stop: &AtomicBool,
) {
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; RECV_BUFFER]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut lens = [0usize; BATCH];
    let mut sources: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut dests: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut tally = Tally::default();
    let mut turn = 0usize;
    let mut limited = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut received = 0;
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs.iter_mut().map(|b| [IoSliceMut::new(&mut b[..])]).collect();
            match recvmmsg(fd, &mut recv_headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(results) => {
                    for msg in results {
                        lens[received] = msg.bytes;
                        sources[received] = msg.address;
                        received += 1;
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(error) => {
                    // ICMP errors from earlier sends surface here; they are no reason to stop.
                    tracing::debug!(%error, "udp receive error");
                    continue;
                }
            }
        }
        let compiled = authority.current();
        let now = limiter.now();
        let mut answered = 0;
        for i in 0..received {
            let Some(src) = sources[i].as_ref().and_then(socket_addr).filter(|a| a.port() != 0) else {
                continue;
            };
            let query = &bufs[i][..lens[i]];
            // Packets that get no response anyway do not use up the client's budget.
            if query.len() >= HEADER_LEN && query[2] & 0x80 == 0 {
                match limiter.check(src.ip(), now, &mut limited) {
                    Decision::Answer => {}
                    Decision::Slip => {
                        tally.limited(true);
                        if truncated(query, &mut outs[answered]) {
                            dests[answered] = sources[i];
                            answered += 1;
                        }
                        continue;
                    }
                    Decision::Drop => {
                        tally.limited(false);
                        continue;
                    }
                }
            }
            turn = turn.wrapping_add(1);
            match compiled.prebuilt.answer(query, &mut outs[answered], turn, false) {
                Verdict::Answered { qtype, rcode } => {
                    dests[answered] = sources[i];
                    answered += 1;
                    tally.count(qtype, u16::from(rcode));
                }
                // A full queue sheds load: the client will retry.
                Verdict::Slow => drop(slow.try_send((query.to_vec(), src))),
                Verdict::Drop => {}
            }
        }
        authority.metrics.add(&mut tally);
        if answered > 0 {
            let iovs: Vec<[IoSlice<'_>; 1]> = outs[..answered].iter().map(|o| [IoSlice::new(o)]).collect();
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            if let Err(error) = sendmmsg(
                fd,
                &mut send_headers,
                iovs.iter(),
                &dests[..answered],
                no_cmsgs,
                MsgFlags::empty(),
            ) {
                tracing::debug!(%error, "udp send error");
            }
        }
    }
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        Some(SocketAddr::V4((*v4).into()))
    } else {
        s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    }
}

async fn slow_path_loop(
    mut queue: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    socket: Arc<std::net::UdpSocket>,
    authority: Authority,
) {
    let mut out = Vec::with_capacity(512);
    while let Some((query, src)) = queue.recv().await {
        if respond(&authority, &query, src, DnsProtocol::Udp, &mut out).await {
            let _ = socket.send_to(&out, src);
        }
    }
}

/// Accepts TCP connections until `shutdown`, then drops the open ones.
async fn tcp_serve(listener: TcpListener, authority: Authority, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    // Shared by all connections, so clients that open one per query still see rotation.
    let turn = Arc::new(AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    loop {
        let (stream, src) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, usually: back off instead of spinning on the error.
                    tracing::debug!(%error, "tcp accept error");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let (authority, turn, shutdown) = (authority.clone(), turn.clone(), shutdown.clone());
        connections.spawn(async move {
            tokio::select! {
                () = tcp_connection(stream, src, &authority, &turn) => {}
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// One TCP connection: length-prefixed queries answered in order (pipelined queries are read
/// from the buffer as they come), closed after `TCP_TIMEOUT` of silence or on any error.
async fn tcp_connection(mut stream: TcpStream, src: SocketAddr, authority: &Authority, turn: &AtomicUsize) {
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let (mut query, mut out, mut framed) = (Vec::new(), Vec::with_capacity(512), Vec::new());
    loop {
        let mut len = [0u8; 2];
        if !matches!(timeout(TCP_TIMEOUT, reader.read_exact(&mut len)).await, Ok(Ok(_))) {
            return;
        }
        query.resize(usize::from(u16::from_be_bytes(len)), 0);
        if !matches!(timeout(TCP_TIMEOUT, reader.read_exact(&mut query)).await, Ok(Ok(_))) {
            return;
        }
        let turn = turn.fetch_add(1, Ordering::Relaxed);
        let compiled = authority.current();
        let answered = match compiled.prebuilt.answer(&query, &mut out, turn, true) {
            Verdict::Answered { qtype, rcode } => {
                authority.metrics.count(qtype, u16::from(rcode));
                true
            }
            Verdict::Drop => false,
            Verdict::Slow => {
                drop(compiled);
                respond(authority, &query, src, DnsProtocol::Tcp, &mut out).await
            }
        };
        if !answered {
            continue;
        }
        framed.clear();
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        if !matches!(timeout(TCP_TIMEOUT, writer.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}

/// The full path for a query the hot path did not answer: screening, then hickory's catalog.
/// Leaves the response in `out`, or returns false when there is to be none.
async fn respond(
    authority: &Authority,
    query: &[u8],
    src: SocketAddr,
    protocol: DnsProtocol,
    out: &mut Vec<u8>,
) -> bool {
    let dnssec_ok = match screen(query) {
        Screen::Drop => return false,
        Screen::FormErr => {
            tracing::debug!(%src, "malformed query");
            authority.metrics.count(0, u16::from(RCODE_FORMERR));
            return formerr(query, out);
        }
        Screen::Pass { dnssec_ok } => dnssec_ok,
    };
    let request = match Request::from_bytes(query.to_vec(), src, protocol) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%src, %error, "malformed query");
            authority.metrics.count(0, u16::from(RCODE_FORMERR));
            return formerr(query, out);
        }
    };
    let capture = Capture {
        tcp: protocol == DnsProtocol::Tcp,
        response: Arc::default(),
    };
    authority
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let Some(response) = capture.response.lock().expect("capture poisoned").take() else {
        return false;
    };
    *out = response;
    if dnssec_ok {
        set_dnssec_ok(out);
    }
    true
}

/// Keeps hickory's response for the caller to send, truncated to the client's UDP payload
/// size (512 bytes without EDNS, RFC 1035 §4.2.1) or, over TCP, to a message's size.
#[derive(Clone)]
struct Capture {
    tcp: bool,
    response: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = if self.tcp {
            u16::MAX
        } else {
            response.edns().map_or(512, |e| e.max_payload().max(512))
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        *self.response.lock().expect("capture poisoned") = Some(bytes);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AnswerSet, SoaSettings, ZoneAnswers};

    fn authority() -> Authority {
        let authority = Authority::new();
        authority
            .publish(&AnswerSet {
                zones: vec![ZoneAnswers {
                    origin: "demo.mzlb.test".into(),
                    ttl: 5,
                    addresses: vec!["127.0.10.1".parse().unwrap()],
                    soa: SoaSettings::default(),
                }],
            })
            .unwrap();
        authority
    }

    /// `name` (labels) type `qtype`, RD set, then `tail` with ARCOUNT `additional`.
    fn query(name: &[u8], qtype: u16, additional: u16, tail: &[u8]) -> Vec<u8> {
        let mut q = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        q.extend_from_slice(&additional.to_be_bytes());
        q.extend_from_slice(name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q.extend_from_slice(tail);
        q
    }

    const DEMO: &[u8] = b"\x04demo\x04mzlb\x04test\x00";

    fn opt(flags: u8, rdata: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x10, 0x00, 0, 0, flags, 0];
        o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        o.extend_from_slice(rdata);
        o
    }

    /// What a client gets: (rcode with EDNS bits, question count, DO in the response's OPT).
    type Seen = Option<(u16, u16, Option<bool>)>;

    /// The response to `q` the way the server makes it: the hot path, then `respond`.
    async fn full(authority: &Authority, q: &[u8], protocol: DnsProtocol) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let tcp = protocol == DnsProtocol::Tcp;
        let verdict = authority.current().prebuilt.answer(q, &mut out, 0, tcp);
        let answered = match verdict {
            Verdict::Answered { .. } => true,
            Verdict::Drop => false,
            Verdict::Slow => respond(authority, q, "127.0.0.1:5300".parse().unwrap(), protocol, &mut out).await,
        };
        answered.then_some(out)
    }

    async fn answer(authority: &Authority, q: &[u8], protocol: DnsProtocol) -> Seen {
        let out = full(authority, q, protocol).await?;
        let Ok(m) = hickory_server::proto::op::Message::from_vec(&out) else {
            return Some((u16::MAX, u16::MAX, None)); // unparseable
        };
        assert_eq!(m.metadata.id, 0xABCD);
        assert_eq!(
            m.metadata.message_type,
            hickory_server::proto::op::MessageType::Response
        );
        let rcode = u16::from(m.metadata.response_code);
        Some((rcode, m.queries.len() as u16, m.edns.map(|e| e.flags().dnssec_ok)))
    }

    #[tokio::test]
    async fn hostile_queries_get_nsds_answers_on_both_transports() {
        let authority = authority();
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let response = {
            let mut q = query(DEMO, 1, 0, &[]);
            q[2] |= 0x80;
            q
        };
        let unparseable_response = {
            let mut q = query(b"\x05ab", 1, 0, &[]);
            q[2] |= 0x80;
            q
        };
        let rows: Vec<(&str, Vec<u8>, Seen)> = vec![
            ("A, no EDNS", query(DEMO, 1, 0, &[]), Some((0, 1, None))),
            (
                "A, DO set",
                query(DEMO, 1, 1, &opt(0x80, &cookie)),
                Some((0, 1, Some(true))),
            ),
            (
                "A, DO clear",
                query(DEMO, 1, 1, &opt(0, &[])),
                Some((0, 1, Some(false))),
            ),
            (
                "SOA (hickory), DO set",
                query(DEMO, 6, 1, &opt(0x80, &[])),
                Some((0, 1, Some(true))),
            ),
            (
                "NS (hickory), DO clear",
                query(DEMO, 2, 1, &opt(0, &[])),
                Some((0, 1, Some(false))),
            ),
            (
                "option overruns OPT",
                query(DEMO, 1, 1, &opt(0, &[0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8])),
                Some((1, 0, None)),
            ),
            (
                "option header cut",
                query(DEMO, 1, 1, &opt(0, &[0, 10])),
                Some((1, 0, None)),
            ),
            (
                "two OPT records",
                query(DEMO, 1, 2, &[opt(0, &[]), opt(0, &[])].concat()),
                Some((1, 0, None)),
            ),
            (
                "EDNS version 1",
                {
                    let mut o = opt(0, &[]);
                    o[6] = 1;
                    query(DEMO, 1, 1, &o)
                },
                Some((16, 1, Some(false))),
            ),
            (
                "question is a pointer",
                query(b"\xC0\x0C", 1, 0, &[]),
                Some((1, 0, None)),
            ),
            (
                "question ends in a pointer",
                query(b"\x01x\xC0\x04", 1, 0, &[]),
                Some((1, 0, None)),
            ),
            (
                "pointer question with EDNS",
                query(b"\xC0\x0C", 1, 1, &opt(0x80, &[])),
                Some((1, 0, None)),
            ),
            ("a response", response, None),
            ("an unparseable response", unparseable_response, None),
            (
                "a header only",
                query(DEMO, 1, 0, &[])[..12].to_vec(),
                Some((1, 0, None)),
            ),
            ("shorter than a header", vec![1, 2, 3], None),
        ];
        let mut wrong = Vec::new();
        for protocol in [DnsProtocol::Udp, DnsProtocol::Tcp] {
            for (what, q, want) in &rows {
                let got = answer(&authority, q, protocol).await;
                if got != *want {
                    wrong.push(format!("{what} over {protocol}: got {got:?}, want {want:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// The apex NS has the NS TTL, and never the ALBs' addresses as glue.
    #[tokio::test]
    async fn apex_ns_has_its_own_ttl_and_glue() {
        for (ns_addresses, glue) in [
            (vec![], vec![]),
            (vec!["192.0.2.53".parse().unwrap()], vec!["192.0.2.53"]),
        ] {
            let authority = Authority::new();
            let soa = SoaSettings {
                ns_addresses,
                ns_ttl: 7200,
                ..SoaSettings::default()
            };
            let zone = ZoneAnswers {
                origin: "demo.mzlb.test".into(),
                ttl: 5,
                addresses: vec!["127.0.10.1".parse().unwrap()],
                soa,
            };
            authority.publish(&AnswerSet { zones: vec![zone] }).unwrap();
            let q = query(DEMO, 2, 0, &[]);
            let out = full(&authority, &q, DnsProtocol::Udp).await.unwrap();
            let m = hickory_server::proto::op::Message::from_vec(&out).unwrap();
            assert_eq!(m.answers.len(), 1);
            assert_eq!(
                (m.answers[0].ttl, m.answers[0].data.to_string()),
                (7200, "ns.demo.mzlb.test.".to_owned())
            );
            let additional: Vec<String> = m.additionals.iter().map(|r| r.data.to_string()).collect();
            assert_eq!(additional, glue);
        }
    }

    /// A real TCP connection: a response is never answered, and the queries after it are.
    #[tokio::test]
    async fn tcp_ignores_responses_and_keeps_the_connection() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), Some(1)).await.unwrap();
        let addr = listeners.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listeners, authority(), RateLimit::default(), shutdown.clone()));
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut response = query(b"\x05ab", 1, 0, &[]);
        response[2] |= 0x80;
        let mut good = query(DEMO, 1, 0, &[]);
        good[1] = 0x42;
        let mut burst = Vec::new();
        for m in [&response, &good] {
            burst.extend_from_slice(&(m.len() as u16).to_be_bytes());
            burst.extend_from_slice(m);
        }
        tcp.write_all(&burst).await.unwrap();
        let mut len = [0u8; 2];
        timeout(Duration::from_secs(5), tcp.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut msg).await.unwrap();
        assert_eq!(
            msg[..2],
            [0xAB, 0x42],
            "the first answer is the query's, not the response's"
        );
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
