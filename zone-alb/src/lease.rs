//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does:
//! the holder renews every few seconds; anyone may take a Lease whose renewal is older than
//! its duration. Writes use the Lease's resourceVersion, so two candidates never both win.
//! Used so that only one replica writes shared status.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and others try.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Campaigns for the Lease `namespace/name` as `identity` until `cancel`; the receiver says
/// whether we hold it now.
pub fn campaign(
    client: Client,
    namespace: &str,
    name: &str,
    identity: String,
    cancel: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut renewed: Option<tokio::time::Instant> = None;
        loop {
            match try_acquire_or_renew(&api, &name, &identity).await {
                Ok(true) => {
                    if !*tx.borrow() {
                        tracing::info!(lease = %name, %identity, "became the leader");
                    }
                    renewed = Some(tokio::time::Instant::now());
                    tx.send_replace(true);
                }
                Ok(false) => {
                    if *tx.borrow() {
                        tracing::info!(lease = %name, "lost the lease to another replica");
                    }
                    tx.send_replace(false);
                }
                Err(error) => {
                    // Keep leading through a short API outage, but never past the lease's
                    // duration: by then another replica may have taken it.
                    let expired = renewed.is_none_or(|t| t.elapsed() >= LEASE_DURATION - RETRY_PERIOD);
                    if *tx.borrow() && expired {
                        tracing::warn!(lease = %name, %error, "could not renew the lease; stepping down");
                        tx.send_replace(false);
                    } else {
                        tracing::debug!(lease = %name, %error, "lease request failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_PERIOD) => {}
                () = cancel.cancelled() => break,
            }
        }
        // Let another replica take over at once rather than after the lease expires.
        if *tx.borrow() {
            let _ = release(&api, &name, &identity).await;
        }
        tx.send_replace(false);
    });
    rx
}

/// One round: returns whether `identity` holds the lease afterwards.
async fn try_acquire_or_renew(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_owned()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let duration = SignedDuration::from_secs(i64::from(
        spec.lease_duration_seconds.unwrap_or(LEASE_DURATION.as_secs() as i32),
    ));
    let expired = spec.renew_time.as_ref().is_none_or(|t| t.0 + duration < now);
    if holder != identity && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if holder != identity {
        spec.holder_identity = Some(identity.to_owned());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    // The resourceVersion in `lease` makes this a compare-and-swap.
    match api.replace(&lease.name_any(), &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(name, &PostParams::default(), &lease).await.map(|_| ())
}

/// This process's identity for leases and events: `POD_NAME` on a cluster, else host and pid.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
}
