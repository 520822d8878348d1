//! `ssl-passthrough` through a running zone-alb: TLS for a pass-through host is spliced to the
//! backend (a tokio-rustls server with its own certificate), whatever the ClientHello's shape;
//! other names are still terminated by the ALB.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{curl, echo, service, single_alb_site, tempdir, write, zone_alb};
use crate::tls_annotations::{Ca, https_backend, ingress};

/// The subject openssl s_client shows for `servername` at `addr`.
fn subject(addr: &str, servername: &str) -> String {
    let mut child = Command::new("timeout")
        .args([
            "5",
            "openssl",
            "s_client",
            "-brief",
            "-connect",
            addr,
            "-servername",
            servername,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // -brief writes the peer's subject to stderr.
    let mut out = String::new();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = child.wait();
    let subject = out
        .lines()
        .find_map(|l| l.strip_prefix("Peer certificate:"))
        .unwrap_or("none");
    subject.replace(' ', "")
}

#[test]
fn passthrough_hosts_reach_the_backends_own_tls() {
    let dir = tempdir();
    let ca = Ca::new("backend-ca");
    let (_, _, cert, key) = ca.leaf("backend", &["pass.test"]);
    let ca_pem = write(dir.path(), "certs/ca.pem", &ca.cert.pem());
    https_backend("127.0.85.11:9080", cert, key, ca.cert.der().clone());
    let _web = echo("127.0.85.12:9080", "web");
    let mut docs = single_alb_site("127.0.85.1", Some(8443), "127.0.85.11");
    docs.extend([
        service("web", &["127.0.85.12"], 9080),
        ingress("pass", "pass.test", &[("ssl-passthrough", "true")]),
        ingress("other", "other.test", &[]).replace("name: app", "name: web"),
    ]);
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let alb = zone_alb(dir.path(), &[], "http://127.0.85.1:8080/healthz");

    // The backend's certificate, verified against its CA, and the backend's answer: it saw
    // the client's SNI itself.
    let (code, body) = curl(&[
        "--cacert",
        ca_pem.to_str().unwrap(),
        "--resolve",
        "pass.test:8443:127.0.85.1",
        "https://pass.test:8443/",
    ]);
    assert_eq!(
        (code, body.as_str()),
        (200, "sni: pass.test\nclient: -\n"),
        "{}",
        alb.output()
    );
    assert!(subject("127.0.85.1:8443", "pass.test").contains("CN=backend"));
    assert!(subject("127.0.85.1:8443", "PASS.test").contains("CN=backend"));
    // Another name is terminated here, with the ALB's certificate, and served by its rules.
    assert!(subject("127.0.85.1:8443", "other.test").contains("mzlb-default-certificate"));
    let (code, body) = curl(&[
        "-k",
        "--resolve",
        "other.test:8443:127.0.85.1",
        "https://other.test:8443/",
    ]);
    assert_eq!(code, 200, "{body}");
    // A wildcard-looking or unknown name is not passed through either.
    assert!(subject("127.0.85.1:8443", "x.pass.test").contains("mzlb-default-certificate"));

    // A ClientHello split over TCP segments and over TLS records still reaches the backend.
    let hello_then = |records: usize, gap: bool| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("pass.test").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        // Re-framed into `records` handshake records.
        let message = &hello[5..];
        let size = message.len().div_ceil(records);
        let mut framed = Vec::new();
        for chunk in message.chunks(size) {
            framed.extend([22, 3, 1]);
            framed.extend((chunk.len() as u16).to_be_bytes());
            framed.extend(chunk);
        }
        let mut tcp = TcpStream::connect("127.0.85.1:8443").unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (first, rest) = framed.split_at(framed.len() / 3);
        tcp.write_all(first).unwrap();
        if gap {
            // Not for correctness: so the two halves arrive as two segments.
            std::thread::sleep(Duration::from_millis(50));
        }
        tcp.write_all(rest).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n")?;
        let mut answer = [0u8; 512];
        let n = tls.read(&mut answer)?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer[..n]).into_owned())
    };
    for (records, gap) in [(1, true), (3, false), (3, true)] {
        let answer = hello_then(records, gap).unwrap_or_else(|e| panic!("{records} records: {e}"));
        assert!(answer.ends_with("sni: pass.test\nclient: -\n"), "{answer}");
    }

    // Plain HTTP to the host is served by the Ingress's rules, as on ingress-nginx's port 80
    // (here a TLS backend, which cannot answer it).
    let (code, _) = curl(&["-H", "Host: pass.test", "http://127.0.85.1:8080/"]);
    assert_eq!(code, 502);
}
