//! The chart's monitoring: the Grafana dashboard and the alerts name only metrics a running
//! `mzlb serve` and `zone-alb` export (checked against a scrape of both), the alerts pass
//! `promtool check rules` (Debian's `prometheus` package), and the objects follow their
//! values toggles.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::chart::{render, root};
use crate::harness::{
    Proc, curl, echo, poll, run, scrape, serve_cmd, service, single_alb_site, tempdir, write, zone_alb,
};

const ALL_ON: [&str; 4] = [
    "monitoring.dashboards.enabled=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
];

fn dashboards() -> Vec<(String, Value)> {
    let dir = root().join("charts/mzlb/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboard in {}", dir.display());
    out
}

/// Every string under a key `key`, anywhere in `v`.
fn strings_under(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression uses: ours all start with `mzlb_` or `zone_alb_`.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("mzlb_") || t.starts_with("zone_alb_"))
        .map(str::to_owned)
        .collect()
}

fn rule_exprs() -> Vec<String> {
    let docs = render(&["monitoring.prometheusRule.enabled=true"]);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let mut exprs = Vec::new();
    strings_under(&rule["spec"], "expr", &mut exprs);
    exprs
}

/// Whether Prometheus text `scrape` exports `name`: as a sample, or as a family whose samples
/// carry it (`_total`, `_bucket`, …) even before the first one is recorded.
fn exported(scrape: &str, name: &str) -> bool {
    scrape.lines().any(|line| {
        if let Some(family) = line.strip_prefix("# TYPE ").and_then(|l| l.split_whitespace().next()) {
            return ["", "_total", "_bucket", "_sum", "_count", "_created"]
                .iter()
                .any(|suffix| format!("{family}{suffix}") == name);
        }
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let mut wanted = BTreeSet::new();
    for (file, dashboard) in dashboards() {
        assert!(dashboard["title"].is_string(), "{file}: a title");
        let mut exprs = Vec::new();
        strings_under(&dashboard, "expr", &mut exprs);
        assert!(exprs.len() >= 10, "{file}: {} queries", exprs.len());
        for expr in &exprs {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{file}: `{expr}` names none of our metrics");
            wanted.extend(names);
        }
    }
    let alerts = rule_exprs();
    assert_eq!(alerts.len(), 4, "{alerts:?}");
    for expr in &alerts {
        wanted.extend(metric_names(expr));
    }

    // One zone ALB with an Ingress, and mzlb serve probing it.
    let dir = tempdir();
    let state = tempdir();
    let mut files = single_alb_site("127.0.103.1", None, "127.0.103.11");
    files.push(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: default}\n\
         spec: {ingressClassName: mzlb, defaultBackend: {service: {name: app, port: {number: 80}}}}\n"
            .into(),
    );
    // And one whose only backend listens nowhere: upstream errors are counted per Ingress,
    // so their family has no series (and no `# TYPE` line) before the first.
    files.push(service("down", &["127.0.103.12"], 9080));
    files.push(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: down, namespace: default}\n\
         spec:\n  ingressClassName: mzlb\n  rules:\n  - host: down.test\n    http: {paths: [{path: /, pathType: Prefix, \
         backend: {service: {name: down, port: {number: 80}}}}]}\n"
            .into(),
    );
    for (i, text) in files.iter().enumerate() {
        write(dir.path(), &format!("{i}.yaml"), text);
    }
    let _backend = echo("127.0.103.11:9080", "app-1");
    let _alb = zone_alb(
        dir.path(),
        &["--admin-listen", "127.0.103.1:10254"],
        "http://127.0.103.1:10254/healthz",
    );
    let serve = Proc::start(
        "mzlb serve",
        &mut serve_cmd("127.0.103.53:5353", "127.0.103.53:0", dir.path(), state.path()),
    );
    let api = poll(Duration::from_secs(20), || {
        let api: Value = serde_json::from_slice(&std::fs::read(state.path().join("api.json")).ok()?).ok()?;
        Some(api["url"].as_str()?.to_owned())
    })
    .unwrap_or_else(|| panic!("mzlb serve did not start:\n{}", serve.output()));
    // A request through the ALB, so its request series have samples too.
    poll(Duration::from_secs(10), || {
        (curl(&["http://127.0.103.1:8080/"]).0 == 200).then_some(())
    })
    .expect("the ALB serves the Ingress");
    let (code, body) = curl(&["-H", "Host: down.test", "http://127.0.103.1:8080/"]);
    assert_eq!(code, 502, "{body}");
    let mzlb = poll(Duration::from_secs(10), || {
        Some(scrape(&format!("{api}/metrics"))).filter(|t| t.contains("mzlb_alb_state{"))
    })
    .expect("mzlb reports ALB states");
    let alb = scrape("http://127.0.103.1:10254/metrics");
    let both = format!("{mzlb}\n{alb}");
    let missing: Vec<&String> = wanted.iter().filter(|name| !exported(&both, name)).collect();
    assert!(
        missing.is_empty(),
        "named in dashboards or alerts but not exported: {missing:?}\nmzlb:\n{mzlb}\nzone-alb:\n{alb}"
    );
    for name in [
        "mzlb_alb_state",
        "mzlb_dns_answered_addresses",
        "zone_alb_config_rejected_total",
    ] {
        assert!(wanted.contains(name), "{name} is used");
    }
}

#[test]
fn alerts_pass_promtool() {
    let docs = render(&["monitoring.prometheusRule.enabled=true"]);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let dir = tempdir();
    // JSON is YAML: the PrometheusRule's spec is a Prometheus rules file as it stands.
    let file = write(dir.path(), "rules.yaml", &rule["spec"].to_string());
    let out = run(Command::new("promtool").arg("check").arg("rules").arg(&file));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check rules (Debian package prometheus):\n{text}"
    );
    assert!(text.contains("4 rules found"), "{text}");
    let names: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "MzlbAlbUnhealthy",
            "MzlbClusterFailingOpen",
            "MzlbDnsAnswerEmpty",
            "ZoneAlbConfigRejected"
        ]
    );
}

#[test]
fn monitoring_objects_follow_their_toggles() {
    let kinds = |docs: &[Value]| -> Vec<String> {
        let mut kinds: Vec<String> = docs
            .iter()
            .filter(|d| {
                matches!(
                    d["kind"].as_str(),
                    Some("PodMonitor" | "ServiceMonitor" | "PrometheusRule")
                ) || d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-dashboards") || n.ends_with("-metrics"))
            })
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        kinds.sort();
        kinds
    };
    assert!(kinds(&render(&[])).is_empty(), "all off by default");
    let docs = render(&ALL_ON);
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap/t-mzlb-dashboards",
            "PodMonitor/t-mzlb-serve",
            "PodMonitor/t-mzlb-zone-alb",
            "PrometheusRule/t-mzlb",
            "Service/t-mzlb-serve-metrics",
            "Service/t-mzlb-zone-alb-metrics",
            "ServiceMonitor/t-mzlb-serve",
            "ServiceMonitor/t-mzlb-zone-alb",
        ]
    );
    // The dashboard ConfigMap carries the sidecar's label and the dashboard file unchanged.
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "t-mzlb-dashboards")
        .unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    for (file, json) in dashboards() {
        let data = cm["data"][&file]
            .as_str()
            .unwrap_or_else(|| panic!("{file} in the ConfigMap"));
        assert_eq!(serde_json::from_str::<Value>(data).unwrap(), json, "{file}");
    }
    // Each monitor's Service selects the pods that expose its port, and the zone ALBs' carry
    // their zone.
    for d in docs.iter().filter(|d| d["kind"] == "ServiceMonitor") {
        let selector = &d["spec"]["selector"]["matchLabels"];
        let service = docs
            .iter()
            .find(|s| {
                s["kind"] == "Service"
                    && selector
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| &s["metadata"]["labels"][k] == v)
            })
            .unwrap_or_else(|| panic!("no Service for {}", d["metadata"]["name"]));
        assert_eq!(service["spec"]["ports"][0]["name"], d["spec"]["endpoints"][0]["port"]);
    }
    let zone_alb = docs
        .iter()
        .find(|d| d["kind"] == "PodMonitor" && d["metadata"]["name"] == "t-mzlb-zone-alb")
        .unwrap();
    assert_eq!(
        zone_alb["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"],
        "zone"
    );
}
