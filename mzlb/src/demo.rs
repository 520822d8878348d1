//! The built-in demo that `mzlb up` runs with no arguments: cluster `demo` with subdomain
//! `demo.mzlb.test`, three zones on loopback, and an echo app behind an Ingress.
//! `mzlb up --print-manifests` prints it as a starting point for one's own.

/// EndpointSlices carrying this annotation get their endpoints started as `mzlb echo`
/// backends by `mzlb up`, so a manifest directory can bring its own demo app.
pub const UP_ECHO_ANNOTATION: &str = "mzlb.io/up-echo";

pub const MANIFESTS: &str = r#"# The mzlb demo: one cluster, three zones, one app. Every object is a plain Kubernetes
# object; on a cluster the same ones come from the API server.
apiVersion: mzlb.io/v1alpha1
kind: MultiZoneCluster
metadata:
  name: demo
spec:
  subdomain: demo.mzlb.test   # mzlb is authoritative for this name and every name below it
  ttl: 5                      # seconds; bounds how long clients keep a failed zone
  # Probes send Host: albhealth.demo.mzlb.test, the one host an ALB answers itself.
  health: {path: /healthz, intervalMs: 200, timeoutMs: 150, rise: 2, fall: 3}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata:
  name: alb1
spec: {zone: zone-1, ip: 127.0.10.1, port: 8080, tlsPort: 8443, enabled: true}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata:
  name: alb2
spec: {zone: zone-2, ip: 127.0.10.2, port: 8080, tlsPort: 8443, enabled: true}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata:
  name: alb3
spec: {zone: zone-3, ip: 127.0.10.3, port: 8080, tlsPort: 8443, enabled: true}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: mzlb
  annotations:
    ingressclass.kubernetes.io/is-default-class: "true"
spec:
  controller: mzlb.io/zone-alb
---
apiVersion: v1
kind: Service
metadata:
  name: web-svc
  namespace: default
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 9080}
---
# Two replicas per zone. Zone hints make each zone's ALB prefer its own zone's pods, so the
# page tells which zone served you. Loopback addresses are for `mzlb up` only: a real API
# server refuses them ("may not be in the loopback range"), and on a cluster Kubernetes writes
# EndpointSlices itself from the Service's selector, so leave this object out there.
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-svc-demo
  namespace: default
  labels: {kubernetes.io/service-name: web-svc}
  annotations: {mzlb.io/up-echo: "true"}
addressType: IPv4
ports:
- {name: http, port: 9080, protocol: TCP}
endpoints:
- {addresses: [127.0.20.11], conditions: {ready: true}, zone: zone-1, hints: {forZones: [{name: zone-1}]}, targetRef: {kind: Pod, name: web-zone-1-a}}
- {addresses: [127.0.20.12], conditions: {ready: true}, zone: zone-1, hints: {forZones: [{name: zone-1}]}, targetRef: {kind: Pod, name: web-zone-1-b}}
- {addresses: [127.0.20.21], conditions: {ready: true}, zone: zone-2, hints: {forZones: [{name: zone-2}]}, targetRef: {kind: Pod, name: web-zone-2-a}}
- {addresses: [127.0.20.22], conditions: {ready: true}, zone: zone-2, hints: {forZones: [{name: zone-2}]}, targetRef: {kind: Pod, name: web-zone-2-b}}
- {addresses: [127.0.20.31], conditions: {ready: true}, zone: zone-3, hints: {forZones: [{name: zone-3}]}, targetRef: {kind: Pod, name: web-zone-3-a}}
- {addresses: [127.0.20.32], conditions: {ready: true}, zone: zone-3, hints: {forZones: [{name: zone-3}]}, targetRef: {kind: Pod, name: web-zone-3-b}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
spec:
  ingressClassName: mzlb
  rules:
  - host: demo.mzlb.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web-svc
            port: {name: http}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use zone_alb::objects::Objects;

    #[test]
    fn demo_compiles_to_three_albs_and_a_route_per_zone() {
        let mut objects = Objects::default();
        zone_alb::source::dir::load_str(MANIFESTS, Path::new("demo.yaml"), &mut objects).unwrap();
        let (clusters, albs) = crate::registry::configs(&objects).unwrap();
        assert_eq!(clusters[0].subdomain, "demo.mzlb.test");
        assert_eq!(
            albs.iter().map(|a| a.ip.to_string()).collect::<Vec<_>>(),
            ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
        );
        let table = zone_alb::router::RouteTable::compile(&objects, "mzlb", "zone-2", &Default::default()).unwrap();
        let route = table.lookup("demo.mzlb.test:8080", "/").unwrap();
        assert_eq!(
            route.backend.endpoints,
            vec!["127.0.20.21:9080".parse().unwrap(), "127.0.20.22:9080".parse().unwrap()]
        );
    }
}
