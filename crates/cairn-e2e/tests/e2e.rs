//! End-to-end tests: the real binaries on loopback. Build them first (`scripts/test-all.sh` does).

#[path = "e2e/mainpath.rs"]
mod mainpath;
