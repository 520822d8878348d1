//! Gateway API objects → this ALB's [`Table`] and the status of every object of ours. Each
//! problem is reported with the reason the specification names; nothing is served without
//! what its route asks for (a rule with a filter we do not implement is not attached at all).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use regex::Regex;

use super::hostnames::{self, Hostname};
use super::model::{self, GROUP, Gateway, HTTPRoute, ParentRef};
use super::status::{ClassReport, Cond, GatewayReport, ListenerReport, ParentReport, Report, RouteReport};
use super::table::{
    Entry, HeaderChanges, ListenerRoutes, Order, PathChange, PathMatch, Port, Redirect, Rewrite, Rule, Table,
    ValueMatch, WeightedBackend,
};
use crate::annotations::Defaults;
use crate::objects::Objects;
use crate::router::{BackendCache, RoutePolicy};

/// Bounds what a user-supplied regular expression may compile to.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles every Gateway of a class whose controller is ours.
pub(crate) fn compile(objects: &Objects, defaults: &Defaults, backends: &mut BackendCache<'_>) -> Table {
    let mut report = Report::default();
    let mut classes = Vec::new();
    // Classes whose Gateways are refused, and why.
    let mut refused_classes: HashMap<String, String> = HashMap::new();
    for class in &objects.gateway_classes {
        if class.spec.controller_name != super::status::CONTROLLER {
            continue;
        }
        let name = class.metadata.name.clone().unwrap_or_default();
        let accepted = if class.spec.parameters_ref.is_some() {
            let why = format!("GatewayClass {name}: spec.parametersRef: mzlb takes no parameters");
            refused_classes.insert(name.clone(), why.clone());
            Cond::no("Accepted", "InvalidParameters", why)
        } else {
            Cond::yes("Accepted", "Accepted")
        };
        report.classes.push(ClassReport {
            name: name.clone(),
            generation: class.metadata.generation,
            conditions: vec![accepted, Cond::yes("SupportedVersion", "SupportedVersion")],
        });
        classes.push(name);
    }
    let ours: Vec<&Arc<Gateway>> = objects
        .gateways
        .iter()
        .filter(|g| classes.contains(&g.spec.gateway_class_name))
        .collect();
    let namespaces = NamespaceLabels::new(objects);
    let mut policies = super::backend_tls::compile(objects);
    backends.backend_tls = policies.material();

    // Listeners first, so routes can attach to them.
    let mut listeners: Vec<Compiled> = Vec::new();
    let mut gw_refusals: Vec<Option<Cond>> = Vec::new();
    for gateway in &ours {
        let ns = namespace_of(&gateway.metadata);
        let name = gateway.metadata.name.clone().unwrap_or_default();
        let mut gw_report = GatewayReport {
            namespace: ns.clone(),
            name: name.clone(),
            generation: gateway.metadata.generation,
            conditions: Vec::new(),
            listeners: Vec::new(),
        };
        // What the Gateway asks of its own that cannot be done: nothing of it is served.
        let refusal = if let Some(why) = refused_classes.get(&gateway.spec.gateway_class_name) {
            Some(Cond::no("Accepted", "InvalidParameters", why.clone()))
        } else if gateway
            .spec
            .infrastructure
            .as_ref()
            .is_some_and(|i| i.get("parametersRef").is_some())
        {
            Some(Cond::no(
                "Accepted",
                "InvalidParameters",
                format!("Gateway {ns}/{name}: spec.infrastructure.parametersRef: mzlb takes no parameters"),
            ))
        } else if !gateway.spec.addresses.is_empty() {
            Some(Cond::no(
                "Accepted",
                "UnsupportedAddress",
                format!("Gateway {ns}/{name}: spec.addresses: a Gateway is served on every enabled zone's IP"),
            ))
        } else {
            None
        };
        gw_refusals.push(refusal.clone());
        for (index, listener) in gateway.spec.listeners.iter().enumerate() {
            let mut compiled = compile_listener(objects, gateway, &ns, &name, index, listener);
            if refusal.is_some() {
                for c in &mut compiled.report.conditions {
                    if c.type_ == "Programmed" {
                        *c = Cond::no("Programmed", "Invalid", "the Gateway is not accepted");
                    }
                }
            }
            gw_report.listeners.push(compiled.report.clone());
            listeners.push(compiled);
        }
        report.gateways.push(gw_report);
    }
    mark_conflicts(&mut listeners);

    // Routes, in the specification's order (oldest first, then by namespace/name), so the
    // rule order within equal matches is decided once here.
    // A GRPCRoute is routed as the HTTPRoute it amounts to (its calls are POSTs to
    // `/<service>/<method>`), to gRPC backends.
    let grpc: Vec<Arc<HTTPRoute>> = objects.grpc_routes.iter().map(|r| Arc::new(r.as_http())).collect();
    let mut routes: Vec<(&'static str, &Arc<HTTPRoute>)> = (objects.http_routes.iter().map(|r| ("HTTPRoute", r)))
        .chain(grpc.iter().map(|r| ("GRPCRoute", r)))
        .collect();
    routes.sort_by_key(|(_, r)| (created(&r.metadata), namespace_of(&r.metadata), r.metadata.name.clone()));
    let mut attached: Vec<Vec<(Option<Hostname>, Vec<Entry>)>> = Vec::new();
    attached.resize_with(listeners.len(), Vec::new);
    for (kind, route) in routes {
        let route_ns = namespace_of(&route.metadata);
        let route_name = route.metadata.name.clone().unwrap_or_default();
        let what = format!("{kind} {route_ns}/{route_name}");
        let mut route_report = RouteReport {
            kind,
            namespace: route_ns.clone(),
            name: route_name.clone(),
            generation: route.metadata.generation,
            parents: Vec::new(),
        };
        let mut route_hostnames = Vec::new();
        let mut bad_hostname = None;
        for h in &route.spec.hostnames {
            match Hostname::parse(h) {
                Some(h) => route_hostnames.push(h),
                None => bad_hostname = Some(h.clone()),
            }
        }
        // The rules once per route: the same for every parent.
        let rules = compile_rules(
            objects,
            (kind, route),
            &route_ns,
            &what,
            defaults,
            backends,
            &mut report.findings,
        );
        let mut attached_to = std::collections::HashSet::new();
        for parent in &route.spec.parent_refs {
            let group = parent.group.clone().unwrap_or_else(|| GROUP.into());
            let parent_kind = parent.kind.clone().unwrap_or_else(|| "Gateway".into());
            if group != GROUP || parent_kind != "Gateway" {
                continue; // a mesh Service or another implementation's kind: not ours to judge
            }
            let gw_ns = parent.namespace.clone().unwrap_or_else(|| route_ns.clone());
            let Some(gw_index) = ours
                .iter()
                .position(|g| namespace_of(&g.metadata) == gw_ns && g.metadata.name.as_deref() == Some(&parent.name))
            else {
                continue; // not one of our Gateways: another controller reports on it
            };
            let parent_ref = ParentRef {
                group: Some(group),
                kind: Some(parent_kind),
                namespace: Some(gw_ns.clone()),
                ..parent.clone()
            };
            let gw_name = ours[gw_index].metadata.name.clone().unwrap_or_default();
            let mut conditions = Vec::new();
            let candidates: Vec<usize> = (0..listeners.len())
                .filter(|&i| listeners[i].gateway == (gw_ns.clone(), gw_name.clone()))
                .filter(|&i| parent.section_name.as_ref().is_none_or(|s| *s == listeners[i].name))
                .filter(|&i| parent.port.is_none_or(|p| p == listeners[i].port as i32))
                .collect();
            let allowed: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| listeners[i].allows(kind, &route_ns, &gw_ns, &namespaces))
                .collect();
            let mut hosts_on: Vec<(usize, Option<Vec<Hostname>>)> = Vec::new();
            for &i in &allowed {
                if let Ok(hosts) = hostnames::effective(listeners[i].hostname.as_ref(), &route_hostnames) {
                    hosts_on.push((i, hosts));
                }
            }
            let accepted = if candidates.is_empty() {
                Cond::no(
                    "Accepted",
                    "NoMatchingParent",
                    "no listener matches the parentRef's sectionName and port",
                )
            } else if allowed.is_empty() {
                Cond::no(
                    "Accepted",
                    "NotAllowedByListeners",
                    "no listener allows routes from this namespace or of this kind",
                )
            } else if hosts_on.is_empty() {
                Cond::no(
                    "Accepted",
                    "NoMatchingListenerHostname",
                    "no hostname in common with any listener",
                )
            } else if let Some(h) = &bad_hostname {
                Cond::no(
                    "Accepted",
                    "UnsupportedValue",
                    format!("spec.hostnames: {h:?} is not a valid hostname"),
                )
            } else if let Some(reason) = &rules.refused {
                Cond::no("Accepted", "UnsupportedValue", reason.clone())
            } else {
                Cond::yes("Accepted", "Accepted")
            };
            let is_accepted = accepted.status;
            if is_accepted {
                policies.used_by(route, &route_ns, (&gw_ns, &gw_name));
            }
            conditions.push(accepted);
            conditions.push(match &rules.unresolved {
                None => Cond::yes("ResolvedRefs", "ResolvedRefs"),
                Some((reason, message)) => Cond::no("ResolvedRefs", reason, message.clone()),
            });
            for (i, hosts) in &hosts_on {
                // A route reaching a listener through two parentRefs is attached once.
                if !attached_to.insert(*i) {
                    continue;
                }
                listeners[*i].report.attached_routes += 1;
                if !is_accepted || !listeners[*i].programmed() {
                    continue;
                }
                let groups = match hosts {
                    None => vec![None],
                    Some(hosts) => hosts.iter().cloned().map(Some).collect(),
                };
                for host in groups {
                    let entries = rules.entries(&route_ns, &route_name, created(&route.metadata));
                    match attached[*i].iter_mut().find(|(h, _)| *h == host) {
                        Some((_, list)) => list.extend(entries),
                        None => attached[*i].push((host, entries)),
                    }
                }
            }
            route_report.parents.push(ParentReport { parent_ref, conditions });
        }
        if !route_report.parents.is_empty() {
            report.routes.push(route_report);
        }
    }

    // Gateway conditions, from their listeners'.
    let mut ports: HashMap<u16, Port> = HashMap::new();
    for ((gw_report, gateway), refusal) in report.gateways.iter_mut().zip(&ours).zip(&gw_refusals) {
        let key = (
            namespace_of(&gateway.metadata),
            gateway.metadata.name.clone().unwrap_or_default(),
        );
        let mine: Vec<usize> = (0..listeners.len()).filter(|&i| listeners[i].gateway == key).collect();
        let valid = mine.iter().filter(|&&i| listeners[i].programmed()).count();
        let invalid = mine.len() - valid;
        gw_report.conditions = vec![
            if invalid == 0 {
                Cond::yes("Accepted", "Accepted")
            } else if valid > 0 {
                Cond {
                    message: format!("{invalid} listener(s) cannot be served"),
                    ..Cond::yes("Accepted", "ListenersNotValid")
                }
            } else {
                Cond::no("Accepted", "ListenersNotValid", "no listener can be served")
            },
            if valid > 0 {
                Cond::yes("Programmed", "Programmed")
            } else {
                Cond::no("Programmed", "Invalid", "no listener can be served")
            },
        ];
        if let Some(refusal) = refusal {
            gw_report.conditions = vec![
                refusal.clone(),
                Cond::no("Programmed", "Invalid", "the Gateway is not accepted"),
            ];
        }
        for (slot, &i) in mine.iter().enumerate() {
            gw_report.listeners[slot] = listeners[i].report.clone();
        }
    }
    for (i, mut groups) in attached.into_iter().enumerate() {
        let l = &listeners[i];
        if !l.programmed() {
            continue;
        }
        for (_, entries) in &mut groups {
            entries.sort_by(|a, b| a.order.cmp(&b.order));
        }
        groups.sort_by_key(|(h, _)| h.as_ref().map_or((2, 0), Hostname::specificity));
        let port = ports.entry(l.port).or_default();
        port.https = l.https;
        port.listeners.push(Arc::new(ListenerRoutes {
            name: format!("{}/{}/{}", l.gateway.0, l.gateway.1, l.name).into(),
            hostname: l.hostname.clone(),
            certificate: l.certificate.clone(),
            groups,
        }));
    }
    for port in ports.values_mut() {
        port.listeners
            .sort_by_key(|l| l.hostname.as_ref().map_or((2, 0), Hostname::specificity));
    }
    report.policies = policies.reports();
    Table { ports, status: report }
}

/// A listener as compiled, before routes attach.
struct Compiled {
    gateway: (String, String),
    /// The Gateway's creation time, for conflicts between Gateways.
    created: Option<String>,
    name: String,
    port: u16,
    https: bool,
    hostname: Option<Hostname>,
    certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    namespaces: AllowedNamespaces,
    /// The route kinds it takes, of those we serve.
    takes: Vec<&'static str>,
    report: ListenerReport,
}

enum AllowedNamespaces {
    Same,
    All,
    Selector(LabelSelector),
    /// An unusable selector: nothing.
    None,
}

impl Compiled {
    fn programmed(&self) -> bool {
        self.report
            .conditions
            .iter()
            .any(|c| c.type_ == "Programmed" && c.status)
    }

    fn allows(&self, kind: &str, route_ns: &str, gw_ns: &str, labels: &NamespaceLabels) -> bool {
        self.takes.contains(&kind)
            && match &self.namespaces {
                AllowedNamespaces::Same => route_ns == gw_ns,
                AllowedNamespaces::All => true,
                AllowedNamespaces::Selector(selector) => selects(selector, &labels.of(route_ns)),
                AllowedNamespaces::None => false,
            }
    }
}

fn compile_listener(
    objects: &Objects,
    gateway: &Gateway,
    ns: &str,
    gw_name: &str,
    index: usize,
    listener: &model::Listener,
) -> Compiled {
    let field = format!("Gateway {ns}/{gw_name}: spec.listeners[{index}]");
    let mut accepted = Cond::yes("Accepted", "Accepted");
    let mut resolved = Cond::yes("ResolvedRefs", "ResolvedRefs");
    let https = listener.protocol == "HTTPS";
    if listener.protocol != "HTTP" && !https {
        accepted = Cond::no(
            "Accepted",
            "UnsupportedProtocol",
            format!(
                "{field}.protocol: {} is not supported (HTTP and HTTPS are)",
                listener.protocol
            ),
        );
    }
    let port = u16::try_from(listener.port).ok().filter(|&p| p != 0);
    if port.is_none() {
        accepted = Cond::no(
            "Accepted",
            "UnsupportedValue",
            format!("{field}.port: {} is not a port", listener.port),
        );
    }
    let hostname = match listener.hostname.as_deref().filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => match Hostname::parse(h) {
            Some(h) => Some(h),
            None => {
                accepted = Cond::no(
                    "Accepted",
                    "UnsupportedValue",
                    format!("{field}.hostname: {h:?} is not a hostname"),
                );
                None
            }
        },
    };
    // Route kinds: HTTPRoute and GRPCRoute are those we serve.
    let mut supported_kinds: Vec<&'static str> = Vec::new();
    let takes = match listener.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        None => {
            supported_kinds.extend(["HTTPRoute", "GRPCRoute"]);
            supported_kinds.clone()
        }
        Some(kinds) => {
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(GROUP);
                let ours = ["HTTPRoute", "GRPCRoute"].into_iter().find(|ours| *ours == k.kind);
                if let (GROUP, Some(kind)) = (group, ours) {
                    if !supported_kinds.contains(&kind) {
                        supported_kinds.push(kind);
                    }
                } else {
                    resolved = Cond::no(
                        "ResolvedRefs",
                        "InvalidRouteKinds",
                        format!("{field}.allowedRoutes.kinds: {group}/{} is not supported", k.kind),
                    );
                }
            }
            supported_kinds.clone()
        }
    };
    let namespaces = match listener.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref()) {
        None => AllowedNamespaces::Same,
        Some(n) => match (n.from.as_deref().unwrap_or("Same"), &n.selector) {
            ("Same", _) => AllowedNamespaces::Same,
            ("All", _) => AllowedNamespaces::All,
            ("Selector", Some(selector)) if selector_valid(selector) => AllowedNamespaces::Selector(selector.clone()),
            (from, _) => {
                accepted = Cond::no(
                    "Accepted",
                    "UnsupportedValue",
                    format!("{field}.allowedRoutes.namespaces: from {from} without a usable selector"),
                );
                AllowedNamespaces::None
            }
        },
    };
    let mut certificate = None;
    if https {
        let tls = listener.tls.clone().unwrap_or_default();
        if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
            accepted = Cond::no(
                "Accepted",
                "UnsupportedValue",
                format!("{field}.tls.mode: HTTPS listeners terminate TLS"),
            );
        }
        if tls.certificate_refs.is_empty() {
            resolved = Cond::no(
                "ResolvedRefs",
                "InvalidCertificateRef",
                format!("{field}.tls: no certificateRefs"),
            );
        }
        for (i, cert) in tls.certificate_refs.iter().enumerate() {
            // A reference not permitted is the reason given, whatever else is wrong.
            if resolved.reason == "RefNotPermitted" {
                break;
            }
            let cert_field = format!("{field}.tls.certificateRefs[{i}]");
            let group = cert.group.as_deref().unwrap_or("");
            let kind = cert.kind.as_deref().unwrap_or("Secret");
            let cert_ns = cert.namespace.clone().unwrap_or_else(|| ns.to_owned());
            if !(group.is_empty() || group == "core") || kind != "Secret" {
                resolved = Cond::no(
                    "ResolvedRefs",
                    "InvalidCertificateRef",
                    format!("{cert_field}: {group}/{kind} is not a Secret"),
                );
                continue;
            }
            if cert_ns != ns && !granted(objects, (GROUP, "Gateway", ns), ("", "Secret", &cert_ns, &cert.name)) {
                resolved = Cond::no(
                    "ResolvedRefs",
                    "RefNotPermitted",
                    format!(
                        "{cert_field}: Secret {cert_ns}/{} in another namespace without a ReferenceGrant",
                        cert.name
                    ),
                );
                continue;
            }
            let secret = objects.secrets.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(cert_ns.as_str())
                    && s.metadata.name.as_deref() == Some(&cert.name)
            });
            match secret.map(|s| crate::tls::certified_key(s)) {
                None => {
                    resolved = Cond::no(
                        "ResolvedRefs",
                        "InvalidCertificateRef",
                        format!("{cert_field}: Secret {cert_ns}/{} not found", cert.name),
                    )
                }
                Some(Err(e)) => {
                    resolved = Cond::no(
                        "ResolvedRefs",
                        "InvalidCertificateRef",
                        format!("{cert_field}: Secret {cert_ns}/{}: {e}", cert.name),
                    )
                }
                Some(Ok(key)) => {
                    certificate.get_or_insert(key);
                }
            }
        }
    }
    // Route kinds we do not serve leave the listener serving the HTTPRoutes it also takes.
    let usable = resolved.status || (resolved.reason == "InvalidRouteKinds" && !takes.is_empty());
    let programmed = if accepted.status && usable {
        Cond::yes("Programmed", "Programmed")
    } else {
        Cond::no("Programmed", "Invalid", "the listener is not served")
    };
    Compiled {
        gateway: (ns.to_owned(), gw_name.to_owned()),
        created: created(&gateway.metadata),
        name: listener.name.clone(),
        port: port.unwrap_or_default(),
        https,
        hostname,
        certificate,
        namespaces,
        takes,
        report: ListenerReport {
            name: listener.name.clone(),
            port: port.unwrap_or_default(),
            attached_routes: 0,
            supported_kinds,
            conditions: vec![
                accepted,
                resolved,
                programmed,
                Cond::no("Conflicted", "NoConflicts", ""),
            ],
        },
    }
}

/// Listeners on one port must agree on the protocol, and differ in hostname. HTTPS listeners
/// on one port whose hostnames overlap (`*.example.com` and `foo.example.com`) are served, and
/// told: a client may reuse a connection for both (HTTP/2 coalescing), and gets 421.
fn mark_conflicts(listeners: &mut [Compiled]) {
    let n = listeners.len();
    for i in 0..n {
        let overlaps = (0..n).any(|j| {
            let (a, b) = (&listeners[i], &listeners[j]);
            i != j
                && a.https
                && b.https
                && a.port == b.port
                && a.hostname != b.hostname
                && match (&a.hostname, &b.hostname) {
                    (Some(x), Some(y)) => x.intersect(y).is_some(),
                    _ => false,
                }
        });
        if overlaps {
            let port = listeners[i].port;
            listeners[i].report.conditions.push(Cond {
                message: format!("another HTTPS listener on port {port} has an overlapping hostname"),
                ..Cond::yes("OverlappingTLSConfig", "OverlappingHostnames")
            });
        }
    }
    mark_protocol_and_hostname_conflicts(listeners);
}

/// Only listeners that could be served take part; between two Gateways the older one keeps
/// the port (another tenant's newer Gateway cannot take a working listener down), within one
/// Gateway both are refused.
fn mark_protocol_and_hostname_conflicts(listeners: &mut [Compiled]) {
    let n = listeners.len();
    let candidate: Vec<bool> = listeners.iter().map(Compiled::programmed).collect();
    for i in 0..n {
        for j in 0..n {
            if i == j
                || !candidate[i]
                || !candidate[j]
                || listeners[i].port != listeners[j].port
                || listeners[i].port == 0
            {
                continue;
            }
            let (a, b) = (&listeners[i], &listeners[j]);
            if a.gateway != b.gateway && (&a.created, &a.gateway) < (&b.created, &b.gateway) {
                continue; // `i` is the older Gateway's: it keeps the port
            }
            let reason = if listeners[i].https != listeners[j].https {
                "ProtocolConflict"
            } else if listeners[i].hostname == listeners[j].hostname {
                "HostnameConflict"
            } else {
                continue;
            };
            let message = format!(
                "port {} is also used by listener {}",
                listeners[i].port, listeners[j].name
            );
            let l = &mut listeners[i];
            for c in &mut l.report.conditions {
                match c.type_ {
                    "Conflicted" => *c = Cond::yes("Conflicted", reason),
                    "Programmed" => *c = Cond::no("Programmed", "Invalid", message.clone()),
                    "Accepted" => *c = Cond::no("Accepted", "Invalid", message.clone()),
                    _ => {}
                }
            }
            if let Some(c) = l.report.conditions.iter_mut().find(|c| c.type_ == "Conflicted") {
                c.message = message;
            }
        }
    }
}

/// A route's rules, compiled once, attached to each listener it reaches.
struct Rules {
    rules: Vec<(Arc<Rule>, Vec<Matcher>)>,
    /// Why the route cannot be accepted (an unsupported field or filter), if so.
    refused: Option<String>,
    /// The first backend reference that cannot be used: (reason, message).
    unresolved: Option<(&'static str, String)>,
}

/// One `matches` entry, before it knows its route's order.
struct Matcher {
    path: PathMatchSpec,
    method: Option<String>,
    headers: Vec<(HeaderName, ValueSpec)>,
    query: Vec<(String, ValueSpec)>,
}

#[derive(Clone)]
enum PathMatchSpec {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Clone)]
enum ValueSpec {
    Exact(String),
    Regex(Regex),
}

impl ValueSpec {
    fn compile(&self) -> ValueMatch {
        match self {
            ValueSpec::Exact(s) => ValueMatch::Exact(s.clone()),
            ValueSpec::Regex(r) => ValueMatch::Regex(r.clone()),
        }
    }
}

impl Rules {
    fn entries(&self, ns: &str, name: &str, created: Option<String>) -> Vec<Entry> {
        let mut out = Vec::new();
        for (rule_index, (rule, matchers)) in self.rules.iter().enumerate() {
            for (match_index, m) in matchers.iter().enumerate() {
                let (path, path_kind, path_len) = match &m.path {
                    PathMatchSpec::Exact(p) => (PathMatch::Exact(p.clone()), 0, p.len()),
                    PathMatchSpec::Regex(r) => (PathMatch::Regex(r.clone()), 1, r.as_str().len()),
                    PathMatchSpec::Prefix(p) => (PathMatch::Prefix(p.clone()), 2, p.trim_end_matches('/').len()),
                };
                out.push(Entry {
                    path,
                    method: m.method.clone(),
                    headers: m.headers.iter().map(|(n, v)| (n.clone(), v.compile())).collect(),
                    query: m.query.iter().map(|(n, v)| (n.clone(), v.compile())).collect(),
                    rule: rule.clone(),
                    order: Order {
                        path_kind,
                        path_len: std::cmp::Reverse(path_len),
                        no_method: m.method.is_none(),
                        headers: std::cmp::Reverse(m.headers.len()),
                        query: std::cmp::Reverse(m.query.len()),
                        created: created.clone(),
                        route: format!("{ns}/{name}"),
                        rule: rule_index,
                        matched: match_index,
                    },
                });
            }
        }
        out
    }
}

fn compile_rules(
    objects: &Objects,
    (kind, route): (&'static str, &HTTPRoute),
    ns: &str,
    what: &str,
    defaults: &Defaults,
    backends: &mut BackendCache<'_>,
    findings: &mut Vec<String>,
) -> Rules {
    let mut out = Rules {
        rules: Vec::new(),
        refused: None,
        unresolved: None,
    };
    let route_name: Arc<str> = format!("{ns}/{}", route.metadata.name.as_deref().unwrap_or_default()).into();
    for (ri, rule) in route.spec.rules.iter().enumerate() {
        let field = format!("{what}: spec.rules[{ri}]");
        let mut refuse = |message: String| {
            out.refused.get_or_insert(message);
        };
        if let Some(key) = rule.other.keys().next() {
            refuse(format!("{field}.{key} is not supported"));
        }
        // Matches.
        let mut matchers = Vec::new();
        for (mi, m) in rule.matches.iter().enumerate() {
            let mfield = format!("{field}.matches[{mi}]");
            let path = m.path.clone().unwrap_or_default();
            let value = path.value.clone().unwrap_or_else(|| "/".into());
            let path = match path.type_.as_deref().unwrap_or("PathPrefix") {
                "Exact" | "PathPrefix" if !plain_path(&value) => {
                    refuse(format!(
                        "{mfield}.path.value: {value:?} is not a normalized absolute path"
                    ));
                    continue;
                }
                "Exact" => PathMatchSpec::Exact(value),
                "PathPrefix" => PathMatchSpec::Prefix(value),
                "RegularExpression" => match regex(&value) {
                    Ok(re) => PathMatchSpec::Regex(re),
                    Err(e) => {
                        refuse(format!("{mfield}.path.value: {e}"));
                        continue;
                    }
                },
                other => {
                    refuse(format!("{mfield}.path: {other} {value:?} is not supported"));
                    continue;
                }
            };
            let mut headers: Vec<(HeaderName, ValueSpec)> = Vec::new();
            for (hi, h) in m.headers.iter().enumerate() {
                let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                    refuse(format!(
                        "{mfield}.headers[{hi}].name: {:?} is not a header name",
                        h.name
                    ));
                    continue;
                };
                // Only the first entry of a name counts, as the specification says.
                if headers.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                match value_spec(h) {
                    Ok(v) => headers.push((name, v)),
                    Err(e) => refuse(format!("{mfield}.headers[{hi}]: {e}")),
                }
            }
            let mut query: Vec<(String, ValueSpec)> = Vec::new();
            for (qi, q) in m.query_params.iter().enumerate() {
                if query.iter().any(|(n, _)| *n == q.name) {
                    continue;
                }
                match value_spec(q) {
                    Ok(v) => query.push((q.name.clone(), v)),
                    Err(e) => refuse(format!("{mfield}.queryParams[{qi}]: {e}")),
                }
            }
            matchers.push(Matcher {
                path,
                method: m.method.clone(),
                headers,
                query,
            });
        }
        // Filters.
        let mut compiled = Filters::default();
        for (fi, filter) in rule.filters.iter().enumerate() {
            if let Err(e) = compiled.add(filter, (objects, kind), ns, backends, &mut out.unresolved) {
                refuse(format!("{field}.filters[{fi}]: {e}"));
            }
        }
        if compiled.redirect.is_some() && compiled.rewrite.is_some() {
            refuse(format!("{field}: RequestRedirect cannot be combined with URLRewrite"));
        }
        let has_prefix_rewrite = compiled
            .redirect
            .as_ref()
            .map(|r| matches!(r.path, Some(PathChange::Prefix(_))))
            .or(compiled
                .rewrite
                .as_ref()
                .map(|r| matches!(r.path, Some(PathChange::Prefix(_)))))
            .unwrap_or(false);
        if has_prefix_rewrite && matchers.iter().any(|m| !matches!(m.path, PathMatchSpec::Prefix(_))) {
            refuse(format!("{field}: ReplacePrefixMatch needs PathPrefix matches"));
        }
        // Backends.
        let mut weighted = Vec::new();
        for (bi, b) in rule.backend_refs.iter().enumerate() {
            let bfield = format!("{field}.backendRefs[{bi}]");
            let weight = b.weight.unwrap_or(1).clamp(0, 1_000_000) as u32;
            let backend = match resolve_backend(objects, kind, &b.target, ns, backends, &bfield) {
                Ok(backend) => Some(backend),
                Err(problem) => {
                    findings.push(format!("{}: {}", problem.0, problem.1));
                    out.unresolved.get_or_insert(problem);
                    None
                }
            };
            let mut own = Filters::default();
            for (fi, filter) in b.filters.iter().enumerate() {
                match filter.type_.as_str() {
                    "RequestHeaderModifier" | "ResponseHeaderModifier" => {
                        if let Err(e) = own.add(filter, (objects, kind), ns, backends, &mut out.unresolved) {
                            refuse(format!("{bfield}.filters[{fi}]: {e}"));
                        }
                    }
                    other => refuse(format!(
                        "{bfield}.filters[{fi}]: {other} is not supported on a backendRef"
                    )),
                }
            }
            weighted.push(WeightedBackend {
                weight,
                backend,
                request_headers: own.request_headers,
                response_headers: own.response_headers,
            });
        }
        let timeouts = rule.timeouts.clone().unwrap_or_default();
        let mut timeout = |text: Option<&String>, name: &str| match text.map(|t| model::parse_duration(t)) {
            None => None,
            Some(Some(d)) if d.is_zero() => None,
            Some(Some(d)) => Some(d),
            Some(None) => {
                refuse(format!(
                    "{field}.timeouts.{name}: {:?} is not a duration",
                    text.unwrap()
                ));
                None
            }
        };
        let request = timeout(timeouts.request.as_ref(), "request");
        let backend_request = timeout(timeouts.backend_request.as_ref(), "backendRequest");
        let request_timeout = match (request, backend_request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (mut policy, _) = crate::annotations::parse_with(None, defaults);
        if kind == "GRPCRoute" {
            // gRPC backends speak HTTP/2 in clear (h2c), as the specification's default.
            policy.backend_protocol = crate::annotations::BackendProtocol::Grpc;
        }
        // Gateway API has no body limit and no HTTPS redirect of its own.
        policy.body_limit = None;
        policy.ssl_redirect = false;
        let route_policy = |policy: crate::annotations::Policy| {
            Arc::new(RoutePolicy {
                ingress: route_name.clone(),
                tls_hosts: Vec::new(),
                policy,
                unenforced: Vec::new(),
                rate_limiter: None,
                rpm_limiter: None,
                connection_limiter: None,
                auth: None,
                error_backend: None,
                custom_headers: None,
            })
        };
        let mut h2c = policy.clone();
        h2c.backend_protocol = crate::annotations::BackendProtocol::Grpc;
        let (policy, policy_h2c) = (route_policy(policy), route_policy(h2c));
        let rule = Arc::new(Rule {
            kind,
            route: route_name.clone(),
            policy,
            policy_h2c,
            request_headers: compiled.request_headers,
            response_headers: compiled.response_headers,
            redirect: compiled.redirect,
            cors: compiled.cors,
            rewrite: compiled.rewrite,
            mirrors: compiled.mirrors,
            backends: weighted,
            request_timeout,
        });
        out.rules.push((rule, matchers));
    }
    out
}

#[derive(Default)]
struct Filters {
    request_headers: Option<HeaderChanges>,
    response_headers: Option<HeaderChanges>,
    redirect: Option<Redirect>,
    rewrite: Option<Rewrite>,
    mirrors: Vec<(Arc<crate::router::Backend>, f64)>,
    cors: Option<super::cors::Cors>,
}

impl Filters {
    fn add(
        &mut self,
        filter: &model::Filter,
        (objects, kind): (&Objects, &str),
        ns: &str,
        backends: &mut BackendCache<'_>,
        unresolved: &mut Option<(&'static str, String)>,
    ) -> Result<(), String> {
        let missing = || format!("type {} without its settings", filter.type_);
        match filter.type_.as_str() {
            "RequestHeaderModifier" => {
                let m = filter.request_header_modifier.as_ref().ok_or_else(missing)?;
                once(&mut self.request_headers, header_changes(m)?, "RequestHeaderModifier")
            }
            "ResponseHeaderModifier" => {
                let m = filter.response_header_modifier.as_ref().ok_or_else(missing)?;
                once(&mut self.response_headers, header_changes(m)?, "ResponseHeaderModifier")
            }
            "RequestRedirect" => {
                let r = filter.request_redirect.as_ref().ok_or_else(missing)?;
                let status = match r.status_code.unwrap_or(302) {
                    code @ (301 | 302 | 303 | 307 | 308) => {
                        hyper::StatusCode::from_u16(code as u16).expect("listed codes")
                    }
                    code => return Err(format!("statusCode {code} is not a redirect status")),
                };
                let scheme = match r.scheme.as_deref() {
                    None => None,
                    Some(s @ ("http" | "https")) => Some(s.to_owned()),
                    Some(s) => return Err(format!("scheme {s:?} is not supported")),
                };
                let hostname = match r.hostname.as_deref() {
                    None => None,
                    Some(h) => match Hostname::parse(h) {
                        Some(Hostname::Exact(h)) => Some(h),
                        _ => return Err(format!("hostname {h:?} is not a hostname")),
                    },
                };
                let port = match r.port {
                    None => None,
                    Some(p) => Some(u16::try_from(p).ok().filter(|&p| p != 0).ok_or(format!("port {p}"))?),
                };
                let path = r.path.as_ref().map(path_change).transpose()?;
                once(
                    &mut self.redirect,
                    Redirect {
                        scheme,
                        hostname,
                        path,
                        port,
                        status,
                    },
                    "RequestRedirect",
                )
            }
            "URLRewrite" => {
                let r = filter.url_rewrite.as_ref().ok_or_else(missing)?;
                let hostname = match r.hostname.as_deref() {
                    None => None,
                    Some(h) => match Hostname::parse(h) {
                        Some(Hostname::Exact(h)) => Some(HeaderValue::from_str(&h).map_err(|e| e.to_string())?),
                        _ => return Err(format!("hostname {h:?} is not a hostname")),
                    },
                };
                let path = r.path.as_ref().map(path_change).transpose()?;
                once(&mut self.rewrite, Rewrite { hostname, path }, "URLRewrite")
            }
            "CORS" => {
                let v = filter.cors.as_ref().ok_or_else(missing)?;
                once(&mut self.cors, super::cors::Cors::parse(v)?, "CORS")
            }
            "RequestMirror" => {
                let m = filter.request_mirror.as_ref().ok_or_else(missing)?;
                let share = match (m.percent, &m.fraction) {
                    (Some(_), Some(_)) => return Err("RequestMirror: percent and fraction are exclusive".into()),
                    (Some(p @ 0..=100), None) => f64::from(p) / 100.0,
                    (Some(p), None) => return Err(format!("RequestMirror: percent {p} is not 0 to 100")),
                    (None, Some(f)) => {
                        let numerator = f.get("numerator").and_then(serde_json::Value::as_i64);
                        let denominator = f.get("denominator").map_or(Some(100), serde_json::Value::as_i64);
                        match (numerator, denominator) {
                            (Some(n), Some(d)) if d > 0 && (0..=d).contains(&n) => n as f64 / d as f64,
                            _ => {
                                return Err(
                                    "RequestMirror: fraction needs 0 <= numerator <= denominator, denominator > 0"
                                        .into(),
                                );
                            }
                        }
                    }
                    (None, None) => 1.0,
                };
                match resolve_backend(objects, kind, &m.backend_ref, ns, backends, "RequestMirror.backendRef") {
                    // The mirror's copy goes in clear: never to a Service whose policy says TLS.
                    Ok(b) if b.tls.is_some() => {
                        return Err("RequestMirror to a Service with a BackendTLSPolicy is not supported".into());
                    }
                    Ok(b) => self.mirrors.push((b, share)),
                    Err(problem) => {
                        unresolved.get_or_insert(problem);
                    }
                }
                Ok(())
            }
            other => Err(format!("filter type {other} is not supported")),
        }
    }
}

fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name} given twice in one rule"));
    }
    *slot = Some(value);
    Ok(())
}

/// A header modifier's field name. The message's framing and connection fields are refused
/// (changing them would let a route desynchronize the proxy and its backend or client), and
/// `Host` (URLRewrite's `hostname` says that, and routing has already used it).
fn field_name(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    if crate::policy::forward::is_message_field(parsed.as_str().as_bytes()) {
        return Err(format!("{name:?} cannot be modified by a filter"));
    }
    Ok(parsed)
}

fn header_changes(m: &model::HeaderModifier) -> Result<HeaderChanges, String> {
    let pair = |h: &model::Header| -> Result<(HeaderName, HeaderValue), String> {
        let name = field_name(&h.name)?;
        let value = HeaderValue::from_str(&h.value).map_err(|_| format!("{:?} is not a header value", h.value))?;
        Ok((name, value))
    };
    Ok(HeaderChanges {
        set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: m.remove.iter().map(|n| field_name(n)).collect::<Result<_, _>>()?,
    })
}

/// A path as the CRD allows it in matches and filters, and as requests are matched after
/// normalization: absolute, no `//`, no dot segments, no encoded `/` or `\\`, no `?` or `#`,
/// only visible ASCII. Anything else would never match, or would send the backend another path
/// than the one routed by.
fn plain_path(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    v.starts_with('/')
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#' && b != b'\\')
        && !v.contains("//")
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !v.split('/').any(|seg| seg == "." || seg == "..")
}

fn path_change(p: &model::PathModifier) -> Result<PathChange, String> {
    let check = |v: &str| {
        if plain_path(v) {
            Ok(v.to_owned())
        } else {
            Err(format!("path {v:?} is not a normalized absolute path"))
        }
    };
    match (p.type_.as_str(), &p.replace_full_path, &p.replace_prefix_match) {
        ("ReplaceFullPath", Some(full), _) => Ok(PathChange::Full(check(full)?)),
        ("ReplacePrefixMatch", _, Some(prefix)) => Ok(PathChange::Prefix(check(prefix)?)),
        (other, ..) => Err(format!("path modifier {other} without its value")),
    }
}

fn regex(text: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{text})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("regular expression {text:?}: {e}"))
}

fn value_spec(v: &model::ValueMatch) -> Result<ValueSpec, String> {
    match v.type_.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(ValueSpec::Exact(v.value.clone())),
        "RegularExpression" => regex(&v.value).map(ValueSpec::Regex),
        other => Err(format!("match type {other} is not supported")),
    }
}

/// A backendRef's Service port, or why it cannot be used (the `ResolvedRefs` reason).
fn resolve_backend(
    objects: &Objects,
    route_kind: &str,
    target: &model::ObjectRefPort,
    ns: &str,
    backends: &mut BackendCache<'_>,
    field: &str,
) -> Result<Arc<crate::router::Backend>, (&'static str, String)> {
    let group = target.group.as_deref().unwrap_or("");
    let kind = target.kind.as_deref().unwrap_or("Service");
    if !(group.is_empty() || group == "core") || kind != "Service" {
        return Err(("InvalidKind", format!("{field}: {group}/{kind} is not a Service")));
    }
    let target_ns = target.namespace.as_deref().unwrap_or(ns);
    if target_ns != ns
        && !granted(
            objects,
            (GROUP, route_kind, ns),
            ("", "Service", target_ns, &target.name),
        )
    {
        return Err((
            "RefNotPermitted",
            format!(
                "{field}: Service {target_ns}/{} in another namespace without a ReferenceGrant",
                target.name
            ),
        ));
    }
    let Some(port) = target.port else {
        return Err((
            "UnsupportedValue",
            format!("{field}: a Service backendRef needs a port"),
        ));
    };
    let reference = k8s_openapi::api::networking::v1::IngressBackend {
        service: Some(k8s_openapi::api::networking::v1::IngressServiceBackend {
            name: target.name.clone(),
            port: Some(k8s_openapi::api::networking::v1::ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        }),
        resource: None,
    };
    backends.get_gateway(target_ns, &reference, field)
}

/// Whether a ReferenceGrant in the target's namespace lets `from` refer to it.
fn granted(objects: &Objects, from: (&str, &str, &str), to: (&str, &str, &str, &str)) -> bool {
    let (from_group, from_kind, from_ns) = from;
    let (to_group, to_kind, to_ns, to_name) = to;
    objects
        .reference_grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(to_ns))
        .any(|g| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    (t.group == to_group || (to_group.is_empty() && t.group == "core"))
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    // RFC 3339 in UTC sorts as text; a manifest without one sorts last among equals.
    meta.creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .or(Some("~".into()))
}

/// Namespace labels: a `Namespace` object's, plus the `kubernetes.io/metadata.name` label
/// Kubernetes gives every namespace.
struct NamespaceLabels {
    labels: HashMap<String, BTreeMap<String, String>>,
}

impl NamespaceLabels {
    fn new(objects: &Objects) -> Self {
        let labels = objects
            .namespaces
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n.metadata.labels.clone().unwrap_or_default())))
            .collect();
        Self { labels }
    }

    fn of(&self, ns: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.get(ns).cloned().unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), ns.into());
        labels
    }
}

fn selector_valid(selector: &LabelSelector) -> bool {
    selector
        .match_expressions
        .iter()
        .flatten()
        .all(|e| match e.operator.as_str() {
            "In" | "NotIn" => e.values.as_ref().is_some_and(|v| !v.is_empty()),
            "Exists" | "DoesNotExist" => e.values.as_ref().is_none_or(Vec::is_empty),
            _ => false,
        })
}

/// Kubernetes label-selector semantics: every `matchLabels` pair and every expression.
pub(crate) fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn label_selectors_as_kubernetes() {
        let labels: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        let sel = |labels: &[(&str, &str)], exprs: &[(&str, &str, &[&str])]| LabelSelector {
            match_labels: (!labels.is_empty())
                .then(|| labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            match_expressions: (!exprs.is_empty()).then(|| {
                exprs
                    .iter()
                    .map(|(k, op, vs)| LabelSelectorRequirement {
                        key: k.to_string(),
                        operator: op.to_string(),
                        values: (!vs.is_empty()).then(|| vs.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect()
            }),
        };
        assert!(selects(&sel(&[("env", "prod")], &[]), &labels));
        assert!(!selects(&sel(&[("env", "dev")], &[]), &labels));
        assert!(selects(&sel(&[], &[("env", "In", &["dev", "prod"])]), &labels));
        assert!(!selects(&sel(&[], &[("env", "NotIn", &["prod"])]), &labels));
        assert!(selects(&sel(&[], &[("team", "DoesNotExist", &[])]), &labels));
        assert!(!selects(&sel(&[], &[("team", "Exists", &[])]), &labels));
        assert!(!selects(&sel(&[], &[("env", "Bogus", &["prod"])]), &labels));
        assert!(selects(&sel(&[], &[]), &labels), "an empty selector selects everything");
        assert!(!selector_valid(&sel(&[], &[("env", "In", &[])])));
    }
}

#[cfg(test)]
mod table_tests {
    //! The conformance tests' routing tables, checked without a network: which rule (by its
    //! backend's Service) each request reaches, and the status each object gets.
    use super::*;
    use crate::source::dir::load_str;
    use crate::state::Store;
    use hyper::header::HeaderMap;
    use std::path::Path;

    const BASE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: mzlb}
spec: {controllerName: mzlb.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: v1
kind: Namespace
metadata: {name: web, labels: {gateway-conformance: backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: infra}
spec:
  gatewayClassName: mzlb
  listeners: [{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: backend-namespaces, namespace: infra}
spec:
  gatewayClassName: mzlb
  listeners:
  - name: http
    port: 8090
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gateway-conformance: backend}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: not-ours, namespace: infra}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 9999, protocol: HTTP}]
";

    fn services() -> String {
        let mut out = String::new();
        for (ns, name) in [
            ("infra", "v1"),
            ("infra", "v2"),
            ("infra", "v3"),
            ("web", "web-backend"),
        ] {
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{ports: [{{port: 8080}}]}}\n"
            ));
        }
        out
    }

    fn table(extra: &str) -> crate::router::RouteTable {
        let mut objects = Objects::default();
        let text = format!("{BASE}{}---\n{extra}", services());
        load_str(&text, Path::new("t.yaml"), &mut objects).unwrap();
        crate::router::RouteTable::compile(&objects, "mzlb", "z", &Store::default()).unwrap()
    }

    /// The Service a request reaches on `port`: `Some("v1")`, `Some("500")` for an unusable
    /// backend, `None` for no rule (404).
    fn route(
        t: &crate::router::RouteTable,
        port: u16,
        host: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        method: &str,
    ) -> Option<String> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let port = t.gateway.port(port)?;
        let listener = port.listener(host)?;
        let entry = listener.lookup(&super::super::table::Request {
            host,
            path,
            query,
            method,
            headers: &map,
        })?;
        if let Some(r) = &entry.rule.redirect {
            return Some(format!("redirect {}", r.status.as_u16()));
        }
        let picked = entry.rule.pick();
        Some(match picked.and_then(|b| b.backend.as_ref()) {
            None => "500".into(),
            Some(b) => b.name.split(['/', ':']).nth(1).unwrap().to_owned(),
        })
    }

    fn get(t: &crate::router::RouteTable, host: &str, path: &str, headers: &[(&str, &str)]) -> Option<String> {
        route(t, 8080, host, path, headers, "GET")
    }

    fn parent_conds(t: &crate::router::RouteTable, route: &str) -> Vec<String> {
        let r = t
            .gateway
            .status
            .routes
            .iter()
            .find(|r| r.name == route)
            .expect("route reported");
        r.parents
            .iter()
            .flat_map(|p| {
                p.conditions
                    .iter()
                    .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
            })
            .collect()
    }

    #[test]
    fn header_matching_precedence() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: header-matching, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{headers: [{name: version, value: two}]}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]
    backendRefs: [{name: v2, port: 8080}]
",
        );
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&[("Version", "one")], Some("v1")),
            (&[("Version", "two")], Some("v2")),
            (&[("Version", "two"), ("Color", "orange")], Some("v1")),
            (&[("Version", "two"), ("Color", "blue")], Some("v2")),
            (&[("Color", "orange")], None),
            (&[("Some-Other-Header", "one")], None),
            (&[("Color", "blue")], Some("v1")),
            (&[("Color", "green")], Some("v1")),
            (&[("Color", "red")], Some("v2")),
            (&[("Color", "yellow")], Some("v2")),
            (&[("Color", "purple")], None),
            (&[("Version", "ONE")], None),
        ];
        for (headers, want) in cases {
            assert_eq!(get(&t, "a.test", "/", headers).as_deref(), *want, "{headers:?}");
        }
    }

    #[test]
    fn path_match_order_and_exact_paths() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: path-matching-order, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: Exact, value: /match}}], backendRefs: [{name: v1, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact}}], backendRefs: [{name: v2, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact/one}}], backendRefs: [{name: v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/}}], backendRefs: [{name: v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/}}], backendRefs: [{name: v1, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/one}}], backendRefs: [{name: v2, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /two}}], backendRefs: [{name: v2, port: 8080}]}
",
        );
        for (path, want) in [
            ("/match/exact/one", Some("v3")),
            ("/match/exact", Some("v2")),
            ("/match", Some("v1")),
            ("/match/prefix/one/any", Some("v2")),
            ("/match/prefix/any", Some("v1")),
            ("/match/any", Some("v3")),
            ("/matchany", None),
            ("/two", Some("v2")),
            ("/two/", None),
            ("/Two", None),
            ("/", None),
        ] {
            assert_eq!(get(&t, "a.test", path, &[]).as_deref(), want, "{path}");
        }
    }

    #[test]
    fn hostname_intersection_and_listener_counts() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: hi, namespace: infra}
spec:
  gatewayClassName: mzlb
  listeners:
  - {name: listener-1, port: 8100, protocol: HTTP, hostname: very.specific.com}
  - {name: listener-2, port: 8100, protocol: HTTP, hostname: '*.wildcard.io'}
  - {name: listener-3, port: 8100, protocol: HTTP, hostname: '*.anotherwildcard.io'}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: s1, namespace: infra}
spec:
  parentRefs: [{name: hi, namespace: infra}]
  hostnames: [non.matching.com, '*.nonmatchingwildcard.io', very.specific.com]
  rules: [{matches: [{path: {type: PathPrefix, value: /s1}}], backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: s2, namespace: infra}
spec:
  parentRefs: [{name: hi, namespace: infra}]
  hostnames: [non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]
  rules: [{matches: [{path: {type: PathPrefix, value: /s2}}], backendRefs: [{name: v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: s3, namespace: infra}
spec:
  parentRefs: [{name: hi, namespace: infra}]
  hostnames: [non.matching.com, '*.specific.com']
  rules: [{matches: [{path: {type: PathPrefix, value: /s3}}], backendRefs: [{name: v3, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: s4, namespace: infra}
spec:
  parentRefs: [{name: hi, namespace: infra}]
  hostnames: ['*.anotherwildcard.io']
  rules: [{matches: [{path: {type: PathPrefix, value: /s4}}], backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: s5, namespace: infra}
spec:
  parentRefs: [{name: hi, namespace: infra}]
  hostnames: [specific.but.wrong.com, wildcard.io]
  rules: [{matches: [{path: {type: PathPrefix, value: /s5}}], backendRefs: [{name: v2, port: 8080}]}]
",
        );
        let at = |host: &str, path: &str| route(&t, 8100, host, path, &[], "GET");
        for (host, path, want) in [
            ("very.specific.com", "/s1", Some("v1")),
            ("non.matching.com", "/s1", None),
            ("foo.wildcard.io", "/s1", None),
            ("foo.bar.wildcard.io", "/s2", Some("v2")),
            ("wildcard.io", "/s2", None),
            ("very.specific.com", "/s2", None),
            ("very.specific.com", "/s3", Some("v3")),
            ("foo.specific.com", "/s3", None),
            ("foo.bar.anotherwildcard.io", "/s4", Some("v1")),
            ("anotherwildcard.io", "/s4", None),
            ("specific.but.wrong.com", "/s5", None),
        ] {
            assert_eq!(at(host, path).as_deref(), want, "{host}{path}");
        }
        let gw = t.gateway.status.gateways.iter().find(|g| g.name == "hi").unwrap();
        let counts: Vec<i32> = gw.listeners.iter().map(|l| l.attached_routes).collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(
            parent_conds(&t, "s5"),
            [
                "Accepted=false:NoMatchingListenerHostname",
                "ResolvedRefs=true:ResolvedRefs"
            ]
        );
    }

    #[test]
    fn references_across_namespaces_need_a_grant() {
        let route = |name: &str, ns: &str, backend_ns: &str| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\n\
                 spec: {{parentRefs: [{{name: same-namespace, namespace: infra}}], rules: [{{backendRefs: [{{name: web-backend, namespace: {backend_ns}, port: 8080}}]}}]}}\n"
            )
        };
        let grant = |from_kind: &str, to_name: &str| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: g, namespace: web}}\n\
                 spec: {{from: [{{group: gateway.networking.k8s.io, kind: {from_kind}, namespace: infra}}], to: [{{group: '', kind: Service, name: {to_name}}}]}}\n"
            )
        };
        let t = table(&route("r", "infra", "web"));
        assert_eq!(get(&t, "a", "/", &[]).as_deref(), Some("500"));
        assert_eq!(
            parent_conds(&t, "r"),
            ["Accepted=true:Accepted", "ResolvedRefs=false:RefNotPermitted"]
        );
        let t = table(&format!(
            "{}{}",
            route("r", "infra", "web"),
            grant("HTTPRoute", "web-backend")
        ));
        assert_eq!(get(&t, "a", "/", &[]).as_deref(), Some("web-backend"));
        assert_eq!(
            parent_conds(&t, "r"),
            ["Accepted=true:Accepted", "ResolvedRefs=true:ResolvedRefs"]
        );
        for wrong in [grant("Gateway", "web-backend"), grant("HTTPRoute", "other")] {
            let t = table(&format!("{}{wrong}", route("r", "infra", "web")));
            assert_eq!(get(&t, "a", "/", &[]).as_deref(), Some("500"), "{wrong}");
        }
        // A route in another namespace than the listener allows is not attached at all.
        let t = table(&route("cross", "web", "web"));
        assert_eq!(
            parent_conds(&t, "cross"),
            ["Accepted=false:NotAllowedByListeners", "ResolvedRefs=true:ResolvedRefs"]
        );
        assert_eq!(get(&t, "a", "/", &[]), None);
    }

    #[test]
    fn listener_selector_namespaces_and_invalid_backends() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross-namespace, namespace: web}
spec:
  parentRefs: [{name: backend-namespaces, namespace: infra}]
  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: unknown-kind, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {value: /kind}}]
    backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: v1, port: 8080}]
  - matches: [{path: {value: /missing}}]
    backendRefs: [{name: nonexistent, port: 8080}]
  - matches: [{path: {value: /zero}}]
    backendRefs: [{name: v1, port: 8080, weight: 0}, {name: v2, port: 8080, weight: 0}]
  - matches: [{path: {value: /none}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-section, namespace: infra}
spec:
  parentRefs: [{name: same-namespace, sectionName: http1}]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-class, namespace: infra}
spec:
  parentRefs: [{name: not-ours}]
",
        );
        assert_eq!(route(&t, 8090, "a", "/", &[], "GET").as_deref(), Some("web-backend"));
        for path in ["/kind", "/missing", "/zero", "/none"] {
            assert_eq!(get(&t, "a", path, &[]).as_deref(), Some("500"), "{path}");
        }
        assert_eq!(
            parent_conds(&t, "unknown-kind"),
            ["Accepted=true:Accepted", "ResolvedRefs=false:InvalidKind"]
        );
        assert_eq!(
            parent_conds(&t, "wrong-section"),
            ["Accepted=false:NoMatchingParent", "ResolvedRefs=true:ResolvedRefs"]
        );
        assert!(
            t.gateway.status.routes.iter().all(|r| r.name != "other-class"),
            "another controller's Gateway"
        );
        assert!(t.gateway.port(9999).is_none(), "another class's Gateway is not served");
        let classes: Vec<&str> = t.gateway.status.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(classes, ["mzlb"]);
    }

    #[test]
    fn bad_listeners_are_reported_and_not_served() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bad, namespace: infra}
spec:
  gatewayClassName: mzlb
  listeners:
  - {name: ok, port: 8200, protocol: HTTP}
  - {name: udp, port: 8201, protocol: UDP}
  - {name: kinds, port: 8202, protocol: HTTP, allowedRoutes: {kinds: [{kind: InvalidRoute}]}}
  - {name: tls, port: 8203, protocol: HTTPS, tls: {certificateRefs: [{name: does-not-exist}]}}
  - {name: clash-a, port: 8204, protocol: HTTP, hostname: a.test}
  - {name: clash-b, port: 8204, protocol: HTTP, hostname: a.test}
  - {name: proto, port: 8200, protocol: HTTPS, hostname: b.test, tls: {certificateRefs: [{name: does-not-exist}]}}
",
        );
        let gw = t.gateway.status.gateways.iter().find(|g| g.name == "bad").unwrap();
        let conds = |name: &str| {
            let l = gw.listeners.iter().find(|l| l.name == name).unwrap();
            l.conditions
                .iter()
                .filter(|c| c.status == (c.type_ == "Conflicted"))
                .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            conds("udp"),
            ["Accepted=false:UnsupportedProtocol", "Programmed=false:Invalid"]
        );
        assert_eq!(
            conds("kinds"),
            ["ResolvedRefs=false:InvalidRouteKinds", "Programmed=false:Invalid"]
        );
        assert!(
            gw.listeners
                .iter()
                .find(|l| l.name == "kinds")
                .unwrap()
                .supported_kinds
                .is_empty()
        );
        assert_eq!(
            conds("tls"),
            ["ResolvedRefs=false:InvalidCertificateRef", "Programmed=false:Invalid"]
        );
        assert_eq!(
            conds("clash-a"),
            [
                "Accepted=false:Invalid",
                "Programmed=false:Invalid",
                "Conflicted=true:HostnameConflict"
            ]
        );
        // `proto` cannot be served (no certificate), so it takes nothing from `ok`.
        assert!(conds("ok").is_empty(), "{:?}", conds("ok"));
        let gw_conds: Vec<String> = gw
            .conditions
            .iter()
            .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
            .collect();
        assert_eq!(
            gw_conds,
            ["Accepted=true:ListenersNotValid", "Programmed=true:Programmed"]
        );
        assert!(t.gateway.port(8200).is_some());
        for port in 8201..=8204 {
            assert!(t.gateway.port(port).is_none(), "no listener of it is served: {port}");
        }
    }

    #[test]
    fn unsupported_filters_refuse_the_route() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ext, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: x.io, kind: Thing, name: t}}]
    backendRefs: [{name: v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: sticky, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [sticky.test]
  rules:
  - sessionPersistence: {sessionName: s}
    backendRefs: [{name: v1, port: 8080}]
",
        );
        assert_eq!(parent_conds(&t, "ext")[0], "Accepted=false:UnsupportedValue");
        assert_eq!(parent_conds(&t, "sticky")[0], "Accepted=false:UnsupportedValue");
        assert_eq!(get(&t, "a.test", "/", &[]), None, "never served without its filter");
        assert_eq!(get(&t, "sticky.test", "/", &[]), None);
    }

    #[test]
    fn hostile_filter_and_path_values_refuse_the_route() {
        let filter = |name: &str, f: &str| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: infra}}\n\
                 spec:\n  parentRefs: [{{name: same-namespace}}]\n  hostnames: [{name}.test]\n  rules: [{{{f}, backendRefs: [{{name: v1, port: 8080}}]}}]\n"
            )
        };
        let cases = [
            (
                "cl",
                "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Content-Length, value: '5'}]}}]",
            ),
            (
                "te",
                "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: transfer-encoding, value: chunked}]}}]",
            ),
            (
                "host",
                "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Host, value: admin.internal}]}}]",
            ),
            (
                "conn",
                "filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {remove: [Connection]}}]",
            ),
            (
                "rcl",
                "filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: content-length, value: '0'}]}}]",
            ),
            (
                "badname",
                "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: 'a b', value: x}]}}]",
            ),
            ("dots", "matches: [{path: {type: PathPrefix, value: /a/../admin}}]"),
            ("double", "matches: [{path: {type: Exact, value: //admin}}]"),
            ("encoded", "matches: [{path: {type: PathPrefix, value: /a%2Fb}}]"),
            ("query", "matches: [{path: {type: Exact, value: '/a?b'}}]"),
            ("relative", "matches: [{path: {type: PathPrefix, value: admin}}]"),
            (
                "rewrite",
                "filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /x/../y}}}]",
            ),
            (
                "badregex",
                "matches: [{path: {type: RegularExpression, value: '(unclosed'}}]",
            ),
            (
                "badstatus",
                "filters: [{type: RequestRedirect, requestRedirect: {statusCode: 200}}]",
            ),
            (
                "badscheme",
                "filters: [{type: RequestRedirect, requestRedirect: {scheme: javascript}}]",
            ),
            (
                "twice",
                "filters: [{type: URLRewrite, urlRewrite: {hostname: a.test}}, {type: URLRewrite, urlRewrite: {hostname: b.test}}]",
            ),
            ("missing", "filters: [{type: RequestHeaderModifier}]"),
            (
                "both",
                "filters: [{type: RequestRedirect, requestRedirect: {hostname: a.test}}, {type: URLRewrite, urlRewrite: {hostname: b.test}}]",
            ),
            (
                "prefixexact",
                "matches: [{path: {type: Exact, value: /a}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]",
            ),
            ("timeout", "timeouts: {request: 10 seconds}"),
        ];
        let yaml: String = cases.iter().map(|(n, f)| filter(n, f)).collect();
        let t = table(&yaml);
        for (name, f) in cases {
            assert_eq!(parent_conds(&t, name)[0], "Accepted=false:UnsupportedValue", "{f}");
            assert_eq!(get(&t, &format!("{name}.test"), "/", &[]), None, "{f}: not served");
        }
    }

    #[test]
    fn certificate_references_across_namespaces() {
        let gateway = |name: &str, refs: &str| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: infra}}\n\
                 spec:\n  gatewayClassName: mzlb\n  listeners: [{{name: https, port: 8443, protocol: HTTPS, hostname: {name}.test, tls: {{certificateRefs: {refs}}}}}]\n"
            )
        };
        let grant = |name: &str, from_kind: &str, to_name: Option<&str>| {
            let to_name = to_name.map_or(String::new(), |n| format!(", name: {n}"));
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: web}}\n\
                 spec: {{from: [{{group: gateway.networking.k8s.io, kind: {from_kind}, namespace: infra}}], to: [{{group: '', kind: Secret{to_name}}}]}}\n"
            )
        };
        let web_cert = "[{name: certificate, namespace: web}]";
        let missing_both = "[{name: certificate, namespace: web}, {name: nonexistent, namespace: web}]";
        let reason = |t: &crate::router::RouteTable, gw: &str| {
            let g = t.gateway.status.gateways.iter().find(|g| g.name == gw).unwrap();
            let c = g.listeners[0]
                .conditions
                .iter()
                .find(|c| c.type_ == "ResolvedRefs")
                .unwrap();
            format!("{}:{}", c.status, c.reason)
        };
        let t = table(&format!(
            "{}{}",
            gateway("nogrant", web_cert),
            gateway("missing", missing_both)
        ));
        assert_eq!(reason(&t, "nogrant"), "false:RefNotPermitted");
        assert_eq!(reason(&t, "missing"), "false:RefNotPermitted", "RefNotPermitted wins");
        for wrong in [grant("g", "HTTPRoute", None), grant("g", "Gateway", Some("other"))] {
            let t = table(&format!("{}{wrong}", gateway("nogrant", web_cert)));
            assert_eq!(reason(&t, "nogrant"), "false:RefNotPermitted", "{wrong}");
        }
        for good in [grant("g", "Gateway", None), grant("g", "Gateway", Some("certificate"))] {
            let t = table(&format!("{}{good}", gateway("granted", web_cert)));
            // Granted, the Secret itself is missing here: the reference is resolved to nothing.
            assert_eq!(reason(&t, "granted"), "false:InvalidCertificateRef", "{good}");
        }
    }

    #[test]
    fn parent_ports_percentage_mirrors_and_backend_filters() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: port-81, namespace: infra}
spec:
  parentRefs: [{name: same-namespace, port: 81}]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: port-8080, namespace: infra}
spec:
  parentRefs: [{name: same-namespace, port: 8080}]
  hostnames: [port.test]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: half-mirror, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [mirror.test]
  rules:
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 8080}, percent: 50}}]
    backendRefs: [{name: v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-filters, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [filters.test]
  rules:
  - backendRefs:
    - {name: v1, port: 8080, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: v1}]}}]}
",
        );
        assert_eq!(parent_conds(&t, "port-81")[0], "Accepted=false:NoMatchingParent");
        assert_eq!(parent_conds(&t, "port-8080")[0], "Accepted=true:Accepted");
        assert_eq!(get(&t, "port.test", "/", &[]).as_deref(), Some("v1"));
        assert_eq!(parent_conds(&t, "half-mirror")[0], "Accepted=true:Accepted");
        assert_eq!(get(&t, "mirror.test", "/", &[]).as_deref(), Some("v1"));
        let port = t.gateway.port(8080).unwrap();
        let map = HeaderMap::new();
        fn at<'a>(host: &'a str, map: &'a HeaderMap) -> super::super::table::Request<'a> {
            super::super::table::Request {
                host,
                path: "/",
                query: None,
                method: "GET",
                headers: map,
            }
        }
        let mirrored = port
            .listener("mirror.test")
            .unwrap()
            .lookup(&at("mirror.test", &map))
            .unwrap();
        assert_eq!(mirrored.rule.mirrors[0].1, 0.5);
        let entry = port
            .listener("filters.test")
            .unwrap()
            .lookup(&at("filters.test", &map))
            .unwrap();
        let mut headers = HeaderMap::new();
        entry.rule.backends[0]
            .request_headers
            .as_ref()
            .unwrap()
            .apply(&mut headers);
        assert_eq!(headers["backend"], "v1", "a backendRef's own filter");
    }

    #[test]
    fn query_and_method_matching() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: m, namespace: infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{queryParams: [{name: animal, value: whale}]}], backendRefs: [{name: v1, port: 8080}]}
  - {matches: [{queryParams: [{name: animal, value: dolphin}]}], backendRefs: [{name: v2, port: 8080}]}
  - {matches: [{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}, {queryParams: [{name: ANIMAL, value: Whale}]}], backendRefs: [{name: v3, port: 8080}]}
  - {matches: [{path: {value: /p}, method: POST}], backendRefs: [{name: v1, port: 8080}]}
  - {matches: [{path: {value: /p}, headers: [{name: version, value: four}]}], backendRefs: [{name: v3, port: 8080}]}
  - {matches: [{path: {value: /p}, method: PATCH}], backendRefs: [{name: v2, port: 8080}]}
",
        );
        for (path, want) in [
            ("/?animal=whale", Some("v1")),
            ("/?animal=dolphin", Some("v2")),
            ("/?animal=dolphin&color=blue", Some("v3")),
            ("/?ANIMAL=Whale", Some("v3")),
            ("/?animal=whale&otherparam=irrelevant", Some("v1")),
            ("/?animal=dolphin&color=yellow", Some("v2")),
            ("/?color=blue", None),
            ("/?animal=whaledolphin", None),
        ] {
            assert_eq!(get(&t, "a", path, &[]).as_deref(), want, "{path}");
        }
        assert_eq!(route(&t, 8080, "a", "/p", &[], "POST").as_deref(), Some("v1"));
        assert_eq!(
            route(&t, 8080, "a", "/p", &[("version", "four")], "PATCH").as_deref(),
            Some("v2"),
            "method beats headers"
        );
        assert_eq!(route(&t, 8080, "a", "/p", &[], "HEAD"), None);
    }
}

#[cfg(test)]
mod gateway_tests {
    use super::*;
    use crate::source::dir::load_str;
    use crate::state::Store;
    use std::path::Path;

    fn table(yaml: &str) -> crate::router::RouteTable {
        let mut objects = Objects::default();
        load_str(yaml, Path::new("t.yaml"), &mut objects).unwrap();
        crate::router::RouteTable::compile(&objects, "mzlb", "z", &Store::default()).unwrap()
    }

    fn conds(c: &[Cond]) -> Vec<String> {
        c.iter()
            .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
            .collect()
    }

    #[test]
    fn the_older_gateway_keeps_a_port_and_routes_attach_once() {
        let cert = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
        let t = table(&format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: mzlb}}
spec: {{controllerName: mzlb.io/gateway-controller}}
---
apiVersion: v1
kind: Secret
metadata: {{name: c, namespace: a}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: first, namespace: a, creationTimestamp: '2026-01-01T00:00:00Z'}}
spec: {{gatewayClassName: mzlb, listeners: [{{name: https, port: 8443, protocol: HTTPS, tls: {{certificateRefs: [{{name: c}}]}}}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: later, namespace: b, creationTimestamp: '2026-06-01T00:00:00Z'}}
spec: {{gatewayClassName: mzlb, listeners: [{{name: http, port: 8443, protocol: HTTP}}, {{name: tcp, port: 8443, protocol: TCP}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: twice, namespace: a}}
spec:
  parentRefs: [{{name: first}}, {{name: first, sectionName: https}}]
  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]
",
            indent(&cert.cert.pem()),
            indent(&cert.signing_key.serialize_pem())
        ));
        let gw = |name: &str| t.gateway.status.gateways.iter().find(|g| g.name == name).unwrap();
        let listener = |g: &str, l: &str| conds(&gw(g).listeners.iter().find(|x| x.name == l).unwrap().conditions);
        assert_eq!(
            listener("first", "https"),
            [
                "Accepted=true:Accepted",
                "ResolvedRefs=true:ResolvedRefs",
                "Programmed=true:Programmed",
                "Conflicted=false:NoConflicts"
            ],
            "a newer Gateway of another tenant takes nothing"
        );
        assert_eq!(
            listener("later", "http"),
            [
                "Accepted=false:Invalid",
                "ResolvedRefs=true:ResolvedRefs",
                "Programmed=false:Invalid",
                "Conflicted=true:ProtocolConflict"
            ]
        );
        assert_eq!(
            listener("later", "tcp")[0],
            "Accepted=false:UnsupportedProtocol",
            "never a candidate"
        );
        assert!(t.gateway.port(8443).is_some_and(|p| p.https));
        assert_eq!(
            gw("first").listeners[0].attached_routes,
            1,
            "two parentRefs to one listener: one route"
        );
        let port = t.gateway.port(8443).unwrap();
        let entries: usize = port.listeners[0].groups.iter().map(|(_, e)| e.len()).sum();
        assert_eq!(entries, 1, "its rule attached once");
    }

    #[test]
    fn what_a_gateway_asks_that_cannot_be_done_refuses_it() {
        let t = table(
            "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: mzlb}
spec: {controllerName: mzlb.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: with-params}
spec: {controllerName: mzlb.io/gateway-controller, parametersRef: {group: x.io, kind: Config, name: c}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: static, namespace: ns}
spec: {gatewayClassName: mzlb, addresses: [{type: IPAddress, value: 10.0.0.9}], listeners: [{name: http, port: 8300, protocol: HTTP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: infra, namespace: ns}
spec: {gatewayClassName: mzlb, infrastructure: {parametersRef: {group: x.io, kind: C, name: c}}, listeners: [{name: http, port: 8301, protocol: HTTP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: params, namespace: ns}
spec: {gatewayClassName: with-params, listeners: [{name: http, port: 8302, protocol: HTTP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: overlapping, namespace: ns}
spec:
  gatewayClassName: mzlb
  listeners:
  - {name: foo-https, port: 8443, protocol: HTTPS, hostname: foo.example.com, tls: {certificateRefs: [{name: c}]}}
  - {name: wildcard-https, port: 8443, protocol: HTTPS, hostname: '*.example.com', tls: {certificateRefs: [{name: c}]}}
  - {name: not-overlapping-https, port: 8443, protocol: HTTPS, hostname: example.com, tls: {certificateRefs: [{name: c}]}}
  - {name: not-overlapping-other-port, port: 9443, protocol: HTTPS, hostname: foo.example.com, tls: {certificateRefs: [{name: c}]}}
",
        );
        let gw = |name: &str| t.gateway.status.gateways.iter().find(|g| g.name == name).unwrap();
        assert_eq!(
            conds(&gw("static").conditions),
            ["Accepted=false:UnsupportedAddress", "Programmed=false:Invalid"]
        );
        assert_eq!(
            conds(&gw("infra").conditions),
            ["Accepted=false:InvalidParameters", "Programmed=false:Invalid"]
        );
        assert_eq!(
            conds(&gw("params").conditions),
            ["Accepted=false:InvalidParameters", "Programmed=false:Invalid"]
        );
        for port in [8300, 8301, 8302] {
            assert!(t.gateway.port(port).is_none(), "{port} not served");
        }
        let class = t
            .gateway
            .status
            .classes
            .iter()
            .find(|c| c.name == "with-params")
            .unwrap();
        assert_eq!(conds(&class.conditions)[0], "Accepted=false:InvalidParameters");
        let overlapping = |listener: &str| {
            gw("overlapping")
                .listeners
                .iter()
                .find(|l| l.name == listener)
                .unwrap()
                .conditions
                .iter()
                .any(|c| c.type_ == "OverlappingTLSConfig" && c.status && c.reason == "OverlappingHostnames")
        };
        assert!(overlapping("foo-https"));
        assert!(overlapping("wildcard-https"));
        assert!(
            !overlapping("not-overlapping-https"),
            "*.example.com does not match example.com"
        );
        assert!(!overlapping("not-overlapping-other-port"));
    }
}
