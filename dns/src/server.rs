//! The DNS listeners. UDP runs our own receive loop: the hot path answers from pre-built
//! wire responses, everything else goes through hickory's catalog. TCP is served by
//! hickory's server (length framing, pipelining, idle timeouts) over the same catalog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::MessageType;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::prebuilt::{RCODE_FORMERR, Verdict, formerr};
use crate::{Authority, Error, Result};

/// Idle TCP connections are closed after this long (DoS protection).
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection (pipelined queries).
const TCP_RESPONSE_BUFFER: usize = 64;
/// Larger than any UDP query we accept (EDNS payloads are about responses).
const RECV_BUFFER: usize = 4096;

/// Bound DNS sockets, so a caller can fail at start-up before serving anything.
pub struct Listeners {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Listeners {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Binds UDP and TCP on the same address.
pub async fn bind(addr: SocketAddr) -> Result<Listeners> {
    let udp = UdpSocket::bind(addr).await.map_err(|source| Error::Bind {
        addr,
        proto: "udp",
        source,
    })?;
    // With port 0 the kernel picks the UDP port; TCP takes the same one.
    let addr = udp.local_addr().map_err(|source| Error::Bind {
        addr,
        proto: "udp",
        source,
    })?;
    let tcp = TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr,
        proto: "tcp",
        source,
    })?;
    Ok(Listeners { udp, tcp })
}

/// Serves `authority` on `listeners` until `shutdown` is cancelled.
pub async fn serve(listeners: Listeners, authority: Authority, shutdown: CancellationToken) -> Result<()> {
    let addr = listeners.local_addr().ok();
    let udp = Arc::new(listeners.udp);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(udp_worker(udp.clone(), authority.clone(), shutdown.clone()));
    }
    let mut server = Server::new(authority);
    server.register_listener(listeners.tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    tracing::info!(?addr, udp_workers = workers, "authoritative DNS serving (udp, tcp)");
    let result = tokio::select! {
        result = server.block_until_done() => result.map_err(|e| Error::Server(e.to_string())),
        () = shutdown.cancelled() => server.shutdown_gracefully().await.map_err(|e| Error::Server(e.to_string())),
    };
    while tasks.join_next().await.is_some() {}
    result
}

async fn udp_worker(socket: Arc<UdpSocket>, authority: Authority, shutdown: CancellationToken) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::with_capacity(1232);
    loop {
        let (len, src) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(error) => {
                    // ICMP errors from earlier sends surface here; they are no reason to stop.
                    tracing::debug!(%error, "udp receive error");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        if src.port() == 0 {
            continue; // cannot be answered
        }
        let query = &buf[..len];
        let verdict = authority.current().prebuilt.answer(query, &mut out);
        match verdict {
            Verdict::Answered { qtype, rcode } => {
                let _ = socket.send_to(&out, src).await;
                authority.metrics.count(qtype, u16::from(rcode));
            }
            Verdict::Drop => {}
            Verdict::Slow => slow_path(&socket, &authority, query, src, &mut out).await,
        }
    }
}

/// hickory's full request path for one UDP query.
async fn slow_path(socket: &Arc<UdpSocket>, authority: &Authority, query: &[u8], src: SocketAddr, out: &mut Vec<u8>) {
    let request = match Request::from_bytes(query.to_vec(), src, Protocol::Udp) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%src, %error, "malformed query");
            if formerr(query, out) {
                let _ = socket.send_to(out, src).await;
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
    socket: Arc<UdpSocket>,
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
        self.socket.send_to(&bytes, self.dst).await?;
        Ok(info)
    }
}
