//! The request policy both HTTP paths apply, the fast path and hyper's: what a request is
//! refused for and with which status ([`ProxyError`]), how its path is matched ([`path`]),
//! which fields cross the proxy ([`forward`]). Kept apart from I/O, so it is tested without
//! sockets; neither path has a copy of its own.

pub(crate) mod error;
pub(crate) mod forward;
pub(crate) mod path;

use std::borrow::Cow;
use std::net::IpAddr;

pub(crate) use error::ProxyError;

use crate::ratelimit::ConcurrencyGuard;
use crate::router::Route;

/// Longest request target served (nginx's `large_client_header_buffers` 8k line; 414 beyond).
pub(crate) const MAX_TARGET: usize = 8 * 1024;

/// The path a request is routed by: its target's path, normalised ([`path::normalize`]).
/// The backend still gets the target as sent, unless a rewrite applies.
pub(crate) fn route_path(target_path: &str) -> Result<Cow<'_, str>, ProxyError> {
    path::normalize(target_path).map_err(ProxyError::BadPath)
}

/// The request target's length is within bounds.
pub(crate) fn check_target(target: &str) -> Result<(), ProxyError> {
    if target.len() > MAX_TARGET {
        return Err(ProxyError::TargetTooLong);
    }
    Ok(())
}

/// A `Host` value: a registered name or an IP literal, with an optional port (RFC 9110 §7.2,
/// RFC 3986 §3.2.2). Anything else (`a.test:1@b.test`, spaces, `/`) could be read as another
/// host by a backend than the one we routed by: 400.
pub(crate) fn check_host(value: &[u8]) -> Result<(), ProxyError> {
    let ok = value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'[' | b']' | b'%'));
    if ok { Ok(()) } else { Err(ProxyError::BadRequest) }
}

/// `Transfer-Encoding` values of a request: only exactly `chunked` is served, as nginx does;
/// another coding under it would reach the backend decoded by nobody (501). (A coding other
/// than a final `chunked` never gets here: the parser refuses it with 400.)
pub(crate) fn check_transfer_codings<'v>(values: impl Iterator<Item = &'v [u8]>) -> Result<(), ProxyError> {
    let mut codings = 0;
    for value in values {
        for coding in forward::connection_tokens(value) {
            codings += 1;
            if codings > 1 || !coding.eq_ignore_ascii_case(b"chunked") {
                return Err(ProxyError::UnsupportedCoding);
            }
        }
    }
    Ok(())
}

/// The checks of a routed request, in ingress-nginx's order: a route that fails closed (503),
/// deny-list then allow-list (403), requests per second and requests in flight per client (503), body size
/// by its declared length (413). Returns the in-flight slot, held until the exchange ends.
pub(crate) fn admit(
    route: &Route<'_>,
    client: IpAddr,
    content_length: Option<u64>,
) -> Result<Option<ConcurrencyGuard>, ProxyError> {
    let p = &route.policy;
    if let Some(key) = p.unenforced.first() {
        return Err(ProxyError::Unenforced(key.clone()));
    }
    if let Some(deny) = &p.policy.deny
        && deny.iter().any(|net| net.contains(&client))
    {
        return Err(ProxyError::Forbidden);
    }
    if let Some(allow) = &p.policy.allow
        && !allow.iter().any(|net| net.contains(&client))
    {
        return Err(ProxyError::Forbidden);
    }
    if let Some(limiter) = &p.rate_limiter
        && !limiter.allow(client)
    {
        return Err(ProxyError::RateLimited(p.policy.limit_req_status));
    }
    let slot = match &p.connection_limiter {
        Some(limiter) => Some(
            limiter
                .acquire(client)
                .ok_or(ProxyError::RateLimited(p.policy.limit_conn_status))?,
        ),
        None => None,
    };
    if let (Some(limit), Some(length)) = (p.policy.body_limit, content_length)
        && length > limit
    {
        return Err(ProxyError::TooLarge);
    }
    Ok(slot)
}

/// Upgrade tokens spliced on any route: WebSocket. Others only where the route's
/// `mzlb.io/upgrade-protocols` lists them; `h2c` never (the annotation refuses it), as a
/// spliced h2c connection would carry requests that never pass routing.
pub(crate) fn upgrade_allowed(route: &Route<'_>, token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"websocket")
        || route
            .policy
            .policy
            .upgrade_protocols
            .iter()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_codings_table() {
        let ok = |values: &[&str]| check_transfer_codings(values.iter().map(|v| v.as_bytes())).is_ok();
        assert!(ok(&["chunked"]));
        assert!(ok(&["CHUNKED"]));
        assert!(ok(&[" chunked "]));
        assert!(ok(&[]));
        for bad in [
            &["gzip, chunked"][..],
            &["chunked, chunked"],
            &["chunked", "chunked"],
            &["identity"],
            &["x-chunked"],
            &["gzip", "chunked"],
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn hosts_table() {
        for ok in [
            "h.test",
            "H.TEST:8080",
            "127.0.0.1:80",
            "[::1]:8080",
            "xn--bcher-kva.test",
            "h.test.",
            "",
        ] {
            assert!(check_host(ok.as_bytes()).is_ok(), "{ok}");
        }
        for bad in [
            "a.test:1@b.test",
            "a b",
            "a/b",
            "a?b",
            "a#b",
            "a\\b",
            "a\tb",
            "user@h.test",
            "h.test,h2.test",
        ] {
            assert!(check_host(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_are_bounded() {
        assert!(check_target(&"a".repeat(MAX_TARGET)).is_ok());
        assert!(matches!(
            check_target(&"a".repeat(MAX_TARGET + 1)),
            Err(ProxyError::TargetTooLong)
        ));
    }
}
