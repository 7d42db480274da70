//! cairn-attest: SGX/TDX evidence formats, the DCAP verifier wrapper, MarbleRun package policy and
//! the pure part of the simulated SGX platform.
//!
//! Layer 1: no I/O, no clock, no environment. Time is always passed in.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod oe_impl;
mod policy;
mod quote;
pub mod sim;
mod verify;

pub use policy::{check_binding, check_policy, parse_id_hex, PackagePolicy, PolicyError};
pub use quote::{parse_evidence, FormatError, QuoteFields, SgxQuote, TdxFields, Tee};
pub use verify::{verify, DcapErrorKind, TrustRoot, Verdict, VerifyError};

/// OpenEnclave report envelope (MarbleRun's `/quote` wire format).
pub mod oe {
    pub use crate::oe_impl::{is_wrapped, unwrap, wrap, OE_HEADER_LEN};
}

/// The collateral dcap-qvl verifies against (TCB Info, QE Identity, CRLs, issuer chains).
pub type Collateral = dcap_qvl::QuoteCollateralV3;

/// Which sealing identity a seal key is bound to (mirrors Gramine's `_sgx_mrenclave` / `_sgx_mrsigner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SealKeyKind {
    /// Bound to MRENCLAVE (only the identical enclave can derive it).
    Enclave,
    /// Bound to MRSIGNER + ISVPRODID (every version of the product can derive it).
    Signer,
}
