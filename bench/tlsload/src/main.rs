//! tlsload: HTTPS load the way browsers connect, one request per connection. Each of
//! `--connections` virtual clients loops until `--duration` ends: TCP connect, TLS handshake,
//! `GET` with `Connection: close`, the whole response, close. Each client has its own TLS
//! session store, so after its first handshake every one can resume (TLS 1.3 tickets, TLS 1.2
//! session IDs or tickets), unless `--no-resume`. Prints one line:
//!
//! `connections N rate R/s p50_us P p99_us P resumed N full N errors N`
//!
//! connections: those with a whole `HTTP/1.1 200` response; latencies from connect start to the
//! response's last byte; resumed/full: handshakes by kind, as rustls reports them. Exits 1 when
//! no connection succeeded.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod load;
mod response;

/// HTTPS load with a new, resumable TLS connection per request.
#[derive(Parser, Debug)]
#[command(name = "tlsload", version)]
struct Cli {
    /// The server's address.
    #[arg(long, value_name = "IP:PORT")]
    connect: SocketAddr,
    /// The TLS server name (SNI), also the Host header.
    #[arg(long, value_name = "NAME")]
    sni: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// Virtual clients, each with one connection at a time and its own session store.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    duration: f64,
    /// The only TLS version offered (default: 1.2 and 1.3).
    #[arg(long)]
    tls: Option<load::Tls>,
    /// Full handshakes every time: no session store.
    #[arg(long)]
    no_resume: bool,
    /// Runtime threads: 1 is a current-thread runtime (as `wrk -t1`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Seconds a connection may take, connect to the response's end.
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    timeout: f64,
}

fn positive_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() && seconds < 1e9 => Ok(seconds),
        _ => Err(format!("{value:?} is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads as usize)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tlsload: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let load = load::Load {
        connect: cli.connect,
        sni: cli.sni,
        path: cli.path,
        connections: cli.connections as usize,
        duration: Duration::from_secs_f64(cli.duration),
        tls: cli.tls,
        resume: !cli.no_resume,
        timeout: Duration::from_secs_f64(cli.timeout),
    };
    let mut summary = match runtime.block_on(load::run(load)) {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("tlsload: error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", summary.line());
    if let Some(error) = &summary.first_error {
        eprintln!("tlsload: {} connections failed; the first: {error}", summary.errors);
    }
    if summary.ok == 0 {
        eprintln!("tlsload: error: no connection succeeded");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "tlsload",
            "--connect",
            "127.0.0.1:8443",
            "--sni",
            "a.test",
            "--tls",
            "1.3",
        ])
        .unwrap();
        assert_eq!(cli.tls, Some(load::Tls::V13));
        assert_eq!(
            (cli.connections, cli.duration, cli.threads, cli.no_resume),
            (64, 10.0, 1, false)
        );
        for bad in [
            ["--tls", "1.1"],
            ["--duration", "0"],
            ["--connections", "0"],
            ["--threads", "0"],
        ] {
            let args = ["tlsload", "--connect", "127.0.0.1:1", "--sni", "a"]
                .into_iter()
                .chain(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
