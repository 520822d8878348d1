//! What one routing-table rebuild costs on a big cluster: 1,000 Ingresses (one host and
//! Service each) and 5,000 EndpointSlices. On a cluster every change takes a snapshot of the
//! watched objects (a deep copy today: `snapshot`) and compiles a new table (`compile`).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use zone_alb::objects::Objects;
use zone_alb::router::RouteTable;
use zone_alb::source::dir::load_str;

const INGRESSES: usize = 1_000;
const SLICES_PER_SERVICE: usize = 5;

fn objects() -> Objects {
    let mut docs = Vec::new();
    for i in 0..INGRESSES {
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: ns{ns}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n",
            ns = i % 50
        ));
        for s in 0..SLICES_PER_SERVICE {
            docs.push(format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc{i}-{s}, namespace: ns{ns}, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: 8080}}]\n\
                 endpoints: [{{addresses: [10.{a}.{b}.1], conditions: {{ready: true}}}}, {{addresses: [10.{a}.{b}.2], conditions: {{ready: true}}}}]\n",
                ns = i % 50,
                a = i / 250,
                b = (i % 250) * SLICES_PER_SERVICE / 5 + s,
            ));
        }
        docs.push(format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}, namespace: ns{ns}}}\nspec:\n  ingressClassName: mzlb\n  rules:\n\
             \x20 - host: app{i}.example.test\n    http:\n      paths:\n\
             \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n\
             \x20     - {{path: /api, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{name: http}}}}}}}}\n",
            ns = i % 50
        ));
    }
    let mut objects = Objects::default();
    load_str(&docs.join("---\n"), Path::new("bench.yaml"), &mut objects).expect("generated manifests parse");
    assert_eq!(objects.endpoint_slices.len(), INGRESSES * SLICES_PER_SERVICE);
    objects
}

fn rebuild(c: &mut Criterion) {
    let objects = objects();
    let mut group = c.benchmark_group("rebuild_1000_ingresses_5000_slices");
    group.sample_size(20);
    group.bench_function("snapshot", |b| b.iter(|| black_box(objects.clone())));
    group.bench_function("compile", |b| {
        b.iter(|| black_box(RouteTable::compile(&objects, "mzlb", "z", &Default::default()).expect("compiles")))
    });
    group.finish();
}

criterion_group!(benches, rebuild);
criterion_main!(benches);
