//! The typed, persisted Coordinator state. It is serialised as one JSON document, sealed by
//! cairn-store and committed with compare-and-swap; nothing here touches I/O.

use std::collections::BTreeMap;

use cairn_ca::CaBundle;
use cairn_crypto::Zeroizing;
use serde::{Deserialize, Serialize};

/// Version of the plaintext layout below.
pub const STATE_FORMAT: u32 = 1;

/// Persisted state code: accepting a manifest.
pub const PHASE_ACCEPTING_MANIFEST: u8 = 2;
/// Persisted state code: accepting marbles.
pub const PHASE_ACCEPTING_MARBLES: u8 = 3;

/// Everything the Coordinator must remember across restarts.
#[derive(Clone, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// 2 (accepting manifest) or 3 (accepting marbles).
    pub phase: u8,
    /// Root, intermediate and marble root with keys.
    pub ca: CaBundle,
    /// The exact bytes of the current manifest.
    #[serde(default, with = "b64_opt")]
    pub manifest_raw: Option<Vec<u8>>,
    /// ASN.1 ECDSA root-key signature over SHA-256(manifest_raw).
    #[serde(default, with = "b64_opt")]
    pub manifest_signature: Option<Vec<u8>>,
    /// Generated shared secrets and uploaded user-defined secrets.
    #[serde(default)]
    pub secrets: BTreeMap<String, StoredSecret>,
    /// Values before the last regeneration (initially equal to `secrets`).
    #[serde(default)]
    pub previous_secrets: BTreeMap<String, StoredSecret>,
    /// 32-byte root secret for per-marble HKDF derivation.
    #[serde(default, with = "b64_secret_opt")]
    pub root_secret: Option<Zeroizing<Vec<u8>>>,
    /// Root secret before the last rotation.
    #[serde(default, with = "b64_secret_opt")]
    pub previous_root_secret: Option<Zeroizing<Vec<u8>>>,
    /// Successful activations per marble type (only counted when MaxActivations > 0).
    #[serde(default)]
    pub activations: BTreeMap<String, u64>,
    /// Update log, one JSON object per line.
    #[serde(default)]
    pub update_log: Vec<String>,
    /// SecurityVersions raised by package updates (package name → SVN); they override the
    /// stored manifest, whose raw bytes and signature stay unchanged. Cleared by a full update.
    #[serde(default)]
    pub security_versions: BTreeMap<String, u64>,
    /// A full update waiting for acknowledgements.
    #[serde(default, rename = "pendingUpdate")]
    pub pending_update: Option<PendingUpdate>,
    /// Monotonic counters: `base64(type):base64(uuid bytes):base64(name)` → value.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Public recovery data (cairn-recovery JSON) for the current data key; written to the
    /// sealed blob's recovery-data slot on every commit (see `recovery.rs`). `None`: no manifest.
    #[serde(default, with = "b64_opt", rename = "recoveryData")]
    pub recovery_data: Option<Vec<u8>>,
}

/// A full manifest update awaiting acknowledgements (MarbleRun's `pendingUpdate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The exact uploaded manifest bytes.
    #[serde(rename = "manifestRaw", with = "b64_bytes")]
    pub manifest_raw: Vec<u8>,
    /// Every user that may acknowledge → whether they already did.
    #[serde(rename = "requiredUsers")]
    pub required_users: BTreeMap<String, bool>,
    /// Acknowledgements needed in total (UpdateThreshold, or all required users when 0).
    #[serde(rename = "requiredAcknowledgments")]
    pub required: u64,
}

impl PendingUpdate {
    /// Acknowledgements still missing.
    pub fn missing(&self) -> u64 {
        let acked = self.required_users.values().filter(|a| **a).count() as u64;
        self.required.saturating_sub(acked)
    }

    /// Required users that have not acknowledged yet (sorted).
    pub fn missing_users(&self) -> Vec<String> {
        self.required_users
            .iter()
            .filter(|(_, a)| !**a)
            .map(|(u, _)| u.clone())
            .collect()
    }
}

impl State {
    /// A fresh state around a new CA, accepting a manifest.
    pub fn new(ca: CaBundle) -> Self {
        State {
            format: STATE_FORMAT,
            phase: PHASE_ACCEPTING_MANIFEST,
            ca,
            manifest_raw: None,
            manifest_signature: None,
            secrets: BTreeMap::new(),
            previous_secrets: BTreeMap::new(),
            root_secret: None,
            previous_root_secret: None,
            activations: BTreeMap::new(),
            update_log: Vec::new(),
            security_versions: BTreeMap::new(),
            pending_update: None,
            counters: BTreeMap::new(),
            recovery_data: None,
        }
    }

    /// JSON plaintext for sealing (zeroized on drop: it holds keys).
    pub fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
        serde_json::to_vec(self).map(Zeroizing::new)
    }

    /// Parses plaintext produced by [`State::to_plaintext`].
    pub fn from_plaintext(bytes: &[u8]) -> Result<Self, String> {
        let s: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.format != STATE_FORMAT {
            return Err(format!(
                "unsupported state format {} (expected {STATE_FORMAT})",
                s.format
            ));
        }
        if s.phase != PHASE_ACCEPTING_MANIFEST && s.phase != PHASE_ACCEPTING_MARBLES {
            return Err(format!("invalid persisted state code {}", s.phase));
        }
        Ok(s)
    }
}

/// One secret value: `kind` is the manifest spelling (`symmetric-key`, `cert-ecdsa`, ...).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Manifest type spelling.
    pub kind: String,
    /// Certificate DER (cert secrets).
    #[serde(default, with = "b64_opt")]
    pub cert: Option<Vec<u8>>,
    /// PKCS#8 private key, or the key/data for symmetric and plain secrets.
    #[serde(with = "b64_secret")]
    pub private: Zeroizing<Vec<u8>>,
    /// PKIX public key, or the key/data for symmetric and plain secrets.
    #[serde(with = "b64_secret")]
    pub public: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secret: print the type only.
        f.debug_struct("StoredSecret")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

mod b64_opt {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

mod b64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

mod b64_secret {
    use base64::Engine as _;
    use cairn_crypto::Zeroizing;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        v: &Zeroizing<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let enc = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(v.as_slice()));
        s.serialize_str(&enc)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Zeroizing::new)
            .map_err(serde::de::Error::custom)
    }
}

mod b64_secret_opt {
    use cairn_crypto::Zeroizing;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        v: &Option<Zeroizing<Vec<u8>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::b64_secret::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, D::Error> {
        #[derive(serde::Deserialize)]
        struct W(#[serde(with = "super::b64_secret")] Zeroizing<Vec<u8>>);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let ca = CaBundle::generate(
            cairn_crypto::KeyType::P256,
            &["localhost".to_string()],
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let mut s = State::new(ca);
        s.manifest_raw = Some(b"{}".to_vec());
        s.root_secret = Some(Zeroizing::new(vec![7; 32]));
        s.secrets.insert(
            "k".into(),
            StoredSecret {
                kind: "symmetric-key".into(),
                cert: None,
                private: Zeroizing::new(vec![1, 2]),
                public: Zeroizing::new(vec![1, 2]),
            },
        );
        let p = s.to_plaintext().unwrap();
        let back = State::from_plaintext(&p).unwrap();
        assert_eq!(back.manifest_raw.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            back.root_secret.as_deref().map(Vec::as_slice),
            Some(&[7u8; 32][..])
        );
        assert_eq!(back.ca.root_cert, s.ca.root_cert);
        assert_eq!(back.secrets["k"].private.as_slice(), &[1, 2]);
        assert!(State::from_plaintext(b"{\"format\":9}").is_err());
    }
}
