//! Integration tests of cairn-store. The etcd backend tests start a real `etcd` on loopback and
//! run only with `--features etcd`; without the binary they skip, or fail when
//! `CAIRN_REQUIRE_ETCD=1` (CI).

#![allow(clippy::unwrap_used)]

#[cfg(feature = "etcd")]
mod etcd_backend;
#[cfg(feature = "etcd")]
mod etcd_server;
