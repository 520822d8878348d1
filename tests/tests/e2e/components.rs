//! The components run on their own, as on separate machines: `mzlb serve`, two `zone-alb`
//! binaries and two `mzlb echo` backends, from a user's own manifest directory.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Proc, bin, curl, dig, field, poll, serve_cmd, signal, tempdir, write};

const MANIFESTS: &str = r#"
apiVersion: mzlb.io/v1alpha1
kind: MultiZoneCluster
metadata: {name: shop}
spec: {subdomain: Shop.Example.Test, ttl: 3}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: a1}
spec: {zone: east, ip: 127.0.12.1, port: 8081}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: a2}
spec: {zone: west, ip: 127.0.12.2, port: 8081}
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: store}
spec:
  ports: [{name: web, port: 80, targetPort: 9090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: shop-abc, namespace: store, labels: {kubernetes.io/service-name: shop}}
addressType: IPv4
ports: [{name: web, port: 9090}]
endpoints:
- {addresses: [127.0.12.11]}
- {addresses: [127.0.12.12], conditions: {ready: true}}
- {addresses: [127.0.12.13], conditions: {ready: false}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: store}
spec:
  ingressClassName: mzlb
  rules:
  - host: shop.example.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: shop, port: {name: web}}}}
"#;

#[test]
fn serve_zone_albs_and_backends_as_separate_processes() {
    let dir = tempdir();
    let state = tempdir();
    write(dir.path(), "shop.yaml", MANIFESTS);
    let dns: SocketAddr = "127.0.12.53:5353".parse().unwrap();
    let _backends: Vec<Proc> = ["127.0.12.11", "127.0.12.12"]
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            Proc::start(
                "echo",
                Command::new(bin("mzlb")).args([
                    "echo",
                    "--listen",
                    &format!("{ip}:9090"),
                    "--name",
                    &format!("shop-{i}"),
                ]),
            )
        })
        .collect();
    let mut albs: Vec<Proc> = ["a1", "a2"]
        .iter()
        .map(|id| {
            Proc::start(
                id,
                Command::new(bin("zone-alb"))
                    .args(["--alb-id", id, "--manifests"])
                    .arg(dir.path()),
            )
        })
        .collect();
    let serve = Proc::start(
        "mzlb serve",
        &mut serve_cmd(&dns.to_string(), "127.0.12.53:0", dir.path(), state.path()),
    );

    // DNS: apex and wildcard names, case preserved-insensitive, over UDP and TCP.
    let both = ["127.0.12.1", "127.0.12.2"];
    poll(Duration::from_secs(20), || {
        (dig(dns, "shop.example.test", "A", &[]).answers == both).then_some(())
    })
    .unwrap_or_else(|| panic!("no answer; serve said:\n{}", serve.output()));
    assert_eq!(dig(dns, "cart.SHOP.example.test", "A", &[]).answers, both);
    assert_eq!(dig(dns, "shop.example.test", "A", &["+tcp"]).answers, both);
    let nodata = dig(dns, "shop.example.test", "AAAA", &[]);
    assert_eq!(
        (nodata.status.as_str(), nodata.answers.len()),
        ("NOERROR", 0),
        "{}",
        nodata.raw
    );
    assert!(
        nodata
            .raw
            .contains("IN\tSOA\tns.shop.example.test. hostmaster.shop.example.test."),
        "{}",
        nodata.raw
    );
    assert_eq!(dig(dns, "elsewhere.test", "A", &[]).status, "REFUSED");

    // HTTP: Prefix routing, round-robin over ready endpoints only, 404 off the rules.
    let url = |path: &str| format!("http://shop.example.test:8081{path}");
    let resolve = "shop.example.test:8081:127.0.12.1";
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (code, page) = curl(&["--resolve", resolve, &url("/api/items?id=1")]);
        assert_eq!(code, 200, "{page}");
        assert_eq!(field(&page, "Request"), Some("GET /api/items"), "{page}");
        assert_eq!(field(&page, "REMOTE_ADDR"), Some("127.0.12.1"), "{page}");
        served.insert(field(&page, "Hostname").unwrap().to_owned());
    }
    assert_eq!(
        served.into_iter().collect::<Vec<_>>(),
        ["shop-0", "shop-1"],
        "both ready endpoints, never the unready one"
    );
    assert_eq!(curl(&["--resolve", resolve, &url("/apix")]).0, 404);
    assert_eq!(
        curl(&["--resolve", "other.test:8081:127.0.12.1", "http://other.test:8081/api"]).0,
        404
    );
    let (code, page) = curl(&[
        "-H",
        "X-Forwarded-For: 10.9.9.9",
        "-H",
        "X-Real-IP: 10.9.9.9",
        "--resolve",
        resolve,
        &url("/api"),
    ]);
    assert_eq!(
        (code, field(&page, "X-Forwarded-For")),
        (200, Some("127.0.0.1")),
        "{page}"
    );
    // The ALB answers for itself only under the reserved host (any path); `/healthz` on any
    // other host is the tenants'.
    assert_eq!(
        curl(&[
            "-H",
            "Host: albhealth.shop.example.test",
            "http://127.0.12.2:8081/healthz"
        ]),
        (200, "healthy\n".to_owned())
    );
    assert_eq!(
        curl(&["-H", "Host: nobody.test", "http://127.0.12.2:8081/healthz"]).0,
        404,
        "not shadowed by the ALB"
    );

    // The control API: a token is required, errors are clear and nothing crashes it.
    let api: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("api.json")).unwrap()).unwrap();
    let (url, token) = (api["url"].as_str().unwrap(), api["token"].as_str().unwrap());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.path().join("api.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the token file is private");
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(curl(&[&format!("{url}/v1/albs")]).0, 401, "no token");
    assert_eq!(
        curl(&["-H", "Authorization: Bearer wrong", &format!("{url}/v1/albs")]).0,
        401
    );
    let (code, body) = curl(&[
        "-H",
        &bearer,
        "-X",
        "PATCH",
        "-d",
        "{\"enabled\": false}",
        &format!("{url}/v1/albs/zz"),
    ]);
    assert_eq!((code, body.contains("unknown ALB `zz`")), (404, true), "{body}");
    for bad in ["{\"enabled\": \"no\"}", "not json", "{\"enabled\": true, \"x\": 1}", ""] {
        let (code, body) = curl(&["-H", &bearer, "-X", "PATCH", "-d", bad, &format!("{url}/v1/albs/a1")]);
        assert_eq!(code, 400, "{bad:?} → {body}");
    }
    let big = "x".repeat(100_000);
    assert_eq!(
        curl(&[
            "-H",
            &bearer,
            "-X",
            "PATCH",
            "--data-binary",
            &big,
            &format!("{url}/v1/albs/a1")
        ])
        .0,
        400
    );
    let (code, body) = curl(&["-H", &bearer, &format!("{url}/v1/albs")]);
    assert_eq!(code, 200, "still serving: {body}");

    // A zone dies: its IP leaves the answer; the other keeps it.
    signal(albs[0].pid(), "KILL");
    poll(Duration::from_secs(5), || {
        (dig(dns, "shop.example.test", "A", &[]).answers == ["127.0.12.2"]).then_some(())
    })
    .expect("killed ALB left DNS");
    assert!(albs[1].terminate(), "zone-alb stops cleanly on SIGTERM");
    // Every ALB down: fail open rather than answer nothing.
    poll(Duration::from_secs(5), || {
        (dig(dns, "shop.example.test", "A", &[]).answers == both).then_some(())
    })
    .expect("fail-open answers every enabled ALB");
}

#[test]
fn a_disabled_alb_stays_disabled_across_restarts() {
    let dir = tempdir();
    let state = tempdir();
    write(
        dir.path(),
        "one.yaml",
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: one}\nspec: {subdomain: one.test}\n---\n\
         apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: solo}\nspec: {zone: z, ip: 127.0.17.1, port: 8080}\n",
    );
    let dns: SocketAddr = "127.0.17.53:5353".parse().unwrap();
    let _alb = Proc::start(
        "alb stand-in",
        Command::new(bin("mzlb")).args(["echo", "--listen", "127.0.17.1:8080", "--name", "solo"]),
    );
    let serve = || {
        Proc::start(
            "mzlb serve",
            &mut serve_cmd(&dns.to_string(), "127.0.17.53:0", dir.path(), state.path()),
        )
    };
    let mut first = serve();
    poll(Duration::from_secs(20), || {
        (dig(dns, "one.test", "A", &[]).answers == ["127.0.17.1"]).then_some(())
    })
    .unwrap_or_else(|| panic!("not answered; serve said:\n{}", first.output()));
    let out = crate::harness::run(
        Command::new(bin("mzlb"))
            .args(["alb-configure", "--alb-id", "solo", "--disable"])
            .env("MZLB_STATE_DIR", state.path()),
    );
    assert!(out.status.success());
    assert!(first.terminate(), "serve stops on SIGTERM");
    let second = serve();
    // Answered again only if the choice was lost: wait for the new server to answer at all.
    poll(Duration::from_secs(20), || {
        (dig(dns, "one.test", "SOA", &[]).status == "NOERROR").then_some(())
    })
    .unwrap_or_else(|| panic!("second serve not answering:\n{}", second.output()));
    std::thread::sleep(Duration::from_millis(600)); // several probe rounds
    assert!(
        dig(dns, "one.test", "A", &[]).answers.is_empty(),
        "still disabled after a restart"
    );
    let out = crate::harness::run(
        Command::new(bin("mzlb"))
            .args(["albs", "-o", "json"])
            .env("MZLB_STATE_DIR", state.path()),
    );
    let albs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(albs[0]["enabled"], false);
    assert_eq!(albs[0]["state"], "disabled", "a restart does not re-drain");
}
