//! Gateway API status on a cluster: zone-alb against the fake API server creates GatewayClass
//! `mzlb`, and its elected replica writes the conditions of the GatewayClass, the Gateway (with
//! every listener and the enabled ALBs' addresses) and each HTTPRoute parent, with the
//! specification's reasons and the objects' generations, as the conformance suite reads them.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tests::fakeapi::FakeApi;

use crate::gateway::{INFRA, WEB};
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
    // The Gateway API kinds are listed in any order: status is eventually what all of them say
    // (the conformance suite waits the same way).
    let gw = poll(Duration::from_secs(10), || {
        status_of("Gateway", Some(INFRA), "same-namespace").filter(|s| s["listeners"][0]["attachedRoutes"] == 2)
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

/// The Gateway-level Core conformance tests (GatewayWithAttachedRoutes, GatewayInvalidRouteKind,
/// GatewaySecretReferenceGrantAllInNamespace / -Specific / MissingReferenceGrant,
/// GatewayObservedGenerationBump, GatewayModifyListeners, GatewayClassObservedGenerationBump),
/// their manifests with each Gateway on its own port (they share the ALB's one address), the
/// status read as the suite reads it.
#[test]
fn gateway_conformance_status() {
    let api = FakeApi::start("127.0.110.60:0");
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let generated = rcgen::generate_simple_self_signed(vec!["secure.test.com".to_owned()]).unwrap();
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let gw = |name: &str, listeners: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: mzlb\n  listeners:\n{listeners}"
        )
    };
    let selector = "allowedRoutes: {kinds: [{kind: HTTPRoute}], namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: gateway-conformance-infra}}}}";
    let route = |name: &str, gateway: &str, section: Option<&str>, backend: &str| {
        let section = section.map_or(String::new(), |s| format!(", sectionName: {s}"));
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{{kind: Gateway, name: {gateway}, namespace: {INFRA}{section}}}]\n  rules: [{{backendRefs: [{{name: {backend}, port: 8080}}]}}]\n"
        )
    };
    let https = |port: u16, ns: &str| {
        format!(
            "  - {{name: https, port: {port}, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: All}}}}, \
             tls: {{certificateRefs: [{{group: '', kind: Secret, name: certificate, namespace: {ns}}}]}}}}\n"
        )
    };
    let grant = |name: &str, to_name: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {WEB}}}\n\
             spec:\n  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {INFRA}}}]\n  to: [{{group: '', kind: Secret{to_name}}}]\n"
        )
    };
    let objects = [
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: g.test}\n".to_owned(),
        "---\napiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: a}\nspec: {zone: zone-1, ip: 127.0.110.61, port: 8000}\n".to_owned(),
        format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {INFRA}}}\n"),
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: infra-backend-v1, namespace: {INFRA}}}\nspec: {{ports: [{{port: 8080}}]}}\n"),
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: certificate, namespace: {WEB}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&generated.cert.pem()),
            indent(&generated.signing_key.serialize_pem())
        ),
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gatewayclass-observed-generation-bump}\n\
         spec: {controllerName: mzlb.io/gateway-controller, description: old}\n"
            .to_owned(),
        gw("gateway-with-one-attached-route", &format!("  - {{name: http, port: 8101, protocol: HTTP, {selector}}}\n")),
        gw("gateway-with-two-attached-routes", &format!("  - {{name: http, port: 8102, protocol: HTTP, {selector}}}\n")),
        gw(
            "unresolved-gateway-with-one-attached-unresolved-route",
            &format!("  - {{name: tls, port: 8443, protocol: HTTPS, {selector}, tls: {{mode: Terminate, certificateRefs: [{{group: '', kind: Secret, name: does-not-exist}}]}}}}\n"),
        ),
        route("http-route-1", "gateway-with-one-attached-route", None, "infra-backend-v1"),
        route("http-route-2", "gateway-with-two-attached-routes", None, "infra-backend-v1"),
        route("http-route-3", "gateway-with-two-attached-routes", None, "infra-backend-v1"),
        route("http-route-4", "unresolved-gateway-with-one-attached-unresolved-route", Some("tls"), "does-not-exist"),
        gw("gateway-only-invalid-route-kind", "  - {name: http, port: 8103, protocol: HTTP, allowedRoutes: {namespaces: {from: All}, kinds: [{kind: InvalidRoute}]}}\n"),
        gw(
            "gateway-supported-and-invalid-route-kind",
            "  - {name: http, port: 8104, protocol: HTTP, allowedRoutes: {namespaces: {from: All}, kinds: [{kind: InvalidRoute}, {kind: HTTPRoute}]}}\n",
        ),
        gw("gateway-secret-reference-grant-all-in-namespace", &https(8444, WEB)),
        gw("gateway-secret-reference-grant-specific", &https(8445, WEB)),
        // Its suite test has no grant at all; here the grants above cover every Gateway of the
        // namespace to WEB, so its Secret is in a namespace no grant names.
        gw("gateway-secret-missing-reference-grant", &https(8446, crate::gateway::APP)),
        grant("reference-grant-all-in-namespace", ""),
        grant("reference-grant-specific", ", name: certificate"),
        gw("gateway-observed-generation-bump", "  - {name: http, port: 8105, protocol: HTTP, hostname: bar.com, allowedRoutes: {namespaces: {from: All}}}\n"),
        gw(
            "gateway-remove-listener",
            "  - {name: https, port: 8447, protocol: HTTPS, hostname: secure.test.com, allowedRoutes: {namespaces: {from: All}}, tls: {certificateRefs: [{name: certificate, namespace: gateway-conformance-web-backend}]}}\n  - {name: http, port: 8106, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n",
        ),
        route("http-route-5", "gateway-remove-listener", None, "foo-svc"),
    ];
    api.apply_yaml(&objects.concat());
    let _alb = Proc::start(
        "zone-alb",
        Command::new(bin("zone-alb"))
            .args(["--alb-id", "a", "--kubeconfig"])
            .arg(&kubeconfig)
            .env("POD_NAMESPACE", "mzlb-system"),
    );
    // The kinds are listed in any order, so status is eventually right, as the suite waits
    // for it: each check waits for its Gateway's status to satisfy `done`.
    let until = |gateway: &str, done: &dyn Fn(&Value) -> bool| {
        let mut last = Value::Null;
        poll(Duration::from_secs(20), || {
            last = api.get("Gateway", Some(INFRA), gateway)?["status"].clone();
            (last["listeners"].as_array().is_some_and(|l| !l.is_empty()) && done(&last)).then(|| last.clone())
        })
        .unwrap_or_else(|| panic!("{gateway}: status never as expected: {last}"))
    };
    let attached = |n: i64| {
        move |s: &Value| {
            s["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["attachedRoutes"] == n)
        }
    };
    let resolved = |want: &'static str| {
        move |s: &Value| {
            s["listeners"][0]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "ResolvedRefs" && c["status"] == want)
        }
    };
    let listener_of = |gateway: &str| until(gateway, &|_| true);
    let kinds = |l: &Value| -> Vec<String> {
        l["supportedKinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let cond = |l: &Value, t: &str| -> (String, String) {
        let c = l["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap();
        (
            c["status"].as_str().unwrap().to_owned(),
            c["reason"].as_str().unwrap().to_owned(),
        )
    };
    let yes = |r: &str| ("True".to_owned(), r.to_owned());
    let no = |r: &str| ("False".to_owned(), r.to_owned());
    // GatewayWithAttachedRoutes
    let s = until("gateway-with-one-attached-route", &attached(1));
    assert_eq!(s["listeners"][0]["attachedRoutes"], 1);
    assert_eq!(kinds(&s["listeners"][0]), ["HTTPRoute"]);
    assert_eq!(cond(&s["listeners"][0], "Accepted"), yes("Accepted"));
    assert_eq!(cond(&s["listeners"][0], "ResolvedRefs"), yes("ResolvedRefs"));
    assert_eq!(
        until("gateway-with-two-attached-routes", &attached(2))["listeners"][0]["attachedRoutes"],
        2
    );
    let s = until("unresolved-gateway-with-one-attached-unresolved-route", &attached(1));
    let l = &s["listeners"][0];
    assert_eq!(
        (l["attachedRoutes"].as_i64(), kinds(l)),
        (Some(1), vec!["HTTPRoute".to_owned()])
    );
    assert_eq!(cond(l, "ResolvedRefs"), no("InvalidCertificateRef"));
    assert_eq!(cond(l, "Programmed"), no("Invalid"));
    let r4 = poll(Duration::from_secs(10), || {
        let s = api.get("HTTPRoute", Some(INFRA), "http-route-4")?["status"].clone();
        s["parents"].as_array().filter(|p| !p.is_empty())?;
        Some(s)
    })
    .unwrap();
    assert_eq!(cond(&r4["parents"][0], "ResolvedRefs"), no("BackendNotFound"));
    // GatewayInvalidRouteKind
    let s = listener_of("gateway-only-invalid-route-kind");
    assert!(kinds(&s["listeners"][0]).is_empty());
    assert_eq!(cond(&s["listeners"][0], "ResolvedRefs"), no("InvalidRouteKinds"));
    assert_eq!(s["listeners"][0]["attachedRoutes"], 0);
    let s = listener_of("gateway-supported-and-invalid-route-kind");
    assert_eq!(kinds(&s["listeners"][0]), ["HTTPRoute"]);
    assert_eq!(cond(&s["listeners"][0], "ResolvedRefs"), no("InvalidRouteKinds"));
    assert_eq!(cond(&s, "Accepted").0, "True", "the Gateway stays Accepted");
    assert_eq!(
        cond(&s, "Programmed"),
        yes("Programmed"),
        "and Programmed: it serves its HTTPRoutes"
    );
    // GatewaySecretReferenceGrant*
    for gateway in [
        "gateway-secret-reference-grant-all-in-namespace",
        "gateway-secret-reference-grant-specific",
    ] {
        let s = until(gateway, &resolved("True"));
        assert_eq!(cond(&s["listeners"][0], "Programmed"), yes("Programmed"), "{gateway}");
        assert_eq!(
            cond(&s["listeners"][0], "ResolvedRefs"),
            yes("ResolvedRefs"),
            "{gateway}"
        );
    }
    let s = until("gateway-secret-missing-reference-grant", &resolved("False"));
    assert_eq!(cond(&s["listeners"][0], "ResolvedRefs"), no("RefNotPermitted"));
    // GatewayClassObservedGenerationBump
    let class = |name: &str| api.get("GatewayClass", None, name).map(|c| c["status"].clone());
    poll(Duration::from_secs(10), || {
        class("gatewayclass-observed-generation-bump").filter(|s| s["conditions"][0]["observedGeneration"] == 1)
    })
    .expect("the class is accepted at generation 1");
    let mut bumped = api
        .get("GatewayClass", None, "gatewayclass-observed-generation-bump")
        .unwrap();
    bumped["spec"]["description"] = json!("new");
    api.apply(bumped);
    poll(Duration::from_secs(10), || {
        let s = class("gatewayclass-observed-generation-bump")?;
        s["conditions"]
            .as_array()?
            .iter()
            .all(|c| c["observedGeneration"] == 2)
            .then_some(())
    })
    .expect("every condition follows the new generation");
    // GatewayObservedGenerationBump: a listener added.
    let mut g = api
        .get("Gateway", Some(INFRA), "gateway-observed-generation-bump")
        .unwrap();
    g["spec"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "alternate", "hostname": "foo.com", "port": 8105, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}));
    api.apply(g);
    let s = poll(Duration::from_secs(10), || {
        let s = api.get("Gateway", Some(INFRA), "gateway-observed-generation-bump")?["status"].clone();
        (s["listeners"].as_array()?.len() == 2
            && s["conditions"].as_array()?.iter().all(|c| c["observedGeneration"] == 2))
        .then_some(s)
    })
    .expect("conditions at the new generation, with the new listener");
    assert_eq!(cond(&s, "Accepted"), yes("Accepted"));
    assert_eq!(cond(&s, "Programmed"), yes("Programmed"));
    // GatewayModifyListeners: a listener removed leaves the status.
    let s = until("gateway-remove-listener", &attached(1));
    assert_eq!(s["listeners"].as_array().unwrap().len(), 2);
    assert!(
        s["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["attachedRoutes"] == 1),
        "{s}"
    );
    let mut g = api.get("Gateway", Some(INFRA), "gateway-remove-listener").unwrap();
    g["spec"]["listeners"].as_array_mut().unwrap().remove(0);
    api.apply(g);
    let s = poll(Duration::from_secs(10), || {
        let s = api.get("Gateway", Some(INFRA), "gateway-remove-listener")?["status"].clone();
        (s["listeners"].as_array()?.len() == 1).then_some(s)
    })
    .expect("the removed listener leaves the status");
    assert_eq!(s["listeners"][0]["name"], "http");
    assert_eq!(s["listeners"][0]["attachedRoutes"], 1);
    assert_eq!(cond(&s["listeners"][0], "ResolvedRefs"), yes("ResolvedRefs"));
}
