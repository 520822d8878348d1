//! Gateway API: GatewayClass, Gateway, HTTPRoute and ReferenceGrant, served by every zone ALB
//! beside its Ingresses. Objects are compiled (`compile`) into per-port listener tables
//! (`table`) held by the same routing table as the Ingress rules, so one swap changes both;
//! `serve` answers requests on Gateway ports, `listeners` opens and closes those ports as
//! Gateways change, and `status` says what became of every object.

pub(crate) mod compile;
pub(crate) mod hostnames;
pub(crate) mod listeners;
pub mod model;
pub(crate) mod serve;
pub mod status;
pub(crate) mod table;
pub(crate) mod writer;

pub use status::CONTROLLER;
pub use table::Table;

/// The GatewayClass zone-alb creates on a cluster when it is missing.
pub const CLASS_NAME: &str = "mzlb";
