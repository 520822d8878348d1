//! Authentication annotations through a running zone-alb, with real curl: `auth-url` and its
//! family against fakes of oauth2-proxy, Authelia and a scripted auth service (what the auth
//! service and the backend received, what the client got), and `auth-type: basic` with
//! htpasswd and auth-map Secrets. Everything that cannot be honoured answers 503.

use crate::auth_fakes::{Fake, authelia, backend, fields, oauth2_proxy, scripted};
use crate::harness::head_fields as head;
use crate::harness::{curl, tempdir, write, zone_alb};
use crate::ingress::ingress;

const ALB_IP: &str = "127.0.60.1";
const BACKEND: &str = "127.0.60.11:9080";
const SCRIPTED: &str = "127.0.60.21:9091";
const AUTHELIA: &str = "127.0.60.22:9091";
const OAUTH2: &str = "127.0.60.23:4180";
/// Nothing listens here.
const UNREACHABLE: &str = "127.0.60.29:9";

/// Written by `htpasswd -nbB -C 5`, `-nbm`, `-nbs` and `-nbd`, all with password `secret`.
const HTPASSWD: &str = "alice:$2y$05$y52gy6dujZU4Zqd./8HifugvERN/hFB4tqTgiDjvXyvaTC9bmkPyq\n\
bob:$apr1$nh9mjJuM$N.RGhfAUgZyLaoiRbcbXW0\n\
carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n\
dave:el.Y9MjL6AAN.\n\
broken-line-without-hash\n";

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> String {
    let data: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("{k}: {}", b64(v.as_bytes())))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: Opaque\ndata: {{{}}}\n",
        data.join(", ")
    )
}

fn manifests() -> String {
    let scripted_url = format!("http://{SCRIPTED}/check?from=alb");
    let mut docs = crate::harness::single_alb_site(ALB_IP, None, "127.0.60.11");
    docs.extend([
        ingress(
            "ext",
            "ext.test",
            &[
                ("auth-url", &scripted_url),
                ("auth-response-headers", "X-User, X-Groups"),
            ],
            "/",
            "Prefix",
        ),
        ingress(
            "unreach",
            "unreach.test",
            &[("auth-url", &format!("http://{UNREACHABLE}/auth"))],
            "/",
            "Prefix",
        ),
        ingress(
            "always",
            "always.test",
            &[("auth-url", &scripted_url), ("auth-always-set-cookie", "true")],
            "/",
            "Prefix",
        ),
        ingress(
            "method",
            "method.test",
            &[
                ("auth-url", &scripted_url),
                ("auth-method", "POST"),
                ("auth-request-redirect", "$scheme://$host$request_uri"),
            ],
            "/",
            "Prefix",
        ),
        ingress(
            "cache",
            "cache.test",
            &[
                ("auth-url", &scripted_url),
                ("auth-cache-key", "$http_x_token"),
                ("auth-cache-duration", "200 202 401 1m"),
            ],
            "/",
            "Prefix",
        ),
        // oauth2-proxy as its docs deploy it behind ingress-nginx.
        ingress(
            "oauth2",
            "oauth2.test",
            &[
                ("auth-url", &format!("http://{OAUTH2}/oauth2/auth")),
                ("auth-signin", "https://$host/oauth2/start?rd=$escaped_request_uri"),
                ("auth-response-headers", "X-Auth-Request-User,X-Auth-Request-Email"),
            ],
            "/",
            "Prefix",
        ),
        ingress(
            "oauth2rd",
            "oauth2rd.test",
            &[
                ("auth-url", &format!("http://{OAUTH2}/oauth2/auth")),
                ("auth-signin", "https://login.example/oauth2/start"),
                ("auth-signin-redirect-param", "redirect_to"),
            ],
            "/",
            "Prefix",
        ),
        // Authelia as its ingress-nginx integration guide deploys it.
        ingress(
            "authelia",
            "authelia.test",
            &[
                ("auth-url", &format!("http://{AUTHELIA}/api/authz/auth-request")),
                ("auth-signin", "https://auth.example.com/?rm=$request_method"),
                (
                    "auth-response-headers",
                    "Remote-User,Remote-Name,Remote-Groups,Remote-Email",
                ),
            ],
            "/",
            "Prefix",
        ),
        ingress(
            "basic",
            "basic.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "htpasswd"),
                ("auth-realm", "Protected Area"),
            ],
            "/",
            "Prefix",
        ),
        ingress(
            "basicmap",
            "basicmap.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "default/users"),
                ("auth-secret-type", "auth-map"),
            ],
            "/",
            "Prefix",
        ),
        secret("default", "htpasswd", &[("auth", HTPASSWD)]),
        secret(
            "default",
            "users",
            &[("erin", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="), ("frank", "not-a-hash")],
        ),
        secret("other", "htpasswd", &[("auth", HTPASSWD)]),
        secret("default", "nokey", &[("users", HTPASSWD)]),
    ]);
    // What cannot be honoured fails closed.
    for (name, annotations) in [
        ("nosecret", vec![("auth-type", "basic"), ("auth-secret", "missing")]),
        (
            "crossns",
            vec![("auth-type", "basic"), ("auth-secret", "other/htpasswd")],
        ),
        ("nokey", vec![("auth-type", "basic"), ("auth-secret", "nokey")]),
        ("digest", vec![("auth-type", "digest"), ("auth-secret", "htpasswd")]),
        ("badvar", vec![("auth-url", "http://127.0.60.21:9091/$request_body")]),
        (
            "snippet",
            vec![
                ("auth-url", "http://127.0.60.21:9091/"),
                ("auth-snippet", "return 200;"),
            ],
        ),
        (
            "psh",
            vec![
                ("auth-url", "http://127.0.60.21:9091/"),
                ("auth-proxy-set-headers", "default/h"),
            ],
        ),
        ("lonesignin", vec![("auth-signin", "https://login.example/")]),
    ] {
        docs.push(ingress(name, &format!("{name}.test"), &annotations, "/", "Prefix"));
    }
    docs.join("---\n")
}

/// `curl` to `host` through the ALB, with `-D -` so the response head comes first.
fn get(host: &str, target: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:8080{target}");
    let resolve = format!("{host}:8080:{ALB_IP}");
    let mut args = vec!["-D", "-", "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

struct Site {
    _alb: crate::harness::Proc,
    _dir: tempfile::TempDir,
    backend: Fake,
    scripted: Fake,
    oauth2: Fake,
    authelia: Fake,
}

fn site() -> Site {
    let dir = tempdir();
    write(dir.path(), "site.yaml", &manifests());
    Site {
        backend: backend(BACKEND),
        scripted: scripted(SCRIPTED),
        oauth2: oauth2_proxy(OAUTH2),
        authelia: authelia(AUTHELIA),
        _alb: zone_alb(dir.path(), &[], &format!("http://{ALB_IP}:8080/healthz")),
        _dir: dir,
    }
}

/// One ALB and one set of fakes (their addresses are fixed), three parts in turn.
#[test]
fn authentication_through_a_running_zone_alb() {
    let s = site();
    auth_url_subrequests_and_their_answers(&s);
    oauth2_proxy_and_authelia_as_deployed(&s);
    basic_auth_and_what_fails_closed(&s);
}

fn auth_url_subrequests_and_their_answers(s: &Site) {
    // 2xx: the request goes on; auth-response-headers replace what the client sent.
    let (code, out) = get(
        "ext.test",
        "/private/x?y=1",
        &[
            "-X",
            "POST",
            "--data-binary",
            "payload",
            "-H",
            "X-User: mallory",
            "-H",
            "Cookie: sid=42",
        ],
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(fields(&out, "x-user"), ["alice"], "{out}");
    assert_eq!(fields(&out, "x-groups"), ["a", "b"], "{out}");
    assert_eq!(fields(&out, "REQUEST"), ["POST /private/x?y=1"]);
    assert_eq!(
        head(&out, "set-cookie"),
        ["authed=1; Path=/; HttpOnly"],
        "the auth cookie reaches the client"
    );
    // What the auth service got: ingress-nginx's subrequest.
    let sub = s.scripted.last();
    assert_eq!((sub.method.as_str(), sub.target.as_str()), ("GET", "/check?from=alb"));
    assert_eq!(
        sub.header("host"),
        Some("127.0.60.21"),
        "the auth URL's host, without port"
    );
    assert_eq!(sub.header("x-original-url"), Some("http://ext.test:8080/private/x?y=1"));
    assert_eq!(sub.header("x-original-method"), Some("POST"));
    assert_eq!(sub.header("x-sent-from"), Some("nginx-ingress-controller"));
    assert_eq!(sub.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(sub.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(sub.header("x-auth-request-redirect"), Some("/private/x?y=1"));
    assert_eq!(sub.header("cookie"), Some("sid=42"), "the client's fields are passed");
    assert_eq!(sub.header("content-length"), None, "no body");
    assert!(sub.body.is_empty());
    assert_eq!(sub.header("x-forwarded-proto"), None);
    assert_eq!(
        sub.header("x-request-id").map(str::to_owned),
        fields(&out, "x-request-id").first().cloned(),
        "the auth service and the backend see the same request ID"
    );

    // 2xx without the named fields: the client's are removed, not passed.
    let (code, out) = get(
        "ext.test",
        "/",
        &["-H", "X-Test-Answer: 200-bare", "-H", "X-User: mallory"],
    );
    assert_eq!(code, 200, "{out}");
    assert!(fields(&out, "x-user").is_empty(), "{out}");

    // 401 and 403 go to the client as they are, without reaching the backend; the challenge
    // of a 401 is passed on; the auth cookie only with auth-always-set-cookie.
    let before = s.backend.count();
    let (code, out) = get("ext.test", "/", &["-H", "X-Test-Answer: 401"]);
    assert_eq!(code, 401, "{out}");
    assert_eq!(head(&out, "www-authenticate"), ["Bearer realm=\"api\""]);
    assert!(head(&out, "set-cookie").is_empty(), "{out}");
    let (code, out) = get("always.test", "/", &["-H", "X-Test-Answer: 401"]);
    assert_eq!(code, 401, "{out}");
    assert_eq!(head(&out, "set-cookie"), ["tried=1"], "{out}");
    assert_eq!(get("ext.test", "/", &["-H", "X-Test-Answer: 403"]).0, 403);
    // Anything else, and an auth service that cannot be reached: 500.
    assert_eq!(get("ext.test", "/", &["-H", "X-Test-Answer: 500"]).0, 500);
    assert_eq!(get("ext.test", "/", &["-H", "X-Test-Answer: 302"]).0, 500);
    assert_eq!(get("unreach.test", "/", &[]).0, 500);
    assert_eq!(s.backend.count(), before, "refused requests never reach the backend");

    // auth-method: the method, X-Original-URI and X-Scheme; auth-request-redirect expanded.
    assert_eq!(get("method.test", "/m?a=1", &[]).0, 200);
    let sub = s.scripted.last();
    assert_eq!(sub.method, "POST");
    assert_eq!(sub.header("x-original-uri"), Some("/m?a=1"));
    assert_eq!(sub.header("x-scheme"), Some("http"));
    assert_eq!(sub.header("x-auth-request-redirect"), Some("http://method.test/m?a=1"));

    // auth-cache-key: one subrequest per key and period; 401s are cached too.
    let n = s.scripted.count();
    for _ in 0..3 {
        assert_eq!(
            get(
                "cache.test",
                "/",
                &["-H", "X-Token: t1", "-H", "X-Test-Answer: 200-bare"]
            )
            .0,
            200
        );
    }
    assert_eq!(s.scripted.count(), n + 1, "cached");
    assert_eq!(
        get(
            "cache.test",
            "/",
            &["-H", "X-Token: t2", "-H", "X-Test-Answer: 401-bare"]
        )
        .0,
        401
    );
    assert_eq!(
        get(
            "cache.test",
            "/",
            &["-H", "X-Token: t2", "-H", "X-Test-Answer: 200-bare"]
        )
        .0,
        401
    );
    assert_eq!(s.scripted.count(), n + 2, "another key, one more subrequest");
    // An answer with Set-Cookie is not cached (nginx's proxy cache does not store it).
    get("cache.test", "/", &["-H", "X-Token: t3"]);
    get("cache.test", "/", &["-H", "X-Token: t3"]);
    assert_eq!(s.scripted.count(), n + 4);
}

fn oauth2_proxy_and_authelia_as_deployed(s: &Site) {
    // oauth2-proxy: no session → 302 to the signin URL with rd= as the annotation writes it.
    let (code, out) = get("oauth2.test", "/app/x?a=1&b=2", &[]);
    assert_eq!(code, 302, "{out}");
    assert_eq!(
        head(&out, "location"),
        ["https://oauth2.test/oauth2/start?rd=%2Fapp%2Fx%3Fa%3D1%26b%3D2"]
    );
    assert_eq!(s.oauth2.last().target, "/oauth2/auth");
    // With a session: 202 passes, the user reaches the backend.
    let (code, out) = get("oauth2.test", "/app", &["-H", "Cookie: _oauth2_proxy=valid-session"]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(fields(&out, "x-auth-request-user"), ["alice"]);
    assert_eq!(fields(&out, "x-auth-request-email"), ["alice@example.com"]);
    // Without rd in the signin URL it is added, under auth-signin-redirect-param's name.
    let (code, out) = get("oauth2rd.test", "/p?q=1", &[]);
    assert_eq!(code, 302, "{out}");
    assert_eq!(
        head(&out, "location"),
        ["https://login.example/oauth2/start?redirect_to=http://oauth2rd.test:8080%2Fp%3Fq%3D1"]
    );

    // Authelia: it decides from X-Original-URL / X-Original-Method.
    let (code, out) = get("authelia.test", "/docs", &[]);
    assert_eq!(code, 302, "{out}");
    assert_eq!(
        head(&out, "location"),
        ["https://auth.example.com/?rm=GET&rd=http://authelia.test:8080%2Fdocs"]
    );
    let session = ["-H", "Cookie: authelia_session=good", "-H", "Remote-User: admin"];
    let (code, out) = get("authelia.test", "/docs", &session);
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        fields(&out, "remote-user"),
        ["john"],
        "the client's Remote-User is replaced"
    );
    assert_eq!(fields(&out, "remote-groups"), ["admins,dev"]);
    assert_eq!(fields(&out, "remote-email"), ["john@example.com"]);
    let sub = s.authelia.last();
    assert_eq!(sub.header("x-original-url"), Some("http://authelia.test:8080/docs"));
    assert_eq!(sub.header("x-original-method"), Some("GET"));
    // Denied by policy: 403 as is, no redirect.
    assert_eq!(get("authelia.test", "/admin", &session).0, 403);
    // A client cannot point the auth service at another URL.
    let (code, _) = get(
        "authelia.test",
        "/admin",
        &[&session[..], &["-H", "X-Original-URL: http://authelia.test:8080/docs"]].concat(),
    );
    assert_eq!(code, 403);
}

fn basic_auth_and_what_fails_closed(s: &Site) {
    // No credentials, unknown user, wrong password: 401 with nginx's challenge.
    for extra in [
        &[][..],
        &["-u", "mallory:secret"],
        &["-u", "alice:wrong"],
        &["-H", "Authorization: Basic !!"],
    ] {
        let (code, out) = get("basic.test", "/", extra);
        assert_eq!(code, 401, "{extra:?}: {out}");
        assert_eq!(head(&out, "www-authenticate"), ["Basic realm=\"Protected Area\""]);
    }
    // bcrypt, apr1, SHA and crypt as htpasswd writes them; the backend never sees the password.
    for user in ["alice", "bob", "carol", "dave", "alice"] {
        let (code, out) = get("basic.test", "/", &["-u", &format!("{user}:secret")]);
        assert_eq!(code, 200, "{user}: {out}");
        assert!(fields(&out, "authorization").is_empty(), "{out}");
    }
    // auth-map: keys are users; a value that is no hash lets nobody in.
    assert_eq!(get("basicmap.test", "/", &["-u", "erin:secret"]).0, 200);
    assert_eq!(get("basicmap.test", "/", &["-u", "frank:not-a-hash"]).0, 401);

    // Fail closed: a missing Secret, one in another namespace, one without `auth`, digest, an
    // unknown variable, auth-snippet, a ConfigMap reference, a signin URL without auth-url.
    let n = s.backend.count();
    for name in [
        "nosecret",
        "crossns",
        "nokey",
        "digest",
        "badvar",
        "snippet",
        "psh",
        "lonesignin",
    ] {
        let (code, out) = get(&format!("{name}.test"), "/", &["-u", "alice:secret"]);
        assert_eq!(code, 503, "{name}: {out}");
        assert!(!head(&out, "x-mzlb-reason").is_empty(), "{name}: {out}");
    }
    assert_eq!(s.backend.count(), n);
}
