//! `app-root`, `permanent-redirect(-code)` and `temporal-redirect(-code)` through a running
//! zone-alb, with real curl: exact status and `Location`, ingress-nginx's precedence (temporal
//! over permanent, app-root first, both before the HTTPS redirect), and a refused value that
//! leaves the Ingress proxied.

use crate::custom_errors::{Fake, fetch, ingress_to};
use crate::harness::{single_alb_site, tempdir, write, zone_alb};

const ALB: &str = "127.0.67.1:8080";

#[test]
fn redirects_as_ingress_nginx() {
    let dir = tempdir();
    let docs = [
        single_alb_site("127.0.67.1", Some(8443), "127.0.67.11"),
        vec![
            ingress_to("root", "root.test", "app", &[("app-root", "/app")]),
            ingress_to(
                "perm",
                "perm.test",
                "app",
                &[("permanent-redirect", "https://new.test/landing?from=old")],
            ),
            ingress_to(
                "perm308",
                "perm308.test",
                "app",
                &[
                    ("permanent-redirect", "https://new.test"),
                    ("permanent-redirect-code", "308"),
                ],
            ),
            ingress_to(
                "badcode",
                "badcode.test",
                "app",
                &[
                    ("permanent-redirect", "https://new.test"),
                    ("permanent-redirect-code", "200"),
                ],
            ),
            ingress_to(
                "both",
                "both.test",
                "app",
                &[
                    ("permanent-redirect", "https://perm.example"),
                    ("temporal-redirect", "https://temp.example/x"),
                ],
            ),
            ingress_to(
                "temp307",
                "temp307.test",
                "app",
                &[
                    ("temporal-redirect", "https://temp.example"),
                    ("temporal-redirect-code", "307"),
                ],
            ),
            ingress_to(
                "forced",
                "forced.test",
                "app",
                &[
                    ("force-ssl-redirect", "true"),
                    ("permanent-redirect", "https://new.test"),
                    ("app-root", "/app"),
                ],
            ),
            ingress_to(
                "bad",
                "bad.test",
                "app",
                &[("permanent-redirect", "https://new.test$request_uri")],
            ),
        ],
    ]
    .concat();
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let app = Fake::start("127.0.67.11:9080", |r| (200, vec![], format!("app {}", r.target)));
    let _alb = zone_alb(dir.path(), &[], &format!("http://{ALB}/healthz"));
    let location = |host: &str, path: &str| {
        let (code, head, _) = fetch(ALB, host, path, &[]);
        (code, head.get("location").cloned().unwrap_or_default())
    };

    // app-root: `/` only (its query dropped), to the scheme and Host the client used.
    assert_eq!(location("root.test", "/"), (302, "http://root.test:8080/app".into()));
    assert_eq!(
        location("root.test", "/?a=1"),
        (302, "http://root.test:8080/app".into())
    );
    assert_eq!(fetch(ALB, "root.test", "/app", &[]).2, "app /app");
    assert_eq!(fetch(ALB, "root.test", "/other", &[]).2, "app /other");

    // The URL exactly as written, whatever was asked: nothing appended.
    let before = app.requests().len();
    for path in ["/", "/deep/path?q=1"] {
        assert_eq!(
            location("perm.test", path),
            (301, "https://new.test/landing?from=old".into())
        );
    }
    assert_eq!(app.requests().len(), before, "a redirect never reaches the backend");
    assert_eq!(location("perm308.test", "/x"), (308, "https://new.test".into()));
    assert_eq!(location("badcode.test", "/x"), (301, "https://new.test".into()));
    // temporal-redirect wins over permanent-redirect.
    assert_eq!(location("both.test", "/"), (302, "https://temp.example/x".into()));
    assert_eq!(location("temp307.test", "/"), (307, "https://temp.example".into()));
    // Before the HTTPS redirect (nginx's rewrite phase runs before ingress-nginx's Lua one),
    // app-root first of all.
    assert_eq!(location("forced.test", "/x"), (301, "https://new.test".into()));
    assert_eq!(
        location("forced.test", "/"),
        (302, "http://forced.test:8080/app".into())
    );
    // A value refused (nginx variables are not expanded): no redirect, proxied.
    let (code, head, body) = fetch(ALB, "bad.test", "/y", &[]);
    assert_eq!((code, body.as_str(), head.get("location")), (200, "app /y", None));
}
