//! Recovery public keys, the client-side helpers (decrypt and sign a share with a recovery
//! private key) and the Coordinator's ephemeral RSA-4096 transport key.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{self, RsaKeyPair};
use cairn_crypto::{sha256, Zeroizing};

use crate::RecoveryError;

/// An RSA recovery public key from the manifest's `RecoveryKeys` (PKIX `SubjectPublicKeyInfo`).
#[derive(Clone)]
pub struct RecoveryPublicKey {
    spki_der: Vec<u8>,
    fingerprint: [u8; 32],
    key: PublicEncryptingKey,
}

/// Parses a recovery key: a PKIX `PUBLIC KEY` PEM holding an RSA key (2048 to 8192 bits).
/// PKCS#1 `RSA PUBLIC KEY` blocks and non-RSA keys (EC, Ed25519, ...) are refused.
pub fn parse_recovery_key(pem_text: &str) -> Result<RecoveryPublicKey, RecoveryError> {
    let block = pem::parse(pem_text.trim()).map_err(|_| RecoveryError::NotPem)?;
    match block.tag() {
        "PUBLIC KEY" => RecoveryPublicKey::from_spki_der(block.contents()),
        "RSA PUBLIC KEY" => Err(RecoveryError::Pkcs1PublicKey),
        other => Err(RecoveryError::UnexpectedPemLabel {
            found: other.to_owned(),
            expected: "PUBLIC KEY",
        }),
    }
}

impl RecoveryPublicKey {
    /// Parses a DER `SubjectPublicKeyInfo` that must carry an `rsaEncryption` key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, RecoveryError> {
        match spki_algorithm(der) {
            Some(oid) if oid == OID_RSA_ENCRYPTION => {}
            Some(oid) => return Err(RecoveryError::NotRsa(algorithm_name(oid))),
            None => {
                return Err(RecoveryError::InvalidPublicKey(
                    "not a DER SubjectPublicKeyInfo",
                ))
            }
        }
        let key = PublicEncryptingKey::from_der(der)
            .map_err(|e| RecoveryError::InvalidPublicKey(e.description_()))?;
        Ok(Self {
            spki_der: der.to_vec(),
            fingerprint: sha256(der),
            key,
        })
    }

    /// The PKIX `SubjectPublicKeyInfo` DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the `SubjectPublicKeyInfo` DER.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The RSA modulus size in bits.
    pub fn key_size_bits(&self) -> usize {
        self.key.key_size_bits()
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256, no label) encryption to this key.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, RecoveryError> {
        oaep_encrypt(self.key.clone(), plaintext)
    }

    /// Whether `signature` is an RSA PKCS#1 v1.5 SHA-256 signature over `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.spki_der)
            .verify(message, signature)
            .is_ok()
    }
}

impl PartialEq for RecoveryPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der == other.spki_der
    }
}

impl Eq for RecoveryPublicKey {}

impl fmt::Debug for RecoveryPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryPublicKey")
            .field("bits", &self.key_size_bits())
            .field("sha256", &hex::encode(self.fingerprint))
            .finish()
    }
}

/// Decrypts a recovery secret (RSA-OAEP SHA-256, no label) with a recovery private key given as
/// PEM: PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`.
pub fn decrypt_secret(
    private_key_pem: &str,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, RecoveryError> {
    let pkcs8 = private_key_pkcs8(private_key_pem)?;
    let key = PrivateDecryptingKey::from_pkcs8(&pkcs8)
        .map_err(|e| RecoveryError::InvalidPrivateKey(e.description_()))?;
    oaep_decrypt(key, ciphertext)
}

/// Signs a decrypted recovery secret: RSA PKCS#1 v1.5 over SHA-256 of `secret`, with a recovery
/// private key given as PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn sign_secret(private_key_pem: &str, secret: &[u8]) -> Result<Vec<u8>, RecoveryError> {
    let pkcs8 = private_key_pkcs8(private_key_pem)?;
    let pair = RsaKeyPair::from_pkcs8(&pkcs8)
        .map_err(|e| RecoveryError::InvalidPrivateKey(e.description_()))?;
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        secret,
        &mut sig,
    )
    .map_err(|_| RecoveryError::Signing)?;
    Ok(sig)
}

/// RSA-OAEP (SHA-256, no label) encryption to a PKIX DER RSA public key, e.g. the Coordinator's
/// ephemeral key from `GET /api/v2/recover/public-key`.
pub fn encrypt_to(public_pkix_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, RecoveryError> {
    let key = PublicEncryptingKey::from_der(public_pkix_der)
        .map_err(|e| RecoveryError::InvalidPublicKey(e.description_()))?;
    oaep_encrypt(key, plaintext)
}

/// The Coordinator's ephemeral RSA-4096 key for recovery secrets sent encrypted (RSA-OAEP
/// SHA-256). Lives in memory only; `Debug` shows no key material.
pub struct EphemeralKey {
    key: PrivateDecryptingKey,
    public_der: Vec<u8>,
}

impl EphemeralKey {
    /// Generates a fresh RSA-4096 key.
    pub fn generate() -> Result<Self, RecoveryError> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa4096)
            .map_err(|_| RecoveryError::KeyGeneration)?;
        let public_der = key
            .public_key()
            .as_der()
            .map_err(|_| RecoveryError::KeyGeneration)?
            .as_ref()
            .to_vec();
        Ok(Self { key, public_der })
    }

    /// The public key as PKIX `SubjectPublicKeyInfo` DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Decrypts a ciphertext made with [`encrypt_to`] for this key.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, RecoveryError> {
        oaep_decrypt(self.key.clone(), ciphertext)
    }
}

impl fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralKey")
            .field("public_sha256", &hex::encode(sha256(&self.public_der)))
            .finish_non_exhaustive()
    }
}

fn oaep_encrypt(key: PublicEncryptingKey, plaintext: &[u8]) -> Result<Vec<u8>, RecoveryError> {
    let key = OaepPublicEncryptingKey::new(key).map_err(|_| RecoveryError::Encrypt)?;
    if plaintext.len() > key.max_plaintext_size(&OAEP_SHA256_MGF1SHA256) {
        return Err(RecoveryError::Encrypt);
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
        .map_err(|_| RecoveryError::Encrypt)?
        .len();
    out.truncate(len);
    Ok(out)
}

fn oaep_decrypt(
    key: PrivateDecryptingKey,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, RecoveryError> {
    let key = OaepPrivateDecryptingKey::new(key).map_err(|_| RecoveryError::Decrypt)?;
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let len = key
        .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
        .map_err(|_| RecoveryError::Decrypt)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// The private key of a PEM block as PKCS#8 DER (PKCS#1 keys are re-encoded).
fn private_key_pkcs8(private_key_pem: &str) -> Result<Zeroizing<Vec<u8>>, RecoveryError> {
    let block = pem::parse(private_key_pem.trim()).map_err(|_| RecoveryError::NotPem)?;
    let tag = block.tag().to_owned();
    // Invariant: the DER of a private key only ever lives in zeroizing buffers from here on.
    let der = Zeroizing::new(block.into_contents());
    match tag.as_str() {
        "PRIVATE KEY" => Ok(der),
        "RSA PRIVATE KEY" => {
            let pair = RsaKeyPair::from_der(&der)
                .map_err(|e| RecoveryError::InvalidPrivateKey(e.description_()))?;
            let pkcs8 = pair
                .as_der()
                .map_err(|_| RecoveryError::InvalidPrivateKey("cannot re-encode as PKCS#8"))?;
            Ok(Zeroizing::new(pkcs8.as_ref().to_vec()))
        }
        _ => Err(RecoveryError::UnexpectedPemLabel {
            found: tag,
            expected: "PRIVATE KEY or RSA PRIVATE KEY",
        }),
    }
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// A readable name for a public-key algorithm OID (DER content bytes).
fn algorithm_name(oid: &[u8]) -> &'static str {
    match oid {
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01] => "EC",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a] => "RSA-PSS",
        [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01] => "DSA",
        [0x2b, 0x65, 0x70] => "Ed25519",
        [0x2b, 0x65, 0x71] => "Ed448",
        [0x2b, 0x65, 0x6e] => "X25519",
        [0x2b, 0x65, 0x6f] => "X448",
        _ => "non-RSA",
    }
}

/// The algorithm OID of a DER `SubjectPublicKeyInfo`, if it is one.
fn spki_algorithm(der: &[u8]) -> Option<&[u8]> {
    let (spki, rest) = der_tlv(der, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (alg, key) = der_tlv(spki, 0x30)?;
    der_tlv(key, 0x03)?;
    let (oid, _params) = der_tlv(alg, 0x06)?;
    Some(oid)
}

/// Splits one DER element with `tag` off `input`: (contents, rest).
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, input) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let (bytes, rest) = input.split_at(n);
        input = rest;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if input.len() < len {
        return None;
    }
    Some(input.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUB1: &str = include_str!("../../../testdata/manifests/keys/recovery1.pub");
    const KEY1: &str = include_str!("../../../testdata/manifests/keys/recovery1.key");
    const PUB2: &str = include_str!("../../../testdata/manifests/keys/recovery2.pub");
    const PKCS1_PUB: &str = include_str!("../../../testdata/manifests/keys/recovery1.pkcs1.pub");
    const EC_PUB: &str = include_str!("../../../testdata/manifests/keys/ec-recovery.pub");
    const ALICE_KEY: &str = include_str!("../../../testdata/manifests/keys/alice.key");

    #[test]
    fn parses_pkix_rsa_key() {
        let k = parse_recovery_key(PUB1).expect("recovery1.pub");
        assert_eq!(k.key_size_bits(), 2048);
        assert_eq!(k.fingerprint(), sha256(k.spki_der()));
        assert_ne!(k, parse_recovery_key(PUB2).expect("recovery2.pub"));
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&hex::encode(k.fingerprint())), "{dbg}");
    }

    #[test]
    fn rejects_pkcs1_ec_and_garbage() {
        assert_eq!(
            parse_recovery_key(PKCS1_PUB),
            Err(RecoveryError::Pkcs1PublicKey)
        );
        let err = parse_recovery_key(EC_PUB).expect_err("EC key");
        assert_eq!(err, RecoveryError::NotRsa("EC"));
        assert_eq!(
            err.to_string(),
            "recovery key is a EC key; only RSA keys are supported"
        );
        assert_eq!(parse_recovery_key("not a key"), Err(RecoveryError::NotPem));
        assert_eq!(
            parse_recovery_key(KEY1),
            Err(RecoveryError::UnexpectedPemLabel {
                found: "PRIVATE KEY".into(),
                expected: "PUBLIC KEY"
            })
        );
        let junk = pem::encode(&pem::Pem::new(
            "PUBLIC KEY",
            vec![0x30, 0x03, 0x02, 0x01, 0x00],
        ));
        assert!(matches!(
            parse_recovery_key(&junk),
            Err(RecoveryError::InvalidPublicKey(_))
        ));
    }

    #[test]
    fn oaep_round_trip_and_signature() {
        let k = parse_recovery_key(PUB1).expect("pub");
        let ct = k
            .encrypt(b"thirty-two bytes of secret data!")
            .expect("encrypt");
        assert_eq!(ct.len(), 256);
        let pt = decrypt_secret(KEY1, &ct).expect("decrypt");
        assert_eq!(&pt[..], b"thirty-two bytes of secret data!");
        let mut bad = ct.clone();
        bad[10] ^= 1;
        assert_eq!(decrypt_secret(KEY1, &bad), Err(RecoveryError::Decrypt));

        let sig = sign_secret(KEY1, &pt).expect("sign");
        assert_eq!(sig.len(), 256);
        assert!(k.verify(&pt, &sig));
        assert!(!k.verify(b"other", &sig));
        assert!(!parse_recovery_key(PUB2).expect("pub2").verify(&pt, &sig));
    }

    #[test]
    fn pkcs1_private_key_is_accepted() {
        // Re-encode recovery1.key (PKCS#8) as PKCS#1 and check both forms agree.
        let pkcs8 = private_key_pkcs8(KEY1).expect("pkcs8");
        let pair = RsaKeyPair::from_pkcs8(&pkcs8).expect("pair");
        let pkcs1 = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", pkcs1_from_pkcs8(&pkcs8)));
        assert_eq!(
            &private_key_pkcs8(&pkcs1).expect("pkcs1")[..],
            pair.as_der().expect("der").as_ref()
        );
        let k = parse_recovery_key(PUB1).expect("pub");
        let ct = k.encrypt(&[9u8; 33]).expect("encrypt");
        assert_eq!(
            &decrypt_secret(&pkcs1, &ct).expect("decrypt")[..],
            &[9u8; 33]
        );
        assert!(k.verify(b"x", &sign_secret(&pkcs1, b"x").expect("sign")));
    }

    #[test]
    fn non_rsa_private_key_is_refused() {
        assert!(matches!(
            sign_secret(ALICE_KEY, b"x"),
            Err(RecoveryError::InvalidPrivateKey(_))
                | Err(RecoveryError::UnexpectedPemLabel { .. })
        ));
        assert_eq!(decrypt_secret("", b"x"), Err(RecoveryError::NotPem));
    }

    #[test]
    fn ephemeral_key_round_trip() {
        let eph = EphemeralKey::generate().expect("generate");
        let public = RecoveryPublicKey::from_spki_der(eph.public_key_der()).expect("pkix rsa");
        assert_eq!(public.key_size_bits(), 4096);
        let ct = encrypt_to(eph.public_key_der(), &[7u8; 32]).expect("encrypt");
        assert_eq!(ct.len(), 512);
        assert_eq!(&eph.decrypt(&ct).expect("decrypt")[..], &[7u8; 32]);
        assert_eq!(eph.decrypt(&ct[1..]), Err(RecoveryError::Decrypt));
        assert!(!format!("{eph:?}").contains("PrivateDecryptingKey("));
        assert!(matches!(
            encrypt_to(b"junk", b"x"),
            Err(RecoveryError::InvalidPublicKey(_))
        ));
    }

    /// Extracts the PKCS#1 `RSAPrivateKey` from the OCTET STRING of a PKCS#8 document.
    fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
        let (body, _) = der_tlv(pkcs8, 0x30).expect("seq");
        let (_, rest) = der_tlv(body, 0x02).expect("version");
        let (_, rest) = der_tlv(rest, 0x30).expect("alg");
        let (octets, _) = der_tlv(rest, 0x04).expect("octets");
        octets.to_vec()
    }
}
