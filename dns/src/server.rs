//! The DNS listeners. UDP runs our own loop: hot-path threads receive and send in batches
//! (`recvmmsg`/`sendmmsg`) and answer from pre-built wire responses; everything else is queued
//! to a task that runs hickory's catalog. TCP is served by
//! hickory's server (length framing, pipelining, idle timeouts) over the same catalog.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::sync::mpsc;

use hickory_server::Server;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol as DnsProtocol;
use hickory_server::proto::op::MessageType;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Tally;
use crate::prebuilt::{RCODE_FORMERR, Verdict, formerr};
use crate::{Authority, Error, Result};

/// Idle TCP connections are closed after this long (DoS protection).
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection (pipelined queries).
const TCP_RESPONSE_BUFFER: usize = 64;
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

/// Serves `authority` on `listeners` until `shutdown` is cancelled.
pub async fn serve(listeners: Listeners, authority: Authority, shutdown: CancellationToken) -> Result<()> {
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
    let mut handles = Vec::new();
    for (i, socket) in listeners.udp.into_iter().enumerate() {
        let (authority, slow_tx, stop) = (authority.clone(), slow_tx.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || hot_path(socket, &authority, &slow_tx, &stop))
            .map_err(io_error)?;
        handles.push(handle);
    }
    drop(slow_tx);
    let slow = tokio::spawn(slow_path_loop(slow_rx, reply_socket, authority.clone()));

    let mut server = Server::new(authority);
    server.register_listener(listeners.tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    tracing::info!(?addr, udp_threads = threads, "authoritative DNS serving (udp, tcp)");
    let result = tokio::select! {
        result = server.block_until_done() => result.map_err(|e| Error::Server(e.to_string())),
        () = shutdown.cancelled() => server.shutdown_gracefully().await.map_err(|e| Error::Server(e.to_string())),
    };
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || handles.into_iter().for_each(|h| drop(h.join()))).await;
    let _ = slow.await;
    result
}

/// One hot-path thread (and socket) per core.
fn hot_path_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Receives a batch (blocking for the first packet only), answers what the pre-built responses
/// cover, sends the answers in one batch, and queues the rest for hickory.
fn hot_path(
    socket: std::net::UdpSocket,
    authority: &Authority,
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
        let mut answered = 0;
        for i in 0..received {
            let Some(src) = sources[i].as_ref().and_then(socket_addr).filter(|a| a.port() != 0) else {
                continue;
            };
            let query = &bufs[i][..lens[i]];
            turn = turn.wrapping_add(1);
            match compiled.prebuilt.answer(query, &mut outs[answered], turn) {
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
        if answered > 0 {
            authority.metrics.add(&mut tally);
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
        slow_path(&socket, &authority, &query, src, &mut out).await;
    }
}

/// hickory's full request path for one UDP query.
async fn slow_path(
    socket: &Arc<std::net::UdpSocket>,
    authority: &Authority,
    query: &[u8],
    src: SocketAddr,
    out: &mut Vec<u8>,
) {
    let request = match Request::from_bytes(query.to_vec(), src, DnsProtocol::Udp) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%src, %error, "malformed query");
            if formerr(query, out) {
                let _ = socket.send_to(out, src);
                authority.metrics.count(0, u16::from(RCODE_FORMERR));
            }
            return;
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return; // never answer responses: no reflection loops
    }
    let responder = UdpResponder {
        socket: socket.clone(),
        dst: src,
    };
    authority.handle_request::<_, TokioTime>(&request, responder).await;
}

/// Sends hickory's responses on our UDP socket, truncating to the client's payload size.
#[derive(Clone)]
struct UdpResponder {
    /// A blocking socket: a UDP send does not wait for the peer, only for buffer space.
    socket: Arc<std::net::UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
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
        // RFC 1035 §4.2.1: 512 bytes without EDNS; the advertised payload with it.
        let max = response.edns().map_or(512, |e| e.max_payload().max(512));
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        self.socket.send_to(&bytes, self.dst)?;
        Ok(info)
    }
}
