//! Choosing one endpoint of a backend per request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Round-robin over a fixed endpoint list; lock-free so the request path never waits.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn pick_index(&self, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_every_endpoint() {
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..4).map(|_| rr.pick_index(2).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        assert_eq!(rr.pick_index(0), None);
    }
}

/// Peak-EWMA with two random choices, as ingress-nginx's `ewma`: each endpoint keeps a
/// decaying average of its response time; of two endpoints picked at random, the one with the
/// lower `average × (in flight + 1)` wins. Lock-free: atomics only. The figures live with the
/// endpoint's runtime state (`state::EndpointState`), so a new routing table keeps them.
#[derive(Debug, Default)]
pub struct EwmaStats {
    /// Average response time in microseconds, as f64 bits.
    average: AtomicU64,
    /// When `average` was last updated, in microseconds since `epoch()`.
    updated: AtomicU64,
    in_flight: AtomicU64,
}

/// How fast old observations fade (ingress-nginx uses 10 s).
const DECAY_US: f64 = 10_000_000.0;

/// Microseconds on a process-wide monotonic clock.
pub fn epoch_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_micros() as u64
}

/// The index of the chosen one of `n` endpoints whose figures `stats` gives; counted in
/// flight, the caller reports back with [`EwmaStats::finished`].
pub fn pick_ewma<'s>(n: usize, stats: impl Fn(usize) -> &'s EwmaStats) -> Option<usize> {
    let chosen = match n {
        0 => return None,
        1 => 0,
        _ => {
            let a = rand::random_range(0..n);
            let b = (a + rand::random_range(1..n)) % n;
            if stats(a).score() <= stats(b).score() { a } else { b }
        }
    };
    stats(chosen).started();
    Some(chosen)
}

impl EwmaStats {
    /// Requests counted in flight.
    #[cfg(test)]
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight.
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn score(&self) -> f64 {
        f64::from_bits(self.average.load(Ordering::Relaxed)) * (self.in_flight.load(Ordering::Relaxed) as f64 + 1.0)
    }

    /// Undoes a pick that was not used.
    pub fn cancel(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records a finished request (`latency` `None`: it failed; counted as slow).
    pub fn finished(&self, latency: Option<std::time::Duration>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let now = epoch_us();
        let sample = latency.map_or(DECAY_US, |l| l.as_micros() as f64);
        let then = self.updated.swap(now, Ordering::Relaxed);
        let old = f64::from_bits(self.average.load(Ordering::Relaxed));
        let weight = (-((now.saturating_sub(then)) as f64) / DECAY_US).exp();
        // Peak-sensitive: a slower sample replaces the average at once.
        let new = if sample > old {
            sample
        } else {
            old * weight + sample * (1.0 - weight)
        };
        self.average.store(new.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod ewma_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn prefers_the_faster_endpoint() {
        let stats = [EwmaStats::default(), EwmaStats::default()];
        // Endpoint 0 answers in 50 ms, endpoint 1 in 1 ms.
        let serve = || {
            let i = pick_ewma(2, |i| &stats[i]).unwrap();
            stats[i].finished(Some(Duration::from_millis(if i == 0 { 50 } else { 1 })));
            i
        };
        for _ in 0..5 {
            serve();
        }
        let fast = (0..100).filter(|_| serve() == 1);
        assert!(fast.count() > 90, "the 1 ms endpoint wins nearly every choice");
    }
}
