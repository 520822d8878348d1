//! Health checking: one task per ALB probes `GET /healthz` with `Host: albhealth.<subdomain>`
//! (the one host an ALB answers itself, so no tenant's path is shadowed), or just connects,
//! over its portable IP, each on its own timer so a slow ALB never delays the others; consecutive
//! success/failure thresholds (rise/fall, [`Hysteresis`]) keep one lost probe from moving DNS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use zone_alb::objects::ProbeMode;

use crate::registry::{AlbConfig, Health, Probe, Registry};

/// Turns single probe results into a stable health state.
#[derive(Clone, Debug)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    run: u32,
    state: Health,
}

impl Hysteresis {
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            run: 0,
            state: Health::Pending,
        }
    }

    /// New thresholds for the runs to come; the state stays (editing the health settings
    /// must not send a healthy ALB back to pending, which would empty the answer).
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    pub fn state(&self) -> Health {
        self.state
    }

    /// Feeds one probe result and returns the resulting state. The first result decides at
    /// once: until then nothing is answered, so waiting for `rise` would only delay start-up.
    pub fn observe(&mut self, ok: bool) -> Health {
        let (threshold, flipped) = match (self.state, ok) {
            (Health::Pending, true) => (1, Health::Healthy),
            (Health::Pending, false) => (1, Health::Unhealthy),
            (Health::Healthy, false) => (self.fall, Health::Unhealthy),
            (Health::Unhealthy, true) => (self.rise, Health::Healthy),
            // A result that confirms the state ends any run towards the other one.
            (Health::Healthy, true) | (Health::Unhealthy, false) => {
                self.run = 0;
                return self.state;
            }
        };
        self.run += 1;
        if self.run >= threshold {
            self.state = flipped;
            self.run = 0;
        }
        self.state
    }
}

/// Keeps one probe task per ALB, following the registry's configuration (ALBs added,
/// removed or re-addressed); every task stops when `cancel` fires.
pub fn spawn_checks(registry: Arc<Registry>, cancel: CancellationToken) {
    // No proxy from the environment: probes must go straight to the portable IP. No pooling:
    // every probe opens a connection, which is what a new client would do.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client with no TLS always builds");
    let mut config = registry.subscribe_config();
    tokio::spawn(async move {
        let mut running: HashMap<String, (AlbConfig, CancellationToken)> = HashMap::new();
        loop {
            let albs = registry.albs();
            running.retain(|id, (old, stop)| {
                // A new address or new probe settings restart the task; enabling does not.
                let keep = albs.iter().any(|a| {
                    &a.id == id && a.addr() == old.addr() && a.health == old.health && a.health_host == old.health_host
                });
                if !keep {
                    stop.cancel();
                }
                keep
            });
            for alb in albs {
                if running.contains_key(&alb.id) {
                    continue;
                }
                let stop = cancel.child_token();
                tokio::spawn(check_loop(alb.clone(), client.clone(), registry.clone(), stop.clone()));
                running.insert(alb.id.clone(), (alb, stop));
            }
            tokio::select! {
                r = config.changed() => if r.is_err() { return },
                () = cancel.cancelled() => return,
            }
        }
    });
}

async fn check_loop(alb: AlbConfig, client: reqwest::Client, registry: Arc<Registry>, cancel: CancellationToken) {
    let spec = &alb.health;
    let url = format!("http://{}{}", alb.addr(), spec.path);
    let interval = Duration::from_millis(spec.interval_ms.max(10));
    let timeout = Duration::from_millis(spec.timeout_ms.max(1));
    loop {
        // Fixed rate, not fixed delay: a probe that times out must not push the next one back,
        // or a hung ALB would take fall × (interval + timeout) to leave DNS.
        let started = tokio::time::Instant::now();
        let probe = match spec.mode {
            ProbeMode::Http => probe_http(&client, &url, &alb.health_host, timeout).await,
            ProbeMode::Tcp => probe_tcp(alb.addr(), timeout).await,
        };
        registry.report(&alb.id, probe);
        // ±10 % jitter keeps the probes of many ALBs from marching in step.
        let next = started + interval.mul_f64(0.9 + 0.2 * random_unit());
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = cancel.cancelled() => return,
        }
    }
}

async fn probe_http(client: &reqwest::Client, url: &str, host: &str, timeout: Duration) -> Probe {
    let start = Instant::now();
    let result = client
        .get(url)
        .header(reqwest::header::HOST, host)
        .timeout(timeout)
        .send()
        .await;
    let latency = start.elapsed();
    match result {
        Ok(resp) if resp.status().is_success() => Probe::new(true, latency, resp.status().to_string()),
        Ok(resp) => Probe::new(false, latency, format!("HTTP {}", resp.status())),
        Err(e) if e.is_timeout() => Probe::new(false, latency, format!("timed out after {timeout:?}")),
        Err(e) if e.is_connect() => Probe::new(false, latency, "connection failed".into()),
        Err(e) => Probe::new(false, latency, e.to_string()),
    }
}

async fn probe_tcp(addr: std::net::SocketAddr, timeout: Duration) -> Probe {
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await;
    let latency = start.elapsed();
    match result {
        Ok(Ok(_)) => Probe::new(true, latency, "connected".into()),
        Ok(Err(e)) => Probe::new(false, latency, format!("connection failed: {e}")),
        Err(_) => Probe::new(false, latency, format!("timed out after {timeout:?}")),
    }
}

fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides_then_rise_and_fall_apply() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(h.observe(true), Health::Healthy);
        assert_eq!(h.observe(false), Health::Healthy);
        assert_eq!(h.observe(false), Health::Healthy);
        assert_eq!(h.observe(false), Health::Unhealthy, "third failure in a row");
        assert_eq!(h.observe(true), Health::Unhealthy);
        assert_eq!(h.observe(true), Health::Healthy, "second success in a row");
    }

    #[test]
    fn an_interrupted_run_starts_over() {
        let mut h = Hysteresis::new(2, 3);
        h.observe(true);
        for ok in [false, false, true, false, false] {
            assert_eq!(h.observe(ok), Health::Healthy, "never three failures in a row");
        }
        let mut h = Hysteresis::new(2, 1);
        assert_eq!(h.observe(false), Health::Unhealthy);
        assert_eq!(h.observe(true), Health::Unhealthy);
        assert_eq!(h.observe(false), Health::Unhealthy);
        assert_eq!(h.observe(true), Health::Unhealthy);
        assert_eq!(h.observe(true), Health::Healthy);
    }
}
