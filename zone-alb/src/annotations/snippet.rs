//! `configuration-snippet`, `server-snippet`, `auth-snippet`: parsed against a fixed grammar
//! into typed actions (see [`crate::snippet`]); anything else fails closed. Never interpreted.
//! With `allow-snippet-annotations` off (ingress-nginx's default) any snippet fails closed.

use std::sync::Arc;

use super::{FindingKind, Policy, Reader};
use crate::snippet::{self, Ctx, Snippet};

/// Names this family reads (after the prefix).
pub(super) const READ: &[&str] = &["configuration-snippet", "server-snippet", "auth-snippet"];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snippets {
    /// `configuration-snippet`: run in this Ingress's locations.
    pub location: Option<Arc<Snippet>>,
    /// The server-snippet in effect for the route's host (one Ingress's, chosen by the router
    /// as ingress-nginx chooses it).
    pub server: Option<Arc<Snippet>>,
    /// This Ingress's own `server-snippet`, before the router picks one per host.
    pub own_server: Option<Arc<Snippet>>,
    /// This Ingress's `server-snippet` could not be used: if it is the host's, the whole host
    /// fails closed.
    pub server_refused: bool,
    /// `auth-snippet`: directives for the auth subrequest (proxy_set_header and the input
    /// header directives); also in `auth.external.snippet`, where the subrequest reads it.
    pub auth: Option<Arc<Snippet>>,
}

impl Snippets {
    /// Whether a route with this policy must take hyper's path (the fast path does not do it).
    pub fn needs_hyper(&self) -> bool {
        self.location.is_some() || self.server.is_some()
    }
}

pub(super) fn parse(r: &mut Reader<'_>, p: &mut Policy) {
    for (name, ctx) in [
        ("configuration-snippet", Ctx::Location),
        ("server-snippet", Ctx::Server),
        ("auth-snippet", Ctx::Auth),
    ] {
        let Some(text) = r.get(name) else { continue };
        if text.is_empty() {
            r.ignored(name, "empty, so it asks for nothing");
            continue;
        }
        if !r.defaults.allow_snippets {
            refuse(
                r,
                p,
                name,
                "snippets are disabled (allow-snippet-annotations is false)".into(),
            );
            continue;
        }
        match snippet::parse(text, ctx) {
            Ok(parsed) => {
                if !parsed.notes.is_empty() {
                    let message = format!(
                        "applied; these directives have no effect in mzlb: {}; those are ignored",
                        parsed.notes.join("; ")
                    );
                    r.report(name, FindingKind::Ignored, message);
                }
                let parsed = Some(Arc::new(parsed));
                match ctx {
                    Ctx::Location => p.snippets.location = parsed,
                    Ctx::Server => p.snippets.own_server = parsed,
                    // Applied to the auth subrequest (`crate::auth::external::fields`). Without
                    // auth-url there is no subrequest: like the rest of the family, refused
                    // rather than read as protecting something. With an unusable auth-url the
                    // Ingress already fails closed.
                    _ => {
                        p.snippets.auth = parsed.clone();
                        if let Some(external) = p.auth.external.as_mut() {
                            external.snippet = parsed;
                        } else if !r.ours.contains_key("auth-url") {
                            refuse(r, p, name, "has no effect without auth-url".into());
                        }
                    }
                }
            }
            Err(e) => refuse(r, p, name, format!("{e}: not a directive mzlb implements safely")),
        }
    }
}

fn refuse(r: &mut Reader<'_>, p: &mut Policy, name: &'static str, why: String) {
    if name == "server-snippet" {
        p.snippets.server_refused = true;
    }
    let message = format!("{why}; the Ingress's routes answer 503 until it is fixed");
    r.report(name, FindingKind::Unenforced, message);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{Defaults, FindingKind, parse_with};

    fn parse(pairs: &[(&str, &str)], allow: bool) -> (super::super::Policy, Vec<super::super::Finding>) {
        let a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), (*v).to_owned()))
            .collect();
        let d = Defaults {
            allow_snippets: allow,
            ..Default::default()
        };
        parse_with(Some(&a), &d)
    }

    #[test]
    fn snippets_fail_closed_while_allow_snippet_annotations_is_off() {
        for name in ["configuration-snippet", "server-snippet", "auth-snippet"] {
            let (p, findings) = parse(&[(name, "add_header X-A b;")], false);
            assert_eq!(p.unenforced.len(), 1, "{name}");
            assert_eq!(findings[0].kind, FindingKind::Unenforced);
            assert!(
                findings[0].message.contains("allow-snippet-annotations"),
                "{}",
                findings[0]
            );
            assert!(!p.snippets.needs_hyper());
        }
        let (p, findings) = parse(&[("configuration-snippet", "  ")], false);
        assert!(p.unenforced.is_empty());
        assert_eq!(findings[0].kind, FindingKind::Ignored);
    }

    #[test]
    fn allowed_snippets_reach_the_policy() {
        let (p, findings) = parse(
            &[
                ("configuration-snippet", "more_set_headers \"X-A: b\";"),
                ("server-snippet", "location /metrics { deny all; }"),
                ("auth-snippet", "proxy_set_header X-Forwarded-Host $http_host;"),
                ("auth-url", "http://auth.test/check"),
            ],
            true,
        );
        assert!(findings.is_empty(), "{findings:?}");
        assert!(p.unenforced.is_empty());
        assert!(p.snippets.location.is_some() && p.snippets.own_server.is_some());
        let external = p.auth.external.as_ref().unwrap();
        assert_eq!(external.snippet, p.snippets.auth, "the subrequest reads it");
        assert!(external.snippet.is_some());
        assert!(p.snippets.needs_hyper(), "configuration-snippet runs on hyper's path");
    }

    #[test]
    fn auth_snippet_needs_auth_url_and_its_grammar() {
        // Without auth-url there is no subrequest: refused, as the rest of the family.
        let (p, findings) = parse(&[("auth-snippet", "proxy_set_header X-A b;")], true);
        assert_eq!(p.unenforced, ["nginx.ingress.kubernetes.io/auth-snippet"]);
        assert!(findings[0].message.contains("without auth-url"), "{}", findings[0]);
        let url = ("auth-url", "http://auth.test/check");
        // (snippet, refused)
        let rows: &[(&str, bool)] = &[
            ("proxy_set_header X-Api-Key \"k1\";", false),
            ("more_set_input_headers 'X-A: b'; more_clear_input_headers X-B;", false),
            ("proxy_set_header Host $host;", false),
            ("return 200;", true),
            ("add_header X-A b;", true),
            ("proxy_pass http://evil;", true),
            ("access_by_lua_block { ngx.exit(200) }", true),
            ("proxy_set_header Content-Length 5;", true),
            ("proxy_set_header X-A $request_body;", true),
            ("proxy_set_header X-A \"a\r\nB: c\";", true),
            ("proxy_set_header X-A b", true),
            ("if ($http_x) { return 200; }", true),
        ];
        for (text, refused) in rows {
            let (p, findings) = parse(&[("auth-snippet", text), url], true);
            assert_eq!(!p.unenforced.is_empty(), *refused, "{text}: {findings:?}");
            assert_eq!(
                p.auth.external.as_ref().is_some_and(|e| e.snippet.is_some()),
                !refused,
                "{text}"
            );
        }
        // allow-snippet-annotations off: refused whatever it says.
        let (p, _) = parse(&[("auth-snippet", "proxy_set_header X-A b;"), url], false);
        assert_eq!(p.unenforced, ["nginx.ingress.kubernetes.io/auth-snippet"]);
        // Empty asks for nothing.
        let (p, findings) = parse(&[("auth-snippet", " "), url], false);
        assert!(p.unenforced.is_empty());
        assert_eq!(findings[0].kind, FindingKind::Ignored);
    }

    #[test]
    fn a_directive_outside_the_grammar_fails_the_ingress_closed_naming_it_and_its_line() {
        let (p, findings) = parse(
            &[("server-snippet", "add_header X-A b;\nlua_need_request_body on;")],
            true,
        );
        assert_eq!(p.unenforced, ["nginx.ingress.kubernetes.io/server-snippet"]);
        assert!(p.snippets.server_refused);
        let message = &findings[0].message;
        assert!(
            message.contains("line 2") && message.contains("lua_need_request_body"),
            "{message}"
        );
        assert!(message.contains("503"), "{message}");
    }

    #[test]
    fn harmless_directives_are_applied_and_reported() {
        let (p, findings) = parse(
            &[(
                "configuration-snippet",
                "chunked_transfer_encoding off;\nadd_header X-A b;",
            )],
            true,
        );
        assert!(p.unenforced.is_empty());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::Ignored);
        assert!(
            findings[0].message.contains("chunked_transfer_encoding"),
            "{}",
            findings[0]
        );
        assert!(p.snippets.location.is_some());
    }
}
