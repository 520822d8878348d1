//! Replicas that agree on health: three `mzlb serve` replicas against the (fake) API server,
//! each in its own network namespace, probing three real zone ALBs in theirs. One replica's
//! path to zone 2 is cut: zone 2 stays in every replica's answer. Zone 2's ALB is killed: it
//! leaves every answer. The API server goes away: each replica decides from its own probes
//! alone, and says so.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::fakeapi::FakeApi;

use crate::harness::{Proc, bin, metric, poll, signal, tempdir, write};
use crate::netns::Net;

const API: &str = "10.91.0.1";
const REPLICAS: [&str; 3] = ["10.91.0.11", "10.91.0.12", "10.91.0.13"];
const ZONES: [&str; 3] = ["10.91.0.21", "10.91.0.22", "10.91.0.23"];

fn objects() -> String {
    let mut docs = vec![
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\n\
         spec: {subdomain: k.test, health: {intervalMs: 100, timeoutMs: 100, fall: 3, rise: 2}}\n"
            .to_owned(),
    ];
    for (i, ip) in ZONES.iter().enumerate() {
        docs.push(format!(
            "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: alb{n}}}\n\
             spec: {{zone: zone-{n}, ip: {ip}, port: 8080}}\n",
            n = i + 1
        ));
    }
    docs.join("---\n")
}

struct Cluster {
    net: Net,
    api: FakeApi,
    kubeconfig: std::path::PathBuf,
    dir: tempfile::TempDir,
    replica_ns: Vec<String>,
    zone_ns: Vec<String>,
    replicas: Vec<Proc>,
    albs: Vec<Option<Proc>>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempdir();
        let mut net = Net::new();
        net.hub_addr(&format!("{API}/24"));
        let api = net.in_hub(|| FakeApi::start(&format!("{API}:0")));
        api.apply_yaml(&objects());
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig);
        write(dir.path(), "site.yaml", &objects());
        let zone_ns: Vec<String> = ZONES
            .iter()
            .enumerate()
            .map(|(i, ip)| net.host(&format!("z{}", i + 1), &format!("{ip}/24")))
            .collect();
        let replica_ns: Vec<String> = REPLICAS
            .iter()
            .enumerate()
            .map(|(i, ip)| net.host(&format!("r{i}"), &format!("{ip}/24")))
            .collect();
        let mut cluster = Cluster {
            net,
            api,
            kubeconfig,
            dir,
            replica_ns,
            zone_ns,
            replicas: Vec::new(),
            albs: Vec::new(),
        };
        cluster.albs = (0..3).map(|i| Some(cluster.alb(i))).collect();
        cluster.replicas = (0..3).map(|i| cluster.replica(i)).collect();
        cluster
    }

    fn alb(&self, i: usize) -> Proc {
        Proc::start(
            &format!("alb{}", i + 1),
            Net::exec(&self.zone_ns[i], &bin("zone-alb"))
                .args(["--alb-id", &format!("alb{}", i + 1), "--manifests"])
                .arg(self.dir.path()),
        )
    }

    fn replica(&self, i: usize) -> Proc {
        let ip = REPLICAS[i];
        Proc::start(
            &format!("mzlb-{i}"),
            Net::exec(&self.replica_ns[i], &bin("mzlb"))
                .args([
                    "serve",
                    "--dns-listen",
                    &format!("{ip}:53"),
                    "--api-listen",
                    &format!("{ip}:9901"),
                ])
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .env("MZLB_STATE_DIR", self.dir.path().join(format!("state-{i}")))
                .env("POD_NAME", format!("mzlb-{i}"))
                .env("POD_NAMESPACE", "mzlb-system"),
        )
    }

    /// Replica `i`'s sorted A answer for the cluster's name, asked from its namespace.
    fn answer(&self, i: usize) -> Vec<String> {
        let out = Net::exec(&self.replica_ns[i], Path::new("dig"))
            .args([
                "+short",
                "+time=1",
                "+tries=1",
                &format!("@{}", REPLICAS[i]),
                "www.k.test",
                "A",
            ])
            .output()
            .expect("running dig in a replica's namespace");
        let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
            .map(str::to_owned)
            .collect();
        ips.sort();
        ips
    }

    fn answers(&self) -> Vec<Vec<String>> {
        (0..3).map(|i| self.answer(i)).collect()
    }

    /// Waits until every replica answers `want`; returns how long that took.
    fn expect_everywhere(&self, want: &[&str], within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        poll(within, || self.answers().iter().all(|a| a == want).then_some(())).unwrap_or_else(|| {
            panic!(
                "{what}: answers {:?}, want {want:?} everywhere\n{}",
                self.answers(),
                self.logs()
            )
        });
        start.elapsed()
    }

    /// What replica `prober` reported for `alb`, from its ProberReport.
    fn reported(&self, prober: usize, alb: &str) -> Option<String> {
        let report = self
            .api
            .get("ProberReport", Some("mzlb-system"), &format!("mzlb-{prober}"))?;
        report["spec"]["albs"]
            .as_array()?
            .iter()
            .find(|a| a["alb"] == alb)
            .and_then(|a| a["health"].as_str().map(str::to_owned))
    }

    /// A command run in replica `i`'s namespace against its own state directory (its control API).
    fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = crate::harness::run(
            Net::exec(&self.replica_ns[i], &bin("mzlb"))
                .args(args)
                .env("MZLB_STATE_DIR", self.dir.path().join(format!("state-{i}"))),
        );
        assert!(
            out.status.success(),
            "mzlb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn metric(&self, i: usize, series: &str) -> Option<f64> {
        let out = Net::exec(&self.replica_ns[i], Path::new("curl"))
            .args([
                "-sS",
                "--max-time",
                "2",
                &format!("http://{}:9901/metrics", REPLICAS[i]),
            ])
            .output()
            .ok()?;
        metric(&String::from_utf8_lossy(&out.stdout), series)
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .enumerate()
            .map(|(i, p)| format!("--- mzlb-{i}:\n{}", p.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn replicas_agree_so_one_cut_off_replica_cannot_take_a_zone_out() {
    let mut c = Cluster::start();
    let all: Vec<&str> = ZONES.to_vec();
    let without_2 = [ZONES[0], ZONES[2]];
    c.expect_everywhere(&all, Duration::from_secs(30), "start-up");
    poll(Duration::from_secs(10), || {
        (0..3)
            .all(|p| (1..=3).all(|z| c.reported(p, &format!("alb{z}")).as_deref() == Some("healthy")))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("not every replica reported every ALB healthy\n{}", c.logs()));

    // Replica 0 loses its route to zone 2: it sees alb2 fail, the others do not, and no
    // replica drops zone 2.
    c.net.cut(&c.replica_ns[0], ZONES[1], true);
    poll(Duration::from_secs(10), || {
        (c.reported(0, "alb2").as_deref() == Some("unhealthy")).then_some(())
    })
    .unwrap_or_else(|| panic!("mzlb-0 never reported alb2 unhealthy\n{}", c.logs()));
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let answers = c.answers();
        assert!(
            answers.iter().all(|a| a == &all),
            "a replica dropped zone 2 on one prober's word: {answers:?}\n{}",
            c.logs()
        );
    }
    let table = c.cli(0, &["albs"]);
    assert!(
        table.contains("mzlb-0 unhealthy") && table.contains("[this replica]") && table.contains("mzlb-1 healthy"),
        "mzlb albs shows each prober's view:\n{table}"
    );
    let alb2 = table.lines().find(|l| l.starts_with("alb2 ")).expect("alb2 row");
    assert!(alb2.contains("enabled") && alb2.contains("yes"), "{table}");
    // The same views over a kubeconfig, from the ProberReports (run where the API server is
    // reachable: a replica's namespace).
    let out = crate::harness::run(
        Net::exec(&c.replica_ns[1], &bin("mzlb"))
            .args(["albs", "--kubeconfig"])
            .arg(&c.kubeconfig)
            .env_remove("MZLB_STATE_DIR"),
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let views = table
        .lines()
        .find(|l| l.trim_start().starts_with("alb2:"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        views.contains("mzlb-0 unhealthy") && views.contains("mzlb-1 healthy") && views.contains("mzlb-2 healthy"),
        "mzlb albs --kubeconfig shows each prober's view:\n{table}"
    );

    // Zone 2's ALB dies: the two replicas that can reach it see it fail, and that majority
    // takes it out of every replica's answer.
    let killed = c.albs[1].take().expect("alb2 runs");
    signal(killed.pid(), "KILL");
    let took = c.expect_everywhere(&without_2, Duration::from_secs(5), "alb2 killed");
    println!("alb2 killed: gone from every replica's answer after {took:?}");
    drop(killed);
    let events = c.cli(1, &["events"]);
    let moved = events
        .lines()
        .find(|l| l.contains("alb2") && l.contains("unhealthy") && l.contains("probers see it unhealthy"))
        .unwrap_or_else(|| panic!("no event naming the probers that moved alb2's verdict:\n{events}"));
    // Whoever made the majority first is named (replica 0 already saw it failing).
    let named = (0..3).filter(|i| moved.contains(&format!("mzlb-{i} ("))).count();
    assert!(
        (moved.contains("2 of 3") && named == 2) || (moved.contains("3 of 3") && named == 3),
        "{moved}"
    );

    // It comes back: two of three see it healthy again (replica 0 is still cut off).
    c.albs[1] = Some(c.alb(1));
    let took = c.expect_everywhere(&all, Duration::from_secs(10), "alb2 back");
    println!("alb2 restarted: back in every replica's answer after {took:?}");

    // The API server goes away: no replica hears the others, each decides alone and says so;
    // replica 0 now trusts its own probes and drops the zone it cannot reach.
    c.api.set_down(true);
    poll(Duration::from_secs(10), || {
        (0..3)
            .all(|i| c.metric(i, "mzlb_deciding_alone") == Some(1.0))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("replicas never said they decide alone\n{}", c.logs()));
    poll(Duration::from_secs(5), || {
        (c.answer(0) == without_2 && c.answer(1) == all && c.answer(2) == all).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "alone, each replica should answer from its own probes: {:?}",
            c.answers()
        )
    });
    assert!(
        c.replicas[0]
            .output()
            .contains("deciding from this replica's own probes alone"),
        "{}",
        c.logs()
    );

    // The API server is back: they agree again, and zone 2 is answered everywhere.
    c.api.set_down(false);
    c.expect_everywhere(&all, Duration::from_secs(15), "API server back");
    poll(Duration::from_secs(10), || {
        (0..3)
            .all(|i| c.metric(i, "mzlb_deciding_alone") == Some(0.0))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("replicas still decide alone\n{}", c.logs()));
    let reports: Vec<Value> = c.api.list("ProberReport");
    assert_eq!(reports.len(), 3, "one report per replica");
    c.net.cut(&c.replica_ns[0], ZONES[1], false);
}
