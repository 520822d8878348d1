//! `auth-snippet` on the auth subrequest, and the annotations that name a ConfigMap
//! (`auth-proxy-set-headers`, `custom-headers` with `global-allowed-response-headers`),
//! through a running zone-alb in standalone mode: what the scripted auth service received,
//! what the client got, and what fails closed (503, with a finding naming the ConfigMap).

use crate::harness::head_fields as head;
use std::time::Duration;

use crate::auth_fakes::{Fake, backend, fields, scripted};
use crate::harness::{curl, poll, service, tempdir, write, zone_alb};
use crate::ingress::ingress;

const ALB_IP: &str = "127.0.90.1";
const BACKEND_IP: &str = "127.0.90.11";
const BACKEND: &str = "127.0.90.11:9080";
const SCRIPTED: &str = "127.0.90.21:9091";

fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> String {
    let data: Vec<String> = data.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata: {{{}}}\n",
        data.join(", ")
    )
}

fn manifests() -> String {
    let url = format!("http://{SCRIPTED}/check");
    let mut docs = vec![
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec:\n  subdomain: c.test\n  \
         ingressNginx:\n    allow-snippet-annotations: 'true'\n    \
         global-allowed-response-headers: 'X-Frame-Options, Content-Security-Policy'\n"
            .to_owned(),
        format!(
            "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: a}}\nspec: {{zone: z, ip: {ALB_IP}, port: 8080}}\n"
        ),
        service("app", &[BACKEND_IP], 9080),
        config_map(
            "default",
            "auth-headers",
            &[("X-Tenant", "t1"), ("X-Asked-For", "$host$request_uri")],
        ),
        config_map("default", "bad-auth-headers", &[("X Tenant", "t1")]),
        config_map(
            "default",
            "resp-headers",
            &[
                ("X-Frame-Options", "DENY"),
                ("Content-Security-Policy", "default-src 'self'"),
            ],
        ),
        config_map(
            "default",
            "unlisted",
            &[("X-Frame-Options", "DENY"), ("X-Powered-By", "me")],
        ),
        config_map("other", "resp-headers", &[("X-Frame-Options", "DENY")]),
    ];
    let snippet = "proxy_set_header X-Api-Key \"k1\"; \
                   proxy_set_header X-Original-URL \"https://snippet.test$request_uri\"; \
                   more_set_input_headers \"X-Forwarded-User: operator\";";
    let rows: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("snip", vec![("auth-url", &url), ("auth-snippet", snippet)]),
        (
            "snipbad",
            vec![("auth-url", &url), ("auth-snippet", "proxy_pass http://evil.test;")],
        ),
        (
            "psh",
            vec![("auth-url", &url), ("auth-proxy-set-headers", "default/auth-headers")],
        ),
        (
            "pshmissing",
            vec![("auth-url", &url), ("auth-proxy-set-headers", "default/missing")],
        ),
        (
            "pshbad",
            vec![("auth-url", &url), ("auth-proxy-set-headers", "bad-auth-headers")],
        ),
        ("ch", vec![("custom-headers", "default/resp-headers")]),
        ("chunlisted", vec![("custom-headers", "default/unlisted")]),
        ("chmissing", vec![("custom-headers", "default/nothing-here")]),
        ("chcross", vec![("custom-headers", "other/resp-headers")]),
    ];
    for (name, annotations) in &rows {
        docs.push(ingress(name, &format!("{name}.test"), annotations, "/", "Prefix"));
    }
    docs.join("---\n")
}

fn get(host: &str, target: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:8080{target}");
    let resolve = format!("{host}:8080:{ALB_IP}");
    let mut args = vec!["-D", "-", "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[test]
fn auth_snippet_and_configmap_annotations_through_a_running_zone_alb() {
    let dir = tempdir();
    write(dir.path(), "site.yaml", &manifests());
    let backend: Fake = backend(BACKEND);
    let auth: Fake = scripted(SCRIPTED);
    let alb = zone_alb(dir.path(), &[], &format!("http://{ALB_IP}:8080/healthz"));

    // auth-snippet: its proxy_set_headers reach the auth service after ingress-nginx's own
    // (a second X-Original-URL, as nginx sends both); its input header is passed.
    let (code, out) = get("snip.test", "/p?q=1", &["-H", "X-Forwarded-User: mallory"]);
    assert_eq!(code, 200, "{out}");
    let sub = auth.last();
    assert_eq!(sub.header("x-api-key"), Some("k1"), "{sub:?}");
    assert_eq!(
        sub.all("x-original-url"),
        ["http://snip.test:8080/p?q=1", "https://snippet.test/p?q=1"],
        "{sub:?}"
    );
    assert_eq!(sub.all("x-forwarded-user"), ["operator"], "{sub:?}");
    assert_eq!(fields(&out, "REQUEST"), ["GET /p?q=1"], "the request went on");
    assert!(
        fields(&out, "x-api-key").is_empty(),
        "the snippet is the subrequest's only: {out}"
    );

    // auth-proxy-set-headers: the ConfigMap's fields, variables of the original request.
    let (code, out) = get("psh.test", "/x", &["-H", "X-Tenant: forged"]);
    assert_eq!(code, 200, "{out}");
    let sub = auth.last();
    assert_eq!(sub.all("x-tenant"), ["t1"], "replaces the client's: {sub:?}");
    assert_eq!(sub.header("x-asked-for"), Some("psh.test/x"), "{sub:?}");

    // custom-headers: every response gets the ConfigMap's fields, replacing the backend's.
    let (code, out) = get("ch.test", "/", &[]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(head(&out, "x-frame-options"), ["DENY"], "{out}");
    assert_eq!(head(&out, "content-security-policy"), ["default-src 'self'"], "{out}");

    // What cannot be used fails closed, before anything reaches the auth service or backend.
    let (auth_before, backend_before) = (auth.count(), backend.count());
    for host in [
        "snipbad.test",
        "pshmissing.test",
        "pshbad.test",
        "chunlisted.test",
        "chmissing.test",
        "chcross.test",
    ] {
        let (code, out) = get(host, "/", &[]);
        assert_eq!(code, 503, "{host}: {out}");
        assert!(head(&out, "x-frame-options").is_empty(), "{host}: {out}");
    }
    assert_eq!((auth.count(), backend.count()), (auth_before, backend_before));
    // Each refusal is reported, naming the ConfigMap (and the key or header at fault).
    let logged = poll(Duration::from_secs(5), || {
        let log = alb.output();
        [
            "ConfigMap default/missing not found",
            "bad-auth-headers",
            "\"X Tenant\"",
            "header X-Powered-By is not allowed",
            "ConfigMap default/nothing-here not found",
            "other/resp-headers",
            "proxy_pass",
        ]
        .iter()
        .all(|needle| log.contains(needle))
        .then_some(())
    });
    assert!(logged.is_some(), "findings not logged:\n{}", alb.output());
}
