//! `auth-type: basic`: the request's `Authorization: Basic …` against the Secret's users, as
//! nginx's `auth_basic`: 401 with `WWW-Authenticate: Basic realm="…"` otherwise, and the
//! `Authorization` field is not passed upstream.
//!
//! bcrypt and crypt(3) are slow by design: they run on blocking threads, a few at a time per
//! Ingress, and a credential once verified is remembered (by digest) for a minute. A client
//! hammering bad passwords gets its guesses queued behind the permits; beyond a bounded queue
//! it gets 503 at once, so it cannot hold the ALB's memory or threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hyper::header::{AUTHORIZATION, HeaderMap};
use tokio::sync::Semaphore;

use super::cache::{self, Bounded};
use super::htpasswd::Credentials;

/// How long a verified credential is remembered.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
const VERIFIED_CAPACITY: usize = 1024;
/// Slow verifications waiting for a permit, per Ingress, beyond which requests get 503.
const MAX_WAITING: usize = 256;

/// The compiled basic-auth of one Ingress.
#[derive(Debug)]
pub struct Basic {
    pub realm: String,
    pub credentials: Credentials,
}

/// Runtime state of one Ingress's basic auth, kept across tables.
#[derive(Debug)]
pub struct BasicState {
    verified: Bounded<()>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Default for BasicState {
    fn default() -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
        Self {
            verified: Bounded::new(VERIFIED_CAPACITY),
            permits: Arc::new(Semaphore::new(n)),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// 401 with the challenge.
    Denied,
    /// Too many slow verifications waiting: 503.
    Busy,
}

/// The user and password of a `Basic` Authorization field.
pub fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    Some((user, decoded[colon + 1..].to_vec()))
}

impl Basic {
    /// The `WWW-Authenticate` value nginx sends: `Basic realm="<realm>"`.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\"", self.realm)
    }

    pub async fn check(&self, state: &BasicState, headers: &HeaderMap) -> Verdict {
        let Some((user, password)) = credentials(headers) else {
            return Verdict::Denied;
        };
        let Some(hash) = self.credentials.users.get(&user) else {
            return Verdict::Denied;
        };
        if !hash.is_slow() {
            return if hash.verify(&password) {
                Verdict::Allowed
            } else {
                Verdict::Denied
            };
        }
        // The stored hash is part of the key: a changed password forgets what was verified.
        let key = cache::key(&[user.as_bytes(), &password, slow_hash_text(hash)]);
        if state.verified.get(&key).is_some() {
            return Verdict::Allowed;
        }
        if state.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            state.waiting.fetch_sub(1, Ordering::AcqRel);
            return Verdict::Busy;
        }
        let permit = state.permits.clone().acquire_owned().await;
        state.waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(permit) = permit else { return Verdict::Busy };
        let hash = hash.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash.verify(&password)
        })
        .await
        .unwrap_or(false);
        if ok {
            state.verified.insert(key, VERIFIED_FOR, ());
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }
}

fn slow_hash_text(hash: &super::htpasswd::Hash) -> &[u8] {
    match hash {
        super::htpasswd::Hash::Bcrypt(s) | super::htpasswd::Hash::Crypt(s) => s.as_bytes(),
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::htpasswd::parse_file;

    fn header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, v.parse().unwrap());
        h
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn authorization_fields_table() {
        assert_eq!(
            credentials(&header(&basic("alice", "pa:ss"))),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(credentials(&header(&basic("", ""))), Some((String::new(), vec![])));
        assert!(credentials(&header(&basic("alice", "x").replace("Basic", "bAsIc"))).is_some());
        for bad in [
            "Bearer abc",
            "Basic",
            "Basic !!!",
            "Basic YWxpY2U=", // no colon
            "Digest username=alice",
            "Basicxyz YWxpY2U6eA==",
            "Basic /w==", // not UTF-8 user
        ] {
            assert_eq!(credentials(&header(bad)), None, "{bad}");
        }
        let mut two = header(&basic("a", "b"));
        two.append(AUTHORIZATION, basic("c", "d").parse().unwrap());
        assert_eq!(credentials(&two), None, "two Authorization fields are refused");
        assert_eq!(credentials(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn verdicts() {
        let b = Basic {
            realm: "Protected".into(),
            credentials: parse_file(
                "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\nbob:$2y$05$y52gy6dujZU4Zqd./8HifugvERN/hFB4tqTgiDjvXyvaTC9bmkPyq\n",
            ),
        };
        assert_eq!(b.challenge(), "Basic realm=\"Protected\"");
        let state = BasicState::default();
        assert_eq!(
            b.check(&state, &header(&basic("alice", "secret"))).await,
            Verdict::Allowed
        );
        assert_eq!(b.check(&state, &header(&basic("alice", "nope"))).await, Verdict::Denied);
        assert_eq!(
            b.check(&state, &header(&basic("mallory", "secret"))).await,
            Verdict::Denied
        );
        assert_eq!(b.check(&state, &HeaderMap::new()).await, Verdict::Denied);
        assert_eq!(
            b.check(&state, &header(&basic("bob", "secret"))).await,
            Verdict::Allowed
        );
        assert_eq!(state.verified.len(), 1, "the bcrypt success is remembered");
        assert_eq!(
            b.check(&state, &header(&basic("bob", "secret"))).await,
            Verdict::Allowed
        );
        assert_eq!(b.check(&state, &header(&basic("bob", "wrong"))).await, Verdict::Denied);
        assert_eq!(state.verified.len(), 1, "failures are not");
    }

    #[tokio::test]
    async fn a_flood_of_slow_guesses_is_bounded() {
        let b = Basic {
            realm: String::new(),
            credentials: parse_file("bob:$2y$05$y52gy6dujZU4Zqd./8HifugvERN/hFB4tqTgiDjvXyvaTC9bmkPyq"),
        };
        let state = BasicState::default();
        state.waiting.store(MAX_WAITING, Ordering::Relaxed);
        assert_eq!(b.check(&state, &header(&basic("bob", "guess"))).await, Verdict::Busy);
        assert_eq!(state.waiting.load(Ordering::Relaxed), MAX_WAITING, "given back");
    }
}
