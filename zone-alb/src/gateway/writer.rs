//! On a cluster: the status of our GatewayClasses, Gateways and HTTPRoutes, written by the one
//! elected replica (the same Lease as Ingress status), and our GatewayClass created when
//! missing. Each status is written only when it differs from what the API server has;
//! conditions of other types and route parents of other controllers are kept as they are.

use std::net::IpAddr;

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::model::{GRPCRoute, Gateway, GatewayClass, GatewayClassSpec, HTTPRoute};
use super::status::{CONTROLLER, Report, conditions_json, merge_conditions};
use crate::objects::Objects;

/// Creates GatewayClass `name` for our controller if there is none. A cluster without the
/// Gateway API CRDs is told about once, in the log.
pub(crate) async fn ensure_class(client: &Client, name: &str) {
    let api: Api<GatewayClass> = Api::all(client.clone());
    match api.get_opt(name).await {
        Ok(Some(class)) if class.spec.controller_name != CONTROLLER => {
            tracing::warn!(class = %name, controller = %class.spec.controller_name, "GatewayClass belongs to another controller; its Gateways are not ours");
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            let mut class = GatewayClass::new(
                name,
                GatewayClassSpec {
                    controller_name: CONTROLLER.into(),
                    description: Some(
                        "mzlb zone ALBs: every Gateway is served on every enabled zone's portable IP".into(),
                    ),
                    parameters_ref: None,
                },
            );
            class.metadata.labels = Some([("app.kubernetes.io/managed-by".to_owned(), "mzlb".to_owned())].into());
            match api.create(&PostParams::default(), &class).await {
                Ok(_) => tracing::info!(class = %name, "created GatewayClass"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(error) => tracing::warn!(class = %name, %error, "could not create GatewayClass"),
            }
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::info!("the Gateway API CRDs are not installed; Gateways are served once they are");
        }
        Err(error) => tracing::warn!(class = %name, %error, "could not read GatewayClass"),
    }
}

/// Writes every status of `report` that differs from the objects' current one.
pub(crate) async fn write(client: &Client, objects: &Objects, ips: &[IpAddr], report: &Report) {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string();
    for class in &report.classes {
        let Some(current) = objects.gateway_classes.iter().find(|c| c.name_any() == class.name) else {
            continue;
        };
        let old = current
            .status
            .as_ref()
            .map(|s| to_values(&s.conditions))
            .unwrap_or_default();
        let conditions = merge_conditions(&class.conditions, class.generation, &now, &old);
        if conditions != old {
            let api: Api<GatewayClass> = Api::all(client.clone());
            patch(
                &api,
                &class.name,
                json!({"status": {"conditions": conditions}}),
                "GatewayClass",
            )
            .await;
        }
    }
    let addresses: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"type": "IPAddress", "value": ip.to_string()}))
        .collect();
    for gw in &report.gateways {
        let Some(current) = objects
            .gateways
            .iter()
            .find(|g| g.namespace().as_deref() == Some(&gw.namespace) && g.name_any() == gw.name)
        else {
            continue;
        };
        let old = serde_json::to_value(current.status.clone().unwrap_or_default()).unwrap_or_default();
        let old_conditions = old["conditions"].as_array().cloned().unwrap_or_default();
        let wanted = json!({
            "addresses": addresses,
            "conditions": merge_conditions(&gw.conditions, gw.generation, &now, &old_conditions),
            "listeners": gw.listeners_json(&now, &old),
        });
        if wanted != old {
            let api: Api<Gateway> = Api::namespaced(client.clone(), &gw.namespace);
            patch(&api, &gw.name, json!({"status": wanted}), "Gateway").await;
        }
    }
    // Routes that no longer name a Gateway of ours: our parents go from their status.
    let reported = |kind: &str, ns: Option<String>, name: String| {
        report
            .routes
            .iter()
            .any(|r| r.kind == kind && Some(&r.namespace) == ns.as_ref() && r.name == name)
    };
    let ours = |parents: &[Value]| parents.iter().any(|p| p["controllerName"] == CONTROLLER);
    let keep = |parents: &[Value]| -> Vec<Value> {
        parents
            .iter()
            .filter(|p| p["controllerName"] != CONTROLLER)
            .cloned()
            .collect()
    };
    for r in &objects.http_routes {
        let parents = r.status.as_ref().map(|s| s.parents.clone()).unwrap_or_default();
        if ours(&parents) && !reported("HTTPRoute", r.namespace(), r.name_any()) {
            let api: Api<HTTPRoute> = Api::namespaced(client.clone(), &r.namespace().unwrap_or_default());
            patch(
                &api,
                &r.name_any(),
                json!({"status": {"parents": keep(&parents)}}),
                "HTTPRoute",
            )
            .await;
        }
    }
    for r in &objects.grpc_routes {
        let parents = r.status.as_ref().map(|s| s.parents.clone()).unwrap_or_default();
        if ours(&parents) && !reported("GRPCRoute", r.namespace(), r.name_any()) {
            let api: Api<GRPCRoute> = Api::namespaced(client.clone(), &r.namespace().unwrap_or_default());
            patch(
                &api,
                &r.name_any(),
                json!({"status": {"parents": keep(&parents)}}),
                "GRPCRoute",
            )
            .await;
        }
    }
    for route in &report.routes {
        let find = |list: &[std::sync::Arc<HTTPRoute>]| {
            list.iter()
                .find(|r| r.namespace().as_deref() == Some(&route.namespace) && r.name_any() == route.name)
                .map(|r| r.status.as_ref().map(|s| s.parents.clone()).unwrap_or_default())
        };
        let old = match route.kind {
            "GRPCRoute" => objects
                .grpc_routes
                .iter()
                .find(|r| r.namespace().as_deref() == Some(&route.namespace) && r.name_any() == route.name)
                .map(|r| r.status.as_ref().map(|s| s.parents.clone()).unwrap_or_default()),
            _ => find(&objects.http_routes),
        };
        let Some(old) = old else { continue };
        // Other controllers' parents stay; ours are replaced by what this table says.
        let mut parents: Vec<Value> = old
            .iter()
            .filter(|p| p["controllerName"] != CONTROLLER)
            .cloned()
            .collect();
        parents.extend(route.parents.iter().map(|p| p.to_json(route.generation, &now, &old)));
        if parents != old {
            let body = json!({"status": {"parents": parents}});
            if route.kind == "GRPCRoute" {
                let api: Api<GRPCRoute> = Api::namespaced(client.clone(), &route.namespace);
                patch(&api, &route.name, body, route.kind).await;
            } else {
                let api: Api<HTTPRoute> = Api::namespaced(client.clone(), &route.namespace);
                patch(&api, &route.name, body, route.kind).await;
            }
        }
    }
}

/// BackendTLSPolicy status: one ancestor per Gateway of ours whose routes use its Services
/// (other controllers' ancestors kept).
pub(crate) async fn write_policies(client: &Client, objects: &Objects, report: &Report) {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string();
    for p in &report.policies {
        let Some(current) = objects
            .backend_tls_policies
            .iter()
            .find(|o| o.namespace().as_deref() == Some(&p.namespace) && o.name_any() == p.name)
        else {
            continue;
        };
        let old = current.status.as_ref().map(|s| s.ancestors.clone()).unwrap_or_default();
        let mut ancestors: Vec<Value> = old
            .iter()
            .filter(|a| a["controllerName"] != CONTROLLER)
            .cloned()
            .collect();
        for (ns, name) in &p.ancestors {
            let reference = json!({"group": super::model::GROUP, "kind": "Gateway", "namespace": ns, "name": name});
            let previous = old
                .iter()
                .find(|a| a["ancestorRef"] == reference && a["controllerName"] == CONTROLLER)
                .and_then(|a| a["conditions"].as_array())
                .cloned()
                .unwrap_or_default();
            ancestors.push(json!({
                "ancestorRef": reference,
                "controllerName": CONTROLLER,
                "conditions": conditions_json(&p.conditions, p.generation, &now, &previous),
            }));
        }
        if ancestors != old {
            let api: Api<super::model::BackendTLSPolicy> = Api::namespaced(client.clone(), &p.namespace);
            patch(
                &api,
                &p.name,
                json!({"status": {"ancestors": ancestors}}),
                "BackendTLSPolicy",
            )
            .await;
        }
    }
}

async fn patch<K>(api: &Api<K>, name: &str, body: Value, kind: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => tracing::debug!(%kind, %name, "status written"),
        Err(error) => tracing::warn!(%kind, %name, %error, "could not write status"),
    }
}

fn to_values(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Vec<Value> {
    conditions.iter().filter_map(|c| serde_json::to_value(c).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::status::Cond;

    #[test]
    fn foreign_conditions_are_kept_and_times_kept_when_unchanged() {
        let old = vec![
            json!({"type": "Accepted", "status": "True", "reason": "Accepted", "message": "Accepted", "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}),
            json!({"type": "example.com/Custom", "status": "True", "reason": "Mine", "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}),
        ];
        let ours = [Cond::yes("Accepted", "Accepted"), Cond::yes("Programmed", "Programmed")];
        let merged = merge_conditions(&ours, Some(1), "2026-12-03T00:00:00Z", &old);
        assert_eq!(merged[0], old[0], "unchanged: written back as it was");
        assert_eq!(merged[1]["type"], "Programmed");
        assert_eq!(merged[1]["lastTransitionTime"], "2026-12-03T00:00:00Z");
        assert_eq!(merged[2], old[1], "another controller's condition stays");
        let bumped = merge_conditions(&ours, Some(2), "2026-12-03T00:00:00Z", &old);
        assert_eq!(bumped[0]["observedGeneration"], 2);
        assert_eq!(
            bumped[0]["lastTransitionTime"], "2026-01-01T00:00:00Z",
            "status unchanged: time kept"
        );
    }
}
