//! The ALB's own health endpoint, probed by mzlb over the zone's portable IP. (Monitors
//! written for IBM Cloud can also send `GET /` with `Host: albhealth.<ingress subdomain>`,
//! answered `healthy` by the proxy; see `RouteTable::is_alb_health_check`.)

use hyper::{Response, StatusCode};

use crate::proxy::{Body, text};

pub const PATH: &str = "/healthz";

/// The ALB only listens once its routing table is loaded, so answering at all means ready.
pub fn respond() -> Response<Body> {
    text(StatusCode::OK, "ok")
}
