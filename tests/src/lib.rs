//! End-to-end tests for mzlb live in `tests/e2e/`: they start the real binaries on loopback
//! addresses and check them with the real `dig` and `curl`.
