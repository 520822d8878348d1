//! Kubernetes mode: the same objects the manifest directory holds, kept current from the API
//! server by kube-runtime watchers and reflectors. A watch that ends resumes from its last
//! resourceVersion; one that gets 410 Gone lists again; either way the stores stay whole.
//! Every change bumps a counter that the consumer debounces and rebuilds from.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::gateway::model::{BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use crate::objects::{MultiZoneCluster, Objects, ZoneALB};

/// Which objects a component needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// ZoneALB and MultiZoneCluster: what `mzlb serve` answers DNS from.
    Registry,
    /// Those, plus Ingress, IngressClass, Service, EndpointSlice, Secrets (TLS, and basic-auth
    /// hashes) and ConfigMaps (their `data`): what a zone ALB routes with.
    Ingress,
}

/// Live copies of the watched objects.
#[derive(Clone)]
pub struct Watched {
    zone_albs: Store<ZoneALB>,
    clusters: Store<MultiZoneCluster>,
    ingress: Option<IngressStores>,
    /// Counts changes; consumers wait on it.
    pub changes: watch::Receiver<u64>,
}

#[derive(Clone)]
struct IngressStores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    /// `Opaque` Secrets, for basic auth: reduced to their password hashes as they arrive.
    credentials: Store<Secret>,
    /// ConfigMaps, for `custom-headers` and `auth-proxy-set-headers`: only `data` is kept.
    config_maps: Store<ConfigMap>,
    /// Gateway API. Not waited for at start: a cluster without its CRDs serves Ingresses
    /// (the watchers retry, and a table follows once they list).
    gateway_classes: Store<GatewayClass>,
    gateways: Store<Gateway>,
    http_routes: Store<HTTPRoute>,
    grpc_routes: Store<GRPCRoute>,
    reference_grants: Store<ReferenceGrant>,
    backend_tls_policies: Store<BackendTLSPolicy>,
    /// Namespaces, for their labels (listeners' `allowedRoutes` selectors): labels only.
    namespaces: Store<Namespace>,
    /// The Secret `--session-ticket-secret` names, whole (watched by name in its namespace).
    ticket_secret: Option<Store<Secret>>,
}

/// Starts the watchers for `scope` in the background (they retry with back-off forever);
/// with `ticket_secret` (namespace, name), that Secret is watched too.
pub fn start(client: &Client, scope: Scope, ticket_secret: Option<&(String, String)>) -> Watched {
    let (tx, changes) = watch::channel(0u64);
    let all = watcher::Config::default;
    let ingress = (scope == Scope::Ingress).then(|| IngressStores {
        ingresses: reflect(Api::all(client.clone()), all(), &tx),
        classes: reflect(Api::all(client.clone()), all(), &tx),
        services: reflect(Api::all(client.clone()), all(), &tx),
        slices: reflect(Api::all(client.clone()), all(), &tx),
        // Only certificates: the ALB has no business holding anyone's other Secrets.
        secrets: reflect(Api::all(client.clone()), all().fields("type=kubernetes.io/tls"), &tx),
        // Basic-auth Secrets are Opaque: of those only password hashes are kept.
        credentials: reflect_with(
            Api::all(client.clone()),
            all().fields("type=Opaque"),
            &tx,
            crate::auth::retain_credentials,
        ),
        // Any ConfigMap may be named by an annotation; of each only `data` is kept (no
        // binaryData, labels or annotations), so large ones cost little.
        config_maps: reflect_with(Api::all(client.clone()), all(), &tx, retain_data),
        gateway_classes: reflect(Api::all(client.clone()), all(), &tx),
        gateways: reflect(Api::all(client.clone()), all(), &tx),
        http_routes: reflect(Api::all(client.clone()), all(), &tx),
        grpc_routes: reflect(Api::all(client.clone()), all(), &tx),
        reference_grants: reflect(Api::all(client.clone()), all(), &tx),
        backend_tls_policies: reflect(Api::all(client.clone()), all(), &tx),
        namespaces: reflect_with(Api::all(client.clone()), all(), &tx, retain_labels),
        ticket_secret: ticket_secret.map(|(namespace, name)| {
            reflect(
                Api::namespaced(client.clone(), namespace),
                all().fields(&format!("metadata.name={name}")),
                &tx,
            )
        }),
    });
    Watched {
        zone_albs: reflect(Api::all(client.clone()), all(), &tx),
        clusters: reflect(Api::all(client.clone()), all(), &tx),
        ingress,
        changes,
    }
}

fn reflect<K>(api: Api<K>, config: watcher::Config, tx: &watch::Sender<u64>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    reflect_with(api, config, tx, |_| {})
}

/// [`reflect`], with `strip` applied to every object before it is stored.
fn reflect_with<K>(api: Api<K>, config: watcher::Config, tx: &watch::Sender<u64>, strip: fn(&mut K)) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let tx = tx.clone();
    let stream = watcher(api, config)
        .default_backoff()
        // managedFields are large and never read.
        .modify(move |o: &mut K| {
            o.managed_fields_mut().clear();
            strip(o);
        })
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                // The store is swapped whole at InitDone; nothing to rebuild before.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => {
                    if failing {
                        tracing::info!(%kind, "watch resumed");
                        failing = false;
                    }
                    tx.send_modify(|n| *n += 1);
                }
                Err(error) => {
                    // The last known objects keep serving; the watcher retries with back-off.
                    if !failing {
                        tracing::warn!(%kind, %error, "watch failed; serving the last known objects and retrying");
                    }
                    failing = true;
                }
            }
        }
    });
    reader
}

impl Watched {
    /// Waits until every watcher has listed once, or `timeout` passes.
    pub async fn ready(&self, timeout: Duration) -> Result<()> {
        let wait = async {
            let _ = self.zone_albs.wait_until_ready().await;
            let _ = self.clusters.wait_until_ready().await;
            if let Some(s) = &self.ingress {
                let _ = s.ingresses.wait_until_ready().await;
                let _ = s.classes.wait_until_ready().await;
                let _ = s.services.wait_until_ready().await;
                let _ = s.slices.wait_until_ready().await;
                let _ = s.secrets.wait_until_ready().await;
                let _ = s.credentials.wait_until_ready().await;
                let _ = s.config_maps.wait_until_ready().await;
                let _ = s.namespaces.wait_until_ready().await;
                if let Some(ticket) = &s.ticket_secret {
                    let _ = ticket.wait_until_ready().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Kube(format!("the API server sent no complete lists within {timeout:?}")))
    }

    /// The objects as they are now, in a stable order (oldest first, as ingress-nginx
    /// resolves conflicting rules: the first Ingress to claim a host keeps it).
    pub fn snapshot(&self) -> Objects {
        let mut objects = Objects {
            zone_albs: cloned(&self.zone_albs),
            clusters: cloned(&self.clusters),
            ..Default::default()
        };
        if let Some(s) = &self.ingress {
            // The stores' own `Arc`s: a snapshot shares the objects instead of copying them.
            objects.ingresses = shared(&s.ingresses);
            objects.ingress_classes = shared(&s.classes);
            objects.services = shared(&s.services);
            objects.endpoint_slices = shared(&s.slices);
            objects.secrets = shared(&s.secrets);
            objects.secrets.extend(shared(&s.credentials));
            if let Some(ticket) = &s.ticket_secret {
                objects.secrets.extend(shared(ticket));
            }
            objects.config_maps = shared(&s.config_maps);
            objects.gateway_classes = shared(&s.gateway_classes);
            objects.gateways = shared(&s.gateways);
            objects.http_routes = shared(&s.http_routes);
            objects.grpc_routes = shared(&s.grpc_routes);
            objects.reference_grants = shared(&s.reference_grants);
            objects.backend_tls_policies = shared(&s.backend_tls_policies);
            objects.namespaces = shared(&s.namespaces);
        }
        objects
    }
}

/// What the ALB keeps of a Namespace: its name and labels.
fn retain_labels(ns: &mut Namespace) {
    ns.spec = None;
    ns.status = None;
    ns.metadata.annotations = None;
    ns.metadata.owner_references = None;
}

/// What the ALB keeps of a ConfigMap: its `data` (header names and values), nothing else.
fn retain_data(cm: &mut ConfigMap) {
    cm.binary_data = None;
    cm.metadata.annotations = None;
    cm.metadata.labels = None;
    cm.metadata.owner_references = None;
}

fn cloned<K>(store: &Store<K>) -> Vec<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    shared(store).into_iter().map(|o| (*o).clone()).collect()
}

fn shared<K>(store: &Store<K>) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let mut items = store.state();
    items.sort_by(|a, b| {
        let created = |o: &K| o.meta().creation_timestamp.clone();
        created(a)
            .cmp(&created(b))
            .then_with(|| a.namespace().cmp(&b.namespace()))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    items
}

/// Where to reach the API server.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KubeOptions {
    /// Read objects from Kubernetes with this kubeconfig (default: in-cluster config, then
    /// `KUBECONFIG`, then `~/.kube/config`) instead of a manifest directory.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl KubeOptions {
    /// A client for the configured cluster.
    pub async fn client(&self) -> Result<Client> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let failed = |e: &dyn std::fmt::Display| Error::Kube(format!("Kubernetes configuration: {e}"));
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| Error::Kube(format!("kubeconfig {}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| failed(&e))?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options).await.map_err(|e| failed(&e))?,
            None => kube::Config::infer().await.map_err(|e| failed(&e))?,
        };
        Client::try_from(config).map_err(|e| Error::Kube(format!("Kubernetes client: {e}")))
    }

    /// The namespace for this component's own objects (its Lease): `POD_NAMESPACE`, the
    /// service account's namespace in a pod, else the kubeconfig context's.
    pub fn namespace(client: &Client) -> String {
        std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_owned())
    }
}
