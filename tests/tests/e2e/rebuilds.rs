//! Runtime state outlives routing tables: a `limit-rps` bucket is not refilled and an ejected
//! endpoint is not taken back while the manifest directory changes ten times a second (on a
//! cluster, every Service, EndpointSlice or Secret change rebuilds the table).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{echo, service, signal, single_alb_site, tempdir, write, zone_alb};
use crate::ingress::ingress;

const ALB: &str = "127.0.27.1:8080";

/// One request on a new connection, from `source`; the status code (0 if none came back).
fn status(source: &str, host: &str, method: &str) -> u16 {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    if socket.connect(&ALB.parse::<SocketAddr>().unwrap().into()).is_err() {
        return 0;
    }
    let mut conn: TcpStream = socket.into();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = if method == "POST" {
        "Content-Length: 1\r\n\r\nx"
    } else {
        "\r\n"
    };
    let request = format!("{method} / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{body}");
    if conn.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn limits_and_ejection_hold_while_the_table_is_rebuilt_ten_times_a_second() {
    let dir = tempdir();
    let manifests = [
        single_alb_site("127.0.27.1", None, "127.0.27.11"),
        vec![
            ingress(
                "limited",
                "limit.test",
                &[("limit-rps", "5"), ("limit-burst-multiplier", "1")],
                "/",
                "Prefix",
            ),
            // 127.0.27.13 has nothing listening: requests with a body sent there fail (502).
            service("flaky", &["127.0.27.13", "127.0.27.11"], 9080),
            ingress("retry", "retry.test", &[], "/", "Prefix").replace("name: app,", "name: flaky,"),
        ],
    ]
    .concat()
    .join("---\n");
    write(dir.path(), "site.yaml", &manifests);
    write(dir.path(), "churn.yaml", &service("churn", &["127.0.27.40"], 1));
    let _backend = echo("127.0.27.11:9080", "app");
    let alb = zone_alb(dir.path(), &["--workers", "2"], &format!("http://{ALB}/"));

    // Eject the dead endpoint: POSTs cannot be retried, so each one sent there fails, until
    // the third failure in a row ejects it.
    let mut failures = 0;
    for _ in 0..20 {
        if status("127.0.27.60", "retry.test", "POST") == 502 {
            failures += 1;
            if failures == 3 {
                break;
            }
        }
    }
    assert_eq!(failures, 3, "the dead endpoint failed three times:\n{}", alb.output());

    // Ten changes a second for ten seconds: a rewritten file and SIGHUP, each a rebuild.
    let (limited, after_ejection) = thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            let mut n = 0;
            while start.elapsed() < Duration::from_secs(10) {
                n += 1;
                write(dir.path(), "churn.yaml", &service("churn", &["127.0.27.40"], 1000 + n));
                signal(alb.pid(), "HUP");
                thread::sleep(Duration::from_millis(100));
            }
        });
        // Requests to the limited host, as fast as one client at a time goes (about 200/s).
        let limited = s.spawn(|| {
            let mut codes = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) && codes.len() < 5000 {
                codes.push(status("127.0.27.61", "limit.test", "GET"));
                thread::sleep(Duration::from_millis(5));
            }
            codes
        });
        // Requests with a body to the backend with the ejected endpoint, for eight seconds
        // (ejection lasts ten from the third failure).
        let ejected = s.spawn(|| {
            let mut codes = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(8) && codes.len() < 2000 {
                codes.push(status("127.0.27.62", "retry.test", "POST"));
                thread::sleep(Duration::from_millis(20));
            }
            codes
        });
        (limited.join().unwrap(), ejected.join().unwrap())
    });
    let reloads = alb.output().matches("routing table reloaded").count();
    assert!(reloads >= 50, "only {reloads} rebuilds:\n{}", alb.output());

    let ok = limited.iter().filter(|&&c| c == 200).count();
    let refused = limited.iter().filter(|&&c| c == 503).count();
    assert_eq!(ok + refused, limited.len(), "only 200 and 503: {limited:?}");
    // 5 a second for 10 s plus a burst of 5, with a little slack for the edges of the window;
    // a bucket refilled by every rebuild would let through up to 50 a second.
    assert!(
        (40..=60).contains(&ok),
        "{ok} of {} requests passed limit-rps 5 over 10 s with {reloads} rebuilds",
        limited.len()
    );
    let failed = after_ejection.iter().filter(|&&c| c != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests reached the ejected endpoint: {after_ejection:?}",
        after_ejection.len()
    );
}
