//! BackendTLSPolicy: TLS to a Service's endpoints, their certificate verified against the CA
//! certificates of a ConfigMap (`ca.crt`) for `validation.hostname`, which is also the SNI.
//! A policy that cannot be enforced (no usable CA, system CAs, subjectAltNames, options) makes
//! the Service unusable from routes (500), never reached in clear or unverified.

use std::collections::HashMap;
use std::sync::Arc;

use super::hostnames::Hostname;
use super::model::{BackendTLSPolicy, HTTPRoute};
use super::status::{Cond, PolicyReport};
use crate::backend_tls::Material;
use crate::objects::Objects;

pub(crate) struct Policies<'a> {
    all: Vec<Compiled<'a>>,
}

struct Compiled<'a> {
    policy: &'a BackendTLSPolicy,
    namespace: String,
    /// Services it applies to (the older policy wins a Service two target).
    services: Vec<String>,
    outcome: Result<Arc<Material>, String>,
    conditions: Vec<Cond>,
    ancestors: Vec<(String, String)>,
}

/// Reads every policy, oldest first.
pub(crate) fn compile(objects: &Objects) -> Policies<'_> {
    let mut list: Vec<&Arc<BackendTLSPolicy>> = objects.backend_tls_policies.iter().collect();
    list.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            p.metadata.namespace.clone(),
            p.metadata.name.clone(),
        )
    });
    let mut taken: HashMap<(String, String), String> = HashMap::new();
    let mut all = Vec::new();
    for policy in list {
        let namespace = policy.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = policy.metadata.name.clone().unwrap_or_default();
        let what = format!("BackendTLSPolicy {namespace}/{name}");
        let (outcome, mut conditions) = validate(objects, policy, &namespace, &what);
        let mut services = Vec::new();
        let mut bad_target = None;
        for (i, t) in policy.spec.target_refs.iter().enumerate() {
            if !(t.group.is_empty() || t.group == "core") || t.kind != "Service" {
                bad_target = Some(format!(
                    "{what}: spec.targetRefs[{i}]: {}/{} is not a Service",
                    t.group, t.kind
                ));
                continue;
            }
            if t.section_name.is_some() {
                // The Service is still this policy's: unusable from routes, never in clear.
                bad_target = Some(format!("{what}: spec.targetRefs[{i}].sectionName is not supported"));
            }
            match taken.get(&(namespace.clone(), t.name.clone())) {
                Some(first) => {
                    conditions = vec![Cond::no(
                        "Accepted",
                        "Conflicted",
                        format!(
                            "Service {namespace}/{} is already targeted by BackendTLSPolicy {first}",
                            t.name
                        ),
                    )];
                }
                None => {
                    taken.insert((namespace.clone(), t.name.clone()), name.clone());
                    services.push(t.name.clone());
                }
            }
        }
        let outcome = match (outcome, bad_target) {
            (Ok(_), Some(why)) => {
                conditions = vec![
                    Cond::no("Accepted", "Invalid", why.clone()),
                    Cond::yes("ResolvedRefs", "ResolvedRefs"),
                ];
                Err(why)
            }
            (outcome, _) => outcome,
        };
        all.push(Compiled {
            policy,
            namespace,
            services,
            outcome,
            conditions,
            ancestors: Vec::new(),
        });
    }
    Policies { all }
}

/// The policy's TLS material and its conditions.
fn validate(
    objects: &Objects,
    policy: &BackendTLSPolicy,
    ns: &str,
    what: &str,
) -> (Result<Arc<Material>, String>, Vec<Cond>) {
    let v = &policy.spec.validation;
    let invalid = |message: String| {
        (
            Err(message.clone()),
            vec![
                Cond::no("Accepted", "Invalid", message),
                Cond::yes("ResolvedRefs", "ResolvedRefs"),
            ],
        )
    };
    if !matches!(Hostname::parse(&v.hostname), Some(Hostname::Exact(_))) {
        return invalid(format!(
            "{what}: spec.validation.hostname {:?} is not a hostname",
            v.hostname
        ));
    }
    if v.well_known_ca_certificates.is_some() {
        return invalid(format!(
            "{what}: spec.validation.wellKnownCACertificates is not supported; name a ConfigMap in caCertificateRefs"
        ));
    }
    if !v.subject_alt_names.is_empty() {
        return invalid(format!("{what}: spec.validation.subjectAltNames is not supported"));
    }
    if !policy.spec.options.is_empty() {
        return invalid(format!("{what}: spec.options is not supported"));
    }
    let unresolved = |reason: &'static str, message: String| {
        (
            Err(message.clone()),
            vec![
                Cond::no("Accepted", "NoValidCACertificate", message.clone()),
                Cond::no("ResolvedRefs", reason, message),
            ],
        )
    };
    if v.ca_certificate_refs.is_empty() {
        return unresolved(
            "InvalidCACertificateRef",
            format!("{what}: spec.validation.caCertificateRefs is empty"),
        );
    }
    let mut roots = Vec::new();
    for (i, r) in v.ca_certificate_refs.iter().enumerate() {
        let field = format!("{what}: spec.validation.caCertificateRefs[{i}]");
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        if !(group.is_empty() || group == "core") || kind != "ConfigMap" {
            return unresolved("InvalidKind", format!("{field}: {group}/{kind} is not a ConfigMap"));
        }
        let Some(cm) = objects.config_map(ns, &r.name) else {
            return unresolved(
                "InvalidCACertificateRef",
                format!("{field}: ConfigMap {ns}/{} not found", r.name),
            );
        };
        let Some(pem) = cm.data.as_ref().and_then(|d| d.get("ca.crt")) else {
            return unresolved(
                "InvalidCACertificateRef",
                format!("{field}: ConfigMap {ns}/{} has no ca.crt", r.name),
            );
        };
        match crate::backend_tls::pem_certs(pem.as_bytes(), "ca.crt") {
            Ok(certs) => roots.extend(certs),
            Err(e) => {
                return unresolved(
                    "InvalidCACertificateRef",
                    format!("{field}: ConfigMap {ns}/{}: {e}", r.name),
                );
            }
        }
    }
    let material = Material::verified_for(roots, &v.hostname);
    (
        Ok(material),
        vec![
            Cond::yes("Accepted", "Accepted"),
            Cond::yes("ResolvedRefs", "ResolvedRefs"),
        ],
    )
}

impl Policies<'_> {
    /// What each targeted Service's endpoints are reached with.
    pub(crate) fn material(&self) -> HashMap<(String, String), Result<Arc<Material>, String>> {
        let mut out = HashMap::new();
        for p in &self.all {
            for service in &p.services {
                out.insert((p.namespace.clone(), service.clone()), p.outcome.clone());
            }
        }
        out
    }

    /// Notes that an accepted `route` of `route_ns` on Gateway `gateway` uses the Services of
    /// its backendRefs: that Gateway is an ancestor of their policies.
    pub(crate) fn used_by(&mut self, route: &HTTPRoute, route_ns: &str, gateway: (&str, &str)) {
        let services: Vec<(&str, &str)> = route
            .spec
            .rules
            .iter()
            .flat_map(|r| &r.backend_refs)
            .filter(|b| b.target.kind.as_deref().unwrap_or("Service") == "Service")
            .map(|b| {
                (
                    b.target.namespace.as_deref().unwrap_or(route_ns),
                    b.target.name.as_str(),
                )
            })
            .collect();
        for p in &mut self.all {
            let uses = services
                .iter()
                .any(|(ns, svc)| *ns == p.namespace && p.services.iter().any(|s| s == svc));
            let key = (gateway.0.to_owned(), gateway.1.to_owned());
            if uses && !p.ancestors.contains(&key) {
                p.ancestors.push(key);
            }
        }
    }

    pub(crate) fn reports(self) -> Vec<PolicyReport> {
        self.all
            .into_iter()
            .map(|p| PolicyReport {
                namespace: p.namespace,
                name: p.policy.metadata.name.clone().unwrap_or_default(),
                generation: p.policy.metadata.generation,
                conditions: p.conditions,
                ancestors: p.ancestors,
            })
            .collect()
    }
}
