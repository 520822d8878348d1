//! One end-to-end test binary: the real `mzlb` and `zone-alb` binaries on loopback, checked
//! with the real `dig` and `curl`.

mod harness;
mod netns;

mod agreement;
mod auth;
mod auth_fakes;
mod bad_input;
mod chart;
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
mod uploads;
mod walkthrough;
