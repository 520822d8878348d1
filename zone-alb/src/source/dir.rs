//! Standalone mode: a directory of plain Kubernetes YAML manifests (multi-document files and
//! `v1 List` allowed), read into the typed objects the API server would return, and a
//! [`Watcher`] that says when they may have changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind};
use tokio::sync::Notify;
use tokio::time::Instant;

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

/// What the manifest files look like on disk: path, size and modification time of each.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// What the manifest files look like on disk, to notice changes cheaply.
pub fn fingerprint(dir: &Path) -> Result<Fingerprint> {
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

/// After a file-system event, wait until the directory has been quiet this long: editors and
/// `kubectl cp` write a file in several steps, and each half-written state would be a reload
/// (rejected if broken, but noisy and slower than waiting).
pub const DEBOUNCE_QUIET: Duration = Duration::from_millis(20);
/// ...but never longer than this after the first event, so constant churn still reloads.
pub const DEBOUNCE_MAX: Duration = Duration::from_millis(150);

/// Says when the manifest directory may have changed: at once (after [`DEBOUNCE_QUIET`]) on a
/// file-system event, and by polling the files' sizes and modification times for what events
/// miss (no inotify watches left, network and FUSE filesystems without events).
pub struct Watcher {
    dir: PathBuf,
    /// `None` when file-system events are unavailable; polling alone then.
    events: Option<Events>,
    poll: tokio::time::Interval,
    last: Option<Fingerprint>,
    /// (first event, quiet until): events seen and not yet reported. Kept here rather than
    /// in `changed`'s future so that a `select!` dropping it loses nothing.
    pending: Option<(Instant, Instant)>,
}

struct Events {
    /// Dropping it ends the watch.
    _watcher: notify::RecommendedWatcher,
    /// Holds one permit when events arrived since `changed` last looked.
    wake: Arc<Notify>,
}

impl Watcher {
    /// Watches `dir` (and its subdirectories), polling it every `poll` as well. Must be called
    /// within a Tokio runtime.
    pub fn new(dir: &Path, poll: Duration) -> Watcher {
        let events = match watch_events(dir) {
            Ok(events) => Some(events),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, poll_ms = poll.as_millis(), "no file-system events for the manifest directory; polling it");
                None
            }
        };
        Watcher::with_events(dir, events, poll)
    }

    fn with_events(dir: &Path, events: Option<Events>, poll: Duration) -> Watcher {
        let mut poll = tokio::time::interval_at(Instant::now() + poll, poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Watcher {
            dir: dir.to_path_buf(),
            events,
            poll,
            last: fingerprint(dir).ok(),
            pending: None,
        }
    }

    /// Whether file-system events are watched (else changes are only polled for).
    pub fn has_events(&self) -> bool {
        self.events.is_some()
    }

    /// Resolves when the manifests may have changed since the last call (or since `new`).
    /// Cancel-safe: dropped in a `select!`, it forgets nothing.
    pub async fn changed(&mut self) {
        loop {
            let quiet_until = self.pending.map(|(_, until)| until);
            let wake = self.events.as_ref().map(|e| &*e.wake);
            tokio::select! {
                () = async { match wake { Some(wake) => wake.notified().await, None => std::future::pending().await } } => {
                    let now = Instant::now();
                    let first = self.pending.map_or(now, |(first, _)| first);
                    self.pending = Some((first, (now + DEBOUNCE_QUIET).min(first + DEBOUNCE_MAX)));
                }
                () = tokio::time::sleep_until(quiet_until.unwrap_or_else(Instant::now)), if quiet_until.is_some() => {
                    self.pending = None;
                    // Polling compares with what the files looked like when this reload began.
                    self.last = fingerprint(&self.dir).ok();
                    return;
                }
                _ = self.poll.tick() => {
                    let now = fingerprint(&self.dir).ok();
                    if now != self.last {
                        self.last = now;
                        return;
                    }
                }
            }
        }
    }
}

fn watch_events(dir: &Path) -> std::result::Result<Events, notify::Error> {
    use notify::Watcher as _;
    let wake = Arc::new(Notify::new());
    let root = dir.to_path_buf();
    let waker = wake.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error (a lost event queue, say) may hide a change: look again to be safe.
        if event.as_ref().map_or(true, |e| relevant(&root, e)) {
            waker.notify_one();
        }
    })?;
    // Recursive, as `load` is; and the directory itself, not the files: files are created,
    // renamed over and removed, and a mounted ConfigMap swaps its `..data` symlink.
    watcher.watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(Events {
        _watcher: watcher,
        wake,
    })
}

/// Whether an event below `root` may change what [`load`] reads: not opens and reads (ours
/// among them), and not editors' hidden swap files or backups.
fn relevant(root: &Path, event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    event.need_rescan() || event.paths.is_empty() || event.paths.iter().any(|p| relevant_path(root, p))
}

fn relevant_path(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return true;
    };
    let names: Vec<&str> = relative.iter().filter_map(|n| n.to_str()).collect();
    let Some((last, parents)) = names.split_last() else {
        return true; // the directory itself
    };
    // `load` skips hidden files and directories, but reads the ConfigMap files that link
    // through `..data` into kubelet's `..<timestamp>` directories.
    let ignored = |name: &str| name.starts_with('.') && !name.starts_with("..");
    if parents.iter().any(|name| ignored(name)) || ignored(last) {
        return false;
    }
    if last.starts_with("..") {
        return true; // `..data`, `..data_tmp`, `..2026_12_02_13_45_09.1234`
    }
    match Path::new(last).extension().and_then(|e| e.to_str()) {
        Some(ext) => matches!(ext, "yaml" | "yml"),
        None => true, // a directory, perhaps
    }
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
            let obj: crate::objects::ZoneALB = strict(value, origin, &kind)?;
            register(objects, origin, key_of("ZoneALB", &obj.metadata, false), &obj.metadata)?;
            objects.zone_albs.push(obj);
        }
        ("mzlb.io/v1alpha1", "MultiZoneCluster") => {
            let obj: crate::objects::MultiZoneCluster = strict(value, origin, &kind)?;
            let key = key_of("MultiZoneCluster", &obj.metadata, false);
            register(objects, origin, key, &obj.metadata)?;
            objects.clusters.push(obj);
        }
        ("networking.k8s.io/v1", "Ingress") => {
            let mut obj: k8s_openapi::api::networking::v1::Ingress = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("Ingress", &obj.metadata, true), &obj.metadata)?;
            objects.ingresses.push(std::sync::Arc::new(obj));
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            let obj: k8s_openapi::api::networking::v1::IngressClass = typed(value, origin, &kind)?;
            let key = key_of("IngressClass", &obj.metadata, false);
            register(objects, origin, key, &obj.metadata)?;
            objects.ingress_classes.push(std::sync::Arc::new(obj));
        }
        ("v1", "Service") => {
            let mut obj: k8s_openapi::api::core::v1::Service = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("Service", &obj.metadata, true), &obj.metadata)?;
            objects.services.push(std::sync::Arc::new(obj));
        }
        ("v1", "Secret") => {
            let mut obj: k8s_openapi::api::core::v1::Secret = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("Secret", &obj.metadata, true), &obj.metadata)?;
            objects.secrets.push(std::sync::Arc::new(obj));
        }
        ("v1", "ConfigMap") => {
            let mut obj: k8s_openapi::api::core::v1::ConfigMap = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("ConfigMap", &obj.metadata, true), &obj.metadata)?;
            objects.config_maps.push(std::sync::Arc::new(obj));
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let mut obj: k8s_openapi::api::discovery::v1::EndpointSlice = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            let key = key_of("EndpointSlice", &obj.metadata, true);
            register(objects, origin, key, &obj.metadata)?;
            objects.endpoint_slices.push(std::sync::Arc::new(obj));
        }
        ("gateway.networking.k8s.io/v1", "GatewayClass") => {
            let obj: crate::gateway::model::GatewayClass = typed(value, origin, &kind)?;
            register(
                objects,
                origin,
                key_of("GatewayClass", &obj.metadata, false),
                &obj.metadata,
            )?;
            objects.gateway_classes.push(std::sync::Arc::new(obj));
        }
        ("gateway.networking.k8s.io/v1", "Gateway") => {
            let mut obj: crate::gateway::model::Gateway = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("Gateway", &obj.metadata, true), &obj.metadata)?;
            objects.gateways.push(std::sync::Arc::new(obj));
        }
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => {
            let mut obj: crate::gateway::model::HTTPRoute = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("HTTPRoute", &obj.metadata, true), &obj.metadata)?;
            objects.http_routes.push(std::sync::Arc::new(obj));
        }
        ("gateway.networking.k8s.io/v1", "GRPCRoute") => {
            let mut obj: crate::gateway::model::GRPCRoute = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(objects, origin, key_of("GRPCRoute", &obj.metadata, true), &obj.metadata)?;
            objects.grpc_routes.push(std::sync::Arc::new(obj));
        }
        ("gateway.networking.k8s.io/v1", "BackendTLSPolicy") => {
            let mut obj: crate::gateway::model::BackendTLSPolicy = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(
                objects,
                origin,
                key_of("BackendTLSPolicy", &obj.metadata, true),
                &obj.metadata,
            )?;
            objects.backend_tls_policies.push(std::sync::Arc::new(obj));
        }
        // v1 since Gateway API v1.5; v1beta1 is still served by the CRDs.
        ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1", "ReferenceGrant") => {
            let mut obj: crate::gateway::model::ReferenceGrant = typed(value, origin, &kind)?;
            default_namespace(&mut obj.metadata);
            register(
                objects,
                origin,
                key_of("ReferenceGrant", &obj.metadata, true),
                &obj.metadata,
            )?;
            objects.reference_grants.push(std::sync::Arc::new(obj));
        }
        ("v1", "Namespace") => {
            let obj: k8s_openapi::api::core::v1::Namespace = typed(value, origin, &kind)?;
            register(
                objects,
                origin,
                key_of("Namespace", &obj.metadata, false),
                &obj.metadata,
            )?;
            objects.namespaces.push(std::sync::Arc::new(obj));
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

/// [`typed`], refusing fields the type does not know. mzlb's own kinds are read this way
/// from files (a typo must not silently drop a setting), while from the API server they are
/// read leniently: there a newer version's field must not fail the whole list for an older
/// replica during a rollout, and the API server has already checked the object against the CRD.
fn strict<T: DeserializeOwned>(value: Value, origin: &Origin, kind: &str) -> Result<T> {
    let mut unknown: Vec<String> = Vec::new();
    // serde_ignored writes `?` for the `Some` of an `Option`; field paths do not have it.
    let record = |path: serde_ignored::Path<'_>| {
        let path = path.to_string();
        unknown.push(path.split('.').filter(|s| *s != "?").collect::<Vec<_>>().join("."));
    };
    let Ok(object) = serde_ignored::deserialize(value.clone(), record) else {
        // Not even the known fields fit: let `typed` name the field at fault.
        return typed(value, origin, kind);
    };
    // The root type reads apiVersion and kind itself; metadata is Kubernetes' own (lenient).
    let ours = |p: &String| !(p == "apiVersion" || p == "kind" || p.starts_with("metadata."));
    match unknown.into_iter().find(ours) {
        None => Ok(object),
        Some(path) => Err(Error::Field {
            origin: origin.clone(),
            object: format!(
                "{kind} {}",
                value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("<unnamed>")
            ),
            message: format!("unknown field `{}`", path.rsplit('.').next().unwrap_or(&path)),
            field: path,
        }),
    }
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
        // (document) → the field named; nested settings and status are checked too.
        let rows = [
            (
                "kind: ZoneALB\nmetadata: {name: a}\nspec: {zone: z, ip: 127.0.0.1, health: {fal: 3}}",
                "spec.health.fal",
            ),
            (
                "kind: ZoneALB\nmetadata: {name: a}\nspec: {zone: z, ip: 127.0.0.1}\nstatus: {stat: x}",
                "status.stat",
            ),
            (
                "kind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test, sao: {}}",
                "spec.sao",
            ),
            (
                "kind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\nextra: 1",
                "extra",
            ),
        ];
        for (doc, field) in rows {
            let err = parse(&format!("apiVersion: mzlb.io/v1alpha1\n{doc}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field) && err.contains("unknown field"), "{doc}: {err}");
        }
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
    #[test]
    fn events_that_matter() {
        let root = Path::new("/m");
        let table = [
            ("/m/site.yaml", true),
            ("/m/sub/site.yml", true),
            ("/m/sub", true),
            ("/m", true),
            ("/elsewhere", true),
            // kubelet's ConfigMap swap: new directory, `..data_tmp` renamed over `..data`.
            ("/m/..data", true),
            ("/m/..data_tmp", true),
            ("/m/..2026_12_02_13_45_09.1234", true),
            ("/m/..2026_12_02_13_45_09.1234/site.yaml", true),
            // Editors' swap files and backups, and hidden directories `load` skips.
            ("/m/.site.yaml.swp", false),
            ("/m/site.yaml~", false),
            ("/m/notes.txt", false),
            ("/m/.git/index", false),
            ("/m/.git/objects/ab", false),
        ];
        for (path, want) in table {
            assert_eq!(relevant_path(root, Path::new(path)), want, "{path}");
        }
        let open = notify::Event::new(EventKind::Access(AccessKind::Open(notify::event::AccessMode::Any)))
            .add_path("/m/site.yaml".into());
        assert!(!relevant(root, &open), "our own reads are not changes");
        let closed =
            notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write))).add_path("/m/site.yaml".into());
        assert!(relevant(root, &closed));
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(relevant(root, &overflow), "a lost queue may hide a change");
    }

    const SITE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n";
    /// Long enough that only an event, never a poll, can explain a change seen in a test.
    const NEVER: Duration = Duration::from_secs(3600);

    async fn sees_change(watcher: &mut Watcher) -> bool {
        tokio::time::timeout(Duration::from_secs(5), watcher.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn events_report_writes_renames_and_removals_without_polling() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Watcher::new(dir.path(), NEVER);
        assert!(watcher.has_events());
        std::fs::write(dir.path().join("a.yaml"), SITE).unwrap();
        assert!(sees_change(&mut watcher).await, "a new file");
        std::fs::write(dir.path().join("a.yaml"), format!("{SITE}# edited\n")).unwrap();
        assert!(sees_change(&mut watcher).await, "a rewritten file");
        std::fs::write(dir.path().join("b.tmp"), SITE).unwrap();
        std::fs::rename(dir.path().join("b.tmp"), dir.path().join("b.yaml")).unwrap();
        assert!(sees_change(&mut watcher).await, "a file renamed into place");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(sees_change(&mut watcher).await, "a new directory");
        std::fs::write(dir.path().join("sub/c.yaml"), SITE).unwrap();
        assert!(sees_change(&mut watcher).await, "a file in the new directory");
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert!(sees_change(&mut watcher).await, "a removed file");
    }

    #[tokio::test]
    async fn events_report_a_configmap_swap() {
        // What kubelet does to a mounted ConfigMap: the files are links through `..data` into a
        // timestamped directory; an update writes a new directory and renames a new `..data`
        // link over the old one. No file the reader opens is written.
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::create_dir(path("..v1")).unwrap();
        std::fs::write(path("..v1/site.yaml"), SITE).unwrap();
        symlink("..v1", path("..data")).unwrap();
        symlink("..data/site.yaml", path("site.yaml")).unwrap();
        let mut watcher = Watcher::new(dir.path(), NEVER);

        std::fs::create_dir(path("..v2")).unwrap();
        std::fs::write(path("..v2/site.yaml"), format!("{SITE}# v2\n")).unwrap();
        symlink("..v2", path("..data_tmp")).unwrap();
        std::fs::rename(path("..data_tmp"), path("..data")).unwrap();
        std::fs::remove_dir_all(path("..v1")).unwrap();
        assert!(sees_change(&mut watcher).await);
        let text = std::fs::read_to_string(path("site.yaml")).unwrap();
        assert!(text.ends_with("# v2\n"), "{text}");
    }

    #[tokio::test]
    async fn polling_finds_changes_without_events() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), SITE).unwrap();
        let mut watcher = Watcher::with_events(dir.path(), None, Duration::from_millis(20));
        let unchanged = tokio::time::timeout(Duration::from_millis(200), watcher.changed()).await;
        assert!(unchanged.is_err(), "nothing changed, nothing reported");
        std::fs::write(dir.path().join("a.yaml"), format!("{SITE}# edited\n")).unwrap();
        assert!(sees_change(&mut watcher).await);
    }
}
