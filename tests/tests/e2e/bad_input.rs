//! Broken manifests are refused at start with a message naming the file, object and field.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Proc, bin, curl, serve_cmd, tempdir, write, zone_alb};

const ALB: &str = "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: a1}\nspec: {zone: z1, ip: 127.0.13.1, port: 8080}\n---\n\
apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: c}\nspec: {subdomain: c.test}\n";

const INGRESS_TO_NOWHERE: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  ingressClassName: mzlb\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: missing-svc, port: {number: 80}}}}\n";

/// Runs a command that must fail; returns what it printed.
fn refused(name: &str, cmd: &mut Command) -> String {
    let mut p = Proc::start(name, cmd);
    let (status, output) = p.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{name} started on broken input:\n{output}");
    assert!(!output.contains("panicked"), "{name} panicked:\n{output}");
    output
}

fn serve(dir: &std::path::Path, state: &std::path::Path) -> Command {
    serve_cmd("127.0.13.53:0", "127.0.13.53:0", dir, state)
}

#[test]
fn unparsable_manifest_names_the_file() {
    let dir = tempdir();
    let state = tempdir();
    write(dir.path(), "alb.yaml", ALB);
    let broken = write(
        dir.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: [oops\n",
    );
    let output = refused("mzlb serve", &mut serve(dir.path(), state.path()));
    assert!(
        output.contains(&format!("{} (document 1): not valid YAML", broken.display())),
        "{output}"
    );

    write(
        dir.path(),
        "broken.yaml",
        "apiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: a2}\nspec: {zone: z2, ip: 300.1.1.1}\n",
    );
    let output = refused("mzlb serve", &mut serve(dir.path(), state.path()));
    assert!(
        output.contains("broken.yaml (document 1): ZoneALB a2: field `spec.ip`"),
        "{output}"
    );
}

#[test]
fn ingress_naming_a_missing_service_is_refused_by_serve_and_zone_alb() {
    let dir = tempdir();
    let state = tempdir();
    write(dir.path(), "alb.yaml", ALB);
    let ingress = write(dir.path(), "web.yaml", INGRESS_TO_NOWHERE);
    let expected = [
        format!("Ingress default/web in {} (document 1)", ingress.display()),
        "spec.rules[0].http.paths[0].backend.service.name".to_owned(),
        "Service default/missing-svc not found".to_owned(),
    ];
    let serve_output = refused("mzlb serve", &mut serve(dir.path(), state.path()));
    let alb_output = refused(
        "zone-alb",
        Command::new(bin("zone-alb"))
            .args(["--alb-id", "a1", "--listen", "127.0.13.1:0", "--manifests"])
            .arg(dir.path()),
    );
    for output in [serve_output, alb_output] {
        for part in &expected {
            assert!(output.contains(part.as_str()), "missing {part:?} in:\n{output}");
        }
    }
}

#[test]
fn unknown_alb_id_lists_the_known_ones() {
    let dir = tempdir();
    write(dir.path(), "alb.yaml", ALB);
    let output = refused(
        "zone-alb",
        Command::new(bin("zone-alb"))
            .args(["--alb-id", "a9", "--manifests"])
            .arg(dir.path()),
    );
    assert!(
        output.contains("no ZoneALB of that name") && output.contains("found: a1"),
        "{output}"
    );
}

#[test]
fn dns_thread_count_out_of_range_is_refused() {
    let dir = tempdir();
    let state = tempdir();
    write(dir.path(), "alb.yaml", ALB);
    let output = refused(
        "mzlb serve --dns-threads 0",
        serve(dir.path(), state.path()).args(["--dns-threads", "0"]),
    );
    assert!(output.contains("--dns-threads"), "{output}");
}

#[test]
fn zone_alb_worker_count_out_of_range_is_refused() {
    let dir = tempdir();
    write(dir.path(), "alb.yaml", ALB);
    let output = refused(
        "zone-alb --workers 0",
        Command::new(bin("zone-alb"))
            .args(["--alb-id", "a1", "--workers", "0", "--manifests"])
            .arg(dir.path()),
    );
    assert!(output.contains("--workers") && output.contains('0'), "{output}");
}

/// Each worker listens on its own `SO_REUSEPORT` socket; a second ALB on the same address must
/// still be refused, not join in and take a share of the connections.
#[test]
fn a_second_zone_alb_on_a_taken_address_is_refused() {
    let dir = tempdir();
    write(dir.path(), "alb.yaml", &ALB.replace("name: a1", "name: a"));
    let listen = ["--listen", "127.0.13.2:8080", "--workers", "2"];
    let mut first = zone_alb(dir.path(), &listen, "http://127.0.13.2:8080/healthz");
    let output = refused(
        "second zone-alb",
        Command::new(bin("zone-alb"))
            .args(["--alb-id", "a"])
            .args(listen)
            .arg("--manifests")
            .arg(dir.path()),
    );
    assert!(
        output.contains("cannot listen on 127.0.13.2:8080") && output.contains("in use"),
        "{output}"
    );
    assert!(first.is_running(), "the first ALB keeps running");
    assert_eq!(
        curl(&["-H", "Host: albhealth.c.test", "http://127.0.13.2:8080/"]).0,
        200
    );
}

/// `zone-alb --check` and `mzlb check` list every finding and fail on what would be refused:
/// a security annotation mzlb does not enforce is an error (its routes would answer 503), an
/// unknown one a warning.
#[test]
fn check_lists_findings_and_fails_on_unenforced_annotations() {
    let dir = tempdir();
    write(dir.path(), "alb.yaml", ALB);
    write(
        dir.path(),
        "svc.yaml",
        &crate::harness::service("app", &["127.0.13.11"], 9080),
    );
    let guarded = write(
        dir.path(),
        "guarded.yaml",
        &crate::ingress::ingress(
            "guarded",
            "h.test",
            &[("auth-tls-verify-client", "on")],
            "/admin",
            "Prefix",
        ),
    );
    write(
        dir.path(),
        "open.yaml",
        &crate::ingress::ingress("open", "h.test", &[("proxy-buffering", "off")], "/", "Prefix"),
    );
    let zone_alb_check = || {
        let mut cmd = Command::new(bin("zone-alb"));
        cmd.args(["--check", "--manifests"]).arg(dir.path());
        cmd
    };
    let mzlb_check = || {
        let mut cmd = Command::new(bin("mzlb"));
        cmd.args(["check", "--manifests"]).arg(dir.path());
        cmd
    };
    for output in [
        refused("zone-alb --check", &mut zone_alb_check()),
        refused("mzlb check", &mut mzlb_check()),
    ] {
        assert!(
            output.contains("error: UnsupportedAnnotation: Ingress default/guarded")
                && output.contains("nginx.ingress.kubernetes.io/auth-tls-verify-client"),
            "{output}"
        );
        assert!(
            output.contains("warning: IgnoredAnnotation: Ingress default/open")
                && output.contains("nginx.ingress.kubernetes.io/proxy-buffering"),
            "{output}"
        );
        assert!(output.contains("1 error(s), 1 warning(s)"), "{output}");
    }
    // Without the unenforced annotation: warnings only, success.
    std::fs::remove_file(guarded).unwrap();
    for (name, mut cmd) in [("zone-alb --check", zone_alb_check()), ("mzlb check", mzlb_check())] {
        let mut p = Proc::start(name, &mut cmd);
        let (status, output) = p.wait_exit(Duration::from_secs(20));
        assert!(status.success(), "{name}:\n{output}");
        assert!(output.contains("0 error(s), 1 warning(s)"), "{output}");
    }
}
