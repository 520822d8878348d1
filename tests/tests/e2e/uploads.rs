//! Uploads stream through both HTTP/1.1 paths: `proxy-read-timeout` starts once the request
//! has been sent (nginx's semantics), so an upload slower than it succeeds; a body of unknown
//! length is held to `proxy-body-size` as it passes.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::harness::{Proc, bin, curl, poll, single_alb_site, tempdir, write};
use crate::http1::{BACKEND, read_response};
use crate::ingress::ingress;

/// Pause between the pieces of a slow upload: three of them outlast the 1 s read timeout.
const PAUSE: Duration = Duration::from_millis(600);

/// Sends `head`, then each of `pieces` after a pause; returns the response head and body.
fn upload(alb: &str, head: &str, pieces: &[Vec<u8>]) -> (String, Vec<u8>, TcpStream) {
    let mut conn = TcpStream::connect(alb).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    for piece in pieces {
        thread::sleep(PAUSE);
        // The proxy may refuse (and close) before the last piece: not this test's concern.
        if conn.write_all(piece).is_err() {
            break;
        }
    }
    let (head, body) = read_response(&mut conn);
    (head, body, conn)
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn slow_uploads_stream_and_the_read_timeout_starts_once_they_are_sent() {
    let dir = tempdir();
    let site = [
        single_alb_site("127.0.28.1", None, "127.0.28.11"),
        vec![ingress(
            "up",
            "up.test",
            &[("proxy-read-timeout", "1"), ("proxy-body-size", "1k")],
            "/",
            "Prefix",
        )],
    ]
    .concat()
    .join("---\n");
    write(dir.path(), "site.yaml", &site);
    let backend_code = BACKEND.replace("127.0.25.11", "127.0.28.11");
    let backend = Proc::start("upload backend", Command::new("python3").args(["-c", &backend_code]));
    poll(Duration::from_secs(10), || {
        backend.output().contains("ready").then_some(())
    })
    .expect("python backend up");
    let start = |name: &str, listen: &str, extra: &[&str]| {
        let alb = Proc::start(
            name,
            Command::new(bin("zone-alb"))
                .args(["--alb-id", "a", "--workers", "1", "--listen", listen])
                .args(extra)
                .arg("--manifests")
                .arg(dir.path()),
        );
        let url = format!("http://{listen}/");
        poll(Duration::from_secs(20), || {
            (curl(&["-H", "Host: albhealth.c.test", &url]).0 == 200).then_some(())
        })
        .unwrap_or_else(|| panic!("{name} not up:\n{}", alb.output()));
        alb
    };
    let _fast = start("zone-alb", "127.0.28.1:8080", &[]);
    let _hyper = start("zone-alb --no-fast-path", "127.0.28.2:8080", &["--no-fast-path"]);

    let part = |c: u8| vec![c; 300];
    for alb in ["127.0.28.1:8080", "127.0.28.2:8080"] {
        // 900 bytes by length in three pieces over 1.8 s: longer than the read timeout.
        let head = "POST /length HTTP/1.1\r\nHost: up.test\r\nContent-Length: 900\r\n\r\n";
        let (status, body, _) = upload(alb, head, &[part(b'a'), part(b'b'), part(b'c')]);
        assert!(status.starts_with("http/1.1 200"), "{alb}: {status}");
        let sent = [part(b'a'), part(b'b'), part(b'c')].concat();
        assert!(body.ends_with(&sent), "{alb}: the backend got the whole body");

        // The same chunked (hyper's path on both listeners).
        let head = "POST /chunked-up HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n";
        let pieces = [
            chunk(&part(b'a')),
            chunk(&part(b'b')),
            [chunk(&part(b'c')), b"0\r\n\r\n".to_vec()].concat(),
        ];
        let (status, body, _) = upload(alb, head, &pieces);
        assert!(status.starts_with("http/1.1 200"), "{alb}: {status}");
        assert!(body.ends_with(&sent), "{alb}: the backend got the whole chunked body");

        // A chunked body that crosses proxy-body-size (1 KiB) on its way: 413, and the
        // connection closes (the rest of the body must not be read as a request).
        let big = |c: u8| chunk(&vec![c; 600]);
        let pieces = [big(b'a'), big(b'b'), [big(b'c'), b"0\r\n\r\n".to_vec()].concat()];
        let (status, _, mut conn) = upload(alb, head, &pieces);
        assert!(status.starts_with("http/1.1 413"), "{alb}: {status}");
        assert!(status.contains("connection: close"), "{alb}: {status}");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut rest);
        assert!(rest.is_empty(), "{alb}: nothing after the 413: {rest:?}");

        // A declared length over the limit is refused before the body is read; the client is
        // still sending it, and must get the 413 rather than a reset connection.
        for _ in 0..5 {
            let mut conn = TcpStream::connect(alb).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let head = "POST /big HTTP/1.1\r\nHost: up.test\r\nContent-Length: 4194304\r\n\r\n";
            conn.write_all(head.as_bytes()).unwrap();
            let mut writer = conn.try_clone().unwrap();
            let pump = thread::spawn(move || {
                let block = vec![b'x'; 65536];
                for _ in 0..64 {
                    if writer.write_all(&block).is_err() {
                        break;
                    }
                }
            });
            let mut answer = [0u8; 12];
            let got = std::io::Read::read_exact(&mut conn, &mut answer);
            assert!(
                got.is_ok() && answer.starts_with(b"HTTP/1.1 413"),
                "{alb}: {got:?} {:?}",
                String::from_utf8_lossy(&answer)
            );
            drop(conn);
            let _ = pump.join();
        }
    }
}
