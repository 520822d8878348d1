//! The data plane: worker threads, each running its own single-threaded runtime over its own
//! handle on the listening sockets and with its own upstream connection pool, as nginx runs
//! worker processes. A connection is served start to finish on the thread that accepted it:
//! no work stealing and no wake-ups across threads on the request path. What the workers share
//! is read without locks (the routing table through `ArcSwap`, counters and balancer state as
//! atomics) or locked only per client by the limits that ask for it.
//!
//! All workers accept from the same sockets, so binding still fails when the address is taken
//! (unlike `SO_REUSEPORT`, which would let a second ALB silently take half the connections).

use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::router::RouteTable;
use crate::server;

/// The worker count when none is given: one per core the process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What every worker builds its proxy and listeners from.
pub struct Shared {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub source_ip: Option<IpAddr>,
    pub trusted: Vec<IpNet>,
    pub https_port: Option<u16>,
    pub metrics: Arc<Metrics>,
    pub access_sample: f64,
    pub proxy_protocol: bool,
}

/// Bound listening sockets (non-blocking), shared by all workers.
pub struct Listeners {
    pub plain: TcpListener,
    /// With the acceptor that terminates TLS on it.
    pub tls: Option<(TcpListener, TlsAcceptor)>,
}

/// Starts `count` workers serving `listeners` until `cancel` fires; each then drains its open
/// connections and its thread ends. Fails, with nothing started, if a worker cannot be set up.
pub fn start(
    count: usize,
    listeners: &Listeners,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    let mut workers = Vec::with_capacity(count);
    for i in 0..count.max(1) {
        let io_error = |source| Error::Worker { index: i, source };
        // Runtime and socket handles are made here, so a failure stops start-up, not a thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error)?;
        let plain = listeners.plain.try_clone().map_err(io_error)?;
        let tls = match &listeners.tls {
            Some((listener, acceptor)) => Some((listener.try_clone().map_err(io_error)?, acceptor.clone())),
            None => None,
        };
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
    tls: Option<(TcpListener, TlsAcceptor)>,
    shared: &Shared,
    cancel: CancellationToken,
) {
    let proxy = Arc::new(Proxy::new(
        shared.table.clone(),
        shared.source_ip,
        shared.trusted.clone(),
        shared.https_port,
        shared.metrics.clone(),
        shared.access_sample,
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
            let shutdown = cancel.clone().cancelled_owned();
            server::serve(listener, None, shared.proxy_protocol, proxy.clone(), shutdown).await;
        }
    };
    let secure = async {
        if let Some((listener, acceptor)) = tls.and_then(|(l, acceptor)| Some((register(l)?, acceptor))) {
            let shutdown = cancel.clone().cancelled_owned();
            server::serve(listener, Some(acceptor), shared.proxy_protocol, proxy.clone(), shutdown).await;
        }
    };
    tokio::join!(plain, secure);
}
