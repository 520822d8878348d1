//! Where an operator's choices are recorded: the state directory standalone, `spec.enabled`
//! on a cluster. The registry calls one interface, so the two modes differ only here and in
//! where peers' observations come from ([`crate::probers`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use zone_alb::objects::ZoneALB;

use crate::error::{Error, Result};
use crate::state::StateDir;

#[derive(Clone)]
pub enum Store {
    /// Standalone: choices in the state directory (fsync'd), overriding the manifests.
    Files {
        state: StateDir,
        /// Serialises read-modify-write of the choices file, apart from the registry's lock.
        writing: Arc<tokio::sync::Mutex<()>>,
    },
    /// On a cluster: `spec.enabled` is the record, every replica follows it through its watch.
    Kube(kube::Client),
}

impl Store {
    pub fn files(state: StateDir) -> Self {
        Store::Files {
            state,
            writing: Arc::default(),
        }
    }

    /// The choices that override the objects' `spec.enabled` at start.
    pub fn initial_choices(&self) -> Result<BTreeMap<String, bool>> {
        match self {
            Store::Files { state, .. } => Ok(state.read_choices()?.enabled),
            Store::Kube(_) => Ok(BTreeMap::new()),
        }
    }

    /// Records an enable or disable durably, before it takes effect. The file is written and
    /// fsync'd on a blocking thread with no registry lock held, so probes and DNS never wait
    /// on the disk.
    pub async fn record_choice(&self, id: &str, enabled: bool) -> Result<()> {
        match self {
            Store::Files { state, writing } => {
                let _one_writer = writing.lock().await;
                let state_path = state.path().to_path_buf();
                let (state, id) = (state.clone(), id.to_owned());
                tokio::task::spawn_blocking(move || {
                    let mut choices = state.read_choices()?;
                    choices.enabled.insert(id, enabled);
                    state.write_choices(&choices)
                })
                .await
                .map_err(|e| Error::State {
                    path: state_path.clone(),
                    source: std::io::Error::other(e),
                })?
            }
            Store::Kube(client) => set_enabled(client, id, enabled).await.map(drop),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Store::Kube(_))
    }
}

/// `mzlb alb-configure` over a kubeconfig: patches `spec.enabled`; every `mzlb serve`
/// replica follows through its watch.
pub async fn set_enabled(client: &Client, id: &str, enabled: bool) -> Result<ZoneALB> {
    let api: Api<ZoneALB> = Api::all(client.clone());
    let patch = json!({"spec": {"enabled": enabled}});
    api.patch(id, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => Error::UnknownAlb(id.to_owned()),
            e => Error::Objects(zone_alb::Error::Kube(format!("patching ZoneALB {id}: {e}"))),
        })
}
