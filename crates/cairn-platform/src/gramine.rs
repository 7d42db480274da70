//! Gramine's `/dev/attestation` pseudo-files (attestation.md §3.1).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_attest::{SealKeyKind, SgxQuote};
use cairn_crypto::SecretKey32;

use crate::{fsutil, Issuer, PlatformError};

/// Gramine's default attestation directory.
pub const DEFAULT_GRAMINE_BASE: &str = "/dev/attestation";

/// Issuer for programs running under `gramine-sgx` with `sgx.remote_attestation = "dcap"`.
#[derive(Debug, Clone)]
pub struct GramineIssuer {
    base: PathBuf,
}

impl Default for GramineIssuer {
    fn default() -> Self {
        GramineIssuer::new(DEFAULT_GRAMINE_BASE)
    }
}

impl GramineIssuer {
    /// An issuer using `base` instead of `/dev/attestation` (tests, unusual mounts).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        GramineIssuer { base: base.into() }
    }

    /// The attestation directory.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

impl Issuer for GramineIssuer {
    /// Writes the 64-byte report data in one `write()` (each write replaces it), then opens
    /// `quote`, which makes Gramine generate a fresh quote.
    fn quote(&self, report_data: &[u8]) -> Result<Vec<u8>, PlatformError> {
        if report_data.len() > 64 {
            return Err(PlatformError::ReportDataTooLong(report_data.len()));
        }
        let mut rd = [0u8; 64];
        rd[..report_data.len()].copy_from_slice(report_data);
        let urd = self.base.join("user_report_data");
        let hw = |path: &Path, reason: String| PlatformError::Hardware {
            path: path.to_path_buf(),
            reason,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .open(&urd)
            .map_err(|e| hw(&urd, e.to_string()))?;
        let n = f.write(&rd).map_err(|e| hw(&urd, e.to_string()))?;
        if n != rd.len() {
            return Err(hw(&urd, format!("short write: {n} of 64 bytes")));
        }
        drop(f);
        let qpath = self.base.join("quote");
        let quote = std::fs::read(&qpath).map_err(|e| hw(&qpath, e.to_string()))?;
        if quote.is_empty() {
            return Err(hw(&qpath, "empty quote".into()));
        }
        // Invariant: never hand out a quote that does not carry the report data we asked for.
        let parsed =
            SgxQuote::parse(&quote).map_err(|e| hw(&qpath, format!("unparsable quote: {e}")))?;
        if parsed.report_data != rd {
            return Err(hw(
                &qpath,
                format!(
                    "quote carries report data {} instead of {}",
                    hex::encode(parsed.report_data),
                    hex::encode(rd)
                ),
            ));
        }
        Ok(quote)
    }

    /// Reads Gramine's 16-byte EGETKEY seal key and expands it to 32 bytes with HKDF-SHA256.
    fn seal_key(&self, kind: SealKeyKind) -> Result<SecretKey32, PlatformError> {
        let (name, info): (&str, &[u8]) = match kind {
            SealKeyKind::Enclave => ("_sgx_mrenclave", b"cairn-gramine-seal/mrenclave"),
            SealKeyKind::Signer => ("_sgx_mrsigner", b"cairn-gramine-seal/mrsigner"),
        };
        let path = self.base.join("keys").join(name);
        let raw = fsutil::read(&path).map_err(|e| PlatformError::SealKey {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let raw = cairn_crypto::Zeroizing::new(raw);
        if raw.len() != 16 {
            return Err(PlatformError::SealKey {
                path,
                reason: format!("expected 16 bytes, got {}", raw.len()),
            });
        }
        let okm =
            cairn_crypto::hkdf_sha256(&raw, b"cairn-gramine-seal-v1", info, 32).map_err(|e| {
                PlatformError::SealKey {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
        SecretKey32::from_slice(&okm).map_err(|e| PlatformError::SealKey {
            path,
            reason: e.to_string(),
        })
    }

    fn identity_summary(&self) -> String {
        format!(
            "Gramine SGX enclave (evidence from {})",
            self.base.display()
        )
    }
}
