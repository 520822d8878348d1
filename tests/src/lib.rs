//! End-to-end tests for mzlb live in `tests/e2e/`: they start the real binaries on loopback
//! addresses and check them with the real `dig` and `curl`. This library holds what they
//! share that is more than a helper: a fake Kubernetes API server.

pub mod fakeapi;
pub mod schema;
