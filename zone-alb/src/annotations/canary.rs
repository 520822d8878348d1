//! `canary` and `canary-*`: an Ingress that takes part of another Ingress's traffic, by header,
//! cookie or weight, as ingress-nginx's `route_to_alternative_balancer` (balancer.lua) decides.
//!
//! A canary Ingress has no routes of its own: each of its (host, path, pathType) attaches its
//! backend to the main Ingress's rule with the same host, path and pathType (ingress-nginx's
//! `mergeAlternativeBackends`); the main Ingress's location settings serve both. Of the canary's
//! own annotations only the backend's apply (see [`APPLY_ON_CANARY`]); the rest are reported.

use std::collections::BTreeMap;

use regex::Regex;

use super::{Finding, FindingKind, PREFIXES, Policy, Reader, is_token, parse_bool};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &[
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
];

/// Of a canary Ingress's annotations, those ingress-nginx applies (to the canary's backend);
/// location settings come from the main Ingress.
pub const APPLY_ON_CANARY: &[&str] = &[
    "load-balance",
    "upstream-hash-by",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "service-upstream",
];

/// Bounds the memory a user-supplied header pattern may compile to.
const PATTERN_SIZE_LIMIT: usize = 1 << 16;

/// A `canary-by-header-pattern`, compared by its source.
#[derive(Clone, Debug)]
pub struct Pattern(pub Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Canary {
    /// `canary: "true"`: this Ingress is an alternative backend for another's rules.
    pub enabled: bool,
    /// `canary-weight`: requests out of [`Canary::weight_total`] sent to the canary.
    pub weight: u32,
    /// `canary-weight-total` (100). As in balancer.lua, a total below 100 counts as 100.
    pub weight_total: u32,
    /// `canary-by-header`, lower case.
    pub header: Option<String>,
    /// `canary-by-header-value`: the header must equal this (instead of `always`).
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`: the header must match this (unanchored), when no value is set.
    pub header_pattern: Option<Pattern>,
    /// `canary-by-cookie`.
    pub cookie: Option<String>,
}

impl Default for Canary {
    fn default() -> Self {
        Self {
            enabled: false,
            weight: 0,
            weight_total: 100,
            header: None,
            header_value: None,
            header_pattern: None,
            cookie: None,
        }
    }
}

/// What a request carries that the canary rules look at.
pub trait Carries {
    /// The request's header `name` (lower case), several fields joined with `, ` as nginx's
    /// `$http_*`; `None` when absent.
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>>;
    /// The value of cookie `name`, if sent.
    fn cookie(&self, name: &str) -> Option<&str>;
}

impl Canary {
    /// Whether a route with this policy must take hyper's path. The canary Ingress's own rules
    /// are never installed; the main rule it attaches to is handed to hyper by the router.
    pub fn needs_hyper(&self) -> bool {
        false
    }

    /// Whether this request goes to the canary: header, then cookie, then weight, exactly as
    /// balancer.lua. `roll` is a uniform random number in `1..=total` given the total.
    pub fn chooses(&self, request: &impl Carries, roll: impl FnOnce(u32) -> u32) -> bool {
        if let Some(name) = &self.header
            && let Some(value) = request.header(name)
        {
            if let Some(wanted) = &self.header_value {
                if *wanted == value {
                    return true;
                }
            } else if let Some(pattern) = &self.header_pattern {
                if pattern.0.is_match(&value) {
                    return true;
                }
            } else if value == "always" {
                return true;
            } else if value == "never" {
                return false;
            }
        }
        if let Some(name) = &self.cookie
            && let Some(value) = request.cookie(name)
        {
            match value {
                "always" => return true,
                "never" => return false,
                _ => {}
            }
        }
        if self.weight == 0 {
            return false;
        }
        let total = self.weight_total.max(100);
        roll(total) <= self.weight
    }
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    let c = &mut p.canary_rules;
    if let Some(v) = r.get("canary") {
        match parse_bool(v) {
            Some(b) => c.enabled = b,
            None => r.invalid("canary", "expected true or false"),
        }
    }
    if let Some(v) = r.get("canary-weight") {
        match v.parse::<i64>() {
            Ok(n) if n >= 0 => c.weight = u32::try_from(n).unwrap_or(u32::MAX),
            // Negative weighs nothing in ingress-nginx too.
            _ => r.invalid("canary-weight", "expected a whole number of requests, 0 or more"),
        }
    }
    if let Some(v) = r.get("canary-weight-total") {
        match v.parse::<u32>() {
            Ok(n) if n > 0 => c.weight_total = n,
            _ => r.invalid("canary-weight-total", "expected a positive whole number (default 100)"),
        }
    }
    if let Some(v) = r.get("canary-by-header") {
        if is_token(v) {
            c.header = Some(v.to_ascii_lowercase());
        } else if !v.is_empty() {
            r.invalid("canary-by-header", "expected a header name");
        }
    }
    if let Some(v) = r.get("canary-by-header-value") {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            c.header_value = Some(v.to_owned());
        } else if !v.is_empty() {
            r.invalid("canary-by-header-value", "expected visible ASCII");
        }
    }
    if let Some(v) = r.get("canary-by-header-pattern") {
        let re = regex::RegexBuilder::new(v).size_limit(PATTERN_SIZE_LIMIT).build();
        match re {
            _ if v.is_empty() => {}
            Ok(re) => c.header_pattern = Some(Pattern(re)),
            Err(_) => r.invalid("canary-by-header-pattern", "not a valid regular expression"),
        }
    }
    if let Some(v) = r.get("canary-by-cookie") {
        if is_token(v) {
            c.cookie = Some(v.to_owned());
        } else if !v.is_empty() {
            r.invalid("canary-by-cookie", "expected a cookie name");
        }
    }
    let c = &mut p.canary_rules;
    if c.header.is_none() {
        if c.header_value.is_some() {
            r.ignored("canary-by-header-value", "no effect without canary-by-header");
        }
        if c.header_pattern.is_some() {
            r.ignored("canary-by-header-pattern", "no effect without canary-by-header");
        }
        c.header_value = None;
        c.header_pattern = None;
    } else if c.header_value.is_some() && c.header_pattern.take().is_some() {
        r.ignored("canary-by-header-pattern", "canary-by-header-value is set and wins");
    }
    if !c.enabled {
        // ingress-nginx: "configured but not enabled"; the Ingress is an ordinary one.
        let configured = c.weight > 0 || c.header.is_some() || c.cookie.is_some();
        *c = Canary::default();
        if configured {
            for name in &READ[1..] {
                r.ignored(name, "no effect: canary is not \"true\"");
            }
        }
    }
}

/// The findings for a canary Ingress: every key of ours that ingress-nginx does not apply on a
/// canary is reported ignored (the main Ingress's settings serve the canary's requests too),
/// whatever it was found to be on its own.
pub fn on_canary(annotations: Option<&BTreeMap<String, String>>, findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: BTreeMap<String, Finding> = findings.into_iter().map(|f| (f.annotation.clone(), f)).collect();
    for (key, value) in annotations.into_iter().flatten() {
        let Some(name) = PREFIXES.iter().find_map(|p| key.strip_prefix(p)) else {
            continue;
        };
        if READ.contains(&name) || APPLY_ON_CANARY.contains(&name) {
            continue;
        }
        out.insert(
            key.clone(),
            Finding {
                annotation: key.clone(),
                value: value.clone(),
                kind: FindingKind::Ignored,
                message: "not applied on a canary Ingress (the main Ingress's settings serve its requests, \
                          as in ingress-nginx); ignored"
                    .to_owned(),
            },
        );
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    struct Req<'a> {
        headers: &'a [(&'a str, &'a str)],
        cookies: &'a [(&'a str, &'a str)],
    }

    impl Carries for Req<'_> {
        fn header(&self, name: &str) -> Option<Cow<'_, str>> {
            let values: Vec<&str> = self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect();
            (!values.is_empty()).then(|| Cow::Owned(values.join(", ")))
        }
        fn cookie(&self, name: &str) -> Option<&str> {
            self.cookies.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    fn canary(pairs: &[(&str, &str)]) -> (Canary, Vec<Finding>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), (*v).to_owned()))
            .collect();
        let (p, findings) = super::super::parse(Some(&map));
        (p.canary_rules, findings)
    }

    #[test]
    fn header_beats_cookie_beats_weight() {
        let (c, findings) = canary(&[
            ("canary", "true"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "canary"),
            ("canary-weight", "100"),
        ]);
        assert!(findings.is_empty(), "{findings:?}");
        // (headers, cookies, expected) with weight 100: anything undecided goes to the canary.
        let rows: &[(Pairs<'_>, Pairs<'_>, bool)] = &[
            (&[], &[], true),
            (&[("x-canary", "never")], &[("canary", "always")], false),
            (&[("X-CANARY", "never")], &[], false),
            (&[("x-canary", "always")], &[("canary", "never")], true),
            (&[("x-canary", "Never")], &[("canary", "never")], false), // case-sensitive value: cookie decides
            (&[("x-canary", "maybe")], &[("canary", "never")], false),
            (&[("x-canary", "")], &[("canary", "never")], false),
            (&[("x-canary", "never"), ("x-canary", "x")], &[], true), // "never, x" is neither
            (&[], &[("canary", "never")], false),
            (&[], &[("canary", "always")], true),
            (&[], &[("canary", "ALWAYS")], true), // neither: weight
            (&[], &[("Canary", "never")], true),  // another cookie
            (&[("x-canary-2", "never")], &[], true),
        ];
        for (i, (headers, cookies, expected)) in rows.iter().enumerate() {
            let req = Req { headers, cookies };
            assert_eq!(c.chooses(&req, |total| total), *expected, "row {i}");
        }
    }

    #[test]
    fn header_value_and_pattern_only_send_on_a_match_and_otherwise_fall_through() {
        let (c, _) = canary(&[
            ("canary", "true"),
            ("canary-by-header", "x-region"),
            ("canary-by-header-value", "eu"),
            ("canary-by-cookie", "c"),
        ]);
        let no = |h: &[(&str, &str)], k: &[(&str, &str)]| c.chooses(&Req { headers: h, cookies: k }, |_| 1);
        assert!(no(&[("x-region", "eu")], &[("c", "never")]));
        assert!(!no(&[("x-region", "always")], &[]), "only the value counts, not always");
        assert!(!no(&[("x-region", "EU")], &[]));
        assert!(
            no(&[("x-region", "us")], &[("c", "always")]),
            "no match: the cookie decides"
        );
        assert!(
            no(&[("x-region", "never")], &[("c", "always")]),
            "never is just another value here"
        );
        let (c, f) = canary(&[
            ("canary", "true"),
            ("canary-by-header", "x-user"),
            ("canary-by-header-pattern", "^(alice|bob)$"),
        ]);
        assert!(f.is_empty(), "{f:?}");
        let req = |v: &'static str| Req {
            headers: Box::leak(Box::new([("x-user", v)])),
            cookies: &[],
        };
        assert!(c.chooses(&req("bob"), |_| 100));
        assert!(!c.chooses(&req("bobby"), |_| 100));
        assert!(!c.chooses(&req("never"), |_| 100));
        // Value wins over pattern.
        let (c, f) = canary(&[
            ("canary", "true"),
            ("canary-by-header", "x-user"),
            ("canary-by-header-value", "carol"),
            ("canary-by-header-pattern", "^bob$"),
        ]);
        assert_eq!(f.len(), 1);
        assert!(c.header_pattern.is_none() && c.header_value.as_deref() == Some("carol"));
    }

    #[test]
    fn weight_is_out_of_the_total_and_a_total_below_100_counts_as_100() {
        let share = |pairs: &[(&str, &str)]| {
            let (c, _) = canary(pairs);
            let req = Req {
                headers: &[],
                cookies: &[],
            };
            // Every roll once: the exact share.
            let total = c.weight_total.max(100);
            (1..=total)
                .filter(|&n| {
                    c.chooses(&req, |t| {
                        assert_eq!(t, total);
                        n
                    })
                })
                .count()
        };
        assert_eq!(share(&[("canary", "true")]), 0);
        assert_eq!(share(&[("canary", "true"), ("canary-weight", "0")]), 0);
        assert_eq!(share(&[("canary", "true"), ("canary-weight", "30")]), 30);
        assert_eq!(share(&[("canary", "true"), ("canary-weight", "100")]), 100);
        assert_eq!(share(&[("canary", "true"), ("canary-weight", "500")]), 100);
        assert_eq!(
            share(&[
                ("canary", "true"),
                ("canary-weight", "1"),
                ("canary-weight-total", "1000")
            ]),
            1
        );
        assert_eq!(
            share(&[
                ("canary", "true"),
                ("canary-weight", "5"),
                ("canary-weight-total", "10")
            ]),
            5,
            "total 10 counts as 100, as balancer.lua"
        );
    }

    #[test]
    fn hostile_and_malformed_values() {
        use FindingKind::*;
        let rows: &[(Pairs<'_>, &[(&str, FindingKind)])] = &[
            (&[("canary", "yes")], &[("canary", Invalid)]),
            (
                &[("canary", "true"), ("canary-weight", "-5")],
                &[("canary-weight", Invalid)],
            ),
            (
                &[("canary", "true"), ("canary-weight", "1e3")],
                &[("canary-weight", Invalid)],
            ),
            (
                &[("canary", "true"), ("canary-weight", "99999999999999999999")],
                &[("canary-weight", Invalid)],
            ),
            (
                &[("canary", "true"), ("canary-weight-total", "0")],
                &[("canary-weight-total", Invalid)],
            ),
            (
                &[("canary", "true"), ("canary-by-header", "X-A\r\nX-B: 1")],
                &[("canary-by-header", Invalid)],
            ),
            (
                &[("canary", "true"), ("canary-by-header", "a b")],
                &[("canary-by-header", Invalid)],
            ),
            (
                &[("canary", "true"), ("canary-by-cookie", "a=b")],
                &[("canary-by-cookie", Invalid)],
            ),
            (
                &[
                    ("canary", "true"),
                    ("canary-by-header", "x"),
                    ("canary-by-header-value", "a\u{1}b"),
                ],
                &[("canary-by-header-value", Invalid)],
            ),
            (
                &[
                    ("canary", "true"),
                    ("canary-by-header", "x"),
                    ("canary-by-header-pattern", "(unclosed"),
                ],
                &[("canary-by-header-pattern", Invalid)],
            ),
            (
                &[
                    ("canary", "true"),
                    ("canary-by-header", "x"),
                    ("canary-by-header-pattern", "a{1000}{1000}{1000}"),
                ],
                &[("canary-by-header-pattern", Invalid)],
            ),
            (
                &[("canary", "true"), ("canary-by-header-value", "x")],
                &[("canary-by-header-value", Ignored)],
            ),
            (
                &[("canary-weight", "10"), ("canary-by-cookie", "c")],
                &[("canary-by-cookie", Ignored), ("canary-weight", Ignored)],
            ),
            (&[("canary", "false")], &[]),
            (&[("canary", "true"), ("canary-by-header", "")], &[]),
        ];
        for (i, (pairs, expected)) in rows.iter().enumerate() {
            let (c, findings) = canary(pairs);
            let got: Vec<(&str, FindingKind)> = findings
                .iter()
                .map(|f| (f.annotation.trim_start_matches("nginx.ingress.kubernetes.io/"), f.kind))
                .collect();
            assert_eq!(got, *expected, "row {i}: {pairs:?}");
            if !pairs.iter().any(|(k, v)| *k == "canary" && *v == "true") {
                assert_eq!(c, Canary::default(), "row {i}");
            }
        }
    }

    #[test]
    fn on_a_canary_only_backend_settings_apply() {
        let map: BTreeMap<String, String> = [
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/load-balance", "ewma"),
            ("nginx.ingress.kubernetes.io/proxy-body-size", "1k"),
            ("nginx.ingress.kubernetes.io/auth-url", "http://a"),
            ("mzlb.io/rewrite-target", "/"),
            ("other.io/x", "y"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let (_, findings) = super::super::parse(Some(&map));
        let findings = on_canary(Some(&map), findings);
        let got: Vec<(&str, FindingKind)> = findings.iter().map(|f| (f.annotation.as_str(), f.kind)).collect();
        assert_eq!(
            got,
            [
                ("mzlb.io/rewrite-target", FindingKind::Ignored),
                ("nginx.ingress.kubernetes.io/auth-url", FindingKind::Ignored),
                ("nginx.ingress.kubernetes.io/proxy-body-size", FindingKind::Ignored),
            ]
        );
    }
}
