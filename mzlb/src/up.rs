//! `mzlb up`: the whole three-zone setup on one machine — echo backends, one `zone-alb`
//! process per zone (so a zone can be killed on its own), and the load balancer itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use zone_alb::objects::Objects;

use crate::demo::{MANIFESTS, UP_ECHO_ANNOTATION};
use crate::registry::Health;
use crate::serve::{self, ServeOptions};
use crate::state::StateDir;

pub struct UpOptions {
    pub manifests: Option<PathBuf>,
    pub state: StateDir,
    pub dns_listen: std::net::SocketAddr,
    pub api_listen: std::net::SocketAddr,
    pub dns_rate_limit: dns::RateLimit,
}

/// Runs everything until Ctrl-C or SIGTERM, then stops what it started.
pub async fn run(opts: UpOptions) -> anyhow::Result<()> {
    opts.state.create()?;
    let manifests = match opts.manifests {
        Some(dir) => dir,
        None => write_demo(&opts.state)?,
    };
    let objects = serve::load(&manifests)?;
    let (_, albs) = crate::registry::configs(&objects)?;
    let cancel = CancellationToken::new();
    start_echo_backends(&objects, &cancel).await?;

    // ALBs first, so the first health round finds them listening.
    let exe = std::env::current_exe().context("cannot find the mzlb executable to start zone ALBs")?;
    let logs = opts.state.file("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut children = BTreeMap::new();
    for alb in &albs {
        let child =
            spawn_alb(&exe, &manifests, &alb.id, &logs).with_context(|| format!("cannot start zone ALB {}", alb.id))?;
        children.insert(alb.id.clone(), child);
    }
    let pids: BTreeMap<String, u32> = children
        .iter()
        .filter_map(|(id, c)| Some((id.clone(), c.id()?)))
        .collect();
    std::fs::write(opts.state.file("processes.json"), serde_json::to_vec_pretty(&pids)?)?;
    wait_listening(albs.iter().map(|a| a.addr()), &mut children).await?;

    let serve_opts = ServeOptions {
        dns_threads: None,
        state: opts.state.clone(),
        dns_listen: opts.dns_listen,
        api_listen: opts.api_listen,
        dns_rate_limit: opts.dns_rate_limit,
    };
    let running = serve::start(objects, serve_opts, cancel.clone()).await?;
    wait_first_round(&running.registry).await;
    print_walkthrough(&running, &manifests, &pids, &opts.state);

    let mut exited = Vec::new();
    let shutdown = zone_alb::telemetry::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                // A zone ALB that dies stays dead: that is how zone failure is shown.
                for (id, child) in &mut children {
                    if exited.contains(id) { continue; }
                    if let Ok(Some(status)) = child.try_wait() {
                        exited.push(id.clone());
                        tracing::warn!(alb = %id, %status, "zone ALB exited; restart it with: {} zone-alb --manifests {} --alb-id {id}", command_name(), manifests.display());
                    }
                }
            }
        }
    }
    eprintln!("stopping…");
    for child in children.values_mut() {
        stop_child(child).await;
    }
    cancel.cancel();
    running.join().await;
    Ok(())
}

fn write_demo(state: &StateDir) -> anyhow::Result<PathBuf> {
    let dir = state.file("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("demo.yaml");
    std::fs::write(&file, MANIFESTS).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(dir)
}

/// Starts `mzlb echo` (in this process) for every endpoint of an EndpointSlice that asks for it.
async fn start_echo_backends(objects: &Objects, cancel: &CancellationToken) -> anyhow::Result<()> {
    for slice in &objects.endpoint_slices {
        let wanted = slice
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(UP_ECHO_ANNOTATION))
            .is_some_and(|v| v == "true");
        if !wanted {
            continue;
        }
        for port in slice.ports.iter().flatten().filter_map(|p| p.port) {
            for endpoint in slice.endpoints.iter().flatten() {
                let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                let name = endpoint
                    .target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .or_else(|| endpoint.hostname.clone())
                    .unwrap_or_else(|| format!("{ip}"));
                let addr =
                    std::net::SocketAddr::new(ip, u16::try_from(port).context("EndpointSlice port out of range")?);
                let listener = crate::echo::bind(addr).await?;
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    crate::echo::serve(listener, name, Duration::ZERO, None, cancel.cancelled_owned()).await
                });
            }
        }
    }
    Ok(())
}

fn spawn_alb(exe: &Path, manifests: &Path, id: &str, logs: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(logs.join(format!("{id}.log")))?;
    let child = Command::new(exe)
        .args(["zone-alb", "--exit-with-parent", "--alb-id", id, "--manifests"])
        .arg(manifests)
        // The child exits when this pipe closes, so even a killed `mzlb up` leaves no ALB behind.
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Waits until every ALB accepts connections, or fails if one exits (its log says why).
async fn wait_listening(
    addrs: impl Iterator<Item = std::net::SocketAddr>,
    children: &mut BTreeMap<String, Child>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in addrs {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            for (id, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    anyhow::bail!(
                        "zone ALB {id} exited ({status}) before listening; see its log in the state directory's logs/"
                    );
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "zone ALB on {addr} is not listening after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Waits (at most a few seconds) until every ALB has been probed once, so the printed
/// commands work the moment they are shown.
async fn wait_first_round(registry: &crate::registry::Registry) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && registry
            .status()
            .iter()
            .any(|s| s.health == Health::Pending || (s.enabled && s.health != Health::Healthy))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_walkthrough(running: &serve::Running, manifests: &Path, pids: &BTreeMap<String, u32>, state: &StateDir) {
    let mzlb = command_name();
    let dns = running.dns_addr;
    let albs = running.registry.status();
    let subdomain = running
        .objects
        .clusters
        .first()
        .map(|c| c.spec.subdomain.clone())
        .unwrap_or_default();
    let host = running
        .objects
        .ingresses
        .iter()
        .flat_map(|i| i.spec.iter().flat_map(|s| s.rules.iter().flatten()))
        .find_map(|r| r.host.clone())
        .unwrap_or_else(|| subdomain.clone());
    println!(
        "mzlb is up: {} zone ALBs for {subdomain} (manifests: {}, state: {})",
        albs.len(),
        manifests.display(),
        state.path().display()
    );
    for alb in &albs {
        let pid = pids.get(&alb.id).map_or_else(|| "-".into(), u32::to_string);
        println!(
            "  {:<8} {:<8} {}:{:<6} pid {pid:<8} {:?}",
            alb.id, alb.zone, alb.ip, alb.port, alb.health
        );
    }
    println!("\nStatus page: {}/", running.api_url);
    if let Ok(Some(api)) = state.read_api() {
        // The fragment never reaches the server: the page moves the token to the tab's
        // session storage and drops it from the address.
        println!(
            "  (with the API token, so its Disable/Enable buttons work: {}/#token={})",
            running.api_url, api.token
        );
    }
    println!("\nTry:");
    println!("  dig @{} -p {} {subdomain}", dns.ip(), dns.port());
    if let Some(alb) = albs.get(1).or(albs.first()) {
        println!(
            "  curl -s --resolve {host}:{port}:{ip} http://{host}:{port}/",
            port = alb.port,
            ip = alb.ip
        );
        if alb.state != crate::registry::AlbState::Disabled {
            println!(
                "  curl -sk --resolve {host}:8443:{ip} https://{host}:8443/     # HTTPS (default certificate)",
                ip = alb.ip
            );
        }
        println!("  {mzlb} albs");
        println!(
            "  {mzlb} alb-configure --alb-id {} --disable     # DNS drops it at once; --enable brings it back",
            alb.id
        );
        if let Some(pid) = pids.get(&alb.id) {
            println!(
                "  kill {pid}     # {}'s process: its IP leaves DNS within a second",
                alb.id
            );
            println!(
                "  {mzlb} zone-alb --manifests {} --alb-id {} &     # and back",
                manifests.display(),
                alb.id
            );
        }
    }
    println!("\nPress Ctrl-C to stop everything.");
}

/// `mzlb` when that is what PATH finds, else the full path of this executable.
fn command_name() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "mzlb".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("mzlb").canonicalize().ok() == exe.canonicalize().ok())
    });
    if on_path {
        "mzlb".into()
    } else {
        exe.display().to_string()
    }
}
