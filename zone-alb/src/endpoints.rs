//! EndpointSlice semantics: which addresses of a Service port may receive traffic.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An endpoint is ready unless it says otherwise: `ready == nil` counts as ready (the
/// EndpointSlice API: "unknown state should be interpreted as ready").
pub fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

/// Ready addresses for the Service port named `port_name` (`None` or `""` for an unnamed port)
/// among `slices` of one Service. When every ready endpoint carries zone hints and some are
/// meant for `zone`, only those are returned (topology-aware routing, as kube-proxy does).
pub fn ready_addresses(slices: &[&EndpointSlice], port_name: Option<&str>, zone: &str) -> Vec<SocketAddr> {
    let wanted = port_name.unwrap_or("");
    let mut all = Vec::new();
    let mut hinted = Vec::new();
    let mut every_endpoint_hinted = true;
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue; // FQDN slices are deprecated and never routed to by kube-proxy either
        }
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == wanted);
        let Some(port) = port.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten().filter(|e| is_ready(e)) {
            // All addresses of an endpoint are the same pod; consumers use the first.
            let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let addr = SocketAddr::new(ip, port);
            all.push(addr);
            match endpoint.hints.as_ref().and_then(|h| h.for_zones.as_ref()) {
                Some(zones) if zones.iter().any(|z| z.name == zone) => hinted.push(addr),
                Some(_) => {}
                None => every_endpoint_hinted = false,
            }
        }
    }
    if every_endpoint_hinted && !hinted.is_empty() {
        hinted
    } else {
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointHints, EndpointPort, ForZone};

    fn endpoint(ip: &str, ready: Option<bool>, zone: Option<&str>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready,
                ..Default::default()
            }),
            hints: zone.map(|z| EndpointHints {
                for_zones: Some(vec![ForZone { name: z.into() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(port_name: Option<&str>, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: Some(endpoints),
            ports: Some(vec![EndpointPort {
                name: port_name.map(Into::into),
                port: Some(9080),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn nil_ready_counts_as_ready_and_false_does_not() {
        let s = slice(
            None,
            vec![
                endpoint("10.0.0.1", None, None),
                endpoint("10.0.0.2", Some(false), None),
                endpoint("10.0.0.3", Some(true), None),
            ],
        );
        let got = ready_addresses(&[&s], None, "zone-1");
        assert_eq!(
            got,
            vec!["10.0.0.1:9080".parse().unwrap(), "10.0.0.3:9080".parse().unwrap()]
        );
    }

    #[test]
    fn port_is_matched_by_name() {
        let s = slice(Some("http"), vec![endpoint("10.0.0.1", None, None)]);
        assert!(ready_addresses(&[&s], None, "z").is_empty());
        assert_eq!(ready_addresses(&[&s], Some("http"), "z").len(), 1);
    }

    #[test]
    fn zone_hints_prefer_own_zone_only_when_all_are_hinted() {
        let s = slice(
            None,
            vec![
                endpoint("10.0.0.1", None, Some("zone-1")),
                endpoint("10.0.0.2", None, Some("zone-2")),
            ],
        );
        assert_eq!(
            ready_addresses(&[&s], None, "zone-2"),
            vec!["10.0.0.2:9080".parse().unwrap()]
        );
        assert_eq!(
            ready_addresses(&[&s], None, "zone-9").len(),
            2,
            "no endpoint for our zone: use all"
        );
        let mixed = slice(
            None,
            vec![
                endpoint("10.0.0.1", None, Some("zone-1")),
                endpoint("10.0.0.2", None, None),
            ],
        );
        assert_eq!(ready_addresses(&[&mixed], None, "zone-1").len(), 2);
    }
}
