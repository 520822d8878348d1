//! Per-client request rate limits (`limit-rps`): a token bucket per client address. Excess
//! requests get 503, as ingress-nginx answers by default.

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
        let rate = NonZeroU32::new(spec.rps).unwrap_or(NonZeroU32::MIN);
        // ingress-nginx: `limit_req burst=rps*multiplier nodelay`.
        let burst = NonZeroU32::new(spec.rps.saturating_mul(spec.burst_multiplier)).unwrap_or(rate);
        Self {
            buckets: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_per_client() {
        let limiter = RateLimiter::new(RateLimitSpec {
            rps: 2,
            burst_multiplier: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let allowed = (0..10).filter(|_| limiter.allow(a)).count();
        assert_eq!(allowed, 4, "burst of rps × multiplier");
        assert!(limiter.allow(b), "another client has its own bucket");
    }
}
