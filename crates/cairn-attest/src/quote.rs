//! SGX DCAP quote v3 parsing (own bounds-checked parser) and TDX v4/v5 field extraction (dcap-qvl).

use serde::Serialize;

use crate::oe_impl;

/// Errors from parsing evidence bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ends before a field.
    #[error("quote truncated: {what} needs {need} bytes, only {have} available")]
    Truncated {
        /// Field that did not fit.
        what: &'static str,
        /// Bytes needed up to the end of that field.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The OE header announces a size different from what follows it.
    #[error("OE report header says {header} bytes follow, but {actual} do")]
    OeSizeMismatch {
        /// Size in the header.
        header: u64,
        /// Bytes after the header.
        actual: u64,
    },
    /// Quote version not supported by this parser.
    #[error(
        "unsupported quote version {version} for TEE type {tee_type:#x} (SGX needs 3, TDX 4 or 5)"
    )]
    UnsupportedVersion {
        /// Quote version.
        version: u16,
        /// TEE type.
        tee_type: u32,
    },
    /// TEE type is neither SGX (0) nor TDX (0x81).
    #[error("unknown TEE type {0:#x}")]
    UnknownTeeType(u32),
    /// A length field is inconsistent with the data.
    #[error("inconsistent quote: {0}")]
    Inconsistent(String),
    /// dcap-qvl could not decode the (TDX) quote.
    #[error("failed to decode quote: {0}")]
    Decode(String),
}

/// Trusted execution environment of a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Tee {
    /// Intel SGX enclave (quote v3).
    Sgx,
    /// Intel TDX trust domain (quote v4/v5).
    Tdx,
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
        })
    }
}

/// Fields of an SGX DCAP quote v3 (all offsets per attestation.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxQuote {
    /// Quote version (3).
    pub version: u16,
    /// Attestation key type (2 = ECDSA P-256).
    pub attestation_key_type: u16,
    /// QE security version.
    pub qe_svn: u16,
    /// PCE security version.
    pub pce_svn: u16,
    /// QE vendor ID (Intel: 939A7233F79C4CA9940A0DB3957F0607).
    pub qe_vendor_id: [u8; 16],
    /// CPUSVN of the enclave report.
    pub cpu_svn: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// ATTRIBUTES (flags u64 ‖ XFRM u64).
    pub attributes: [u8; 16],
    /// ATTRIBUTES.DEBUG (bit 1).
    pub debug: bool,
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// Certification data type (5 = PCK chain, 3 = encrypted PPID, ...).
    pub cert_data_type: u16,
    /// Certification data (PEM chain for type 5).
    pub cert_data: Vec<u8>,
    /// QE auth data length.
    pub qe_auth_data_len: u16,
}

const HEADER_LEN: usize = 48;
const BODY_LEN: usize = 384;
const SIG_LEN_OFF: usize = HEADER_LEN + BODY_LEN; // 432
const SIG_DATA_OFF: usize = SIG_LEN_OFF + 4; // 436
const SGX_TEE: u32 = 0;
const TDX_TEE: u32 = 0x81;

impl SgxQuote {
    /// Parses a raw or OE-wrapped SGX quote v3. Every length is bounds-checked; any malformed
    /// input yields a [`FormatError`], never a panic.
    pub fn parse(evidence: &[u8]) -> Result<SgxQuote, FormatError> {
        let raw = oe_impl::unwrap(evidence)?;
        let r = Reader(raw);
        let version = r.u16(0, "header")?;
        let attestation_key_type = r.u16(2, "header")?;
        let tee_type = r.u32(4, "header")?;
        r.need(HEADER_LEN, "header")?;
        match tee_type {
            SGX_TEE if version == 3 => {}
            SGX_TEE | TDX_TEE => return Err(FormatError::UnsupportedVersion { version, tee_type }),
            other => return Err(FormatError::UnknownTeeType(other)),
        }
        let b = HEADER_LEN;
        r.need(SIG_DATA_OFF, "enclave report body and signature length")?;
        let sig_len = r.u32(SIG_LEN_OFF, "signature data length")? as usize;
        let end = SIG_DATA_OFF
            .checked_add(sig_len)
            .ok_or_else(|| FormatError::Inconsistent("signature data length overflows".into()))?;
        r.need(end, "signature data")?;
        // Fixed part of the v3 signature data: ISV sig 64, att key 64, QE report 384, QE sig 64.
        let auth_off = SIG_DATA_OFF + 64 + 64 + BODY_LEN + 64;
        within(auth_off + 2, end, "QE auth data size")?;
        let auth_len = r.u16(auth_off, "QE auth data size")?;
        let cert_type_off = auth_off + 2 + auth_len as usize;
        within(cert_type_off + 6, end, "certification data header")?;
        let cert_data_type = r.u16(cert_type_off, "certification data type")?;
        let cert_len = r.u32(cert_type_off + 2, "certification data size")? as usize;
        let cert_off = cert_type_off + 6;
        within(cert_off + cert_len, end, "certification data")?;
        let attributes: [u8; 16] = r.arr(b + 48)?;
        Ok(SgxQuote {
            version,
            attestation_key_type,
            qe_svn: r.u16(8, "header")?,
            pce_svn: r.u16(10, "header")?,
            qe_vendor_id: r.arr(12)?,
            cpu_svn: r.arr(b)?,
            misc_select: r.u32(b + 16, "report body")?,
            attributes,
            debug: attributes[0] & 0x02 != 0,
            mr_enclave: r.arr(b + 64)?,
            mr_signer: r.arr(b + 128)?,
            isv_prod_id: r.u16(b + 256, "report body")?,
            isv_svn: r.u16(b + 258, "report body")?,
            report_data: r.arr(b + 320)?,
            cert_data_type,
            cert_data: raw[cert_off..cert_off + cert_len].to_vec(),
            qe_auth_data_len: auth_len,
        })
    }
}

/// TDX-specific measurements (48-byte SHA-384 registers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdxFields {
    /// MRTD (initial TD measurement), 48 bytes.
    pub mr_td: Vec<u8>,
    /// RTMR0..RTMR3, 48 bytes each.
    pub rtmr: [Vec<u8>; 4],
    /// MRCONFIGID.
    pub mr_config_id: Vec<u8>,
    /// MROWNER.
    pub mr_owner: Vec<u8>,
    /// TD attributes (8 bytes).
    pub td_attributes: [u8; 8],
}

/// TEE-independent view of a quote's identity fields.
///
/// For TDX, `mr_enclave` holds the first 32 bytes of MRTD and `mr_signer` is zero; the full
/// registers are in `tdx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteFields {
    /// SGX or TDX.
    pub tee: Tee,
    /// Quote version.
    pub version: u16,
    /// MRENCLAVE (SGX) or MRTD[0..32] (TDX).
    pub mr_enclave: [u8; 32],
    /// MRSIGNER (SGX) or zero (TDX).
    pub mr_signer: [u8; 32],
    /// ISVPRODID (0 for TDX).
    pub isv_prod_id: u16,
    /// ISVSVN (0 for TDX).
    pub isv_svn: u16,
    /// Debug flag (SGX ATTRIBUTES.DEBUG, TDX TUD.DEBUG).
    pub debug: bool,
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// Inner certification data type.
    pub cert_data_type: u16,
    /// TDX registers.
    pub tdx: Option<TdxFields>,
}

/// Parses raw or OE-wrapped evidence of either TEE. SGX uses [`SgxQuote::parse`], TDX dcap-qvl's
/// decoder.
pub fn parse_evidence(evidence: &[u8]) -> Result<QuoteFields, FormatError> {
    let raw = oe_impl::unwrap(evidence)?;
    let r = Reader(raw);
    let tee_type = r.u32(4, "header")?;
    if tee_type == SGX_TEE {
        let q = SgxQuote::parse(raw)?;
        return Ok(QuoteFields {
            tee: Tee::Sgx,
            version: q.version,
            mr_enclave: q.mr_enclave,
            mr_signer: q.mr_signer,
            isv_prod_id: q.isv_prod_id,
            isv_svn: q.isv_svn,
            debug: q.debug,
            report_data: q.report_data,
            cert_data_type: q.cert_data_type,
            tdx: None,
        });
    }
    if tee_type != TDX_TEE {
        return Err(FormatError::UnknownTeeType(tee_type));
    }
    let q =
        dcap_qvl::quote::Quote::parse(raw).map_err(|e| FormatError::Decode(format!("{e:#}")))?;
    if !matches!(q.header.version, 4 | 5) {
        return Err(FormatError::UnsupportedVersion {
            version: q.header.version,
            tee_type,
        });
    }
    let td = match &q.report {
        dcap_qvl::quote::Report::TD10(t) => t,
        dcap_qvl::quote::Report::TD15(t) => &t.base,
        dcap_qvl::quote::Report::TD15Ex(t) => &t.base.base,
        dcap_qvl::quote::Report::SgxEnclave(_) => {
            return Err(FormatError::Inconsistent(
                "TDX header with an SGX body".into(),
            ))
        }
    };
    let mut mr_enclave = [0u8; 32];
    mr_enclave.copy_from_slice(&td.mr_td[..32]);
    Ok(QuoteFields {
        tee: Tee::Tdx,
        version: q.header.version,
        mr_enclave,
        mr_signer: [0; 32],
        isv_prod_id: 0,
        isv_svn: 0,
        debug: td.td_attributes[0] & 0x01 != 0,
        report_data: td.report_data,
        cert_data_type: q.inner_cert_type(),
        tdx: Some(TdxFields {
            mr_td: td.mr_td.to_vec(),
            rtmr: [
                td.rt_mr0.to_vec(),
                td.rt_mr1.to_vec(),
                td.rt_mr2.to_vec(),
                td.rt_mr3.to_vec(),
            ],
            mr_config_id: td.mr_config_id.to_vec(),
            mr_owner: td.mr_owner.to_vec(),
            td_attributes: td.td_attributes,
        }),
    })
}

fn within(need: usize, end: usize, what: &'static str) -> Result<(), FormatError> {
    if need > end {
        return Err(FormatError::Inconsistent(format!(
            "{what} ends at byte {need}, beyond the signature data end {end}"
        )));
    }
    Ok(())
}

/// Bounds-checked little-endian reader.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, end: usize, what: &'static str) -> Result<(), FormatError> {
        if self.0.len() < end {
            return Err(FormatError::Truncated {
                what,
                need: end,
                have: self.0.len(),
            });
        }
        Ok(())
    }
    fn u16(&self, off: usize, what: &'static str) -> Result<u16, FormatError> {
        self.need(off + 2, what)?;
        Ok(u16::from_le_bytes([self.0[off], self.0[off + 1]]))
    }
    fn u32(&self, off: usize, what: &'static str) -> Result<u32, FormatError> {
        self.need(off + 4, what)?;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        Ok(u32::from_le_bytes(b))
    }
    fn arr<const N: usize>(&self, off: usize) -> Result<[u8; N], FormatError> {
        self.need(off + N, "field")?;
        let mut b = [0u8; N];
        b.copy_from_slice(&self.0[off..off + N]);
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_inputs_are_truncated() {
        assert!(matches!(
            SgxQuote::parse(&[]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            SgxQuote::parse(&[3, 0, 2, 0, 0, 0, 0, 0]),
            Err(FormatError::Truncated {
                what: "header",
                need: 48,
                have: 8
            })
        ));
    }

    #[test]
    fn unknown_tee_and_bad_version() {
        let mut q = vec![0u8; 48];
        q[0] = 3;
        q[4] = 0x7;
        assert_eq!(SgxQuote::parse(&q), Err(FormatError::UnknownTeeType(7)));
        q[4] = 0;
        q[0] = 4;
        assert_eq!(
            SgxQuote::parse(&q),
            Err(FormatError::UnsupportedVersion {
                version: 4,
                tee_type: 0
            })
        );
    }

    #[test]
    fn oversized_signature_length_is_truncated_not_panic() {
        let mut q = vec![0u8; 436];
        q[0] = 3;
        q[432..436].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            SgxQuote::parse(&q),
            Err(FormatError::Truncated {
                what: "signature data",
                ..
            })
        ));
    }
}
