//! cairn-platform: the adapters that obtain evidence and seal keys from a TEE runtime (layer 2).
//!
//! * [`SimPlatformDir`] / [`SimIssuer`]: a persisted simulated SGX platform (real-format quotes).
//! * [`GramineIssuer`]: Gramine's `/dev/attestation` files.
//! * [`CollateralSource`]: where verification collateral comes from ([`FileCollateral`], a sim dir,
//!   [`PccsCollateral`]: a PCCS or Intel's PCS over HTTP(S) with an on-disk cache).
//!
//! A failure to get hardware evidence is always an error naming the path; nothing here falls
//! back to simulation.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod collateral;
mod fsutil;
mod gramine;
mod pccs;
mod simdir;

use std::path::PathBuf;

pub use cairn_attest::sim::{EnclaveIdentity, SimSettings};
pub use cairn_attest::{Collateral, SealKeyKind};
use cairn_crypto::SecretKey32;
pub use collateral::{CollateralSource, FileCollateral};
pub use fsutil::write_atomic as write_private_file;
pub use gramine::{GramineIssuer, DEFAULT_GRAMINE_BASE};
pub use pccs::{
    PccsCollateral, UnixClock, DEFAULT_CACHE_MAX_AGE, DEFAULT_PCCS_TIMEOUT, INTEL_PCS_URL,
};
pub use simdir::{SimIssuer, SimPlatformDir, COLLATERAL_FILE, PLATFORM_FILE, ROOT_FILE};

/// A source of quotes and seal keys for the running program (one per TEE runtime).
pub trait Issuer: Send + Sync {
    /// A raw quote whose REPORTDATA is `report_data` (≤ 64 bytes, zero-padded).
    fn quote(&self, report_data: &[u8]) -> Result<Vec<u8>, PlatformError>;
    /// A 32-byte seal key bound to the enclave (MRENCLAVE) or its signer (MRSIGNER+ISVPRODID).
    fn seal_key(&self, kind: SealKeyKind) -> Result<SecretKey32, PlatformError>;
    /// One line describing the identity and source of evidence, for logs.
    fn identity_summary(&self) -> String;
}

/// Errors of the platform adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file exists but its content is unusable.
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A simulated platform directory is half-written or foreign.
    #[error("simulated platform dir {dir} is incomplete: {reason}; remove it to start over")]
    Incomplete {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The hardware runtime did not provide evidence.
    #[error("no hardware quote from {path}: {reason}")]
    Hardware {
        /// The device path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The runtime did not provide a seal key.
    #[error("no seal key from {path}: {reason}")]
    SealKey {
        /// The key path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// report_data longer than 64 bytes.
    #[error("report data is {0} bytes; at most 64 are allowed")]
    ReportDataTooLong(usize),
    /// Collateral could not be fetched from a PCCS/PCS (no usable cached copy either).
    #[error("PCCS {url}: {reason}")]
    Pccs {
        /// The URL that failed (or the configured base URL).
        url: String,
        /// What failed, e.g. "connection refused".
        reason: String,
    },
    /// The quote does not say which collateral it needs (FMSPC, PCK CA, TEE type).
    #[error("cannot select collateral for the quote: {0}")]
    CollateralKey(String),
    /// The simulated platform failed.
    #[error(transparent)]
    Sim(#[from] cairn_attest::sim::SimError),
}

impl PlatformError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PlatformError::Io {
            path: path.into(),
            source,
        }
    }
}
