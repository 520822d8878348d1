//! Gateway API status on a cluster: zone-alb against the fake API server creates GatewayClass
//! `mzlb`, and its elected replica writes the conditions of the GatewayClass, the Gateway (with
//! every listener and the enabled ALBs' addresses) and each HTTPRoute parent, with the
//! specification's reasons and the objects' generations, as the conformance suite reads them.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tests::fakeapi::FakeApi;

use crate::gateway::INFRA;
use crate::harness::{Proc, bin, poll, tempdir};

const OBJECTS: &str = "
apiVersion: mzlb.io/v1alpha1
kind: MultiZoneCluster
metadata: {name: c}
spec: {subdomain: g.test}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: a}
spec: {zone: zone-1, ip: 127.0.110.41, port: 8000}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: b}
spec: {zone: zone-2, ip: 127.0.110.42, port: 8000}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: off}
spec: {zone: zone-3, ip: 127.0.110.43, port: 8000, enabled: false}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra}
---
apiVersion: v1
kind: Service
metadata: {name: infra-backend-v1, namespace: gateway-conformance-infra}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: mzlb
  listeners:
  - {name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
  - {name: udp, port: 8081, protocol: UDP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-backend, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace, sectionName: http}]
  rules: [{backendRefs: [{name: nonexistent, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: no-ca, namespace: gateway-conformance-infra}
spec:
  targetRefs: [{group: '', kind: Service, name: infra-backend-v1}]
  validation: {caCertificateRefs: [{group: '', kind: ConfigMap, name: nonexistent}], hostname: backend.example}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: foreign, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: someone-elses}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
";

/// The conditions of a status list as (type, status, reason, observedGeneration).
fn conds(list: &Value) -> Vec<(String, String, String, i64)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["observedGeneration"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn c(t: &str, s: &str, r: &str, g: i64) -> (String, String, String, i64) {
    (t.into(), s.into(), r.into(), g)
}

#[test]
fn gateway_status_is_written_by_the_elected_replica() {
    let api = FakeApi::start("127.0.110.40:0");
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    api.apply_yaml(OBJECTS);
    // Someone else's controller already reports on the route's other parent.
    let mut foreign = api.get("HTTPRoute", Some(INFRA), "foreign").unwrap();
    let theirs =
        json!({"parentRef": {"name": "someone-elses"}, "controllerName": "example.com/other", "conditions": []});
    foreign["status"] = json!({"parents": [theirs]});
    api.apply(foreign);
    let alb = Proc::start(
        "zone-alb",
        Command::new(bin("zone-alb"))
            .args(["--alb-id", "a", "--kubeconfig"])
            .arg(&kubeconfig)
            .env("POD_NAMESPACE", "mzlb-system")
            .env("RUST_LOG", "info,zone_alb=debug"),
    );
    let status_of = |kind: &str, ns: Option<&str>, name: &str| api.get(kind, ns, name).map(|o| o["status"].clone());
    let class = poll(Duration::from_secs(20), || {
        let class = api.get("GatewayClass", None, "mzlb")?;
        class["status"]["conditions"].as_array().filter(|c| !c.is_empty())?;
        Some(class)
    })
    .unwrap_or_else(|| panic!("GatewayClass created and accepted:\n{}", alb.output()));
    assert_eq!(class["spec"]["controllerName"], "mzlb.io/gateway-controller");
    assert_eq!(
        conds(&class["status"]["conditions"]),
        [
            c("Accepted", "True", "Accepted", 1),
            c("SupportedVersion", "True", "SupportedVersion", 1)
        ]
    );
    let gw = poll(Duration::from_secs(10), || {
        status_of("Gateway", Some(INFRA), "same-namespace")
            .filter(|s| s["listeners"].as_array().is_some_and(|l| !l.is_empty()))
    })
    .unwrap_or_else(|| panic!("Gateway status:\n{}", alb.output()));
    assert_eq!(
        gw["addresses"],
        json!([{"type": "IPAddress", "value": "127.0.110.41"}, {"type": "IPAddress", "value": "127.0.110.42"}]),
        "the enabled ALBs"
    );
    assert_eq!(
        conds(&gw["conditions"]),
        [
            c("Accepted", "True", "ListenersNotValid", 1),
            c("Programmed", "True", "Programmed", 1)
        ]
    );
    let listeners = gw["listeners"].as_array().unwrap();
    assert_eq!(listeners[0]["name"], "http");
    assert_eq!(listeners[0]["attachedRoutes"], 2);
    assert_eq!(
        listeners[0]["supportedKinds"],
        json!([
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}
        ])
    );
    assert_eq!(
        conds(&listeners[0]["conditions"]),
        [
            c("Accepted", "True", "Accepted", 1),
            c("ResolvedRefs", "True", "ResolvedRefs", 1),
            c("Programmed", "True", "Programmed", 1),
            c("Conflicted", "False", "NoConflicts", 1)
        ]
    );
    assert_eq!(listeners[1]["name"], "udp");
    assert_eq!(
        conds(&listeners[1]["conditions"])[0],
        c("Accepted", "False", "UnsupportedProtocol", 1)
    );
    let route = poll(Duration::from_secs(10), || {
        status_of("HTTPRoute", Some(INFRA), "missing-backend")
            .filter(|s| s["parents"].as_array().is_some_and(|p| !p.is_empty()))
    })
    .unwrap();
    let parent = &route["parents"][0];
    assert_eq!(
        parent["parentRef"],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": INFRA, "name": "same-namespace", "sectionName": "http"})
    );
    assert_eq!(parent["controllerName"], "mzlb.io/gateway-controller");
    assert_eq!(
        conds(&parent["conditions"]),
        [
            c("Accepted", "True", "Accepted", 1),
            c("ResolvedRefs", "False", "BackendNotFound", 1)
        ]
    );
    // The BackendTLSPolicy of the Service the `good` route uses: its Gateway is its ancestor.
    let policy = poll(Duration::from_secs(10), || {
        status_of("BackendTLSPolicy", Some(INFRA), "no-ca")
            .filter(|s| s["ancestors"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .unwrap_or_else(|| panic!("BackendTLSPolicy status:\n{}", alb.output()));
    let ancestor = &policy["ancestors"][0];
    assert_eq!(
        ancestor["ancestorRef"],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": INFRA, "name": "same-namespace"})
    );
    assert_eq!(
        conds(&ancestor["conditions"]),
        [
            c("Accepted", "False", "NoValidCACertificate", 1),
            c("ResolvedRefs", "False", "InvalidCACertificateRef", 1)
        ]
    );
    let good = status_of("HTTPRoute", Some(INFRA), "good").unwrap();
    assert_eq!(
        conds(&good["parents"][0]["conditions"]),
        [
            c("Accepted", "True", "Accepted", 1),
            c("ResolvedRefs", "False", "InvalidBackendTLSPolicy", 1)
        ],
        "never plain text to a Service its policy says is TLS"
    );
    // Another controller's parent is kept; the route names no Gateway of ours, so nothing is added.
    assert_eq!(
        status_of("HTTPRoute", Some(INFRA), "foreign").unwrap()["parents"],
        json!([theirs])
    );
    // A change of the route's spec: new generation, conditions follow it.
    let mut good = api.get("HTTPRoute", Some(INFRA), "good").unwrap();
    good["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("nonexistent");
    api.apply(good);
    let bumped = poll(Duration::from_secs(10), || {
        let s = status_of("HTTPRoute", Some(INFRA), "good")?;
        let list = conds(&s["parents"][0]["conditions"]);
        (list.iter().all(|c| c.3 == 2)).then_some(list)
    })
    .unwrap_or_else(|| panic!("observedGeneration follows the route:\n{}", alb.output()));
    assert_eq!(
        bumped,
        [
            c("Accepted", "True", "Accepted", 2),
            c("ResolvedRefs", "False", "BackendNotFound", 2)
        ]
    );
    // A route that no longer names a Gateway of ours loses our parent from its status.
    let mut moved = api.get("HTTPRoute", Some(INFRA), "missing-backend").unwrap();
    moved["spec"]["parentRefs"] = json!([{"name": "someone-elses"}]);
    api.apply(moved);
    poll(Duration::from_secs(10), || {
        let s = status_of("HTTPRoute", Some(INFRA), "missing-backend")?;
        (s["parents"] == json!([])).then_some(())
    })
    .unwrap_or_else(|| panic!("our parent removed:\n{}", alb.output()));
    // Disabling an ALB takes its address out of the Gateway's status.
    let mut b = api.get("ZoneALB", None, "b").unwrap();
    b["spec"]["enabled"] = json!(false);
    api.apply(b);
    poll(Duration::from_secs(10), || {
        let s = status_of("Gateway", Some(INFRA), "same-namespace")?;
        (s["addresses"] == json!([{"type": "IPAddress", "value": "127.0.110.41"}])).then_some(())
    })
    .unwrap_or_else(|| panic!("addresses follow the ALBs:\n{}", alb.output()));
    // Status is written only on change: no patch loop.
    let patches = || {
        api.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.resource.ends_with("/status"))
            .count()
    };
    let before = patches();
    // A negative check needs a wait: two seconds of an idle cluster.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(patches(), before, "nothing changed, nothing written");
    crate::rbac::assert_covered(&["zone-alb"], &api.requests());
}
