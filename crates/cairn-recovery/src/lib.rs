//! Recovery of the data encryption key (DEK) with the manifest's `RecoveryKeys`.
//!
//! [`generate`] makes a DEK and splits it for the recovery keys (one key: the DEK itself;
//! all keys: XOR shares; `RecoveryThreshold` k of n: Shamir shares over GF(256), byte-compatible
//! with MarbleRun). [`RecoverySession`] is the pure state machine that collects signed shares and
//! yields the candidate DEK. The offline client helpers ([`decrypt_secret`], [`sign_secret`],
//! [`encrypt_to`], [`EphemeralKey`]) live here too. No I/O, no clock, no environment.

mod data;
mod generate;
mod keys;
mod session;
mod shamir;

pub use cairn_crypto::{SecretKey32, Zeroizing};

pub use data::{RecoveryData, RecoveryMode, RECOVERY_DATA_VERSION};
pub use generate::{generate, Generated};
pub use keys::{
    decrypt_secret, encrypt_to, parse_recovery_key, sign_secret, EphemeralKey, RecoveryPublicKey,
};
pub use session::{Progress, RecoverySession};

/// Length of a data key and of an XOR share.
pub const DATA_KEY_LEN: usize = 32;
/// Length of a Shamir share: 32 y-bytes followed by one x-coordinate byte (MarbleRun's layout).
pub const SHAMIR_SHARE_LEN: usize = 33;
/// Largest number of Shamir shares (the x-coordinate is one non-zero byte).
pub const MAX_SHAMIR_SHARES: usize = 255;

/// Errors of recovery-key parsing, DEK generation and the recovery session.
/// Messages never contain secrets, shares or private-key bytes.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// The text is not PEM.
    #[error("the key is not PEM-encoded")]
    NotPem,
    /// A PKCS#1 `RSA PUBLIC KEY` block was given where a PKIX `PUBLIC KEY` is required.
    #[error(
        "recovery key is a PKCS#1 \"RSA PUBLIC KEY\" PEM; a PKIX \"PUBLIC KEY\" PEM is required \
         (convert with `openssl rsa -RSAPublicKey_in -pubout`)"
    )]
    Pkcs1PublicKey,
    /// The PEM block has an unexpected label.
    #[error("unexpected PEM block \"{found}\", expected \"{expected}\"")]
    UnexpectedPemLabel {
        /// the label that was found
        found: String,
        /// the label(s) that were expected
        expected: &'static str,
    },
    /// The public key is not an RSA key.
    #[error("recovery key is a {0} key; only RSA keys are supported")]
    NotRsa(&'static str),
    /// The public key could not be parsed or was rejected (size, encoding).
    #[error("invalid RSA public key: {0}")]
    InvalidPublicKey(&'static str),
    /// The private key could not be parsed or was rejected.
    #[error("invalid RSA private key: {0}")]
    InvalidPrivateKey(&'static str),
    /// The recovery threshold does not fit the number of recovery keys.
    #[error(
        "invalid recovery threshold {threshold} for {keys} recovery key(s): \
         use 0 (all keys) or a value from 2 to the number of keys"
    )]
    InvalidThreshold {
        /// the requested threshold
        threshold: u64,
        /// the number of recovery keys
        keys: usize,
    },
    /// More recovery keys than Shamir sharing over GF(256) supports.
    #[error("{0} recovery keys exceed the Shamir limit of 255")]
    TooManyKeys(usize),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// RSA-OAEP encryption failed (plaintext too long for the key, or the key is unusable).
    #[error("RSA-OAEP encryption failed")]
    Encrypt,
    /// RSA-OAEP decryption failed: wrong key or modified ciphertext.
    #[error("RSA-OAEP decryption failed: wrong private key or modified ciphertext")]
    Decrypt,
    /// RSA key generation failed.
    #[error("RSA key generation failed")]
    KeyGeneration,
    /// RSA signing failed.
    #[error("RSA signing failed")]
    Signing,
    /// The recovery data is malformed.
    #[error("invalid recovery data: {0}")]
    InvalidRecoveryData(String),
    /// The recovery data records no recovery keys: the state cannot be recovered.
    #[error("no recovery keys were set in the manifest: the state cannot be recovered")]
    RecoveryImpossible,
    /// The recovery keys given to the session do not match the ones in the recovery data.
    #[error("recovery key \"{0}\" does not match the recovery data")]
    KeyMismatch(String),
    /// The submitted secret has the wrong length for this recovery mode.
    #[error("recovery secret must be {expected} bytes, got {actual}")]
    SecretLength {
        /// expected length in bytes
        expected: usize,
        /// actual length in bytes
        actual: usize,
    },
    /// The submitted share is not one of the shares recorded in the recovery data.
    #[error("unknown recovery share")]
    UnknownShare,
    /// The submitted share was already accepted.
    #[error("recovery share of key \"{0}\" was already submitted")]
    ReplayedShare(String),
    /// The signature does not verify with any of the manifest's recovery keys.
    #[error("the signature does not verify with any recovery key")]
    BadSignature,
    /// The share was signed by a recovery key other than its owner.
    #[error("the share of recovery key \"{owner}\" was signed by recovery key \"{signer}\"")]
    WrongSigner {
        /// the key the share was encrypted to
        owner: String,
        /// the key that signed it
        signer: String,
    },
    /// Enough shares were already collected.
    #[error("recovery already has enough shares")]
    AlreadyComplete,
    /// The Shamir shares could not be combined.
    #[error("the recovery shares could not be combined")]
    Combine,
}
