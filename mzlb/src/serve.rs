//! `mzlb serve`: load the objects, then run health checks, the authoritative DNS and the
//! control API together.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zone_alb::objects::Objects;
use zone_alb::router::{DEFAULT_INGRESS_CLASS, RouteTable};
use zone_alb::state::Store;

use crate::error::Result;
use crate::registry::{self, Registry};
use crate::state::{ApiEndpoint, StateDir};
use crate::store::Store as ChoiceStore;

pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9901";

pub struct ServeOptions {
    pub state: StateDir,
    pub dns_listen: SocketAddr,
    /// UDP sockets and threads answering DNS; `None` is one per core.
    pub dns_threads: Option<usize>,
    pub api_listen: SocketAddr,
    /// UDP response-rate limiting per client prefix.
    pub dns_rate_limit: dns::RateLimit,
}

/// A started multi-zone load balancer.
pub struct Running {
    pub dns_addr: SocketAddr,
    pub api_url: String,
    pub registry: Arc<Registry>,
    pub objects: Objects,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits for the background tasks after `cancel` fired.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Reads a manifest directory and checks it the way `serve` and the zone ALBs will use it.
pub fn load(manifests: &Path) -> Result<Objects> {
    let objects = zone_alb::source::dir::load(manifests)?;
    let (_, albs) = registry::configs(&objects)?;
    // Refuse Ingresses the ALBs would refuse, so a broken directory fails here too.
    for alb in &albs {
        RouteTable::compile(&objects, DEFAULT_INGRESS_CLASS, &alb.zone, &Store::default())?;
    }
    Ok(objects)
}

/// Binds every socket, then serves `objects` in the background until `cancel` fires. Any
/// error here happens before anything is served.
pub async fn start(objects: Objects, opts: ServeOptions, cancel: CancellationToken) -> Result<Running> {
    start_with(objects, opts, cancel, None).await
}

/// [`start`], with `kube` when the objects come from Kubernetes: then `spec.enabled` is the
/// record of an operator's choice, not the state directory.
pub async fn start_with(
    objects: Objects,
    opts: ServeOptions,
    cancel: CancellationToken,
    kube: Option<kube::Client>,
) -> Result<Running> {
    let (clusters, albs) = registry::configs(&objects)?;
    opts.state.create()?;

    let authority = dns::Authority::new();
    let metrics = crate::metrics::Metrics::default();
    let prometheus = Arc::new(crate::metrics::registry(authority.metrics(), &metrics));
    let registry = Arc::new(Registry::new(
        clusters,
        albs,
        authority.clone(),
        Some(match kube {
            Some(client) => ChoiceStore::Kube(client),
            None => ChoiceStore::files(opts.state.clone()),
        }),
        metrics,
    )?);
    let dns_listeners = dns::bind(opts.dns_listen, opts.dns_threads).await?;
    let dns_addr = dns_listeners.local_addr().unwrap_or(opts.dns_listen);
    let api_listener = crate::api::bind(opts.api_listen).await?;
    let api_addr = api_listener.local_addr().unwrap_or(opts.api_listen);
    let api_url = format!("http://{}", reachable(api_addr));
    let token = opts.state.token()?;
    opts.state.write_api(&ApiEndpoint {
        url: api_url.clone(),
        token: token.clone(),
    })?;

    let mut tasks = JoinSet::new();
    let dns_cancel = cancel.clone();
    let rate_limit = opts.dns_rate_limit;
    tasks.spawn(async move {
        if let Err(error) = dns::serve(dns_listeners, authority, rate_limit, dns_cancel).await {
            tracing::error!(%error, "DNS server stopped");
        }
    });
    tasks.spawn(crate::api::serve(
        api_listener,
        registry.clone(),
        prometheus,
        token,
        cancel.clone(),
    ));
    crate::health::spawn_checks(registry.clone(), cancel.clone());
    tracing::info!(%dns_addr, %api_url, albs = registry.albs().len(), "mzlb serving");
    Ok(Running {
        dns_addr,
        api_url,
        registry,
        objects,
        tasks,
    })
}

/// The address a local client should dial for a listener bound to `addr`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}
