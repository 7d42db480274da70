//! The one crypto provider of Cairn (aws-lc-rs) and the primitives every other crate uses:
//! hashing, randomness, ECDSA key generation and signing, AES-256-GCM sealing and HKDF.
//!
//! No I/O happens here. Binaries call [`install_default_provider`] first thing; libraries
//! build rustls configs with [`provider`] (`builder_with_provider`), never the process default.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest;
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};

/// Errors of the crypto layer. Messages never contain key material.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Key generation failed.
    #[error("key generation failed for {0}")]
    KeyGeneration(&'static str),
    /// A private key could not be parsed.
    #[error("the private key is not a valid PKCS#8 {0} key")]
    InvalidPrivateKey(&'static str),
    /// Signing failed.
    #[error("signing failed")]
    Signing,
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A key has the wrong length.
    #[error("key must be {expected} bytes, got {actual}")]
    KeyLength {
        /// expected length in bytes
        expected: usize,
        /// actual length in bytes
        actual: usize,
    },
    /// Authenticated decryption failed: wrong key, or the data was modified.
    #[error("authenticated decryption failed: the data was modified or the key is wrong")]
    Decrypt,
    /// Sealed data is shorter than a nonce plus a tag.
    #[error("sealed data is truncated ({0} bytes)")]
    Truncated(usize),
    /// HKDF output length is out of range.
    #[error("HKDF output length {0} is out of range")]
    HkdfLength(usize),
}

/// The rustls crypto provider Cairn uses everywhere (aws-lc-rs).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent; call first thing in `main`.
pub fn install_default_provider() {
    // An Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha256_concat(&[data])
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256_concat(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> [u8; 48] {
    let mut out = [0u8; 48];
    out.copy_from_slice(digest::digest(&digest::SHA384, data).as_ref());
    out
}

/// Fills `buf` from the system CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptoError::Random)
}

/// `n` random bytes from the system CSPRNG.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, CryptoError> {
    let mut v = vec![0u8; n];
    fill_random(&mut v)?;
    Ok(v)
}

/// 32 random bytes, zeroized on drop.
pub fn random_key32() -> Result<SecretKey32, CryptoError> {
    let mut k = [0u8; 32];
    fill_random(&mut k)?;
    Ok(SecretKey32(k))
}

/// A 256-bit secret key (AES-256 data key, seal key, root secret). Zeroized on drop; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey32(pub [u8; 32]);

impl SecretKey32 {
    /// Builds a key from a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::KeyLength {
            expected: 32,
            actual: bytes.len(),
        })?;
        Ok(Self(arr))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for SecretKey32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretKey32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey32(<redacted>)")
    }
}

/// ECDSA curves Cairn generates keys on for CA, marble and activation keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// NIST P-256 with SHA-256 (default).
    #[default]
    P256,
    /// NIST P-384 with SHA-384 (MarbleRun 1.9's choice).
    P384,
}

impl KeyType {
    /// Parses `p256` / `p384` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" => Some(Self::P256),
            "p384" | "p-384" => Some(Self::P384),
            _ => None,
        }
    }

    fn signing_alg(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::P256 => "ECDSA P-256",
            Self::P384 => "ECDSA P-384",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
        })
    }
}

/// Generates an ECDSA key and returns it as PKCS#8 v1 DER (what rcgen and rustls import).
pub fn generate_ecdsa_pkcs8(key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(key_type.signing_alg(), &rng)
        .map_err(|_| CryptoError::KeyGeneration(key_type.name()))?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// Signs `msg` with a PKCS#8 ECDSA key of `key_type`; ASN.1 DER signature (SHA-256 for P-256,
/// SHA-384 for P-384).
pub fn ecdsa_sign_der(key_type: KeyType, pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kp = EcdsaKeyPair::from_pkcs8(key_type.signing_alg(), pkcs8)
        .map_err(|_| CryptoError::InvalidPrivateKey(key_type.name()))?;
    let sig = kp
        .sign(&SystemRandom::new(), msg)
        .map_err(|_| CryptoError::Signing)?;
    Ok(sig.as_ref().to_vec())
}

/// Signs `msg` with a PKCS#8 P-256 key, returning the fixed 64-byte r‖s form used by SGX
/// quotes, QE reports and Intel collateral.
pub fn p256_sign_fixed(pkcs8: &[u8], msg: &[u8]) -> Result<[u8; 64], CryptoError> {
    let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|_| CryptoError::InvalidPrivateKey("ECDSA P-256"))?;
    let sig = kp
        .sign(&SystemRandom::new(), msg)
        .map_err(|_| CryptoError::Signing)?;
    let mut out = [0u8; 64];
    out.copy_from_slice(sig.as_ref());
    Ok(out)
}

/// The uncompressed SEC1 public point (0x04 ‖ x ‖ y) of a PKCS#8 ECDSA key.
pub fn ecdsa_public_point(key_type: KeyType, pkcs8: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kp = EcdsaKeyPair::from_pkcs8(key_type.signing_alg(), pkcs8)
        .map_err(|_| CryptoError::InvalidPrivateKey(key_type.name()))?;
    Ok(kp.public_key().as_ref().to_vec())
}

/// Verifies an ASN.1 DER ECDSA signature against an uncompressed public point.
pub fn ecdsa_verify_der(
    key_type: KeyType,
    public_point: &[u8],
    msg: &[u8],
    sig_der: &[u8],
) -> Result<(), CryptoError> {
    let alg: &dyn signature::VerificationAlgorithm = match key_type {
        KeyType::P256 => &signature::ECDSA_P256_SHA256_ASN1,
        KeyType::P384 => &signature::ECDSA_P384_SHA384_ASN1,
    };
    signature::UnparsedPublicKey::new(alg, public_point)
        .verify(msg, sig_der)
        .map_err(|_| CryptoError::BadSignature)
}

/// AES-256-GCM: returns `nonce(12) ‖ ciphertext ‖ tag(16)` with a random nonce.
pub fn aead_seal(key: &SecretKey32, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let unbound =
        UnboundKey::new(&AES_256_GCM, key.as_bytes()).map_err(|_| CryptoError::KeyLength {
            expected: 32,
            actual: key.0.len(),
        })?;
    let key = LessSafeKey::new(unbound);
    let mut nonce_bytes = [0u8; NONCE_LEN];
    fill_random(&mut nonce_bytes)?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| CryptoError::Signing)?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Opens data produced by [`aead_seal`]. Any modified byte (nonce, ciphertext, tag or AAD) fails.
pub fn aead_open(
    key: &SecretKey32,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let tag_len = AES_256_GCM.tag_len();
    if sealed.len() < NONCE_LEN + tag_len {
        return Err(CryptoError::Truncated(sealed.len()));
    }
    let unbound =
        UnboundKey::new(&AES_256_GCM, key.as_bytes()).map_err(|_| CryptoError::Decrypt)?;
    let key = LessSafeKey::new(unbound);
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

struct HkdfLen(usize);

impl hkdf::KeyType for HkdfLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869): extract with `salt`, expand with `info` to `len` bytes.
pub fn hkdf_sha256(
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if len == 0 || len > 255 * 32 {
        return Err(CryptoError::HkdfLength(len));
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info_parts = [info];
    let okm = prk
        .expand(&info_parts, HkdfLen(len))
        .map_err(|_| CryptoError::HkdfLength(len))?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    okm.fill(&mut out)
        .map_err(|_| CryptoError::HkdfLength(len))?;
    Ok(out)
}

/// Constant-time equality for secrets and MACs.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

pub use aead::NONCE_LEN as AEAD_NONCE_LEN;
/// Re-exported so dependents name one `Zeroizing`.
pub use zeroize::{Zeroize, Zeroizing};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_concat(&[b"a", b"bc"]), sha256(b"abc"));
    }

    #[test]
    fn hkdf_rfc5869_case1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let okm = hkdf_sha256(&ikm, &salt, &info, 42).expect("hkdf");
        assert_eq!(
            hex(&okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        assert_eq!(
            hkdf_sha256(&ikm, &salt, &info, 0),
            Err(CryptoError::HkdfLength(0))
        );
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = random_key32().expect("key");
        let sealed = aead_seal(&key, b"state", b"hdr").expect("seal");
        assert_eq!(
            &aead_open(&key, &sealed, b"hdr").expect("open")[..],
            b"state"
        );
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(
                aead_open(&key, &t, b"hdr"),
                Err(CryptoError::Decrypt),
                "byte {i}"
            );
        }
        assert_eq!(aead_open(&key, &sealed, b"hdX"), Err(CryptoError::Decrypt));
        assert_eq!(
            aead_open(&key, &sealed[..10], b"hdr"),
            Err(CryptoError::Truncated(10))
        );
        let other = random_key32().expect("key");
        assert_eq!(
            aead_open(&other, &sealed, b"hdr"),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn ecdsa_sign_verify_both_curves() {
        for kt in [KeyType::P256, KeyType::P384] {
            let key = generate_ecdsa_pkcs8(kt).expect("gen");
            let sig = ecdsa_sign_der(kt, &key, b"msg").expect("sign");
            let point = ecdsa_public_point(kt, &key).expect("point");
            ecdsa_verify_der(kt, &point, b"msg", &sig).expect("verify");
            assert_eq!(
                ecdsa_verify_der(kt, &point, b"msh", &sig),
                Err(CryptoError::BadSignature)
            );
        }
        let key = generate_ecdsa_pkcs8(KeyType::P256).expect("gen");
        let fixed = p256_sign_fixed(&key, b"quote").expect("sign");
        assert_eq!(fixed.len(), 64);
        assert_eq!(
            ecdsa_sign_der(KeyType::P384, &key, b"x"),
            Err(CryptoError::InvalidPrivateKey("ECDSA P-384"))
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let k = SecretKey32([7u8; 32]);
        assert_eq!(format!("{k:?}"), "SecretKey32(<redacted>)");
        assert!(SecretKey32::from_slice(&[0u8; 31]).is_err());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
