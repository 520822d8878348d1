//! `enable-cors` and `cors-*`: CORS preflight answers and response fields, as ingress-nginx's template writes them.

use super::{Policy, Reader};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cors {}

impl Cors {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        false
    }
}

pub(super) fn parse(_r: &mut Reader<'_>, _p: &mut Policy) {}
