//! HTTP/1.1 exchanges through a running zone-alb's fast path, against a backend that frames
//! its responses every way HTTP/1.1 allows (length, chunked with trailers, until close, 1xx
//! first, hop-by-hop fields, connections it drops), and the hand-off to hyper in the middle of
//! a connection when a request needs it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Proc, curl, poll, single_alb_site, tempdir, write, zone_alb};

const ALB: &str = "127.0.25.1:8080";

/// Answers by path; everything else echoes the request head and body it received. Listens on
/// 127.0.25.11:9080 (other tests replace the address).
pub(crate) const BACKEND: &str = r#"
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.25.11", 9080))
srv.listen(128)
accepted = 0

def more(c, buf):
    d = c.recv(65536)
    if not d:
        raise EOFError
    return buf + d

def serve(c):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                buf = more(c, buf)
            head, buf = buf.split(b"\r\n\r\n", 1)
            fields = {}
            for line in head.split(b"\r\n")[1:]:
                k, v = line.split(b":", 1)
                fields[k.strip().lower()] = v.strip()
            body = b""
            if b"content-length" in fields:
                n = int(fields[b"content-length"])
                while len(buf) < n:
                    buf = more(c, buf)
                body, buf = buf[:n], buf[n:]
            elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                while True:
                    while b"\r\n" not in buf:
                        buf = more(c, buf)
                    line, buf = buf.split(b"\r\n", 1)
                    size = int(line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        buf = more(c, buf)
                    body, buf = body + buf[:size], buf[size + 2:]
                    if size == 0:
                        break
            method, target = head.split(b" ")[:2]
            if target == b"/chunked":
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                          b"5\r\nhello\r\n7;note=x\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n")
            elif target == b"/big-chunked":
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(64):
                    c.sendall(b"4000\r\n" + bytes([65 + i % 26]) * 0x4000 + b"\r\n")
                c.sendall(b"0\r\n\r\n")
            elif target == b"/big":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
                for i in range(64):
                    c.sendall(bytes([97 + i % 26]) * 16384)
            elif target == b"/until-close":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends when the backend closes")
                c.close()
                return
            elif target == b"/early":
                c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
                          b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
            elif target == b"/hop":
                c.sendall(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                          b"Keep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 3\r\n\r\nhop")
            elif target == b"/drop":
                # Closes without saying so, as a backend whose keep-alive timeout just ran out.
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ndropped")
                c.close()
                return
            elif target == b"/connections":
                n = str(accepted).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(n), n))
            else:
                echo = head + b"\r\n\r\nBODY:" + body
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(echo)
                          + (b"" if method == b"HEAD" else echo))
    except (EOFError, ConnectionError):
        c.close()

print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    accepted += 1
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

fn site() -> String {
    [
        single_alb_site("127.0.25.1", None, "127.0.25.11"),
        vec![
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n\
             spec: {ingressClassName: mzlb, defaultBackend: {service: {name: app, port: {number: 80}}}}\n"
                .to_owned(),
        ],
    ]
    .concat()
    .join("---\n")
}

fn url(path: &str) -> String {
    format!("http://{ALB}{path}")
}

/// Reads one response (framed by Content-Length or chunked) from `conn`: head and body.
pub(crate) fn read_response(conn: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).unwrap(), 1, "closed in the head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|n| n.trim().parse::<usize>().unwrap());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            conn.read_exact(&mut body).unwrap();
        }
        None => {
            assert!(head.contains("transfer-encoding: chunked"), "unframed: {head}");
            loop {
                let mut line = Vec::new();
                while !line.ends_with(b"\r\n") {
                    conn.read_exact(&mut byte).unwrap();
                    line.push(byte[0]);
                }
                let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16).unwrap();
                let mut chunk = vec![0u8; size + 2];
                conn.read_exact(&mut chunk).unwrap();
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        }
    }
    (head, body)
}

#[test]
fn http1_exchanges_through_the_fast_path_and_the_hand_off_to_hyper() {
    let dir = tempdir();
    write(dir.path(), "site.yaml", &site());
    let backend = Proc::start("framing backend", Command::new("python3").args(["-c", BACKEND]));
    poll(Duration::from_secs(10), || {
        backend.output().contains("ready").then_some(())
    })
    .expect("python backend up");
    let _alb = zone_alb(dir.path(), &["--workers", "1"], &url("/healthz"));

    // Chunked bodies are relayed as they are, trailers included.
    let (code, body) = curl(&["--raw", &url("/chunked")]);
    assert_eq!(code, 200);
    assert_eq!(
        body, "5\r\nhello\r\n7;note=x\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n",
        "chunks passed through"
    );
    assert_eq!(curl(&[&url("/chunked")]), (200, "hello, world".to_owned()));
    // Large bodies span many reads, in both framings.
    let (code, body) = curl(&[&url("/big-chunked")]);
    assert_eq!((code, body.len()), (200, 64 * 0x4000));
    assert!(body.starts_with('A') && body.ends_with('L'));
    let (code, body) = curl(&[&url("/big")]);
    assert_eq!((code, body.len()), (200, 1 << 20));
    assert!(body.starts_with('a') && body.ends_with('l'));
    // A body that ends when the backend closes: the client is told the connection closes too.
    let (code, body) = curl(&["-i", &url("/until-close")]);
    assert_eq!(code, 200);
    assert!(body.to_ascii_lowercase().contains("connection: close"), "{body}");
    assert!(body.ends_with("the body ends when the backend closes"), "{body}");
    // 1xx before the response is passed on; curl shows the final response.
    let (code, body) = curl(&["-i", &url("/early")]);
    assert_eq!(code, 200);
    assert!(
        body.starts_with("HTTP/1.1 103") && body.contains("Link: </style.css>"),
        "{body}"
    );
    assert!(body.ends_with("final"), "{body}");
    // Hop-by-hop response fields stay behind, the rest comes through.
    let (code, head) = curl(&["-i", &url("/hop")]);
    let head = head.to_ascii_lowercase();
    assert_eq!(code, 200);
    assert!(head.contains("x-kept: 1"), "{head}");
    assert!(
        !head.contains("x-hop") && !head.contains("keep-alive: timeout"),
        "{head}"
    );
    // HEAD: the length is announced, no body follows (curl would hang waiting otherwise).
    let (code, head) = curl(&["-I", &url("/head")]);
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("content-length:"), "{head}");

    // A backend that closes kept-alive connections: every request still gets its answer, on a
    // new connection when the pooled one turns out to be closed.
    for i in 0..20 {
        assert_eq!(curl(&[&url("/drop")]), (200, "dropped".to_owned()), "request {i}");
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // Upstream connections are reused across client connections.
    let before: u32 = curl(&[&url("/connections")]).1.parse().unwrap();
    for _ in 0..10 {
        assert_eq!(curl(&[&url("/echo")]).0, 200);
    }
    let after: u32 = curl(&[&url("/connections")]).1.parse().unwrap();
    assert!(
        after <= before + 1,
        "{before} → {after} backend connections for 11 requests"
    );

    // One client connection: two pipelined requests, one with a body, then one with a chunked
    // body (hyper's), then more on the same connection, now served by hyper.
    let mut conn = TcpStream::connect(ALB).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(
        b"GET /one?q=1 HTTP/1.1\r\nHost: web.test\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: X-Drop\r\nX-Drop: 1\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: web.test\r\nX-Request-ID: trace-me\r\n\r\n",
    )
    .unwrap();
    let (head, one) = read_response(&mut conn);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let one = String::from_utf8_lossy(&one).to_ascii_lowercase();
    assert!(one.starts_with("get /one?q=1 http/1.1\r\n"), "{one}");
    assert!(
        one.contains("x-forwarded-for: 127.0.0.1\r\n"),
        "a client's X-Forwarded-For is replaced: {one}"
    );
    assert!(!one.contains("6.6.6.6") && !one.contains("x-drop"), "{one}");
    assert!(
        one.contains("x-forwarded-host: web.test\r\n") && one.contains("x-forwarded-port: 8080\r\n"),
        "{one}"
    );
    assert!(one.contains("x-request-id: "), "{one}");
    let (_, two) = read_response(&mut conn);
    let two = String::from_utf8_lossy(&two).into_owned();
    assert!(
        two.starts_with("GET /two HTTP/1.1\r\n") && two.contains("X-Request-ID: trace-me\r\n"),
        "{two}"
    );

    // The body arrives in two pieces: the second is read from the socket, not with the head.
    conn.write_all(b"POST /three HTTP/1.1\r\nHost: web.test\r\nContent-Length: 11\r\n\r\nhello")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    conn.write_all(b" there").unwrap();
    let (head, three) = read_response(&mut conn);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let three = String::from_utf8_lossy(&three).to_ascii_lowercase();
    assert!(
        three.starts_with("post /three http/1.1\r\n") && three.ends_with("body:hello there"),
        "{three}"
    );
    assert!(three.contains("x-forwarded-for: 127.0.0.1\r\n"), "{three}");
    conn.write_all(
        b"PUT /chunks HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    let (head, chunks) = read_response(&mut conn);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let chunks = String::from_utf8_lossy(&chunks).to_ascii_lowercase();
    assert!(
        chunks.starts_with("put /chunks http/1.1\r\n") && chunks.ends_with("body:abc"),
        "{chunks}"
    );
    for path in ["/four", "/five"] {
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: web.test\r\n\r\n").as_bytes())
            .unwrap();
        let (head, body) = read_response(&mut conn);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let body = String::from_utf8_lossy(&body).to_ascii_lowercase();
        assert!(body.starts_with(&format!("get {path} http/1.1\r\n")), "{body}");
    }

    // A large body is streamed to the backend as it arrives.
    let upload = dir.path().join("upload.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&upload, &payload).unwrap();
    let data = format!("@{}", upload.display());
    let (code, echoed) = curl(&["-H", "Expect:", "--data-binary", &data, &url("/upload")]);
    assert_eq!(code, 200);
    let body = echoed.split_once("BODY:").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(body.len(), payload.len(), "whole body relayed");
    assert!(body.as_bytes() == payload.as_slice(), "body relayed unchanged");
    // Over the default body limit (1 MiB): 413 without reading it, and the connection closes.
    let mut conn = TcpStream::connect(ALB).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"POST /huge HTTP/1.1\r\nHost: web.test\r\nContent-Length: 2000000\r\n\r\nstart")
        .unwrap();
    let (head, _) = read_response(&mut conn);
    assert!(
        head.starts_with("http/1.1 413") && head.contains("connection: close"),
        "{head}"
    );

    // `Connection: close` is honoured: the answer says so and the connection ends.
    let mut conn = TcpStream::connect(ALB).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /last HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut conn);
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0, "closed after the response");

    // Malformed heads are hyper's to refuse, with 400.
    let mut conn = TcpStream::connect(ALB).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost web.test\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}
