//! A change to the manifest directory is served at once: zone-alb reloads on file-system
//! events, not only when it polls. Polling is set to an hour here, so only an event can
//! explain a change served within the deadline.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{curl, echo, poll, single_alb_site, tempdir, write, zone_alb};
use crate::ingress::ingress;

/// Far longer than any test: a poll never explains what these tests see.
const POLL_MS: &str = "3600000";
/// Generous: the target (p99 ≤ 250 ms) is measured by bench/config_latency.sh, not here.
const SERVED_WITHIN: Duration = Duration::from_secs(2);

fn status(alb: &str, host: &str) -> u16 {
    curl(&["-H", &format!("Host: {host}"), &format!("http://{alb}/")]).0
}

/// Waits until `host` answers `code`; how long that took.
fn served(alb: &str, host: &str, code: u16, what: &str, output: impl Fn() -> String) -> Duration {
    let start = Instant::now();
    poll(SERVED_WITHIN, || (status(alb, host) == code).then_some(())).unwrap_or_else(|| {
        panic!(
            "{what}: {host} did not answer {code} within {SERVED_WITHIN:?}:\n{}",
            output()
        )
    });
    start.elapsed()
}

#[test]
fn edits_are_served_at_once_without_polling() {
    const ALB: &str = "127.0.32.1:8080";
    let dir = tempdir();
    let site = single_alb_site("127.0.32.1", None, "127.0.32.11").join("---\n");
    write(dir.path(), "site.yaml", &site);
    write(dir.path(), "one.yaml", &ingress("one", "one.test", &[], "/", "Prefix"));
    let _backend = echo("127.0.32.11:9080", "app");
    let alb = zone_alb(
        dir.path(),
        &["--workers", "1", "--manifests-poll-ms", POLL_MS],
        &format!("http://{ALB}/"),
    );
    let output = || alb.output();
    assert_eq!(status(ALB, "one.test"), 200);
    assert_eq!(status(ALB, "two.test"), 404);

    // A new file.
    write(dir.path(), "two.yaml", &ingress("two", "two.test", &[], "/", "Prefix"));
    served(ALB, "two.test", 200, "new file", output);
    // A file rewritten in place: its host changes.
    write(
        dir.path(),
        "two.yaml",
        &ingress("two", "second.test", &[], "/", "Prefix"),
    );
    served(ALB, "second.test", 200, "rewritten file", output);
    served(ALB, "two.test", 404, "rewritten file", output);
    // A file renamed into place, as editors and `kubectl cp` save.
    write(
        dir.path(),
        ".three.yaml.tmp",
        &ingress("three", "three.test", &[], "/", "Prefix"),
    );
    std::fs::rename(dir.path().join(".three.yaml.tmp"), dir.path().join("three.yaml")).unwrap();
    served(ALB, "three.test", 200, "renamed file", output);
    // A file in a new subdirectory.
    write(
        dir.path(),
        "more/four.yaml",
        &ingress("four", "four.test", &[], "/", "Prefix"),
    );
    served(ALB, "four.test", 200, "new subdirectory", output);
    // A removed file.
    std::fs::remove_file(dir.path().join("one.yaml")).unwrap();
    served(ALB, "one.test", 404, "removed file", output);

    // Half a file is rejected and the last good table keeps serving; the rest of the write
    // is served.
    let five = ingress("five", "five.test", &[], "/", "Prefix");
    let (head, _) = five.split_at(five.find("  rules:").unwrap() + "  rules:\n  - host: five.test\n    http:\n".len());
    write(dir.path(), "five.yaml", &format!("{head}      paths: [{{path: /"));
    poll(SERVED_WITHIN, || {
        output().contains("manifest change rejected").then_some(())
    })
    .unwrap_or_else(|| panic!("half a file not rejected:\n{}", output()));
    assert_eq!(status(ALB, "three.test"), 200, "the last good table keeps serving");
    assert_eq!(status(ALB, "five.test"), 404);
    write(dir.path(), "five.yaml", &five);
    served(ALB, "five.test", 200, "completed file", output);
    assert_eq!(status(ALB, "three.test"), 200);
}

/// Lays out `files` as kubelet mounts a ConfigMap: the data in `..<version>`, a `..data` link
/// to it, and each file a link through `..data`. Later versions are swapped in by renaming a
/// new `..data` link over the old one, so no file zone-alb opens is ever written.
fn configmap_version(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    for (name, text) in files {
        std::fs::write(data.join(name), text).unwrap();
        let link = dir.join(name);
        if !link.exists() {
            symlink(Path::new("..data").join(name), link).unwrap();
        }
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(format!("..{version}"), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[test]
fn a_configmap_update_is_served_at_once() {
    const ALB: &str = "127.0.32.2:8080";
    let dir = tempdir();
    let site = single_alb_site("127.0.32.2", None, "127.0.32.12").join("---\n");
    let v1 = ingress("web", "v1.test", &[], "/", "Prefix");
    configmap_version(dir.path(), "v1", &[("site.yaml", &site), ("web.yaml", &v1)]);
    let _backend = echo("127.0.32.12:9080", "app");
    let alb = zone_alb(
        dir.path(),
        &["--workers", "1", "--manifests-poll-ms", POLL_MS],
        &format!("http://{ALB}/"),
    );
    let output = || alb.output();
    assert_eq!(status(ALB, "v1.test"), 200);

    let v2 = ingress("web", "v2.test", &[], "/", "Prefix");
    configmap_version(dir.path(), "v2", &[("site.yaml", &site), ("web.yaml", &v2)]);
    served(ALB, "v2.test", 200, "ConfigMap update", output);
    assert_eq!(status(ALB, "v1.test"), 404);
}
