//! Why a request was not relayed, and so which status the client gets. Each error knows its
//! side, as pingora's do: the client's mistakes are 4xx, the backend's 502/504, a refusal of
//! our own policy 403/503, and our own failures 500.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::StatusCode;

use super::path::PathError;
use crate::upstream::UpstreamError;

/// Whose fault a failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The request broke a rule (framing, path, limits, allow-lists).
    Client,
    /// The backend failed or broke HTTP.
    Upstream,
    /// Our own configuration refuses the route (a security setting we cannot enforce).
    Policy,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("no route")]
    NoRoute,
    #[error("client address not allowed")]
    Forbidden,
    /// With the status the cluster configured (`limit-req-status-code`, default 503).
    #[error("rate limit exceeded")]
    RateLimited(u16),
    #[error("request body too large")]
    TooLarge,
    #[error("client sent nothing of its body for {:?}", crate::upload::CLIENT_BODY_TIMEOUT)]
    BodyTimeout,
    #[error("bad request target")]
    BadRequest,
    #[error("path: {0}")]
    BadPath(PathError),
    #[error("request target longer than {} bytes", super::MAX_TARGET)]
    TargetTooLong,
    #[error("transfer coding other than chunked")]
    UnsupportedCoding,
    /// CONNECT would make the ALB a tunnel to wherever the client names.
    #[error("CONNECT is not served")]
    Connect,
    /// The route refuses every request (fail closed): its Ingress asks for protection mzlb
    /// does not enforce, or its rule could not be compiled.
    #[error("refused: {0}")]
    Unenforced(Arc<str>),
    #[error("backend {0} has no ready endpoint")]
    NoEndpoint(Arc<str>),
    #[error("upstream {0}: {1}")]
    Upstream(SocketAddr, UpstreamError),
    /// A Gateway API rule whose backend reference cannot be used (not found, not permitted,
    /// not a Service, no backendRefs): 500, as the specification says.
    #[error("route {0} has no usable backend")]
    InvalidBackend(Arc<str>),
    /// HTTPS on a Gateway listener: the Host names another listener than the handshake's SNI.
    #[error("misdirected request")]
    Misdirected,
    /// A Gateway API rule's `timeouts.request` (or `backendRequest`) passed.
    #[error("route {0}: request timeout")]
    RouteTimeout(Arc<str>),
}

impl ProxyError {
    pub(crate) fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute
            | ProxyError::Forbidden
            | ProxyError::RateLimited(_)
            | ProxyError::TooLarge
            | ProxyError::BodyTimeout
            | ProxyError::BadRequest
            | ProxyError::BadPath(_)
            | ProxyError::TargetTooLong
            | ProxyError::UnsupportedCoding
            | ProxyError::Connect
            | ProxyError::Misdirected => Side::Client,
            ProxyError::Unenforced(_) | ProxyError::InvalidBackend(_) => Side::Policy,
            ProxyError::RouteTimeout(_) => Side::Upstream,
            ProxyError::NoEndpoint(_) | ProxyError::Upstream(..) => Side::Upstream,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::RateLimited(code) => StatusCode::from_u16(*code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            ProxyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BadRequest | ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::TargetTooLong => StatusCode::URI_TOO_LONG,
            // nginx: "client sent unknown Transfer-Encoding".
            ProxyError::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Unenforced(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoEndpoint(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream(_, e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(..) => StatusCode::BAD_GATEWAY,
            ProxyError::InvalidBackend(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::RouteTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The connection must close after the answer: what follows on it cannot be trusted to
    /// start a request (a head or body we refused to read).
    pub(crate) fn closes(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest
                | ProxyError::BadPath(_)
                | ProxyError::TargetTooLong
                | ProxyError::UnsupportedCoding
                | ProxyError::Connect
                | ProxyError::TooLarge
                | ProxyError::BodyTimeout
        )
    }

    /// The `x-mzlb-reason` an answer of ours carries, so an operator can tell a refusal of
    /// policy from a backend's own answer; nothing internal (no addresses) is in it.
    pub(crate) fn reason(&self) -> Option<String> {
        match self {
            ProxyError::Unenforced(reason) => Some(reason.to_string()),
            _ => None,
        }
    }
}
