//! dns: the authoritative DNS server for each cluster's ingress subdomain.
//!
//! The caller (mzlb) decides which ALB addresses each zone answers and publishes them as an
//! [`AnswerSet`]; [`Authority::publish`] compiles that into hickory zone handlers and
//! pre-built wire answers and swaps them in atomically, so the very next query sees the
//! change and queries never take a lock. [`bind`] and [`serve`] run UDP and TCP: the hot path
//! first, then screening for malformed input, then hickory.

mod answer;
mod authority;
mod metrics;
mod prebuilt;
mod ratelimit;
mod server;
mod wire;

pub use answer::{AnswerSet, SoaSettings, ZoneAnswers};
pub use authority::{Authority, Served};
pub use metrics::Metrics;
pub use ratelimit::RateLimit;
pub use server::{Listeners, bind, serve};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen for DNS on {addr} ({proto}): {source}")]
    Bind {
        addr: std::net::SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("zone `{origin}`: {message}")]
    Zone { origin: String, message: String },
    #[error("DNS server failed: {0}")]
    Server(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
