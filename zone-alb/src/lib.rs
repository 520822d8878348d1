//! zone-alb: one zone's L7 ingress proxy.
//!
//! It reads Ingress, Service and EndpointSlice objects (from a manifest directory, or later
//! the API server), compiles them into a [`router::RouteTable`] and serves HTTP on its zone's
//! portable IP, forwarding to ready endpoints with X-Forwarded-* headers set. The table is held
//! in an `ArcSwap`; when the manifests change (or on SIGHUP) a new one is built and swapped
//! in, or the old one kept if the new objects are broken.
//!
//! This crate also owns the object model shared with `mzlb` ([`objects`], [`source`]).

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod annotations;
pub(crate) mod auth;
pub(crate) mod backend_tls;
pub(crate) mod balance;
#[cfg(test)]
mod both_paths;
pub(crate) mod buffering;
pub mod check;
pub(crate) mod client_cert;
pub(crate) mod configmaps;
pub(crate) mod endpoints;
pub(crate) mod error;
pub(crate) mod fastpath;
pub mod gateway;
pub(crate) mod hash;
pub(crate) mod intercept;
pub(crate) mod keepalive;
pub(crate) mod kube_mode;
pub mod lease;
pub(crate) mod metrics;
pub mod objects;
pub mod passthrough;
pub(crate) mod policy;
pub(crate) mod proxy;
pub(crate) mod proxy_protocol;
pub(crate) mod ratelimit;
pub mod router;
pub mod server;
pub(crate) mod snippet;
pub mod source;
pub(crate) mod splice;
pub mod state;
pub mod telemetry;
pub mod tls;
pub(crate) mod upload;
pub(crate) mod upstream;
pub(crate) mod upstream_h2;
pub(crate) mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use error::{Error, Result};
use objects::Objects;
use router::RouteTable;

/// Command-line options of one zone ALB (also used by `mzlb zone-alb`).
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Directory of Kubernetes YAML manifests (ZoneALB, Ingress, Service, EndpointSlice, ...).
    /// Without it, the objects come from Kubernetes (see `--kubeconfig`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kubeconfig", "context"])]
    pub manifests: Option<PathBuf>,
    #[command(flatten)]
    pub kube: source::kube_watch::KubeOptions,
    /// This ALB's ID: the name of its ZoneALB object.
    #[arg(long, value_name = "ID", required_unless_present = "check", default_value = "")]
    pub alb_id: String,
    /// Read the manifests, print every finding (Ingresses refused, annotations that make
    /// routes fail closed or are ignored) and exit: non-zero if anything is refused.
    #[arg(long, requires = "manifests")]
    pub check: bool,
    /// With `--check`: also list, per port, host and path, which Ingress or HTTPRoute rule
    /// serves it and where it goes.
    #[arg(long, requires = "check")]
    pub routes: bool,
    /// How often the manifest directory is also polled, in milliseconds. Changes are seen at
    /// once through file-system events; polling catches what those miss (network
    /// filesystems, no inotify watches left).
    #[arg(long, value_name = "MS", default_value_t = 1000, env = "MZLB_MANIFESTS_POLL_MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub manifests_poll_ms: u64,
    /// Listen here instead of the ZoneALB's ip:port.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS here instead of the ZoneALB's ip:tlsPort.
    #[arg(long, value_name = "IP:PORT")]
    pub listen_tls: Option<SocketAddr>,
    /// Serve Ingresses of this IngressClass.
    #[arg(long, default_value = router::DEFAULT_INGRESS_CLASS)]
    pub ingress_class: String,
    /// Believe X-Forwarded-* headers only from these peers (comma-separated CIDRs), e.g. an L4
    /// load balancer in front; from anyone else they are replaced. Default: nobody.
    #[arg(long, value_delimiter = ',', value_name = "CIDR,...", env = "MZLB_TRUSTED_PROXIES")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Expect a PROXY protocol (v1 or v2) header on every connection, from an L4 load
    /// balancer in front, and take the client's address from it.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Serve `/metrics`, `/healthz` and `/readyz` here (off by default).
    #[arg(long, value_name = "IP:PORT")]
    pub admin_listen: Option<SocketAddr>,
    /// Fraction of requests written to the access log (target `access`): 0 off, 1 every one.
    #[arg(long, default_value_t = 1.0, value_name = "FRACTION")]
    pub access_log_sample: f64,
    /// Worker threads serving requests, each with its own event loop and upstream connections
    /// (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Serve every HTTP/1.1 request, plain or HTTPS, through hyper's path instead of the
    /// HTTP/1.1 fast path, and send HTTP/2 requests upstream with hyper's client rather than
    /// over the fast path's connections (for A/B measurements, and so tests can hold both
    /// paths to the same behaviour).
    #[arg(long)]
    pub no_fast_path: bool,
    /// Gateway listener ports served on another local port: `80=8080,443=8443` serves
    /// listeners on port 80 (443) on the ALB's own port 8080 (8443), where a Service maps the
    /// outside port to the container's (the chart sets this). Listeners on other ports are
    /// opened as they are.
    #[arg(long, value_delimiter = ',', value_name = "LISTENER=LOCAL,...", env = "MZLB_GATEWAY_PORTS", value_parser = parse_port_pair)]
    pub gateway_ports: Vec<(u16, u16)>,
    /// Forward request header fields whose names contain `_` (dropped by default, as nginx's
    /// `underscores_in_headers off`: CGI and WSGI backends read `X_Forwarded_For` as
    /// `X-Forwarded-For`).
    #[arg(long)]
    pub underscores_in_headers: bool,
    /// Seal TLS session tickets with the keys of this Secret (`NAMESPACE/NAME`, type Opaque or
    /// `mzlb.io/session-ticket-keys`, field `tls.ticket-keys`: 80-byte keys, newest first), so
    /// that a session made on one replica of the zone resumes on any other. Missing or
    /// malformed: an error is logged and each process uses its own keys.
    #[arg(long, value_name = "NAMESPACE/NAME", env = "MZLB_SESSION_TICKET_SECRET", value_parser = parse_secret_name)]
    pub session_ticket_secret: Option<(String, String)>,
}

fn parse_secret_name(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{text:?}: expected NAMESPACE/NAME")),
    }
}

fn parse_port_pair(text: &str) -> std::result::Result<(u16, u16), String> {
    let (listener, local) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected LISTENER=LOCAL, e.g. 80=8080"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{p:?} is not a port"))
    };
    Ok((port(listener)?, port(local)?))
}

/// What one ALB compiled from the objects.
pub struct Loaded {
    zone: String,
    listen: SocketAddr,
    listen_tls: Option<SocketAddr>,
    table: RouteTable,
}

fn load(opts: &Options, dir: &Path, state: &state::Store) -> Result<Loaded> {
    let objects = source::dir::load(dir)?;
    compile(&objects, opts, &dir.display().to_string(), true, state)
}

/// Compiles this ALB's table; `source` names where the objects came from, for errors.
/// `strict`: one unservable Ingress fails the whole table (a manifest directory is one
/// change); otherwise it is left out and reported.
fn compile(objects: &Objects, opts: &Options, source: &str, strict: bool, state: &state::Store) -> Result<Loaded> {
    let alb = objects.zone_alb(&opts.alb_id).ok_or_else(|| {
        let known: Vec<_> = objects
            .zone_albs
            .iter()
            .filter_map(|a| a.metadata.name.clone())
            .collect();
        Error::Invalid {
            object: format!("--alb-id {}", opts.alb_id),
            field: "metadata.name".into(),
            message: format!("no ZoneALB of that name in {source} (found: {})", known.join(", ")),
        }
    })?;
    let cluster = objects.cluster_of(alb);
    let (defaults, problems) = cluster.map_or_else(Default::default, |c| {
        annotations::Defaults::from_config(&c.spec.ingress_nginx)
    });
    let mut table = RouteTable::compile_with(objects, &opts.ingress_class, &alb.spec.zone, &defaults, strict, state)?;
    let what = cluster.map(|c| objects.describe(&objects::key_of("MultiZoneCluster", &c.metadata, false)));
    table.warnings.extend(
        problems
            .into_iter()
            .map(|p| format!("{}: {p}", what.as_deref().unwrap_or_default())),
    );
    let shared = shared_ports(alb, opts);
    gateway::refuse_mismatched_ports(&mut table, &own_listener_ports(alb, opts));
    let shadowed = gateway::shadowed(&table, &shared);
    table.gateway.status.findings.extend(shadowed.iter().cloned());
    table.warnings.extend(shadowed);
    table.health_host = objects.cluster_of(alb).map(objects::MultiZoneCluster::health_host);
    table.ticket_keys = opts.session_ticket_secret.as_ref().and_then(|(namespace, name)| {
        match tls::ticket_keys(objects, namespace, name) {
            Ok(keys) => Some(Arc::new(keys)),
            Err(error) => {
                tracing::error!(secret = %format!("{namespace}/{name}"), %error, "session-ticket keys unusable; each process seals tickets with its own keys (sessions resume only on the replica that made them)");
                None
            }
        }
    });
    if let Some(reserved) = table.health_host.as_deref()
        && table.has_host(reserved)
    {
        let warning = format!("host {reserved} is reserved for the ALB's health checks; its rules are never served");
        table.warnings.push(warning);
    }
    Ok(Loaded {
        zone: alb.spec.zone.clone(),
        listen: opts.listen.unwrap_or(SocketAddr::new(alb.spec.ip, alb.spec.port)),
        listen_tls: opts
            .listen_tls
            .or(alb.spec.tls_port.map(|port| SocketAddr::new(alb.spec.ip, port))),
        table,
    })
}

/// The Gateway listener ports the ALB's own (Ingress) listeners serve: their own ports, and
/// those `--gateway-ports` maps onto them.
pub(crate) fn shared_ports(alb: &objects::ZoneALB, opts: &Options) -> Vec<u16> {
    let own: Vec<u16> = [
        opts.listen.map_or(alb.spec.port, |a| a.port()),
        opts.listen_tls
            .map(|a| a.port())
            .or(alb.spec.tls_port)
            .unwrap_or_default(),
    ]
    .into_iter()
    .filter(|&p| p != 0)
    .collect();
    let mapped = opts
        .gateway_ports
        .iter()
        .filter(|(_, local)| own.contains(local))
        .map(|(listener, _)| *listener);
    own.iter().copied().chain(mapped).collect()
}

/// The Gateway listener ports the ALB's own listeners serve, each with whether with TLS.
fn own_listener_ports(alb: &objects::ZoneALB, opts: &Options) -> Vec<(u16, bool)> {
    let plain = opts.listen.map_or(alb.spec.port, |a| a.port());
    let tls = opts.listen_tls.map(|a| a.port()).or(alb.spec.tls_port);
    let mut out = vec![(plain, false)];
    out.extend(tls.map(|p| (p, true)));
    for (listener, local) in &opts.gateway_ports {
        if *local == plain {
            out.push((*listener, false));
        } else if Some(*local) == tls {
            out.push((*listener, true));
        }
    }
    out
}

/// Runs one zone ALB until `shutdown` resolves. Fails before listening if the manifests are
/// broken; once serving, a broken reload is logged and the last good table keeps serving.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> Result<()> {
    if opts.check {
        return check_manifests(&opts);
    }
    // Limits and endpoint health live here, outside the routing tables, for the process's life.
    let state = Arc::new(state::Store::default());
    // Watching starts before the first load, so that no change is missed in between.
    let changes = opts.manifests.as_deref().map(|dir| {
        let poll = std::time::Duration::from_millis(opts.manifests_poll_ms);
        source::dir::Watcher::new(dir, poll)
    });
    let (loaded, kube) = match &opts.manifests {
        Some(dir) => (load(&opts, dir, &state)?, None),
        None => {
            let mut kube = kube_mode::Kube::connect(&opts).await?;
            (kube.first_load(&opts, &state).await?, Some(kube))
        }
    };
    let worker_count = opts.workers.map_or_else(workers::default_count, usize::from);
    let listener = workers::bind(loaded.listen, worker_count)?;
    let tls_listener = match loaded.listen_tls {
        Some(addr) => Some(workers::bind(addr, worker_count)?),
        None => None,
    };
    for warning in &loaded.table.warnings {
        tracing::warn!("{warning}; the rest of the Ingress is served");
    }
    for line in loaded.table.gateway.status.lines() {
        tracing::info!(target: "gateway", "{line}");
    }
    tracing::info!(alb = %opts.alb_id, zone = %loaded.zone, listen = %loaded.listen, listen_tls = ?loaded.listen_tls, ingresses = loaded.table.ingresses, workers = worker_count, "zone ALB serving");
    let table = Arc::new(ArcSwap::from_pointee(loaded.table));
    let metrics = Arc::new(metrics::Metrics::default());
    let shared = Arc::new(workers::Shared {
        table: table.clone(),
        proxy: proxy::Settings {
            // Upstream connections leave from the ALB's own address when it has one.
            source_ip: Some(loaded.listen.ip()).filter(|ip| !ip.is_unspecified()),
            trusted: opts.trusted_proxies.clone(),
            https_port: loaded.listen_tls.map(|a| a.port()),
            access_sample: opts.access_log_sample,
            fast_path: !opts.no_fast_path,
            underscores: opts.underscores_in_headers,
            ingress_ports: std::iter::once(loaded.listen.port())
                .chain(loaded.listen_tls.map(|a| a.port()))
                .collect(),
            gateway_ports: opts.gateway_ports.clone(),
        },
        metrics: metrics.clone(),
        proxy_protocol: opts.proxy_protocol,
    });
    let listeners = workers::Listeners {
        plain: listener,
        tls: tls_listener.map(|listener| {
            (
                listener,
                Arc::new(tls::Edge::new(
                    table.clone(),
                    shared.proxy.gateway_port(loaded.listen_tls.map_or(0, |a| a.port())),
                    true,
                )),
            )
        }),
    };
    let admin = match opts.admin_listen {
        Some(addr) => Some(tokio::spawn(admin::serve(server::bind(addr).await?, metrics.clone()))),
        None => None,
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = workers::start(listeners, &shared, &cancel)?;
    let changed = Arc::new(tokio::sync::Notify::new());
    // Listener ports served by the ALB's own listeners: their own, and those mapped onto them.
    let own_ports = (shared.proxy.ingress_ports.iter().copied())
        .chain(opts.gateway_ports.iter().map(|(listener, _)| *listener))
        .collect();
    tokio::spawn(gateway::listeners::run(
        shared.clone(),
        loaded.listen.ip(),
        own_ports,
        changed.clone(),
        cancel.clone(),
    ));
    let reloader = match (kube, &opts.manifests, changes) {
        (Some(kube), _, _) => tokio::spawn(kube.follow(
            opts.clone(),
            Tables {
                table: table.clone(),
                metrics: metrics.clone(),
                changed: changed.clone(),
            },
            state.clone(),
            cancel.clone(),
        )),
        (None, Some(dir), Some(changes)) => tokio::spawn(watch_manifests(
            opts.clone(),
            dir.clone(),
            changes,
            Tables {
                table: table.clone(),
                metrics: metrics.clone(),
                changed: changed.clone(),
            },
            state.clone(),
            loaded.listen,
            cancel.clone(),
        )),
        (None, _, _) => unreachable!("no manifests means Kubernetes"),
    };

    let drained = tokio::task::spawn_blocking(move || {
        for worker in running {
            if worker.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    });
    let stop = async {
        shutdown.await;
        cancel.cancel();
    };
    let (_, ()) = tokio::join!(drained, stop);
    // Give the follower a moment to hand its lease over.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reloader).await;
    if let Some(admin) = admin {
        admin.abort();
    }
    tracing::info!(alb = %opts.alb_id, "zone ALB stopped");
    Ok(())
}

/// `--check`: prints every finding for the manifest directory; fails if anything is refused.
fn check_manifests(opts: &Options) -> Result<()> {
    let dir = opts
        .manifests
        .as_deref()
        .expect("clap requires --manifests with --check");
    let objects = source::dir::load(dir)?;
    let findings = check::findings(&objects, &opts.ingress_class);
    for finding in &findings {
        println!("{finding}");
    }
    if opts.routes {
        for line in check::routes(&objects, &opts.ingress_class) {
            println!("{line}");
        }
    }
    let errors = findings.iter().filter(|f| f.severity == check::Severity::Error).count();
    println!(
        "{}: {} Ingress(es), {errors} error(s), {} warning(s)",
        dir.display(),
        objects.ingresses.len(),
        findings.len() - errors
    );
    if errors > 0 {
        return Err(Error::Check(errors));
    }
    Ok(())
}

/// How often runtime state no table uses any more is swept away.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Rebuilds the routing table when the manifest directory changes (or on SIGHUP) and swaps it
/// in atomically. A broken change is logged, naming the file and field, and the last good
/// table keeps serving.
/// The live routing table, and what must follow each swap of it.
#[derive(Clone)]
pub(crate) struct Tables {
    pub(crate) table: Arc<ArcSwap<RouteTable>>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Told after every swap (the Gateway listeners' ports follow the table).
    pub(crate) changed: Arc<tokio::sync::Notify>,
}

impl Tables {
    /// Swaps in `new` atomically, then drops the metric label sets of what it no longer routes.
    pub(crate) fn install(&self, new: RouteTable) {
        let old = self.table.swap(Arc::new(new));
        self.metrics.forget(&old, &self.table.load());
        self.changed.notify_one();
    }
}

async fn watch_manifests(
    opts: Options,
    dir: PathBuf,
    mut changes: source::dir::Watcher,
    tables: Tables,
    state: Arc<state::Store>,
    listen: SocketAddr,
    cancel: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            () = changes.changed() => {}
            _ = sweep.tick() => {
                state.sweep();
                continue;
            }
            () = cancel.cancelled() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {}
        }
        state.sweep();
        match load(&opts, &dir, &state) {
            Ok(loaded) => {
                if loaded.listen != listen {
                    tracing::warn!(old = %listen, new = %loaded.listen, "the ALB's address changed; restart zone-alb to listen on the new one");
                }
                for warning in &loaded.table.warnings {
                    tracing::warn!("{warning}; the rest of the Ingress is served");
                }
                for line in loaded.table.gateway.status.lines() {
                    tracing::info!(target: "gateway", "{line}");
                }
                tracing::info!(ingresses = loaded.table.ingresses, "routing table reloaded");
                tables.install(loaded.table);
            }
            Err(error) => {
                tables.metrics.rejected("change");
                tracing::error!(%error, "manifest change rejected; the last good routing table keeps serving")
            }
        }
    }
}
