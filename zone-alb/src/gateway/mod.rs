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

/// Gateway listeners on a port the ALB's own listeners serve with the other protocol (an
/// HTTPS listener on the plain port, or HTTP on the TLS one, e.g. through `--gateway-ports`):
/// not served, and reported `Accepted: False` (`PortUnavailable`). `own` lists the listener
/// ports the ALB serves itself, each with whether it terminates TLS there.
pub fn refuse_mismatched_ports(table: &mut crate::router::RouteTable, own: &[(u16, bool)]) {
    for &(port, tls) in own {
        if table.gateway.ports.get(&port).is_none_or(|p| p.https == tls) {
            continue;
        }
        table.gateway.ports.remove(&port);
        let message = format!(
            "port {port} is served by the ALB {}; this listener's protocol cannot be served there",
            if tls { "with TLS" } else { "in clear" }
        );
        for g in &mut table.gateway.status.gateways {
            for l in g.listeners.iter_mut().filter(|l| l.port == port) {
                for c in &mut l.conditions {
                    match c.type_ {
                        "Accepted" => *c = status::Cond::no("Accepted", "PortUnavailable", message.clone()),
                        "Programmed" => *c = status::Cond::no("Programmed", "Invalid", message.clone()),
                        _ => {}
                    }
                }
            }
        }
        table.warnings.push(message);
        for g in &mut table.gateway.status.gateways {
            if !g.listeners.iter().any(|l| l.port == port) {
                continue;
            }
            let served = |l: &status::ListenerReport| l.conditions.iter().any(|c| c.type_ == "Programmed" && c.status);
            let valid = g.listeners.iter().filter(|l| served(l)).count();
            g.conditions = if valid == 0 {
                vec![
                    status::Cond::no("Accepted", "ListenersNotValid", "no listener can be served"),
                    status::Cond::no("Programmed", "Invalid", "no listener can be served"),
                ]
            } else {
                vec![
                    status::Cond::yes("Accepted", "ListenersNotValid"),
                    status::Cond::yes("Programmed", "Programmed"),
                ]
            };
        }
    }
}

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
