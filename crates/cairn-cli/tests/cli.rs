//! Integration tests of the `cairn` binary (one test binary; one module per command group).
//!
//! `admin_cmds` and `quickstart` start the real binaries: build them first
//! (`cargo build --workspace --bins`, which `scripts/test-all.sh` does).
#![allow(clippy::unwrap_used)]

#[path = "cli/admin_cmds.rs"]
mod admin_cmds;
#[path = "cli/attest_cli.rs"]
mod attest_cli;
#[path = "cli/client_cmds.rs"]
mod client_cmds;
#[path = "cli/manifest_offline.rs"]
mod manifest_offline;
#[path = "cli/quickstart.rs"]
mod quickstart;
