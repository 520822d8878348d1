//! Agreed health: every `mzlb serve` replica probes every ALB, and each decides from all fresh
//! observations, its own and its peers', so that one replica cut off from a zone cannot take
//! that zone out of its answer while the others keep it.
//!
//! The rule, per ALB: it is unhealthy when more than half of the voting probers see it failing,
//! healthy when more than half see it passing, and otherwise keeps its previous verdict. A
//! prober votes when its report is fresh and it has an opinion (not still pending). A replica
//! that sees no fresh peer decides alone, exactly as one replica always did.
//!
//! Freshness is judged on the local clock only: a peer's report is fresh while this replica
//! saw it change within [`STALE_AFTER`] (the rule client-go's leader election uses for
//! Leases), never by comparing the peer's timestamps with our clock, which may be skewed.
//!
//! Pure: no clocks, sockets or Kubernetes here; callers pass the times in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::registry::Health;

/// How often a replica rewrites its report even when nothing changed.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A peer whose report has not changed for this long (on our clock) has stopped voting: three
/// missed heartbeats, which also covers a slow watch.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// A peer not heard from for this long is forgotten altogether (pod names change with every
/// rollout; a report deleted while our watch was down never sends us a delete).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// One prober's view of one ALB, as it reported it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub prober: String,
    pub health: Health,
    /// When the prober's view last changed (its clock, Unix milliseconds; shown, never compared).
    pub since_ms: u64,
    /// The prober's last failed probe, if any.
    pub last_error: Option<String>,
    /// Whether this view counts now (always true for our own).
    pub fresh: bool,
    /// Whether this is the replica's own view.
    #[serde(default)]
    pub own: bool,
}

/// A peer's report as this replica holds it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// By ALB ID.
    pub views: HashMap<String, View>,
    /// When this replica last saw the report change.
    pub seen_at: Instant,
}

impl Peer {
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.seen_at) < STALE_AFTER
    }
}

/// The outcome for one ALB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub health: Health,
    /// The probers whose views carried the verdict (those on the winning side), own first.
    pub by: Vec<String>,
    /// How many probers voted.
    pub voters: usize,
}

/// Decides one ALB's health from `previous` (the verdict so far) and the views of every
/// prober; stale and pending views do not vote.
pub fn decide(previous: Health, views: &[View]) -> Verdict {
    let voting: Vec<&View> = views
        .iter()
        .filter(|v| v.fresh && v.health != Health::Pending)
        .collect();
    let side = |h: Health| -> Vec<String> {
        voting
            .iter()
            .filter(|v| v.health == h)
            .map(|v| v.prober.clone())
            .collect()
    };
    let (unhealthy, healthy) = (side(Health::Unhealthy), side(Health::Healthy));
    let n = voting.len();
    let (health, by) = if 2 * unhealthy.len() > n {
        (Health::Unhealthy, unhealthy)
    } else if 2 * healthy.len() > n {
        (Health::Healthy, healthy)
    } else if previous == Health::Pending && !healthy.is_empty() {
        // A tie on a first verdict: someone reaches it, so it is answered (a healthy ALB must
        // never be left out on a disagreement).
        (Health::Healthy, healthy)
    } else {
        let by = side(previous);
        (previous, by)
    };
    Verdict { health, by, voters: n }
}

/// A line for `mzlb events` naming who moved a verdict, e.g.
/// `2 of 3 probers see it unhealthy: mzlb-0 (timed out), mzlb-1 (connection failed)`.
pub fn explain(verdict: &Verdict, views: &[View]) -> String {
    let word = match verdict.health {
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::Pending => "pending",
    };
    let names: Vec<String> = verdict
        .by
        .iter()
        .map(|p| {
            let error = views
                .iter()
                .find(|v| &v.prober == p)
                .and_then(|v| v.last_error.as_deref())
                .filter(|_| verdict.health == Health::Unhealthy);
            match error {
                Some(e) => format!("{p} ({e})"),
                None => p.clone(),
            }
        })
        .collect();
    let probers = if verdict.voters == 1 {
        "prober sees"
    } else {
        "probers see"
    };
    format!(
        "{} of {} {probers} it {word}: {}",
        verdict.by.len(),
        verdict.voters,
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::{Healthy as H, Pending as P, Unhealthy as U};

    /// (prober, its view, whether its report is fresh)
    type Table<'a> = &'a [(&'a str, Health, bool)];
    /// (previous verdict, views) → verdict, voters
    type Row<'a> = (Health, Table<'a>, Health, usize);

    fn views(table: Table<'_>) -> Vec<View> {
        table
            .iter()
            .enumerate()
            .map(|(i, &(prober, health, fresh))| View {
                prober: prober.into(),
                health,
                since_ms: 0,
                last_error: (health == U).then(|| "timed out".into()),
                fresh,
                own: i == 0,
            })
            .collect()
    }

    #[test]
    fn majorities_of_fresh_opinions_decide_and_ties_keep_the_verdict() {
        let rows: &[Row<'_>] = &[
            // Alone: one's own view is the verdict, as before replicas agreed.
            (P, &[("a", H, true)], H, 1),
            (H, &[("a", U, true)], U, 1),
            (U, &[("a", H, true)], H, 1),
            (P, &[("a", P, true)], P, 0),
            // One replica cut off from a zone cannot take it out.
            (H, &[("a", U, true), ("b", H, true), ("c", H, true)], H, 3),
            // Two of three see it fail: out everywhere.
            (H, &[("a", U, true), ("b", U, true), ("c", H, true)], U, 3),
            (H, &[("a", H, true), ("b", U, true), ("c", U, true)], U, 3),
            // And it comes back on a majority too.
            (U, &[("a", H, true), ("b", H, true), ("c", U, true)], H, 3),
            (U, &[("a", H, true), ("b", U, true), ("c", U, true)], U, 3),
            // A stale peer does not vote: the two live ones decide.
            (H, &[("a", U, true), ("b", U, false), ("c", H, true)], H, 2),
            (H, &[("a", U, true), ("b", U, true), ("c", H, false)], U, 2),
            // Every peer stale: decide alone.
            (H, &[("a", U, true), ("b", H, false), ("c", H, false)], U, 1),
            // Ties keep the previous verdict…
            (H, &[("a", U, true), ("b", H, true)], H, 2),
            (U, &[("a", U, true), ("b", H, true)], U, 2),
            // …and on a first verdict, answer it.
            (P, &[("a", U, true), ("b", H, true)], H, 2),
            // Pending views do not vote (a replica that just started).
            (H, &[("a", P, true), ("b", U, true), ("c", U, true)], U, 2),
            (H, &[("a", U, true), ("b", P, true), ("c", H, true)], H, 2),
            (P, &[("a", P, true), ("b", P, true)], P, 0),
            // Four probers: three needed either way.
            (
                H,
                &[("a", U, true), ("b", U, true), ("c", H, true), ("d", H, true)],
                H,
                4,
            ),
            (
                H,
                &[("a", U, true), ("b", U, true), ("c", U, true), ("d", H, true)],
                U,
                4,
            ),
        ];
        for (i, &(previous, table, want, voters)) in rows.iter().enumerate() {
            let got = decide(previous, &views(table));
            assert_eq!(
                (got.health, got.voters),
                (want, voters),
                "row {i}: {previous:?} {table:?}"
            );
        }
    }

    #[test]
    fn the_winning_side_is_named() {
        let v = views(&[("a", U, true), ("b", H, true), ("c", U, true)]);
        let verdict = decide(H, &v);
        assert_eq!(verdict.by, ["a", "c"]);
        assert_eq!(
            explain(&verdict, &v),
            "2 of 3 probers see it unhealthy: a (timed out), c (timed out)"
        );
        let v = views(&[("a", H, true)]);
        assert_eq!(explain(&decide(P, &v), &v), "1 of 1 prober sees it healthy: a");
    }

    #[test]
    fn freshness_is_judged_on_our_clock() {
        let now = Instant::now();
        let peer = |ago: Duration| Peer {
            views: HashMap::new(),
            seen_at: now - ago,
        };
        assert!(peer(Duration::ZERO).is_fresh(now));
        assert!(peer(STALE_AFTER - Duration::from_millis(1)).is_fresh(now));
        assert!(!peer(STALE_AFTER).is_fresh(now));
        // A report seen "in the future" (clocks are monotonic, but be safe) is fresh.
        assert!(peer(Duration::ZERO).is_fresh(now - Duration::from_secs(1)));
    }
}
