//! `auth-*` annotations: external authentication (`auth-url` and its family, a subrequest per request) and basic authentication (`auth-type`, `auth-secret`, `auth-realm`).

use super::{Policy, Reader};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Auth {}

impl Auth {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        false
    }
}

pub(super) fn parse(_r: &mut Reader<'_>, _p: &mut Policy) {}
