//! Data-key generation and splitting for the manifest's recovery keys.

use std::collections::BTreeMap;
use std::fmt;

use cairn_crypto::{random_key32, sha256, SecretKey32, Zeroizing};

use crate::data::{Entry, RecoveryData, RecoveryMode};
use crate::{shamir, RecoveryError, RecoveryPublicKey, DATA_KEY_LEN};

/// A fresh data key with its recovery material.
pub struct Generated {
    /// The data encryption key (DEK) of the sealed state.
    pub data_key: SecretKey32,
    /// Public recovery data (JSON, see README.md) for the sealed blob's recovery-data slot.
    pub recovery_data: Vec<u8>,
    /// RSA-OAEP-SHA256 ciphertext of each key's secret (DEK or share), by key name. Returned to
    /// the manifest owner once, never stored.
    pub secrets: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field("data_key", &self.data_key)
            .field("recovery_data_len", &self.recovery_data.len())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Generates a random data key and splits it for `keys` under `threshold` (the manifest's
/// `RecoveryThreshold`): no keys → no secrets; one key → the DEK itself; threshold 0 or n → n
/// XOR shares; 2 ≤ threshold < n → Shamir shares. Threshold 1, or above n, is refused.
pub fn generate(
    keys: &BTreeMap<String, RecoveryPublicKey>,
    threshold: u64,
) -> Result<Generated, RecoveryError> {
    let n = keys.len();
    let n64 = n as u64;
    let invalid = RecoveryError::InvalidThreshold { threshold, keys: n };
    let mode = match (n, threshold) {
        (_, 1) => return Err(invalid),
        (_, t) if t > n64 => return Err(invalid),
        (0, _) => RecoveryMode::None,
        (1, _) => RecoveryMode::Single,
        (_, t) if t == 0 || t == n64 => RecoveryMode::Xor,
        _ => RecoveryMode::Shamir,
    };
    let data_key = random_key32().map_err(|_| RecoveryError::Random)?;
    // Secret material per key, in key-name order; zeroized on drop.
    let plain: Vec<Zeroizing<Vec<u8>>> = match mode {
        RecoveryMode::None => Vec::new(),
        RecoveryMode::Single => vec![Zeroizing::new(data_key.as_bytes().to_vec())],
        RecoveryMode::Xor => xor_shares(&data_key, n)?,
        RecoveryMode::Shamir => {
            let k = usize::try_from(threshold).map_err(|_| invalid.clone())?;
            shamir::split(data_key.as_bytes(), k, n)?
        }
    };
    let effective_threshold = match mode {
        RecoveryMode::None => 0,
        RecoveryMode::Single => 1,
        RecoveryMode::Xor => n64,
        RecoveryMode::Shamir => threshold,
    };
    let mut entries = Vec::with_capacity(n);
    let mut secrets = BTreeMap::new();
    for ((name, key), secret) in keys.iter().zip(plain.iter()) {
        secrets.insert(name.clone(), key.encrypt(secret)?);
        entries.push(Entry {
            name: name.clone(),
            key: key.clone(),
            // Invariant: the DEK itself is never hashed into public data (single mode).
            share_sha256: (mode != RecoveryMode::Single).then(|| sha256(secret)),
        });
    }
    let recovery_data = RecoveryData::new(mode, effective_threshold, entries)?.to_json()?;
    Ok(Generated {
        data_key,
        recovery_data,
        secrets,
    })
}

/// `n` shares whose XOR is `data_key`: n-1 random shares and one computed share.
fn xor_shares(data_key: &SecretKey32, n: usize) -> Result<Vec<Zeroizing<Vec<u8>>>, RecoveryError> {
    let mut last = Zeroizing::new(data_key.as_bytes().to_vec());
    let mut shares = Vec::with_capacity(n);
    for _ in 1..n {
        let share = random_key32().map_err(|_| RecoveryError::Random)?;
        xor_into(&mut last, share.as_bytes());
        shares.push(Zeroizing::new(share.as_bytes().to_vec()));
    }
    shares.push(last);
    Ok(shares)
}

/// `acc ^= other` bytewise (equal lengths).
pub(crate) fn xor_into(acc: &mut [u8], other: &[u8]) {
    debug_assert_eq!(acc.len(), other.len());
    debug_assert_eq!(acc.len(), DATA_KEY_LEN);
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_recovery_key;

    const PUB1: &str = include_str!("../../../testdata/manifests/keys/recovery1.pub");
    const PUB2: &str = include_str!("../../../testdata/manifests/keys/recovery2.pub");
    const PUB3: &str = include_str!("../../../testdata/manifests/keys/recovery3.pub");

    fn keys(n: usize) -> BTreeMap<String, RecoveryPublicKey> {
        [("r1", PUB1), ("r2", PUB2), ("r3", PUB3)]
            .into_iter()
            .take(n)
            .map(|(name, pem)| (name.to_string(), parse_recovery_key(pem).expect("key")))
            .collect()
    }

    #[test]
    fn threshold_rules() {
        let bad = |n: usize, t: u64| {
            assert_eq!(
                generate(&keys(n), t).map(|_| ()),
                Err(RecoveryError::InvalidThreshold {
                    threshold: t,
                    keys: n
                }),
                "n={n} t={t}"
            );
        };
        bad(0, 1);
        bad(0, 2);
        bad(1, 1);
        bad(1, 2);
        bad(3, 1);
        bad(3, 4);
        let expect = [
            (0, 0, "none", 0),
            (1, 0, "single", 1),
            (2, 0, "xor", 2),
            (2, 2, "xor", 2),
            (3, 0, "xor", 3),
            (3, 3, "xor", 3),
            (3, 2, "shamir", 2),
        ];
        for (n, t, mode, eff) in expect {
            let g = generate(&keys(n), t).expect("generate");
            let v: serde_json::Value = serde_json::from_slice(&g.recovery_data).expect("json");
            assert_eq!(v["mode"], mode, "n={n} t={t}");
            assert_eq!(v["threshold"], eff, "n={n} t={t}");
            assert_eq!(g.secrets.len(), n);
            assert!(g.secrets.values().all(|c| c.len() == 256));
        }
    }

    #[test]
    fn xor_shares_combine_to_key() {
        let key = random_key32().expect("key");
        let shares = xor_shares(&key, 3).expect("shares");
        assert_eq!(shares.len(), 3);
        let mut acc = vec![0u8; 32];
        for s in &shares {
            xor_into(&mut acc, s);
        }
        assert_eq!(&acc[..], key.as_bytes());
        assert_ne!(&shares[0][..], key.as_bytes());
    }

    #[test]
    fn debug_hides_key_and_data_keys_differ() {
        let a = generate(&keys(0), 0).expect("a");
        let b = generate(&keys(0), 0).expect("b");
        assert_ne!(a.data_key, b.data_key);
        let dbg = format!("{a:?}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert!(!dbg.contains(&format!("{:?}", a.data_key.as_bytes())));
    }
}
