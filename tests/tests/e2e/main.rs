//! One end-to-end test binary: the real `mzlb` and `zone-alb` binaries on loopback, checked
//! with the real `dig` and `curl` (and the status page in headless Chromium).

mod browser;
mod harness;
mod netns;

mod agreement;
mod auth;
mod auth_configmaps;
mod auth_fakes;
mod bad_input;
mod buffering;
mod canary;
mod chart;
mod client_certs;
mod cluster_settings;
mod components;
mod cors;
mod custom_errors;
mod dns;
mod failover;
mod gateway;
mod gateway_echo;
mod gateway_status;
mod grpc;
mod hostile;
mod http1;
mod https1;
mod ingress;
mod kubernetes;
mod lease;
mod manifest_watch;
mod monitoring;
mod passthrough;
mod rbac;
mod rebuilds;
mod redirects;
mod snippets;
mod status_page;
mod tls;
mod tls_annotations;
mod tls_edge;
mod uploads;
mod upstream_annotations;
mod walkthrough;
