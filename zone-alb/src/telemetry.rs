//! Logging set-up shared by every binary of the project.

/// `tracing` to stderr, filtered by `RUST_LOG` (default `info`; hickory's per-query logs only
/// when asked for; rustls's warnings only when asked for, since each is about one client's
/// hello — an IP address as SNI, say — and any client could fill the log with them).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn,hickory_net=warn,rustls=error")
    });
    // Colour only on a terminal: logs in files and pipes stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
