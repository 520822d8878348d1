//! The ConfigMaps annotations name (`custom-headers`, `auth-proxy-set-headers`), resolved into
//! typed fields when the table is compiled. As in ingress-nginx v1.15, a ConfigMap that is
//! missing, in another namespace than the Ingress's, or that holds a key that is not a header
//! name (`^[a-zA-Z0-9_-]+$`) denies the location: here the Ingress's routes answer 503 and the
//! error names the ConfigMap and the key. Values are typed, never interpolated.

use hyper::header::{HeaderName, HeaderValue};
use k8s_openapi::api::core::v1::ConfigMap;

use crate::objects::Objects;
use crate::snippet::Template;

/// Fields nobody but the proxy may set: they frame or route the message.
const FRAMING: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
];

/// ingress-nginx's `ValidHeader`: `^[a-zA-Z\d\-_]+$`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The ConfigMap `reference` names, from the Ingress's `namespace`.
/// The ConfigMap `reference` names, and how errors about its keys name it
/// (`<annotation>: ConfigMap ns/name`).
fn find<'o>(
    objects: &'o Objects,
    namespace: &str,
    reference: &(Option<String>, String),
    annotation: &str,
) -> Result<(&'o ConfigMap, String), String> {
    let (ns, name) = (reference.0.as_deref().unwrap_or(namespace), &reference.1);
    if ns != namespace && !crate::auth::ALLOW_CROSS_NAMESPACE {
        return Err(format!(
            "{annotation} {ns}/{name}: ConfigMaps in another namespace than the Ingress's are not allowed \
             (ingress-nginx's allow-cross-namespace-resources is false by default)"
        ));
    }
    let what = format!("{annotation}: ConfigMap {ns}/{name}");
    objects
        .config_map(ns, name)
        .map(|cm| (cm, what))
        .ok_or_else(|| format!("{annotation}: ConfigMap {ns}/{name} not found"))
}

/// `auth-proxy-set-headers`: the `proxy_set_header` lines of the auth location, in
/// ingress-nginx's (sorted) order. Values may use the snippet variables (nginx expands them in
/// `proxy_set_header 'k' 'v'`); an unknown one, a quote or a control byte is refused.
pub fn auth_proxy_set_headers(
    objects: &Objects,
    namespace: &str,
    reference: &(Option<String>, String),
) -> Result<Vec<(HeaderName, Template)>, String> {
    const ANNOTATION: &str = "auth-proxy-set-headers";
    let (cm, what) = find(objects, namespace, reference, ANNOTATION)?;
    let mut out = Vec::new();
    for (key, value) in cm.data.iter().flatten() {
        let name = field_name(key).map_err(|e| format!("{what}: key {key:?}: {e}"))?;
        if value.bytes().any(|b| b.is_ascii_control() || b == b'\'' || b == b'\\') {
            return Err(format!(
                "{what}: key {key:?}: the value has a quote, backslash or control byte"
            ));
        }
        let template = Template::parse(value, false).map_err(|e| format!("{what}: key {key:?}: {e}"))?;
        out.push((name, template));
    }
    Ok(out)
}

/// ingress-nginx's `ValidValue` for `custom-headers`.
fn valid_custom_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || br#"_ :;.,\/"'?!(){}[]@<>=-+*#$&`|~^%"#.contains(&b))
}

/// `custom-headers`: the response fields the ConfigMap sets (`more_set_headers`), each of
/// them listed in `global-allowed-response-headers` (exact, case-sensitive, as ingress-nginx
/// compares). A value with `$` is refused: mzlb does not expand variables in response fields.
pub fn custom_headers(
    objects: &Objects,
    namespace: &str,
    reference: &(Option<String>, String),
    allowed: &[String],
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    const ANNOTATION: &str = "custom-headers";
    let (cm, what) = find(objects, namespace, reference, ANNOTATION)?;
    let mut out = Vec::new();
    for (key, value) in cm.data.iter().flatten() {
        let name = field_name(key).map_err(|e| format!("{what}: key {key:?}: {e}"))?;
        if !valid_custom_value(value) {
            return Err(format!("{what}: key {key:?}: invalid header value"));
        }
        if !allowed.iter().any(|a| a == key) {
            return Err(format!(
                "{what}: header {key} is not allowed, defined allowed headers inside \
                 global-allowed-response-headers {allowed:?}"
            ));
        }
        if value.contains('$') {
            return Err(format!(
                "{what}: key {key:?}: a value with `$` (mzlb does not expand variables in response fields)"
            ));
        }
        let value = HeaderValue::from_str(value).map_err(|_| format!("{what}: key {key:?}: invalid header value"))?;
        out.push((name, value));
    }
    Ok(out)
}

fn field_name(key: &str) -> Result<HeaderName, String> {
    if !valid_name(key) {
        return Err("not a header name (letters, digits, - and _ only)".into());
    }
    let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| "not a header name".to_owned())?;
    if FRAMING.contains(&name.as_str()) || name == hyper::header::HOST {
        return Err("frames or routes the message and is mzlb's to set".into());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn objects(data: &[(&str, &str)]) -> Objects {
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                namespace: Some("app".into()),
                name: Some("headers".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        Objects {
            config_maps: vec![Arc::new(cm)],
            ..Default::default()
        }
    }

    fn r(ns: Option<&str>, name: &str) -> (Option<String>, String) {
        (ns.map(str::to_owned), name.to_owned())
    }

    #[test]
    fn auth_proxy_set_headers_table() {
        let ok = objects(&[("X-Api-Key", "k1"), ("X-Host", "$host"), ("X-Empty", "")]);
        let got = auth_proxy_set_headers(&ok, "app", &r(None, "headers")).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["x-api-key", "x-empty", "x-host"],
            "sorted, as ingress-nginx writes them"
        );
        assert!(auth_proxy_set_headers(&ok, "app", &r(Some("app"), "headers")).is_ok());

        // (data, reference, what the error must name)
        type Row<'a> = (&'a [(&'a str, &'a str)], (Option<&'a str>, &'a str), &'a str);
        let rows: &[Row<'_>] = &[
            (&[("X-A", "b")], (None, "missing"), "app/missing not found"),
            (&[("X-A", "b")], (Some("other"), "headers"), "another namespace"),
            (&[("X A", "b")], (None, "headers"), "\"X A\""),
            (&[("X:A", "b")], (None, "headers"), "\"X:A\""),
            (&[("", "b")], (None, "headers"), "\"\""),
            (&[("X.A", "b")], (None, "headers"), "\"X.A\""),
            (&[("Content-Length", "5")], (None, "headers"), "Content-Length"),
            (
                &[("Transfer-Encoding", "chunked")],
                (None, "headers"),
                "Transfer-Encoding",
            ),
            (&[("Host", "evil")], (None, "headers"), "Host"),
            (&[("X-A", "a\r\nEvil: 1")], (None, "headers"), "control"),
            (&[("X-A", "a'; deny all; '")], (None, "headers"), "quote"),
            (&[("X-A", "$request_body")], (None, "headers"), "request_body"),
            (&[("X-A", "${lua}")], (None, "headers"), "X-A"),
        ];
        for (data, (ns, name), needle) in rows {
            let err = auth_proxy_set_headers(&objects(data), "app", &r(*ns, name)).unwrap_err();
            assert!(err.contains(needle), "{data:?}: {err}");
            assert!(err.contains("auth-proxy-set-headers"), "{err}");
        }
    }

    #[test]
    fn custom_headers_table() {
        let allowed = vec!["X-Frame-Options".to_owned(), "Content-Security-Policy".to_owned()];
        let ok = objects(&[
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy", "default-src 'self'; img-src *"),
        ]);
        let got = custom_headers(&ok, "app", &r(None, "headers"), &allowed).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY")
            )
        );

        let rows: &[(&[(&str, &str)], &str)] = &[
            (&[("X-Other", "1")], "not allowed"),
            (&[("x-frame-options", "DENY")], "not allowed"), // case-sensitive, as ingress-nginx
            (&[("X-Frame-Options", "")], "invalid header value"),
            (&[("X-Frame-Options", "a\nb")], "invalid header value"),
            (&[("X-Frame-Options", "caf\u{e9}")], "invalid header value"),
            (&[("X-Frame-Options", "$host")], "`$`"),
            (&[("X Frame", "DENY")], "not a header name"),
        ];
        for (data, needle) in rows {
            let err = custom_headers(&objects(data), "app", &r(None, "headers"), &allowed).unwrap_err();
            assert!(err.contains(needle), "{data:?}: {err}");
        }
        let err = custom_headers(&ok, "app", &r(None, "nope"), &allowed).unwrap_err();
        assert!(err.contains("app/nope not found"), "{err}");
        let err = custom_headers(&ok, "app", &r(None, "headers"), &[]).unwrap_err();
        assert!(err.contains("global-allowed-response-headers"), "{err}");
    }
}
