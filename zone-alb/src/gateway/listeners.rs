//! Gateway listeners' ports: opened on the ALB's IP when a Gateway asks for them and closed
//! (after draining) when none does any more. A port the ALB serves Ingresses on is shared
//! instead of opened twice. They are served on the control runtime by their own proxy, which
//! shares the routing table, metrics and settings with the workers'.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::workers::Shared;

/// How soon a port that could not be opened is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Follows the routing table until `cancel` fires: after each swap (`changed`), opens the
/// Gateway ports it needs and closes those it no longer does.
pub(crate) async fn run(
    shared: Arc<Shared>,
    ip: IpAddr,
    own: Vec<u16>,
    changed: Arc<Notify>,
    cancel: CancellationToken,
) {
    let proxy = Arc::new(Proxy::new(
        shared.table.clone(),
        shared.proxy.clone(),
        shared.metrics.clone(),
    ));
    let mut open: HashMap<u16, (bool, CancellationToken)> = HashMap::new();
    // Ports that could not be opened, logged once each until they open.
    let mut failures = std::collections::HashSet::new();
    loop {
        let wanted: HashMap<u16, bool> = shared
            .table
            .load()
            .gateway
            .listen_ports()
            .into_iter()
            .filter(|(port, _)| !own.contains(port))
            .collect();
        open.retain(|port, (https, token)| {
            let keep = wanted.get(port) == Some(https);
            if !keep {
                tracing::info!(port, "Gateway listener port closed");
                token.cancel();
            }
            keep
        });
        let mut failed = false;
        for (&port, &https) in &wanted {
            if open.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(ip, port);
            let listener = match crate::server::bind(addr).await {
                Ok(listener) => listener,
                Err(error) => {
                    // Tried again shortly (a listener just closed may still hold the port);
                    // the Ingress listeners are unaffected.
                    if failures.insert(port) {
                        tracing::error!(%error, "cannot open a Gateway listener's port; retrying");
                    }
                    failed = true;
                    continue;
                }
            };
            failures.remove(&port);
            let token = cancel.child_token();
            let edge = https.then(|| Arc::new(crate::tls::Edge::new(shared.table.clone(), port, false)));
            tokio::spawn(crate::server::serve(
                listener,
                edge,
                shared.proxy_protocol,
                proxy.clone(),
                token.clone(),
            ));
            tracing::info!(%addr, https, "Gateway listener port open");
            open.insert(port, (https, token));
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(RETRY), if failed => {}
            () = cancel.cancelled() => return,
        }
    }
}
