//! Kubernetes mode against a fake API server that speaks the real list/watch protocol: the
//! real `zone-alb` and `mzlb` binaries with a kubeconfig, checked with real curl and dig, and
//! the exact JSON they send (status patches, events, leases).

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tests::fakeapi::{FakeApi, Recorded};

use crate::harness::{Proc, bin, curl_in, dig, echo, poll, tempdir};
use crate::netns::Net;

const OBJECTS: &str = "
apiVersion: mzlb.io/v1alpha1
kind: MultiZoneCluster
metadata: {name: c}
spec: {subdomain: k.test, health: {intervalMs: 100, timeoutMs: 100}}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: a}
spec: {zone: zone-1, ip: 127.0.40.2, port: 8080}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: b}
spec: {zone: zone-2, ip: 127.0.40.3, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, namespace: shop, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{name: http, port: 9080}]
endpoints: [{addresses: [127.0.40.11]}]
";

fn ingress(name: &str, host: &str, service: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: shop, generation: 1}}\n\
         spec:\n  ingressClassName: mzlb\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{name: http}}}}}}}}\n"
    )
}

/// GET http://<host>/ through the ALB at 10.93.0.2:8080, from the client namespace `ns`.
fn get_from(ns: &str, host: &str) -> (u16, String) {
    let resolve = format!("{host}:8080:10.93.0.2");
    curl_in(ns, &["--resolve", &resolve, &format!("http://{host}:8080/")])
}

fn wait_for(api: &FakeApi, what: &str, alb: &Proc, mut f: impl FnMut(&[Recorded]) -> bool) {
    poll(Duration::from_secs(15), || f(&api.requests()).then_some(())).unwrap_or_else(|| {
        let seen: Vec<String> = api
            .requests()
            .iter()
            .map(|r| format!("{} {} {:?}", r.method, r.path, r.body))
            .collect();
        panic!(
            "{what} never happened; requests:\n{}\noutput:\n{}",
            seen.join("\n"),
            alb.output()
        )
    });
}

fn status_patches<'a>(requests: &'a [Recorded], ingress: &str) -> Vec<&'a Recorded> {
    let path = format!("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/{ingress}/status");
    requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == path)
        .collect()
}

fn events<'a>(requests: &'a [Recorded], reason: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/apis/events.k8s.io/v1/namespaces/shop/events")
        .filter_map(|r| r.body.as_ref())
        .filter(|b| b["reason"] == reason)
        .collect()
}

/// Starts zone-alb `a` in the namespace `ns` (address 10.93.0.2); waits for its admin
/// listener, asked from `client`.
fn start_zone_alb(kubeconfig: &std::path::Path, pod: &str, ns: &str, client: &str) -> Proc {
    let alb = Proc::start(
        "zone-alb",
        Net::exec(ns, &bin("zone-alb"))
            .args([
                "--alb-id",
                "a",
                "--listen",
                "10.93.0.2:8080",
                "--admin-listen",
                "10.93.0.2:9090",
                "--listen-tls",
                "10.93.0.2:8443",
                "--session-ticket-secret",
                "mzlb-system/tickets",
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", "mzlb-system")
            .env("RUST_LOG", "info"),
    );
    poll(Duration::from_secs(20), || {
        (curl_in(client, &["http://10.93.0.2:9090/healthz"]).0 == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("zone-alb not ready:\n{}", alb.output()));
    alb
}

#[test]
fn zone_alb_follows_the_api_server_records_events_and_writes_ingress_status() {
    // In namespaces: a real API server refuses EndpointSlices with loopback addresses, and so
    // does the fake; the API server sits in the hub, the ALB, the backend and the client each
    // in their own.
    let mut net = Net::new();
    net.hub_addr("10.93.0.1/24");
    let alb_ns = net.host("alb", "10.93.0.2/24");
    let backend_ns = net.host("backend", "10.93.0.11/24");
    let client = net.host("client", "10.93.0.100/24");
    let get = |host: &str| get_from(&client, host);
    let api = net.in_hub(|| FakeApi::start("10.93.0.1:0"));
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    api.apply_yaml(&OBJECTS.replace("127.0.40.", "10.93.0."));
    api.apply_yaml(&ingress("web", "web.test", "app"));
    let _backend = Proc::start(
        "echo",
        Net::exec(&backend_ns, &bin("mzlb")).args(["echo", "--listen", "10.93.0.11:9080", "--name", "backend-1"]),
    );
    let alb = start_zone_alb(&kubeconfig, "zone-alb-a-0", &alb_ns, &client);

    // Initial list: the Ingress is served.
    let (code, body) = get("web.test");
    assert_eq!(code, 200, "{body}\n{}", alb.output());
    assert!(body.contains("backend-1"), "{body}");

    // Our IngressClass was created, naming our controller.
    let class = api
        .get("IngressClass", None, "mzlb")
        .expect("IngressClass mzlb created");
    assert_eq!(class["spec"]["controller"], "mzlb.io/zone-alb");

    // One Normal event for the loaded Ingress, with exactly the fields kubectl shows.
    wait_for(&api, "the Success event", &alb, |r| !events(r, "Success").is_empty());
    let requests = api.requests();
    let event = events(&requests, "Success")[0];
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["note"], "Successfully applied ingress resource.");
    assert_eq!(event["action"], "Apply");
    assert_eq!(event["reportingController"], "mzlb.io/zone-alb");
    assert_eq!(event["reportingInstance"], "a/zone-alb-a-0");
    assert_eq!(
        event["regarding"],
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web", "namespace": "shop",
               "uid": api.get("Ingress", Some("shop"), "web").unwrap()["metadata"]["uid"]})
    );

    // The elected writer (the only replica here) holds the Lease and sets the Ingress status
    // to every enabled ALB, with a JSON merge patch on the status subresource.
    wait_for(&api, "the Ingress status patch", &alb, |r| {
        !status_patches(r, "web").is_empty()
    });
    let lease = api
        .get("Lease", Some("mzlb-system"), "mzlb-zone-alb-status")
        .expect("lease created");
    assert_eq!(lease["spec"]["holderIdentity"], "a/zone-alb-a-0");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    let requests = api.requests();
    let patch = status_patches(&requests, "web")[0];
    assert_eq!(patch.content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(
        patch.body,
        Some(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.93.0.2"}, {"ip": "10.93.0.3"}]}}}))
    );
    assert_eq!(
        api.get("Ingress", Some("shop"), "web").unwrap()["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "10.93.0.2"}, {"ip": "10.93.0.3"}])
    );

    // Watch event MODIFIED: disabling ALB b takes its IP out of the Ingress status.
    api.apply_yaml(
        "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: b}\nspec: {zone: zone-2, ip: 10.93.0.3, port: 8080, enabled: false}\n",
    );
    wait_for(&api, "the status patch after disabling b", &alb, |r| {
        status_patches(r, "web")
            .last()
            .is_some_and(|p| p.body == Some(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.93.0.2"}]}}})))
    });

    // An API server slow to take status writes delays status, never the routing table: with
    // Ingress status patches stalled, a new Ingress (whose status is then being written) and
    // the one after it are both served at once.
    api.stall("ingresses/status", Duration::from_secs(8));
    api.apply_yaml(&ingress("slow1", "slow1.test", "app"));
    poll(Duration::from_secs(5), || (get("slow1.test").0 == 200).then_some(()))
        .unwrap_or_else(|| panic!("Ingress slow1 not served:\n{}", alb.output()));
    wait_for(&api, "the stalled status patch", &alb, |r| {
        !status_patches(r, "slow1").is_empty()
    });
    api.apply_yaml(&ingress("slow2", "slow2.test", "app"));
    poll(Duration::from_secs(3), || (get("slow2.test").0 == 200).then_some(()))
        .unwrap_or_else(|| panic!("a stalled status write held back the routing table:\n{}", alb.output()));
    api.stall("ingresses/status", Duration::ZERO);

    // Watch event ADDED: a new Ingress is served; one whose Service is missing is rejected
    // with a Warning event naming the reason, and the others keep working.
    api.apply_yaml(&ingress("shop2", "shop2.test", "app"));
    api.apply_yaml(&ingress("broken", "broken.test", "missing"));
    poll(Duration::from_secs(10), || (get("shop2.test").0 == 200).then_some(()))
        .unwrap_or_else(|| panic!("added Ingress not served:\n{}", alb.output()));
    wait_for(&api, "the ServiceNotFound warning", &alb, |r| {
        !events(r, "ServiceNotFound").is_empty()
    });
    let requests = api.requests();
    let warning = events(&requests, "ServiceNotFound")[0];
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["regarding"]["name"], "broken");
    assert!(
        warning["note"]
            .as_str()
            .unwrap()
            .contains("Service shop/missing not found"),
        "{warning}"
    );
    assert_eq!(
        get("broken.test").0,
        503,
        "a path whose Service is missing answers 503: it never falls to another rule"
    );
    assert_eq!(
        get("web.test").0,
        200,
        "one broken Ingress does not take the others down"
    );
    // Applies shop2 with one annotation and returns the note of the first event `reason`.
    let annotated = |generation: u32, annotation: &str, reason: &str| {
        api.apply_yaml(&ingress("shop2", "shop2.test", "app").replace(
            "generation: 1}",
            &format!("generation: {generation}, annotations: {{nginx.ingress.kubernetes.io/{annotation}}}}}"),
        ));
        wait_for(&api, &format!("the {reason} warning"), &alb, |r| {
            !events(r, reason).is_empty()
        });
        let requests = api.requests();
        events(&requests, reason)[0]["note"].as_str().unwrap().to_owned()
    };
    // A bad annotation value is a Warning too, naming annotation and value; the rest works.
    let note = annotated(2, "load-balance: fastest", "InvalidAnnotation");
    assert!(note.contains("load-balance") && note.contains("fastest"), "{note}");
    assert_eq!(get("shop2.test").0, 200);
    // A protection mzlb does not enforce fails closed: a Warning naming the key, and 503.
    let note = annotated(3, "auth-tls-verify-client: 'on'", "UnsupportedAnnotation");
    assert!(note.contains("kubernetes.io/auth-tls-verify-client"), "{note}");
    poll(Duration::from_secs(10), || (get("shop2.test").0 == 503).then_some(()))
        .unwrap_or_else(|| panic!("an Ingress with auth-tls-* is served without it:\n{}", alb.output()));

    // Session-ticket keys from the Secret --session-ticket-secret names, watched by name; an
    // Opaque one, so basic auth's watch strips its copy: tickets are still sealed with its key
    // (whose name, the key's first 16 bytes, leads each ticket).
    let ticket_key = || {
        let mut child = Net::exec(&client, std::path::Path::new("openssl"))
            .args([
                "s_client",
                "-connect",
                "10.93.0.2:8443",
                "-servername",
                "web.test",
                "-tls1_3",
                "-ign_eof",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n";
        let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), request);
        let out = child.wait_with_output().unwrap();
        crate::tls_edge::sealed_by(&String::from_utf8_lossy(&out.stdout))
    };
    let key = format!("k{}", "0123456789abcdef".repeat(5).get(..79).unwrap());
    assert!(
        ticket_key().is_some(),
        "no ticket before the Secret exists:\n{}",
        alb.output()
    );
    api.apply_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: tickets, namespace: mzlb-system}}\ntype: Opaque\n\
         stringData: {{tls.ticket-keys: '{key}'}}\n"
    ));
    poll(Duration::from_secs(10), || (ticket_key() == Some(b'k')).then_some(()))
        .unwrap_or_else(|| panic!("tickets not sealed with the Secret's key:\n{}", alb.output()));

    // Basic auth from an Opaque Secret the ALB watches: 401 without the password, 200 with it,
    // and a changed password takes effect (the old one is refused).
    let basic = |hash: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: basic, namespace: shop}}\ntype: Opaque\n\
             stringData: {{auth: 'alice:{hash}', db-password: hunter2}}\n"
        )
    };
    api.apply_yaml(&basic("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")); // "password"
    api.apply_yaml(&ingress("shop2", "shop2.test", "app").replace(
        "generation: 1}",
        "generation: 4, annotations: {nginx.ingress.kubernetes.io/auth-type: basic, \
         nginx.ingress.kubernetes.io/auth-secret: basic, nginx.ingress.kubernetes.io/auth-realm: Shop}}",
    ));
    let as_alice = |password: &str| {
        let user = format!("alice:{password}");
        curl_in(
            &client,
            &[
                "--resolve",
                "shop2.test:8080:10.93.0.2",
                "-u",
                &user,
                "http://shop2.test:8080/",
            ],
        )
        .0
    };
    poll(Duration::from_secs(10), || (get("shop2.test").0 == 401).then_some(()))
        .unwrap_or_else(|| panic!("basic auth from an Opaque Secret not applied:\n{}", alb.output()));
    assert_eq!(as_alice("password"), 200);
    assert_eq!(as_alice("wrong"), 401);
    api.apply_yaml(&basic("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=")); // "secret"
    poll(Duration::from_secs(10), || (as_alice("secret") == 200).then_some(()))
        .unwrap_or_else(|| panic!("the changed password is not used:\n{}", alb.output()));
    assert_eq!(
        as_alice("password"),
        401,
        "the old password is refused once the Secret changed"
    );

    // Watch event DELETED.
    api.delete("Ingress", Some("shop"), "shop2");
    poll(Duration::from_secs(10), || (get("shop2.test").0 == 404).then_some(()))
        .unwrap_or_else(|| panic!("deleted Ingress still served:\n{}", alb.output()));

    // A watch that ends resumes from the last resourceVersion, without listing again.
    let ingress_lists = |r: &[Recorded]| {
        r.iter()
            .filter(|x| x.verb == "list" && x.resource == "ingresses")
            .count()
    };
    let lists_before = ingress_lists(&api.requests());
    let rv_before = api.resource_version();
    api.end_watches();
    wait_for(&api, "a resumed Ingress watch", &alb, |r| {
        r.iter().any(|x| {
            x.verb == "watch"
                && x.resource == "ingresses"
                && x.query.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()) == Some(rv_before)
        })
    });
    api.apply_yaml(&ingress("late", "late.test", "app"));
    poll(Duration::from_secs(10), || (get("late.test").0 == 200).then_some(()))
        .unwrap_or_else(|| panic!("Ingress added after a resumed watch not served:\n{}", alb.output()));
    assert_eq!(
        ingress_lists(&api.requests()),
        lists_before,
        "a resumed watch does not list again"
    );

    // 410 Gone forces a new list; what changed meanwhile is picked up.
    api.compact();
    api.apply_yaml(&ingress("after-gone", "gone.test", "app"));
    wait_for(&api, "a relist after 410 Gone", &alb, |r| {
        ingress_lists(r) > lists_before
    });
    poll(Duration::from_secs(15), || (get("gone.test").0 == 200).then_some(()))
        .unwrap_or_else(|| panic!("Ingress added around a 410 not served:\n{}", alb.output()));

    // The API server goes away: the last good table keeps serving.
    api.set_down(true);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get("web.test").0, 200, "serving goes on without the API server");
    api.set_down(false);
    api.delete("Ingress", Some("shop"), "late");
    poll(Duration::from_secs(20), || (get("late.test").0 == 404).then_some(()))
        .unwrap_or_else(|| panic!("changes not followed after the API server came back:\n{}", alb.output()));

    crate::rbac::assert_covered(&["zone-alb"], &api.requests());
}

#[test]
fn dns_and_the_cli_use_zone_albs_from_the_api_server() {
    let api = FakeApi::start("127.0.41.1:0");
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    // (mzlb serve reads no EndpointSlices; a loopback one would be refused.)
    let objects: Vec<&str> = OBJECTS
        .split("\n---\n")
        .filter(|d| !d.contains("kind: EndpointSlice"))
        .collect();
    api.apply_yaml(&objects.join("\n---\n").replace("127.0.40.", "127.0.41."));
    // The ALBs' health endpoints.
    let _a = echo("127.0.41.2:8080", "alb-a");
    let _b = echo("127.0.41.3:8080", "alb-b");
    let state = tempdir();
    let serve = |pod: &str, dns: &str, api_listen: &str| {
        Proc::start(
            "mzlb serve",
            Command::new(bin("mzlb"))
                .args(["serve", "--dns-listen", dns, "--api-listen", api_listen])
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .env("MZLB_STATE_DIR", state.path().join(pod))
                .env("POD_NAME", pod)
                .env("POD_NAMESPACE", "mzlb-system"),
        )
    };
    let one = serve("mzlb-0", "127.0.41.21:5353", "127.0.41.21:9901");
    let two = serve("mzlb-1", "127.0.41.22:5353", "127.0.41.22:9901");
    let answers = |server: &str| dig(server.parse().unwrap(), "www.k.test", "A", &[]).answers;
    for (server, proc) in [("127.0.41.21:5353", &one), ("127.0.41.22:5353", &two)] {
        poll(Duration::from_secs(20), || {
            (answers(server) == ["127.0.41.2", "127.0.41.3"]).then_some(())
        })
        .unwrap_or_else(|| panic!("{server} never answered both ALBs:\n{}", proc.output()));
    }

    // One replica (the Lease holder) writes ZoneALB status: state, conditions, last probe.
    poll(Duration::from_secs(15), || {
        let a = api.get("ZoneALB", None, "a")?;
        (a["status"]["state"] == "enabled").then_some(())
    })
    .unwrap_or_else(|| panic!("no ZoneALB status written:\n{}\n{}", one.output(), two.output()));
    let status = api.get("ZoneALB", None, "a").unwrap()["status"].clone();
    let conditions = status["conditions"].as_array().expect("conditions");
    let healthy = conditions
        .iter()
        .find(|c| c["type"] == "Healthy")
        .expect("Healthy condition");
    assert_eq!(healthy["status"], "True");
    let in_dns = conditions
        .iter()
        .find(|c| c["type"] == "InDNS")
        .expect("InDNS condition");
    assert_eq!(in_dns["status"], "True");
    assert_eq!(status["lastProbe"]["ok"], true);
    let status_writers: std::collections::BTreeSet<String> = api
        .requests()
        .iter()
        .filter(|r| r.resource == "zonealbs/status")
        .map(|r| r.path.clone())
        .collect();
    assert!(!status_writers.is_empty());
    let holder = api
        .get("Lease", Some("mzlb-system"), "mzlb-serve-status")
        .expect("lease")["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(holder == "mzlb-0" || holder == "mzlb-1", "{holder}");

    // The CLI over the kubeconfig: the same table, from the ZoneALB objects.
    let cli = |args: &[&str]| {
        let out = crate::harness::run(
            Command::new(bin("mzlb"))
                .args(args)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .env_remove("MZLB_STATE_DIR"),
        );
        assert!(
            out.status.success(),
            "mzlb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = cli(&["albs"]);
    assert!(
        table.contains("ALB ID") && table.contains("127.0.41.2") && table.contains("zone-1"),
        "{table}"
    );

    // alb-configure patches spec.enabled; both replicas' DNS follow within a second or two.
    let out = cli(&["alb-configure", "--alb-id", "b", "--disable"]);
    assert!(out.contains('b'), "{out}");
    let patch = api
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH" && r.path == "/apis/mzlb.io/v1alpha1/zonealbs/b")
        .expect("spec patch");
    assert_eq!(patch.body, Some(json!({"spec": {"enabled": false}})));
    assert_eq!(api.get("ZoneALB", None, "b").unwrap()["spec"]["enabled"], false);
    for server in ["127.0.41.21:5353", "127.0.41.22:5353"] {
        poll(Duration::from_secs(5), || {
            (answers(server) == ["127.0.41.2"]).then_some(())
        })
        .unwrap_or_else(|| panic!("{server} still answers the disabled ALB"));
    }
    poll(Duration::from_secs(10), || {
        let b = api.get("ZoneALB", None, "b")?;
        (b["status"]["state"] == "draining" || b["status"]["state"] == "disabled").then_some(())
    })
    .expect("status of the disabled ALB");
    assert!(
        cli(&["albs"])
            .lines()
            .any(|l| l.starts_with("b ") && l.contains("false"))
    );

    // The API server becomes unreachable: DNS keeps answering from the last known state.
    api.set_down(true);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(answers("127.0.41.21:5353"), ["127.0.41.2"]);
    assert_eq!(answers("127.0.41.22:5353"), ["127.0.41.2"]);
    api.set_down(false);
    cli(&["alb-configure", "--alb-id", "b", "--enable"]);
    for server in ["127.0.41.21:5353", "127.0.41.22:5353"] {
        poll(Duration::from_secs(10), || {
            (answers(server) == ["127.0.41.2", "127.0.41.3"]).then_some(())
        })
        .unwrap_or_else(|| panic!("{server} never answered b again"));
    }

    crate::rbac::assert_covered(&["mzlb", "operator"], &api.requests());
}
