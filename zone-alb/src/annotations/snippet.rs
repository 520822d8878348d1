//! `configuration-snippet`, `server-snippet`, `auth-snippet`: parsed against a fixed grammar into typed actions; anything else fails closed. Never interpreted.

use super::{Policy, Reader};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snippets {}

impl Snippets {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        false
    }
}

pub(super) fn parse(_r: &mut Reader<'_>, _p: &mut Policy) {}
