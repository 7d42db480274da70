//! The recovery session: a pure state machine that collects decrypted, signed recovery secrets
//! and yields the candidate data key once enough arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cairn_crypto::{sha256, SecretKey32, Zeroizing};

use crate::data::{RecoveryData, RecoveryMode};
use crate::generate::xor_into;
use crate::{shamir, RecoveryError, RecoveryPublicKey, DATA_KEY_LEN};

/// Where a recovery stands after an accepted submission.
#[derive(Debug)]
pub struct Progress {
    /// Shares still needed to reach the threshold (0 once `data_key` is set).
    pub remaining: u64,
    /// The candidate data key once enough shares arrived. The caller verifies it by unsealing.
    pub data_key: Option<SecretKey32>,
}

/// Collects recovery secrets. A refused submission leaves the session unchanged.
///
/// Single-key mode: every accepted secret (the DEK itself, not otherwise checkable) is returned
/// as a candidate, and the session stays open for another attempt. XOR / Shamir modes: each
/// share must hash to a recorded share and is accepted once; the session completes when the
/// threshold is reached, and later submissions are refused with
/// [`RecoveryError::AlreadyComplete`].
pub struct RecoverySession {
    data: RecoveryData,
    /// Accepted shares: index into `data.entries()` → decrypted share.
    accepted: BTreeMap<usize, Zeroizing<Vec<u8>>>,
    /// Hashes of secrets tried in single-key mode (replay detection).
    tried: BTreeSet<[u8; 32]>,
    data_key: Option<SecretKey32>,
}

impl RecoverySession {
    /// Starts a session over stored `recovery_data`, checking that `keys` (the manifest's
    /// `RecoveryKeys`, or [`RecoveryData::public_keys`] when the manifest is still sealed) are
    /// exactly the keys recorded at generation.
    pub fn new(
        recovery_data: &[u8],
        keys: &BTreeMap<String, RecoveryPublicKey>,
    ) -> Result<Self, RecoveryError> {
        let data = RecoveryData::parse(recovery_data)?;
        if data.mode() == RecoveryMode::None {
            return Err(RecoveryError::RecoveryImpossible);
        }
        data.check_keys(keys)?;
        Ok(Self {
            data,
            accepted: BTreeMap::new(),
            tried: BTreeSet::new(),
            data_key: None,
        })
    }

    /// Submits a decrypted recovery secret with its RSA PKCS#1 v1.5 SHA-256 signature by the
    /// owning recovery key.
    pub fn submit(&mut self, secret: &[u8], signature: &[u8]) -> Result<Progress, RecoveryError> {
        if self.data_key.is_some() {
            return Err(RecoveryError::AlreadyComplete);
        }
        let expected = self.data.secret_len();
        if secret.len() != expected {
            return Err(RecoveryError::SecretLength {
                expected,
                actual: secret.len(),
            });
        }
        let hash = sha256(secret);
        let entries = self.data.entries();
        // Indexing: `owner` comes from `position` over `entries`, or is 0 in single mode (n == 1).
        let owner = match self.data.mode() {
            RecoveryMode::Single => {
                if self.tried.contains(&hash) {
                    return Err(RecoveryError::ReplayedShare(entries[0].name.clone()));
                }
                0
            }
            _ => {
                let idx = entries
                    .iter()
                    .position(|e| e.share_sha256 == Some(hash))
                    .ok_or(RecoveryError::UnknownShare)?;
                if self.accepted.contains_key(&idx) {
                    return Err(RecoveryError::ReplayedShare(entries[idx].name.clone()));
                }
                idx
            }
        };
        // Invariant: a secret is only ever accepted under a signature by its owner's key.
        if !entries[owner].key.verify(secret, signature) {
            return Err(
                match entries.iter().find(|e| e.key.verify(secret, signature)) {
                    Some(other) => RecoveryError::WrongSigner {
                        owner: entries[owner].name.clone(),
                        signer: other.name.clone(),
                    },
                    None => RecoveryError::BadSignature,
                },
            );
        }

        if self.data.mode() == RecoveryMode::Single {
            self.tried.insert(hash);
            let key = SecretKey32::from_slice(secret).map_err(|_| RecoveryError::SecretLength {
                expected: DATA_KEY_LEN,
                actual: secret.len(),
            })?;
            return Ok(Progress {
                remaining: 0,
                data_key: Some(key),
            });
        }

        let have = self.accepted.len() as u64 + 1;
        let threshold = self.data.threshold();
        let data_key = if have >= threshold {
            Some(self.combine_with(secret)?)
        } else {
            None
        };
        // Commit only after every fallible step succeeded.
        self.accepted.insert(owner, Zeroizing::new(secret.to_vec()));
        self.data_key = data_key.clone();
        Ok(Progress {
            remaining: threshold.saturating_sub(have),
            data_key,
        })
    }

    /// Shares still needed to reach the threshold.
    pub fn remaining(&self) -> u64 {
        if self.data_key.is_some() {
            return 0;
        }
        match self.data.mode() {
            RecoveryMode::Single => 1,
            _ => self
                .data
                .threshold()
                .saturating_sub(self.accepted.len() as u64),
        }
    }

    /// The candidate data key, once the threshold was reached (XOR / Shamir modes).
    pub fn data_key(&self) -> Option<&SecretKey32> {
        self.data_key.as_ref()
    }

    /// Names of the recovery keys whose shares were accepted, in name order.
    pub fn signers(&self) -> Vec<&str> {
        let entries = self.data.entries();
        self.accepted
            .keys()
            .map(|&i| entries[i].name.as_str())
            .collect()
    }

    /// The parsed recovery data.
    pub fn recovery_data(&self) -> &RecoveryData {
        &self.data
    }

    /// Combines the accepted shares plus `extra` into the candidate data key.
    fn combine_with(&self, extra: &[u8]) -> Result<SecretKey32, RecoveryError> {
        let mut shares: Vec<&[u8]> = self.accepted.values().map(|s| &s[..]).collect();
        shares.push(extra);
        let key = match self.data.mode() {
            RecoveryMode::Shamir => shamir::combine(&shares)?,
            _ => {
                let mut acc = Zeroizing::new(vec![0u8; DATA_KEY_LEN]);
                for s in &shares {
                    xor_into(&mut acc, s);
                }
                acc
            }
        };
        SecretKey32::from_slice(&key).map_err(|_| RecoveryError::Combine)
    }
}

impl fmt::Debug for RecoverySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoverySession")
            .field("mode", &self.data.mode())
            .field("threshold", &self.data.threshold())
            .field("signers", &self.signers())
            .field("remaining", &self.remaining())
            .field("complete", &self.data_key.is_some())
            .finish()
    }
}
