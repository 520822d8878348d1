//! TLS at the edge through a running zone-alb, with real `curl` and `openssl s_client`:
//! certificate rotation under load (no failed request, new certificate within a second),
//! session resumption across workers (TLS 1.2 session IDs and TLS 1.3 tickets), the protocol
//! policy (no TLS 1.1; `ssl-protocols` from the cluster), HSTS on HTTPS answers only, an
//! OCSP response stapled from the Secret's `tls.ocsp`, and sessions resumed across two
//! replicas that share session-ticket keys through a Secret.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{echo, poll, run, service, tempdir, write, zone_alb};

/// A CA that issues the server certificates, so clients verify every rotated one.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mzlb test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `host` whose subject CN is `cn`: (cert PEM, key PEM).
    fn issue(&self, host: &str, cn: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A `kubernetes.io/tls` Secret; `ocsp` (DER) goes base64-encoded under `data`.
fn secret(name: &str, (cert, key): &(String, String), ocsp: Option<&[u8]>) -> String {
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let ocsp = ocsp.map_or(String::new(), |der| format!("data:\n  tls.ocsp: {}\n", base64(der)));
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\n{ocsp}stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert),
        indent(key)
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The cluster (with `settings` under `spec.ingressNginx`), one ALB on `ip` (8080, TLS 8443)
/// with `workers`, the `app` Service on `backend`, and an Ingress for `host` using Secret `tls`.
fn site(ip: &str, backend: &str, host: &str, settings: &str) -> String {
    [
        format!(
            "apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {{name: c}}\nspec:\n  subdomain: c.test\n  ingressNginx: {{{settings}}}\n"
        ),
        format!("apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {{name: a}}\nspec: {{zone: z, ip: {ip}, port: 8080, tlsPort: 8443}}\n"),
        service("app", &[backend], 9080),
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web}}\nspec:\n  ingressClassName: mzlb\n  tls:\n  - hosts: ['{host}']\n    secretName: tls\n  rules:\n  - host: '{host}'\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
        ),
    ]
    .join("---\n")
}

/// Replaces `dir/file` in one step, so the watcher never reads half a file.
fn replace(dir: &Path, file: &str, text: &str) {
    let tmp = write(dir, &format!("{file}.tmp"), text);
    std::fs::rename(tmp, dir.join(file)).unwrap();
}

/// `openssl s_client` to `ip:8443` for `host` with `args`, sending one request that closes
/// the connection (so TLS 1.3 tickets, sent after the handshake, are read before it ends).
fn s_client(ip: &str, host: &str, args: &[&str]) -> (bool, String) {
    let connect = format!("{ip}:8443");
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", host, "-ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (Debian's openssl package) is installed");
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let _ = child.stdin.take().unwrap().write_all(request.as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The subject CN of the certificate a new connection to `host` is shown, as curl prints it.
fn served_cn(ip: &str, host: &str, ca: &Path) -> Option<String> {
    let resolve = format!("{host}:8443:{ip}");
    let url = format!("https://{host}:8443/");
    let out = run(Command::new("curl")
        .args(["-s", "-v", "-o", "/dev/null", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["--resolve", &resolve, &url]));
    let log = String::from_utf8_lossy(&out.stderr);
    let subject = log.lines().find_map(|l| l.trim().strip_prefix("*  subject: "))?;
    subject.split(['=', ',']).nth(1).map(|s| s.trim().to_owned())
}

#[test]
fn a_rotated_certificate_is_served_within_a_second_and_no_request_fails() {
    const IP: &str = "127.0.105.1";
    const HOST: &str = "rot.test";
    let _app = echo("127.0.105.11:9080", "app");
    let dir = tempdir();
    let ca = Ca::new();
    let ca_file = write(dir.path(), "ca/ca.pem", &ca.pem);
    write(dir.path(), "site.yaml", &site(IP, "127.0.105.11", HOST, ""));
    write(
        dir.path(),
        "secret.yaml",
        &secret("tls", &ca.issue(HOST, "rot-0"), None),
    );
    let alb = zone_alb(dir.path(), &["--workers", "2"], &format!("http://{IP}:8080/healthz"));
    assert_eq!(served_cn(IP, HOST, &ca_file).as_deref(), Some("rot-0"));

    // Two request loops run through the rotations: one over kept-alive connections (curl
    // sends 50 requests on one connection), one opening a new connection per request.
    let stop = Arc::new(AtomicBool::new(false));
    let loop_of = |keep_alive: bool| {
        let (stop, ca_file) = (stop.clone(), ca_file.clone());
        std::thread::spawn(move || {
            let (mut codes, mut connects) = (Vec::new(), 0);
            let resolve = format!("{HOST}:8443:{IP}");
            let url = format!("https://{HOST}:8443/");
            let urls = if keep_alive { 50 } else { 1 };
            while !stop.load(Ordering::Relaxed) {
                // One `-o` per URL: curl applies each to one URL only.
                let out = run(Command::new("curl")
                    .args(["-s", "--max-time", "10", "--cacert"])
                    .arg(&ca_file)
                    .args(["--resolve", &resolve, "-w", "%{http_code} %{num_connects}\n"])
                    .args(std::iter::repeat_n(["-o", "/dev/null", url.as_str()], urls).flatten()));
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let (code, n) = line.split_once(' ').unwrap();
                    codes.push(code.parse::<u16>().unwrap_or(0));
                    connects += n.parse::<u32>().unwrap_or(0);
                }
                if codes.len() % urls != 0 || !out.status.success() {
                    codes.push(0); // curl gave up part-way: a failed request
                }
            }
            (codes, connects)
        })
    };
    let kept_alive = loop_of(true);
    let new_conns = loop_of(false);

    let mut slowest = Duration::ZERO;
    for i in 1..=20 {
        let cn = format!("rot-{i}");
        let changed = Instant::now();
        replace(dir.path(), "secret.yaml", &secret("tls", &ca.issue(HOST, &cn), None));
        poll(Duration::from_secs(5), || {
            (served_cn(IP, HOST, &ca_file).as_deref() == Some(cn.as_str())).then_some(())
        })
        .unwrap_or_else(|| panic!("{cn} not served within 5 s:\n{}", alb.output()));
        slowest = slowest.max(changed.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let (codes, connects) = kept_alive.join().unwrap();
    eprintln!(
        "slowest rotation {slowest:?}; kept-alive: {} requests, {connects} connections",
        codes.len()
    );
    assert!(
        codes.len() >= 50 && codes.iter().all(|&c| c == 200),
        "kept-alive: {codes:?}"
    );
    assert!(
        (connects as usize) < codes.len() / 10,
        "kept-alive requests mostly reused their connection: {connects} connects for {} requests",
        codes.len()
    );
    let (codes, _) = new_conns.join().unwrap();
    assert!(
        codes.len() >= 10 && codes.iter().all(|&c| c == 200),
        "new connections: {codes:?}"
    );
    // The time includes curl's own start-up and the poll's step.
    assert!(slowest < Duration::from_secs(1), "a rotation took {slowest:?}");
}

#[test]
fn sessions_resume_across_workers_and_the_protocol_policy_holds() {
    const IP: &str = "127.0.106.1";
    const HOST: &str = "resume.test";
    let _app = echo("127.0.106.11:9080", "app");
    let dir = tempdir();
    let ca = Ca::new();
    let ca_file = write(dir.path(), "ca/ca.pem", &ca.pem);
    write(dir.path(), "site.yaml", &site(IP, "127.0.106.11", HOST, ""));
    write(
        dir.path(),
        "secret.yaml",
        &secret("tls", &ca.issue(HOST, "resume"), None),
    );
    let alb = zone_alb(dir.path(), &["--workers", "2"], &format!("http://{IP}:8080/healthz"));
    let ca_arg = ca_file.to_str().unwrap();

    // Each later connection comes from another source port, so SO_REUSEPORT spreads them over
    // both workers: with 8 tries, all on the first one's worker is a 1-in-128 chance.
    for version in ["-tls1_2", "-tls1_3"] {
        let session = dir.path().join(format!("session{version}"));
        let session = session.to_str().unwrap();
        let (ok, out) = s_client(IP, HOST, &[version, "-CAfile", ca_arg, "-sess_out", session]);
        assert!(ok && out.contains("New, TLSv1."), "{version}: {out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{version}: {out}");
        for _ in 0..8 {
            let (ok, out) = s_client(IP, HOST, &[version, "-CAfile", ca_arg, "-sess_in", session]);
            assert!(ok && out.contains("Reused, TLSv1."), "{version} not resumed: {out}");
            assert!(out.contains("HTTP/1.1 200"), "{out}");
        }
    }

    // TLS 1.1 is refused (the client's own security level lowered so that it tries).
    let (ok, out) = s_client(IP, HOST, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok && !out.contains("HTTP/1.1 200"), "TLS 1.1 was accepted: {out}");

    // HSTS with ingress-nginx's defaults on HTTPS answers, never on plain HTTP ones.
    let hsts = |url: &str, port: u16| {
        let resolve = format!("{HOST}:{port}:{IP}");
        let out = run(Command::new("curl").args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            ca_arg,
            "--resolve",
            &resolve,
            url,
        ]));
        crate::harness::head_fields(&String::from_utf8_lossy(&out.stdout), "strict-transport-security")
    };
    let https = format!("https://{HOST}:8443/");
    let http = format!("http://{HOST}:8080/");
    assert_eq!(hsts(&https, 8443), ["max-age=31536000; includeSubDomains"]);
    assert_eq!(hsts(&http, 8080), Vec::<String>::new());

    // The cluster narrows the policy to TLS 1.3 and changes HSTS: new connections follow.
    let settings = "ssl-protocols: 'TLSv1.3', hsts-max-age: '60', hsts-preload: 'true'";
    replace(dir.path(), "site.yaml", &site(IP, "127.0.106.11", HOST, settings));
    poll(Duration::from_secs(5), || {
        (!s_client(IP, HOST, &["-tls1_2", "-CAfile", ca_arg]).0).then_some(())
    })
    .unwrap_or_else(|| panic!("TLS 1.2 still accepted:\n{}", alb.output()));
    let (ok, out) = s_client(IP, HOST, &["-tls1_3", "-CAfile", ca_arg]);
    assert!(ok && out.contains("HTTP/1.1 200"), "{out}");
    assert_eq!(hsts(&https, 8443), ["max-age=60; includeSubDomains; preload"]);

    // A value mzlb cannot honour is refused by name; the default (1.2 and 1.3) applies.
    replace(
        dir.path(),
        "site.yaml",
        &site(IP, "127.0.106.11", HOST, "ssl-protocols: 'TLSv1.1 TLSv1.2'"),
    );
    poll(Duration::from_secs(5), || {
        s_client(IP, HOST, &["-tls1_2", "-CAfile", ca_arg]).0.then_some(())
    })
    .unwrap_or_else(|| panic!("TLS 1.2 not back:\n{}", alb.output()));
    assert!(alb.output().contains("TLSv1.1 is not offered"), "{}", alb.output());
}

/// A DER OCSP response saying `good` for `cert_pem`, signed by the CA, made with `openssl ocsp`.
fn ocsp_response(dir: &Path, ca: &Ca, ca_key_pem: &str, cert_pem: &str) -> Vec<u8> {
    let ca_file = write(dir, "ocsp/ca.pem", &ca.pem);
    let ca_key = write(dir, "ocsp/ca.key", ca_key_pem);
    let cert = write(dir, "ocsp/cert.pem", cert_pem);
    let serial = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&cert));
    let serial = String::from_utf8_lossy(&serial.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned();
    // openssl ca's index: status, expiry, revocation, serial, file, subject.
    let index = write(
        dir,
        "ocsp/index.txt",
        &format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=ocsp\n"),
    );
    let req = dir.join("ocsp/req.der");
    let resp = dir.join("ocsp/resp.der");
    let made = run(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&ca_file)
        .arg("-cert")
        .arg(&cert)
        .arg("-reqout")
        .arg(&req));
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made = run(Command::new("openssl")
        .args(["ocsp", "-index"])
        .arg(&index)
        .arg("-rsigner")
        .arg(&ca_file)
        .arg("-rkey")
        .arg(&ca_key)
        .arg("-CA")
        .arg(&ca_file)
        .arg("-reqin")
        .arg(&req)
        .arg("-respout")
        .arg(&resp)
        .args(["-ndays", "1"]));
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::read(resp).unwrap()
}

#[test]
fn an_ocsp_response_from_the_secret_is_stapled() {
    const IP: &str = "127.0.107.1";
    const HOST: &str = "ocsp.test";
    let _app = echo("127.0.107.11:9080", "app");
    let dir = tempdir();
    // A CA whose key we keep, to sign the OCSP response with.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mzlb OCSP CA");
    let ca_pem = params.self_signed(&ca_key).unwrap().pem();
    let ca_key_pem = ca_key.serialize_pem();
    let ca = Ca {
        pem: ca_pem,
        issuer: rcgen::Issuer::new(params, ca_key),
    };
    let leaf = ca.issue(HOST, "ocsp");
    let response = ocsp_response(dir.path(), &ca, &ca_key_pem, &leaf.0);
    write(dir.path(), "site.yaml", &site(IP, "127.0.107.11", HOST, ""));
    write(dir.path(), "secret.yaml", &secret("tls", &leaf, Some(&response)));
    let _alb = zone_alb(dir.path(), &[], &format!("http://{IP}:8080/healthz"));
    let ca_file = dir.path().join("ocsp/ca.pem");
    for version in ["-tls1_2", "-tls1_3"] {
        let (ok, out) = s_client(IP, HOST, &[version, "-status", "-CAfile", ca_file.to_str().unwrap()]);
        assert!(ok, "{out}");
        assert!(
            out.contains("OCSP Response Status: successful") && out.contains("Cert Status: good"),
            "{version}: {out}"
        );
    }
}

/// A Secret of session-ticket keys: `keys` (one byte each) make 80-byte keys, newest first.
fn ticket_secret(keys: &[u8]) -> String {
    let bytes: Vec<u8> = keys
        .iter()
        .flat_map(|&k| (0..80u8).map(move |i| i.wrapping_mul(37) ^ k))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: tickets}}\ntype: mzlb.io/session-ticket-keys\ndata:\n  tls.ticket-keys: {}\n",
        base64(&bytes)
    )
}

/// Two zone-alb processes (two replicas of one zone) on one manifest directory, both told
/// `--session-ticket-secret default/tickets`: before the Secret exists each seals tickets with
/// its own keys (a session resumes only where it was made); once it does, a session made on
/// either resumes on the other, over TLS 1.3 and TLS 1.2 (by ticket); a key removed from the
/// Secret stops resuming its sessions.
#[test]
fn sessions_resume_across_replicas_sharing_ticket_keys() {
    const IPS: [&str; 2] = ["127.0.114.1", "127.0.114.2"];
    const HOST: &str = "tickets.test";
    let _app = echo("127.0.114.11:9080", "app");
    let dir = tempdir();
    let ca = Ca::new();
    let ca_file = write(dir.path(), "ca/ca.pem", &ca.pem);
    write(dir.path(), "site.yaml", &site(IPS[0], "127.0.114.11", HOST, ""));
    write(
        dir.path(),
        "secret.yaml",
        &secret("tls", &ca.issue(HOST, "tickets"), None),
    );
    let flags = ["--workers", "2", "--session-ticket-secret", "default/tickets"];
    let albs: Vec<_> = IPS
        .iter()
        .map(|ip| {
            let (listen, listen_tls) = (format!("{ip}:8080"), format!("{ip}:8443"));
            let mut extra = flags.to_vec();
            extra.extend(["--listen", &listen, "--listen-tls", &listen_tls]);
            zone_alb(dir.path(), &extra, &format!("http://{ip}:8080/healthz"))
        })
        .collect();
    let output = || albs.iter().map(|a| a.output()).collect::<Vec<_>>().join("\n---\n");
    let ca_arg = ca_file.to_str().unwrap();
    let session = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // A new session on `from` saved in `file`; then whether it resumes on `to`.
    let made = |from: &str, version: &str, file: &str| {
        let (ok, out) = s_client(from, HOST, &[version, "-CAfile", ca_arg, "-sess_out", file]);
        assert!(
            ok && out.contains("New, TLSv1.") && out.contains("HTTP/1.1 200"),
            "{version}: {out}"
        );
    };
    let resumes = |to: &str, version: &str, file: &str| {
        let (ok, out) = s_client(to, HOST, &[version, "-CAfile", ca_arg, "-sess_in", file]);
        assert!(ok && out.contains("HTTP/1.1 200"), "{version} on {to}: {out}");
        out.contains("Reused, TLSv1.")
    };

    // No Secret yet: named in the log, and each process's own keys.
    assert!(output().contains("session-ticket keys unusable"), "{}", output());
    for version in ["-tls1_3", "-tls1_2"] {
        let file = session(&format!("own{version}"));
        made(IPS[0], version, &file);
        assert!(
            resumes(IPS[0], version, &file),
            "{version}: not resumed where it was made"
        );
        assert!(
            !resumes(IPS[1], version, &file),
            "{version}: resumed on a replica without shared keys"
        );
    }

    // The Secret appears: both replicas seal and open with its key.
    write(dir.path(), "tickets.yaml", &ticket_secret(&[1]));
    let first = session("first");
    poll(Duration::from_secs(10), || {
        made(IPS[0], "-tls1_3", &first);
        resumes(IPS[1], "-tls1_3", &first).then_some(())
    })
    .unwrap_or_else(|| panic!("a session from one replica never resumed on the other:\n{}", output()));
    for version in ["-tls1_3", "-tls1_2"] {
        for (from, to) in [(IPS[0], IPS[1]), (IPS[1], IPS[0])] {
            let file = session(&format!("shared{version}{from}"));
            made(from, version, &file);
            for _ in 0..3 {
                assert!(resumes(to, version, &file), "{version} from {from} not resumed on {to}");
            }
        }
    }

    // Rotation: a new key in front. Once both replicas seal with it (the key's name, its first
    // byte here, leads the ticket), the old key's sessions still resume on either, and the new
    // key's cross over.
    replace(dir.path(), "tickets.yaml", &ticket_secret(&[2, 1]));
    let rotated = session("rotated");
    poll(Duration::from_secs(10), || {
        let by = |ip: &str| {
            let (ok, out) = s_client(ip, HOST, &["-tls1_3", "-CAfile", ca_arg, "-sess_out", &rotated]);
            assert!(ok && out.contains("TLS session ticket lifetime hint: 43200"), "{out}");
            sealed_by(&out)
        };
        (by(IPS[0]) == Some(2) && by(IPS[1]) == Some(2)).then_some(())
    })
    .unwrap_or_else(|| panic!("the new key never sealed tickets on both:\n{}", output()));
    for ip in IPS {
        assert!(
            resumes(ip, "-tls1_3", &first),
            "the old key stopped opening on {ip} while still listed"
        );
    }
    assert!(
        resumes(IPS[0], "-tls1_3", &rotated),
        "a session of the new key not resumed on the other replica"
    );
    // The old key removed: its sessions stop resuming everywhere; the new key's still do.
    replace(dir.path(), "tickets.yaml", &ticket_secret(&[2]));
    poll(Duration::from_secs(10), || {
        (!resumes(IPS[0], "-tls1_3", &first) && !resumes(IPS[1], "-tls1_3", &first)).then_some(())
    })
    .unwrap_or_else(|| panic!("a removed key still opens its sessions:\n{}", output()));
    assert!(resumes(IPS[0], "-tls1_3", &rotated) && resumes(IPS[1], "-tls1_3", &rotated));
}

/// The first byte of the last session ticket `openssl s_client` printed: the name of the key
/// that sealed it begins with it.
pub(crate) fn sealed_by(out: &str) -> Option<u8> {
    let (_, rest) = out.rsplit_once("TLS session ticket:")?;
    let line = rest.lines().map(str::trim).find(|l| !l.is_empty())?;
    u8::from_str_radix(line.strip_prefix("0000 - ")?.get(..2)?, 16).ok()
}
