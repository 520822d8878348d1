//! Real failures across network namespaces: one namespace per zone (its ALB on the portable
//! IP, plus a backend), one for `mzlb serve`, one for a client running the real `dig` and
//! `curl`. Each scenario asserts the DNS answer changes within its bound and comes back after
//! the repair.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Proc, bin, poll, run, signal, tempdir, write};
use crate::netns::Net;

const LB: &str = "198.18.0.2";
const ZONES: [&str; 3] = ["198.18.0.11", "198.18.0.12", "198.18.0.13"];

fn manifests(ttl: u32) -> String {
    let mut docs = vec![format!(
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {{name: app}}\n\
         spec: {{subdomain: app.mz.test, ttl: {ttl}, drainSeconds: 3, health: {{intervalMs: 200, timeoutMs: 150, rise: 2, fall: 3}}}}\n"
    )];
    let mut endpoints = String::new();
    for (i, ip) in ZONES.iter().enumerate() {
        let n = i + 1;
        docs.push(format!(
            "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: alb{n}}}\nspec: {{zone: zone-{n}, ip: {ip}, port: 80}}\n"
        ));
        endpoints.push_str(&format!(
            "- {{addresses: [{ip}], hints: {{forZones: [{{name: zone-{n}}}]}}}}\n"
        ));
    }
    docs.push("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80}]}\n".into());
    docs.push(format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 9080}}]\nendpoints:\n{endpoints}"
    ));
    docs.push(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  ingressClassName: mzlb\n  \
         defaultBackend: {service: {name: web, port: {name: http}}}\n"
            .into(),
    );
    docs.join("---\n")
}

/// The whole test network with everything running.
struct Site {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    zones: Vec<String>,
    client: String,
    albs: Vec<Option<Proc>>,
    _backends: Vec<Proc>,
    _serve: Proc,
    net: Net,
}

impl Site {
    fn start(ttl: u32) -> Site {
        let dir = tempdir();
        let state = tempdir();
        write(dir.path(), "app.yaml", &manifests(ttl));
        let mut net = Net::new();
        let lb = net.host("lb", &format!("{LB}/24"));
        let client = net.host("client", "198.18.0.100/24");
        let zones: Vec<String> = ZONES
            .iter()
            .enumerate()
            .map(|(i, ip)| net.host(&format!("z{}", i + 1), &format!("{ip}/24")))
            .collect();
        let backends = zones
            .iter()
            .zip(ZONES)
            .map(|(ns, ip)| {
                Proc::start(
                    "backend",
                    Net::exec(ns, &bin("mzlb")).args(["echo", "--listen", &format!("{ip}:9080"), "--name", ns]),
                )
            })
            .collect();
        let albs = (0..3).map(|i| Some(Self::alb(&zones[i], i, dir.path()))).collect();
        let serve = Proc::start(
            "mzlb serve",
            Net::exec(&lb, &bin("mzlb"))
                .args([
                    "serve",
                    "--dns-listen",
                    &format!("{LB}:53"),
                    "--api-listen",
                    "127.0.0.1:9901",
                    "--manifests",
                ])
                .arg(dir.path())
                .env("MZLB_STATE_DIR", state.path()),
        );
        let site = Site {
            dir,
            state,
            zones,
            client,
            albs,
            _backends: backends,
            _serve: serve,
            net,
        };
        site.expect(&ZONES, Duration::from_secs(20), "start-up");
        site
    }

    fn alb(ns: &str, i: usize, dir: &Path) -> Proc {
        Proc::start(
            &format!("alb{}", i + 1),
            Net::exec(ns, &bin("zone-alb"))
                .args(["--alb-id", &format!("alb{}", i + 1), "--manifests"])
                .arg(dir),
        )
    }

    /// The A answer for the cluster as the client gets it (in the server's rotated order),
    /// asked from the client namespace.
    fn resolve(&self) -> Vec<String> {
        let dig = Net::exec(&self.client, Path::new("dig"))
            .args(["+short", "+time=1", "+tries=1", &format!("@{LB}"), "app.mz.test", "A"])
            .output()
            .expect("running dig in the client namespace");
        String::from_utf8_lossy(&dig.stdout)
            .lines()
            .filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
            .map(str::to_owned)
            .collect()
    }

    /// The sorted A answer.
    fn answer(&self) -> Vec<String> {
        let mut ips = self.resolve();
        ips.sort();
        ips
    }

    /// Waits until the answer is `want`; returns how long that took.
    fn expect(&self, want: &[&str], within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        poll(within, || (self.answer() == want).then_some(())).unwrap_or_else(|| {
            panic!(
                "{what}: DNS answered {:?}, not {want:?}, after {within:?}; serve said:\n{}",
                self.answer(),
                self._serve.output()
            )
        });
        start.elapsed()
    }

    fn mzlb(&self, args: &[&str]) -> String {
        let out = run(Net::exec(&self.client.replace("client", "lb"), &bin("mzlb"))
            .args(args)
            .env("MZLB_STATE_DIR", self.state.path()));
        assert!(
            out.status.success(),
            "mzlb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn without(i: usize) -> Vec<&'static str> {
    ZONES
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, ip)| *ip)
        .collect()
}

#[test]
fn zone_failures_leave_dns_within_a_second_and_come_back() {
    let mut site = Site::start(5);
    let bound = Duration::from_millis(2500); // detection is fall × interval ≈ 0.6 s; slack for CI
    let back = Duration::from_secs(3);

    // 1. The ALB process dies.
    let pid = site.albs[1].as_ref().unwrap().pid();
    signal(pid, "KILL");
    let took = site.expect(&without(1), bound, "kill alb2");
    eprintln!("kill → gone: {took:?}");
    site.albs[1] = Some(Site::alb(&site.zones[1], 1, site.dir.path()));
    site.expect(&ZONES, back, "alb2 restarted");

    // 2. The ALB hangs: the kernel still accepts connections, nothing answers.
    let pid = site.albs[0].as_ref().unwrap().pid();
    signal(pid, "STOP");
    let took = site.expect(&without(0), bound, "SIGSTOP alb1");
    eprintln!("hang → gone: {took:?}");
    signal(pid, "CONT");
    site.expect(&ZONES, back, "SIGCONT alb1");

    // 3. The zone's link goes down.
    site.net.link(&site.zones[2], false);
    let took = site.expect(&without(2), bound, "zone-3 link down");
    eprintln!("link down → gone: {took:?}");
    site.net.link(&site.zones[2], true);
    site.expect(&ZONES, back, "zone-3 link up");

    // 4. /healthz slower than the probe timeout (a stand-in that answers 400 ms late).
    drop(site.albs[1].take());
    site.expect(&without(1), bound, "alb2 stopped for the slow stand-in");
    let slow = Proc::start(
        "slow alb2",
        Net::exec(&site.zones[1], &bin("mzlb")).args([
            "echo",
            "--listen",
            &format!("{}:80", ZONES[1]),
            "--name",
            "slow",
            "--delay-ms",
            "400",
        ]),
    );
    // Listening but too slow: must stay out for several probe rounds.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(site.answer(), without(1), "a slow ALB is not answered");
    drop(slow);
    site.albs[1] = Some(Site::alb(&site.zones[1], 1, site.dir.path()));
    site.expect(&ZONES, back, "alb2 fast again");

    // 5. A flapping link (down 150 ms in every ~0.9 s) never reaches `fall` failures in a
    // row: DNS stays stable.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        site.net.link(&site.zones[0], false);
        std::thread::sleep(Duration::from_millis(150));
        site.net.link(&site.zones[0], true);
        let answer = site.answer();
        assert_eq!(answer, ZONES, "flapping alb1 must not move DNS");
        std::thread::sleep(Duration::from_millis(750));
    }

    // 6. Every zone down: fail-open answers every enabled ALB rather than nothing.
    for ns in &site.zones {
        site.net.link(ns, false);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(site.answer(), ZONES, "fail-open");
    let albs = site.mzlb(&["albs"]);
    assert!(
        albs.lines().filter(|l| l.contains(" unhealthy ")).count() == 3,
        "{albs}"
    );
    for ns in &site.zones {
        site.net.link(ns, true);
    }
    site.expect(&ZONES, back, "all zones back");
    let events = site.mzlb(&["events"]);
    assert!(
        events.contains("unhealthy") && events.contains("probe: timed out"),
        "{events}"
    );
}

#[test]
fn planned_disable_loses_no_request() {
    let site = Site::start(1);
    // A client that honours the TTL: it resolves, uses the first address until the TTL runs
    // out, and counts every failed request.
    let client = |until: Instant| {
        let (mut ok, mut failed, mut cached, mut resolved_at) = (0, 0, Vec::<String>::new(), Instant::now());
        let mut turn = 0;
        while Instant::now() < until {
            if cached.is_empty() || resolved_at.elapsed() >= Duration::from_secs(1) {
                cached = site.resolve();
                resolved_at = Instant::now();
            }
            let Some(ip) = cached.get(turn % cached.len().max(1)).cloned() else {
                failed += 1;
                continue;
            };
            turn += 1;
            let out = run(Net::exec(&site.client, Path::new("curl")).args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                "--resolve",
                &format!("app.mz.test:80:{ip}"),
                "http://app.mz.test/",
            ]));
            if String::from_utf8_lossy(&out.stdout) == "200" {
                ok += 1
            } else {
                failed += 1
            }
        }
        (ok, failed)
    };
    std::thread::scope(|s| {
        let load = s.spawn(|| client(Instant::now() + Duration::from_secs(8)));
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        site.mzlb(&["alb-configure", "--alb-id", "alb2", "--disable"]);
        let took = site.expect(&without(1), Duration::from_millis(500), "disable alb2");
        eprintln!("disable → gone: {took:?} (bound includes one dig)");
        let row = site
            .mzlb(&["albs"])
            .lines()
            .find(|l| l.starts_with("alb2"))
            .map(str::to_owned)
            .unwrap();
        assert!(row.contains(" draining "), "{row}");
        poll(Duration::from_secs(6), || {
            let albs = site.mzlb(&["albs"]);
            albs.lines()
                .any(|l| l.starts_with("alb2") && l.contains(" disabled "))
                .then_some(())
        })
        .expect("draining ends in disabled after drainSeconds");
        assert!(
            start.elapsed() >= Duration::from_secs(3),
            "drained for at least drainSeconds"
        );
        site.mzlb(&["alb-configure", "--alb-id", "alb2", "--enable"]);
        site.expect(&ZONES, Duration::from_secs(2), "enable alb2 after rise probes");
        let (ok, failed) = load.join().unwrap();
        eprintln!("client loop: {ok} ok, {failed} failed");
        assert!(ok > 20, "the client loop ran ({ok} requests)");
        assert_eq!(failed, 0, "a planned disable loses no request");
    });
}
