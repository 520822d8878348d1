//! Buffer and size knobs: `proxy-buffering`, `proxy-request-buffering`, `proxy-buffer-size`, `proxy-buffers-number`, `client-body-buffer-size`, `proxy-max-temp-file-size`.

use super::{Policy, Reader};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buffers {}

impl Buffers {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        false
    }
}

pub(super) fn parse(_r: &mut Reader<'_>, _p: &mut Policy) {}
