//! ingress-nginx's ConfigMap settings in `MultiZoneCluster.spec.ingressNginx`, through a
//! running zone-alb: the body cap every Ingress inherits, the rate-limit status, forwarded
//! headers believed from the configured peers only, and a reload that changes them.

use std::time::Duration;

use crate::harness::{curl, echo, poll, service, tempdir, write, zone_alb};
use crate::ingress::ingress;

const ALB_IP: &str = "127.0.51.1";

fn manifests(settings: &str) -> String {
    [
        format!(
            "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {{name: c}}\nspec:\n  subdomain: c.test\n  ingressNginx:\n{settings}"
        ),
        format!("apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: a}}\nspec: {{zone: z, ip: {ALB_IP}, port: 8080}}\n"),
        service("app", &["127.0.51.11"], 9080),
        ingress("plain", "plain.test", &[], "/", "Prefix"),
        ingress("limited", "limit.test", &[("limit-rps", "1"), ("limit-burst-multiplier", "1")], "/", "Prefix"),
        ingress("allow", "allow.test", &[("whitelist-source-range", "192.0.2.7/32")], "/", "Prefix"),
    ]
    .join("---\n")
}

fn get(host: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:8080/");
    let resolve = format!("{host}:8080:{ALB_IP}");
    let mut args = vec!["--resolve", &resolve, "--interface", "127.0.51.100"];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[test]
fn cluster_wide_ingress_nginx_settings_change_every_ingress() {
    let _app = echo("127.0.51.11:9080", "app");
    let dir = tempdir();
    let settings = "    proxy-body-size: '10'\n    limit-req-status-code: '429'\n    use-forwarded-headers: 'true'\n    proxy-real-ip-cidr: '127.0.51.100/32'\n    worker-processes: '4'\n";
    write(dir.path(), "site.yaml", &manifests(settings));
    let alb = zone_alb(dir.path(), &[], &format!("http://{ALB_IP}:8080/healthz"));

    // The body cap every Ingress without its own proxy-body-size inherits.
    let (status, _) = get("plain.test", &["-d", "0123456789"]);
    assert_eq!(status, 200);
    let (status, _) = get("plain.test", &["-d", "0123456789a"]);
    assert_eq!(status, 413, "11 bytes over a 10-byte cluster cap");

    // limit-req-status-code: refused requests get 429 instead of ingress-nginx's default 503.
    let statuses: Vec<u16> = (0..6).map(|_| get("limit.test", &[]).0).collect();
    assert!(statuses.contains(&429) && !statuses.contains(&503), "{statuses:?}");

    // use-forwarded-headers with proxy-real-ip-cidr: our peer is believed, so the allow-list
    // judges the address it forwards for.
    assert_eq!(get("allow.test", &[]).0, 403);
    assert_eq!(get("allow.test", &["-H", "X-Forwarded-For: 192.0.2.7"]).0, 200);

    // The unknown key is named in the log, and nothing else was refused.
    assert!(
        alb.output().contains("spec.ingressNginx.worker-processes"),
        "{}",
        alb.output()
    );

    // A reload with forwarded headers off: the same request is judged by its real peer.
    write(
        dir.path(),
        "site.yaml",
        &manifests("    use-forwarded-headers: 'false'\n"),
    );
    poll(Duration::from_secs(10), || {
        (get("allow.test", &["-H", "X-Forwarded-For: 192.0.2.7"]).0 == 403).then_some(())
    })
    .expect("forwarded headers no longer believed after the reload");
    // ...and the body cap is ingress-nginx's default again (1m).
    assert_eq!(get("plain.test", &["-d", "0123456789a"]).0, 200);
}

/// `denylist-source-range` (and its old name): the listed clients get 403; the deny-list is
/// checked before the allow-list.
#[test]
fn deny_lists_refuse_the_listed_clients() {
    let _app = echo("127.0.51.21:9080", "app");
    let dir = tempdir();
    let docs = [
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\n".to_owned(),
        "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: a}\nspec: {zone: z, ip: 127.0.51.2, port: 8080}\n".to_owned(),
        service("app", &["127.0.51.21"], 9080),
        ingress("deny", "deny.test", &[("denylist-source-range", "127.0.51.102/32")], "/", "Prefix"),
        ingress("old", "old.test", &[("blacklist-source-range", "127.0.51.102")], "/", "Prefix"),
        // Denied wins over allowed.
        ingress("both", "both.test", &[("denylist-source-range", "127.0.51.102"), ("whitelist-source-range", "127.0.51.0/24")], "/", "Prefix"),
        ingress("bad", "bad.test", &[("denylist-source-range", "127.0.51.0/99")], "/", "Prefix"),
    ];
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let _alb = zone_alb(dir.path(), &[], "http://127.0.51.2:8080/healthz");
    let from = |source: &str, host: &str, extra: &[&str]| {
        let url = format!("http://{host}:8080/");
        let resolve = format!("{host}:8080:127.0.51.2");
        let mut args = vec!["--resolve", &resolve, "--interface", source];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args).0
    };
    for host in ["deny.test", "old.test", "both.test"] {
        assert_eq!(from("127.0.51.102", host, &[]), 403, "{host}: denied client");
        assert_eq!(from("127.0.51.101", host, &[]), 200, "{host}: other client");
        // With a chunked body, refused the same.
        assert_eq!(
            from("127.0.51.102", host, &["-H", "Transfer-Encoding: chunked", "-d", "x"]),
            403,
            "{host}: denied client, chunked body"
        );
    }
    // An unusable deny-list fails closed.
    assert_eq!(from("127.0.51.101", "bad.test", &[]), 503);
}
