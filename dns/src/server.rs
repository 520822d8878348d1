//! The DNS listeners: hickory's server on one UDP socket and one TCP listener.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::{Authority, Error, Result};

/// Idle TCP connections are closed after this long (DoS protection).
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection (pipelined queries).
const TCP_RESPONSE_BUFFER: usize = 64;

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
    let mut server = Server::new(authority);
    server.register_socket(listeners.udp);
    server.register_listener(listeners.tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    tracing::info!(?addr, "authoritative DNS serving (udp, tcp)");
    tokio::select! {
        result = server.block_until_done() => result.map_err(|e| Error::Server(e.to_string())),
        () = shutdown.cancelled() => {
            server.shutdown_gracefully().await.map_err(|e| Error::Server(e.to_string()))
        }
    }
}
