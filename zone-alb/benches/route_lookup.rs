//! Route lookup cost against the number of Ingress rules: it should stay flat (hash lookup by
//! host, then a short per-host path list), from 10 to 10 000 rules.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use zone_alb::objects::Objects;
use zone_alb::router::RouteTable;
use zone_alb::source::dir::load_str;

/// `rules` Ingress rules, one host each with three paths, all to one Service.
fn table(rules: usize) -> RouteTable {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {ports: [{port: 80}]}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: app-1, labels: {kubernetes.io/service-name: app}}\n\
         addressType: IPv4\nports: [{port: 9080}]\nendpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: many}\nspec:\n  ingressClassName: mzlb\n  rules:\n",
    );
    for i in 0..rules {
        yaml.push_str(&format!(
            "  - host: host{i}.example.test\n    http:\n      paths:\n\
             \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n\
             \x20     - {{path: /api, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n\
             \x20     - {{path: /api/v1/items, pathType: Exact, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
        ));
    }
    let mut objects = Objects::default();
    load_str(&yaml, Path::new("bench.yaml"), &mut objects).expect("generated manifests parse");
    RouteTable::compile(&objects, "mzlb", "z", &Default::default()).expect("generated manifests compile")
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for rules in [10, 100, 1_000, 10_000] {
        let table = table(rules);
        let host = format!("host{}.example.test:8080", rules / 2);
        group.bench_with_input(BenchmarkId::from_parameter(rules), &rules, |b, _| {
            b.iter(|| black_box(table.lookup(black_box(&host), black_box("/api/v1/items/7")).is_some()))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
