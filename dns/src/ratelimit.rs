//! Response-rate limiting for UDP, as NSD and Knot ship it, so the server cannot be used to
//! amplify a flood of spoofed queries at a victim: each client prefix (/24 for IPv4, /56 for
//! IPv6) gets so many responses per second; past that, every `slip`th response is sent
//! truncated (TC=1, no records), so a real client retries over TCP — which a spoofer cannot —
//! and the rest are dropped. TCP is never limited.
//!
//! The table is a fixed array of atomic counters indexed by a keyed hash of the prefix: memory
//! is bounded whatever the number of sources (a new prefix takes over its slot), and the hot
//! path takes no lock. (`governor`'s keyed limiters grow a map per source and lock a shard per
//! check.) A prefix over its limit only reads its slot, so a flood does not bounce the slot's
//! cache line between cores.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Rate-limiting settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Responses per second to one client prefix; 0 turns limiting off.
    pub responses_per_second: u32,
    /// Every `slip`th limited response is sent truncated, the others dropped; 0: drop all,
    /// 1: truncate all.
    pub slip: u32,
}

impl Default for RateLimit {
    /// Generous: far above what any resolver behind one prefix sends for one zone.
    fn default() -> Self {
        Self {
            responses_per_second: 200,
            slip: 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Answer,
    /// Send an empty response with TC set instead.
    Slip,
    Drop,
}

/// Tracked prefixes; 512 KiB of counters.
const SLOTS: usize = 1 << 16;
const COUNT_BITS: u32 = 24;
const SECOND_BITS: u32 = 16;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// Counts responses per prefix in one-second windows. Each slot packs a 24-bit tag of the
/// prefix's hash, the low 16 bits of the second, and a 24-bit count.
pub struct Limiter {
    settings: RateLimit,
    slots: Box<[AtomicU64]>,
    /// Keyed per process, so a remote party cannot choose prefixes that share a slot.
    hasher: std::collections::hash_map::RandomState,
    start: Instant,
}

impl Limiter {
    pub fn new(settings: RateLimit) -> Self {
        let slots = if settings.responses_per_second == 0 { 0 } else { SLOTS };
        Self {
            settings,
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
            start: Instant::now(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.responses_per_second != 0
    }

    /// Seconds since start: the clock `check` takes, read once per batch of packets.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// Counts one response to `ip` at second `now`. `limited` is the caller's count of
    /// limited responses (one per hot-path thread), which picks the ones that slip.
    pub fn check(&self, ip: IpAddr, now: u64, limited: &mut u64) -> Decision {
        if !self.enabled() {
            return Decision::Answer;
        }
        let prefix = match ip {
            IpAddr::V4(v4) => (4u8, u128::from(u32::from(v4) >> 8)),
            IpAddr::V6(v6) => (6u8, u128::from(v6) >> 72),
        };
        let hash = self.hasher.hash_one(prefix);
        let slot = &self.slots[hash as usize & (SLOTS - 1)];
        let tag = hash >> (COUNT_BITS + SECOND_BITS);
        let second = now & ((1 << SECOND_BITS) - 1);
        let base = (tag << (COUNT_BITS + SECOND_BITS)) | (second << COUNT_BITS);
        // Counts saturate below the second's bits.
        let limit = u64::from(self.settings.responses_per_second).min(COUNT_MAX - 1);
        let mut current = slot.load(Ordering::Relaxed);
        let count = loop {
            let count = if current & !COUNT_MAX == base {
                current & COUNT_MAX
            } else {
                0 // another second, or another prefix: start over (evicting it)
            };
            if count >= limit {
                break count + 1; // over the limit: no need to write
            }
            match slot.compare_exchange_weak(current, base | (count + 1), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break count + 1,
                Err(actual) => current = actual,
            }
        };
        if count <= limit {
            return Decision::Answer;
        }
        *limited += 1;
        match self.settings.slip {
            0 => Decision::Drop,
            slip if (*limited).is_multiple_of(u64::from(slip)) => Decision::Slip,
            _ => Decision::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    /// Replays `(source, second)` against a fresh limiter; returns each decision.
    fn replay(settings: RateLimit, packets: &[(&str, u64)]) -> Vec<Decision> {
        let limiter = Limiter::new(settings);
        let mut limited = 0;
        packets
            .iter()
            .map(|(ip, now)| limiter.check(ip.parse().unwrap(), *now, &mut limited))
            .collect()
    }

    fn limit(responses_per_second: u32, slip: u32) -> RateLimit {
        RateLimit {
            responses_per_second,
            slip,
        }
    }

    #[test]
    fn limits_per_prefix_per_second_with_slip() {
        type Row<'a> = (&'a str, RateLimit, Vec<(&'a str, u64)>, Vec<Decision>);
        let rows: Vec<Row<'_>> = vec![
            (
                "over the limit: every second limited answer slips",
                limit(2, 2),
                vec![("192.0.2.1", 0); 7],
                vec![Answer, Answer, Drop, Slip, Drop, Slip, Drop],
            ),
            (
                "the whole /24 shares one budget",
                limit(2, 2),
                vec![("192.0.2.1", 0), ("192.0.2.254", 0), ("192.0.2.77", 0)],
                vec![Answer, Answer, Drop],
            ),
            (
                "the next /24 has its own",
                limit(1, 1),
                vec![("192.0.2.1", 0), ("192.0.2.2", 0), ("192.0.3.1", 0)],
                vec![Answer, Slip, Answer],
            ),
            (
                "a new second, a new budget",
                limit(1, 0),
                vec![("192.0.2.1", 5), ("192.0.2.1", 5), ("192.0.2.1", 6), ("192.0.2.1", 6)],
                vec![Answer, Drop, Answer, Drop],
            ),
            (
                "the whole /56 shares one budget",
                limit(1, 1),
                vec![("2001:db8:0:1::1", 0), ("2001:db8:0:ff:ffff::9", 0)],
                vec![Answer, Slip],
            ),
            (
                "the next /56 has its own",
                limit(1, 1),
                vec![("2001:db8:0:1::1", 0), ("2001:db8:0:100::1", 0)],
                vec![Answer, Answer],
            ),
            (
                "IPv4 and IPv6 with equal bits are different prefixes",
                limit(1, 1),
                vec![("0.0.0.1", 0), ("::1", 0)],
                vec![Answer, Answer],
            ),
            (
                "slip 0 drops every limited answer",
                limit(1, 0),
                vec![("192.0.2.1", 0); 4],
                vec![Answer, Drop, Drop, Drop],
            ),
            (
                "slip 1 truncates every limited answer",
                limit(1, 1),
                vec![("192.0.2.1", 0); 3],
                vec![Answer, Slip, Slip],
            ),
            (
                "rate 0 is off",
                limit(0, 2),
                vec![("192.0.2.1", 0); 500],
                vec![Answer; 500],
            ),
        ];
        for (what, settings, packets, want) in rows {
            assert_eq!(replay(settings, &packets), want, "{what}");
        }
    }

    #[test]
    fn memory_is_fixed_whatever_the_sources() {
        let limiter = Limiter::new(limit(1, 2));
        let mut limited = 0;
        for i in 0..200_000u32 {
            limiter.check(IpAddr::V4((i << 8).into()), 0, &mut limited);
        }
        assert_eq!(limiter.slots.len(), SLOTS);
        assert!(Limiter::new(limit(0, 2)).slots.is_empty(), "nothing allocated when off");
    }
}
