//! The fast path's upstream connections: plain TCP sockets to endpoints, kept alive between
//! requests. Each worker has its own pool, so a connection is only ever used by the thread
//! that opened it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::BytesMut;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

use crate::keepalive;
use crate::upstream::{self, UpstreamError};

/// Read buffer of one upstream connection: a whole small response in one read, and large
/// bodies relayed in pieces of this size.
pub const READ_BUFFER: usize = 16 * 1024;

pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read from the backend and not yet relayed.
    pub buf: BytesMut,
    /// Taken from the pool rather than just opened: the backend may have closed it meanwhile.
    pub reused: bool,
}

impl keepalive::Open for Conn {
    /// The backend has sent nothing since the last response ended: data or a FIN there means
    /// it closed the connection (or broke the protocol). This is the readiness the event loop
    /// has already seen: no system call.
    fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_pending()
    }
}

pub(crate) type Idle = keepalive::Idle<SocketAddr, Conn>;

/// All fast-path upstream connections of one worker.
pub struct Pool {
    source_ip: Option<IpAddr>,
    idle: Arc<Idle>,
    opened: Counter,
}

impl Pool {
    pub fn new(source_ip: Option<IpAddr>, opened: Counter) -> Self {
        Self {
            source_ip,
            idle: keepalive::Idle::new(),
            opened,
        }
    }

    /// An idle connection to `addr`, or a new one.
    pub async fn get(&self, addr: SocketAddr, connect_timeout: Duration) -> Result<Conn, UpstreamError> {
        if let Some(mut conn) = self.idle.checkout(addr) {
            conn.reused = true;
            return Ok(conn);
        }
        self.connect(addr, connect_timeout).await
    }

    /// A new connection, bypassing the idle ones.
    pub async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<Conn, UpstreamError> {
        let stream = tokio::time::timeout(timeout, upstream::connect_tcp(addr, self.source_ip))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(timeout))?
            .map_err(UpstreamError::Connect)?;
        self.opened.inc();
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_BUFFER),
            reused: false,
        })
    }

    /// Returns a connection whose exchange ended cleanly, with nothing left unread.
    pub fn release(&self, addr: SocketAddr, conn: Conn) {
        self.idle.release(addr, conn);
    }

    /// Connections opened so far.
    #[cfg(test)]
    pub(crate) fn opened(&self) -> u64 {
        self.opened.get()
    }

    /// Idle connections to `addr`.
    #[cfg(test)]
    pub(crate) fn parked(&self, addr: SocketAddr) -> usize {
        self.idle.parked(addr)
    }

    /// The idle set, for a response body that gives its connection back when it ends (after
    /// the proxy is gone, there is nothing to give it back to).
    pub(crate) fn idle(&self) -> Weak<Idle> {
        Arc::downgrade(&self.idle)
    }
}

/// Whether an error on a reused connection means the backend had closed it before our
/// request arrived, so the request can be sent again on a new one.
pub fn is_stale(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_handed_out_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(None, Counter::default());
        let conn = pool.get(addr, Duration::from_secs(1)).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        pool.release(addr, conn);
        // Alive: handed out again.
        let conn = pool.get(addr, Duration::from_secs(1)).await.unwrap();
        assert!(conn.reused);
        pool.release(addr, conn);
        assert_eq!(pool.opened.get(), 1);
        drop(server_side);
        // Let the event loop see the FIN (on loopback it is there at once).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let conn = pool.get(addr, Duration::from_secs(1)).await.unwrap();
        assert!(!conn.reused, "a closed connection was reused");
        assert_eq!(pool.opened.get(), 2);
        // The new connection is a real one: the backend sees it open, then closed.
        let (mut server_side, _) = listener.accept().await.unwrap();
        drop(conn);
        let mut byte = [0u8; 1];
        assert_eq!(server_side.read(&mut byte).await.unwrap(), 0);
    }
}
