//! HTTPS/1.1 on zone-alb's fast path, with real curl and `openssl s_client`: the fast path
//! (127.0.113.1) against hyper's (`--no-fast-path`, 127.0.113.2), run from the same manifests
//! in front of a backend that echoes the request head. Which path served a request shows in
//! the spelling of field names: the fast path passes the client's and the backend's on
//! (`Host`, `Content-Length`), hyper writes them in lower case.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Proc, poll, run, single_alb_site, tempdir, write, zone_alb};

const FAST: &str = "127.0.113.1";
const HYPER: &str = "127.0.113.2";
const HOST: &str = "web.test";

fn site() -> String {
    let generated = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
    let (cert, key) = (generated.cert.pem(), generated.signing_key.serialize_pem());
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let ingress = |name: &str, path: &str, annotations: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{{annotations}}}}}\n\
             spec:\n  ingressClassName: mzlb\n  tls: [{{hosts: ['{HOST}'], secretName: tls}}]\n  rules:\n  \
             - host: '{HOST}'\n    http:\n      paths:\n      \
             - {{path: {path}, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
        )
    };
    let mut docs = single_alb_site(FAST, Some(8443), "127.0.113.11");
    docs.extend([
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&cert),
            indent(&key)
        ),
        ingress("web", "/", ""),
        // An annotation only hyper's path applies: its requests are handed over.
        ingress("prefixed", "/hyper", "nginx.ingress.kubernetes.io/x-forwarded-prefix: /p"),
    ]);
    docs.join("---\n")
}

/// curl over HTTPS to `ip` with `args` then `paths` (one connection when it can reuse it);
/// returns stdout (each response's head, with `-D -`, and body, then `%{http_code}
/// %{num_connects} %{http_version}` on a line of its own).
fn curl(ip: &str, args: &[&str], paths: &[&str]) -> String {
    let resolve = format!("{HOST}:8443:{ip}");
    let urls: Vec<String> = paths.iter().map(|p| format!("https://{HOST}:8443{p}")).collect();
    let out = run(Command::new("curl")
        .args(["-sk", "--max-time", "10", "-D", "-", "--resolve", &resolve])
        .args(["-w", "\n=%{http_code} %{num_connects} %{http_version}\n"])
        .args(args)
        .args(&urls));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `=code connects version` lines of [`curl`]'s output.
fn outcomes(out: &str) -> Vec<(u16, u32, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix('='))
        .map(|l| {
            let mut parts = l.split(' ');
            let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let connects = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            (code, connects, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// `requests` written at once on one `openssl s_client` connection (ALPN http/1.1); what came
/// back. s_client fails if the connection ends without a close_notify.
fn pipelined(ip: &str, requests: &str) -> String {
    let connect = format!("{ip}:8443");
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &connect, "-servername", HOST])
        .args(["-alpn", "http/1.1", "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (Debian's openssl package) is installed");
    let _ = child.stdin.take().unwrap().write_all(requests.as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{ip}: s_client failed (no close_notify?): {text}");
    text
}

#[test]
fn https_1_1_takes_the_fast_path_with_https_forwarding_hsts_keep_alive_and_hand_off() {
    let dir = tempdir();
    write(dir.path(), "site.yaml", &site());
    let backend = crate::http1::BACKEND.replace("127.0.25.11", "127.0.113.11");
    let backend = Proc::start("echo backend", Command::new("python3").args(["-c", &backend]));
    poll(Duration::from_secs(10), || {
        backend.output().contains("ready").then_some(())
    })
    .expect("python backend up");
    let _fast = zone_alb(dir.path(), &["--workers", "1"], &format!("http://{FAST}:8080/"));
    let listen = format!("{HYPER}:8080");
    let listen_tls = format!("{HYPER}:8443");
    let _hyper = zone_alb(
        dir.path(),
        &[
            "--workers",
            "1",
            "--no-fast-path",
            "--listen",
            &listen,
            "--listen-tls",
            &listen_tls,
        ],
        &format!("http://{HYPER}:8080/"),
    );

    // HTTPS/1.1 (ALPN http/1.1, or no ALPN): the fast path, forwarding as HTTPS, with HSTS.
    for args in [&["--http1.1"][..], &["--http1.1", "--no-alpn"]] {
        let out = curl(FAST, args, &["/a?x=1"]);
        assert_eq!(outcomes(&out), [(200, 1, "1.1".to_owned())], "{args:?}: {out}");
        assert!(
            out.contains("\r\nContent-Length: "),
            "relayed as the backend spelled it: {out}"
        );
        assert!(
            out.contains("\r\nHost: web.test:8443\r\n"),
            "the client's spelling: {out}"
        );
        assert!(out.contains("\r\nx-forwarded-proto: https\r\n"), "{out}");
        assert!(out.contains("\r\nx-forwarded-port: 8443\r\n"), "{out}");
        assert!(
            out.to_ascii_lowercase()
                .contains("\r\nstrict-transport-security: max-age=31536000; includesubdomains\r\n"),
            "{out}"
        );
    }
    // The same request on hyper's path: the same forwarding, in hyper's spelling.
    let out = curl(HYPER, &["--http1.1"], &["/a?x=1"]);
    assert_eq!(outcomes(&out), [(200, 1, "1.1".to_owned())], "{out}");
    assert!(
        out.contains("\r\ncontent-length: ") && out.contains("\r\nhost: web.test:8443\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\nx-forwarded-proto: https\r\n"), "{out}");
    assert!(out.contains("\r\nstrict-transport-security: "), "{out}");

    // The fast path's own answers carry HSTS too (a host without rules: 404).
    let resolve = format!("nobody.test:8443:{FAST}");
    let out = run(Command::new("curl")
        .args(["-sk", "--http1.1", "-D", "-", "-o", "/dev/null", "--resolve", &resolve])
        .arg("https://nobody.test:8443/"));
    let out = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 404"), "{out}");
    assert!(out.contains("\r\nstrict-transport-security: max-age=31536000"), "{out}");

    // Many requests on one kept-alive TLS connection, all on the fast path.
    let paths: Vec<String> = (0..40).map(|i| format!("/keep/{i}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let out = curl(FAST, &["--http1.1"], &paths);
    let got = outcomes(&out);
    assert_eq!(got.len(), 40, "{out}");
    assert!(got.iter().all(|(code, _, _)| *code == 200), "{got:?}");
    assert_eq!(got.iter().map(|(_, c, _)| c).sum::<u32>(), 1, "one connection: {got:?}");
    assert_eq!(out.matches("\r\nContent-Length: ").count(), 40, "all on the fast path");

    // Handed to hyper in the middle of a connection: a first request on the fast path, one that
    // needs hyper, then one more (hyper's from then on); one connection, each request once.
    let out = curl(FAST, &["--http1.1"], &["/first", "/hyper/second", "/third"]);
    let got = outcomes(&out);
    assert_eq!(
        got.iter().map(|(code, c, _)| (*code, *c)).collect::<Vec<_>>(),
        [(200, 1), (200, 0), (200, 0)],
        "{out}"
    );
    let parts: Vec<&str> = out.split("\n=").collect();
    assert!(
        parts[0].contains("\r\nContent-Length: ") && parts[0].contains("GET /first HTTP/1.1"),
        "{out}"
    );
    assert!(
        parts[1].contains("\r\ncontent-length: ") && parts[1].contains("GET /hyper/second HTTP/1.1"),
        "{out}"
    );
    assert!(
        parts[1].contains("\r\nx-forwarded-prefix: /p\r\n") && parts[1].contains("x-forwarded-proto: https"),
        "{out}"
    );
    assert!(
        parts[2].contains("\r\ncontent-length: ") && parts[2].contains("GET /third HTTP/1.1"),
        "{out}"
    );
    assert_eq!(out.matches("GET /").count(), 3, "no request lost or repeated: {out}");

    // HTTP/2 by ALPN stays on hyper's path, forwarded as HTTPS.
    let out = curl(FAST, &["--http2"], &["/h2"]);
    assert_eq!(outcomes(&out), [(200, 1, "2".to_owned())], "{out}");
    assert!(
        out.contains("\r\nx-forwarded-proto: https\r\n") && out.contains("\r\nhost: web.test:8443\r\n"),
        "{out}"
    );

    // HTTP/2 requests without a body go upstream over the fast path's connections (hyper's
    // client with --no-fast-path): every response shape of the backend comes through alike.
    let h2 = |ip: &str, path: &str| {
        let out = curl(ip, &["--http2", "-H", "X-Test: 1"], &[path]);
        // Dates and request ids (new for each request) aside.
        out.lines()
            .filter(|l| !l.starts_with("date:") && !l.starts_with("x-request-id:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for path in [
        "/h2?q=1",
        "/chunked",
        "/big-chunked",
        "/big",
        "/until-close",
        "/early",
        "/hop",
        "/drop",
        "/drop",
    ] {
        let (fast, hyper) = (h2(FAST, path), h2(HYPER, path));
        assert!(
            fast.ends_with("=200 1 2"),
            "{path}: {}",
            &fast[fast.len().saturating_sub(300)..]
        );
        assert!(
            fast == hyper,
            "{path}: fast path's leg\n{fast:.2000}\nhyper's\n{hyper:.2000}"
        );
    }
    let chunked = h2(FAST, "/chunked");
    // The body, then its trailer field (curl writes it with the head fields).
    assert!(
        chunked.contains("hello, worldx-sum: 12"),
        "trailers passed on: {chunked}"
    );

    // Pipelined over TLS: three requests in one write, answered in order, then the close.
    let requests = "GET /p1 HTTP/1.1\r\nHost: web.test\r\n\r\nGET /p2 HTTP/1.1\r\nHost: web.test\r\n\r\n\
                    GET /p3 HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n";
    for ip in [FAST, HYPER] {
        let out = pipelined(ip, requests);
        let at = |p: &str| {
            out.find(&format!("GET {p} HTTP/1.1"))
                .unwrap_or_else(|| panic!("{ip} {p}: {out}"))
        };
        assert!(at("/p1") < at("/p2") && at("/p2") < at("/p3"), "{ip}: {out}");
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{ip}: {out}");
        assert!(out.to_ascii_lowercase().contains("connection: close"), "{ip}: {out}");
    }
    assert!(
        pipelined(FAST, requests).contains("\r\nHost: web.test\r\n"),
        "fast path"
    );
}
