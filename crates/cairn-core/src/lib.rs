//! cairn-core: the Coordinator's logic over traits (layer 3).
//!
//! It owns the typed [`State`], the state machine (1 Recovery, 2 AcceptingManifest,
//! 3 AcceptingMarbles), manifest set, quotes and marble activation. It opens no sockets and reads
//! no files, environment or clock: time comes from a [`Clock`], evidence and seal keys from a
//! [`cairn_platform::Issuer`], persistence from a [`cairn_store::Persistence`] and quote
//! verification from a [`QuoteVerifier`].
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod activation;
mod coordinator;
mod error;
mod features;
mod ha;
mod recovery;
mod secrets;
mod secrets_api;
mod state;
mod updates;
pub mod users;

use std::sync::Arc;

pub use activation::{
    ActivationRequest, ActivationResponse, ENV_CERT_CHAIN, ENV_COORDINATOR_ROOT, ENV_PRIVATE_KEY,
    ENV_ROOT_CA,
};
pub use coordinator::{
    CoordinatorCore, CoreConfig, Deps, ManifestInfo, QuoteInfo, SetManifestResult,
};
pub use error::{CoreError, ErrorKind};
pub use features::{
    is_raw_sgx_quote, SignQuoteError, SignedQuote, COUNTER_DISABLED, SIGN_QUOTE_DISABLED,
};
pub use ha::{HaConfig, PeerDirectory, PeerRole, MODE_KEK};
pub use recovery::RecoverOutcome;
pub use secrets_api::{SecretInfo, UserSecretInput};
pub use state::{
    PendingUpdate, State, StoredSecret, PHASE_ACCEPTING_MANIFEST, PHASE_ACCEPTING_MARBLES,
    STATE_FORMAT,
};
pub use updates::{missing_message, PendingInfo, UpdateOutcome};

/// Coordinator states with MarbleRun's numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// 1: the sealed state could not be loaded.
    Recovery,
    /// 2: waiting for the first manifest.
    AcceptingManifest,
    /// 3: manifest set, marbles may activate.
    AcceptingMarbles,
}

impl Phase {
    /// MarbleRun's state code.
    pub fn code(self) -> i32 {
        match self {
            Phase::Recovery => 1,
            Phase::AcceptingManifest => 2,
            Phase::AcceptingMarbles => 3,
        }
    }

    /// MarbleRun's status message for the state.
    pub fn message(self) -> &'static str {
        match self {
            Phase::Recovery => "Coordinator is in recovery mode. Either upload a key to unseal the saved state, or set a new manifest. For more information on how to proceed, consult the documentation.",
            Phase::AcceptingManifest => "Coordinator is ready to accept a manifest.",
            Phase::AcceptingMarbles => {
                "Coordinator is running correctly and ready to accept marbles."
            }
        }
    }
}

/// Source of the current time (the core never reads the clock itself).
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> time::OffsetDateTime;
}

/// Supplies the collateral (TCB Info, QE Identity, CRLs) needed to verify a raw quote.
pub trait CollateralProvider: Send + Sync {
    /// Collateral for `raw_quote` (the quote without an OE header).
    fn collateral_for(&self, raw_quote: &[u8]) -> Result<cairn_attest::Collateral, String>;
}

/// Verifies marble evidence (raw or OE-wrapped) and returns what it established.
pub trait QuoteVerifier: Send + Sync {
    /// Verifies `evidence` at `now_unix`. The error text names the reason.
    fn verify(&self, evidence: &[u8], now_unix: u64) -> Result<cairn_attest::Verdict, CoreError>;
}

/// The DCAP verifier with an explicit trust root and a collateral source.
pub struct DcapVerifier {
    trust_root: cairn_attest::TrustRoot,
    collateral: Option<Arc<dyn CollateralProvider>>,
}

impl DcapVerifier {
    /// A verifier for `trust_root`; `collateral` `None` fails every verification with
    /// "collateral source not configured" (never a fallback to simulation).
    pub fn new(
        trust_root: cairn_attest::TrustRoot,
        collateral: Option<Arc<dyn CollateralProvider>>,
    ) -> Self {
        DcapVerifier {
            trust_root,
            collateral,
        }
    }
}

impl QuoteVerifier for DcapVerifier {
    fn verify(&self, evidence: &[u8], now_unix: u64) -> Result<cairn_attest::Verdict, CoreError> {
        let Some(source) = &self.collateral else {
            return Err(CoreError::Internal(format!(
                "collateral source not configured (trust root {}): cannot verify marble quotes",
                self.trust_root
            )));
        };
        let raw = cairn_attest::oe::unwrap(evidence)
            .map_err(|e| CoreError::PermissionDenied(format!("malformed quote: {e}")))?;
        let collateral = source
            .collateral_for(raw)
            .map_err(|e| CoreError::Internal(format!("fetching collateral: {e}")))?;
        cairn_attest::verify(evidence, &collateral, now_unix, &self.trust_root)
            .map_err(|e| CoreError::PermissionDenied(format!("quote verification failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_codes() {
        assert_eq!(Phase::Recovery.code(), 1);
        assert_eq!(Phase::AcceptingManifest.code(), 2);
        assert_eq!(Phase::AcceptingMarbles.code(), 3);
        assert!(Phase::AcceptingManifest
            .message()
            .contains("accept a manifest"));
    }

    #[test]
    fn no_collateral_is_an_error() {
        let v = DcapVerifier::new(cairn_attest::TrustRoot::IntelProduction, None);
        let e = v.verify(&[0u8; 10], 0).unwrap_err();
        assert!(e.to_string().contains("collateral source not configured"));
    }
}
