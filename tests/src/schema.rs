//! What a real API server does to a custom resource before storing it, from the CRDs the chart
//! ships (`charts/mzlb/crds/`, identical to `mzlb crd`): defaults filled in, unknown fields
//! pruned, and types, required fields, enums and bounds checked. So the fake cannot store an
//! object a real server would refuse, nor hand back one a real server would have changed.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The `openAPIV3Schema` of every kind the chart's CRDs define, by kind.
fn schemas() -> &'static HashMap<String, Value> {
    static SCHEMAS: OnceLock<HashMap<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/mzlb/crds/mzlb.io.yaml");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut out = HashMap::new();
        for doc in text.split("\n---\n") {
            let crd: Value = serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{path}: {e}"));
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .expect("CRD names a kind")
                .to_owned();
            let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
            out.insert(kind, schema);
        }
        out
    })
}

/// Admits `object` of `kind` as the API server would: `Ok` (possibly with defaults filled and
/// unknown fields pruned), or the reason it is invalid. Kinds without a CRD pass unchanged.
pub fn admit(kind: &str, object: &mut Value) -> Result<(), String> {
    let Some(schema) = schemas().get(kind) else {
        return Ok(());
    };
    let mut errors = Vec::new();
    if let Some(fields) = object.as_object_mut() {
        let properties = &schema["properties"];
        fields.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || properties.get(k).is_some());
        for (name, sub) in properties.as_object().into_iter().flatten() {
            if matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match fields.get_mut(name) {
                Some(value) => check(sub, value, name, &mut errors),
                None if required(schema, name) => errors.push(format!("{name}: Required value")),
                None => {}
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        Err(format!("{kind}.mzlb.io \"{name}\" is invalid: {}", errors.join(", ")))
    }
}

fn required(schema: &Value, name: &str) -> bool {
    schema["required"]
        .as_array()
        .is_some_and(|r| r.iter().any(|n| n == name))
}

fn check(schema: &Value, value: &mut Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{path}: Invalid value: null"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!(
            "{path}: Unsupported value: {value}: supported values: {allowed:?}"
        ));
        return;
    }
    let type_ = schema["type"].as_str().unwrap_or_default();
    let ok = match type_ {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{path}: Invalid value: {value}: must be of type {type_}"));
        return;
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            errors.push(format!(
                "{path}: Invalid value: {value}: should be greater than or equal to {}",
                schema["minimum"]
            ));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            errors.push(format!(
                "{path}: Invalid value: {value}: should be less than or equal to {}",
                schema["maximum"]
            ));
        }
    }
    if let Some(items) = value.as_array_mut() {
        for (i, item) in items.iter_mut().enumerate() {
            check(&schema["items"], item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(fields) = value.as_object_mut() {
        let properties = schema["properties"].as_object();
        let additional = &schema["additionalProperties"];
        if schema["x-kubernetes-preserve-unknown-fields"] == true {
            return;
        }
        match properties {
            Some(properties) => {
                // Pruning: what the schema does not name is dropped, silently.
                fields.retain(|k, _| properties.contains_key(k));
                for (name, sub) in properties {
                    let at = format!("{path}.{name}");
                    match fields.get_mut(name) {
                        Some(v) => check(sub, v, &at, errors),
                        None if required(schema, name) => errors.push(format!("{at}: Required value")),
                        None => {
                            if let Some(default) = sub.get("default") {
                                fields.insert(name.clone(), default.clone());
                            }
                        }
                    }
                }
            }
            None if additional.is_object() => {
                for (name, v) in fields.iter_mut() {
                    check(additional, v, &format!("{path}.{name}"), errors);
                }
            }
            None => {}
        }
    }
}

/// The rules a real API server enforces on built-in kinds that tests create: an EndpointSlice
/// may not name loopback, link-local or unspecified addresses (so a test cannot seed what a
/// cluster would never hold).
pub fn admit_builtin(kind: &str, object: &Value) -> Result<(), String> {
    if kind != "EndpointSlice" {
        return Ok(());
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    for (i, endpoint) in object["endpoints"].as_array().into_iter().flatten().enumerate() {
        for (j, address) in endpoint["addresses"].as_array().into_iter().flatten().enumerate() {
            let text = address.as_str().unwrap_or_default();
            let why = match text.parse::<std::net::IpAddr>() {
                Err(_) => Some("must be a valid IP address"),
                Ok(ip) if ip.is_loopback() => Some("may not be in the loopback range (127.0.0.0/8, ::1/128)"),
                Ok(ip) if ip.is_unspecified() => Some("may not be unspecified (0.0.0.0, ::)"),
                Ok(std::net::IpAddr::V4(v4)) if v4.is_link_local() => {
                    Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
                }
                Ok(std::net::IpAddr::V6(v6)) if v6.is_unicast_link_local() => {
                    Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
                }
                Ok(_) => None,
            };
            if let Some(why) = why {
                return Err(format!(
                    "EndpointSlice.discovery.k8s.io \"{name}\" is invalid: endpoints[{i}].addresses[{j}]: Invalid value: \"{text}\": {why}"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `name` is a DNS subdomain (RFC 1123), as every object's name must be.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refuses_what_the_crds_refuse_and_prunes_and_defaults_the_rest() {
        let base = json!({
            "apiVersion": "mzlb.io/v1alpha1", "kind": "ZoneALB", "metadata": {"name": "a"},
            "spec": {"zone": "zone-1", "ip": "10.0.0.1"}
        });
        let mut ok = base.clone();
        ok["spec"]["fromTheFuture"] = json!(1);
        ok["unknownTopLevel"] = json!(true);
        admit("ZoneALB", &mut ok).unwrap();
        assert!(ok["spec"].get("fromTheFuture").is_none(), "unknown fields are pruned");
        assert!(ok.get("unknownTopLevel").is_none());
        assert_eq!(ok["spec"]["enabled"], true, "defaults are filled in: {ok}");
        // (field, value) → refused
        let rows: &[(&str, Value)] = &[
            ("zone", Value::Null),
            ("port", json!(70000)),
            ("port", json!("80")),
            ("enabled", json!("yes")),
            ("type", json!("secret")),
        ];
        for (field, value) in rows {
            let mut bad = base.clone();
            bad["spec"][*field] = value.clone();
            assert!(admit("ZoneALB", &mut bad).is_err(), "spec.{field}: {value} admitted");
        }
        let mut missing = base.clone();
        missing["spec"].as_object_mut().unwrap().remove("ip");
        let e = admit("ZoneALB", &mut missing).unwrap_err();
        assert!(e.contains("spec.ip: Required value"), "{e}");
        let mut report = json!({"kind": "ProberReport", "metadata": {"name": "mzlb-0"},
            "spec": {"renewTime": "t", "albs": [{"alb": "a", "health": "maybe", "since": "t"}]}});
        let e = admit("ProberReport", &mut report).unwrap_err();
        assert!(e.contains("spec.albs[0].health: Unsupported value"), "{e}");
        let mut other = json!({"kind": "Lease", "anything": 1});
        admit("Lease", &mut other).unwrap();
        assert_eq!(other["anything"], 1, "kinds without a CRD are not touched");
    }

    #[test]
    fn endpoint_slices_may_not_name_loopback_or_link_local_addresses() {
        let slice = |a: &str| json!({"metadata": {"name": "s"}, "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": [a]}]});
        for good in ["10.1.2.3", "2001:db8::1", "192.0.2.7"] {
            admit_builtin("EndpointSlice", &slice(good)).unwrap();
        }
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "169.254.1.1",
            "fe80::1",
            "0.0.0.0",
            "not-an-ip",
        ] {
            let e = admit_builtin("EndpointSlice", &slice(bad)).unwrap_err();
            assert!(e.contains("endpoints[1].addresses[0]"), "{bad}: {e}");
        }
        admit_builtin("Service", &json!({"endpoints": [{"addresses": ["127.0.0.1"]}]})).unwrap();
    }

    #[test]
    fn names_are_dns_subdomains() {
        for good in ["a", "mzlb-0", "alb1.zone-1", "x".repeat(253).as_str()] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a_b", "a b", "x".repeat(254).as_str()] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
