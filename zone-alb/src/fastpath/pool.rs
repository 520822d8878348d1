//! The fast path's upstream connections: plain TCP sockets to endpoints, kept alive between
//! requests. Each worker has its own pool, so a connection is only ever used by the thread
//! that opened it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

use crate::upstream::{self, UpstreamError};

/// An idle connection unused for this long is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per endpoint; more are closed when released (nginx's `keepalive`).
const MAX_IDLE_PER_ENDPOINT: usize = 128;
/// Read buffer of one upstream connection: a whole small response in one read, and large
/// bodies relayed in pieces of this size.
pub const READ_BUFFER: usize = 16 * 1024;

pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read from the backend and not yet relayed.
    pub buf: BytesMut,
    idle_since: Instant,
    /// Taken from the pool rather than just opened: the backend may have closed it meanwhile.
    pub reused: bool,
}

impl Conn {
    /// Not expired, and the backend has sent nothing since the last response ended: data or
    /// a FIN there means it closed the connection (or broke the protocol).
    fn reusable(&self) -> bool {
        if self.idle_since.elapsed() >= IDLE_TIMEOUT {
            return false;
        }
        // The readiness the event loop has already seen; no system call.
        let mut cx = Context::from_waker(Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_pending()
    }
}

type Idle = HashMap<SocketAddr, Vec<Conn>>;

/// All fast-path upstream connections of one worker.
pub struct Pool {
    source_ip: Option<IpAddr>,
    /// Held only to push or pop one connection, never across an await.
    idle: Arc<Mutex<Idle>>,
    opened: Counter,
}

impl Pool {
    pub fn new(source_ip: Option<IpAddr>, opened: Counter) -> Self {
        let idle = Arc::new(Mutex::new(Idle::new()));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&idle)));
        }
        Self {
            source_ip,
            idle,
            opened,
        }
    }

    /// An idle connection to `addr`, or a new one.
    pub async fn get(&self, addr: SocketAddr, connect_timeout: Duration) -> Result<Conn, UpstreamError> {
        if let Some(conn) = self.checkout(addr) {
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
            idle_since: Instant::now(),
            reused: false,
        })
    }

    fn checkout(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
        let list = idle.get_mut(&addr)?;
        // Most recently used first: the warmest socket, the least likely to have been closed
        // by the backend's own keep-alive timeout.
        while let Some(mut conn) = list.pop() {
            if conn.reusable() {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose exchange ended cleanly, with nothing left unread.
    pub fn release(&self, addr: SocketAddr, mut conn: Conn) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() >= MAX_IDLE_PER_ENDPOINT {
            list.retain(Conn::reusable);
            if list.len() >= MAX_IDLE_PER_ENDPOINT {
                list.remove(0); // the longest idle
            }
        }
        list.push(conn);
    }
}

/// Closes idle connections that expired or that the backend closed, so an endpoint that is
/// never used again does not keep sockets open.
async fn sweep(idle: Weak<Mutex<Idle>>) {
    let period = IDLE_TIMEOUT / 2;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        let Some(idle) = idle.upgrade() else { return };
        let mut idle = idle.lock().unwrap_or_else(|poison| poison.into_inner());
        idle.retain(|_, list| {
            list.retain(Conn::reusable);
            !list.is_empty()
        });
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
        // Let the event loop see the FIN.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut cx = Context::from_waker(Waker::noop());
            let idle = pool.idle.lock().unwrap();
            if idle[&addr][0].stream.poll_read_ready(&mut cx).is_ready() {
                break;
            }
        }
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
