//! Loopback clients and evidence for driving a real Cairn Coordinator process: used by the
//! `cairn-bench` binary and by the end-to-end crash and hostile-input tests.

pub mod blocking;
pub mod client;
pub mod coordinator;
pub mod evidence;
pub mod floor;
pub mod issuance;
pub mod procfs;
pub mod stats;

pub use cairn_api::rpc::{ActivationReq, ActivationResp};
pub use evidence::Evidence;
