//! The RBAC rules kept in `charts/mzlb/files/rbac/` must allow every request the code makes:
//! the Kubernetes tests hand over what the fake API server recorded.

use serde_yaml::Value;
use tests::fakeapi::Recorded;

/// One rule: whether it is from a (namespaced) Role, then apiGroups, resources and verbs.
type Rule = (bool, Vec<String>, Vec<String>, Vec<String>);

/// The rules of one file.
fn rules(file: &str) -> Vec<Rule> {
    let path = format!("{}/../charts/mzlb/files/rbac/{file}.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}"));
        let namespaced = match doc["kind"].as_str() {
            Some("Role") => true,
            Some("ClusterRole") => false,
            other => panic!("{path}: unexpected kind {other:?}"),
        };
        for rule in doc["rules"].as_sequence().into_iter().flatten() {
            out.push((
                namespaced,
                strings(&rule["apiGroups"]),
                strings(&rule["resources"]),
                strings(&rule["verbs"]),
            ));
        }
    }
    out
}

/// Panics naming every request that the roles in `files` do not allow.
pub fn assert_covered(files: &[&str], requests: &[Recorded]) {
    let rules: Vec<_> = files.iter().flat_map(|f| rules(f)).collect();
    let mut missing: Vec<String> = requests
        .iter()
        .filter(|r| {
            let in_namespace = r.path.contains("/namespaces/");
            !rules.iter().any(|(namespaced, groups, resources, verbs)| {
                (!namespaced || in_namespace)
                    && groups.contains(&r.group)
                    && resources.contains(&r.resource)
                    && verbs.contains(&r.verb)
            })
        })
        .map(|r| format!("{} {:?}/{} ({} {})", r.verb, r.group, r.resource, r.method, r.path))
        .collect();
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "RBAC in charts/mzlb/files/rbac/{files:?} does not allow:\n{}",
        missing.join("\n")
    );
    assert!(!requests.is_empty(), "no requests recorded: nothing was checked");
}
