//! Buffer knobs through a running zone-alb: `proxy-buffer-size` turns an oversize response head
//! into 502; `proxy-request-buffering: on` holds a slow client's body until it is complete
//! (the backend never sees part of it), and a body beyond `client-body-buffer-size` goes
//! through a temporary file and arrives intact. A streamed route, for contrast, passes the
//! first half at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{curl, poll, tempdir, write, zone_alb};
use crate::snippets::{backend, checksum, ingress, site};

const ALB_IP: &str = "127.0.76.1";
const ALB: &str = "127.0.76.1:8080";

fn fetch(host: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:8080{path}");
    let resolve = format!("{host}:8080:{ALB_IP}");
    let mut args = vec!["--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// Sends the head and the first half of a 10-byte body; the caller sends the rest.
fn half_upload(host: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(ALB).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\nConnection: close\r\n\r\n12345"
    )
    .unwrap();
    s
}

fn finish(mut s: TcpStream) -> String {
    s.write_all(b"67890").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn buffer_knobs_through_a_running_zone_alb() {
    let seen = backend("127.0.76.11:9080");
    let dir = tempdir();
    let docs = [
        site(ALB_IP, "127.0.76.11", false),
        ingress("head", "head.test", "/", &[("proxy-buffer-size", "4k")]),
        ingress("roomy", "roomy.test", "/", &[("proxy-buffer-size", "16k")]),
        ingress(
            "buffered",
            "buffered.test",
            "/",
            &[("proxy-request-buffering", "on"), ("proxy-body-size", "8m")],
        ),
        ingress("streamed", "streamed.test", "/", &[("proxy-body-size", "8m")]),
    ];
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let alb = zone_alb(dir.path(), &[], &format!("http://{ALB}/healthz"));

    // proxy-buffer-size: a 6 kB head is too big for 4k (502), fits 16k.
    assert_eq!(fetch("head.test", "/big-head", &[]).0, 502, "{}", alb.output());
    assert_eq!(fetch("head.test", "/", &[]).0, 200);
    assert_eq!(fetch("roomy.test", "/big-head", &[]).0, 200);

    // Streamed (mzlb's default): the backend has the request while the client still sends.
    let s = half_upload("streamed.test", "/stream");
    poll(Duration::from_secs(5), || {
        seen.events().contains(&"head POST /stream".to_owned()).then_some(())
    })
    .expect("a streamed request reaches the backend before its body is complete");
    assert!(finish(s).starts_with("HTTP/1.1 200"));

    // Buffered: nothing reaches the backend until the body is complete.
    let s = half_upload("buffered.test", "/slow");
    let early = poll(Duration::from_millis(700), || {
        seen.events().iter().any(|e| e.contains("/slow")).then_some(())
    });
    assert!(early.is_none(), "the backend saw a partial body: {:?}", seen.events());
    let answer = finish(s);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let events = seen.events();
    assert!(
        events.contains(&format!("body /slow 10 {}", checksum(b"1234567890"))),
        "{events:?}"
    );
    assert!(answer.contains("content-length: 10"), "sent with a length: {answer}");

    // A body far beyond client-body-buffer-size (8k) goes through a temporary file, intact.
    let body: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());
    let (status, text) = fetch(
        "buffered.test",
        "/big",
        &["--data-binary", &data, "-H", "Content-Type: application/octet-stream"],
    );
    assert_eq!(status, 200, "{text}");
    let events = seen.events();
    assert!(
        events.contains(&format!("body /big {} {}", body.len(), checksum(&body))),
        "{:?}",
        events.iter().filter(|e| e.contains("/big")).collect::<Vec<_>>()
    );
    // Chunked uploads are buffered too, and sent on with a length.
    let (status, text) = fetch(
        "buffered.test",
        "/chunked",
        &["--data-binary", &data, "-H", "Transfer-Encoding: chunked"],
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!("content-length: {}", body.len())),
        "{}",
        &text[..text.len().min(400)]
    );
    assert!(!text.contains("transfer-encoding"), "{}", &text[..text.len().min(400)]);
}
