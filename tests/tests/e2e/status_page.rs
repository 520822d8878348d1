//! The status page in a real browser: `mzlb up` with the demo (moved to addresses of its own),
//! headless Chromium opening the page `up` prints, the three ALBs with their states, a click
//! on alb2's Disable button (token entered first), and DNS following on the page and in `dig`
//! within a second. Leaves a screenshot in the target directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::Browser;
use crate::harness::{Proc, bin, curl, dig, poll, run, tempdir, write};

const DNS: &str = "127.0.102.1:5353";
const ALL: [&str; 3] = ["127.0.100.1", "127.0.100.2", "127.0.100.3"];
const WITHOUT_ALB2: [&str; 2] = ["127.0.100.1", "127.0.100.3"];

/// Where the screenshots go: the test artefacts directory Cargo gives integration tests.
fn artefact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("status-page")
        .join(name)
}

/// The ALB cards as the page shows them: (id, state word).
const CARDS: &str = "if (document.body.dataset.loaded !== 'true') return null;
    return [...document.querySelectorAll('.alb')].map(e => [e.id, e.querySelector('.state').textContent]);";

/// The A records the page shows for cluster `demo`.
const SHOWN_ANSWER: &str = "const dd = document.querySelector('#dns-demo .answer-a');
    return dd ? [...dd.querySelectorAll('.addr')].map(e => e.textContent).sort() : null;";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn status_page_shows_the_zones_and_disabling_alb2_moves_dns() {
    // The built-in demo on this test's addresses: ALBs 127.0.100.x, backends 127.0.101.x.
    let demo = run(Command::new(bin("mzlb")).args(["up", "--print-manifests"]));
    let manifests = String::from_utf8(demo.stdout)
        .unwrap()
        .replace("127.0.10.", "127.0.100.")
        .replace("127.0.20.", "127.0.101.");
    let dir = tempdir();
    let state = tempdir();
    write(dir.path(), "demo.yaml", &manifests);
    let up = Proc::start(
        "mzlb up",
        Command::new(bin("mzlb"))
            .args([
                "up",
                "--dns-listen",
                DNS,
                "--api-listen",
                "127.0.102.1:0",
                "--manifests",
            ])
            .arg(dir.path())
            .env("MZLB_STATE_DIR", state.path()),
    );
    let dns: SocketAddr = DNS.parse().unwrap();
    poll(Duration::from_secs(30), || {
        Some(dig(dns, "demo.mzlb.test", "A", &[])).filter(|d| d.answers == ALL)
    })
    .unwrap_or_else(|| panic!("DNS never answered the three ALBs; mzlb up said:\n{}", up.output()));
    let api: Value = serde_json::from_slice(&std::fs::read(state.path().join("api.json")).unwrap()).unwrap();
    let (url, token) = (api["url"].as_str().unwrap(), api["token"].as_str().unwrap());
    // `up` tells a newcomer where the page is.
    poll(Duration::from_secs(5), || {
        up.output().contains(&format!("Status page: {url}/")).then_some(())
    })
    .unwrap_or_else(|| panic!("up prints the page's address:\n{}", up.output()));
    // The JSON the page renders is open to read; changing needs the token.
    let (code, status) = curl(&[&format!("{url}/v1/status")]);
    assert_eq!(code, 200, "{status}");
    let (code, _) = curl(&[
        "-X",
        "PATCH",
        "-H",
        "Origin: http://evil.example",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--data",
        r#"{"enabled": false}"#,
        &format!("{url}/v1/albs/alb1"),
    ]);
    assert_eq!(code, 403, "a cross-origin change is refused even with the token");

    // `mzlb albs --watch` follows the same stream: a line per change (JSON lines with -o json).
    let watch = Proc::start(
        "mzlb albs --watch",
        Command::new(bin("mzlb"))
            .args(["albs", "--watch", "-o", "json"])
            .env("MZLB_STATE_DIR", state.path()),
    );

    let browser = Browser::start(1280, 1500);
    browser.goto(&format!("{url}/"));
    let cards = poll(Duration::from_secs(10), || {
        let cards = browser.eval(CARDS);
        let all_enabled = cards
            .as_array()
            .is_some_and(|c| c.len() == 3 && c.iter().all(|c| c[1] == "enabled"));
        all_enabled.then_some(cards)
    })
    .unwrap_or_else(|| panic!("the page never showed three enabled ALBs: {}", browser.eval(CARDS)));
    let ids: Vec<&str> = cards
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alb-alb1", "alb-alb2", "alb-alb3"]);
    let zones = strings(&browser.eval("return [...document.querySelectorAll('.zone h3')].map(e => e.textContent);"));
    assert_eq!(zones, ["zone-1", "zone-2", "zone-3"]);
    assert_eq!(strings(&browser.eval(SHOWN_ANSWER)), ALL);
    assert_eq!(
        browser.eval("return document.querySelector('#live').textContent;"),
        "live",
        "following the event stream"
    );

    // The token, entered once; then Disable on alb2 and the confirmation naming what DNS
    // will answer afterwards.
    browser.type_into("#token", token);
    browser.click("#token-save", Duration::from_secs(5));
    browser.click(
        r#"button[data-action="disable"][data-alb="alb2"]"#,
        Duration::from_secs(5),
    );
    let confirm = browser.eval(
        "return document.querySelector('#confirm').hidden ? null : document.querySelector('#confirm-text').textContent;",
    );
    let confirm = confirm.as_str().unwrap_or_else(|| panic!("no confirmation shown"));
    let after = strings(
        &browser.eval("return [...document.querySelectorAll('#confirm-text .addr')].map(e => e.textContent).sort();"),
    );
    assert_eq!(
        after, WITHOUT_ALB2,
        "the confirmation says what DNS will answer: {confirm}"
    );
    browser.click("#confirm-yes", Duration::from_secs(5));
    let clicked = Instant::now();
    // Within a second: gone from the answer on the page and from the real DNS server.
    let (mut on_page, mut in_dig) = (None, None);
    poll(Duration::from_secs(1), || {
        if on_page.is_none() && strings(&browser.eval(SHOWN_ANSWER)) == WITHOUT_ALB2 {
            on_page = Some(clicked.elapsed());
        }
        if in_dig.is_none() && dig(dns, "demo.mzlb.test", "A", &[]).answers == WITHOUT_ALB2 {
            in_dig = Some(clicked.elapsed());
        }
        (on_page.is_some() && in_dig.is_some()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "within 1 s of the click: page {on_page:?} ({:?}), dig {in_dig:?} ({:?}); message: {}",
            browser.eval(SHOWN_ANSWER),
            dig(dns, "demo.mzlb.test", "A", &[]).answers,
            browser.eval("return document.querySelector('#message').textContent;")
        )
    });
    eprintln!("alb2 left the page's answer after {on_page:?} and dig's after {in_dig:?}");
    let watched = poll(Duration::from_secs(1), || {
        watch.output().lines().rev().find_map(|line| {
            let albs: Value = serde_json::from_str(line).ok()?;
            let alb2 = albs.as_array()?.iter().find(|a| a["id"] == "alb2")?.clone();
            (alb2["enabled"] == false).then_some(alb2)
        })
    })
    .unwrap_or_else(|| panic!("`mzlb albs --watch` did not redraw:\n{}", watch.output()));
    assert_eq!(watched["in_dns"], false, "{watched}");
    let alb2 = browser.eval("return document.querySelector('#alb-alb2 .state').textContent;");
    assert!(alb2 == "draining" || alb2 == "disabled", "alb2 is {alb2}");
    // The event history, newest first, names the operator.
    let first_event = browser.eval("return document.querySelector('#events tr').textContent;");
    assert!(
        first_event
            .as_str()
            .is_some_and(|e| e.contains("alb2") && e.contains("disabled by operator")),
        "{first_event}"
    );

    let shot = artefact("desktop.png");
    let bytes = browser.screenshot(&shot);
    assert!(bytes > 20_000, "a real rendering, not a blank page: {bytes} bytes");
    eprintln!("screenshot: {}", shot.display());

    // Live without a reload: a change made elsewhere (the CLI's API call) shows up by itself.
    let (code, body) = curl(&[
        "-X",
        "PATCH",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--data",
        r#"{"enabled": false}"#,
        &format!("{url}/v1/albs/alb3"),
    ]);
    assert_eq!(code, 200, "{body}");
    poll(Duration::from_secs(1), || {
        (strings(&browser.eval(SHOWN_ANSWER)) == ["127.0.100.1"]).then_some(())
    })
    .unwrap_or_else(|| panic!("the page did not follow within 1 s: {}", browser.eval(SHOWN_ANSWER)));

    // Phone width: everything fits, nothing scrolls sideways, states are words.
    browser.resize(390, 844);
    let overflow = poll(Duration::from_secs(5), || {
        let v = browser
            .eval("return document.documentElement.scrollWidth <= window.innerWidth + 1 ? window.innerWidth : null;");
        v.as_u64()
    });
    assert!(
        overflow.is_some(),
        "the page scrolls sideways at phone width: {} > {}",
        browser.eval("return document.documentElement.scrollWidth;"),
        browser.eval("return window.innerWidth;")
    );
    browser.screenshot(&artefact("phone.png"));
}
