//! The cluster-wide settings ingress-nginx keeps in its ConfigMap that change what an
//! Ingress's annotations mean, under ingress-nginx's names (set in the `MultiZoneCluster`
//! spec). Every field's default is ingress-nginx's.

/// Cluster-wide defaults for annotation parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// `proxy-body-size`: the request-body cap when an Ingress sets none (`None`: unlimited).
    pub body_limit: Option<u64>,
    /// `ssl-redirect`: redirect plain HTTP to HTTPS for hosts with TLS.
    pub ssl_redirect: bool,
    /// `limit-req-status-code`: the status of a request refused by a rate limit.
    pub limit_req_status: u16,
    /// `custom-http-errors`: codes intercepted for every Ingress that sets none of its own.
    pub custom_http_errors: Vec<u16>,
    /// `allow-snippet-annotations`: whether snippet annotations may be used at all.
    pub allow_snippets: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            body_limit: Some(1 << 20),
            ssl_redirect: true,
            limit_req_status: 503,
            custom_http_errors: Vec::new(),
            allow_snippets: false,
        }
    }
}
