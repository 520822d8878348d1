//! Choosing one endpoint of a backend per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Round-robin over a fixed endpoint list; lock-free so the request path never waits.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn pick(&self, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
        if endpoints.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(endpoints[n % endpoints.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_every_endpoint() {
        let eps: Vec<SocketAddr> = vec!["10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap()];
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&eps).unwrap()).collect();
        assert_eq!(picks, vec![eps[0], eps[1], eps[0], eps[1]]);
        assert_eq!(rr.pick(&[]), None);
    }
}
