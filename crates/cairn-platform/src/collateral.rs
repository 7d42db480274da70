//! Collateral sources: the trait and the file source (the PCCS/PCS client is in `pccs`).

use std::path::PathBuf;

use crate::{fsutil, Collateral, PlatformError};

/// Supplies the collateral needed to verify a quote.
pub trait CollateralSource: Send + Sync {
    /// Collateral for `raw_quote` (its FMSPC / CA decide which TCB Info and CRL apply).
    fn collateral_for(&self, raw_quote: &[u8]) -> Result<Collateral, PlatformError>;
}

/// Collateral from a JSON file in dcap-qvl's `QuoteCollateralV3` form (read on every call).
#[derive(Debug, Clone)]
pub struct FileCollateral {
    path: PathBuf,
}

impl FileCollateral {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileCollateral { path: path.into() }
    }

    /// Reads and parses the file.
    pub fn load(&self) -> Result<Collateral, PlatformError> {
        let bytes = fsutil::read(&self.path)?;
        serde_json::from_slice(&bytes).map_err(|e| PlatformError::Corrupt {
            path: self.path.clone(),
            reason: format!("not QuoteCollateralV3 JSON: {e}"),
        })
    }
}

impl CollateralSource for FileCollateral {
    fn collateral_for(&self, _raw_quote: &[u8]) -> Result<Collateral, PlatformError> {
        self.load()
    }
}
