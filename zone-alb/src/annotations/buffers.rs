//! Buffer and size knobs: `proxy-buffering`, `proxy-request-buffering`, `proxy-buffer-size`,
//! `proxy-buffers-number`, `client-body-buffer-size`, `proxy-max-temp-file-size`.
//!
//! mzlb streams both ways by default. What a client can observe is honoured on hyper's path:
//! `proxy-buffer-size` bounds the backend's response head (502 beyond, as nginx's "upstream
//! sent too big header"), and `proxy-request-buffering: on` reads the whole request body
//! (in memory up to `client-body-buffer-size`, then in a temporary file) before the backend
//! is contacted. Response buffering changes only timing in mzlb's design: its knobs are
//! accepted and reported as having no effect.

use super::{Policy, Reader, parse_size};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[
    "proxy-buffering",
    "proxy-request-buffering",
    "proxy-buffer-size",
    "proxy-buffers-number",
    "client-body-buffer-size",
    "proxy-max-temp-file-size",
];

/// nginx's `client_body_buffer_size` default (two memory pages).
pub const DEFAULT_BODY_BUFFER: u64 = 8 << 10;

#[derive(Clone, Debug, PartialEq)]
pub struct Buffers {
    /// `proxy-buffer-size`: the largest response head a backend may send (502 beyond).
    /// `None` when not set: hyper's own limit applies (about 400 KiB and 100 fields), not
    /// ingress-nginx's default 4k, which the fast path does not check either.
    pub response_head_limit: Option<u64>,
    /// `proxy-request-buffering: on`: the body is read whole before the backend is contacted.
    /// Off by default in mzlb, which streams (ingress-nginx's default is on).
    pub request_buffering: bool,
    /// `client-body-buffer-size`: bytes of a buffered body kept in memory; the rest goes to a
    /// temporary file.
    pub body_buffer: u64,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            response_head_limit: None,
            request_buffering: false,
            body_buffer: DEFAULT_BODY_BUFFER,
        }
    }
}

impl Buffers {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        self.response_head_limit.is_some() || self.request_buffering
    }
}

const STREAMS: &str = "mzlb streams responses, so it has no effect";

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    let b = &mut p.buffers;
    if let Some(v) = r.get("proxy-buffering") {
        match v {
            "on" | "off" => r.ignored("proxy-buffering", STREAMS),
            _ => r.invalid("proxy-buffering", "expected on or off"),
        }
    }
    if let Some(v) = r.get("proxy-request-buffering") {
        match v {
            "on" => b.request_buffering = true,
            "off" => {}
            _ => r.invalid(
                "proxy-request-buffering",
                "expected on or off (mzlb streams request bodies unless it is on)",
            ),
        }
    }
    if let Some(v) = r.get("proxy-buffer-size") {
        match parse_size(v) {
            Some(n) if n > 0 => b.response_head_limit = Some(n),
            _ => r.invalid("proxy-buffer-size", "expected a size such as 4k or 16k"),
        }
    }
    if let Some(v) = r.get("client-body-buffer-size") {
        match parse_size(v) {
            Some(n) if b.request_buffering => b.body_buffer = n,
            Some(_) => r.ignored(
                "client-body-buffer-size",
                "no effect while request bodies stream (set proxy-request-buffering: on)",
            ),
            None => r.invalid("client-body-buffer-size", "expected a size such as 8k or 1m"),
        }
    }
    if let Some(v) = r.get("proxy-buffers-number") {
        match v.parse::<u32>() {
            Ok(n) if n > 0 => r.ignored("proxy-buffers-number", STREAMS),
            _ => r.invalid("proxy-buffers-number", "expected a number"),
        }
    }
    if let Some(v) = r.get("proxy-max-temp-file-size") {
        match parse_size(v) {
            Some(_) => r.ignored("proxy-max-temp-file-size", STREAMS),
            None => r.invalid("proxy-max-temp-file-size", "expected a size such as 1024m or 0"),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::super::FindingKind::{self, Ignored, Invalid};
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (Buffers, Vec<(String, FindingKind)>) {
        let (p, f) = super::super::parse_names(pairs, &Default::default());
        assert!(p.unenforced.is_empty(), "buffer knobs never fail closed");
        (p.buffers, f)
    }

    #[test]
    fn buffer_knobs_land_where_they_are_honoured_or_reported() {
        type Row<'a> = (&'a [(&'a str, &'a str)], Buffers, &'a [(&'a str, FindingKind)]);
        let rows: &[Row<'_>] = &[
            (&[], Buffers::default(), &[]),
            (
                &[("proxy-buffer-size", "16k")],
                Buffers {
                    response_head_limit: Some(16 << 10),
                    ..Default::default()
                },
                &[],
            ),
            (
                &[("proxy-request-buffering", "on"), ("client-body-buffer-size", "1m")],
                Buffers {
                    request_buffering: true,
                    body_buffer: 1 << 20,
                    ..Default::default()
                },
                &[],
            ),
            (&[("proxy-request-buffering", "off")], Buffers::default(), &[]),
            (
                &[("client-body-buffer-size", "1m")],
                Buffers::default(),
                &[("client-body-buffer-size", Ignored)],
            ),
            (
                &[("proxy-buffering", "on")],
                Buffers::default(),
                &[("proxy-buffering", Ignored)],
            ),
            (
                &[("proxy-buffering", "yes")],
                Buffers::default(),
                &[("proxy-buffering", Invalid)],
            ),
            (
                &[("proxy-buffers-number", "8")],
                Buffers::default(),
                &[("proxy-buffers-number", Ignored)],
            ),
            (
                &[("proxy-buffers-number", "-1")],
                Buffers::default(),
                &[("proxy-buffers-number", Invalid)],
            ),
            (
                &[("proxy-max-temp-file-size", "1024m")],
                Buffers::default(),
                &[("proxy-max-temp-file-size", Ignored)],
            ),
            (
                &[("proxy-buffer-size", "0")],
                Buffers::default(),
                &[("proxy-buffer-size", Invalid)],
            ),
            (
                &[("proxy-buffer-size", "4 k")],
                Buffers::default(),
                &[("proxy-buffer-size", Invalid)],
            ),
            (
                &[("proxy-buffer-size", "99999999999g")],
                Buffers::default(),
                &[("proxy-buffer-size", Invalid)],
            ),
            (
                &[("proxy-request-buffering", "ON")],
                Buffers::default(),
                &[("proxy-request-buffering", Invalid)],
            ),
        ];
        for (pairs, buffers, findings) in rows {
            let (got, got_findings) = parse(pairs);
            assert_eq!(got, *buffers, "{pairs:?}");
            let expected: Vec<(String, FindingKind)> = findings.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect();
            assert_eq!(got_findings, expected, "{pairs:?}");
            assert_eq!(
                got.needs_hyper(),
                got.request_buffering || got.response_head_limit.is_some()
            );
        }
    }
}
