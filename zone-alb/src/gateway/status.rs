//! What a compilation found about each GatewayClass, Gateway (and listener) and HTTPRoute
//! parent: the specification's conditions, ready to be written as status on a cluster and
//! printed by `zone-alb --check` without one.

use serde_json::{Value, json};

use super::model::ParentRef;

pub const CONTROLLER: &str = "mzlb.io/gateway-controller";

/// One condition: `type`, `status`, `reason` and `message`, as the specification names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub(crate) fn yes(type_: &'static str, reason: &'static str) -> Self {
        Self {
            type_,
            status: true,
            reason,
            message: String::new(),
        }
    }

    pub(crate) fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }

    /// As a `metav1.Condition`; `previous` keeps its transition time when unchanged.
    pub fn to_json(&self, generation: Option<i64>, now: &str, previous: &[Value]) -> Value {
        let status = if self.status { "True" } else { "False" };
        let same = previous
            .iter()
            .find(|c| c["type"] == self.type_ && c["status"] == status);
        let time = same.and_then(|c| c["lastTransitionTime"].as_str()).unwrap_or(now);
        let message = if self.message.is_empty() {
            self.reason.to_owned()
        } else {
            self.message.clone()
        };
        json!({
            "type": self.type_,
            "status": status,
            "reason": self.reason,
            "message": message,
            "observedGeneration": generation.unwrap_or(0),
            "lastTransitionTime": time,
        })
    }
}

/// Our conditions, in place of those of the same types; conditions of other types (another
/// controller's, a newer specification's) are kept, after ours.
pub fn merge_conditions(ours: &[Cond], generation: Option<i64>, now: &str, old: &[Value]) -> Vec<Value> {
    let mut out = match conditions_json(ours, generation, now, old) {
        Value::Array(list) => list,
        _ => Vec::new(),
    };
    out.extend(
        old.iter()
            .filter(|c| !ours.iter().any(|o| c["type"] == o.type_))
            .cloned(),
    );
    out
}

/// Conditions as a list of `metav1.Condition`s.
pub fn conditions_json(conds: &[Cond], generation: Option<i64>, now: &str, previous: &[Value]) -> Value {
    Value::Array(conds.iter().map(|c| c.to_json(generation, now, previous)).collect())
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub classes: Vec<ClassReport>,
    pub gateways: Vec<GatewayReport>,
    pub routes: Vec<RouteReport>,
    /// BackendTLSPolicies: their conditions, and the Gateways whose routes use their Services.
    pub policies: Vec<PolicyReport>,
    /// Problems worth a log line (conflicts with Ingresses, unusable references).
    pub findings: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ClassReport {
    pub name: String,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
}

#[derive(Clone, Debug)]
pub struct GatewayReport {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    pub listeners: Vec<ListenerReport>,
}

#[derive(Clone, Debug)]
pub struct ListenerReport {
    pub name: String,
    /// The listener's port (not written to status).
    pub port: u16,
    pub attached_routes: i32,
    /// `(group, kind)` of the route kinds it takes.
    pub supported_kinds: Vec<&'static str>,
    pub conditions: Vec<Cond>,
}

#[derive(Clone, Debug)]
pub struct RouteReport {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub parents: Vec<ParentReport>,
}

#[derive(Clone, Debug)]
pub struct PolicyReport {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    /// (namespace, name) of each Gateway.
    pub ancestors: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct ParentReport {
    /// As written, with defaults filled in (group, kind, namespace).
    pub parent_ref: ParentRef,
    pub conditions: Vec<Cond>,
}

impl GatewayReport {
    /// `status.listeners` of the Gateway.
    pub fn listeners_json(&self, now: &str, previous: &Value) -> Value {
        let listeners = self.listeners.iter().map(|l| {
            let old = previous["listeners"]
                .as_array()
                .and_then(|ls| ls.iter().find(|p| p["name"] == l.name.as_str()))
                .and_then(|p| p["conditions"].as_array())
                .cloned()
                .unwrap_or_default();
            json!({
                "name": l.name,
                "attachedRoutes": l.attached_routes,
                "supportedKinds": l.supported_kinds.iter().map(|k| json!({"group": super::model::GROUP, "kind": k})).collect::<Vec<_>>(),
                "conditions": merge_conditions(&l.conditions, self.generation, now, &old),
            })
        });
        Value::Array(listeners.collect())
    }
}

impl ParentReport {
    pub fn to_json(&self, generation: Option<i64>, now: &str, previous: &[Value]) -> Value {
        let p = &self.parent_ref;
        let mut parent_ref = json!({"group": p.group, "kind": p.kind, "namespace": p.namespace, "name": p.name});
        if let Some(section) = &p.section_name {
            parent_ref["sectionName"] = json!(section);
        }
        if let Some(port) = p.port {
            parent_ref["port"] = json!(port);
        }
        let old = previous
            .iter()
            .find(|o| o["parentRef"] == parent_ref && o["controllerName"] == CONTROLLER)
            .and_then(|o| o["conditions"].as_array())
            .cloned()
            .unwrap_or_default();
        json!({
            "parentRef": parent_ref,
            "controllerName": CONTROLLER,
            "conditions": conditions_json(&self.conditions, generation, now, &old),
        })
    }
}

impl std::fmt::Display for Cond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={} ({})",
            self.type_,
            if self.status { "True" } else { "False" },
            self.reason
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl Report {
    /// One line per object and parent, for `zone-alb --check` and the logs.
    pub fn lines(&self) -> Vec<String> {
        let join = |conds: &[Cond]| conds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let mut out = Vec::new();
        for c in &self.classes {
            out.push(format!("GatewayClass {}: {}", c.name, join(&c.conditions)));
        }
        for g in &self.gateways {
            out.push(format!("Gateway {}/{}: {}", g.namespace, g.name, join(&g.conditions)));
            for l in &g.listeners {
                out.push(format!(
                    "Gateway {}/{} listener {}: {} route(s) attached; {}",
                    g.namespace,
                    g.name,
                    l.name,
                    l.attached_routes,
                    join(&l.conditions)
                ));
            }
        }
        for r in &self.routes {
            for p in &r.parents {
                let section = p
                    .parent_ref
                    .section_name
                    .as_deref()
                    .map_or_else(String::new, |s| format!("/{s}"));
                out.push(format!(
                    "{} {}/{} on Gateway {}/{}{section}: {}",
                    r.kind,
                    r.namespace,
                    r.name,
                    p.parent_ref.namespace.as_deref().unwrap_or_default(),
                    p.parent_ref.name,
                    join(&p.conditions)
                ));
            }
        }
        for p in &self.policies {
            out.push(format!(
                "BackendTLSPolicy {}/{}: {}",
                p.namespace,
                p.name,
                join(&p.conditions)
            ));
        }
        out.extend(self.findings.iter().cloned());
        out
    }

    /// Whether anything of ours is refused (a condition False other than `Conflicted`).
    pub fn has_errors(&self) -> bool {
        let bad = |c: &Cond| !c.status && c.type_ != "Conflicted";
        self.classes.iter().flat_map(|c| &c.conditions).any(bad)
            || self.gateways.iter().flat_map(|g| &g.conditions).any(bad)
            || self
                .gateways
                .iter()
                .flat_map(|g| &g.listeners)
                .flat_map(|l| &l.conditions)
                .any(bad)
            || self
                .routes
                .iter()
                .flat_map(|r| &r.parents)
                .flat_map(|p| &p.conditions)
                .any(bad)
    }
}
