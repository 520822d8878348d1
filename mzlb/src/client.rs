//! The CLI side of the control API: `mzlb albs` and `mzlb alb-configure`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};

use crate::api::{ApiError, Configure};
use crate::registry::{AlbStatus, Health};
use crate::state::{ApiEndpoint, StateDir};

pub struct ApiClient {
    endpoint: ApiEndpoint,
    http: reqwest::Client,
}

impl ApiClient {
    /// Finds the running server through the state directory.
    pub fn from_state(state: &StateDir) -> anyhow::Result<Self> {
        let endpoint = state.read_api()?.ok_or_else(|| {
            anyhow!(
                "no control API recorded in {}: start `mzlb up` or `mzlb serve` first (or point --state-dir / MZLB_STATE_DIR at its state directory)",
                state.path().display()
            )
        })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { endpoint, http })
    }

    pub async fn albs(&self) -> anyhow::Result<Vec<AlbStatus>> {
        let req = self.http.get(format!("{}/v1/albs", self.endpoint.url));
        self.send(req).await
    }

    pub async fn configure(&self, id: &str, enabled: bool) -> anyhow::Result<AlbStatus> {
        let req = self
            .http
            .patch(format!("{}/v1/albs/{id}", self.endpoint.url))
            .json(&Configure { enabled });
        self.send(req).await
    }

    async fn send<T: for<'de> serde::Deserialize<'de>>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.bearer_auth(&self.endpoint.token).send().await.with_context(|| {
            format!(
                "cannot reach the mzlb control API at {} — is `mzlb up` or `mzlb serve` running?",
                self.endpoint.url
            )
        })?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&body)
                .map_or_else(|_| String::from_utf8_lossy(&body).into_owned(), |e| e.error);
            bail!("{message} (HTTP {status})");
        }
        serde_json::from_slice(&body).context("unexpected answer from the control API")
    }
}

/// The `mzlb albs` table, in the spirit of a cloud provider's CLI.
pub fn table(albs: &[AlbStatus]) -> String {
    let header = [
        "ALB ID",
        "Enabled",
        "Status",
        "In DNS",
        "ALB IP",
        "Zone",
        "Cluster",
        "Last Check",
    ];
    let rows: Vec<[String; 8]> = albs
        .iter()
        .map(|a| {
            [
                a.id.clone(),
                a.enabled.to_string(),
                match (a.enabled, a.health) {
                    (false, _) => "disabled".into(),
                    (true, Health::Healthy) => "healthy".into(),
                    (true, Health::Unhealthy) => "unhealthy".into(),
                    (true, Health::Pending) => "pending".into(),
                },
                if a.in_dns { "yes" } else { "no" }.into(),
                a.ip.to_string(),
                a.zone.clone(),
                a.cluster.clone(),
                a.last_probe.as_ref().map_or_else(|| "-".into(), describe_probe),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (cell, w) in cells.zip(widths) {
            out.push_str(&format!("{cell:<w$}   "));
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in &rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn describe_probe(p: &crate::registry::Probe) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ago = now.saturating_sub(p.at_ms) as f64 / 1000.0;
    format!("{} in {:.1}ms, {ago:.1}s ago", p.detail, p.latency_ms)
}
