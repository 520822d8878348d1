//! Gateway API: GatewayClass, Gateway, HTTPRoute and ReferenceGrant, served by every zone ALB
//! beside its Ingresses. Objects are compiled (`compile`) into per-port listener tables
//! (`table`) held by the same routing table as the Ingress rules, so one swap changes both;
//! `serve` answers requests on Gateway ports, `listeners` opens and closes those ports as
//! Gateways change, and `status` says what became of every object.

pub(crate) mod backend_tls;
pub(crate) mod compile;
pub(crate) mod cors;
pub(crate) mod hostnames;
pub(crate) mod listeners;
pub mod model;
pub(crate) mod serve;
pub mod status;
pub(crate) mod table;
pub(crate) mod writer;

pub use status::CONTROLLER;
pub use table::{RuleLine, Table};

/// The GatewayClass zone-alb creates on a cluster when it is missing.
pub const CLASS_NAME: &str = "mzlb";

/// Gateway API rules that an Ingress rule serves instead, on ports both share (`shared`, as
/// Gateway listener ports): for an exact hostname and path, the Ingress rule naming that very
/// host wins, so that Ingresses keep working while their HTTPRoutes are written.
pub fn shadowed(table: &crate::router::RouteTable, shared: &[u16]) -> Vec<String> {
    let mut out = Vec::new();
    for line in table.gateway.rules() {
        let Some(path) = line
            .path
            .as_deref()
            .filter(|_| line.exact_host && shared.contains(&line.port))
        else {
            continue;
        };
        if let Some(route) = table.lookup_host_rules(&line.host, path) {
            out.push(format!(
                "host {} path {path} on port {}: Ingress {} serves it; {} is shadowed there",
                line.host, line.port, route.policy.ingress, line.route
            ));
        }
    }
    out
}
