//! Shared harness: builds the binaries once, runs them as child processes that die with the
//! test, and wraps `dig` and `curl`. Every wait polls with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The workspace's binaries, built once per test run with the profile of this test binary.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        // target/<profile>/deps/e2e-<hash> → target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bins", "-p", "mzlb", "-p", "zone-alb"]);
        // Set for the test binary, it would differ from what the outer build saw, and build
        // scripts that watch it (ring's) would rebuild everything above them on every run.
        cmd.env_remove("CARGO_MANIFEST_DIR");
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the binaries");
        assert!(status.success(), "cargo build of the binaries failed");
        profile_dir
    });
    dir.join(name)
}

/// A child process that is killed when dropped, with its output collected for assertions.
pub struct Proc {
    pub name: String,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Proc {
    pub fn start(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Proc {
            name: name.into(),
            child,
            output,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns whether it exited in time.
    pub fn terminate(&mut self) -> bool {
        signal(self.pid(), "TERM");
        poll(Duration::from_secs(10), || (!self.is_running()).then_some(())).is_some()
    }

    /// Waits for the process to exit by itself; returns its status and output.
    pub fn wait_exit(&mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let status = poll(within, || self.child.try_wait().ok().flatten()).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {within:?}; output:\n{}",
                self.name,
                self.output()
            )
        });
        // Let the reader threads drain the pipes.
        thread::sleep(Duration::from_millis(50));
        (status, self.output())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Calls `f` every 25 ms until it returns `Some`, for at most `within`.
pub fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// What `dig` said.
#[derive(Debug, Clone, PartialEq)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// Answer records' data, sorted (e.g. IP addresses for A queries).
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub raw: String,
}

/// Runs the real `dig` against `server` (ip:port).
pub fn dig(server: std::net::SocketAddr, name: &str, rtype: &str, extra: &[&str]) -> Dig {
    let out = run(Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=1", "+tries=1", name, rtype])
        .args(extra));
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_owned();
    let flags = raw
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|l| l.split(';').next())
        .map(|f| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let section = |title: &str| -> Vec<String> {
        let mut records: Vec<String> = raw
            .lines()
            .skip_while(|l| !l.starts_with(title))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
            .collect();
        records.sort();
        records
    };
    Dig {
        status,
        flags,
        answers: section(";; ANSWER SECTION:"),
        authority: section(";; AUTHORITY SECTION:"),
        raw,
    }
}

/// Runs the real `curl -s` with `args`; returns the HTTP status and body.
pub fn curl(args: &[&str]) -> (u16, String) {
    curl_with(&mut Command::new("curl"), args)
}

/// [`curl`] inside the network namespace `ns`.
pub fn curl_in(ns: &str, args: &[&str]) -> (u16, String) {
    curl_with(&mut crate::netns::Net::exec(ns, Path::new("curl")), args)
}

fn curl_with(cmd: &mut Command, args: &[&str]) -> (u16, String) {
    let out = run(cmd
        .args(["-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
        .args(args));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is it installed? .ci/run installs dnsutils and curl)"))
}

/// Fetches Prometheus text from `url` (which must answer 200).
pub fn scrape(url: &str) -> String {
    let (code, text) = curl(&[url]);
    assert_eq!(code, 200, "GET {url}: {text}");
    text
}

/// The value of the series `name{labels}` in Prometheus text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// Value of `Name: value` in an echo page.
pub fn field<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// Manifests for one cluster `c` with one ZoneALB `a` on `alb_ip:8080` (and `tls_port`), and a
/// Service `app` (port 80) whose one endpoint is `backend_ip:9080`. Ingresses are the caller's.
pub fn single_alb_site(alb_ip: &str, tls_port: Option<u16>, backend_ip: &str) -> Vec<String> {
    let tls = tls_port.map_or(String::new(), |p| format!(", tlsPort: {p}"));
    vec![
        "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\n"
            .to_owned(),
        format!(
            "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: a}}\nspec: {{zone: z, ip: {alb_ip}, port: 8080{tls}}}\n"
        ),
        service("app", &[backend_ip], 9080),
    ]
}

/// A Service `name` (port 80) and its EndpointSlice: every address in `ips`, ready, on `port`.
pub fn service(name: &str, ips: &[&str], port: u16) -> String {
    let endpoints: Vec<String> = ips.iter().map(|ip| format!("{{addresses: [{ip}]}}")).collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{}]\n",
        endpoints.join(", ")
    )
}

/// `mzlb serve` on the manifests in `dir`, DNS on `dns`, control API on `api`, state in `state`.
pub fn serve_cmd(dns: &str, api: &str, dir: &Path, state: &Path) -> Command {
    let mut cmd = Command::new(bin("mzlb"));
    cmd.args(["serve", "--dns-listen", dns, "--api-listen", api, "--manifests"])
        .arg(dir)
        .env("MZLB_STATE_DIR", state);
    cmd
}

/// Starts `mzlb echo` listening on `listen` and answering as `name`.
pub fn echo(listen: &str, name: &str) -> Proc {
    Proc::start(
        "echo",
        Command::new(bin("mzlb")).args(["echo", "--listen", listen, "--name", name]),
    )
}

/// Starts `mzlb echo` named `slow` on `listen`, answering each request after `delay_ms`.
pub fn slow_echo(listen: &str, delay_ms: u64) -> Proc {
    Proc::start(
        "slow echo",
        Command::new(bin("mzlb")).args([
            "echo",
            "--listen",
            listen,
            "--name",
            "slow",
            "--delay-ms",
            &delay_ms.to_string(),
        ]),
    )
}

/// Starts `zone-alb --alb-id a` on the manifests in `dir` with `extra` flags, and waits until
/// `healthz` (a URL) answers 200 to `Host: albhealth.c.test` (the reserved health host of the
/// cluster `c.test` every such test uses; an admin listener ignores the host).
pub fn zone_alb(dir: &Path, extra: &[&str], healthz: &str) -> Proc {
    let alb = Proc::start(
        "zone-alb",
        Command::new(bin("zone-alb"))
            .args(["--alb-id", "a"])
            .args(extra)
            .arg("--manifests")
            .arg(dir),
    );
    poll(Duration::from_secs(20), || {
        (curl(&["-H", "Host: albhealth.c.test", healthz]).0 == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("zone-alb not up:\n{}", alb.output()));
    alb
}

/// A fresh temporary directory that lives as long as the test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

pub fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// A response field's values (case-insensitive name) from curl's `-D -` output, whose head
/// comes first.
pub fn head_fields(out: &str, name: &str) -> Vec<String> {
    let head = out.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}
