//! Per-client limits: request rate (`limit-rps`, a token bucket per client address) and
//! concurrency (`limit-connections`). Excess requests get 503, as ingress-nginx answers by
//! default. Limiters are kept by `state::Store`, not by the routing table, so a rebuilt table
//! neither refills the buckets nor forgets requests in flight.

use std::sync::Arc;

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::annotations::RateLimitSpec;

pub struct RateLimiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimiter")
    }
}

impl RateLimiter {
    pub fn new(spec: RateLimitSpec) -> Self {
        let rate = NonZeroU32::new(spec.rate).unwrap_or(NonZeroU32::MIN);
        // ingress-nginx: `limit_req burst=rate*multiplier nodelay`.
        let burst = NonZeroU32::new(spec.rate.saturating_mul(spec.burst_multiplier)).unwrap_or(rate);
        let quota = if spec.per_minute {
            Quota::per_minute(rate)
        } else {
            Quota::per_second(rate)
        };
        Self {
            buckets: DefaultKeyedRateLimiter::keyed(quota.allow_burst(burst)),
        }
    }

    /// Takes a token for `client`; false when its bucket is empty.
    pub fn allow(&self, client: IpAddr) -> bool {
        self.buckets.check_key(&client).is_ok()
    }

    /// Forgets clients whose buckets are full again, so memory follows active clients.
    pub fn housekeeping(&self) {
        self.buckets.retain_recent();
    }
}

/// Requests in flight per client address. Only Ingresses that ask for the limit pay for the
/// (short, uncontended) lock.
#[derive(Debug)]
pub struct ConcurrencyLimiter {
    limit: u32,
    in_flight: std::sync::Mutex<std::collections::HashMap<IpAddr, u32>>,
}

impl ConcurrencyLimiter {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            in_flight: Default::default(),
        }
    }

    /// A slot for `client`, released when the guard drops; `None` when it has `limit` already.
    /// The guard owns its limiter, so a spliced (upgraded) connection can hold it for its life.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Option<ConcurrencyGuard> {
        let mut map = self.in_flight.lock().expect("limiter poisoned");
        let n = map.entry(client).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ConcurrencyGuard {
            limiter: self.clone(),
            client,
        })
    }
}

pub struct ConcurrencyGuard {
    limiter: Arc<ConcurrencyLimiter>,
    client: IpAddr,
}

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        let mut map = self.limiter.in_flight.lock().expect("limiter poisoned");
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client); // memory follows active clients
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_per_client() {
        let limiter = RateLimiter::new(RateLimitSpec {
            rate: 2,
            per_minute: false,
            burst_multiplier: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let allowed = (0..10).filter(|_| limiter.allow(a)).count();
        assert_eq!(allowed, 4, "burst of rps × multiplier");
        assert!(limiter.allow(b), "another client has its own bucket");
    }

    #[test]
    fn concurrency_is_bounded_per_client_and_released() {
        let limiter = Arc::new(ConcurrencyLimiter::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = limiter.acquire(a).unwrap();
        let _second = limiter.acquire(a).unwrap();
        assert!(limiter.acquire(a).is_none());
        assert!(limiter.acquire("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(limiter.acquire(a).is_some(), "released on drop");
    }
}
