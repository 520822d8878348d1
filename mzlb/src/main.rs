use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use mzlb::serve::{DEFAULT_API_LISTEN, DEFAULT_DNS_LISTEN};
use mzlb::state::StateDir;
use tokio::io::AsyncReadExt;
use zone_alb::source::kube_watch::KubeOptions;

/// mzlb: a multi-zone, DNS-steered ingress.
#[derive(Parser)]
#[command(name = "mzlb", version)]
struct Cli {
    /// State directory shared by `serve`, `up` and the CLI (control API address and token,
    /// enabled/disabled choices).
    #[arg(long, global = true, env = "MZLB_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Response-rate limiting of DNS over UDP, per client prefix (/24 IPv4, /56 IPv6), so the
/// server cannot amplify spoofed floods. TCP is never limited.
#[derive(clap::Args)]
struct RateLimitArgs {
    /// UDP responses per second to one client prefix; 0 turns rate limiting off.
    #[arg(long, value_name = "N", default_value_t = dns::RateLimit::default().responses_per_second,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    dns_rate_limit: u32,
    /// Past the limit, every Nth response is sent truncated (TC) so real clients retry over
    /// TCP, and the others are dropped; 0 drops them all.
    #[arg(long, value_name = "N", default_value_t = dns::RateLimit::default().slip,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    dns_rate_limit_slip: u32,
}

impl From<RateLimitArgs> for dns::RateLimit {
    fn from(args: RateLimitArgs) -> Self {
        Self {
            responses_per_second: args.dns_rate_limit,
            slip: args.dns_rate_limit_slip,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole multi-zone setup on loopback: the built-in demo, or your manifests.
    Up {
        /// Run these manifests instead of the built-in demo.
        #[arg(long, value_name = "DIR")]
        manifests: Option<PathBuf>,
        /// Print the built-in demo's manifests and exit.
        #[arg(long)]
        print_manifests: bool,
        #[arg(long, default_value = DEFAULT_DNS_LISTEN, value_name = "IP:PORT")]
        dns_listen: SocketAddr,
        #[arg(long, default_value = DEFAULT_API_LISTEN, value_name = "IP:PORT")]
        api_listen: SocketAddr,
        #[command(flatten)]
        rate_limit: RateLimitArgs,
    },
    /// Run the multi-zone load balancer: health checks, authoritative DNS, control API. With
    /// `--manifests` from a directory; otherwise from the ZoneALB and MultiZoneCluster objects
    /// of a Kubernetes cluster (in-cluster config, `--kubeconfig` or `KUBECONFIG`).
    Serve {
        #[arg(long, value_name = "DIR", conflicts_with_all = ["kubeconfig", "context"])]
        manifests: Option<PathBuf>,
        #[command(flatten)]
        kube: KubeOptions,
        #[arg(long, default_value = DEFAULT_DNS_LISTEN, value_name = "IP:PORT")]
        dns_listen: SocketAddr,
        /// UDP sockets (SO_REUSEPORT), each with its own thread, answering DNS (default: one
        /// per core).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        dns_threads: Option<u16>,
        #[arg(long, default_value = DEFAULT_API_LISTEN, value_name = "IP:PORT")]
        api_listen: SocketAddr,
        #[command(flatten)]
        rate_limit: RateLimitArgs,
    },
    /// List the zone ALBs with their state and health (from Kubernetes when a kubeconfig is
    /// given or found and no local `mzlb up`/`serve` is running).
    Albs {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Keep running and redraw at every change (with `-o json`, one document per line).
        #[arg(short = 'w', long)]
        watch: bool,
        #[command(flatten)]
        kube: KubeOptions,
    },
    /// Recent ALB state transitions: time, ALB, from, to, cause.
    Events {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Enable or disable a zone ALB: a disabled ALB leaves DNS at once and drains; an enabled
    /// one returns after passing its health checks.
    AlbConfigure {
        #[arg(long, value_name = "ID")]
        alb_id: String,
        #[arg(long, conflicts_with = "enable", required_unless_present = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        kube: KubeOptions,
    },
    /// Check a manifest directory as `serve` and the zone ALBs would read it: print every
    /// finding (Ingresses refused, annotations that make routes fail closed or are ignored)
    /// and exit non-zero if anything would be refused.
    Check {
        #[arg(long, value_name = "DIR")]
        manifests: PathBuf,
        /// The IngressClass the zone ALBs serve.
        #[arg(long, default_value = zone_alb::router::DEFAULT_INGRESS_CLASS)]
        ingress_class: String,
    },
    /// List, per port, host and path, which Ingress or HTTPRoute rule serves it (as a zone
    /// ALB would compile the manifest directory) and where it goes.
    Routes {
        #[arg(long, value_name = "DIR")]
        manifests: PathBuf,
        /// The IngressClass the zone ALBs serve.
        #[arg(long, default_value = zone_alb::router::DEFAULT_INGRESS_CLASS)]
        ingress_class: String,
    },
    /// Print the CustomResourceDefinitions (ZoneALB, MultiZoneCluster) as YAML, for
    /// `kubectl apply -f -`.
    Crd,
    /// The demo backend: answers with its name and the forwarding headers it received.
    Echo {
        #[arg(long, value_name = "IP:PORT")]
        listen: SocketAddr,
        #[arg(long)]
        name: String,
        /// Answer every request this many milliseconds late.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        delay_ms: u64,
        /// Serve HTTPS with a self-signed certificate for `localhost`.
        #[arg(long)]
        tls: bool,
    },
    /// Run one zone ALB (the same as the `zone-alb` binary).
    ZoneAlb {
        #[command(flatten)]
        options: zone_alb::Options,
        /// Exit when standard input closes (used by `mzlb up` for its children).
        #[arg(long, hide = true)]
        exit_with_parent: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

// mimalloc rather than glibc's malloc: the proxy allocates and frees small buffers and
// header maps per request on every worker thread; bench/tls.sh's HTTP/2 row spent about a
// tenth of a worker's time in glibc's malloc and free (see the README's HTTPS benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    zone_alb::telemetry::init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mzlb: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let state = StateDir::resolve(cli.state_dir);
    match cli.command {
        Command::Up {
            print_manifests: true, ..
        } => print!("{}", mzlb::demo::MANIFESTS),
        Command::Up {
            manifests,
            dns_listen,
            api_listen,
            rate_limit,
            ..
        } => {
            mzlb::up::run(mzlb::up::UpOptions {
                manifests,
                state,
                dns_listen,
                api_listen,
                dns_rate_limit: rate_limit.into(),
            })
            .await?;
        }
        Command::Serve {
            manifests,
            kube,
            dns_listen,
            dns_threads,
            api_listen,
            rate_limit,
        } => {
            let cancel = tokio_util::sync::CancellationToken::new();
            let opts = mzlb::serve::ServeOptions {
                state,
                dns_listen,
                dns_threads: dns_threads.map(usize::from),
                api_listen,
                dns_rate_limit: rate_limit.into(),
            };
            let running = match manifests {
                Some(dir) => mzlb::serve::start(mzlb::serve::load(&dir)?, opts, cancel.clone()).await?,
                None => mzlb::kube_registry::start(&kube, opts, cancel.clone()).await?,
            };
            zone_alb::telemetry::shutdown_signal().await;
            cancel.cancel();
            running.join().await;
        }
        Command::Check {
            manifests,
            ingress_class,
        } => {
            // Clusters and ALBs as `serve` reads them (this fails on the first broken one)...
            let objects = zone_alb::source::dir::load(&manifests)?;
            mzlb::registry::configs(&objects)?;
            // ...then every Ingress finding, as the zone ALBs would report them.
            let findings = zone_alb::check::findings(&objects, &ingress_class);
            for finding in &findings {
                println!("{finding}");
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity == zone_alb::check::Severity::Error)
                .count();
            println!(
                "{}: {} Ingress(es), {errors} error(s), {} warning(s)",
                manifests.display(),
                objects.ingresses.len(),
                findings.len() - errors
            );
            anyhow::ensure!(errors == 0, "{errors} finding(s) would be refused");
        }
        Command::Routes {
            manifests,
            ingress_class,
        } => {
            let objects = zone_alb::source::dir::load(&manifests)?;
            for line in zone_alb::check::routes(&objects, &ingress_class) {
                println!("{line}");
            }
        }
        Command::Crd => {
            use kube::CustomResourceExt;
            let crds = [
                serde_yaml::to_string(&zone_alb::objects::ZoneALB::crd())?,
                serde_yaml::to_string(&zone_alb::objects::MultiZoneCluster::crd())?,
                serde_yaml::to_string(&mzlb::probers::ProberReport::crd())?,
            ];
            print!("{}", crds.join("---\n"));
        }
        Command::Albs {
            output,
            watch: false,
            kube,
        } => {
            let albs = if use_kube(&kube, &state) {
                mzlb::kube_registry::list(&kube.client().await?).await?
            } else {
                mzlb::client::ApiClient::from_state(&state)?.albs().await?
            };
            match output {
                Output::Table => print!("{}", mzlb::client::table(&albs)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&albs)?),
            }
        }
        Command::Albs {
            output,
            watch: true,
            kube,
        } => {
            let redraw = |albs: &[mzlb::registry::AlbStatus]| match output {
                // Clear the screen and home the cursor, as `watch` does.
                Output::Table => print!("\x1b[H\x1b[2J{}", mzlb::client::table(albs)),
                Output::Json => println!("{}", serde_json::to_string(albs).unwrap_or_default()),
            };
            if use_kube(&kube, &state) {
                // The API server's ZoneALB statuses, re-read every second (written at every
                // state change by the elected replica).
                let client = kube.client().await?;
                let mut last = None;
                loop {
                    let albs = mzlb::kube_registry::list(&client).await?;
                    if last.as_ref() != Some(&albs) {
                        redraw(&albs);
                        last = Some(albs);
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            mzlb::client::ApiClient::from_state(&state)?.watch(redraw).await?;
        }
        Command::Events { output } => {
            let events = mzlb::client::ApiClient::from_state(&state)?.events().await?;
            match output {
                Output::Table => print!("{}", mzlb::client::events_table(&events)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&events)?),
            }
        }
        Command::AlbConfigure {
            alb_id, enable, kube, ..
        } => {
            if use_kube(&kube, &state) {
                let client = kube.client().await?;
                mzlb::store::set_enabled(&client, &alb_id, enable).await?;
                let verb = if enable { "enabled" } else { "disabled" };
                println!("ALB {alb_id} {verb} (spec.enabled patched; every mzlb serve replica follows)");
            } else {
                let status = mzlb::client::ApiClient::from_state(&state)?
                    .configure(&alb_id, enable)
                    .await?;
                let verb = if status.enabled { "enabled" } else { "disabled" };
                println!(
                    "ALB {} {verb}; in DNS: {}",
                    status.id,
                    if status.in_dns { "yes" } else { "no" }
                );
            }
        }
        Command::Echo {
            listen,
            name,
            delay_ms,
            tls,
        } => {
            let listener = mzlb::echo::bind(listen).await?;
            tracing::info!(%listen, %name, tls, "echo backend serving");
            let delay = std::time::Duration::from_millis(delay_ms);
            let tls = tls.then(|| {
                let key = zone_alb::tls::self_signed("localhost");
                tokio_rustls::TlsAcceptor::from(zone_alb::tls::single_certificate_config(key))
            });
            mzlb::echo::serve(listener, name, delay, tls, zone_alb::telemetry::shutdown_signal()).await;
        }
        Command::ZoneAlb {
            options,
            exit_with_parent,
        } => {
            let shutdown = async move {
                tokio::select! {
                    () = zone_alb::telemetry::shutdown_signal() => {}
                    () = stdin_closed(), if exit_with_parent => {}
                }
            };
            zone_alb::run(options, shutdown).await.context("zone ALB")?;
        }
    }
    Ok(())
}

/// Resolves when standard input reaches end of file (the parent went away).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Whether the CLI talks to Kubernetes rather than a local `mzlb up`/`serve`: when told to
/// (`--kubeconfig`, `--context`, `KUBECONFIG`), else when no local server is recorded in the
/// state directory and a default kubeconfig or in-cluster config exists.
fn use_kube(kube: &KubeOptions, state: &StateDir) -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if kube.kubeconfig.is_some() || kube.context.is_some() || set("KUBECONFIG") {
        return true;
    }
    if matches!(state.read_api(), Ok(Some(_))) {
        return false;
    }
    let default = dirs::home_dir().map(|h| h.join(".kube/config"));
    default.is_some_and(|p| p.exists()) || set("KUBERNETES_SERVICE_HOST")
}
