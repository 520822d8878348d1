//! One end-to-end test binary: the real `mzlb` and `zone-alb` binaries on loopback, checked
//! with the real `dig` and `curl`.

mod harness;
mod netns;

mod agreement;
mod bad_input;
mod chart;
mod cluster_settings;
mod components;
mod dns;
mod failover;
mod hostile;
mod http1;
mod ingress;
mod kubernetes;
mod lease;
mod manifest_watch;
mod rbac;
mod rebuilds;
mod tls;
mod tls_annotations;
mod uploads;
mod walkthrough;
