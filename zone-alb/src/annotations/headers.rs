//! `custom-headers`: a ConfigMap (`namespace/name`) whose every key and value is set on the
//! responses of the Ingress's routes (ingress-nginx's `more_set_headers`). The reference is
//! read here; the ConfigMap is resolved, and checked against `global-allowed-response-headers`,
//! when the table is compiled (`crate::configmaps`). A reference that cannot be used fails
//! closed, as ingress-nginx denies the location.

use super::{Policy, Reader};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &["custom-headers"];

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    match r.get("custom-headers") {
        None | Some("") => {}
        Some(v) => match super::auth::parse_secret_ref(v) {
            Some(reference) => p.custom_headers = Some(reference),
            None => r.unusable("custom-headers", "expected a ConfigMap name or namespace/name"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{FindingKind, parse};

    #[test]
    fn references_table() {
        // (value, reference, fails closed)
        type Row<'a> = (&'a str, Option<(Option<&'a str>, &'a str)>, bool);
        let rows: &[Row<'_>] = &[
            ("app/headers", Some((Some("app"), "headers")), false),
            ("headers", Some((None, "headers")), false),
            (" app/headers ", Some((Some("app"), "headers")), false),
            ("", None, false),
            ("a/b/c", None, true),
            ("App/Headers", None, true),
            ("app/", None, true),
            ("/headers", None, true),
            ("app/$host", None, true),
            ("app/h\r\nx", None, true),
            ("../etc", None, true),
        ];
        for (value, reference, closed) in rows {
            let a: BTreeMap<String, String> = [(
                "nginx.ingress.kubernetes.io/custom-headers".to_owned(),
                (*value).to_owned(),
            )]
            .into();
            let (p, findings) = parse(Some(&a));
            let got = p.custom_headers.as_ref().map(|(ns, n)| (ns.as_deref(), n.as_str()));
            assert_eq!(got, *reference, "{value:?}");
            assert_eq!(!p.unenforced.is_empty(), *closed, "{value:?}");
            if *closed {
                assert_eq!(findings[0].kind, FindingKind::Unenforced);
            }
            assert_eq!(p.needs_hyper(), reference.is_some(), "{value:?}");
        }
    }
}
