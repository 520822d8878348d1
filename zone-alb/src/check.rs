//! `zone-alb --check --manifests DIR` (and `mzlb check`): reads the manifests and compiles
//! them as a zone ALB would, then lists every finding: Ingresses that cannot be served,
//! annotations that make routes fail closed, values that were ignored. Exits non-zero when
//! anything would be refused, so a pipeline can stop a change before it reaches a cluster.

use std::fmt;

use crate::annotations::{Defaults, FindingKind};
use crate::objects::Objects;
use crate::router::RouteTable;
use crate::state::Store;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something is refused: an Ingress left out, or routes that answer 503 (fail closed).
    Error,
    /// Served, with a setting ignored or left at its default.
    Warning,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub severity: Severity,
    /// The Kubernetes event reason, e.g. `UnsupportedAnnotation`.
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.reason, self.message)
    }
}

/// Every finding for the Ingresses of `class` in `objects`, in manifest order.
pub fn findings(objects: &Objects, class: &str) -> Vec<Finding> {
    // The zone only decides which endpoints are preferred, never what is refused.
    let zone = objects.zone_albs.first().map_or("", |a| a.spec.zone.as_str());
    // The ALB's cluster's ingress-nginx settings change what annotations mean.
    let cluster = objects.zone_albs.first().and_then(|a| objects.cluster_of(a));
    let (defaults, problems) = cluster.map_or_else(Default::default, |c| Defaults::from_config(&c.spec.ingress_nginx));
    let mut table = RouteTable::compile_with(objects, class, zone, &defaults, false, &Store::default())
        .expect("lenient compilation reports instead of failing");
    if let Some(alb) = objects.zone_albs.first() {
        let own: Vec<(u16, bool)> = std::iter::once((alb.spec.port, false))
            .chain(alb.spec.tls_port.map(|p| (p, true)))
            .collect();
        crate::gateway::refuse_mismatched_ports(&mut table, &own);
    }
    let mut out = Vec::new();
    if let Some(cluster) = cluster {
        let what = objects.describe(&crate::objects::key_of("MultiZoneCluster", &cluster.metadata, false));
        out.extend(problems.into_iter().map(|p| Finding {
            severity: Severity::Warning,
            reason: "InvalidClusterSetting",
            message: format!("{what}: {p}"),
        }));
    }
    for report in &table.reports {
        if let Some(rejected) = &report.rejected {
            out.push(Finding {
                severity: Severity::Error,
                reason: rejected.reason,
                message: rejected.message.clone(),
            });
        }
        for warning in &report.warnings {
            let fails_closed = warning.reason == FindingKind::Unenforced.reason();
            out.push(Finding {
                severity: if fails_closed {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                reason: warning.reason,
                message: warning.message.clone(),
            });
        }
    }
    out.extend(gateway_findings(&table.gateway.status));
    if let Some(alb) = objects.zone_albs.first() {
        let shared: Vec<u16> = std::iter::once(alb.spec.port).chain(alb.spec.tls_port).collect();
        out.extend(
            crate::gateway::shadowed(&table, &shared)
                .into_iter()
                .map(|message| Finding {
                    severity: Severity::Warning,
                    reason: "RouteShadowed",
                    message,
                }),
        );
    }
    for cluster in &objects.clusters {
        let reserved = cluster.health_host();
        if table.has_host(&reserved) {
            out.push(Finding {
                severity: Severity::Warning,
                reason: "ReservedHost",
                message: format!(
                    "host {reserved} is reserved for the ALBs' health checks; rules for it are never served"
                ),
            });
        }
    }
    out
}

/// Every Gateway API condition that is not as it should be (an error), and what was attached
/// where (for the record).
fn gateway_findings(report: &crate::gateway::status::Report) -> Vec<Finding> {
    use crate::gateway::status::Cond;
    let mut out = Vec::new();
    let mut push = |what: String, conds: &[Cond]| {
        for c in conds {
            let bad = c.status == (c.type_ == "Conflicted");
            if bad {
                out.push(Finding {
                    severity: Severity::Error,
                    reason: c.reason,
                    message: format!(
                        "{what}: {} {}",
                        c.type_,
                        if c.message.is_empty() { c.reason } else { &c.message }
                    ),
                });
            }
        }
    };
    for c in &report.classes {
        push(format!("GatewayClass {}", c.name), &c.conditions);
    }
    for g in &report.gateways {
        push(format!("Gateway {}/{}", g.namespace, g.name), &g.conditions);
        for l in &g.listeners {
            push(
                format!("Gateway {}/{} listener {}", g.namespace, g.name, l.name),
                &l.conditions,
            );
        }
    }
    for r in &report.routes {
        for p in &r.parents {
            let gw = format!(
                "{}/{}",
                p.parent_ref.namespace.as_deref().unwrap_or_default(),
                p.parent_ref.name
            );
            push(
                format!("HTTPRoute {}/{} on Gateway {gw}", r.namespace, r.name),
                &p.conditions,
            );
        }
    }
    for p in &report.policies {
        push(format!("BackendTLSPolicy {}/{}", p.namespace, p.name), &p.conditions);
    }
    out.extend(report.findings.iter().map(|f| Finding {
        severity: Severity::Warning,
        reason: "GatewayAPI",
        message: f.clone(),
    }));
    out
}

/// Which rule serves each host and path: the Ingress rules (on the ALB's own ports) and the
/// Gateway API rules (per listener port), in the order a request tries them.
pub fn routes(objects: &Objects, class: &str) -> Vec<String> {
    let zone = objects.zone_albs.first().map_or("", |a| a.spec.zone.as_str());
    let cluster = objects.zone_albs.first().and_then(|a| objects.cluster_of(a));
    let (defaults, _) = cluster.map_or_else(Default::default, |c| Defaults::from_config(&c.spec.ingress_nginx));
    let table = RouteTable::compile_with(objects, class, zone, &defaults, false, &Store::default())
        .expect("lenient compilation reports instead of failing");
    let ingress_ports = objects.zone_albs.first().map_or_else(String::new, |a| {
        std::iter::once(a.spec.port)
            .chain(a.spec.tls_port)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    let mut out = vec![format!(
        "{:<8} {:<28} {:<40} {:<44} TO",
        "PORT", "HOST", "MATCH", "SERVED BY"
    )];
    for (host, path_type, path, ingress, backend) in table.ingress_rules() {
        out.push(format!(
            "{ingress_ports:<8} {host:<28} {:<40} {:<44} {backend}",
            format!("{path_type} {path}").trim_end(),
            format!("Ingress {ingress}")
        ));
    }
    for line in table.gateway.rules() {
        out.push(format!(
            "{:<8} {:<28} {:<40} {:<44} {}",
            line.port, line.host, line.matches, line.route, line.to
        ));
    }
    out
}
