//! Gateway API hostnames: a listener's and a route's, their intersection, and which request
//! hosts they match. Unlike an Ingress's, a Gateway API wildcard (`*.example.com`) matches one
//! or more labels (`a.example.com`, `a.b.example.com`), never `example.com` itself.

/// A hostname as written on a listener or route, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Hostname {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Wildcard(String),
}

impl Hostname {
    pub(crate) fn parse(text: &str) -> Option<Hostname> {
        let text = text.to_ascii_lowercase();
        if let Some(parent) = text.strip_prefix("*.") {
            if !valid_name(parent) {
                return None;
            }
            return Some(Hostname::Wildcard(format!(".{parent}")));
        }
        // An IP address is not a hostname here (the CRD forbids it too).
        if !valid_name(&text) || text.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        Some(Hostname::Exact(text))
    }

    /// Whether a request for `host` (lower case, no port) matches.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Hostname::Exact(name) => name == host,
            Hostname::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// The hostnames both match, if any: the more specific of the two.
    pub(crate) fn intersect(&self, other: &Hostname) -> Option<Hostname> {
        match (self, other) {
            (Hostname::Exact(a), Hostname::Exact(b)) => (a == b).then(|| self.clone()),
            (Hostname::Wildcard(_), Hostname::Exact(b)) => self.matches(b).then(|| other.clone()),
            (Hostname::Exact(a), Hostname::Wildcard(_)) => other.matches(a).then(|| self.clone()),
            (Hostname::Wildcard(a), Hostname::Wildcard(b)) => {
                if a.ends_with(b.as_str()) {
                    Some(self.clone())
                } else if b.ends_with(a.as_str()) {
                    Some(other.clone())
                } else {
                    None
                }
            }
        }
    }

    /// Orders by specificity, most specific first: exact names, then wildcards by length.
    pub(crate) fn specificity(&self) -> (u8, usize) {
        match self {
            Hostname::Exact(name) => (0, usize::MAX - name.len()),
            Hostname::Wildcard(suffix) => (1, usize::MAX - suffix.len()),
        }
    }
}

impl std::fmt::Display for Hostname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hostname::Exact(name) => f.write_str(name),
            Hostname::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// An RFC 1123 DNS name: labels of letters, digits and `-`, at most 253 characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The hostnames a route serves on a listener: the intersection of the route's and the
/// listener's. `Ok(None)`: every host the listener takes (neither names any);
/// `Err(())`: they have none in common, so the route does not attach to this listener.
pub(crate) fn effective(listener: Option<&Hostname>, route: &[Hostname]) -> Result<Option<Vec<Hostname>>, ()> {
    match (listener, route.is_empty()) {
        (None, true) => Ok(None),
        (Some(l), true) => Ok(Some(vec![l.clone()])),
        (None, false) => Ok(Some(route.to_vec())),
        (Some(l), false) => {
            let mut out: Vec<Hostname> = route.iter().filter_map(|r| l.intersect(r)).collect();
            out.sort();
            out.dedup();
            if out.is_empty() { Err(()) } else { Ok(Some(out)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Hostname {
        Hostname::parse(text).unwrap()
    }

    #[test]
    fn parsing_refuses_what_is_not_a_hostname() {
        for bad in [
            "", "*", "*.", "a..b", "-a.b", "a b", "10.0.0.1", "a.*.b", "*.*.a", "é.test", "a/b", "a:80",
        ] {
            assert_eq!(Hostname::parse(bad), None, "{bad:?}");
        }
        assert_eq!(h("Foo.Example.COM"), Hostname::Exact("foo.example.com".into()));
        assert_eq!(h("*.example.com"), Hostname::Wildcard(".example.com".into()));
    }

    #[test]
    fn wildcards_match_one_or_more_labels_never_the_parent() {
        let w = h("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(!w.matches(".example.com"), "an empty label is not a label");
    }

    #[test]
    fn intersection_is_the_more_specific() {
        let cases = [
            ("a.example.com", "a.example.com", Some("a.example.com")),
            ("a.example.com", "b.example.com", None),
            ("*.example.com", "a.example.com", Some("a.example.com")),
            ("a.example.com", "*.example.com", Some("a.example.com")),
            ("*.example.com", "*.a.example.com", Some("*.a.example.com")),
            ("*.a.example.com", "*.example.com", Some("*.a.example.com")),
            ("*.example.com", "*.example.net", None),
            ("*.example.com", "example.com", None),
        ];
        for (a, b, want) in cases {
            assert_eq!(h(a).intersect(&h(b)), want.map(h), "{a} ∩ {b}");
        }
        assert_eq!(effective(None, &[]), Ok(None));
        assert_eq!(effective(Some(&h("*.e.com")), &[h("x.org")]), Err(()));
        assert_eq!(
            effective(Some(&h("*.e.com")), &[h("x.org"), h("a.e.com")]),
            Ok(Some(vec![h("a.e.com")]))
        );
    }
}
