//! Standalone mode: a directory of plain Kubernetes YAML manifests (multi-document files and
//! `v1 List` allowed), read into the typed objects the API server would return.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::error::{Error, Result};
use crate::objects::{ObjectKey, Objects, Origin, key_of};

/// Reads every `*.yaml` / `*.yml` file below `dir` (sorted, hidden files skipped).
pub fn load(dir: &Path) -> Result<Objects> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::NoManifests(dir.to_path_buf()));
    }
    let mut objects = Objects::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        load_str(&text, &file, &mut objects)?;
    }
    Ok(objects)
}

/// What the manifest files look like on disk (path, size, modification time), to notice
/// changes cheaply.
pub fn fingerprint(dir: &Path) -> Result<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    Ok(files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (f, len, modified)
        })
        .collect())
}

/// Parses one file's text into `objects`; `file` is only used to name errors.
pub fn load_str(text: &str, file: &Path, objects: &mut Objects) -> Result<()> {
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            file: file.to_path_buf(),
            document: index + 1,
        };
        let value = Value::deserialize(document).map_err(|source| Error::Yaml {
            origin: origin.clone(),
            source,
        })?;
        add_value(value, &origin, objects)?;
    }
    Ok(())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let read_error = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(path);
        }
    }
    Ok(())
}

fn add_value(value: Value, origin: &Origin, objects: &mut Objects) -> Result<()> {
    if value.is_null() {
        return Ok(()); // an empty document, e.g. after a trailing `---`
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let api_version = field("apiVersion").ok_or_else(|| Error::Missing {
        origin: origin.clone(),
        field: "apiVersion",
    })?;
    let kind = field("kind").ok_or_else(|| Error::Missing {
        origin: origin.clone(),
        field: "kind",
    })?;
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "List") => {
            let Value::Mapping(mut map) = value else {
                unreachable!("a value with fields is a mapping")
            };
            if let Some(Value::Sequence(items)) = map.remove("items") {
                for item in items {
                    add_value(item, origin, objects)?;
                }
            }
        }
        ("mzlb.io/v1alpha1", "ZoneALB") => {
            let obj: crate::objects::ZoneALB = typed(value, origin, &kind)?;
            register(objects, origin, key_of("ZoneALB", &obj.metadata, false), &obj.metadata)?;
            objects.zone_albs.push(obj);
        }
        ("mzlb.io/v1alpha1", "MultiZoneCluster") => {
            let obj: crate::objects::MultiZoneCluster = typed(value, origin, &kind)?;
            let key = key_of("MultiZoneCluster", &obj.metadata, false);
            register(objects, origin, key, &obj.metadata)?;
            objects.clusters.push(obj);
        }
        ("networking.k8s.io/v1", "Ingress") => {
            let mut obj: k8s_openapi::api::networking::v1::Ingress = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("Ingress", &obj.metadata, true), &obj.metadata)?;
            objects.ingresses.push(obj);
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            let obj: k8s_openapi::api::networking::v1::IngressClass = typed(value, origin, &kind)?;
            let key = key_of("IngressClass", &obj.metadata, false);
            register(objects, origin, key, &obj.metadata)?;
            objects.ingress_classes.push(obj);
        }
        ("v1", "Service") => {
            let mut obj: k8s_openapi::api::core::v1::Service = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("Service", &obj.metadata, true), &obj.metadata)?;
            objects.services.push(obj);
        }
        ("v1", "Secret") => {
            let mut obj: k8s_openapi::api::core::v1::Secret = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("Secret", &obj.metadata, true), &obj.metadata)?;
            objects.secrets.push(obj);
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let mut obj: k8s_openapi::api::discovery::v1::EndpointSlice = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            let key = key_of("EndpointSlice", &obj.metadata, true);
            register(objects, origin, key, &obj.metadata)?;
            objects.endpoint_slices.push(obj);
        }
        _ => {
            // Manifest directories often hold Deployments and the like; they are not ours.
            tracing::debug!(%origin, %api_version, %kind, "ignoring object of a kind mzlb does not use");
        }
    }
    Ok(())
}

/// Deserializes with the path of the offending field in the error (`spec.rules[0].host`).
fn typed<T: DeserializeOwned>(value: Value, origin: &Origin, kind: &str) -> Result<T> {
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_owned();
    serde_path_to_error::deserialize(value).map_err(|err| Error::Field {
        origin: origin.clone(),
        object: format!("{kind} {name}"),
        field: err.path().to_string(),
        message: err.into_inner().to_string(),
    })
}

fn default_namespace(meta: &mut ObjectMeta) {
    meta.namespace.get_or_insert_with(|| "default".into());
}

fn register(objects: &mut Objects, origin: &Origin, key: ObjectKey, meta: &ObjectMeta) -> Result<()> {
    if meta.name.as_deref().unwrap_or_default().is_empty() {
        return Err(Error::Missing {
            origin: origin.clone(),
            field: "metadata.name",
        });
    }
    if let Some(first) = objects.origins.get(&key) {
        return Err(Error::Duplicate {
            key: key.to_string(),
            first: first.clone(),
            second: origin.clone(),
        });
    }
    objects.origins.insert(key, origin.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Objects> {
        let mut objects = Objects::default();
        load_str(text, Path::new("test.yaml"), &mut objects)?;
        Ok(objects)
    }

    #[test]
    fn reads_multi_document_files_and_lists() {
        let objects = parse(
            "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: alb1}\nspec: {zone: zone-1, ip: 127.0.10.1, port: 8080}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: web}\n  spec: {ports: [{port: 80}]}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n",
        )
        .unwrap();
        assert_eq!(objects.zone_albs.len(), 1);
        assert!(objects.zone_albs[0].spec.enabled, "enabled defaults to true");
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.services[0].metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let err = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\
             apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: alb1}\nspec: {zone: z, ip: not-an-ip}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("test.yaml (document 2)"), "{err}");
        assert!(err.contains("ZoneALB alb1"), "{err}");
        assert!(err.contains("spec.ip"), "{err}");
    }

    #[test]
    fn rejects_unknown_fields_in_our_resources() {
        let err = parse(
            "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: alb1}\nspec: {zone: z, ip: 127.0.0.1, enabeld: false}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("enabeld"), "{err}");
    }

    #[test]
    fn rejects_duplicates_and_bad_yaml() {
        let dup = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n";
        let err = parse(&format!("{dup}---\n{dup}")).unwrap_err().to_string();
        assert!(err.contains("Service default/a is defined twice"), "{err}");
        let err = parse("kind: [unclosed\n").unwrap_err().to_string();
        assert!(err.contains("test.yaml (document 1): not valid YAML"), "{err}");
        let err = parse("kind: Service\n").unwrap_err().to_string();
        assert!(err.contains("missing field `apiVersion`"), "{err}");
    }
}
