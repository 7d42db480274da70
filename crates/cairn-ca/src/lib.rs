//! The Coordinator's PKI as pure functions: the root / intermediate / marble-root bundle, marble
//! leaf certificates issued from a CSR, certificate secrets from a plain template, and the
//! manifest signature.
//!
//! No I/O and no clock: every function that puts a time into a certificate takes `now`.
//! Certificates are DER, private keys PKCS#8 DER in [`Zeroizing`] buffers.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::fmt;
use std::net::IpAddr;

use ::time::OffsetDateTime;
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, EcdsaKeyPair};
use cairn_crypto::{KeyType, Zeroizing};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

mod der;
mod leaf;
mod secret;
mod serde_b64;

pub use leaf::{issue_marble_leaf, LeafIssuer, MarbleLeaf};
pub use secret::{
    check_cert_size, generate_cert_secret, CertKind, CertSecretSpec, GeneratedSecret, SubjectSpec,
    DEFAULT_SECRET_CN, DEFAULT_VALID_FOR_DAYS,
};

/// OID of the non-critical extension in marble leaves that carries the raw marble type bytes.
pub const MARBLE_TYPE_OID: &[u64] = &[1, 3, 9903, 2, 1];
/// Subject CN of the Coordinator root certificate.
pub const ROOT_CN: &str = "MarbleRun Coordinator";
/// Subject CN of the intermediate and the marble root (same key, same subject).
pub const INTERMEDIATE_CN: &str = "MarbleRun Coordinator - Intermediate CA";

/// Errors of the CA layer. Messages never contain key material.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A primitive of the crypto layer failed.
    #[error(transparent)]
    Crypto(#[from] cairn_crypto::CryptoError),
    /// rcgen refused to build or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A stored key or certificate of the bundle could not be read back.
    #[error("the CA bundle is invalid: {0}")]
    InvalidBundle(String),
    /// The CSR is not DER or not a PKCS#10 request.
    #[error("the certificate signing request cannot be parsed: {0}")]
    CsrParse(String),
    /// The CSR's self-signature does not verify with the public key it contains.
    #[error("the certificate signing request signature does not verify")]
    CsrSignature,
    /// A certificate secret specification cannot be generated.
    #[error("invalid certificate secret: {0}")]
    InvalidSpec(String),
    /// A signature did not verify against the given certificate's public key.
    #[error("signature verification failed: {0}")]
    BadSignature(String),
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Generate(e.to_string())
    }
}

/// The Coordinator's three CA certificates and two private keys.
///
/// The marble root is the self-signed twin of the intermediate (same key, same subject), so a
/// leaf signed by the intermediate key verifies against either.
#[derive(Clone, Serialize, Deserialize)]
pub struct CaBundle {
    /// Curve of the root and intermediate keys (and of issued marble keys).
    #[serde(with = "serde_b64::key_type")]
    pub key_type: KeyType,
    /// Root certificate DER (CN [`ROOT_CN`], self-signed).
    #[serde(with = "serde_b64::bytes")]
    pub root_cert: Vec<u8>,
    /// Root private key, PKCS#8 DER.
    #[serde(with = "serde_b64::secret")]
    pub root_key: Zeroizing<Vec<u8>>,
    /// Intermediate certificate DER (CN [`INTERMEDIATE_CN`], signed by the root).
    #[serde(with = "serde_b64::bytes")]
    pub intermediate_cert: Vec<u8>,
    /// Intermediate private key, PKCS#8 DER (also the marble root's key).
    #[serde(with = "serde_b64::secret")]
    pub intermediate_key: Zeroizing<Vec<u8>>,
    /// Marble root certificate DER (self-signed with the intermediate key).
    #[serde(with = "serde_b64::bytes")]
    pub marble_root_cert: Vec<u8>,
    /// DNS names / IP literals the CA certificates carry as SANs (before 127.0.0.1 and ::1 are
    /// added); reused on rotation.
    #[serde(default)]
    pub names: Vec<String>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("key_type", &self.key_type)
            .field(
                "root_cert_sha256",
                &hex(&cairn_crypto::sha256(&self.root_cert)),
            )
            .field(
                "intermediate_cert_sha256",
                &hex(&cairn_crypto::sha256(&self.intermediate_cert)),
            )
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl CaBundle {
    /// Generates a fresh root, intermediate and marble root valid from `now` with no practical
    /// expiry. `names` are DNS names or IP literals (see [`parse_names`]).
    pub fn generate(
        key_type: KeyType,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<CaBundle, CaError> {
        let root_key = cairn_crypto::generate_ecdsa_pkcs8(key_type)?;
        let root_kp = key_pair(key_type, &root_key)?;
        let root_params = ca_params(ROOT_CN, names, now)?;
        let root_cert = root_params.self_signed(&root_kp)?.der().to_vec();
        let mut bundle = CaBundle {
            key_type,
            root_cert,
            root_key,
            intermediate_cert: Vec::new(),
            intermediate_key: Zeroizing::new(Vec::new()),
            marble_root_cert: Vec::new(),
            names: names.to_vec(),
        };
        bundle.rotate_intermediate(now)?;
        Ok(bundle)
    }

    /// Same as [`CaBundle::generate`]; the name marks the unpersisted CA served in Recovery.
    pub fn temporary(
        key_type: KeyType,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<CaBundle, CaError> {
        Self::generate(key_type, names, now)
    }

    /// Replaces the intermediate key, the intermediate certificate (signed by the unchanged
    /// root) and the marble root (self-signed with the new key).
    pub fn rotate_intermediate(&mut self, now: OffsetDateTime) -> Result<(), CaError> {
        let root_kp = key_pair(self.key_type, &self.root_key)?;
        let root_issuer = Issuer::from_ca_cert_der(&self.root_cert.as_slice().into(), &root_kp)
            .map_err(|e| CaError::InvalidBundle(format!("root certificate: {e}")))?;
        let int_key = cairn_crypto::generate_ecdsa_pkcs8(self.key_type)?;
        let int_kp = key_pair(self.key_type, &int_key)?;
        let int_params = ca_params(INTERMEDIATE_CN, &self.names, now)?;
        let intermediate = int_params.signed_by(&int_kp, &root_issuer)?.der().to_vec();
        let mut marble_params = int_params;
        marble_params.serial_number = Some(random_serial()?);
        let marble_root = marble_params.self_signed(&int_kp)?.der().to_vec();
        self.intermediate_cert = intermediate;
        self.intermediate_key = int_key;
        self.marble_root_cert = marble_root;
        Ok(())
    }

    /// ASN.1 DER ECDSA signature of `msg` with the root key: ECDSA-SHA256 for P-256 keys,
    /// ECDSA-SHA384 for P-384 keys. Verify with [`CaBundle::verify_with_root`].
    pub fn sign_with_root(&self, msg: &[u8]) -> Result<Vec<u8>, CaError> {
        Ok(cairn_crypto::ecdsa_sign_der(
            self.key_type,
            &self.root_key,
            msg,
        )?)
    }

    /// Verifies a [`CaBundle::sign_with_root`] signature with the root certificate's key.
    pub fn verify_with_root(&self, msg: &[u8], sig_der: &[u8]) -> Result<(), CaError> {
        let (key_type, point) = ec_public_key(&self.root_cert)?;
        cairn_crypto::ecdsa_verify_der(key_type, &point, msg, sig_der)
            .map_err(|_| CaError::BadSignature("root signature".into()))
    }

    /// The manifest signature exactly as MarbleRun computes it: an ASN.1 ECDSA signature with
    /// the root key over the 32-byte SHA-256 digest of `raw`, on either curve (for P-384 the
    /// 32-byte digest is used as the integer unchanged, as Go's `ecdsa.SignASN1` does).
    pub fn sign_manifest(&self, raw: &[u8]) -> Result<Vec<u8>, CaError> {
        let kp = match self.key_type {
            KeyType::P256 => {
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &self.root_key)
            }
            KeyType::P384 => {
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &self.root_key)
            }
        }
        .map_err(|_| CaError::InvalidBundle("root key is not a PKCS#8 ECDSA key".into()))?;
        let sha = cairn_crypto::sha256(raw);
        let sig = match self.key_type {
            // ECDSA-SHA256 over the message signs exactly SHA-256(raw).
            KeyType::P256 => kp.sign(&aws_lc_rs::rand::SystemRandom::new(), raw),
            // aws-lc-rs binds P-384 keys to SHA-384-sized digests; 16 leading zero bytes ‖
            // SHA-256(raw) is the same integer e as the bare 32-byte digest (FIPS 186 takes the
            // leftmost 384 bits), so the signature equals Go's SignASN1(key, sha256(raw)).
            KeyType::P384 => {
                let mut padded = [0u8; 48];
                padded[16..].copy_from_slice(&sha);
                let d = digest::Digest::import_less_safe(&padded, &digest::SHA384)
                    .map_err(|_| CaError::Generate("digest import".into()))?;
                kp.sign_digest(&d)
            }
        }
        .map_err(|_| CaError::Crypto(cairn_crypto::CryptoError::Signing))?;
        Ok(sig.as_ref().to_vec())
    }

    /// PEM of the root certificate.
    pub fn root_pem(&self) -> String {
        cert_pem(&self.root_cert)
    }

    /// PEM of the intermediate certificate.
    pub fn intermediate_pem(&self) -> String {
        cert_pem(&self.intermediate_cert)
    }

    /// PEM of the marble root certificate.
    pub fn marble_root_pem(&self) -> String {
        cert_pem(&self.marble_root_cert)
    }

    /// Intermediate PEM followed by root PEM (MarbleRun's `certificate chain`).
    pub fn chain_pem(&self) -> String {
        let mut s = self.intermediate_pem();
        s.push_str(&self.root_pem());
        s
    }
}

/// Verifies a MarbleRun manifest signature (ECDSA over SHA-256(raw), see
/// [`CaBundle::sign_manifest`]) with the public key of the root certificate `root_cert_der`.
pub fn verify_manifest_signature(
    root_cert_der: &[u8],
    raw: &[u8],
    sig_der: &[u8],
) -> Result<(), CaError> {
    let (key_type, point) = ec_public_key(root_cert_der)?;
    let alg = match key_type {
        KeyType::P256 => &signature::ECDSA_P256_SHA256_ASN1,
        KeyType::P384 => &signature::ECDSA_P384_SHA256_ASN1,
    };
    signature::UnparsedPublicKey::new(alg, point)
        .verify(raw, sig_der)
        .map_err(|_| CaError::BadSignature("manifest signature".into()))
}

/// Splits a comma list (`--dns-names`) into trimmed, non-empty names. IP literals stay strings
/// here and become IP SANs when a certificate is built.
pub fn parse_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// PEM encoding of a DER certificate.
pub fn cert_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// The SANs of the Coordinator certificates (FR-10): each name as a DNS SAN, or as an IP SAN when
/// it parses as an IP literal (brackets allowed), then 127.0.0.1 and ::1; duplicates dropped.
pub fn ca_sans(names: &[String]) -> Result<Vec<SanType>, CaError> {
    let mut out: Vec<SanType> = Vec::new();
    let fixed = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    for name in names {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let san = match bare.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.as_str()
                    .try_into()
                    .map_err(|e| CaError::Generate(format!("DNS name {name:?}: {e}")))?,
            ),
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    for ip in fixed {
        let san = SanType::IpAddress(ip);
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// NotAfter of CA and marble certificates: RFC 5280's "no well-defined expiration date".
pub(crate) fn far_future() -> OffsetDateTime {
    // 9999-12-31T23:59:59Z: GeneralizedTime 99991231235959Z, accepted by webpki and x509-parser.
    rcgen::date_time_ymd(9999, 12, 31) + ::time::Duration::seconds(86_399)
}

/// A random positive serial of at most 128 bits.
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut b = [0u8; 16];
    cairn_crypto::fill_random(&mut b)?;
    b[0] &= 0x7f;
    if b.iter().all(|x| *x == 0) {
        b[15] = 1;
    }
    Ok(SerialNumber::from_slice(&b))
}

/// rcgen key pair for a PKCS#8 ECDSA key of `key_type`.
/// rcgen's signature algorithm for a key of `key_type`.
pub(crate) fn signing_alg(key_type: KeyType) -> &'static rcgen::SignatureAlgorithm {
    match key_type {
        KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    }
}

pub(crate) fn key_pair(key_type: KeyType, pkcs8: &[u8]) -> Result<KeyPair, CaError> {
    let alg = signing_alg(key_type);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), alg)
        .map_err(|_| CaError::InvalidBundle(format!("private key is not a PKCS#8 {key_type} key")))
}

/// The intermediate key as an rcgen issuer named after the intermediate certificate's subject.
pub(crate) fn intermediate_issuer(ca: &CaBundle) -> Result<Issuer<'static, KeyPair>, CaError> {
    let kp = key_pair(ca.key_type, &ca.intermediate_key)?;
    Issuer::from_ca_cert_der(&ca.intermediate_cert.as_slice().into(), kp)
        .map_err(|e| CaError::InvalidBundle(format!("intermediate certificate: {e}")))
}

fn ca_params(
    cn: &str,
    names: &[String],
    now: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.serial_number = Some(random_serial()?);
    p.not_before = now;
    p.not_after = far_future();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.subject_alt_names = ca_sans(names)?;
    Ok(p)
}

/// Curve and uncompressed public point of an ECDSA certificate.
fn ec_public_key(cert_der: &[u8]) -> Result<(KeyType, Vec<u8>), CaError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| CaError::InvalidBundle(format!("certificate: {e}")))?;
    let spki = &cert.tbs_certificate.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or_else(|| CaError::InvalidBundle("certificate key is not ECDSA".into()))?;
    let key_type = if curve == x509_parser::oid_registry::OID_EC_P256 {
        KeyType::P256
    } else if curve == x509_parser::oid_registry::OID_NIST_EC_P384 {
        KeyType::P384
    } else {
        return Err(CaError::InvalidBundle(format!(
            "certificate key curve {curve} is neither P-256 nor P-384"
        )));
    };
    Ok((key_type, spki.subject_public_key.data.to_vec()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn parse_names_splits_and_trims() {
        assert_eq!(
            parse_names(" localhost, 10.0.0.1 ,,example.com"),
            vec!["localhost", "10.0.0.1", "example.com"]
        );
        assert!(parse_names("").is_empty());
    }

    #[test]
    fn bundle_fields_and_sans() {
        for kt in [KeyType::P256, KeyType::P384] {
            let names = parse_names("localhost,10.1.2.3,::1,coord.example");
            let b = CaBundle::generate(kt, &names, now()).unwrap();
            let (_, root) = X509Certificate::from_der(&b.root_cert).unwrap();
            let (_, int) = X509Certificate::from_der(&b.intermediate_cert).unwrap();
            let (_, mr) = X509Certificate::from_der(&b.marble_root_cert).unwrap();
            let cn = |c: &X509Certificate<'_>| {
                c.subject()
                    .iter_common_name()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            assert_eq!(cn(&root), ROOT_CN);
            assert_eq!(cn(&int), INTERMEDIATE_CN);
            assert_eq!(cn(&mr), INTERMEDIATE_CN);
            assert_eq!(root.issuer(), root.subject());
            assert_eq!(int.issuer(), root.subject());
            assert_eq!(mr.issuer(), mr.subject());
            assert_eq!(mr.subject(), int.subject());
            assert_eq!(mr.public_key().raw, int.public_key().raw);
            assert_ne!(root.public_key().raw, int.public_key().raw);
            assert_ne!(mr.raw_serial(), int.raw_serial());
            for c in [&root, &int, &mr] {
                assert!(c.is_ca());
                let ku = c.key_usage().unwrap().unwrap().value;
                assert!(ku.digital_signature() && ku.key_cert_sign());
                let eku = c.extended_key_usage().unwrap().unwrap().value;
                assert!(eku.server_auth && eku.client_auth);
                assert_eq!(c.validity().not_before.timestamp(), now().unix_timestamp());
                assert_eq!(c.validity().not_after.to_datetime().year(), 9999);
                assert!(c.raw_serial().len() <= 16);
                assert!(c.raw_serial()[0] & 0x80 == 0);
                let san = c.subject_alternative_name().unwrap().unwrap().value;
                let got: Vec<String> = san
                    .general_names
                    .iter()
                    .map(|g| match g {
                        GeneralName::DNSName(d) => format!("dns:{d}"),
                        GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                        other => format!("other:{other:?}"),
                    })
                    .collect();
                let want = vec![
                    "dns:localhost".to_string(),
                    format!("ip:{:?}", &[10u8, 1, 2, 3][..]),
                    format!(
                        "ip:{:?}",
                        &[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]
                    ),
                    "dns:coord.example".to_string(),
                    format!("ip:{:?}", &[127u8, 0, 0, 1][..]),
                ];
                assert_eq!(got, want);
            }
            assert_eq!(b.key_type, kt);
        }
    }

    #[test]
    fn rotation_keeps_root_and_replaces_intermediate() {
        let mut b = CaBundle::generate(KeyType::P256, &["localhost".into()], now()).unwrap();
        let old = b.clone();
        b.rotate_intermediate(now() + ::time::Duration::hours(1))
            .unwrap();
        assert_eq!(b.root_cert, old.root_cert);
        assert_eq!(*b.root_key, *old.root_key);
        assert_ne!(b.intermediate_cert, old.intermediate_cert);
        assert_ne!(*b.intermediate_key, *old.intermediate_key);
        assert_ne!(b.marble_root_cert, old.marble_root_cert);
    }

    #[test]
    fn root_and_manifest_signatures_verify() {
        for kt in [KeyType::P256, KeyType::P384] {
            let b = CaBundle::generate(kt, &[], now()).unwrap();
            let sig = b.sign_with_root(b"hello").unwrap();
            b.verify_with_root(b"hello", &sig).unwrap();
            assert!(b.verify_with_root(b"hellO", &sig).is_err());

            let raw = br#"{"Packages":{}}"#;
            let sig = b.sign_manifest(raw).unwrap();
            verify_manifest_signature(&b.root_cert, raw, &sig).unwrap();
            assert!(verify_manifest_signature(&b.root_cert, b"other", &sig).is_err());
            // The signature is over the 32-byte SHA-256 digest, for P-384 too.
            let (_, point) = ec_public_key(&b.root_cert).unwrap();
            let digest_alg: &dyn signature::VerificationAlgorithm = match kt {
                KeyType::P256 => &signature::ECDSA_P256_SHA256_ASN1,
                KeyType::P384 => &signature::ECDSA_P384_SHA256_ASN1,
            };
            signature::UnparsedPublicKey::new(digest_alg, &point)
                .verify(raw, &sig)
                .unwrap();
            let other = CaBundle::generate(kt, &[], now()).unwrap();
            assert!(verify_manifest_signature(&other.root_cert, raw, &sig).is_err());
        }
    }

    #[test]
    fn serde_round_trip_and_debug_hides_keys() {
        let b = CaBundle::generate(KeyType::P384, &["a.example".into()], now()).unwrap();
        let json = serde_json::to_string(&b).unwrap();
        let back: CaBundle = serde_json::from_str(&json).unwrap();
        assert_eq!(back.key_type, KeyType::P384);
        assert_eq!(back.root_cert, b.root_cert);
        assert_eq!(*back.root_key, *b.root_key);
        assert_eq!(*back.intermediate_key, *b.intermediate_key);
        assert_eq!(back.marble_root_cert, b.marble_root_cert);
        assert_eq!(back.names, b.names);
        let dbg = format!("{b:?}");
        let b64 = |k: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(k)
        };
        assert!(!dbg.contains(&b64(&b.root_key)));
        assert!(!dbg.contains(&hex(&b.root_key)));
        assert!(!dbg.contains("root_key"));
        assert!(b.chain_pem().matches("BEGIN CERTIFICATE").count() == 2);
    }
}
