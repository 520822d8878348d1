//! Test networks made of Linux network namespaces: a hub namespace holding a bridge, and one
//! namespace per host joined to it by a veth pair. Everything lives in namespaces this test
//! creates (nothing in the root namespace), and is deleted on drop.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One isolated test network.
pub struct Net {
    prefix: String,
    hub: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running `ip` (iproute2; .ci/run installs it)");
    assert!(
        out.status.success(),
        "ip {} failed: {} — these tests need root and network namespaces (they do not skip)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Net {
    pub fn new() -> Net {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("mzt{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let hub = format!("{prefix}-hub");
        ip(&["netns", "add", &hub]);
        let net = Net {
            prefix,
            hub,
            hosts: Vec::new(),
        };
        ip(&["-n", &net.hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.hub, "link", "set", "br0", "up"]);
        net
    }

    /// Adds a host namespace named `name` with `addr` (CIDR) on its `eth0`; returns its name.
    pub fn host(&mut self, name: &str, addr: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        let port = format!("p{}", self.hosts.len());
        ip(&[
            "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &self.hub, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Takes a host's link down or up (as a pulled cable: no resets, packets just vanish).
    pub fn link(&self, ns: &str, up: bool) {
        ip(&["-n", ns, "link", "set", "eth0", if up { "up" } else { "down" }]);
    }

    /// Gives the hub's bridge an address (CIDR), so something in the hub namespace (see
    /// [`Net::in_hub`]) is reachable from every host.
    pub fn hub_addr(&self, addr: &str) {
        ip(&["-n", &self.hub, "addr", "add", addr, "dev", "br0"]);
    }

    /// Runs `f` on a thread inside the hub namespace: sockets it creates live there (threads it
    /// starts stay there too).
    pub fn in_hub<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.hub);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            })
            .join()
            .expect("thread in the hub namespace")
        })
    }

    /// Takes away `ns`'s route to `dest` (a blackhole route: connecting fails at once, nothing
    /// leaves the namespace), or gives it back.
    pub fn cut(&self, ns: &str, dest: &str, cut: bool) {
        let route = format!("{dest}/32");
        if cut {
            ip(&["-n", ns, "route", "add", "blackhole", &route]);
        } else {
            ip(&["-n", ns, "route", "del", "blackhole", &route]);
        }
    }

    /// A command to run inside `ns`.
    pub fn exec(ns: &str, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
