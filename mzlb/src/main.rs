use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use mzlb::serve::{DEFAULT_API_LISTEN, DEFAULT_DNS_LISTEN};
use mzlb::state::StateDir;
use tokio::io::AsyncReadExt;

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
    },
    /// Run the multi-zone load balancer: health checks, authoritative DNS, control API.
    Serve {
        #[arg(long, value_name = "DIR")]
        manifests: PathBuf,
        #[arg(long, default_value = DEFAULT_DNS_LISTEN, value_name = "IP:PORT")]
        dns_listen: SocketAddr,
        #[arg(long, default_value = DEFAULT_API_LISTEN, value_name = "IP:PORT")]
        api_listen: SocketAddr,
    },
    /// List the zone ALBs with their state and health.
    Albs {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
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
    },
    /// The demo backend: answers with its name and the forwarding headers it received.
    Echo {
        #[arg(long, value_name = "IP:PORT")]
        listen: SocketAddr,
        #[arg(long)]
        name: String,
        /// Answer every request this many milliseconds late.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        delay_ms: u64,
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
            ..
        } => {
            mzlb::up::run(mzlb::up::UpOptions {
                manifests,
                state,
                dns_listen,
                api_listen,
            })
            .await?;
        }
        Command::Serve {
            manifests,
            dns_listen,
            api_listen,
        } => {
            let cancel = tokio_util::sync::CancellationToken::new();
            let objects = mzlb::serve::load(&manifests)?;
            let running = mzlb::serve::start(
                objects,
                mzlb::serve::ServeOptions {
                    state,
                    dns_listen,
                    api_listen,
                },
                cancel.clone(),
            )
            .await?;
            zone_alb::telemetry::shutdown_signal().await;
            cancel.cancel();
            running.join().await;
        }
        Command::Albs { output } => {
            let albs = mzlb::client::ApiClient::from_state(&state)?.albs().await?;
            match output {
                Output::Table => print!("{}", mzlb::client::table(&albs)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&albs)?),
            }
        }
        Command::Events { output } => {
            let events = mzlb::client::ApiClient::from_state(&state)?.events().await?;
            match output {
                Output::Table => print!("{}", mzlb::client::events_table(&events)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&events)?),
            }
        }
        Command::AlbConfigure { alb_id, enable, .. } => {
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
        Command::Echo { listen, name, delay_ms } => {
            let listener = mzlb::echo::bind(listen).await?;
            tracing::info!(%listen, %name, "echo backend serving");
            let delay = std::time::Duration::from_millis(delay_ms);
            mzlb::echo::serve(listener, name, delay, zone_alb::telemetry::shutdown_signal()).await;
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
