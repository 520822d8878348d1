//! The CLI side of the control API: `mzlb albs` and `mzlb alb-configure`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};

use crate::api::{ApiError, Configure};
use zone_alb::objects::FailPolicy;

use crate::events::Event;
use crate::registry::AlbStatus;
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

    pub async fn events(&self) -> anyhow::Result<Vec<Event>> {
        let req = self.http.get(format!("{}/v1/events", self.endpoint.url));
        self.send(req).await
    }

    pub async fn configure(&self, id: &str, enabled: bool) -> anyhow::Result<AlbStatus> {
        let req = self
            .http
            .patch(format!("{}/v1/albs/{id}", self.endpoint.url))
            .json(&Configure { enabled });
        self.send(req).await
    }

    /// Calls `redraw` with the ALBs now and again at every change the server pushes on
    /// `/v1/status/stream` (and at its periodic refresh), until the connection ends.
    pub async fn watch(&self, mut redraw: impl FnMut(&[AlbStatus])) -> anyhow::Result<()> {
        // No overall timeout (the stream is meant to last); the server sends at least every
        // few seconds, so a silent minute means it is gone.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        let url = format!("{}/v1/status/stream", self.endpoint.url);
        let mut resp = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the mzlb control API at {url}"))?
            .error_for_status()?;
        let mut pending = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            pending.extend_from_slice(&chunk);
            // Each server-sent event ends with an empty line; several may come at once.
            let mut events = 0;
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                pending.drain(..end + 2);
                events += 1;
            }
            if events > 0 {
                redraw(&self.albs().await?);
            }
        }
        bail!("the control API at {} closed the stream", self.endpoint.url)
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

/// The `mzlb albs` table, in the spirit of a cloud provider's CLI, and a line per cluster
/// saying what happens when all its ALBs fail.
pub fn table(albs: &[AlbStatus]) -> String {
    let now = now_ms();
    let rows: Vec<Vec<String>> = albs
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.enabled.to_string(),
                a.state.to_string(),
                if a.in_dns { "yes" } else { "no" }.into(),
                a.ip.to_string(),
                a.zone.clone(),
                ago(now, a.since_ms),
                a.last_probe
                    .as_ref()
                    .map_or_else(|| "-".into(), |p| describe_probe(now, p)),
                a.last_error
                    .as_ref()
                    .map_or_else(|| "-".into(), |p| format!("{} ({} ago)", p.detail, ago(now, p.at_ms))),
            ]
        })
        .collect();
    let header = [
        "ALB ID",
        "Enabled",
        "Status",
        "In DNS",
        "ALB IP",
        "Zone",
        "Since",
        "Last Check",
        "Last Error",
    ];
    let mut out = columns(&header, &rows);
    // Each prober's view, where replicas share theirs: what the verdict (Status) was taken from.
    if albs.iter().any(|a| a.probers.len() > 1) {
        out.push_str("\nprobers (verdict from the fresh views: a majority moves it):\n");
        for a in albs {
            let views: Vec<String> = a.probers.iter().map(|v| describe_view(now, v)).collect();
            out.push_str(&format!("  {}: {}\n", a.id, views.join(", ")));
        }
    }
    let mut clusters: Vec<(&str, FailPolicy)> = albs.iter().map(|a| (a.cluster.as_str(), a.fail_policy)).collect();
    clusters.dedup();
    for (cluster, policy) in clusters {
        let policy = match policy {
            FailPolicy::Open => "fail-open (all enabled ALBs are answered if every one is unhealthy)",
            FailPolicy::Closed => "fail-closed (nothing is answered if every ALB is unhealthy)",
        };
        out.push_str(&format!("\ncluster {cluster}: {policy}"));
    }
    out.push('\n');
    out
}

/// The `mzlb events` table, oldest first.
pub fn events_table(events: &[Event]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let at = jiff::Timestamp::from_millisecond(e.at_ms as i64)
                .map_or_else(|_| e.at_ms.to_string(), |t| t.to_string());
            vec![at, e.alb.clone(), e.from.to_string(), e.to.to_string(), e.cause.clone()]
        })
        .collect();
    columns(&["Time", "ALB", "From", "To", "Cause"], &rows)
}

fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (cell, w) in cells.zip(&widths) {
            out.push_str(&format!("{cell:<w$}   "));
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ago(now: u64, at_ms: u64) -> String {
    format!("{:.1}s", now.saturating_sub(at_ms) as f64 / 1000.0)
}

fn describe_view(now: u64, v: &crate::verdict::View) -> String {
    let mut s = format!("{} {} for {}", v.prober, health_word(v.health), ago(now, v.since_ms));
    if v.health == crate::registry::Health::Unhealthy
        && let Some(e) = &v.last_error
    {
        s.push_str(&format!(" ({e})"));
    }
    if v.own {
        s.push_str(" [this replica]");
    }
    if !v.fresh {
        s.push_str(" [stale: not counted]");
    }
    s
}

fn health_word(h: crate::registry::Health) -> &'static str {
    match h {
        crate::registry::Health::Healthy => "healthy",
        crate::registry::Health::Unhealthy => "unhealthy",
        crate::registry::Health::Pending => "pending",
    }
}

fn describe_probe(now: u64, p: &crate::registry::Probe) -> String {
    format!("{} in {:.1}ms, {} ago", p.detail, p.latency_ms, ago(now, p.at_ms))
}
