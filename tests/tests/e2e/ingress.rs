//! Ingress semantics and ingress-nginx annotations through a running zone-alb, with real curl:
//! rate limits (503), allowlists (403), body size (413), cookie affinity, rewrite-target,
//! EWMA, trusted proxies, X-Request-ID, bad annotation values, and live reload of the
//! manifest directory.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    Proc, bin, curl, echo, field, metric, poll, scrape, service, signal, single_alb_site, slow_echo, tempdir, write,
    zone_alb,
};

const ALB: &str = "127.0.18.1:8080";

pub(crate) fn ingress(name: &str, host: &str, annotations: &[(&str, &str)], path: &str, path_type: &str) -> String {
    let mut doc = format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n");
    if !annotations.is_empty() {
        doc.push_str("  annotations:\n");
        for (k, v) in annotations {
            doc.push_str(&format!("    nginx.ingress.kubernetes.io/{k}: '{v}'\n"));
        }
    }
    doc.push_str(&format!(
        "spec:\n  ingressClassName: mzlb\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: '{path}', pathType: {path_type}, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
    ));
    doc
}

fn base() -> String {
    [
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\n".to_owned(),
        "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: a}\nspec: {zone: z, ip: 127.0.18.1, port: 8080}\n".to_owned(),
        service("app", &["127.0.18.11", "127.0.18.12"], 9080),
        ingress("limited", "limit.test", &[("limit-rps", "2"), ("limit-burst-multiplier", "1")], "/", "Prefix"),
        ingress("allow", "allow.test", &[("whitelist-source-range", "127.0.0.77/32")], "/", "Prefix"),
        ingress("allow2", "allow2.test", &[("allowlist-source-range", "127.0.0.0/30, 127.0.0.77")], "/", "Prefix"),
        ingress("cookiepath", "cookiepath.test", &[("affinity", "cookie"), ("session-cookie-path", "/shop")], "/", "Prefix"),
        ingress("sticky", "sticky.test", &[("affinity", "cookie"), ("session-cookie-name", "route"), ("session-cookie-max-age", "60"), ("session-cookie-samesite", "Lax")], "/", "Prefix"),
        ingress("rw", "rw.test", &[("rewrite-target", "/$2"), ("load-balance", "fastest")], "/api(/|$)(.*)", "ImplementationSpecific"),
        // A protective setting whose value cannot be used fails closed: never "no allow-list".
        ingress("badallow", "badallow.test", &[("whitelist-source-range", "10.0.0.0/33")], "/", "Prefix"),
        ingress("body", "body.test", &[("proxy-body-size", "10")], "/", "Prefix"),
        ingress("ewma", "ewma.test", &[("load-balance", "ewma")], "/", "Prefix"),
        // 127.0.18.13 has nothing listening: connections to it are refused.
        service("flaky", &["127.0.18.13", "127.0.18.11"], 9080),
        ingress("retry", "retry.test", &[], "/", "Prefix").replace("name: app,", "name: flaky,"),
        service("slow", &["127.0.18.14"], 9080),
        ingress("conn", "conn.test", &[("limit-connections", "2")], "/", "Prefix").replace("name: app,", "name: slow,"),
    ]
    .join("---\n")
}

fn get(host: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:8080/");
    let resolve = format!("{host}:8080:127.0.18.1");
    let mut args = vec!["--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[test]
fn annotations_and_reload_through_a_running_zone_alb() {
    let dir = tempdir();
    write(dir.path(), "base.yaml", &base());
    let _slow = slow_echo("127.0.18.14:9080", 1500);
    let _backends: Vec<Proc> = ["127.0.18.11", "127.0.18.12"]
        .iter()
        .map(|ip| echo(&format!("{ip}:9080"), ip))
        .collect();
    let alb = zone_alb(
        dir.path(),
        &[
            "--trusted-proxies",
            "127.0.0.88/32",
            "--admin-listen",
            "127.0.18.1:10254",
            // More workers than cores: limits, balancing, affinity and ejection below must
            // hold for the ALB as a whole, whichever worker a connection lands on.
            "--workers",
            "4",
        ],
        &format!("http://{ALB}/healthz"),
    );
    let workers = std::fs::read_dir(format!("/proc/{}/task", alb.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("alb-worker-"))
        .count();
    assert_eq!(workers, 4, "one thread per worker");

    // limit-rps 2 with a burst of 2: a quick run of requests gets 503 past the burst.
    let codes: Vec<u16> = (0..8).map(|_| get("limit.test", &[]).0).collect();
    assert_eq!(&codes[..2], [200, 200], "{codes:?}");
    assert!(codes.contains(&503), "excess requests get 503: {codes:?}");

    // Allowlist: 403 from elsewhere, 200 from the allowed address.
    assert_eq!(get("allow.test", &[]).0, 403);
    assert_eq!(get("allow.test", &["--interface", "127.0.0.77"]).0, 200);
    // allowlist- (the current name), with a CIDR list and a bare address.
    assert_eq!(get("allow2.test", &["--interface", "127.0.0.5"]).0, 403);
    assert_eq!(get("allow2.test", &["--interface", "127.0.0.2"]).0, 200);
    assert_eq!(get("allow2.test", &["--interface", "127.0.0.77"]).0, 200);

    // Cookie affinity: the first answer sets the cookie; with it, every request lands on the
    // same backend, without it requests spread.
    let jar = dir.path().join("jar");
    let jar = jar.to_str().unwrap();
    let (code, _) = get("sticky.test", &["-c", jar, "-D", "-"]);
    assert_eq!(code, 200);
    let cookies = std::fs::read_to_string(jar).unwrap();
    assert!(cookies.contains("\troute\t"), "Set-Cookie route=…: {cookies}");
    let with_cookie: BTreeSet<String> = (0..6)
        .map(|_| {
            field(&get("sticky.test", &["-b", jar]).1, "Hostname")
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(with_cookie.len(), 1, "sticky: {with_cookie:?}");
    let without: BTreeSet<String> = (0..6)
        .map(|_| field(&get("sticky.test", &[]).1, "Hostname").unwrap().to_owned())
        .collect();
    assert_eq!(without.len(), 2, "round-robin without the cookie: {without:?}");
    let (_, headers) = get("sticky.test", &["-D", "-", "-o", "/dev/null"]);
    assert!(
        headers.to_ascii_lowercase().contains("set-cookie: route=")
            && headers.contains("Max-Age=60")
            && headers.contains("SameSite=Lax"),
        "{headers}"
    );
    // session-cookie-path, and the cookie's default name (ingress-nginx's INGRESSCOOKIE).
    let (_, headers) = get("cookiepath.test", &["-D", "-", "-o", "/dev/null"]);
    assert!(
        headers.to_ascii_lowercase().contains("set-cookie: ingresscookie=") && headers.contains("Path=/shop"),
        "{headers}"
    );

    // rewrite-target with capture groups; the bad load-balance value on the same Ingress is
    // reported and the rest of it works.
    let resolve = "rw.test:8080:127.0.18.1";
    let (code, page) = curl(&["--resolve", resolve, "http://rw.test:8080/API/items/7?x=1"]);
    assert_eq!((code, field(&page, "Request")), (200, Some("GET /items/7")), "{page}");
    assert!(
        alb.output().contains("Ingress default/rw") && alb.output().contains("load-balance"),
        "{}",
        alb.output()
    );
    // A bad allow-list is not "no allow-list": every request gets 503, saying why.
    let (code, headers) = get("badallow.test", &["-D", "-", "-o", "/dev/null"]);
    assert_eq!(code, 503, "{headers}");
    assert!(
        headers.contains("x-mzlb-reason: unenforced-annotation nginx.ingress.kubernetes.io/whitelist-source-range"),
        "{headers}"
    );

    // Body size: 413 past proxy-body-size.
    let big = "x".repeat(100);
    assert_eq!(get("body.test", &["--data-binary", &big]).0, 413);
    assert_eq!(get("body.test", &["--data-binary", "small"]).0, 200);
    // Without Content-Length (chunked) the limit holds too.
    let chunked = ["-H", "Transfer-Encoding: chunked", "--data-binary"];
    assert_eq!(get("body.test", &[&chunked[..], &[big.as_str()]].concat()).0, 413);
    assert_eq!(get("body.test", &[&chunked[..], &["small"]].concat()).0, 200);

    // EWMA balancing serves.
    assert!((0..5).all(|_| get("ewma.test", &[]).0 == 200));

    // Trusted proxy: its X-Forwarded-For is extended, not replaced; anyone else's is replaced.
    let (_, page) = get(
        "ewma.test",
        &["--interface", "127.0.0.88", "-H", "X-Forwarded-For: 203.0.113.5"],
    );
    assert_eq!(
        field(&page, "X-Forwarded-For"),
        Some("203.0.113.5, 127.0.0.88"),
        "{page}"
    );
    let (_, page) = get("ewma.test", &["-H", "X-Forwarded-For: 203.0.113.5"]);
    assert_eq!(field(&page, "X-Forwarded-For"), Some("127.0.0.1"), "{page}");
    assert_eq!(
        field(&page, "X-Request-ID").map(str::len),
        Some(32),
        "generated: {page}"
    );
    let (_, page) = get("ewma.test", &["-H", "X-Request-ID: trace-42"]);
    assert_eq!(field(&page, "X-Request-ID"), Some("trace-42"), "passed through: {page}");

    // limit-connections 2: of four concurrent requests from one client, two wait for the slow
    // backend and two are refused at once.
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| get("conn.test", &[]).0)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, [200, 200, 503, 503], "{codes:?}");

    // A refused connection is retried on another endpoint for requests without a body; the
    // dead endpoint is then ejected, so requests with a body stop failing too.
    assert!((0..10).all(|_| get("retry.test", &[]).0 == 200), "GETs are retried");
    assert!(
        (0..6).all(|_| get("retry.test", &["--data-binary", "x"]).0 == 200),
        "the dead endpoint is ejected"
    );

    // Metrics per Ingress and Service on the admin port, and an access-log line per request.
    let metrics = scrape("http://127.0.18.1:10254/metrics");
    let value = |series: &str| metric(&metrics, series);
    let limited = "zone_alb_requests_total{ingress=\"default/limited\",service=\"default/app:80\",status=";
    assert!(value(&format!("{limited}\"2xx\"}}")).unwrap_or(0.0) >= 2.0, "{metrics}");
    assert!(value(&format!("{limited}\"5xx\"}}")).unwrap_or(0.0) >= 1.0, "{metrics}");
    assert!(
        value(
            "zone_alb_upstream_errors_total{ingress=\"default/retry\",service=\"default/flaky:80\",kind=\"connect\"}"
        )
        .is_none(),
        "retried connects are not request failures: {metrics}"
    );
    assert!(
        metrics.contains("zone_alb_request_duration_seconds_bucket{le="),
        "{metrics}"
    );
    // Access lines are written in batches, at least once a second.
    let logged = poll(Duration::from_secs(5), || {
        let out = alb.output();
        (out.contains("INFO access: ") && out.contains("host=rw.test:8080")).then_some(())
    });
    assert!(logged.is_some(), "{}", alb.output());

    // Oversized request heads are refused with 431, before any routing.
    let huge = format!("X-Huge: {}", "x".repeat(80 * 1024));
    assert_eq!(get("ewma.test", &["-H", &huge]).0, 431);
    let many: Vec<String> = (0..150).map(|i| format!("X-Many-{i}: 1")).collect();
    let mut args: Vec<&str> = Vec::new();
    for h in &many {
        args.extend(["-H", h.as_str()]);
    }
    assert_eq!(get("ewma.test", &args).0, 431);

    // Live reload: a new Ingress starts serving; a broken change is rejected and the last good
    // table keeps serving.
    assert_eq!(get("new.test", &[]).0, 404);
    write(dir.path(), "new.yaml", &ingress("new", "new.test", &[], "/", "Prefix"));
    poll(Duration::from_secs(10), || {
        (get("new.test", &[]).0 == 200).then_some(())
    })
    .expect("new Ingress served after reload");
    write(
        dir.path(),
        "broken.yaml",
        &ingress("broken", "broken.test", &[], "/", "Prefix").replace("name: app,", "name: missing,"),
    );
    poll(Duration::from_secs(10), || {
        alb.output().contains("manifest change rejected").then_some(())
    })
    .unwrap_or_else(|| panic!("broken change not reported:\n{}", alb.output()));
    assert!(
        alb.output().contains("Service default/missing not found"),
        "{}",
        alb.output()
    );
    assert_eq!(get("new.test", &[]).0, 200, "the last good table keeps serving");
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("new.yaml")).unwrap();
    poll(Duration::from_secs(10), || {
        (get("new.test", &[]).0 == 404).then_some(())
    })
    .expect("removed Ingress gone");
}

/// A backend that accepts any `Upgrade` with 101 and then echoes bytes back, upper-cased.
const UPGRADE_BACKEND: &str = r#"
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.21.11", 9080)); srv.listen(16)
def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk: return
        data += chunk
    head = data.split(b"\r\n\r\n")[0].decode().lower()
    if "upgrade: echo" in head and "connection: upgrade" in head:
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        while True:
            chunk = c.recv(4096)
            if not chunk: return
            c.sendall(chunk.upper())
    else:
        c.sendall(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        c.close()
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

#[test]
fn upgrades_are_spliced_through() {
    use std::io::{Read, Write};
    let dir = tempdir();
    write(
        dir.path(),
        "up.yaml",
        &[
            single_alb_site("127.0.21.1", None, "127.0.21.11"),
            vec![
                ingress(
                    "ws",
                    "ws.test",
                    &[
                        ("upgrade-protocols", "echo"),
                        ("limit-connections", "1"),
                        ("proxy-read-timeout", "2"),
                    ],
                    "/",
                    "Prefix",
                ),
                ingress("plain", "plain.test", &[], "/", "Prefix"),
            ],
        ]
        .concat()
        .join("---\n"),
    );
    let backend = Proc::start("upgrade backend", Command::new("python3").args(["-c", UPGRADE_BACKEND]));
    poll(Duration::from_secs(10), || {
        backend.output().contains("ready").then_some(())
    })
    .expect("python backend up");
    let _alb = zone_alb(dir.path(), &[], "http://127.0.21.1:8080/healthz");

    let mut conn = std::net::TcpStream::connect("127.0.21.1:8080").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).unwrap(),
            1,
            "connection closed in the response head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: echo") && head.contains("connection: upgrade"),
        "{head}"
    );
    for message in ["hello", "over the spliced connection"] {
        conn.write_all(message.as_bytes()).unwrap();
        let mut buf = vec![0u8; message.len()];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(String::from_utf8_lossy(&buf), message.to_uppercase());
    }
    // The spliced connection holds the client's one limit-connections slot...
    assert_eq!(
        get_at("127.0.21.1", "ws.test", &[]).0,
        503,
        "the slot is held while spliced"
    );
    // ...until it has been silent both ways for proxy-read-timeout (2 s): then it is closed.
    let silent = std::time::Instant::now();
    assert_eq!(conn.read(&mut byte).unwrap(), 0, "closed, not more bytes");
    let waited = silent.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "closed after {waited:?} of silence"
    );
    poll(Duration::from_secs(5), || {
        (get_at("127.0.21.1", "ws.test", &[]).0 == 426).then_some(())
    })
    .expect("the slot is released with the spliced connection");
    // Without the upgrade headers the backend sees a plain request (hop-by-hop Upgrade dropped).
    assert_eq!(get_at("127.0.21.1", "ws.test", &["-H", "Upgrade: echo"]).0, 426);
    // A route that does not list the token: the upgrade is not honoured, the request is an
    // ordinary one (the backend answers it without upgrade headers).
    let upgrade = ["-H", "Connection: Upgrade", "-H", "Upgrade: echo"];
    assert_eq!(get_at("127.0.21.1", "plain.test", &upgrade).0, 426);
}

fn get_at(ip: &str, host: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:8080/");
    let resolve = format!("{host}:8080:{ip}");
    let mut args = vec!["--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// Sends one HTTP request on a fresh connection after `prefix`; returns the raw response.
fn raw_request(addr: &str, prefix: &[u8], host: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(prefix).unwrap();
    conn.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    response
}

#[test]
fn proxy_protocol_names_the_client() {
    let dir = tempdir();
    write(
        dir.path(),
        "pp.yaml",
        &[
            single_alb_site("127.0.22.1", None, "127.0.22.11"),
            vec![ingress("pp", "pp.test", &[], "/", "Prefix")],
        ]
        .concat()
        .join("---\n"),
    );
    let _backend = echo("127.0.22.11:9080", "app");
    let _alb = zone_alb(
        dir.path(),
        &["--proxy-protocol", "--admin-listen", "127.0.22.1:10254"],
        "http://127.0.22.1:10254/healthz",
    );
    let addr = "127.0.22.1:8080";

    // v1: the client the balancer names is the one backends see.
    let response = raw_request(addr, b"PROXY TCP4 203.0.113.9 127.0.22.1 5555 8080\r\n", "pp.test");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("X-Forwarded-For: 203.0.113.9\n"), "{response}");
    // v2, binary: 198.51.100.7:8080 → 127.0.0.1:80.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([0x21, 0x11, 0, 12, 198, 51, 100, 7, 127, 0, 0, 1, 0x1f, 0x90, 0, 80]);
    let response = raw_request(addr, &v2, "pp.test");
    assert!(response.contains("X-Forwarded-For: 198.51.100.7\n"), "{response}");
    // curl's own header.
    let (code, page) = curl(&[
        "--haproxy-protocol",
        "--resolve",
        "pp.test:8080:127.0.22.1",
        "http://pp.test:8080/",
    ]);
    assert_eq!(
        (code, field(&page, "X-Forwarded-For")),
        (200, Some("127.0.0.1")),
        "{page}"
    );
    // Without a header the connection is refused: nobody can pose as a balancer by omission.
    let response = raw_request(addr, b"", "pp.test");
    assert!(response.is_empty(), "{response}");
}

/// A backend that accepts connections and never reads from them: writes to it stall once the
/// socket buffers are full.
const DEAF_BACKEND: &str = r#"
import socket, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
srv.bind(("127.0.23.13", 9080)); srv.listen(16)
held = []
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    held.append(conn)
"#;

/// A backend whose accept queue is full: the kernel drops further SYNs, so connecting hangs
/// (what an unreachable Pod looks like from the node).
const TARPIT_BACKEND: &str = r#"
import socket, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.23.14", 9080)); srv.listen(0)
fill = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    try:
        c.connect(("127.0.23.14", 9080))
    except BlockingIOError:
        pass
    fill.append(c)
    time.sleep(0.05)
print("ready", flush=True)
while True:
    time.sleep(60)
"#;

#[test]
fn backend_protocol_and_upstream_timeouts() {
    let dir = tempdir();
    let to = |svc: &str, doc: String| doc.replace("name: app,", &format!("name: {svc},"));
    write(
        dir.path(),
        "site.yaml",
        &[
            single_alb_site("127.0.23.1", None, "127.0.23.10"),
            vec![
                service("secure", &["127.0.23.11"], 9443),
                service("slow", &["127.0.23.12"], 9080),
                service("deaf", &["127.0.23.13"], 9080),
                service("tarpit", &["127.0.23.14"], 9080),
                to(
                    "tarpit",
                    ingress(
                        "connto",
                        "connto.test",
                        &[("proxy-connect-timeout", "1")],
                        "/",
                        "Prefix",
                    ),
                ),
                to(
                    "secure",
                    ingress("https", "https.test", &[("backend-protocol", "HTTPS")], "/", "Prefix"),
                ),
                to("secure", ingress("plain", "plain.test", &[], "/", "Prefix")),
                to(
                    "secure",
                    ingress("spdy", "spdy.test", &[("backend-protocol", "SPDY")], "/", "Prefix"),
                ),
                to(
                    "slow",
                    ingress("readto", "readto.test", &[("proxy-read-timeout", "1")], "/", "Prefix"),
                ),
                to(
                    "deaf",
                    ingress(
                        "sendto",
                        "sendto.test",
                        &[
                            ("proxy-send-timeout", "1"),
                            ("proxy-read-timeout", "30"),
                            ("proxy-body-size", "0"),
                        ],
                        "/",
                        "Prefix",
                    ),
                ),
            ],
        ]
        .concat()
        .join("---\n"),
    );
    let _secure = Proc::start(
        "tls echo",
        Command::new(bin("mzlb")).args(["echo", "--listen", "127.0.23.11:9443", "--name", "secure", "--tls"]),
    );
    let _slow = slow_echo("127.0.23.12:9080", 3000);
    let mut deaf = Command::new("python3");
    deaf.args(["-c", DEAF_BACKEND]);
    let deaf = Proc::start("deaf backend", &mut deaf);
    let tarpit = Proc::start("tarpit backend", Command::new("python3").args(["-c", TARPIT_BACKEND]));
    let alb = zone_alb(
        dir.path(),
        &["--admin-listen", "127.0.23.1:10254"],
        "http://127.0.23.1:10254/healthz",
    );
    for backend in [&deaf, &tarpit] {
        poll(Duration::from_secs(10), || {
            backend.output().contains("ready").then_some(())
        })
        .unwrap_or_else(|| panic!("{} not up: {}", backend.name, backend.output()));
    }
    let get = |host: &str, extra: &[&str]| {
        let url = format!("http://{host}:8080/");
        let resolve = format!("{host}:8080:127.0.23.1");
        let mut args = vec!["--resolve", &resolve, "--max-time", "20"];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };

    // backend-protocol HTTPS: TLS to the backend, which sees the forwarding headers as usual.
    let (code, page) = get("https.test", &[]);
    assert_eq!((code, field(&page, "Hostname")), (200, Some("secure")), "{page}");
    assert_eq!(field(&page, "X-Forwarded-Host"), Some("https.test:8080"), "{page}");
    assert_eq!(
        field(&page, "REMOTE_ADDR"),
        Some("127.0.23.1"),
        "from the ALB's own address: {page}"
    );
    // Plain HTTP to a TLS backend fails as a bad gateway, not a hang.
    assert_eq!(get("plain.test", &[]).0, 502);
    // An unknown protocol is reported by name; that Ingress still serves (over HTTP).
    assert!(
        alb.output().contains("backend-protocol") && alb.output().contains("SPDY"),
        "{}",
        alb.output()
    );
    // TLS connections to the backend are kept alive and reused too.
    let opened = || {
        metric(
            &scrape("http://127.0.23.1:10254/metrics"),
            "zone_alb_upstream_connections_opened_total",
        )
    };
    let before = opened().expect("upstream connection counter");
    assert!((0..10).all(|_| get("https.test", &[]).0 == 200));
    assert!(
        opened().unwrap() - before <= 1.0,
        "ten sequential requests reuse one connection"
    );

    // A timeout of 1 s: 504, after about a second.
    let times_out_after_a_second = |host: &str| {
        let started = std::time::Instant::now();
        assert_eq!(get(host, &[]).0, 504, "{host}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
            "{host}: {took:?}"
        );
    };
    // proxy-read-timeout 1: a backend answering after 3 s.
    times_out_after_a_second("readto.test");
    // proxy-connect-timeout 1: a backend that never completes the handshake.
    times_out_after_a_second("connto.test");

    // proxy-send-timeout 1: a backend that stops reading a large upload gets the request
    // abandoned after about a second of no progress (504), long before the read timeout.
    let upload = dir.path().join("upload");
    std::fs::write(&upload, vec![b'x'; 64 << 20]).unwrap();
    let data = format!("@{}", upload.display());
    let started = std::time::Instant::now();
    let (code, _) = get("sendto.test", &["--data-binary", &data, "-H", "Expect:"]);
    let took = started.elapsed();
    assert_eq!(code, 504, "after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let metrics = scrape("http://127.0.23.1:10254/metrics");
    assert!(
        metric(
            &metrics,
            "zone_alb_upstream_errors_total{ingress=\"default/sendto\",service=\"default/deaf:80\",kind=\"timeout\"}"
        )
        .is_some(),
        "{metrics}"
    );
}

/// SIGTERM stops every worker from accepting, lets requests already in flight finish, and
/// then exits.
#[test]
fn shutdown_finishes_requests_in_flight_on_every_worker() {
    let dir = tempdir();
    let mut docs = single_alb_site("127.0.24.1", None, "127.0.24.11");
    docs.push(ingress("app", "drain.test", &[], "/", "Prefix"));
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let _slow = slow_echo("127.0.24.11:9080", 1500);
    let mut alb = zone_alb(dir.path(), &["--workers", "3"], "http://127.0.24.1:8080/healthz");
    let url = "http://drain.test:8080/";
    let resolve = "drain.test:8080:127.0.24.1";
    // Several at once, so that (with three workers) more than one worker has one in flight.
    let in_flight: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || curl(&["--resolve", resolve, url])))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    signal(alb.pid(), "TERM");
    for request in in_flight {
        let (code, page) = request.join().unwrap();
        assert_eq!(code, 200, "an in-flight request is finished: {page}");
        assert_eq!(field(&page, "Hostname"), Some("slow"), "{page}");
    }
    let (status, output) = alb.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "clean exit after draining:\n{output}");
    assert_eq!(curl(&["--resolve", resolve, url]).0, 0, "nothing listens any more");
}
