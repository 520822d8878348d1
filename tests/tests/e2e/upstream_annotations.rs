//! How requests reach the backend, through a running zone-alb with real curl:
//! `upstream-hash-by`, `service-upstream`, `server-alias`, `from-to-www-redirect`,
//! `upstream-vhost`, `x-forwarded-prefix`, `proxy-next-upstream-tries` and the cookie-affinity
//! extras. Loopback 127.0.71.x (ALB .1, backends .11–.13, cluster IP .20, endpoint .21; nothing
//! listens on .31–.34).

use std::collections::BTreeSet;

use crate::canary::{Fake, cluster, get_via, ingress, saw, who};
use crate::harness::{service, tempdir, write, zone_alb};

const ALB_IP: &str = "127.0.71.1";

fn get(host: &str, path: &str, extra: &[&str]) -> (u16, String) {
    get_via(ALB_IP, host, path, extra)
}

#[test]
fn upstream_routing_annotations_through_a_running_zone_alb() {
    for (ip, name) in [
        ("127.0.71.11", "b11"),
        ("127.0.71.12", "b12"),
        ("127.0.71.13", "b13"),
        ("127.0.71.20", "cluster-ip"),
        ("127.0.71.21", "endpoint"),
    ] {
        Fake::start(&format!("{ip}:9080"), name);
    }
    let dir = tempdir();
    let docs = [
        cluster(ALB_IP),
        service("pool", &["127.0.71.11", "127.0.71.12", "127.0.71.13"], 9080),
        service("one", &["127.0.71.11"], 9080),
        // A Service with a cluster IP whose one endpoint is elsewhere.
        "apiVersion: v1\nkind: Service\nmetadata: {name: su}\nspec: {clusterIP: 127.0.71.20, ports: [{port: 9080}]}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: su-1, labels: {kubernetes.io/service-name: su}}\n\
         addressType: IPv4\nports: [{port: 9080}]\nendpoints: [{addresses: [127.0.71.21]}]\n"
            .to_owned(),
        // Two dead endpoints before a live one, twice (endpoint health is kept by address).
        service("flaky1", &["127.0.71.31", "127.0.71.32", "127.0.71.11"], 9080),
        service("flaky3", &["127.0.71.33", "127.0.71.34", "127.0.71.11"], 9080),
        ingress("hash", "hash.test", "pool", &[("upstream-hash-by", "$arg_user")]),
        ingress("su", "su.test", "su", &[("service-upstream", "true")]).replace("number: 80}", "number: 9080}"),
        ingress("plain-su", "plain-su.test", "su", &[]).replace("number: 80}", "number: 9080}"),
        ingress("alias", "alias.test", "one", &[("server-alias", "other.test, taken.test")]),
        ingress("taken", "taken.test", "pool", &[]),
        ingress("www", "site.test", "one", &[("from-to-www-redirect", "true")]),
        ingress("www2", "www.both.test", "one", &[("from-to-www-redirect", "true")]),
        ingress("bare2", "both.test", "pool", &[]),
        ingress(
            "vhost",
            "vhost.test",
            "one",
            &[("upstream-vhost", "internal.svc"), ("x-forwarded-prefix", "/api")],
        ),
        ingress("tries1", "tries1.test", "flaky1", &[("proxy-next-upstream-tries", "1")]),
        ingress("tries3", "tries3.test", "flaky3", &[]),
        ingress(
            "sticky",
            "sticky.test",
            "pool",
            &[
                ("affinity", "cookie"),
                ("session-cookie-name", "route"),
                ("session-cookie-expires", "3600"),
                ("session-cookie-secure", "true"),
                ("session-cookie-domain", "sticky.test"),
            ],
        ),
    ];
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let alb = zone_alb(dir.path(), &[], &format!("http://{ALB_IP}:8080/healthz"));

    // upstream-hash-by $arg_user: one user, one backend; many users spread over the pool.
    for user in ["alice", "bob", "carol"] {
        let path = format!("/?user={user}");
        let seen: BTreeSet<String> = (0..6)
            .map(|_| who(&get("hash.test", &path, &[]).1).to_owned())
            .collect();
        assert_eq!(seen.len(), 1, "{user}: {seen:?}");
    }
    let spread: BTreeSet<String> = (0..30)
        .map(|u| who(&get("hash.test", &format!("/x?user=u{u}"), &[]).1).to_owned())
        .collect();
    assert!(spread.len() >= 2, "{spread:?}");

    // service-upstream: the cluster IP answers, not the endpoint; without it, the endpoint.
    let (code, page) = get("su.test", "/", &[]);
    assert_eq!((code, who(&page)), (200, "cluster-ip"), "{page}");
    assert_eq!(who(&get("plain-su.test", "/", &[]).1), "endpoint");

    // server-alias: the alias is served by the Ingress's rules; a host another Ingress's rule
    // names stays that Ingress's.
    let (code, page) = get("other.test", "/", &[]);
    assert_eq!((code, who(&page)), (200, "b11"), "{page}");
    assert_eq!(saw(&page, "host"), Some("other.test:8080"), "{page}");
    let taken: BTreeSet<String> = (0..6).map(|_| who(&get("taken.test", "/", &[]).1).to_owned()).collect();
    assert_eq!(taken.len(), 3, "taken.test keeps its own pool: {taken:?}");
    assert!(alb.output().contains("server-alias taken.test"), "{}", alb.output());

    // from-to-www-redirect: 308 to the defined host, the URI kept but for a trailing slash.
    let redirect = |host: &str, path: &str| {
        let (code, head) = get(host, path, &["-D", "-", "-o", "/dev/null"]);
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
            .map(|l| l.trim().to_owned());
        (code, location)
    };
    assert_eq!(
        redirect("www.site.test", "/a/b?q=1"),
        (308, Some("http://site.test:8080/a/b?q=1".to_owned()))
    );
    assert_eq!(
        redirect("www.site.test", "/"),
        (308, Some("http://site.test:8080".to_owned()))
    );
    assert_eq!(
        redirect("www.site.test", "/dir/"),
        (308, Some("http://site.test:8080/dir".to_owned()))
    );
    assert_eq!(get("site.test", "/", &[]).0, 200);
    // Both hosts defined: no redirect either way.
    assert_eq!(redirect("both.test", "/").0, 200);
    assert_eq!(redirect("www.both.test", "/").0, 200);

    // upstream-vhost and x-forwarded-prefix: what the backend sees.
    let (code, page) = get("vhost.test", "/p", &["-H", "X-Forwarded-Prefix: /evil"]);
    assert_eq!(code, 200, "{page}");
    assert_eq!(saw(&page, "host"), Some("internal.svc"), "{page}");
    assert_eq!(saw(&page, "x-forwarded-host"), Some("vhost.test:8080"), "{page}");
    assert_eq!(saw(&page, "x-forwarded-prefix"), Some("/api"), "{page}");

    // proxy-next-upstream-tries 1: a dead endpoint's request fails (502); the default (3)
    // tries the next one.
    let codes1: Vec<u16> = (0..6).map(|_| get("tries1.test", "/", &[]).0).collect();
    assert!(codes1.contains(&502), "{codes1:?}");
    let codes3: Vec<u16> = (0..6).map(|_| get("tries3.test", "/", &[]).0).collect();
    assert!(codes3.iter().all(|&c| c == 200), "{codes3:?}");

    // Cookie-affinity extras: Expires as nginx writes it, Domain, Secure even over HTTP.
    let (code, head) = get("sticky.test", "/", &["-D", "-", "-o", "/dev/null"]);
    assert_eq!(code, 200, "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: route="))
        .unwrap_or_else(|| panic!("{head}"));
    let expires = cookie
        .split("; ")
        .find_map(|a| a.strip_prefix("Expires="))
        .unwrap_or_else(|| panic!("{cookie}"));
    // `Thu, 18-Nov-10 11:27:35 GMT`
    let bytes = expires.as_bytes();
    assert!(
        expires.len() == 27 && bytes[3] == b',' && bytes[7] == b'-' && bytes[11] == b'-' && expires.ends_with(" GMT"),
        "{cookie}"
    );
    assert!(
        cookie.contains("; Domain=sticky.test; Path=/; Secure; HttpOnly"),
        "{cookie}"
    );
}
