//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go leaderelection's rules:
//! the holder renews every [`RETRY_PERIOD`]; another replica takes the Lease only when it has
//! seen the Lease record unchanged for its whole duration, timed on its own monotonic clock.
//! The `renewTime` written in the Lease is never compared with the local clock, so replicas
//! whose clocks disagree never take a live Lease from each other. Writes carry the Lease's
//! resourceVersion, so of two candidates one gets 409 Conflict and reads again. A holder that
//! cannot renew steps down after [`RENEW_DEADLINE`], before anyone else may take over.
//! Used so that only one replica writes shared status.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the holder keeps leading while its renewals fail; shorter than
/// [`LEASE_DURATION`], so it has stepped down before another replica can take the Lease.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the holder renews, and others try.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// How many times one round reads again and retries after a 409 Conflict.
const CONFLICT_RETRIES: usize = 3;

/// The timings of one campaign (client-go's defaults unless a test shortens them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Written into the Lease as `leaseDurationSeconds` (whole seconds, at least one).
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_duration: LEASE_DURATION,
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
        }
    }
}

impl Timing {
    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// The parts of a Lease that change when anyone writes it; a follower times the Lease from
/// the moment it last saw these change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// `None` when nobody holds it (never held, or released).
    pub holder: Option<String>,
    pub lease_duration_seconds: Option<i32>,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub transitions: Option<i32>,
    pub resource_version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            lease_duration_seconds: spec.lease_duration_seconds,
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions,
            resource_version: lease.metadata.resource_version.clone(),
        }
    }

    /// How long the holder said the Lease lasts, else `default`.
    fn duration(&self, default: Duration) -> Duration {
        match self.lease_duration_seconds {
            Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs().into()),
            _ => default,
        }
    }
}

/// A record and when, on our monotonic clock, we first saw it as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    pub record: Record,
    pub since: Instant,
}

/// Folds a fresh read into what we knew: the clock restarts only when the record changed.
pub(crate) fn observe(previous: Option<Observed>, record: Record, now: Instant) -> Observed {
    match previous {
        Some(previous) if previous.record == record => previous,
        _ => Observed { record, since: now },
    }
}

/// What one round does with the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// There is no Lease yet: create it, held by us.
    Create,
    /// Nobody holds it, or its holder has not renewed it for its duration: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and renewed it less than its duration ago, by our clock.
    Wait,
}

/// The election rule: `observed` is the Lease as last read (`None` if there is none) and
/// when it last changed on our clock; `default_duration` applies when the Lease names none.
pub(crate) fn decide(
    observed: Option<&Observed>,
    identity: &str,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let Some(observed) = observed else {
        return Decision::Create;
    };
    match observed.record.holder.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None => Decision::Acquire,
        Some(_) => {
            // Only our own clock: the holder's renewTime was written by its clock.
            let expires = observed.since + observed.record.duration(default_duration);
            if now >= expires {
                Decision::Acquire
            } else {
                Decision::Wait
            }
        }
    }
}

/// Whether a holder whose last successful renewal was sent at `renewed` still leads at `now`.
/// Others time the Lease from when they saw that renewal, which is after it was sent, so a
/// deadline shorter than the Lease's duration steps down before they can take it.
pub(crate) fn still_leading(renewed: Instant, now: Instant, timing: &Timing) -> bool {
    now < renewed + timing.renew_deadline
}

/// Campaigns for the Lease `namespace/name` as `identity` until `cancel`; the receiver says
/// whether we hold it now.
pub fn campaign(
    client: Client,
    namespace: &str,
    name: &str,
    identity: String,
    cancel: CancellationToken,
) -> watch::Receiver<bool> {
    campaign_with(client, namespace, name, identity, Timing::default(), cancel)
}

/// [`campaign`] with other timings.
pub fn campaign_with(
    client: Client,
    namespace: &str,
    name: &str,
    identity: String,
    timing: Timing,
    cancel: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let candidate = Candidate {
        api: Api::namespaced(client, namespace),
        name: name.to_owned(),
        identity,
        timing,
        observed: None,
    };
    tokio::spawn(candidate.run(tx, cancel));
    rx
}

struct Candidate {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
}

impl Candidate {
    async fn run(mut self, tx: watch::Sender<bool>, cancel: CancellationToken) {
        let name = self.name.clone();
        // When our last successful write was sent, while we lead.
        let mut renewed: Option<Instant> = None;
        loop {
            let started = Instant::now();
            // A request that hangs must not keep us leading past the deadline.
            let deadline = renewed.unwrap_or(started) + self.timing.renew_deadline;
            let outcome = match tokio::time::timeout_at(deadline, self.round()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(RoundError::TimedOut),
            };
            match outcome {
                Ok(true) => {
                    if !*tx.borrow() {
                        tracing::info!(lease = %name, identity = %self.identity, "became the leader");
                    }
                    renewed = Some(started);
                    tx.send_replace(true);
                }
                Ok(false) => {
                    if *tx.borrow() {
                        tracing::info!(lease = %name, "lost the lease to another replica");
                    }
                    renewed = None;
                    tx.send_replace(false);
                }
                Err(error) => {
                    // Keep leading through a short API outage, but not past the renew
                    // deadline: by the Lease's duration another replica may take it.
                    let leading = renewed.is_some_and(|r| still_leading(r, Instant::now(), &self.timing));
                    if *tx.borrow() && !leading {
                        tracing::warn!(lease = %name, %error, "could not renew the lease; stepping down");
                        renewed = None;
                        tx.send_replace(false);
                    } else {
                        tracing::debug!(lease = %name, %error, "lease request failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(started + self.timing.retry_period) => {}
                () = cancel.cancelled() => break,
            }
        }
        // Let another replica take over at once rather than after the lease expires.
        if *tx.borrow() {
            let _ = self.release().await;
        }
        tx.send_replace(false);
    }

    /// One round: returns whether we hold the Lease afterwards. A write that loses a race
    /// (409) is decided again from a fresh read.
    async fn round(&mut self) -> Result<bool, RoundError> {
        for _ in 0..CONFLICT_RETRIES {
            let current = self.api.get_opt(&self.name).await?;
            let now = Instant::now();
            if let Some(lease) = &current {
                self.observed = Some(observe(self.observed.take(), Record::of(lease), now));
            } else {
                self.observed = None;
            }
            let decision = decide(self.observed.as_ref(), &self.identity, now, self.timing.lease_duration);
            let written = match (decision, current) {
                (Decision::Wait, _) => return Ok(false),
                (Decision::Create, _) => {
                    let lease = self.new_lease();
                    self.api.create(&PostParams::default(), &lease).await
                }
                (Decision::Acquire | Decision::Renew, Some(mut lease)) => {
                    self.claim(&mut lease, decision == Decision::Acquire);
                    // The resourceVersion read above makes this a compare-and-swap.
                    self.api.replace(&self.name, &PostParams::default(), &lease).await
                }
                (Decision::Acquire | Decision::Renew, None) => unreachable!("decide says Create without a Lease"),
            };
            match written {
                Ok(lease) => {
                    self.observed = Some(observe(None, Record::of(&lease), Instant::now()));
                    return Ok(true);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    tracing::debug!(lease = %self.name, "lease changed under us; reading it again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    fn new_lease(&self) -> Lease {
        let now = MicroTime(Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.timing.lease_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        }
    }

    /// Makes `lease` ours; `acquire`: it was someone else's (or nobody's) until now.
    fn claim(&self, lease: &mut Lease, acquire: bool) {
        // Wall-clock times are for people reading the Lease; no replica decides by them.
        let now = MicroTime(Timestamp::now());
        let spec = lease.spec.get_or_insert_with(Default::default);
        if acquire {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.timing.lease_seconds());
    }

    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no answer before the renew deadline")]
    TimedOut,
}

/// This process's identity for leases and events: `POD_NAME` on a cluster, else host and pid.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn record(holder: Option<&str>, renew_time: Timestamp, version: &str) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            acquire_time: Some(renew_time),
            renew_time: Some(renew_time),
            transitions: Some(3),
            resource_version: Some(version.to_owned()),
        }
    }

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        let wall = Timestamp::now();
        let hour_ago = wall - k8s_openapi::jiff::SignedDuration::from_hours(1);
        let seen = |holder: Option<&str>, renew_time, secs_ago: u64, now: Instant| Observed {
            record: record(holder, renew_time, "7"),
            since: now - SECOND * u32::try_from(secs_ago).unwrap(),
        };
        let now = t0 + SECOND * 100;
        // (what, observed, expected) with us as "me" and the Lease's duration 15 s.
        let table: [(&str, Option<Observed>, Decision); 9] = [
            ("no Lease", None, Decision::Create),
            ("released", Some(seen(None, wall, 0, now)), Decision::Acquire),
            (
                "ours, just renewed",
                Some(seen(Some("me"), wall, 0, now)),
                Decision::Renew,
            ),
            (
                "ours, long unrenewed",
                Some(seen(Some("me"), hour_ago, 60, now)),
                Decision::Renew,
            ),
            (
                "theirs, changed 1 s ago",
                Some(seen(Some("b"), wall, 1, now)),
                Decision::Wait,
            ),
            (
                "theirs, unchanged 14 s",
                Some(seen(Some("b"), wall, 14, now)),
                Decision::Wait,
            ),
            (
                "theirs, unchanged 15 s",
                Some(seen(Some("b"), wall, 15, now)),
                Decision::Acquire,
            ),
            // Our wall clock runs an hour ahead of the holder's (or its renewTime says so):
            // the record changed a second ago, so the Lease is alive.
            ("clock skew", Some(seen(Some("b"), hour_ago, 1, now)), Decision::Wait),
            // And a renewTime in the future by our clock does not keep a dead holder.
            (
                "dead holder, renewTime ahead",
                Some(seen(
                    Some("b"),
                    wall + k8s_openapi::jiff::SignedDuration::from_hours(1),
                    16,
                    now,
                )),
                Decision::Acquire,
            ),
        ];
        for (what, observed, want) in table {
            assert_eq!(decide(observed.as_ref(), "me", now, LEASE_DURATION), want, "{what}");
        }
    }

    #[test]
    fn the_lease_names_its_duration() {
        let now = Instant::now() + SECOND * 100;
        let mut observed = Observed {
            record: record(Some("b"), Timestamp::now(), "7"),
            since: now - SECOND * 5,
        };
        observed.record.lease_duration_seconds = Some(4);
        assert_eq!(decide(Some(&observed), "me", now, LEASE_DURATION), Decision::Acquire);
        observed.record.lease_duration_seconds = Some(0);
        assert_eq!(
            decide(Some(&observed), "me", now, LEASE_DURATION),
            Decision::Wait,
            "invalid: our default"
        );
    }

    #[test]
    fn the_clock_restarts_only_when_the_record_changes() {
        let t0 = Instant::now();
        let wall = Timestamp::now();
        let first = observe(None, record(Some("b"), wall, "7"), t0);
        assert_eq!(first.since, t0);
        // The same record read again, 10 s later: still timed from t0.
        let same = observe(Some(first.clone()), record(Some("b"), wall, "7"), t0 + SECOND * 10);
        assert_eq!(same.since, t0);
        assert_eq!(
            decide(Some(&same), "me", t0 + SECOND * 15, LEASE_DURATION),
            Decision::Acquire
        );
        // Renewed — even to a renewTime in our past, as a holder with a slow clock writes:
        // timed from when we saw it.
        let older = wall - k8s_openapi::jiff::SignedDuration::from_hours(1);
        let renewed = observe(Some(same), record(Some("b"), older, "8"), t0 + SECOND * 14);
        assert_eq!(renewed.since, t0 + SECOND * 14);
        assert_eq!(
            decide(Some(&renewed), "me", t0 + SECOND * 15, LEASE_DURATION),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&renewed), "me", t0 + SECOND * 29, LEASE_DURATION),
            Decision::Acquire
        );
        // Any other change counts too: a new resourceVersion, holder or transition count.
        let touched = observe(Some(renewed.clone()), record(Some("b"), older, "9"), t0 + SECOND * 20);
        assert_eq!(touched.since, t0 + SECOND * 20);
        let mut other = record(Some("c"), older, "9");
        other.transitions = Some(4);
        assert_eq!(observe(Some(touched), other, t0 + SECOND * 21).since, t0 + SECOND * 21);
    }

    #[test]
    fn a_holder_that_cannot_renew_steps_down_before_others_may_take_over() {
        let timing = Timing::default();
        let t0 = Instant::now();
        // The holder sent its last successful renewal at `t0`; a follower saw the change at
        // the earliest at `t0` (the write lands after it is sent). Every 100 ms after that, if
        // the follower would take the Lease, the holder has stepped down.
        let follower = Observed {
            record: record(Some("holder"), Timestamp::now(), "7"),
            since: t0,
        };
        let mut stepped_down = None;
        for tenth in 0..300u32 {
            let now = t0 + Duration::from_millis(100) * tenth;
            let leads = still_leading(t0, now, &timing);
            if !leads && stepped_down.is_none() {
                stepped_down = Some(now);
            }
            if decide(Some(&follower), "follower", now, timing.lease_duration) == Decision::Acquire {
                assert!(!leads, "both lead {:?} after the last renewal", now - t0);
            }
        }
        assert_eq!(stepped_down, Some(t0 + RENEW_DEADLINE));
        // A renewal that went through restarts the holder's deadline.
        assert!(still_leading(t0 + SECOND * 5, t0 + SECOND * 14, &timing));
    }

    #[test]
    fn timings_keep_their_order() {
        let timing = Timing::default();
        assert!(timing.retry_period < timing.renew_deadline && timing.renew_deadline < timing.lease_duration);
        assert_eq!(timing.lease_seconds(), 15);
    }
}
