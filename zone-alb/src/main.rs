use std::process::ExitCode;

use clap::Parser;

/// One zone's L7 ingress proxy.
#[derive(Parser)]
#[command(name = "zone-alb", version)]
struct Cli {
    #[command(flatten)]
    options: zone_alb::Options,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    zone_alb::telemetry::init();
    match zone_alb::run(cli.options, zone_alb::telemetry::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("zone-alb: error: {error}");
            ExitCode::FAILURE
        }
    }
}
