//! Idle upstream connections kept for reuse, per endpoint: the set behind both the hyper
//! path's pool (`upstream`) and the fast path's (`fastpath::pool`). Most recently used first,
//! a bounded number per endpoint (nginx's `keepalive`), none kept past an idle timeout, and a
//! sweep that closes those the backend closed, so an endpoint never used again keeps no
//! sockets open.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// An idle connection unused for this long is closed rather than reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per endpoint; more are closed when released. ingress-nginx's default
/// `upstream-keepalive-connections`: below the requests a worker has in flight (64 HTTP/2
/// connections of 10 streams are 640), every release would close a connection and the next
/// request open one.
pub const MAX_IDLE_PER_ENDPOINT: usize = 320;

/// A connection that can tell whether the backend has closed its end.
pub trait Open {
    fn is_open(&self) -> bool;
}

struct Parked<C> {
    conn: C,
    since: Instant,
}

impl<C: Open> Parked<C> {
    fn reusable(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT && self.conn.is_open()
    }
}

/// Held only to push or pop one connection, never across an await.
pub struct Idle<K, C>(Mutex<HashMap<K, VecDeque<Parked<C>>>>);

impl<K, C> Idle<K, C>
where
    K: Hash + Eq + Copy + Send + 'static,
    C: Open + Send + 'static,
{
    /// A new set, swept on the current runtime if there is one (unit tests building a proxy
    /// without a runtime need no sweeping).
    pub fn new() -> Arc<Self> {
        let idle = Arc::new(Self(Mutex::new(HashMap::new())));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&idle)));
        }
        idle
    }

    /// The most recently parked connection to `key` that is still usable: its socket is the
    /// warmest and the least likely to have been closed by the backend's keep-alive timeout.
    pub fn checkout(&self, key: K) -> Option<C> {
        let mut idle = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let list = idle.get_mut(&key)?;
        while let Some(parked) = list.pop_back() {
            if parked.reusable() {
                return Some(parked.conn);
            }
        }
        None
    }

    /// Parks a connection whose exchange ended cleanly. Over the bound, the longest idle one
    /// is closed, without looking at the others: with more requests in flight than the bound
    /// (HTTP/2 streams), every release finds the set full, and checking each parked
    /// connection there cost a tenth of a worker. Closed ones are dropped by `checkout` and
    /// the sweep.
    pub fn release(&self, key: K, conn: C) {
        let mut idle = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_ENDPOINT {
            list.pop_front();
        }
        list.push_back(Parked {
            conn,
            since: Instant::now(),
        });
    }

    #[cfg(test)]
    pub fn parked(&self, key: K) -> usize {
        let idle = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        idle.get(&key).map_or(0, VecDeque::len)
    }
}

async fn sweep<K: Hash + Eq, C: Open>(idle: Weak<Idle<K, C>>) {
    let period = IDLE_TIMEOUT / 2;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        let Some(idle) = idle.upgrade() else { return };
        let mut idle = idle.0.lock().unwrap_or_else(|poison| poison.into_inner());
        idle.retain(|_, list| {
            list.retain(Parked::reusable);
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Fake(u32, Arc<AtomicBool>);

    impl Open for Fake {
        fn is_open(&self) -> bool {
            self.1.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn the_newest_open_connection_is_handed_out_and_closed_ones_are_dropped() {
        let idle = Idle::<u8, Fake>::new();
        let (open, closed) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
        idle.release(1, Fake(1, open.clone()));
        idle.release(1, Fake(2, closed.clone()));
        idle.release(1, Fake(3, open.clone()));
        assert_eq!(idle.checkout(1).map(|c| c.0), Some(3));
        assert_eq!(idle.checkout(1).map(|c| c.0), Some(1), "the closed one is skipped");
        assert!(idle.checkout(1).is_none());
        assert!(idle.checkout(2).is_none());
    }

    #[test]
    fn at_most_so_many_are_kept_per_endpoint() {
        let idle = Idle::<u8, Fake>::new();
        let open = Arc::new(AtomicBool::new(true));
        for i in 0..(MAX_IDLE_PER_ENDPOINT as u32 + 5) {
            idle.release(7, Fake(i, open.clone()));
        }
        assert_eq!(idle.parked(7), MAX_IDLE_PER_ENDPOINT);
        assert_eq!(idle.checkout(7).map(|c| c.0), Some(MAX_IDLE_PER_ENDPOINT as u32 + 4));
        // The five longest idle went; the rest come out newest first.
        let rest: Vec<u32> = std::iter::from_fn(|| idle.checkout(7).map(|c| c.0)).collect();
        let expected: Vec<u32> = (5..MAX_IDLE_PER_ENDPOINT as u32 + 4).rev().collect();
        assert_eq!(rest, expected);
    }
}
