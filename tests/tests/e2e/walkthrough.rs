//! The README walkthrough, step by step: `mzlb up`, dig, curl, disable/enable, kill/restart.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Proc, bin, curl, dig, field, poll, run, signal, tempdir};

const ALL: [&str; 3] = ["127.0.10.1", "127.0.10.2", "127.0.10.3"];
const WITHOUT_ALB2: [&str; 2] = ["127.0.10.1", "127.0.10.3"];

fn mzlb(state: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = run(Command::new(bin("mzlb")).args(args).env("MZLB_STATE_DIR", state));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn readme_walkthrough() {
    let state = tempdir();
    // The demo's fixed ALB addresses; DNS on an address of its own so a user's `mzlb up` on
    // 127.0.0.1:5353 does not collide, and the control API on any free port.
    let dns: SocketAddr = "127.0.31.1:5353".parse().unwrap();
    let mut up = Proc::start(
        "mzlb up",
        Command::new(bin("mzlb"))
            .args(["up", "--dns-listen", "127.0.31.1:5353", "--api-listen", "127.0.31.1:0"])
            .env("MZLB_STATE_DIR", state.path()),
    );

    // 2. dig → NOERROR, aa, the three ALB IPs.
    let answer = poll(Duration::from_secs(30), || {
        Some(dig(dns, "demo.mzlb.test", "A", &[])).filter(|d| d.answers == ALL)
    })
    .unwrap_or_else(|| panic!("DNS never answered the three ALBs; mzlb up said:\n{}", up.output()));
    assert_eq!(answer.status, "NOERROR");
    assert!(
        answer.flags.contains(&"aa".to_owned()),
        "authoritative answer: {:?}",
        answer.flags
    );
    assert!(
        !answer.flags.contains(&"ra".to_owned()),
        "no recursion offered: {:?}",
        answer.flags
    );
    poll(Duration::from_secs(5), || {
        up.output()
            .contains("dig @127.0.31.1 -p 5353 demo.mzlb.test")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("up prints the commands to try:\n{}", up.output()));

    // 3. curl through alb2 → zone-2's app; X-Forwarded-For is the client, REMOTE_ADDR the ALB.
    let (code, page) = curl(&[
        "--resolve",
        "demo.mzlb.test:8080:127.0.10.2",
        "http://demo.mzlb.test:8080/",
    ]);
    assert_eq!(code, 200, "{page}");
    assert!(
        field(&page, "Hostname").is_some_and(|h| h.starts_with("web-zone-2-")),
        "{page}"
    );
    assert_eq!(field(&page, "REMOTE_ADDR"), Some("127.0.10.2"), "{page}");
    assert_eq!(field(&page, "X-Forwarded-For"), Some("127.0.0.1"), "{page}");
    assert_eq!(field(&page, "X-Forwarded-Proto"), Some("http"), "{page}");
    assert_eq!(field(&page, "X-Forwarded-Host"), Some("demo.mzlb.test:8080"), "{page}");
    // From another source address, with a forged header that must not be believed.
    let (code, page) = curl(&[
        "--interface",
        "127.0.0.77",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "--resolve",
        "demo.mzlb.test:8080:127.0.10.2",
        "http://demo.mzlb.test:8080/",
    ]);
    assert_eq!(code, 200, "{page}");
    assert_eq!(field(&page, "X-Forwarded-For"), Some("127.0.0.77"), "{page}");

    // The demo also terminates TLS (with the generated default certificate).
    let (code, page) = curl(&[
        "-k",
        "--resolve",
        "demo.mzlb.test:8443:127.0.10.2",
        "https://demo.mzlb.test:8443/",
    ]);
    assert_eq!(
        (code, field(&page, "X-Forwarded-Proto")),
        (200, Some("https")),
        "{page}"
    );

    // 4. Disable alb2 → gone from DNS within a second; albs shows it; enable → back.
    let start = Instant::now();
    let (ok, said) = mzlb(state.path(), &["alb-configure", "--alb-id", "alb2", "--disable"]);
    assert!(ok, "{said}");
    poll(Duration::from_secs(1), || {
        (dig(dns, "demo.mzlb.test", "A", &[]).answers == WITHOUT_ALB2).then_some(())
    })
    .unwrap_or_else(|| panic!("alb2 still answered {:?} after disable", start.elapsed()));
    let (ok, table) = mzlb(state.path(), &["albs"]);
    assert!(ok, "{table}");
    let alb2 = table
        .lines()
        .find(|l| l.starts_with("alb2"))
        .unwrap_or_else(|| panic!("no alb2 row:\n{table}"));
    let cells: Vec<&str> = alb2.split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        ["alb2", "false", "draining", "no", "127.0.10.2"],
        "{table}"
    );
    assert!(table.contains("cluster demo: fail-open"), "{table}");
    // Draining: out of DNS, but still serving clients that hold the old answer.
    let (code, _) = curl(&[
        "--resolve",
        "demo.mzlb.test:8080:127.0.10.2",
        "http://demo.mzlb.test:8080/",
    ]);
    assert_eq!(code, 200, "a draining ALB keeps serving");
    let (ok, json) = mzlb(state.path(), &["albs", "-o", "json"]);
    assert!(ok, "{json}");
    let albs: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(albs.as_array().map(Vec::len), Some(3), "{json}");
    let (ok, said) = mzlb(state.path(), &["alb-configure", "--alb-id", "alb2", "--enable"]);
    assert!(ok, "{said}");
    poll(Duration::from_secs(2), || {
        (dig(dns, "demo.mzlb.test", "A", &[]).answers == ALL).then_some(())
    })
    .expect("alb2 back in DNS after enable");
    let (ok, said) = mzlb(state.path(), &["alb-configure", "--alb-id", "nope", "--disable"]);
    assert!(!ok && said.contains("unknown ALB `nope`"), "{said}");
    let (ok, events) = mzlb(state.path(), &["events"]);
    assert!(ok, "{events}");
    let alb2: Vec<&str> = events.lines().filter(|l| l.contains(" alb2 ")).collect();
    assert!(
        alb2.iter()
            .any(|l| l.contains("enabled") && l.contains("draining") && l.contains("disabled by operator")),
        "{events}"
    );
    assert!(
        alb2.iter()
            .any(|l| l.contains("draining") && l.contains("pending") && l.contains("enabled by operator")),
        "{events}"
    );
    // IBM's health-check convention for monitors.
    assert_eq!(
        curl(&["-H", "Host: albhealth.demo.mzlb.test", "http://127.0.10.3:8080/"]),
        (200, "healthy\n".to_owned())
    );

    // 5. Kill alb2's process → health checks drop it; start it again → back.
    let pids: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("processes.json")).unwrap()).unwrap();
    let pid = pids["alb2"].as_u64().expect("alb2 pid") as u32;
    signal(pid, "KILL");
    poll(Duration::from_secs(5), || {
        (dig(dns, "demo.mzlb.test", "A", &[]).answers == WITHOUT_ALB2).then_some(())
    })
    .unwrap_or_else(|| panic!("killed alb2 still in DNS; mzlb up said:\n{}", up.output()));
    let (code, _) = curl(&[
        "--resolve",
        "demo.mzlb.test:8080:127.0.10.1",
        "http://demo.mzlb.test:8080/",
    ]);
    assert_eq!(code, 200, "the other zones keep serving");
    let manifests = state.path().join("demo");
    let mut alb2 = Proc::start(
        "alb2 again",
        Command::new(bin("mzlb"))
            .args(["zone-alb", "--alb-id", "alb2", "--manifests"])
            .arg(&manifests),
    );
    poll(Duration::from_secs(5), || {
        (dig(dns, "demo.mzlb.test", "A", &[]).answers == ALL).then_some(())
    })
    .unwrap_or_else(|| panic!("restarted alb2 not back in DNS; it said:\n{}", alb2.output()));
    assert!(alb2.terminate(), "zone ALB stops on SIGTERM");

    // Ctrl-C (SIGTERM here) stops everything `up` started.
    assert!(up.terminate(), "mzlb up did not stop:\n{}", up.output());
    let (code, _) = curl(&[
        "--resolve",
        "demo.mzlb.test:8080:127.0.10.1",
        "http://demo.mzlb.test:8080/",
    ]);
    assert_eq!(code, 0, "alb1 still serving after mzlb up stopped");
}
