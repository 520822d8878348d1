//! `enable-cors` and `cors-*` through a running zone-alb, with real curl: the preflight is
//! answered 204 by the ALB with ingress-nginx's fields (before the allow-list), other responses
//! get the fields in place of the backend's, origins are matched whole (wildcards one label
//! deep), and a request from an origin not allowed gets nothing and reaches the backend.

use crate::custom_errors::{Fake, fetch, ingress_to};
use crate::harness::{single_alb_site, tempdir, write, zone_alb};

const ALB: &str = "127.0.65.1:8080";

const PREFLIGHT: [&str; 6] = [
    "-X",
    "OPTIONS",
    "-H",
    "Access-Control-Request-Method: PUT",
    "-H",
    "Origin: https://x.test",
];

#[test]
fn cors_preflight_and_fields_as_ingress_nginx() {
    let dir = tempdir();
    let docs = [
        single_alb_site("127.0.65.1", None, "127.0.65.11"),
        vec![
            ingress_to("any", "any.test", "app", &[("enable-cors", "true")]),
            ingress_to(
                "list",
                "list.test",
                "app",
                &[
                    ("enable-cors", "true"),
                    ("cors-allow-origin", "https://a.test, https://*.b.test"),
                    ("cors-allow-credentials", "false"),
                    ("cors-allow-methods", "GET, POST"),
                    ("cors-allow-headers", "X-Custom"),
                    ("cors-expose-headers", "X-Total"),
                    ("cors-max-age", "60"),
                ],
            ),
            ingress_to(
                "guarded",
                "guarded.test",
                "app",
                &[("enable-cors", "true"), ("whitelist-source-range", "10.0.0.0/8")],
            ),
            ingress_to("off", "off.test", "app", &[("cors-allow-origin", "https://x.test")]),
        ],
    ]
    .concat();
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let app = Fake::start("127.0.65.11:9080", |r| {
        let mut fields = vec![("Access-Control-Allow-Origin".into(), "https://backend.test".into())];
        if r.method == "OPTIONS" {
            fields.push(("X-Backend-Preflight".into(), "1".into()));
        }
        (200, fields, "app".into())
    });
    let _alb = zone_alb(dir.path(), &[], &format!("http://{ALB}/healthz"));
    let field = |head: &std::collections::BTreeMap<String, String>, name: &str| head.get(name).cloned();

    // Defaults: `*`, credentials, ingress-nginx's lists and max-age; answered by the ALB, with
    // neither Content-Type nor Content-Length (nginx drops both from a 204).
    let before = app.requests().len();
    let (code, head, body) = fetch(ALB, "any.test", "/api", &PREFLIGHT);
    assert_eq!((code, body.as_str()), (204, ""));
    assert_eq!(field(&head, "access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(
        field(&head, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(
        field(&head, "access-control-allow-methods").as_deref(),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(
        field(&head, "access-control-allow-headers").as_deref(),
        Some(
            "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
        )
    );
    assert_eq!(field(&head, "access-control-max-age").as_deref(), Some("1728000"));
    assert_eq!(field(&head, "access-control-expose-headers"), None);
    assert_eq!(field(&head, "content-type"), None, "{head:?}");
    assert_eq!(field(&head, "content-length"), None, "{head:?}");
    assert_eq!(app.requests().len(), before, "the backend never sees a preflight");
    // Without an Origin too: `*` makes every request a CORS one.
    assert_eq!(fetch(ALB, "any.test", "/", &["-X", "OPTIONS"]).0, 204);

    // Other requests: the backend's answer with the fields, its own replaced.
    let (code, head, body) = fetch(ALB, "any.test", "/", &["-H", "Origin: https://x.test"]);
    assert_eq!((code, body.as_str()), (200, "app"));
    assert_eq!(
        field(&head, "access-control-allow-origin").as_deref(),
        Some("*"),
        "{head:?}"
    );
    assert_eq!(field(&head, "access-control-max-age").as_deref(), Some("1728000"));

    // A list: the allowed origin is echoed; the rest of the annotations shape the fields.
    let (code, head, _) = fetch(
        ALB,
        "list.test",
        "/",
        &["-X", "OPTIONS", "-H", "Origin: https://a.test"],
    );
    assert_eq!(code, 204);
    assert_eq!(
        field(&head, "access-control-allow-origin").as_deref(),
        Some("https://a.test")
    );
    assert_eq!(field(&head, "access-control-allow-credentials"), None);
    assert_eq!(
        field(&head, "access-control-allow-methods").as_deref(),
        Some("GET, POST")
    );
    assert_eq!(
        field(&head, "access-control-allow-headers").as_deref(),
        Some("X-Custom")
    );
    assert_eq!(
        field(&head, "access-control-expose-headers").as_deref(),
        Some("X-Total")
    );
    assert_eq!(field(&head, "access-control-max-age").as_deref(), Some("60"));
    let (_, head, _) = fetch(ALB, "list.test", "/", &["-H", "Origin: https://Sub-1.B.test"]);
    assert_eq!(
        field(&head, "access-control-allow-origin").as_deref(),
        Some("https://Sub-1.B.test")
    );
    // Origins not allowed: no field of ours, the backend's stays, the preflight is the backend's.
    for origin in [
        "https://evil.com.b.test",
        "https://a.test.evil",
        "https://b.test",
        "http://a.test",
        "null",
        "https://a.test\tx",
    ] {
        let origin = format!("Origin: {origin}");
        let (code, head, _) = fetch(ALB, "list.test", "/", &["-X", "OPTIONS", "-H", &origin]);
        assert_eq!(code, 200, "{origin}");
        assert_eq!(field(&head, "x-backend-preflight").as_deref(), Some("1"), "{origin}");
        assert_eq!(
            field(&head, "access-control-allow-origin").as_deref(),
            Some("https://backend.test"),
            "{origin}"
        );
        assert_eq!(field(&head, "access-control-allow-methods"), None, "{origin}");
    }

    // The preflight is answered before the allow-list (nginx's rewrite phase); the refusal
    // that follows for the request itself carries the fields (more_set_headers).
    assert_eq!(fetch(ALB, "guarded.test", "/", &PREFLIGHT).0, 204);
    let (code, head, _) = fetch(ALB, "guarded.test", "/", &["-H", "Origin: https://x.test"]);
    assert_eq!(code, 403);
    assert_eq!(field(&head, "access-control-allow-origin").as_deref(), Some("*"));

    // cors-* without enable-cors: nothing.
    let (code, head, _) = fetch(ALB, "off.test", "/", &PREFLIGHT);
    assert_eq!(code, 200);
    assert_eq!(field(&head, "x-backend-preflight").as_deref(), Some("1"));
}
