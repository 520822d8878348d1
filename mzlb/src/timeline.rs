//! A health timeline per ALB for the status page: the last 15 minutes of probes, folded into
//! fixed buckets so the page gets a few hundred points, not one per probe (at 200 ms a probe,
//! 15 minutes is 4,500 of them per ALB, sent on every update).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::registry::Probe;

/// How far back the timeline reaches.
pub const SPAN_MS: u64 = 15 * 60 * 1000;
/// Width of one bucket: 180 buckets over the span.
pub const BUCKET_MS: u64 = 5_000;

/// The probes of one bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket (Unix milliseconds, a multiple of [`BUCKET_MS`]).
    pub at_ms: u64,
    pub probes: u32,
    pub failed: u32,
    pub latency_ms_avg: f64,
    pub latency_ms_max: f64,
}

#[derive(Debug, Default)]
pub struct Timeline {
    buckets: VecDeque<Bucket>,
}

impl Timeline {
    pub fn record(&mut self, probe: &Probe) {
        let at_ms = probe.at_ms - probe.at_ms % BUCKET_MS;
        match self.buckets.back_mut() {
            Some(last) if last.at_ms == at_ms => {
                let n = f64::from(last.probes);
                last.latency_ms_avg = (last.latency_ms_avg * n + probe.latency_ms) / (n + 1.0);
                last.latency_ms_max = last.latency_ms_max.max(probe.latency_ms);
                last.probes += 1;
                last.failed += u32::from(!probe.ok);
            }
            // A probe older than the last bucket (clock stepped back) starts afresh rather
            // than mixing into the wrong bucket.
            _ => self.buckets.push_back(Bucket {
                at_ms,
                probes: 1,
                failed: u32::from(!probe.ok),
                latency_ms_avg: probe.latency_ms,
                latency_ms_max: probe.latency_ms,
            }),
        }
        self.forget_before(probe.at_ms.saturating_sub(SPAN_MS));
    }

    /// The buckets that began at or after `now_ms - SPAN_MS`, oldest first.
    pub fn recent(&self, now_ms: u64) -> Vec<Bucket> {
        let from = now_ms.saturating_sub(SPAN_MS);
        self.buckets
            .iter()
            .filter(|b| b.at_ms + BUCKET_MS > from)
            .cloned()
            .collect()
    }

    fn forget_before(&mut self, from: u64) {
        while self.buckets.front().is_some_and(|b| b.at_ms + BUCKET_MS <= from) {
            self.buckets.pop_front();
        }
        // A clock that went back leaves newer buckets in front of older ones: keep the order.
        if self.buckets.len() > 1
            && self
                .buckets
                .iter()
                .zip(self.buckets.iter().skip(1))
                .any(|(a, b)| a.at_ms > b.at_ms)
        {
            let last = self.buckets.pop_back();
            self.buckets.clear();
            self.buckets.extend(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(at_ms: u64, ok: bool, latency_ms: f64) -> Probe {
        Probe {
            at_ms,
            ok,
            latency_ms,
            detail: String::new(),
        }
    }

    #[test]
    fn folds_probes_into_buckets_and_forgets_the_old() {
        let mut t = Timeline::default();
        let start = 1_000_000_000;
        t.record(&probe(start, true, 1.0));
        t.record(&probe(start + 200, false, 3.0));
        t.record(&probe(start + BUCKET_MS, true, 2.0));
        let recent = t.recent(start + BUCKET_MS);
        assert_eq!(recent.len(), 2);
        assert_eq!(
            (
                recent[0].probes,
                recent[0].failed,
                recent[0].latency_ms_avg,
                recent[0].latency_ms_max
            ),
            (2, 1, 2.0, 3.0)
        );
        // Fifteen minutes later only the newest bucket is left.
        t.record(&probe(start + SPAN_MS + BUCKET_MS, true, 1.0));
        let recent = t.recent(start + SPAN_MS + BUCKET_MS);
        assert_eq!(recent.len(), 2, "{recent:?}");
        assert_eq!(recent[0].at_ms, start + BUCKET_MS);
        assert!(t.buckets.len() <= (SPAN_MS / BUCKET_MS) as usize + 1);
    }

    #[test]
    fn a_clock_stepping_back_starts_afresh() {
        let mut t = Timeline::default();
        t.record(&probe(10 * BUCKET_MS, true, 1.0));
        t.record(&probe(2 * BUCKET_MS, true, 1.0));
        let recent = t.recent(2 * BUCKET_MS);
        assert_eq!(recent.iter().map(|b| b.at_ms).collect::<Vec<_>>(), [2 * BUCKET_MS]);
    }
}
