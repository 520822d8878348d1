//! `custom-http-errors` and `default-backend`: backend responses with these codes are replaced by the error backend's answer.
//!
//! As ingress-nginx v1.15.1 (`internal/ingress/annotations/{customhttperrors,defaultbackend}`):
//! `custom-http-errors` is a comma list of codes from 400 to 599; without it the cluster-wide
//! `custom-http-errors` applies; `enable-custom-http-errors: "false"` turns both off for the
//! Ingress. `default-backend` names a Service in the Ingress's namespace (its first port): it
//! answers the intercepted errors, and serves the Ingress's requests when their Service has no
//! ready endpoint. What happens at run time is in [`crate::intercept`].

use super::{Policy, Reader, parse_bool};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &["custom-http-errors", "enable-custom-http-errors", "default-backend"];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomErrors {
    /// Codes whose responses go to the error backend (sorted, deduplicated).
    pub codes: Vec<u16>,
    /// `default-backend`: a Service name in the Ingress's namespace.
    pub default_backend: Option<String>,
}

impl CustomErrors {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        !self.codes.is_empty() || self.default_backend.is_some()
    }
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    let mut out = CustomErrors {
        codes: r.defaults.custom_http_errors.clone(),
        default_backend: None,
    };
    let enabled = match r.get("enable-custom-http-errors") {
        None => true,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            r.invalid("enable-custom-http-errors", "expected true or false");
            true
        }),
    };
    if let Some(v) = r.get("custom-http-errors") {
        match parse_codes(v) {
            Some(codes) => out.codes = codes,
            None => r.invalid("custom-http-errors", "expected comma-separated codes from 400 to 599"),
        }
    }
    if !enabled {
        out.codes.clear();
        r.ignored("custom-http-errors", "enable-custom-http-errors is false");
    }
    if let Some(v) = r.get("default-backend") {
        if is_service_name(v) {
            out.default_backend = Some(v.to_owned());
        } else {
            r.invalid(
                "default-backend",
                "expected the name of a Service in the Ingress's namespace",
            );
        }
    }
    out.codes.sort_unstable();
    out.codes.dedup();
    p.errors = out;
}

/// Comma-separated codes, each 400–599; empty items are skipped, but one must be named.
pub(crate) fn parse_codes(v: &str) -> Option<Vec<u16>> {
    let codes: Vec<u16> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u16>().ok())
                .flatten()
                .filter(|c| (400..=599).contains(c))
        })
        .collect::<Option<_>>()?;
    (!codes.is_empty()).then_some(codes)
}

/// A Service name: an RFC 1035 label (lower-case letters, digits, `-`; 63 at most).
fn is_service_name(v: &str) -> bool {
    (1..=63).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && !v.ends_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::super::Defaults;
    use super::super::FindingKind::{Ignored, Invalid};
    use super::*;

    #[test]
    fn codes_table() {
        let rows: &[(&str, Option<&[u16]>)] = &[
            ("404", Some(&[404])),
            ("404,503", Some(&[404, 503])),
            ("404, 503 ,", Some(&[404, 503])),
            ("400,599", Some(&[400, 599])),
            ("", None),
            (",", None),
            ("399", None),
            ("600", None),
            ("200", None),
            ("302", None),
            ("4O4", None),
            ("0404", None),
            ("+404", None),
            ("404;503", None),
            ("404 503", None),
            ("404\r\n", Some(&[404])),
            ("40\r4", None),
            ("404,\n503", Some(&[404, 503])),
            ("404\n503", None),
            ("99999999999999999999", None),
            ("-404", None),
            ("4,04", None),
        ];
        for (v, expected) in rows {
            assert_eq!(parse_codes(v).as_deref(), *expected, "{v:?}");
        }
        for ok in ["fallback", "a", "err-pages-2"] {
            assert!(is_service_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Fallback",
            "-a",
            "a-",
            "1a",
            "a.b",
            "ns/a",
            "a b",
            "a\n",
            &"a".repeat(64),
        ] {
            assert!(!is_service_name(bad), "{bad:?}");
        }
    }

    fn errors(pairs: &[(&str, &str)], defaults: &Defaults) -> (CustomErrors, Vec<(String, super::super::FindingKind)>) {
        let (p, f) = super::super::parse_names(pairs, defaults);
        assert!(p.unenforced.is_empty());
        (p.errors, f)
    }

    #[test]
    fn annotation_cluster_default_and_switch() {
        let cluster = Defaults {
            custom_http_errors: vec![503, 404],
            ..Defaults::default()
        };
        let none = Defaults::default();
        let (e, f) = errors(&[], &none);
        assert!(!e.needs_hyper() && f.is_empty());
        let (e, _) = errors(&[], &cluster);
        assert_eq!(e.codes, [404, 503]);
        let (e, f) = errors(&[("custom-http-errors", "500,500,418")], &cluster);
        assert_eq!(e.codes, [418, 500]);
        assert!(f.is_empty());
        let (e, f) = errors(&[("custom-http-errors", "200")], &cluster);
        assert_eq!(e.codes, [404, 503], "a bad value keeps the cluster's");
        assert_eq!(f, [("custom-http-errors".to_owned(), Invalid)]);
        let (e, f) = errors(&[("enable-custom-http-errors", "false")], &cluster);
        assert!(e.codes.is_empty());
        assert!(f.is_empty());
        let (e, f) = errors(
            &[("enable-custom-http-errors", "false"), ("custom-http-errors", "404")],
            &none,
        );
        assert!(e.codes.is_empty());
        assert_eq!(f, [("custom-http-errors".to_owned(), Ignored)]);
        let (e, f) = errors(&[("default-backend", "errors")], &none);
        assert_eq!(e.default_backend.as_deref(), Some("errors"));
        assert!(e.codes.is_empty() && e.needs_hyper() && f.is_empty());
        let (e, f) = errors(&[("default-backend", "other-ns/errors")], &none);
        assert_eq!(e.default_backend, None);
        assert_eq!(f, [("default-backend".to_owned(), Invalid)]);
    }
}
