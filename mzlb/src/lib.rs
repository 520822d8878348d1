//! mzlb: the multi-zone load balancer.
//!
//! It knows every zone ALB (`ZoneALB` objects), probes each over its portable IP
//! ([`health`]), keeps the operator's enabled/disabled choice ([`state`]), and publishes the
//! IPs of the enabled, healthy ALBs to the authoritative DNS server of the `dns` crate
//! ([`registry`]). [`api`] is the control API the CLI ([`client`]) talks to; [`up`] runs a
//! whole three-zone setup on loopback from the built-in [`demo`] or a manifest directory.

pub mod api;
pub mod client;
pub mod config;
pub mod demo;
pub mod echo;
pub mod error;
pub mod events;
pub mod health;
pub mod kube_registry;
pub mod metrics;
pub mod probers;
pub mod registry;
pub mod serve;
pub mod state;
pub mod status;
pub mod store;
pub mod timeline;
pub mod up;
pub mod verdict;

pub use error::{Error, Result};
