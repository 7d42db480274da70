//! MarbleRun package policy (PackageProperties.IsCompliant + TCB/advisory rules) and the
//! report-data binding check.

use crate::Verdict;

/// A package's expected identity and TCB rules (the manifest `Packages` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackagePolicy {
    /// Required MRENCLAVE.
    pub unique_id: Option<[u8; 32]>,
    /// Required MRSIGNER.
    pub signer_id: Option<[u8; 32]>,
    /// Required ISVPRODID (equality).
    pub product_id: Option<u64>,
    /// Minimum ISVSVN.
    pub security_version: Option<u64>,
    /// Must equal the enclave's DEBUG bit.
    pub debug: bool,
    /// Accepted TCB statuses besides `UpToDate`; empty means `["SWHardeningNeeded"]`.
    pub accepted_tcb_statuses: Vec<String>,
    /// For `SWHardeningNeeded`: accepted advisory IDs; empty accepts all.
    pub accepted_advisories: Vec<String>,
}

/// Why a verdict does not satisfy a package or binding. Every variant names the field, the
/// expected and the actual value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// An identity field differs.
    #[error("{field} mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// `UniqueID`, `SignerID`, `ProductID` or `Debug`.
        field: &'static str,
        /// Expected value.
        expected: String,
        /// Value in the quote.
        actual: String,
    },
    /// ISVSVN below the package's minimum.
    #[error("SecurityVersion too low: expected >= {minimum}, got {actual}")]
    SecurityVersionTooLow {
        /// Minimum from the package.
        minimum: u64,
        /// ISVSVN in the quote.
        actual: u16,
    },
    /// The package pins neither UniqueID nor the full SignerID+ProductID+SecurityVersion triple.
    #[error("package identity incomplete: set UniqueID, or SignerID together with ProductID and SecurityVersion (missing: {missing})")]
    IncompleteIdentity {
        /// Names of the missing fields.
        missing: String,
    },
    /// TCB status not in the accepted list.
    #[error("TCB status {actual} not accepted: expected UpToDate or one of {accepted:?}")]
    TcbStatusNotAccepted {
        /// Status from the verdict.
        actual: String,
        /// Effective accepted list.
        accepted: Vec<String>,
    },
    /// Advisories outside the accepted list (only for `SWHardeningNeeded`).
    #[error("AcceptedAdvisories: advisories {offending:?} not accepted (accepted {accepted:?}, quote has {actual:?})")]
    AdvisoriesNotAccepted {
        /// Advisory IDs not in the list.
        offending: Vec<String>,
        /// Accepted list.
        accepted: Vec<String>,
        /// All advisory IDs in the verdict.
        actual: Vec<String>,
    },
    /// report_data[0..32] is not SHA-256(cert DER ‖ nonce).
    #[error(
        "report data binding mismatch: expected report_data[0..32] = {expected}, got {actual}"
    )]
    BindingMismatch {
        /// SHA-256(cert ‖ nonce) hex.
        expected: String,
        /// report_data[0..32] hex.
        actual: String,
    },
    /// A hex identity string is not 32 bytes of hex.
    #[error("{field}: {value:?} is not 64 hex characters")]
    InvalidHex {
        /// Field name.
        field: &'static str,
        /// The value given.
        value: String,
    },
}

/// Decodes a 64-character hex measurement (either case) for the named field.
pub fn parse_id_hex(field: &'static str, value: &str) -> Result<[u8; 32], PolicyError> {
    let bad = || PolicyError::InvalidHex {
        field,
        value: value.to_string(),
    };
    let bytes = hex::decode(value.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

const DEFAULT_ACCEPTED: &str = "SWHardeningNeeded";
const SW_HARDENING: &str = "SWHardeningNeeded";
const UP_TO_DATE: &str = "UpToDate";

/// Checks a verified quote against a package.
///
/// Invariant: returns Ok only if every pinned identity field matches, Debug equals the enclave's
/// bit exactly, and the TCB status/advisories are accepted under MarbleRun's rules.
pub fn check_policy(v: &Verdict, p: &PackagePolicy) -> Result<(), PolicyError> {
    if p.unique_id.is_none() {
        let mut missing = Vec::new();
        if p.signer_id.is_none() {
            missing.push("SignerID");
        }
        if p.product_id.is_none() {
            missing.push("ProductID");
        }
        if p.security_version.is_none() {
            missing.push("SecurityVersion");
        }
        if !missing.is_empty() {
            return Err(PolicyError::IncompleteIdentity {
                missing: missing.join(", "),
            });
        }
    }
    if let Some(u) = &p.unique_id {
        if !cairn_crypto::ct_eq(u, &v.mr_enclave) {
            return Err(mismatch(
                "UniqueID",
                hex::encode(u),
                hex::encode(v.mr_enclave),
            ));
        }
    }
    if let Some(s) = &p.signer_id {
        if !cairn_crypto::ct_eq(s, &v.mr_signer) {
            return Err(mismatch(
                "SignerID",
                hex::encode(s),
                hex::encode(v.mr_signer),
            ));
        }
    }
    if let Some(pid) = p.product_id {
        if pid != u64::from(v.isv_prod_id) {
            return Err(mismatch(
                "ProductID",
                pid.to_string(),
                v.isv_prod_id.to_string(),
            ));
        }
    }
    if let Some(min) = p.security_version {
        if u64::from(v.isv_svn) < min {
            return Err(PolicyError::SecurityVersionTooLow {
                minimum: min,
                actual: v.isv_svn,
            });
        }
    }
    if p.debug != v.debug {
        return Err(mismatch("Debug", p.debug.to_string(), v.debug.to_string()));
    }
    check_tcb(&v.tcb_status, &v.advisory_ids, p)
}

fn check_tcb(status: &str, advisories: &[String], p: &PackagePolicy) -> Result<(), PolicyError> {
    if status.eq_ignore_ascii_case(UP_TO_DATE) {
        return Ok(());
    }
    let accepted: Vec<String> = if p.accepted_tcb_statuses.is_empty() {
        vec![DEFAULT_ACCEPTED.to_string()]
    } else {
        p.accepted_tcb_statuses.clone()
    };
    if !accepted.iter().any(|a| a.eq_ignore_ascii_case(status)) {
        return Err(PolicyError::TcbStatusNotAccepted {
            actual: status.to_string(),
            accepted,
        });
    }
    if status.eq_ignore_ascii_case(SW_HARDENING) && !p.accepted_advisories.is_empty() {
        let offending: Vec<String> = advisories
            .iter()
            .filter(|a| {
                !p.accepted_advisories
                    .iter()
                    .any(|ok| ok.eq_ignore_ascii_case(a))
            })
            .cloned()
            .collect();
        if !offending.is_empty() {
            return Err(PolicyError::AdvisoriesNotAccepted {
                offending,
                accepted: p.accepted_advisories.clone(),
                actual: advisories.to_vec(),
            });
        }
    }
    Ok(())
}

/// Checks `report_data[0..32] == SHA-256(cert_der ‖ nonce)` (MarbleRun's quote binding).
pub fn check_binding(v: &Verdict, cert_der: &[u8], nonce: &[u8]) -> Result<(), PolicyError> {
    // Invariant: Ok only if the verified quote commits to exactly this certificate and nonce.
    let expected = cairn_crypto::sha256_concat(&[cert_der, nonce]);
    if !cairn_crypto::ct_eq(&expected, &v.report_data[..32]) {
        return Err(PolicyError::BindingMismatch {
            expected: hex::encode(expected),
            actual: hex::encode(&v.report_data[..32]),
        });
    }
    Ok(())
}

fn mismatch(field: &'static str, expected: String, actual: String) -> PolicyError {
    PolicyError::Mismatch {
        field,
        expected,
        actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tee;

    fn verdict(status: &str, adv: &[&str]) -> Verdict {
        Verdict {
            trust_root: "intel".into(),
            tee: Tee::Sgx,
            mr_enclave: [0xaa; 32],
            mr_signer: [0xbb; 32],
            isv_prod_id: 7,
            isv_svn: 3,
            debug: false,
            report_data: [0; 64],
            tcb_status: status.into(),
            advisory_ids: adv.iter().map(|s| s.to_string()).collect(),
            tdx: None,
        }
    }

    fn uid_policy() -> PackagePolicy {
        PackagePolicy {
            unique_id: Some([0xaa; 32]),
            ..Default::default()
        }
    }

    #[test]
    fn incomplete_identity_is_refused() {
        let p = PackagePolicy {
            signer_id: Some([0xbb; 32]),
            product_id: Some(7),
            ..Default::default()
        };
        assert_eq!(
            check_policy(&verdict("UpToDate", &[]), &p),
            Err(PolicyError::IncompleteIdentity {
                missing: "SecurityVersion".into()
            })
        );
    }

    #[test]
    fn debug_must_be_equal_both_ways() {
        let mut p = uid_policy();
        p.debug = true;
        let e = check_policy(&verdict("UpToDate", &[]), &p).unwrap_err();
        assert_eq!(e.to_string(), "Debug mismatch: expected true, got false");
        let mut v = verdict("UpToDate", &[]);
        v.debug = true;
        p.debug = false;
        assert!(matches!(
            check_policy(&v, &p),
            Err(PolicyError::Mismatch { field: "Debug", .. })
        ));
    }

    #[test]
    fn configuration_needed_requires_explicit_acceptance() {
        let v = verdict("ConfigurationNeeded", &[]);
        assert!(matches!(
            check_policy(&v, &uid_policy()),
            Err(PolicyError::TcbStatusNotAccepted { .. })
        ));
        let mut p = uid_policy();
        p.accepted_tcb_statuses = vec!["configurationneeded".into()];
        assert_eq!(check_policy(&v, &p), Ok(()));
    }

    #[test]
    fn parse_id_hex_accepts_both_cases() {
        assert_eq!(parse_id_hex("UniqueID", &"AA".repeat(32)), Ok([0xaa; 32]));
        assert!(parse_id_hex("UniqueID", "abc").is_err());
    }
}
