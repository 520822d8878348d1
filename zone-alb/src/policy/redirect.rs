//! The redirects an Ingress asks for, at run time, in ingress-nginx's order (v1.15.1's
//! `nginx.tmpl`): `app-root` is a server-level `if ($uri = /) { return 302
//! $scheme://$http_host<app-root>; }`, so it comes first, before anything of the location;
//! `permanent-redirect` / `temporal-redirect` are the location's `return <code> <url>;`, after
//! the CORS preflight and before the ssl-redirect (done later, in Lua), allow-lists, limits
//! and authentication.

use hyper::StatusCode;

use crate::annotations::redirect::Redirects;

/// `app-root`: where a request for `/` (its normalised path; the query does not count) goes.
pub(crate) fn app_root(r: &Redirects, path: &str, scheme: &str, host: &str) -> Option<(StatusCode, String)> {
    let root = r.app_root.as_deref()?;
    (path == "/").then(|| (StatusCode::FOUND, format!("{scheme}://{host}{root}")))
}

/// `permanent-redirect` / `temporal-redirect`: every request goes to the URL as written.
pub(crate) fn redirect(r: &Redirects) -> Option<(StatusCode, String)> {
    let to = r.redirect.as_ref()?;
    let code = StatusCode::from_u16(to.code).ok()?;
    Some((code, to.location.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::redirect::Redirect;

    #[test]
    fn app_root_only_for_slash() {
        let r = Redirects {
            app_root: Some("/app".into()),
            redirect: None,
        };
        assert_eq!(
            app_root(&r, "/", "http", "h.test:8080"),
            Some((StatusCode::FOUND, "http://h.test:8080/app".into()))
        );
        assert_eq!(
            app_root(&r, "/", "https", "h.test"),
            Some((StatusCode::FOUND, "https://h.test/app".into()))
        );
        for other in ["/app", "/x", "//", ""] {
            assert_eq!(app_root(&r, other, "http", "h.test"), None, "{other:?}");
        }
        assert_eq!(app_root(&Redirects::default(), "/", "http", "h.test"), None);
        assert_eq!(redirect(&r), None);
    }

    #[test]
    fn redirect_is_the_url_as_written() {
        let r = Redirects {
            app_root: None,
            redirect: Some(Redirect {
                location: "https://new.test/x?y=1".into(),
                code: 308,
            }),
        };
        assert_eq!(
            redirect(&r),
            Some((StatusCode::PERMANENT_REDIRECT, "https://new.test/x?y=1".into()))
        );
    }
}
