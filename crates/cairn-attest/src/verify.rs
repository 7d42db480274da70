//! One verifier for hardware and simulated evidence: dcap-qvl with an explicit trust root.

use std::fmt;

use serde::Serialize;

use crate::quote::{parse_evidence, FormatError, TdxFields, Tee};
use crate::{oe_impl, Collateral};

/// The root certificate evidence must chain to. Simulation is a separate, explicit choice so a
/// simulated quote can never pass as hardware evidence by accident.
#[derive(Clone, PartialEq, Eq)]
pub enum TrustRoot {
    /// Intel SGX Root CA embedded in dcap-qvl.
    IntelProduction,
    /// A simulated platform's root CA certificate (DER).
    Simulation(Vec<u8>),
}

impl fmt::Display for TrustRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustRoot::IntelProduction => f.write_str("intel"),
            TrustRoot::Simulation(der) => {
                write!(f, "simulation:{}", hex::encode(cairn_crypto::sha256(der)))
            }
        }
    }
}

impl fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustRoot({self})")
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `"intel"` or `"simulation:<sha256 hex of root DER>"`.
    pub trust_root: String,
    /// SGX or TDX.
    pub tee: Tee,
    /// MRENCLAVE (TDX: MRTD[0..32], full MRTD in `tdx`).
    #[serde(with = "hex32")]
    pub mr_enclave: [u8; 32],
    /// MRSIGNER (TDX: zero).
    #[serde(with = "hex32")]
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// Debug enclave/TD.
    pub debug: bool,
    /// REPORTDATA (64 bytes).
    #[serde(serialize_with = "hex_ser")]
    pub report_data: [u8; 64],
    /// Merged TCB status (dcap-qvl string, e.g. `SWHardeningNeeded`).
    pub tcb_status: String,
    /// Advisory IDs attached to the matched TCB levels.
    pub advisory_ids: Vec<String>,
    /// TDX registers.
    pub tdx: Option<TdxFields>,
}

/// Coarse classification of a dcap-qvl refusal (the message is kept verbatim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum DcapErrorKind {
    /// The quote bytes could not be decoded.
    QuoteDecode,
    /// Header fields dcap-qvl does not accept (version, vendor, key type).
    UnsupportedQuote,
    /// Certification data other than a PCK chain (type 5).
    UnsupportedCertType,
    /// TCB Info / QE Identity / CRL not yet valid.
    CollateralNotYetValid,
    /// TCB Info / QE Identity / CRL / certificate expired.
    CollateralExpired,
    /// A signature (ISV report, QE report, TCB Info, QE Identity) did not verify.
    BadSignature,
    /// Certificate chain or CRL did not verify against the trust root.
    CertificateChain,
    /// The platform's FMSPC differs from the collateral's.
    FmspcMismatch,
    /// No TCB level matches the platform.
    NoMatchingTcbLevel,
    /// The TCB status is Revoked (never acceptable).
    Revoked,
    /// QE identity policy mismatch.
    QeIdentity,
    /// TDX attribute checks (migration, SEPT_VE_DISABLE, ...).
    Attributes,
    /// Anything else.
    Other,
}

/// Why evidence was not verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The evidence envelope is malformed before dcap-qvl sees it.
    #[error("malformed evidence: {0}")]
    Format(#[from] FormatError),
    /// dcap-qvl refused the quote; `message` is its full error chain.
    #[error("quote rejected (trust root {trust_root}): {message}")]
    Rejected {
        /// Trust root label.
        trust_root: String,
        /// Classification of `message`.
        kind: DcapErrorKind,
        /// dcap-qvl's message, context chain joined with ": ".
        message: String,
    },
}

impl VerifyError {
    /// The dcap-qvl message (or the format error text).
    pub fn message(&self) -> String {
        match self {
            VerifyError::Format(e) => e.to_string(),
            VerifyError::Rejected { message, .. } => message.clone(),
        }
    }
    /// The classification, `None` for format errors.
    pub fn kind(&self) -> Option<DcapErrorKind> {
        match self {
            VerifyError::Format(_) => None,
            VerifyError::Rejected { kind, .. } => Some(*kind),
        }
    }
}

/// Verifies raw or OE-wrapped evidence against `collateral` at `now_unix` with the given root.
///
/// Invariant: a verdict is returned only when dcap-qvl accepted the full chain (root, CRLs, TCB
/// Info, QE Identity, PCK chain, QE report, ISV signature) for `root`; the debug bit is accepted
/// here and must be judged by [`crate::check_policy`].
pub fn verify(
    evidence: &[u8],
    collateral: &Collateral,
    now_unix: u64,
    root: &TrustRoot,
) -> Result<Verdict, VerifyError> {
    let raw = oe_impl::unwrap(evidence)?;
    let verifier = match root {
        TrustRoot::IntelProduction => dcap_qvl::verify::QuoteVerifier::new_prod(),
        TrustRoot::Simulation(der) => dcap_qvl::verify::QuoteVerifier::new(der.clone()),
    }
    .allow_debug(true);
    let report = verifier.verify(raw, collateral, now_unix).map_err(|e| {
        let message = format!("{e:#}");
        VerifyError::Rejected {
            trust_root: root.to_string(),
            kind: classify(&message),
            message,
        }
    })?;
    // The fields come from the bytes dcap-qvl just verified, so parsing cannot disagree with it.
    let fields = parse_evidence(raw)?;
    Ok(Verdict {
        trust_root: root.to_string(),
        tee: fields.tee,
        mr_enclave: fields.mr_enclave,
        mr_signer: fields.mr_signer,
        isv_prod_id: fields.isv_prod_id,
        isv_svn: fields.isv_svn,
        debug: fields.debug,
        report_data: fields.report_data,
        tcb_status: report.status,
        advisory_ids: report.advisory_ids,
        tdx: fields.tdx,
    })
}

fn classify(m: &str) -> DcapErrorKind {
    use DcapErrorKind::*;
    let has = |s: &str| m.contains(s);
    if has("Failed to decode quote") {
        QuoteDecode
    } else if has("Unsupported DCAP PCK cert format") || has("Unsupported cert type") {
        UnsupportedCertType
    } else if has("Unsupported DCAP quote version")
        || has("Unknown QE vendor")
        || has("must have version")
        || has("attestation key type")
        || has("Unsupported TEE type")
    {
        UnsupportedQuote
    } else if has("in the future") || has("not yet valid") || has("NotValidYet") {
        CollateralNotYetValid
    } else if has("expired") || has("Expired") {
        CollateralExpired
    } else if has("Revoked") {
        Revoked
    } else if has("Fmspc mismatch") {
        FmspcMismatch
    } else if has("No matching TCB level") {
        NoMatchingTcbLevel
    } else if has("QE MRSIGNER")
        || has("QE ISVPRODID")
        || has("QE MISCSELECT")
        || has("QE ATTRIBUTES")
        || has("QE report validation")
    {
        QeIdentity
    } else if has("ignature") && !has("certificate chain") && !has("CRL") {
        BadSignature
    } else if has("certificate")
        || has("Certificate")
        || has("CRL")
        || has("Crl")
        || has("root ca")
        || has("issued directly")
    {
        CertificateChain
    } else if has("TD ") || has("SEPT") || has("SERVTD") || has("Debug mode") {
        Attributes
    } else {
        Other
    }
}

mod hex32 {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

fn hex_ser<S: serde::Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_root_labels() {
        assert_eq!(TrustRoot::IntelProduction.to_string(), "intel");
        assert_eq!(
            TrustRoot::Simulation(b"abc".to_vec()).to_string(),
            "simulation:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn classification_of_known_messages() {
        assert_eq!(
            classify("Failed to decode quote: Not enough data to fill buffer"),
            DcapErrorKind::QuoteDecode
        );
        assert_eq!(
            classify("ISV enclave report signature is invalid"),
            DcapErrorKind::BadSignature
        );
        assert_eq!(
            classify("Failed to verify certificate chain: InvalidSignatureForPublicKey"),
            DcapErrorKind::CertificateChain
        );
        assert_eq!(
            classify("Failed to parse root CA CRL: InvalidCrlSignatureForPublicKey"),
            DcapErrorKind::CertificateChain
        );
        assert_eq!(
            classify("TCBInfo expired"),
            DcapErrorKind::CollateralExpired
        );
        assert_eq!(
            classify("TCBInfo issue date is in the future"),
            DcapErrorKind::CollateralNotYetValid
        );
        assert_eq!(
            classify("TCB status is invalid: Revoked"),
            DcapErrorKind::Revoked
        );
        assert_eq!(classify("Fmspc mismatch"), DcapErrorKind::FmspcMismatch);
    }
}
