use std::process::ExitCode;

use clap::Parser;

/// One zone's L7 ingress proxy.
#[derive(Parser)]
#[command(name = "zone-alb", version)]
struct Cli {
    #[command(flatten)]
    options: zone_alb::Options,
    /// Worker threads serving requests (default: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zone_alb::telemetry::init();
    // One worker runs everything on this thread: no work-stealing bookkeeping, no wake-ups
    // across threads (what nginx's single worker gets too).
    let mut runtime = match cli.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(n.max(1));
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("zone-alb: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(zone_alb::run(cli.options, zone_alb::telemetry::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("zone-alb: error: {error}");
            ExitCode::FAILURE
        }
    }
}
