use std::process::ExitCode;

use clap::Parser;

/// One zone's L7 ingress proxy.
#[derive(Parser)]
#[command(name = "zone-alb", version)]
struct Cli {
    #[command(flatten)]
    options: zone_alb::Options,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zone_alb::telemetry::init();
    // This thread runs the control plane (watching objects, reloading, the admin listener);
    // requests are served by the worker threads, each with its own runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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
