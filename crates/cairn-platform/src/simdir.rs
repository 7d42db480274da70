//! A simulated SGX platform persisted in a directory.
//!
//! Layout (files 0600, directory 0700):
//! * `platform.json`: the [`SimPlatform`] with its private keys (written last: its presence marks a
//!   complete directory);
//! * `root.pem`: the simulation root CA (the `--simulation-root` / `--trust-root` file);
//! * `collateral.json`: current collateral in dcap-qvl's `QuoteCollateralV3` JSON form, re-signed
//!   when older than a day.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cairn_attest::sim::{measure, EnclaveIdentity, SimPlatform, SimSettings};
use cairn_attest::{Collateral, SealKeyKind, TrustRoot};
use cairn_crypto::SecretKey32;
use time::{Duration, OffsetDateTime};

use crate::{fsutil, CollateralSource, Issuer, PlatformError};

/// File holding the platform's keys.
pub const PLATFORM_FILE: &str = "platform.json";
/// File holding the simulation root certificate (PEM).
pub const ROOT_FILE: &str = "root.pem";
/// File holding the current collateral.
pub const COLLATERAL_FILE: &str = "collateral.json";

const RESIGN_AFTER: Duration = Duration::days(1);

/// A simulated platform directory.
#[derive(Debug)]
pub struct SimPlatformDir {
    dir: PathBuf,
    platform: Arc<SimPlatform>,
    collateral: Mutex<(Collateral, OffsetDateTime)>,
}

impl SimPlatformDir {
    /// Opens `dir`, or creates a new platform there when it is missing or empty (system clock).
    pub fn open_or_create(dir: &Path) -> Result<Self, PlatformError> {
        Self::open_or_create_at(dir, OffsetDateTime::now_utc())
    }

    /// [`SimPlatformDir::open_or_create`] at a given time; new platforms get default settings.
    pub fn open_or_create_at(dir: &Path, now: OffsetDateTime) -> Result<Self, PlatformError> {
        Self::open_or_create_with(dir, now, SimSettings::default())
    }

    /// Opens `dir`, or creates it with `settings` (ignored when the platform already exists).
    pub fn open_or_create_with(
        dir: &Path,
        now: OffsetDateTime,
        settings: SimSettings,
    ) -> Result<Self, PlatformError> {
        let pfile = dir.join(PLATFORM_FILE);
        if pfile.exists() {
            return Self::open_at(dir, now);
        }
        if dir.exists() {
            let entries: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| PlatformError::io(dir, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !entries.is_empty() {
                return Err(PlatformError::Incomplete {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "{PLATFORM_FILE} is missing but the directory holds {entries:?}"
                    ),
                });
            }
        }
        fsutil::create_private_dir(dir)?;
        let platform = SimPlatform::generate(now, settings)?;
        let collateral = platform.collateral(now)?;
        fsutil::write_atomic(
            &dir.join(ROOT_FILE),
            root_pem(platform.root_der()).as_bytes(),
        )?;
        write_collateral(dir, &collateral)?;
        let json =
            cairn_crypto::Zeroizing::new(serde_json::to_vec_pretty(&platform).map_err(|e| {
                PlatformError::Corrupt {
                    path: pfile.clone(),
                    reason: e.to_string(),
                }
            })?);
        fsutil::write_atomic(&pfile, &json)?;
        Ok(SimPlatformDir {
            dir: dir.to_path_buf(),
            platform: Arc::new(platform),
            collateral: Mutex::new((collateral, now)),
        })
    }

    /// Opens an existing, complete directory; re-signs its collateral if older than a day.
    pub fn open_at(dir: &Path, now: OffsetDateTime) -> Result<Self, PlatformError> {
        let pfile = dir.join(PLATFORM_FILE);
        let bytes = cairn_crypto::Zeroizing::new(fsutil::read(&pfile)?);
        let platform: SimPlatform =
            serde_json::from_slice(&bytes).map_err(|e| PlatformError::Corrupt {
                path: pfile.clone(),
                reason: e.to_string(),
            })?;
        platform.validate().map_err(|e| PlatformError::Corrupt {
            path: pfile.clone(),
            reason: e.to_string(),
        })?;
        let rfile = dir.join(ROOT_FILE);
        let root = read_existing(dir, &rfile)?;
        if root != root_pem(platform.root_der()).as_bytes() {
            return Err(PlatformError::Corrupt {
                path: rfile,
                reason: format!("does not match the root certificate in {PLATFORM_FILE}"),
            });
        }
        let cfile = dir.join(COLLATERAL_FILE);
        let cbytes = read_existing(dir, &cfile)?;
        let collateral: Collateral =
            serde_json::from_slice(&cbytes).map_err(|e| PlatformError::Corrupt {
                path: cfile.clone(),
                reason: e.to_string(),
            })?;
        let issued = issue_date(&collateral).ok_or_else(|| PlatformError::Corrupt {
            path: cfile.clone(),
            reason: "tcb_info has no parsable issueDate".into(),
        })?;
        let d = SimPlatformDir {
            dir: dir.to_path_buf(),
            platform: Arc::new(platform),
            collateral: Mutex::new((collateral, issued)),
        };
        d.collateral_at(now)?;
        Ok(d)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pure platform.
    pub fn platform(&self) -> &SimPlatform {
        &self.platform
    }

    /// The simulation root certificate (DER).
    pub fn root_der(&self) -> Vec<u8> {
        self.platform.root_der().to_vec()
    }

    /// `TrustRoot::Simulation` for this platform.
    pub fn trust_root(&self) -> TrustRoot {
        TrustRoot::Simulation(self.root_der())
    }

    /// Current collateral (system clock), re-signed and rewritten when older than a day.
    pub fn collateral(&self) -> Result<Collateral, PlatformError> {
        self.collateral_at(OffsetDateTime::now_utc())
    }

    /// Current collateral at `now`; re-signs when it was issued more than a day before `now` (or
    /// after `now`, i.e. the clock moved back).
    pub fn collateral_at(&self, now: OffsetDateTime) -> Result<Collateral, PlatformError> {
        let mut guard = self.collateral.lock().unwrap_or_else(|p| p.into_inner());
        let age = now - guard.1;
        if age > RESIGN_AFTER || age < -Duration::minutes(5) {
            let fresh = self.platform.collateral(now)?;
            write_collateral(&self.dir, &fresh)?;
            tracing::info!(dir = %self.dir.display(), "re-signed simulated collateral");
            *guard = (fresh, now);
        }
        Ok(guard.0.clone())
    }

    /// Opens an existing, complete directory (system clock).
    pub fn open(dir: &Path) -> Result<Self, PlatformError> {
        Self::open_at(dir, OffsetDateTime::now_utc())
    }

    /// Changes the TCB settings, persists them and re-signs the collateral (system clock).
    pub fn set_settings(&mut self, settings: SimSettings) -> Result<(), PlatformError> {
        self.set_settings_at(settings, OffsetDateTime::now_utc())
    }

    /// Changes the TCB settings, persists them and re-signs the collateral at `now`.
    pub fn set_settings_at(
        &mut self,
        settings: SimSettings,
        now: OffsetDateTime,
    ) -> Result<(), PlatformError> {
        let mut p = (*self.platform).clone();
        p.set_settings(settings)?;
        let pfile = self.dir.join(PLATFORM_FILE);
        let json = cairn_crypto::Zeroizing::new(serde_json::to_vec_pretty(&p).map_err(|e| {
            PlatformError::Corrupt {
                path: pfile.clone(),
                reason: e.to_string(),
            }
        })?);
        fsutil::write_atomic(&pfile, &json)?;
        let fresh = p.collateral(now)?;
        write_collateral(&self.dir, &fresh)?;
        self.platform = Arc::new(p);
        *self.collateral.lock().unwrap_or_else(|e| e.into_inner()) = (fresh, now);
        Ok(())
    }

    /// An issuer for a simulated enclave with identity `id`.
    pub fn issuer(&self, id: EnclaveIdentity) -> SimIssuer {
        SimIssuer {
            platform: Arc::clone(&self.platform),
            id,
        }
    }

    /// MRSIGNER of the simulated signer key.
    pub fn signer_id(&self) -> [u8; 32] {
        self.platform.signer_id()
    }

    /// Identity of a simulated enclave running the executable at `path` (MRENCLAVE = SHA-256 of
    /// the file, MRSIGNER = this platform's signer).
    pub fn identity_for_executable(
        &self,
        path: &Path,
        product_id: u16,
        svn: u16,
        debug: bool,
    ) -> Result<EnclaveIdentity, PlatformError> {
        let bytes = fsutil::read(path)?;
        Ok(EnclaveIdentity {
            mr_enclave: measure(&bytes),
            mr_signer: self.signer_id(),
            isv_prod_id: product_id,
            isv_svn: svn,
            debug,
        })
    }
}

impl CollateralSource for SimPlatformDir {
    fn collateral_for(&self, _raw_quote: &[u8]) -> Result<Collateral, PlatformError> {
        self.collateral()
    }
}

/// Issuer backed by a simulated platform.
#[derive(Debug, Clone)]
pub struct SimIssuer {
    platform: Arc<SimPlatform>,
    id: EnclaveIdentity,
}

impl SimIssuer {
    /// The simulated identity.
    pub fn identity(&self) -> &EnclaveIdentity {
        &self.id
    }
}

impl Issuer for SimIssuer {
    fn quote(&self, report_data: &[u8]) -> Result<Vec<u8>, PlatformError> {
        if report_data.len() > 64 {
            return Err(PlatformError::ReportDataTooLong(report_data.len()));
        }
        Ok(self.platform.quote(&self.id, report_data)?)
    }

    fn seal_key(&self, kind: SealKeyKind) -> Result<SecretKey32, PlatformError> {
        Ok(self.platform.seal_key(kind, &self.id))
    }

    fn identity_summary(&self) -> String {
        format!(
            "simulated SGX enclave MRENCLAVE={} MRSIGNER={} ISVPRODID={} ISVSVN={} debug={} (trust root {})",
            hex::encode(self.id.mr_enclave),
            hex::encode(self.id.mr_signer),
            self.id.isv_prod_id,
            self.id.isv_svn,
            self.id.debug,
            TrustRoot::Simulation(self.platform.root_der().to_vec()),
        )
    }
}

fn root_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn write_collateral(dir: &Path, c: &Collateral) -> Result<(), PlatformError> {
    let path = dir.join(COLLATERAL_FILE);
    let json = serde_json::to_vec_pretty(c).map_err(|e| PlatformError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    fsutil::write_atomic(&path, &json)
}

fn read_existing(dir: &Path, path: &Path) -> Result<Vec<u8>, PlatformError> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PlatformError::Incomplete {
            dir: dir.to_path_buf(),
            reason: format!("{} is missing", path.display()),
        }),
        Err(e) => Err(PlatformError::io(path, e)),
    }
}

fn issue_date(c: &Collateral) -> Option<OffsetDateTime> {
    #[derive(serde::Deserialize)]
    struct Dates {
        #[serde(rename = "issueDate")]
        issue_date: String,
    }
    let d: Dates = serde_json::from_str(&c.tcb_info).ok()?;
    OffsetDateTime::parse(
        &d.issue_date,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
}
