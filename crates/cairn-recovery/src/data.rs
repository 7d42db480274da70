//! The public recovery data stored in the clear next to the sealed state (format in README.md).

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cairn_crypto::sha256;
use serde::{Deserialize, Serialize};

use crate::{RecoveryError, RecoveryPublicKey, DATA_KEY_LEN, MAX_SHAMIR_SHARES, SHAMIR_SHARE_LEN};

/// Version number written to and required in the recovery-data JSON.
pub const RECOVERY_DATA_VERSION: u32 = 1;

/// How the data key was split among the recovery keys.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryMode {
    /// No recovery keys: the state cannot be recovered.
    None,
    /// One recovery key: its secret is the data key itself.
    Single,
    /// All n keys needed: the data key is the XOR of n random 32-byte shares.
    Xor,
    /// `threshold` of n keys needed: Shamir shares over GF(256), 33 bytes each.
    Shamir,
}

/// Parsed and validated recovery data. Holds only public values (public keys, share hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryData {
    mode: RecoveryMode,
    threshold: u64,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) key: RecoveryPublicKey,
    pub(crate) share_sha256: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    version: u32,
    mode: RecoveryMode,
    threshold: u64,
    n: u64,
    keys: Vec<WireKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireKey {
    name: String,
    key_sha256: String,
    public_key: String,
    share_sha256: Option<String>,
}

impl RecoveryData {
    /// Parses and validates recovery-data JSON: version, mode/threshold/n consistency, unique key
    /// names, RSA public keys matching their fingerprints, one distinct share hash per key
    /// (XOR and Shamir) or none (single key).
    pub fn parse(json: &[u8]) -> Result<Self, RecoveryError> {
        let wire: Wire =
            serde_json::from_slice(json).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        if wire.version != RECOVERY_DATA_VERSION {
            return Err(invalid(format!("unsupported version {}", wire.version)));
        }
        if u64::try_from(wire.keys.len()).ok() != Some(wire.n) {
            return Err(invalid(format!(
                "n is {} but {} keys are listed",
                wire.n,
                wire.keys.len()
            )));
        }
        let entries = wire
            .keys
            .into_iter()
            .map(Entry::from_wire)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(wire.mode, wire.threshold, entries)
    }

    /// Builds recovery data from validated parts (used by [`crate::generate`] and `parse`).
    pub(crate) fn new(
        mode: RecoveryMode,
        threshold: u64,
        entries: Vec<Entry>,
    ) -> Result<Self, RecoveryError> {
        let n = entries.len();
        let names: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        if names.len() != n {
            return Err(invalid("duplicate key name".into()));
        }
        let hashes: BTreeSet<[u8; 32]> = entries.iter().filter_map(|e| e.share_sha256).collect();
        let n64 = n as u64;
        let (shape_ok, want_hashes) = match mode {
            RecoveryMode::None => (n == 0 && threshold == 0, false),
            RecoveryMode::Single => (n == 1 && threshold == 1, false),
            RecoveryMode::Xor => (n >= 2 && threshold == n64, true),
            RecoveryMode::Shamir => (
                n <= MAX_SHAMIR_SHARES && threshold >= 2 && threshold < n64,
                true,
            ),
        };
        if !shape_ok {
            return Err(invalid(format!(
                "mode {mode:?} does not allow threshold {threshold} with {n} keys"
            )));
        }
        let hashes_ok = if want_hashes {
            hashes.len() == n && entries.iter().all(|e| e.share_sha256.is_some())
        } else {
            entries.iter().all(|e| e.share_sha256.is_none())
        };
        if !hashes_ok {
            return Err(invalid(if want_hashes {
                "every key needs a distinct share_sha256".into()
            } else {
                "share_sha256 must be null in this mode".into()
            }));
        }
        let mut entries = entries;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            mode,
            threshold,
            entries,
        })
    }

    /// The JSON form (see README.md).
    pub fn to_json(&self) -> Result<Vec<u8>, RecoveryError> {
        let wire = Wire {
            version: RECOVERY_DATA_VERSION,
            mode: self.mode,
            threshold: self.threshold,
            n: self.entries.len() as u64,
            keys: self
                .entries
                .iter()
                .map(|e| WireKey {
                    name: e.name.clone(),
                    key_sha256: hex::encode(e.key.fingerprint()),
                    public_key: B64.encode(e.key.spki_der()),
                    share_sha256: e.share_sha256.map(hex::encode),
                })
                .collect(),
        };
        serde_json::to_vec(&wire).map_err(|e| invalid(e.to_string()))
    }

    /// How the data key was split.
    pub fn mode(&self) -> RecoveryMode {
        self.mode
    }

    /// Number of shares needed to recover: 0 (none), 1 (single), n (XOR) or k (Shamir).
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Number of recovery keys.
    pub fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// Length of every secret a recovery key holder submits (0 when recovery is impossible).
    pub fn secret_len(&self) -> usize {
        match self.mode {
            RecoveryMode::None => 0,
            RecoveryMode::Single | RecoveryMode::Xor => DATA_KEY_LEN,
            RecoveryMode::Shamir => SHAMIR_SHARE_LEN,
        }
    }

    /// The recovery public keys recorded at generation, by name.
    pub fn public_keys(&self) -> BTreeMap<String, RecoveryPublicKey> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.key.clone()))
            .collect()
    }

    /// Checks that `keys` (e.g. the manifest's `RecoveryKeys`) are exactly the recorded keys.
    pub fn check_keys(
        &self,
        keys: &BTreeMap<String, RecoveryPublicKey>,
    ) -> Result<(), RecoveryError> {
        for e in &self.entries {
            match keys.get(&e.name) {
                Some(k) if k.fingerprint() == e.key.fingerprint() => {}
                _ => return Err(RecoveryError::KeyMismatch(e.name.clone())),
            }
        }
        if let Some(extra) = keys
            .keys()
            .find(|name| !self.entries.iter().any(|e| &e.name == *name))
        {
            return Err(RecoveryError::KeyMismatch(extra.clone()));
        }
        Ok(())
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl Entry {
    fn from_wire(w: WireKey) -> Result<Self, RecoveryError> {
        let der = B64
            .decode(&w.public_key)
            .map_err(|_| invalid(format!("public_key of \"{}\" is not base64", w.name)))?;
        let key = RecoveryPublicKey::from_spki_der(&der)?;
        if decode_hash(&w.key_sha256) != Some(sha256(&der)) {
            return Err(invalid(format!(
                "key_sha256 of \"{}\" does not match its public key",
                w.name
            )));
        }
        let share_sha256 = match &w.share_sha256 {
            None => None,
            Some(h) => Some(decode_hash(h).ok_or_else(|| {
                invalid(format!(
                    "share_sha256 of \"{}\" is not 32 hex bytes",
                    w.name
                ))
            })?),
        };
        Ok(Self {
            name: w.name,
            key,
            share_sha256,
        })
    }
}

fn decode_hash(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn invalid(msg: String) -> RecoveryError {
    RecoveryError::InvalidRecoveryData(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_recovery_key;

    const PUB1: &str = include_str!("../../../testdata/manifests/keys/recovery1.pub");
    const PUB2: &str = include_str!("../../../testdata/manifests/keys/recovery2.pub");

    fn entry(name: &str, pem: &str, share: Option<u8>) -> Entry {
        Entry {
            name: name.into(),
            key: parse_recovery_key(pem).expect("key"),
            share_sha256: share.map(|b| sha256(&[b])),
        }
    }

    #[test]
    fn json_round_trip_and_shape() {
        let data = RecoveryData::new(
            RecoveryMode::Xor,
            2,
            vec![entry("b", PUB2, Some(2)), entry("a", PUB1, Some(1))],
        )
        .expect("data");
        let json = data.to_json().expect("json");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("value");
        assert_eq!(v["version"], 1);
        assert_eq!(v["mode"], "xor");
        assert_eq!(v["threshold"], 2);
        assert_eq!(v["n"], 2);
        assert_eq!(v["keys"][0]["name"], "a");
        assert_eq!(v["keys"][0]["share_sha256"], hex::encode(sha256(&[1])));
        let k1 = parse_recovery_key(PUB1).expect("k1");
        assert_eq!(v["keys"][0]["key_sha256"], hex::encode(k1.fingerprint()));
        assert_eq!(v["keys"][0]["public_key"], B64.encode(k1.spki_der()));
        let back = RecoveryData::parse(&json).expect("parse");
        assert_eq!(back, data);
        assert_eq!(back.public_keys().get("a"), Some(&k1));
        assert_eq!(back.secret_len(), 32);
    }

    #[test]
    fn parse_rejects_inconsistent_data() {
        let good = RecoveryData::new(
            RecoveryMode::Shamir,
            2,
            vec![
                entry("a", PUB1, Some(1)),
                entry("b", PUB2, Some(2)),
                entry("c", PUB1, Some(3)),
            ],
        )
        .expect("data");
        let json = good.to_json().expect("json");
        let mut v: serde_json::Value = serde_json::from_slice(&json).expect("v");
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("version", Box::new(|v| v["version"] = 2.into())),
            ("threshold", Box::new(|v| v["threshold"] = 3.into())),
            ("threshold1", Box::new(|v| v["threshold"] = 1.into())),
            ("n", Box::new(|v| v["n"] = 4.into())),
            (
                "dup share",
                Box::new(|v| v["keys"][1]["share_sha256"] = v["keys"][0]["share_sha256"].clone()),
            ),
            (
                "null share",
                Box::new(|v| v["keys"][1]["share_sha256"] = serde_json::Value::Null),
            ),
            (
                "bad hash",
                Box::new(|v| v["keys"][1]["share_sha256"] = "zz".into()),
            ),
            ("dup name", Box::new(|v| v["keys"][1]["name"] = "a".into())),
            (
                "key hash",
                Box::new(|v| v["keys"][1]["key_sha256"] = v["keys"][0]["key_sha256"].clone()),
            ),
            ("extra", Box::new(|v| v["extra"] = 1.into())),
            ("mode", Box::new(|v| v["mode"] = "single".into())),
        ];
        for (what, mutate) in cases {
            let mut c = v.clone();
            mutate(&mut c);
            let bytes = serde_json::to_vec(&c).expect("bytes");
            assert!(
                matches!(
                    RecoveryData::parse(&bytes),
                    Err(RecoveryError::InvalidRecoveryData(_))
                ),
                "{what}"
            );
        }
        v["keys"][1]["public_key"] = "AAAA".into();
        assert!(RecoveryData::parse(&serde_json::to_vec(&v).expect("b")).is_err());
        assert!(matches!(
            RecoveryData::parse(b"null"),
            Err(RecoveryError::InvalidRecoveryData(_))
        ));
    }

    #[test]
    fn check_keys_requires_exact_set() {
        let data =
            RecoveryData::new(RecoveryMode::Single, 1, vec![entry("a", PUB1, None)]).expect("d");
        let k1 = parse_recovery_key(PUB1).expect("k1");
        let k2 = parse_recovery_key(PUB2).expect("k2");
        let mut keys = BTreeMap::from([("a".to_string(), k1.clone())]);
        assert_eq!(data.check_keys(&keys), Ok(()));
        keys.insert("a".into(), k2.clone());
        assert_eq!(
            data.check_keys(&keys),
            Err(RecoveryError::KeyMismatch("a".into()))
        );
        let keys = BTreeMap::from([("a".to_string(), k1), ("z".to_string(), k2)]);
        assert_eq!(
            data.check_keys(&keys),
            Err(RecoveryError::KeyMismatch("z".into()))
        );
    }
}
