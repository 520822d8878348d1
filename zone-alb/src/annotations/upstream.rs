//! How requests reach the backend: `upstream-hash-by`, `service-upstream`, `upstream-vhost`, `x-forwarded-prefix`, `proxy-next-upstream-tries`, `server-alias`, `from-to-www-redirect`, affinity extras.

use super::{Policy, Reader};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Upstream {}

impl Upstream {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        false
    }
}

pub(super) fn parse(_r: &mut Reader<'_>, _p: &mut Policy) {}
