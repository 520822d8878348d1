//! Leader election against the fake API server: replicas in one process, each on its own
//! runtime, so that shutting a runtime down is a replica dying without releasing its Lease.
//! Timings are shortened (a 2 s Lease); the rules are the ones used with the defaults.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tests::fakeapi::FakeApi;
use tokio::sync::watch;
use zone_alb::lease::{Timing, campaign_with};
use zone_alb::source::kube_watch::KubeOptions;

use crate::harness::{poll, tempdir};

const NAMESPACE: &str = "mzlb-system";
const LEASE: &str = "test-lease";
const TIMING: Timing = Timing {
    lease_duration: Duration::from_secs(2),
    renew_deadline: Duration::from_millis(1500),
    retry_period: Duration::from_millis(200),
};

/// One replica: its runtime (shut down to kill it) and whether it leads.
struct Replica {
    runtime: tokio::runtime::Runtime,
    leads: watch::Receiver<bool>,
}

impl Replica {
    fn start(kubeconfig: &std::path::Path, identity: &str) -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let options = KubeOptions {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            context: None,
        };
        let leads = runtime.block_on(async {
            let client = options.client().await.expect("client for the fake API server");
            campaign_with(client, NAMESPACE, LEASE, identity.into(), TIMING, Default::default())
        });
        Replica { runtime, leads }
    }

    fn leads(&self) -> bool {
        *self.leads.borrow()
    }
}

fn holder(api: &FakeApi) -> Option<String> {
    api.get("Lease", Some(NAMESPACE), LEASE)
        .and_then(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

/// Calls `check` every 25 ms for `window`: a property that must hold throughout.
fn throughout(window: Duration, mut check: impl FnMut()) {
    let start = Instant::now();
    while start.elapsed() < window {
        check();
        thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_lease_changes_hands_only_after_its_holder_stops_renewing() {
    let api = FakeApi::start("127.0.33.1:0");
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);

    let a = Replica::start(&kubeconfig, "a");
    poll(Duration::from_secs(5), || a.leads().then_some(())).expect("the only replica leads");
    assert_eq!(holder(&api).as_deref(), Some("a"));
    let b = Replica::start(&kubeconfig, "b");
    let c = Replica::start(&kubeconfig, "c");

    // Longer than the Lease: a renews it, so neither b nor c takes it.
    let renewed_from = api.resource_version();
    throughout(TIMING.lease_duration * 2, || {
        let leads = (a.leads(), b.leads(), c.leads());
        assert_eq!(leads, (true, false, false), "a, b and c");
    });
    assert!(api.resource_version() > renewed_from, "a renewed the Lease");
    assert_eq!(holder(&api).as_deref(), Some("a"));

    // a dies without releasing the Lease: b or c takes it once it has seen it unrenewed for
    // the Lease's duration, and not before. Both try at about the same time; the loser's
    // write carries a stale resourceVersion, gets 409 and reads again.
    a.runtime.shutdown_background();
    let died = Instant::now();
    poll(Duration::from_secs(10), || (b.leads() || c.leads()).then_some(())).expect("b or c takes over");
    let took = died.elapsed();
    // a renewed about a retry period before it died, or a little earlier if starved.
    let earliest = TIMING.lease_duration / 2;
    assert!(
        took >= earliest,
        "taken over {took:?} after a died, before {earliest:?}"
    );
    let winner = if b.leads() { "b" } else { "c" };
    throughout(TIMING.lease_duration * 2, || {
        assert!(
            b.leads() != c.leads(),
            "exactly one of b and c leads: {} {}",
            b.leads(),
            c.leads()
        );
    });
    let lease = api.get("Lease", Some(NAMESPACE), LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], winner);
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);
}

#[test]
fn a_live_lease_is_not_taken_by_a_replica_whose_clock_runs_ahead() {
    let api = FakeApi::start("127.0.33.2:0");
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    // Another replica holds the Lease and renews it every 200 ms, by a clock far behind ours:
    // every renewTime it writes is long past by our clock.
    let renew = |n: u64| {
        api.apply(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NAMESPACE},
            "spec": {
                "holderIdentity": "other",
                "leaseDurationSeconds": 2,
                "acquireTime": "2000-01-01T00:00:00.000000Z",
                "renewTime": format!("2000-01-01T00:00:{:02}.{:06}Z", n / 5, (n % 5) * 200_000),
                "leaseTransitions": 4,
            }
        }));
    };
    renew(0);
    let b = Replica::start(&kubeconfig, "b");

    let start = Instant::now();
    let mut renewals = 0;
    let mut renewed = Instant::now();
    throughout(TIMING.lease_duration * 2, || {
        if start.elapsed() >= TIMING.retry_period * renewals {
            renewals += 1;
            renew(u64::from(renewals));
            renewed = Instant::now();
        }
        assert!(!b.leads(), "b took a live Lease {:?} after it started", start.elapsed());
    });
    assert_eq!(holder(&api).as_deref(), Some("other"));

    // The other replica stops renewing: b takes over once the Lease has been unchanged for its
    // duration on b's clock (b saw the last renewal after it was written).
    poll(Duration::from_secs(10), || b.leads().then_some(())).expect("b takes over");
    let took = renewed.elapsed();
    assert!(
        took >= TIMING.lease_duration,
        "b took over {took:?} after the last renewal"
    );
    let lease = api.get("Lease", Some(NAMESPACE), LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 5);
}

#[test]
fn a_holder_whose_renewal_loses_a_race_reads_again_and_keeps_leading() {
    let api = FakeApi::start("127.0.33.3:0");
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let a = Replica::start(&kubeconfig, "a");
    poll(Duration::from_secs(5), || a.leads().then_some(())).expect("the only replica leads");

    // Someone else writes the Lease (kubectl annotate, say) just before a renews it: a's
    // write gets 409, and a reads the Lease again and renews it in the same round rather than
    // stepping down.
    api.race_next_replace("Lease");
    throughout(TIMING.lease_duration, || assert!(a.leads(), "a stepped down"));
    assert!(api.raced(), "a tried to renew the Lease");
    assert_eq!(holder(&api).as_deref(), Some("a"));
}
