//! Integration tests of the `cairn` binary (one test binary; one module per command group).
#![allow(clippy::unwrap_used)]

#[path = "cli/manifest_offline.rs"]
mod manifest_offline;
