//! Bounded, expiring maps for authentication results: the auth subrequest's answers
//! (`auth-cache-key`) and the basic-auth credentials already verified (so bcrypt runs once per
//! credential and period, not once per request). Keys are SHA-256 digests, so a key's size
//! does not depend on what the client sent, and nothing secret is held in the clear.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub type Key = [u8; 32];

/// The digest of `parts`, each length-prefixed so `("ab", "c")` and `("a", "bc")` differ.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// At most `capacity` entries, each until its deadline. When full, expired entries go first,
/// then the one closest to expiry: a flood of new keys cannot grow it.
#[derive(Debug)]
pub struct Bounded<V> {
    capacity: usize,
    entries: Mutex<HashMap<Key, (Instant, V)>>,
}

impl<V: Clone> Bounded<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &Key) -> Option<V> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((deadline, v)) if *deadline > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: Key, ttl: Duration, value: V) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let Some(deadline) = now.checked_add(ttl) else { return };
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (d, _)| *d > now);
            if map.len() >= self.capacity
                && let Some(soonest) = map.iter().min_by_key(|(_, (d, _))| *d).map(|(k, _)| *k)
            {
                map.remove(&soonest);
            }
        }
        map.insert(key, (deadline, value));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"a"]), key(&[b"a"]));
    }

    #[test]
    fn bounded_and_expiring() {
        let c = Bounded::new(3);
        let long = Duration::from_secs(60);
        for i in 0u8..10 {
            c.insert(key(&[&[i]]), long + Duration::from_secs(u64::from(i)), i);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.get(&key(&[&[9]])), Some(9), "the newest stays");
        assert_eq!(c.get(&key(&[&[0]])), None, "the oldest went");
        c.insert(key(&[b"gone"]), Duration::from_nanos(1), 42);
        std::thread::sleep(Duration::from_millis(2)); // expiry is the point of this test
        assert_eq!(c.get(&key(&[b"gone"])), None);
        c.insert(key(&[b"zero"]), Duration::ZERO, 1);
        assert_eq!(c.get(&key(&[b"zero"])), None, "a zero ttl is not stored");
        let none = Bounded::new(0);
        none.insert(key(&[b"x"]), long, 1);
        assert_eq!(none.len(), 0);
        c.insert(key(&[b"far"]), Duration::MAX, 1);
        assert_eq!(
            c.get(&key(&[b"far"])),
            None,
            "a deadline past the clock's range is not stored"
        );
    }
}
