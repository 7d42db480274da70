//! End-to-end tests: the real binaries on loopback. Build them first (`scripts/test-all.sh` does).

#[path = "e2e/mainpath.rs"]
mod mainpath;

#[path = "e2e/crash.rs"]
mod crash;

#[path = "e2e/hostile.rs"]
mod hostile;

#[path = "e2e/recovery.rs"]
mod recovery;

#[path = "e2e/ha.rs"]
mod ha;

/// The throw-away etcd of cairn-store's backend tests, shared by the HA tests.
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../cairn-store/tests/store/etcd_server.rs"]
mod etcd_server;
