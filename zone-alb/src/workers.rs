//! The data plane: worker threads, each running its own single-threaded runtime with its own
//! listening sockets and its own upstream connection pool, as nginx runs worker processes. A
//! connection is served start to finish on the thread that accepted it: no work stealing and
//! no wake-ups across threads on the request path. What the workers share is read without
//! locks (the routing table through `ArcSwap`, counters and balancer state as atomics) or
//! locked only per client by the limits that ask for it.
//!
//! Each worker listens on its own `SO_REUSEPORT` socket, so the kernel spreads connections
//! over the workers and a new connection wakes one worker, not all of them.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy};
use crate::router::RouteTable;
use crate::server;

/// The worker count when none is given: one per core the process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What every worker builds its proxy and listeners from.
pub struct Shared {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub proxy: proxy::Settings,
    pub metrics: Arc<Metrics>,
    pub proxy_protocol: bool,
}

/// Listening sockets, one per worker (non-blocking).
pub struct Listeners {
    pub plain: Vec<TcpListener>,
    /// With the state, shared by every worker, that terminates TLS on them.
    pub tls: Option<(Vec<TcpListener>, Arc<crate::tls::Edge>)>,
}

/// Binds `count` sockets to `addr` with `SO_REUSEPORT`, one per worker.
///
/// Sockets with `SO_REUSEPORT` of the same user share an address silently, so a second ALB
/// started on a taken address would take half its connections instead of failing. A plain
/// socket is bound first to prove the address free, as any other server's bind would.
pub fn bind(addr: SocketAddr, count: usize) -> Result<Vec<TcpListener>> {
    let error = |source| Error::Listen { addr, source };
    let mut addr = addr;
    if addr.port() != 0 {
        drop(socket(addr, false).map_err(error)?);
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = socket(addr, true).map_err(error)?;
        socket.listen(1024).map_err(error)?;
        // With port 0 the kernel chose one; the other workers join it.
        addr = socket.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(addr);
        sockets.push(TcpListener::from(socket));
    }
    Ok(sockets)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As tokio's and std's listeners: restart without waiting for TIME_WAIT to pass.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Starts a worker per plain listener, serving it (and the TLS listener of the same index)
/// until `cancel` fires; each then drains its open connections and its thread ends. Fails,
/// with nothing left running, if a worker cannot be set up.
pub fn start(listeners: Listeners, shared: &Arc<Shared>, cancel: &CancellationToken) -> Result<Vec<JoinHandle<()>>> {
    let mut workers = Vec::with_capacity(listeners.plain.len());
    let (mut tls, edge) = match listeners.tls {
        Some((sockets, edge)) => (sockets.into_iter(), Some(edge)),
        None => (Vec::new().into_iter(), None),
    };
    for (i, plain) in listeners.plain.into_iter().enumerate() {
        let io_error = |source| Error::Worker { index: i, source };
        // The runtime is made here, so a failure stops start-up rather than one thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error)?;
        let tls = tls.next().zip(edge.clone());
        let (shared, stop) = (shared.clone(), cancel.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("alb-worker-{i}"))
            .spawn(move || runtime.block_on(serve(plain, tls, &shared, stop)));
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(source) => {
                // Stop the ones already running before reporting.
                cancel.cancel();
                workers.into_iter().for_each(|w: JoinHandle<()>| drop(w.join()));
                return Err(io_error(source));
            }
        }
    }
    Ok(workers)
}

/// One worker: its own proxy (and so its own upstream pool) on this thread's runtime.
async fn serve(
    plain: TcpListener,
    tls: Option<(TcpListener, Arc<crate::tls::Edge>)>,
    shared: &Shared,
    cancel: CancellationToken,
) {
    let proxy = Arc::new(Proxy::new(
        shared.table.clone(),
        shared.proxy.clone(),
        shared.metrics.clone(),
    ));
    // Registering with this runtime's reactor only fails when the process is out of resources;
    // the other workers keep serving.
    let register = |listener: TcpListener| match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::error!(%error, "a worker could not register its listener");
            None
        }
    };
    let plain = async {
        if let Some(listener) = register(plain) {
            server::serve(listener, None, shared.proxy_protocol, proxy.clone(), cancel.clone()).await;
        }
    };
    let secure = async {
        if let Some((listener, edge)) = tls.and_then(|(l, edge)| Some((register(l)?, edge))) {
            server::serve(
                listener,
                Some(edge),
                shared.proxy_protocol,
                proxy.clone(),
                cancel.clone(),
            )
            .await;
        }
    };
    // This worker's access log lines, written in batches.
    let access = crate::access_log::batch_on_this_thread(cancel.clone());
    tokio::join!(plain, secure, access);
}
