use std::process::ExitCode;

use clap::Parser;

// mimalloc rather than glibc's malloc: the proxy allocates and frees small buffers and
// header maps per request on every worker thread; bench/tls.sh's HTTP/2 row spent about a
// tenth of a worker's time in glibc's malloc and free (see the README's HTTPS benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
