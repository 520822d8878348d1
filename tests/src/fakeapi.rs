//! A fake Kubernetes API server for tests: it speaks the real wire protocol (JSON lists with a
//! `resourceVersion`, newline-delimited watch streams, `410 Gone` for a compacted version,
//! create/replace/merge-patch/delete with conflicts) over plain HTTP on loopback, so the real
//! binaries can be pointed at it with an ordinary kubeconfig.
//!
//! It runs on its own thread and runtime so synchronous tests can drive it: put objects in,
//! change or delete them (watchers see ADDED/MODIFIED/DELETED), end every watch, compact the
//! history, and read back every request a client made.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

/// One resource type the fake server knows.
struct Kind {
    /// `api/v1` or `apis/<group>/<version>`.
    prefix: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    /// Whether `status` is a subresource (the main resource then ignores status changes).
    status: bool,
}

const KINDS: &[Kind] = &[
    kind("api/v1", "services", "Service", true, true),
    kind("api/v1", "secrets", "Secret", true, false),
    kind("api/v1", "configmaps", "ConfigMap", true, false),
    kind("api/v1", "namespaces", "Namespace", false, true),
    kind(
        "apis/discovery.k8s.io/v1",
        "endpointslices",
        "EndpointSlice",
        true,
        false,
    ),
    kind("apis/networking.k8s.io/v1", "ingresses", "Ingress", true, true),
    kind(
        "apis/networking.k8s.io/v1",
        "ingressclasses",
        "IngressClass",
        false,
        false,
    ),
    kind("apis/mzlb.io/v1alpha1", "zonealbs", "ZoneALB", false, true),
    kind(
        "apis/mzlb.io/v1alpha1",
        "multizoneclusters",
        "MultiZoneCluster",
        false,
        true,
    ),
    kind("apis/mzlb.io/v1alpha1", "proberreports", "ProberReport", true, false),
    kind("apis/coordination.k8s.io/v1", "leases", "Lease", true, false),
    kind(
        "apis/gateway.networking.k8s.io/v1",
        "gatewayclasses",
        "GatewayClass",
        false,
        true,
    ),
    kind("apis/gateway.networking.k8s.io/v1", "gateways", "Gateway", true, true),
    kind(
        "apis/gateway.networking.k8s.io/v1",
        "httproutes",
        "HTTPRoute",
        true,
        true,
    ),
    kind(
        "apis/gateway.networking.k8s.io/v1",
        "grpcroutes",
        "GRPCRoute",
        true,
        true,
    ),
    kind(
        "apis/gateway.networking.k8s.io/v1",
        "backendtlspolicies",
        "BackendTLSPolicy",
        true,
        true,
    ),
    kind(
        "apis/gateway.networking.k8s.io/v1",
        "referencegrants",
        "ReferenceGrant",
        true,
        false,
    ),
    kind("apis/events.k8s.io/v1", "events", "Event", true, false),
];

const fn kind(prefix: &'static str, plural: &'static str, kind: &'static str, namespaced: bool, status: bool) -> Kind {
    Kind {
        prefix,
        plural,
        kind,
        namespaced,
        status,
    }
}

fn kind_of(kind: &str) -> &'static Kind {
    KINDS
        .iter()
        .find(|k| k.kind == kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve kind {kind}"))
}

/// One request a client made, as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path without the query, e.g. `/apis/networking.k8s.io/v1/namespaces/default/ingresses/web/status`.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    /// The RBAC verb this request needs (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`).
    pub verb: String,
    /// API group (`""` for the core group) and resource (`ingresses/status` for a subresource).
    pub group: String,
    pub resource: String,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// (kind index, namespace, name) → object.
    objects: BTreeMap<(usize, String, String), Value>,
    /// Every change: (resourceVersion, kind index, event type, object).
    history: Vec<(u64, usize, &'static str, Value)>,
    /// A watch from a version older than this gets 410 Gone.
    oldest: u64,
    requests: Vec<Recorded>,
    /// Kind index: the next replace of an object of this kind finds it changed by someone
    /// else first (a new resourceVersion), so it gets 409 Conflict.
    race_next_replace: Option<usize>,
    /// Bumped to end every open watch.
    epoch: u64,
    down: bool,
    /// Requests for these resources (e.g. `ingresses/status`) are answered only after a delay.
    stalls: BTreeMap<String, Duration>,
    /// Benchmarks on loopback only (see [`FakeApi::permit_loopback_endpoints`]).
    loopback_endpoints: bool,
}

impl State {
    /// What the API server checks (and fills in) before storing: built-in kinds' rules and
    /// the CRDs' schemas. `Err` is the API server's message.
    fn admit(&self, k: usize, object: &mut Value) -> Result<(), String> {
        let kind = KINDS[k].kind;
        if !self.loopback_endpoints {
            crate::schema::admit_builtin(kind, object)?;
        }
        crate::schema::admit(kind, object)?;
        if kind == "Secret" {
            string_data_into_data(object);
        }
        Ok(())
    }
}

/// A Secret's `stringData` is write-only: the API server merges it into `data`, base64-encoded,
/// its keys winning, and never stores or returns it.
fn string_data_into_data(object: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        object["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// A running fake API server; stops when dropped.
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// (resourceVersion, epoch): watchers wake on every change.
    changed: watch::Sender<(u64, u64)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    /// Serves on `addr` (e.g. `127.0.40.1:0`).
    pub fn start(addr: &str) -> FakeApi {
        let std_listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            oldest: 0,
            ..Default::default()
        }));
        let (changed, _) = watch::channel((100, 0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server {
            state: state.clone(),
            changed: changed.clone(),
        };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let server = server.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let server = server.clone();
                                async move { Ok::<_, Infallible>(server.handle(req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends every connection, as a dead API server would.
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        FakeApi {
            addr,
            state,
            changed,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig (context `fake`, namespace `mzlb-system`) that points at this server.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: mzlb-system}}\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
    }

    /// Creates or replaces an object given as YAML (or JSON); watchers see ADDED or MODIFIED.
    pub fn apply_yaml(&self, yaml: &str) {
        for doc in yaml.split("\n---\n") {
            let value: Value = serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("bad test YAML: {e}\n{doc}"));
            self.apply(value);
        }
    }

    pub fn apply(&self, mut object: Value) {
        let k = index_of(object["kind"].as_str().expect("object has a kind"));
        let ns = if KINDS[k].namespaced {
            object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned()
        } else {
            String::new()
        };
        let name = object["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_owned();
        if KINDS[k].namespaced {
            object["metadata"]["namespace"] = json!(ns);
        }
        // Seeded objects pass the same admission as requests: a test cannot start from an
        // object a real API server would refuse.
        let mut state = self.state.lock().unwrap();
        state
            .admit(k, &mut object)
            .unwrap_or_else(|e| panic!("the API server would refuse this test object: {e}"));
        let old = state.objects.get(&(k, ns.clone(), name.clone()));
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        // As `kubectl apply`: the status (a subresource) is not the applier's to change.
        if KINDS[k].status
            && object.get("status").is_none()
            && let Some(status) = old.and_then(|o| o.get("status")).cloned()
        {
            object["status"] = status;
        }
        state.store(k, ns, name, object, kind);
        self.wake(&state);
    }

    /// Deletes an object; watchers see DELETED.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) {
        let k = index_of(kind);
        let mut state = self.state.lock().unwrap();
        let key = (k, namespace.unwrap_or_default().to_owned(), name.to_owned());
        state
            .remove(&key)
            .unwrap_or_else(|| panic!("no {kind} {name} to delete"));
        self.wake(&state);
    }

    /// The stored object, if any.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = (
            index_of(kind),
            namespace.unwrap_or_default().to_owned(),
            name.to_owned(),
        );
        self.state.lock().unwrap().objects.get(&key).cloned()
    }

    /// Every stored object of `kind`.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let k = index_of(kind);
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .filter(|(key, _)| key.0 == k)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Ends every open watch stream cleanly (as the API server does at its timeout).
    pub fn end_watches(&self) {
        let mut state = self.state.lock().unwrap();
        state.epoch += 1;
        self.wake(&state);
    }

    /// Forgets the history so far and ends every watch: a client resuming from an old
    /// resourceVersion gets 410 Gone and must list again.
    pub fn compact(&self) {
        let mut state = self.state.lock().unwrap();
        state.oldest = state.rv + 1;
        state.history.clear();
        state.epoch += 1;
        self.wake(&state);
    }

    /// While down, every request gets 503 and open watches end: the API server is unreachable.
    pub fn set_down(&self, down: bool) {
        let mut state = self.state.lock().unwrap();
        state.down = down;
        state.epoch += 1;
        self.wake(&state);
    }

    /// Lets EndpointSlices name loopback addresses, which a real API server refuses: for
    /// benchmarks that run every process on loopback (the `fakeapi` program), never for tests.
    pub fn permit_loopback_endpoints(&self) {
        self.state.lock().unwrap().loopback_endpoints = true;
    }

    /// Answers every request for `resource` (e.g. `ingresses/status`) only after `delay`, as an
    /// overloaded API server would; `Duration::ZERO` ends the stall.
    pub fn stall(&self, resource: &str, delay: Duration) {
        let mut state = self.state.lock().unwrap();
        if delay.is_zero() {
            state.stalls.remove(resource);
        } else {
            state.stalls.insert(resource.to_owned(), delay);
        }
    }

    /// Someone else writes the next object of `kind` a client replaces, just before the client
    /// does: the client's resourceVersion is stale and it gets 409 Conflict, as from the real
    /// API server.
    pub fn race_next_replace(&self, kind: &str) {
        self.state.lock().unwrap().race_next_replace = Some(index_of(kind));
    }

    /// Whether the race set up by [`race_next_replace`](Self::race_next_replace) happened.
    pub fn raced(&self) -> bool {
        self.state.lock().unwrap().race_next_replace.is_none()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    fn wake(&self, state: &State) {
        self.changed.send_replace((state.rv, state.epoch));
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn index_of(kind: &str) -> usize {
    let k = kind_of(kind);
    KINDS.iter().position(|x| std::ptr::eq(x, k)).unwrap()
}

impl State {
    /// Deletes an object at a new resourceVersion; watchers see DELETED.
    fn remove(&mut self, key: &(usize, String, String)) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.history.push((self.rv, key.0, "DELETED", object.clone()));
        Some(object)
    }

    fn store(&mut self, k: usize, ns: String, name: String, mut object: Value, event: &'static str) -> Value {
        self.rv += 1;
        // metadata.generation: 1 on create, one more on every change of the spec (what
        // observedGeneration in status conditions answers to).
        let generation = match self.objects.get(&(k, ns.clone(), name.clone())) {
            None => 1,
            Some(old) => {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if old.get("spec") == object.get("spec") {
                    g
                } else {
                    g + 1
                }
            }
        };
        let meta = &mut object["metadata"];
        meta["generation"] = json!(generation);
        meta["resourceVersion"] = json!(self.rv.to_string());
        if meta.get("uid").is_none() {
            meta["uid"] = json!(format!("uid-{}-{}", KINDS[k].plural, self.rv));
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let kind = &KINDS[k];
        object["kind"] = json!(kind.kind);
        object["apiVersion"] = json!(kind.prefix.trim_start_matches("apis/").trim_start_matches("api/"));
        self.objects.insert((k, ns, name), object.clone());
        self.history.push((self.rv, k, event, object.clone()));
        object
    }
}

/// What a request's path names.
struct Target {
    k: usize,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let rest = path.trim_start_matches('/');
    let (prefix, rest) = if let Some(r) = rest.strip_prefix("api/v1/") {
        ("api/v1", r)
    } else {
        let r = rest.strip_prefix("apis/")?;
        let mut parts = r.splitn(3, '/');
        let (group, version, rest) = (parts.next()?, parts.next()?, parts.next()?);
        let prefix_len = "apis/".len() + group.len() + 1 + version.len();
        (&path.trim_start_matches('/')[..prefix_len], rest)
    };
    let mut parts: Vec<&str> = rest.split('/').collect();
    let mut namespace = None;
    if parts.len() >= 3 && parts[0] == "namespaces" {
        namespace = Some(parts[1].to_owned());
        parts.drain(..2);
    }
    let k = KINDS.iter().position(|k| k.prefix == prefix && k.plural == parts[0])?;
    Some(Target {
        k,
        namespace,
        name: parts.get(1).map(|s| (*s).to_owned()),
        subresource: parts.get(2).map(|s| (*s).to_owned()),
    })
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn matches(object: &Value, namespace: Option<&str>, query: &BTreeMap<String, String>) -> bool {
    if let Some(ns) = namespace
        && object["metadata"]["namespace"].as_str() != Some(ns)
    {
        return false;
    }
    let selector = |key: &str, f: &dyn Fn(&str, &str) -> bool| {
        query.get(key).is_none_or(|s| {
            s.split(',')
                .filter(|t| !t.is_empty())
                .all(|term| match term.split_once('=') {
                    Some((k, v)) => f(k.trim_end_matches('='), v),
                    None => true,
                })
        })
    };
    let field = |k: &str, v: &str| {
        let actual = match k {
            "metadata.name" => object["metadata"]["name"].as_str(),
            "metadata.namespace" => object["metadata"]["namespace"].as_str(),
            "type" => object["type"].as_str(),
            _ => None,
        };
        actual == Some(v)
    };
    let label = |k: &str, v: &str| object["metadata"]["labels"][k].as_str() == Some(v);
    selector("fieldSelector", &field) && selector("labelSelector", &label)
}

#[derive(Clone)]
struct Server {
    state: Arc<Mutex<State>>,
    changed: watch::Sender<(u64, u64)>,
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), percent_decode(v)))
                    .collect()
            })
            .unwrap_or_default();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes)
                .ok()
                .or_else(|| serde_yaml::from_slice(&bytes).ok())
        };
        let Some(target) = parse_path(&path) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("the server could not find {path}"),
            );
        };
        let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (&method, &target.name) {
            (&Method::GET, None) if watching => "watch",
            (&Method::GET, None) => "list",
            (&Method::GET, Some(_)) => "get",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, _) => "delete",
            _ => "unknown",
        };
        let kind = &KINDS[target.k];
        let group = match kind.prefix.strip_prefix("apis/") {
            Some(gv) => gv.split('/').next().unwrap_or_default().to_owned(),
            None => String::new(),
        };
        let resource = match &target.subresource {
            Some(sub) => format!("{}/{sub}", kind.plural),
            None => kind.plural.to_owned(),
        };
        let stall = {
            let mut state = self.state.lock().unwrap();
            let stall = state.stalls.get(&resource).copied();
            state.requests.push(Recorded {
                method: method.to_string(),
                path: path.clone(),
                query: query.clone(),
                content_type: content_type.clone(),
                body: body.clone(),
                verb: verb.into(),
                group,
                resource,
            });
            if state.down {
                return status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the fake API server is down",
                );
            }
            stall
        };
        if let Some(delay) = stall {
            tokio::time::sleep(delay).await;
        }
        match verb {
            "watch" => self.watch(target, query),
            "list" => self.list(&target, &query),
            "get" => self.get(&target),
            "create" => self.create(&target, body),
            "update" => self.replace(&target, body),
            "patch" => self.patch(&target, body, content_type.as_deref()),
            "delete" => self.delete(&target),
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "unsupported"),
        }
    }

    fn key(&self, target: &Target) -> (usize, String, String) {
        (
            target.k,
            target.namespace.clone().unwrap_or_default(),
            target.name.clone().unwrap_or_default(),
        )
    }

    fn list(&self, target: &Target, query: &BTreeMap<String, String>) -> Response<Body> {
        let state = self.state.lock().unwrap();
        let items: Vec<&Value> = state
            .objects
            .iter()
            .filter(|(key, object)| key.0 == target.k && matches(object, target.namespace.as_deref(), query))
            .map(|(_, v)| v)
            .collect();
        let kind = &KINDS[target.k];
        full(
            StatusCode::OK,
            &json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.prefix.trim_start_matches("apis/").trim_start_matches("api/"),
                    "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}),
        )
    }

    fn get(&self, target: &Target) -> Response<Body> {
        let state = self.state.lock().unwrap();
        match state.objects.get(&self.key(target)) {
            Some(object) => full(StatusCode::OK, object),
            None => not_found(target),
        }
    }

    fn create(&self, target: &Target, body: Option<Value>) -> Response<Body> {
        let Some(mut object) = body else {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "no body");
        };
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name: Required value",
            );
        };
        if !crate::schema::valid_name(&name) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            );
        }
        let ns = target.namespace.clone().unwrap_or_default();
        if KINDS[target.k].namespaced {
            object["metadata"]["namespace"] = json!(ns);
        }
        let mut state = self.state.lock().unwrap();
        if let Err(e) = state.admit(target.k, &mut object) {
            return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e);
        }
        if state.objects.contains_key(&(target.k, ns.clone(), name.clone())) {
            return status(StatusCode::CONFLICT, "AlreadyExists", &format!("{name} already exists"));
        }
        let stored = state.store(target.k, ns, name, object, "ADDED");
        self.changed.send_replace((state.rv, state.epoch));
        full(StatusCode::CREATED, &stored)
    }

    fn replace(&self, target: &Target, body: Option<Value>) -> Response<Body> {
        let Some(mut object) = body else {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "no body");
        };
        let key = self.key(target);
        let mut state = self.state.lock().unwrap();
        if state.race_next_replace == Some(key.0)
            && let Some(current) = state.objects.get(&key).cloned()
        {
            state.race_next_replace = None;
            state.store(key.0, key.1.clone(), key.2.clone(), current, "MODIFIED");
        }
        let Some(current) = state.objects.get(&key) else {
            return not_found(target);
        };
        let sent = object["metadata"]["resourceVersion"].as_str();
        if sent.is_some() && sent != current["metadata"]["resourceVersion"].as_str() {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
            );
        }
        if KINDS[target.k].namespaced {
            object["metadata"]["namespace"] = json!(key.1);
        }
        object["metadata"]["uid"] = current["metadata"]["uid"].clone();
        if let Err(e) = state.admit(target.k, &mut object) {
            return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e);
        }
        let stored = state.store(key.0, key.1, key.2, object, "MODIFIED");
        self.changed.send_replace((state.rv, state.epoch));
        full(StatusCode::OK, &stored)
    }

    fn patch(&self, target: &Target, body: Option<Value>, content_type: Option<&str>) -> Response<Body> {
        let Some(patch) = body else {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "no body");
        };
        let content_type = content_type.unwrap_or_default();
        let custom = KINDS[target.k].prefix.starts_with("apis/mzlb.io/");
        // As the real server: no strategic merge for custom resources. Server-side apply has
        // semantics of its own (field managers, list maps, create on first apply) the fake does
        // not implement, so it refuses it rather than pass it off as a merge.
        let mergeable = content_type.contains("application/merge-patch+json")
            || (content_type.contains("strategic-merge-patch") && !custom);
        if !mergeable {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                &format!(
                    "the fake server does not apply {content_type:?} patches to {}",
                    KINDS[target.k].plural
                ),
            );
        }
        let key = self.key(target);
        let mut state = self.state.lock().unwrap();
        let Some(mut object) = state.objects.get(&key).cloned() else {
            return not_found(target);
        };
        // A resourceVersion in the patch is a precondition.
        if let Some(sent) = patch["metadata"]["resourceVersion"].as_str()
            && Some(sent) != object["metadata"]["resourceVersion"].as_str()
        {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
            );
        }
        let kind = &KINDS[target.k];
        match target.subresource.as_deref() {
            // The status subresource changes only status; the main resource everything else.
            Some("status") => merge(&mut object["status"], &patch["status"]),
            Some(other) => return status(StatusCode::NOT_FOUND, "NotFound", &format!("no subresource {other}")),
            None => {
                let mut patch = patch.clone();
                if kind.status
                    && let Some(fields) = patch.as_object_mut()
                {
                    fields.remove("status");
                }
                merge(&mut object, &patch);
            }
        }
        if let Err(e) = state.admit(target.k, &mut object) {
            return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e);
        }
        let stored = state.store(key.0, key.1, key.2, object, "MODIFIED");
        self.changed.send_replace((state.rv, state.epoch));
        full(StatusCode::OK, &stored)
    }

    fn delete(&self, target: &Target) -> Response<Body> {
        let key = self.key(target);
        let mut state = self.state.lock().unwrap();
        let Some(object) = state.remove(&key) else {
            return not_found(target);
        };
        self.changed.send_replace((state.rv, state.epoch));
        full(StatusCode::OK, &object)
    }

    /// A watch stream: every change after `resourceVersion`, then new ones as they happen,
    /// until `timeoutSeconds`, [`FakeApi::end_watches`] or a compaction.
    fn watch(&self, target: Target, query: BTreeMap<String, String>) -> Response<Body> {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| self.state.lock().unwrap().rv);
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(Duration::from_secs(290), Duration::from_secs);
        let (oldest, epoch) = {
            let state = self.state.lock().unwrap();
            (state.oldest, state.epoch)
        };
        if from < oldest {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": format!("too old resource version: {from} ({oldest})"),
                "reason": "Expired", "code": 410}});
            return Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!("{gone}\n"))).boxed())
                .unwrap();
        }
        let state = self.state.clone();
        let changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = futures::stream::unfold(from, move |cursor| {
            let state = state.clone();
            let namespace = target.namespace.clone();
            let query = query.clone();
            let k = target.k;
            let changed = changed.clone();
            async move {
                loop {
                    // Subscribe before looking, so a change made in between still wakes us.
                    let mut rx = changed.subscribe();
                    {
                        let state = state.lock().unwrap();
                        if state.epoch != epoch || state.down {
                            return None;
                        }
                        let next = state.history.iter().find(|(rv, kk, _, object)| {
                            *rv > cursor && *kk == k && matches(object, namespace.as_deref(), &query)
                        });
                        if let Some((rv, _, event, object)) = next {
                            let line = format!("{}\n", json!({"type": event, "object": object}));
                            return Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), *rv));
                        }
                    }
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return None },
                        () = tokio::time::sleep_until(deadline) => return None,
                    }
                }
            }
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap()
    }
}

fn not_found(target: &Target) -> Response<Body> {
    let kind = &KINDS[target.k];
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "{} \"{}\" not found",
            kind.plural,
            target.name.as_deref().unwrap_or_default()
        ),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
