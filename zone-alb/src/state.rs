//! Runtime state that outlives routing tables: rate-limit buckets and requests in flight per
//! Ingress, and per endpoint address its passive health (failures, ejection) and EWMA
//! figures. A routing table is rebuilt on every change (on a cluster up to ten times a
//! second); each new one looks its state up here by stable keys, so a rebuild never refills a
//! bucket, forgets an ejection or resets a latency average, as pingora keeps backend health
//! beside the backend set it swaps.
//!
//! The store holds its entries weakly: the tables own them, and an entry no table holds any
//! more (an Ingress or endpoint that went away) is swept.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, Weak};

use crate::annotations::RateLimitSpec;
use crate::balance::EwmaStats;
use crate::ratelimit::{ConcurrencyLimiter, RateLimiter};

/// One endpoint's runtime figures, shared by every backend (and table) that uses its address.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Consecutive failures (connect errors, timeouts).
    pub(crate) failures: AtomicU32,
    /// Not chosen until then (microseconds on the balancer clock).
    pub(crate) ejected_until: AtomicU64,
    pub(crate) ewma: EwmaStats,
}

/// Where runtime state lives between routing tables; one per zone ALB.
#[derive(Default)]
pub struct Store {
    rate: Entries<(Arc<str>, RateLimitSpec), RateLimiter>,
    concurrency: Entries<(Arc<str>, u32), ConcurrencyLimiter>,
    endpoints: Entries<SocketAddr, EndpointState>,
    auth: Entries<(Arc<str>, u64), crate::auth::Runtime>,
}

impl Store {
    /// The `limit-rps` buckets of an Ingress (`namespace/name`) with this limit.
    pub(crate) fn rate_limiter(&self, ingress: &Arc<str>, spec: RateLimitSpec) -> Arc<RateLimiter> {
        self.rate.get((ingress.clone(), spec), || RateLimiter::new(spec))
    }

    /// The `limit-connections` counts of an Ingress with this limit.
    pub(crate) fn concurrency_limiter(&self, ingress: &Arc<str>, limit: u32) -> Arc<ConcurrencyLimiter> {
        self.concurrency
            .get((ingress.clone(), limit), || ConcurrencyLimiter::new(limit))
    }

    /// The health and latency figures of the endpoint at `addr`.
    pub(crate) fn endpoint(&self, addr: SocketAddr) -> Arc<EndpointState> {
        self.endpoints.get(addr, EndpointState::default)
    }

    /// The authentication state (auth-answer cache, verified credentials) of an Ingress with
    /// this auth configuration (a digest of it).
    pub(crate) fn auth_runtime(&self, ingress: &Arc<str>, config: u64) -> Arc<crate::auth::Runtime> {
        self.auth.get((ingress.clone(), config), Default::default)
    }

    /// Periodic upkeep: forgets entries no table holds, and rate-limit buckets of clients
    /// gone quiet.
    pub fn sweep(&self) {
        self.concurrency.sweep();
        self.endpoints.sweep();
        self.auth.sweep();
        for limiter in self.rate.sweep() {
            limiter.housekeeping();
        }
    }

    /// Entries alive (rate limiters, concurrency limiters, endpoints), for tests and logs.
    pub fn len(&self) -> (usize, usize, usize) {
        (self.rate.len(), self.concurrency.len(), self.endpoints.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }
}

/// Weakly held values by key. Locked only while a table is compiled or swept, never on the
/// request path (requests reach the values through the table).
struct Entries<K, V>(Mutex<HashMap<K, Weak<V>>>);

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<K: Eq + Hash, V> Entries<K, V> {
    fn get(&self, key: K, new: impl FnOnce() -> V) -> Arc<V> {
        let mut map = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(alive) = map.get(&key).and_then(Weak::upgrade) {
            return alive;
        }
        let value = Arc::new(new());
        map.insert(key, Arc::downgrade(&value));
        value
    }

    /// Drops dead entries; returns the live ones.
    fn sweep(&self) -> Vec<Arc<V>> {
        let mut map = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut alive = Vec::new();
        map.retain(|_, weak| match weak.upgrade() {
            Some(value) => {
                alive.push(value);
                true
            }
            None => false,
        });
        alive
    }

    fn len(&self) -> usize {
        let map = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        map.values().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_shared_while_held_and_swept_when_not() {
        let store = Store::default();
        let ingress: Arc<str> = "default/web".into();
        let spec = RateLimitSpec {
            rate: 1,
            per_minute: false,
            burst_multiplier: 1,
        };
        let first = store.rate_limiter(&ingress, spec);
        let client = "192.0.2.1".parse().unwrap();
        assert!(first.allow(client));
        let again = store.rate_limiter(&ingress, spec);
        assert!(Arc::ptr_eq(&first, &again), "a new table gets the same buckets");
        assert!(!again.allow(client), "the bucket was not refilled");
        let other = store.rate_limiter(&ingress, RateLimitSpec { rate: 2, ..spec });
        assert!(!Arc::ptr_eq(&first, &other), "a changed limit starts afresh");

        let ep: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let state = store.endpoint(ep);
        assert!(Arc::ptr_eq(&state, &store.endpoint(ep)));
        assert_eq!(store.len(), (2, 0, 1));
        drop((first, again, other, state));
        store.sweep();
        assert!(store.is_empty(), "nothing holds them any more");
        assert!(store.rate.0.lock().unwrap().is_empty(), "and their keys are gone");
    }
}
