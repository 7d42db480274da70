//! The simulated SGX platform, pure part: an Intel-shaped PKI, signed collateral and byte-exact
//! SGX DCAP v3 quotes that dcap-qvl verifies against the simulation root (attestation.md §2.1).
//!
//! Key material comes in, bytes go out: no files, no clock (`now` is a parameter).

use std::fmt;

use cairn_crypto::{KeyType, SecretKey32, Zeroize};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::Collateral;
pub use crate::SealKeyKind;

/// Errors of the simulated platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// report_data longer than 64 bytes.
    #[error("report data is {0} bytes; at most 64 are allowed")]
    ReportDataTooLong(usize),
    /// Settings that dcap-qvl could not express.
    #[error("invalid simulation settings: {0}")]
    InvalidSettings(String),
    /// Certificate or CRL generation failed.
    #[error("simulated PKI: {0}")]
    Pki(String),
    /// Key generation or signing failed.
    #[error("simulated platform crypto: {0}")]
    Crypto(String),
    /// Stored platform data is inconsistent.
    #[error("simulated platform state is corrupt: {0}")]
    Corrupt(String),
}

/// TCB state the simulated collateral reports for the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSettings {
    /// Status of the platform's TCB level (any dcap-qvl status string, e.g. `SWHardeningNeeded`).
    pub tcb_status: String,
    /// Advisory IDs attached to that level.
    pub advisory_ids: Vec<String>,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            tcb_status: "UpToDate".into(),
            advisory_ids: Vec::new(),
        }
    }
}

impl SimSettings {
    /// Checks that the status is one dcap-qvl knows.
    pub fn validate(&self) -> Result<(), SimError> {
        serde_json::from_value::<dcap_qvl::TcbStatus>(serde_json::Value::String(
            self.tcb_status.clone(),
        ))
        .map_err(|_| {
            SimError::InvalidSettings(format!("unknown TCB status {:?}", self.tcb_status))
        })?;
        Ok(())
    }
}

/// Identity of a simulated enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveIdentity {
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// ATTRIBUTES.DEBUG.
    pub debug: bool,
}

/// MRENCLAVE of a simulated enclave running `executable_bytes`: SHA-256 of the bytes.
pub fn measure(executable_bytes: &[u8]) -> [u8; 32] {
    cairn_crypto::sha256(executable_bytes)
}

const FORMAT_VERSION: u32 = 1;
const QE_SVN: u16 = 8;
const PCE_SVN: u16 = 13;
const CPU_SVN: [u8; 16] = [5, 5, 2, 2, 3, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const FMSPC: [u8; 6] = [0x53, 0x49, 0x4d, 0x00, 0x00, 0x01];
const QE_ISV_PROD_ID: u16 = 1;
const QE_ATTRIBUTES: [u8; 16] = [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const TCB_EVAL_NUMBER: u32 = 17;
const COLLATERAL_VALIDITY_DAYS: i64 = 30;
const SGX_EXT_OID: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];

/// A complete simulated platform: PKI keys and certificates, QE key, signer key, seal secret.
///
/// Serializable so a layer-2 crate can persist it; secret fields are hex strings.
#[derive(Clone, Serialize, Deserialize)]
pub struct SimPlatform {
    format_version: u32,
    settings: SimSettings,
    #[serde(with = "hexser")]
    root_key: Vec<u8>,
    #[serde(with = "hexser")]
    root_cert: Vec<u8>,
    #[serde(with = "hexser")]
    pck_ca_key: Vec<u8>,
    #[serde(with = "hexser")]
    pck_ca_cert: Vec<u8>,
    #[serde(with = "hexser")]
    pck_leaf_key: Vec<u8>,
    #[serde(with = "hexser")]
    pck_leaf_cert: Vec<u8>,
    #[serde(with = "hexser")]
    tcb_key: Vec<u8>,
    #[serde(with = "hexser")]
    tcb_cert: Vec<u8>,
    #[serde(with = "hexser")]
    qe_key: Vec<u8>,
    #[serde(with = "hexser")]
    signer_key: Vec<u8>,
    /// SHA-256 of the signer's public point, computed at generation and checked by `validate`.
    #[serde(with = "hexser")]
    signer_id: [u8; 32],
    #[serde(with = "hexser")]
    platform_secret: Vec<u8>,
    #[serde(with = "hexser")]
    qe_id: [u8; 16],
    #[serde(with = "hexser")]
    qe_auth: [u8; 32],
    #[serde(with = "hexser")]
    qe_mr_signer: [u8; 32],
    /// QE report body and its PCK signature: constant per platform, computed at generation.
    #[serde(with = "hexser")]
    qe_report: Vec<u8>,
    #[serde(with = "hexser")]
    qe_report_sig: [u8; 64],
    #[serde(with = "hexser")]
    att_pub: Vec<u8>,
}

impl Drop for SimPlatform {
    fn drop(&mut self) {
        for k in [
            &mut self.root_key,
            &mut self.pck_ca_key,
            &mut self.pck_leaf_key,
            &mut self.tcb_key,
            &mut self.qe_key,
            &mut self.signer_key,
            &mut self.platform_secret,
        ] {
            k.zeroize();
        }
    }
}

impl fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPlatform")
            .field(
                "root_sha256",
                &hex::encode(cairn_crypto::sha256(&self.root_cert)),
            )
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SimPlatform {
    /// Generates fresh keys and certificates (valid from `now` − 1 day for 10 years).
    pub fn generate(now: OffsetDateTime, settings: SimSettings) -> Result<SimPlatform, SimError> {
        settings.validate()?;
        let gen = || cairn_crypto::generate_ecdsa_pkcs8(KeyType::P256).map_err(crypto_err);
        let root_key = gen()?;
        let pck_ca_key = gen()?;
        let pck_leaf_key = gen()?;
        let tcb_key = gen()?;
        let qe_key = gen()?;
        let signer_key = gen()?;
        let not_before = now - Duration::days(1);
        let not_after = now + Duration::days(3650);

        let root_kp = key_pair(&root_key)?;
        let mut rp = root_params();
        set_validity(&mut rp, not_before, not_after)?;
        let root_cert = rp.self_signed(&root_kp).map_err(pki_err)?.der().to_vec();
        let root_issuer = Issuer::new(root_params(), root_kp);

        let pck_ca_kp = key_pair(&pck_ca_key)?;
        let mut cp = pck_ca_params();
        set_validity(&mut cp, not_before, not_after)?;
        let pck_ca_cert = cp
            .signed_by(&pck_ca_kp, &root_issuer)
            .map_err(pki_err)?
            .der()
            .to_vec();
        let pck_ca_issuer = Issuer::new(pck_ca_params(), pck_ca_kp);

        let mut ppid = [0u8; 16];
        cairn_crypto::fill_random(&mut ppid).map_err(crypto_err)?;
        let leaf_kp = key_pair(&pck_leaf_key)?;
        let mut lp = leaf_params(
            "Cairn Simulated SGX PCK Certificate",
            &[
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
        );
        lp.custom_extensions = vec![CustomExtension::from_oid_content(
            &SGX_EXT_OID,
            sgx_extension(&ppid),
        )];
        set_validity(&mut lp, not_before, not_after)?;
        let pck_leaf_cert = lp
            .signed_by(&leaf_kp, &pck_ca_issuer)
            .map_err(pki_err)?
            .der()
            .to_vec();

        let tcb_kp = key_pair(&tcb_key)?;
        let mut tp = leaf_params(
            "Cairn Simulated SGX TCB Signing",
            &[
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
        );
        set_validity(&mut tp, not_before, not_after)?;
        let tcb_cert = tp
            .signed_by(&tcb_kp, &root_issuer)
            .map_err(pki_err)?
            .der()
            .to_vec();

        let rand32 = || -> Result<[u8; 32], SimError> {
            let mut b = [0u8; 32];
            cairn_crypto::fill_random(&mut b).map_err(crypto_err)?;
            Ok(b)
        };
        let mut qe_id = [0u8; 16];
        cairn_crypto::fill_random(&mut qe_id).map_err(crypto_err)?;
        let qe_auth = rand32()?;
        let qe_mr_signer = rand32()?;
        let platform_secret = rand32()?.to_vec();

        let signer_id = cairn_crypto::sha256(
            &cairn_crypto::ecdsa_public_point(KeyType::P256, &signer_key).map_err(crypto_err)?,
        );
        let point = cairn_crypto::ecdsa_public_point(KeyType::P256, &qe_key).map_err(crypto_err)?;
        // Uncompressed SEC1 point: 0x04 ‖ x ‖ y; the quote carries x ‖ y.
        let att_pub = point.get(1..).unwrap_or_default().to_vec();
        if att_pub.len() != 64 {
            return Err(SimError::Crypto(
                "attestation key is not a P-256 point".into(),
            ));
        }
        let mut qe_rd = [0u8; 64];
        qe_rd[..32].copy_from_slice(&cairn_crypto::sha256_concat(&[&att_pub, &qe_auth]));
        let qe_report = report_body(
            &QE_ATTRIBUTES,
            &[0; 32],
            &qe_mr_signer,
            QE_ISV_PROD_ID,
            QE_SVN,
            &qe_rd,
        );
        let qe_report_sig =
            cairn_crypto::p256_sign_fixed(&pck_leaf_key, &qe_report).map_err(crypto_err)?;

        Ok(SimPlatform {
            format_version: FORMAT_VERSION,
            settings,
            root_key: root_key.to_vec(),
            root_cert,
            pck_ca_key: pck_ca_key.to_vec(),
            pck_ca_cert,
            pck_leaf_key: pck_leaf_key.to_vec(),
            pck_leaf_cert,
            tcb_key: tcb_key.to_vec(),
            tcb_cert,
            qe_key: qe_key.to_vec(),
            signer_key: signer_key.to_vec(),
            signer_id,
            platform_secret,
            qe_id,
            qe_auth,
            qe_mr_signer,
            qe_report: qe_report.to_vec(),
            qe_report_sig,
            att_pub,
        })
    }

    /// Checks internal consistency after deserialization (lengths, keys parse, format version).
    pub fn validate(&self) -> Result<(), SimError> {
        if self.format_version != FORMAT_VERSION {
            return Err(SimError::Corrupt(format!(
                "format version {} (expected {FORMAT_VERSION})",
                self.format_version
            )));
        }
        self.settings.validate()?;
        if self.qe_report.len() != 384
            || self.att_pub.len() != 64
            || self.platform_secret.len() != 32
        {
            return Err(SimError::Corrupt("field lengths".into()));
        }
        for k in [
            &self.root_key,
            &self.pck_ca_key,
            &self.pck_leaf_key,
            &self.tcb_key,
            &self.qe_key,
            &self.signer_key,
        ] {
            key_pair(k).map_err(|e| SimError::Corrupt(e.to_string()))?;
        }
        let point = cairn_crypto::ecdsa_public_point(KeyType::P256, &self.signer_key)
            .map_err(|e| SimError::Corrupt(e.to_string()))?;
        if cairn_crypto::sha256(&point) != self.signer_id {
            return Err(SimError::Corrupt(
                "signer_id does not match signer_key".into(),
            ));
        }
        Ok(())
    }

    /// The simulation root CA certificate (DER): the trust anchor for `TrustRoot::Simulation`.
    pub fn root_der(&self) -> &[u8] {
        &self.root_cert
    }

    /// The settings the collateral reports.
    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    /// Replaces the TCB settings (takes effect at the next [`SimPlatform::collateral`]).
    pub fn set_settings(&mut self, settings: SimSettings) -> Result<(), SimError> {
        settings.validate()?;
        self.settings = settings;
        Ok(())
    }

    /// MRSIGNER of the simulated signer: SHA-256 of its uncompressed P-256 public point.
    pub fn signer_id(&self) -> [u8; 32] {
        self.signer_id
    }

    /// PEM chain PCK leaf, PCK CA, root (what a type-5 quote carries).
    pub fn pck_chain_pem(&self) -> String {
        [&self.pck_leaf_cert, &self.pck_ca_cert, &self.root_cert]
            .iter()
            .map(|d| pem_cert(d))
            .collect()
    }

    /// Signs TCB Info v3, QE Identity v2 and both CRLs, issued at `now` − 60 s and valid for
    /// 30 days after `now`.
    pub fn collateral(&self, now: OffsetDateTime) -> Result<Collateral, SimError> {
        let issued = now - Duration::seconds(60);
        let next = now + Duration::days(COLLATERAL_VALIDITY_DAYS);
        let (issue_s, next_s) = (rfc3339(issued)?, rfc3339(next)?);
        let tcb_date = rfc3339(issued.replace_time(time::Time::MIDNIGHT))?;

        let comps: Vec<serde_json::Value> = CPU_SVN
            .iter()
            .map(|s| serde_json::json!({ "svn": s }))
            .collect();
        let tcb_info = serde_json::json!({
            "id": "SGX",
            "version": 3,
            "issueDate": issue_s,
            "nextUpdate": next_s,
            "fmspc": hex::encode_upper(FMSPC),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": TCB_EVAL_NUMBER,
            "tcbLevels": [{
                "tcb": { "sgxtcbcomponents": comps, "pcesvn": PCE_SVN },
                "tcbDate": tcb_date,
                "tcbStatus": self.settings.tcb_status,
                "advisoryIDs": self.settings.advisory_ids,
            }],
        })
        .to_string();
        let qe_identity = serde_json::json!({
            "id": "QE",
            "version": 2,
            "issueDate": issue_s,
            "nextUpdate": next_s,
            "tcbEvaluationDataNumber": TCB_EVAL_NUMBER,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": hex::encode_upper(QE_ATTRIBUTES),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode_upper(self.qe_mr_signer),
            "isvprodid": QE_ISV_PROD_ID,
            "tcbLevels": [{ "tcb": { "isvsvn": QE_SVN }, "tcbDate": tcb_date, "tcbStatus": "UpToDate" }],
        })
        .to_string();
        let tcb_info_signature = cairn_crypto::p256_sign_fixed(&self.tcb_key, tcb_info.as_bytes())
            .map_err(crypto_err)?;
        let qe_identity_signature =
            cairn_crypto::p256_sign_fixed(&self.tcb_key, qe_identity.as_bytes())
                .map_err(crypto_err)?;

        let root_issuer = Issuer::new(root_params(), key_pair(&self.root_key)?);
        let pck_issuer = Issuer::new(pck_ca_params(), key_pair(&self.pck_ca_key)?);
        let crl_number = u64::try_from(now.unix_timestamp()).unwrap_or(1);
        let crl = |issuer: &Issuer<'_, KeyPair>| -> Result<Vec<u8>, SimError> {
            let params = CertificateRevocationListParams {
                this_update: issued,
                next_update: next,
                crl_number: SerialNumber::from(crl_number),
                issuing_distribution_point: None,
                revoked_certs: Vec::new(),
                key_identifier_method: KeyIdMethod::Sha256,
            };
            Ok(params.signed_by(issuer).map_err(pki_err)?.der().to_vec())
        };
        let root_pem = pem_cert(&self.root_cert);
        let tcb_chain = format!("{}{root_pem}", pem_cert(&self.tcb_cert));
        Ok(Collateral {
            pck_crl_issuer_chain: format!("{}{root_pem}", pem_cert(&self.pck_ca_cert)),
            root_ca_crl: crl(&root_issuer)?,
            pck_crl: crl(&pck_issuer)?,
            tcb_info_issuer_chain: tcb_chain.clone(),
            tcb_info,
            tcb_info_signature: tcb_info_signature.to_vec(),
            qe_identity_issuer_chain: tcb_chain,
            qe_identity,
            qe_identity_signature: qe_identity_signature.to_vec(),
            pck_certificate_chain: None,
        })
    }

    /// Issues a raw SGX DCAP v3 quote for `id` with `report_data` (≤ 64 bytes, zero-padded).
    pub fn quote(&self, id: &EnclaveIdentity, report_data: &[u8]) -> Result<Vec<u8>, SimError> {
        if report_data.len() > 64 {
            return Err(SimError::ReportDataTooLong(report_data.len()));
        }
        let mut rd = [0u8; 64];
        rd[..report_data.len()].copy_from_slice(report_data);
        let mut attributes = [0u8; 16];
        attributes[0] = 0x05 | if id.debug { 0x02 } else { 0 }; // INIT | MODE64BIT [| DEBUG]
        attributes[8] = 0x03; // XFRM: x87 | SSE

        let chain = self.pck_chain_pem();
        let cert_len = chain.len() + 1;
        let sig_len = 64 + 64 + 384 + 64 + 2 + 32 + 2 + 4 + cert_len;
        let mut q = Vec::with_capacity(436 + sig_len);
        q.extend_from_slice(&3u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0u32.to_le_bytes());
        q.extend_from_slice(&QE_SVN.to_le_bytes());
        q.extend_from_slice(&PCE_SVN.to_le_bytes());
        q.extend_from_slice(&dcap_qvl::INTEL_QE_VENDOR_ID);
        q.extend_from_slice(&self.qe_id);
        q.extend_from_slice(&[0u8; 4]);
        q.extend_from_slice(&report_body(
            &attributes,
            &id.mr_enclave,
            &id.mr_signer,
            id.isv_prod_id,
            id.isv_svn,
            &rd,
        ));
        let isv_sig = cairn_crypto::p256_sign_fixed(&self.qe_key, &q).map_err(crypto_err)?;
        q.extend_from_slice(&(sig_len as u32).to_le_bytes());
        q.extend_from_slice(&isv_sig);
        q.extend_from_slice(&self.att_pub);
        q.extend_from_slice(&self.qe_report);
        q.extend_from_slice(&self.qe_report_sig);
        q.extend_from_slice(&32u16.to_le_bytes());
        q.extend_from_slice(&self.qe_auth);
        q.extend_from_slice(&5u16.to_le_bytes());
        q.extend_from_slice(&(cert_len as u32).to_le_bytes());
        q.extend_from_slice(chain.as_bytes());
        q.push(0);
        Ok(q)
    }

    /// Simulated EGETKEY: HKDF-SHA256 of the platform secret, bound to MRENCLAVE or to
    /// MRSIGNER+ISVPRODID.
    pub fn seal_key(&self, kind: SealKeyKind, id: &EnclaveIdentity) -> SecretKey32 {
        let mut info = Vec::with_capacity(64);
        match kind {
            SealKeyKind::Enclave => {
                info.extend_from_slice(b"cairn-sim-seal/mrenclave/");
                info.extend_from_slice(&id.mr_enclave);
            }
            SealKeyKind::Signer => {
                info.extend_from_slice(b"cairn-sim-seal/mrsigner/");
                info.extend_from_slice(&id.mr_signer);
                info.extend_from_slice(&id.isv_prod_id.to_le_bytes());
            }
        }
        // Invariant: hkdf_sha256 fails only for lengths 0 or > 8160; 32 is always valid, so no
        // silent fallback key can ever be returned.
        #[allow(clippy::expect_used)]
        let k = cairn_crypto::hkdf_sha256(&self.platform_secret, b"cairn-sim-seal-v1", &info, 32)
            .expect("HKDF-SHA256 with a 32-byte output cannot fail");
        let mut out = [0u8; 32];
        out.copy_from_slice(&k);
        SecretKey32(out)
    }
}

fn crypto_err(e: cairn_crypto::CryptoError) -> SimError {
    SimError::Crypto(e.to_string())
}

fn pki_err(e: rcgen::Error) -> SimError {
    SimError::Pki(e.to_string())
}

fn key_pair(pkcs8: &[u8]) -> Result<KeyPair, SimError> {
    KeyPair::try_from(pkcs8).map_err(pki_err)
}

fn pem_cert(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn rfc3339(t: OffsetDateTime) -> Result<String, SimError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .map_err(|e| SimError::Pki(e.to_string()))
}

fn dn(params: &mut CertificateParams, cn: &str) {
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Cairn Simulation");
    params.distinguished_name.push(DnType::CommonName, cn);
}

/// Issuer parameters are rebuilt identically each time, so CRLs name exactly the certificate's
/// subject without re-parsing it.
fn root_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    dn(&mut p, "Cairn Simulated SGX Root CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn pck_ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    // dcap-qvl classifies the PCK CA by the "Processor" substring of the issuer.
    dn(&mut p, "Cairn Simulated SGX PCK Processor CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn leaf_params(cn: &str, ku: &[KeyUsagePurpose]) -> CertificateParams {
    let mut p = CertificateParams::default();
    dn(&mut p, cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = ku.to_vec();
    p
}

fn set_validity(
    p: &mut CertificateParams,
    nb: OffsetDateTime,
    na: OffsetDateTime,
) -> Result<(), SimError> {
    p.not_before = nb;
    p.not_after = na;
    let mut serial = cairn_crypto::random_bytes(16).map_err(crypto_err)?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    p.serial_number = Some(SerialNumber::from(serial));
    Ok(())
}

/// 384-byte SGX REPORTBODY (offsets relative to the body, attestation.md §2).
fn report_body(
    attributes: &[u8; 16],
    mr_enclave: &[u8; 32],
    mr_signer: &[u8; 32],
    prod_id: u16,
    svn: u16,
    report_data: &[u8; 64],
) -> [u8; 384] {
    let mut b = [0u8; 384];
    b[0..16].copy_from_slice(&CPU_SVN);
    b[48..64].copy_from_slice(attributes);
    b[64..96].copy_from_slice(mr_enclave);
    b[128..160].copy_from_slice(mr_signer);
    b[256..258].copy_from_slice(&prod_id.to_le_bytes());
    b[258..260].copy_from_slice(&svn.to_le_bytes());
    b[320..384].copy_from_slice(report_data);
    b
}

/// DER of the Intel SGX extension value (OID 1.2.840.113741.1.13.1).
fn sgx_extension(ppid: &[u8; 16]) -> Vec<u8> {
    let sub = |arcs: &[u64]| -> Vec<u8> {
        let mut a = SGX_EXT_OID.to_vec();
        a.extend_from_slice(arcs);
        der::oid(&a)
    };
    let mut tcb = Vec::new();
    for (i, svn) in CPU_SVN.iter().enumerate() {
        tcb.extend(der::seq(&[
            sub(&[2, i as u64 + 1]),
            der::integer(u64::from(*svn)),
        ]));
    }
    tcb.extend(der::seq(&[sub(&[2, 17]), der::integer(u64::from(PCE_SVN))]));
    tcb.extend(der::seq(&[sub(&[2, 18]), der::octets(&CPU_SVN)]));
    der::seq(&[
        der::seq(&[sub(&[1]), der::octets(ppid)]),
        der::seq(&[sub(&[2]), der::tlv(0x30, &tcb)]),
        der::seq(&[sub(&[3]), der::octets(&[0, 0])]),
        der::seq(&[sub(&[4]), der::octets(&FMSPC)]),
        der::seq(&[sub(&[5]), der::tlv(0x0a, &[0])]),
    ])
}

/// Minimal DER writer for the SGX extension.
mod der {
    pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    pub(super) fn seq(items: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &items.concat())
    }
    pub(super) fn octets(b: &[u8]) -> Vec<u8> {
        tlv(0x04, b)
    }
    pub(super) fn integer(v: u64) -> Vec<u8> {
        let mut bytes: Vec<u8> = v
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        if bytes.first().is_none_or(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        tlv(0x02, &bytes)
    }
    pub(super) fn oid(arcs: &[u64]) -> Vec<u8> {
        let mut c = Vec::new();
        let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
        for a in std::iter::once(first).chain(arcs.iter().skip(2).copied()) {
            let mut chunk = vec![(a & 0x7f) as u8];
            let mut rest = a >> 7;
            while rest > 0 {
                chunk.push(0x80 | (rest & 0x7f) as u8);
                rest >>= 7;
            }
            chunk.reverse();
            c.extend(chunk);
        }
        tlv(0x06, &c)
    }
}

/// Serde as lowercase hex strings for byte vectors and arrays.
mod hexser {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(
        d: D,
    ) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(D::Error::custom)?;
        T::try_from(v).map_err(|_| D::Error::custom("wrong byte length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_primitives() {
        assert_eq!(
            der::oid(&[1, 2, 840, 113741, 1, 13, 1]),
            vec![0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01]
        );
        assert_eq!(der::integer(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(der::integer(255), vec![0x02, 0x02, 0x00, 0xff]);
        assert_eq!(der::tlv(0x04, &[7u8; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn measure_is_sha256() {
        assert_eq!(
            hex::encode(measure(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn unknown_status_is_rejected() {
        let s = SimSettings {
            tcb_status: "Fine".into(),
            advisory_ids: vec![],
        };
        assert!(matches!(s.validate(), Err(SimError::InvalidSettings(_))));
    }

    #[test]
    fn report_data_over_64_is_rejected() {
        let p = SimPlatform::generate(
            OffsetDateTime::UNIX_EPOCH + Duration::days(20000),
            SimSettings::default(),
        )
        .unwrap();
        let id = EnclaveIdentity {
            mr_enclave: [1; 32],
            mr_signer: [2; 32],
            isv_prod_id: 1,
            isv_svn: 1,
            debug: false,
        };
        assert_eq!(p.quote(&id, &[0; 65]), Err(SimError::ReportDataTooLong(65)));
        let q = p.quote(&id, b"hi").unwrap();
        let parsed = crate::SgxQuote::parse(&q).unwrap();
        assert_eq!(&parsed.report_data[..3], b"hi\0");
        assert_eq!(parsed.cert_data_type, 5);
        assert_eq!(
            q.len(),
            436 + u32::from_le_bytes(q[432..436].try_into().unwrap()) as usize
        );
    }
}
