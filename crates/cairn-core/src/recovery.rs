//! Seal modes and recovery (marblerun-compat §5.2–5.4).
//!
//! * Every manifest set (and every full update that changes `RecoveryKeys` or
//!   `RecoveryThreshold`) makes a fresh data key with cairn-recovery: one key → the key itself
//!   RSA-OAEP encrypted to it; all keys → XOR shares; k of n → Shamir shares. The encrypted
//!   secrets are returned once and never stored; the public recovery data (keys, share hashes)
//!   travels in [`State::recovery_data`] and in the sealed blob's recovery-data slot. How the data
//!   key itself is sealed (platform seal key, a shared KEK) is independent of this.
//! * In state 1 the sealed blob is kept; `recover` collects signed secrets in a
//!   [`RecoverySession`], opens the blob with the resulting data key, checks it against the
//!   recovered manifest's recovery keys and re-seals it to the current seal key.
//! * `SealMode: Disabled` persists nothing of the deployment: commits store only a fresh
//!   state-2 state around the current CA, so a restart starts over in state 2.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn_crypto::{SecretKey32, Zeroizing};
use cairn_manifest::{Manifest, SealMode};
use cairn_recovery::{EphemeralKey, RecoveryData, RecoveryError, RecoverySession};

use crate::coordinator::{restore, wrong_state, CoordinatorCore, Inner};
use crate::error::CoreError;
use crate::state::State;
use crate::Phase;

/// Outcome of an accepted recovery secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverOutcome {
    /// Secrets still needed to reach the threshold (0 once recovered).
    pub remaining: u64,
    /// True when this secret completed the recovery: the state is open and re-sealed.
    pub recovered: bool,
}

impl RecoverOutcome {
    /// MarbleRun's v2 message for the outcome.
    pub fn message(&self) -> String {
        if self.recovered {
            "Recovery successful.".into()
        } else {
            format!(
                "Secret was processed successfully. Upload the next secret. Remaining secrets: {}",
                self.remaining
            )
        }
    }
}

/// A new data key with its recovery material (from manifest set or an update).
pub(crate) struct NewDataKey {
    pub(crate) data_key: SecretKey32,
    /// Public recovery data for [`State::recovery_data`].
    pub(crate) recovery_data: Vec<u8>,
    /// RSA-OAEP ciphertexts by recovery key name: returned once, never stored.
    pub(crate) secrets: BTreeMap<String, Vec<u8>>,
}

/// What the Coordinator keeps while in state 1.
pub(crate) struct Pending {
    /// The sealed blob that could not be opened, exactly as stored.
    blob: Vec<u8>,
    /// Its store revision (the re-sealed state replaces exactly this one).
    revision: u64,
    /// Created with the first submitted secret.
    session: Option<RecoverySession>,
    /// Created by `GET /api/v2/recover/public-key`; discarded with the session on success.
    ephemeral: Option<Arc<EphemeralKey>>,
}

impl Pending {
    pub(crate) fn new(blob: &[u8], revision: u64) -> Self {
        Pending {
            blob: blob.to_vec(),
            revision,
            session: None,
            ephemeral: None,
        }
    }
}

/// Lengths of secrets sent without ephemeral encryption (MarbleRun: 16/32-byte keys and
/// 33-byte Shamir shares); anything else is decrypted with the ephemeral key first.
const PLAIN_SECRET_LENS: [usize; 3] = [16, 32, 33];

/// A fresh data key split for the manifest's recovery keys.
pub(crate) fn new_data_key(m: &Manifest) -> Result<NewDataKey, CoreError> {
    let keys = recovery_keys(m)?;
    let g = cairn_recovery::generate(&keys, m.config.recovery_threshold).map_err(|e| {
        CoreError::InvalidManifest {
            kind: "E_CHECK",
            message: format!("RecoveryKeys: {e}"),
        }
    })?;
    Ok(NewDataKey {
        data_key: g.data_key,
        recovery_data: g.recovery_data,
        secrets: g.secrets,
    })
}

/// For a full update: a new data key when `RecoveryKeys` or `RecoveryThreshold` changed (and
/// `next.recovery_data` set to match), `None` otherwise. The caller commits with the new key
/// and switches to it only after the commit succeeded.
pub(crate) fn rekey_for_update(
    old: &Manifest,
    new: &Manifest,
    next: &mut State,
) -> Result<Option<NewDataKey>, CoreError> {
    let same_keys = fingerprints(old) == fingerprints(new);
    if same_keys && old.config.recovery_threshold == new.config.recovery_threshold {
        return Ok(None);
    }
    let k = new_data_key(new)?;
    next.recovery_data = Some(k.recovery_data.clone());
    tracing::warn!(
        keys = ?new.recovery_keys.keys().collect::<Vec<_>>(),
        threshold = new.config.recovery_threshold,
        "recovery keys or threshold changed: a new data key and new recovery secrets were generated; secrets returned earlier no longer recover this state"
    );
    Ok(Some(k))
}

/// The warning shown when a manifest disables sealing.
pub(crate) const DISABLED_WARNING: &str = "Config.SealMode: Disabled: NOTHING of this deployment is persisted. A restart of the Coordinator starts fresh in state 2 (accepting a manifest); secrets, users' data, counters and activations are lost and marbles must be re-deployed with a new manifest";

impl CoordinatorCore {
    /// `GET /api/v2/recover/public-key`: the DER (PKIX) RSA-4096 public key recovery secrets
    /// may be encrypted to (RSA-OAEP SHA-256). Generated on first use, kept until recovery
    /// succeeds. State 1 only.
    pub fn recovery_public_key(&self) -> Result<Vec<u8>, CoreError> {
        {
            let inner = self.lock()?;
            let p = pending(&inner)?;
            if let Some(k) = &p.ephemeral {
                return Ok(k.public_key_der().to_vec());
            }
        }
        // RSA-4096 generation takes a while: not under the state lock.
        let fresh = EphemeralKey::generate()
            .map_err(|e| CoreError::internal("generating the ephemeral recovery key", e))?;
        let mut inner = self.lock()?;
        let p = pending_mut(&mut inner)?;
        let key = p.ephemeral.get_or_insert_with(|| Arc::new(fresh));
        Ok(key.public_key_der().to_vec())
    }

    /// `POST /api/v2/recover`: submits one recovery secret (decrypted with the recovery private
    /// key, or additionally encrypted to the ephemeral key) with its RSA PKCS#1 v1.5 SHA-256
    /// signature by that recovery key. When enough secrets arrived the sealed state is opened,
    /// checked, re-sealed to the current seal key and served again. A refused secret changes
    /// nothing. In HA mode it is refused while other instances serve the shared state
    /// ([`CoordinatorCore::check_manual_recovery`]); see [`CoordinatorCore::recover_with`].
    pub fn recover(&self, secret: &[u8], signature: &[u8]) -> Result<RecoverOutcome, CoreError> {
        self.recover_with(secret, signature, false)
    }

    /// [`CoordinatorCore::recover`]; `force` (`POST /api/v2/recover?force=true`) recovers an HA
    /// instance even while other instances serve the shared state.
    pub fn recover_with(
        &self,
        secret: &[u8],
        signature: &[u8],
        force: bool,
    ) -> Result<RecoverOutcome, CoreError> {
        // Before the secret is looked at: a refused request consumes no share.
        self.check_manual_recovery(force)?;
        let mut inner = self.lock()?;
        let p = pending_mut(&mut inner)?;
        let plain: Zeroizing<Vec<u8>> = if PLAIN_SECRET_LENS.contains(&secret.len()) {
            Zeroizing::new(secret.to_vec())
        } else {
            match &p.ephemeral {
                None => {
                    return Err(CoreError::InvalidArgument(format!(
                        "recovery secret is {} bytes: a decrypted secret is 32 bytes (single key or XOR share) or 33 bytes (Shamir share), and no ephemeral key was requested (GET /api/v2/recover/public-key) that could decrypt a longer one; was the share file truncated, or not decrypted with the recovery key?",
                        secret.len()
                    )))
                }
                Some(k) => k.decrypt(secret).map_err(|_| {
                    CoreError::InvalidArgument(format!(
                        "recovery secret of {} bytes could not be decrypted with the ephemeral key (RSA-OAEP SHA-256); encrypt the decrypted secret to the key from GET /api/v2/recover/public-key",
                        secret.len()
                    ))
                })?,
            }
        };
        if p.session.is_none() {
            p.session = Some(open_session(&p.blob)?);
        }
        let Some(session) = p.session.as_mut() else {
            return Err(CoreError::Internal("recovery session missing".into()));
        };
        let progress = session.submit(&plain, signature).map_err(refused)?;
        let Some(data_key) = progress.data_key else {
            tracing::info!(
                remaining = progress.remaining,
                "recovery secret accepted; waiting for more"
            );
            return Ok(RecoverOutcome {
                remaining: progress.remaining,
                recovered: false,
            });
        };
        match self.open_and_reseal(&mut inner, data_key) {
            Ok(()) => Ok(RecoverOutcome {
                remaining: 0,
                recovered: true,
            }),
            Err(e) => {
                // A combined key that does not open the state means the stored state or its
                // recovery data was modified; start over rather than stay stuck.
                if let Some(p) = inner.recovery.as_mut() {
                    let single = p.session.as_ref().is_some_and(|s| {
                        s.recovery_data().mode() == cairn_recovery::RecoveryMode::Single
                    });
                    if !single {
                        p.session = None;
                    }
                }
                Err(e)
            }
        }
    }

    /// Opens the pending blob with `data_key`, re-seals it with the current seal key and makes
    /// it the served state.
    fn open_and_reseal(&self, inner: &mut Inner, data_key: SecretKey32) -> Result<(), CoreError> {
        let p = pending(inner)?;
        let unsealed = cairn_store::unseal_with_data_key(&p.blob, &data_key).map_err(|e| match e {
            cairn_store::StoreError::DataKeyMismatch => CoreError::Forbidden(
                "recovery refused: the recovery secret does not decrypt the sealed state (a secret for another deployment or state, or the sealed state was modified)".into(),
            ),
            other => CoreError::Internal(format!("the sealed state cannot be recovered: {other}")),
        })?;
        let mut state = State::from_plaintext(&unsealed.plaintext).map_err(|e| {
            CoreError::Internal(format!("the recovered state is not readable: {e}"))
        })?;
        if state.recovery_data.is_none() {
            state.recovery_data = Some(unsealed.recovery_data.clone());
        }
        // Invariant: the recovery data is authenticated (AAD of the state ciphertext); it must
        // also name exactly the recovered manifest's recovery keys.
        let recovered = restore(state.clone(), data_key.clone(), p.revision)
            .map_err(|e| CoreError::Internal(format!("the recovered state is unusable: {e}")))?;
        if let Some(vm) = &recovered.manifest {
            let keys = recovery_keys(vm.manifest())?;
            RecoveryData::parse(&unsealed.recovery_data)
                .and_then(|d| d.check_keys(&keys))
                .map_err(|e| {
                    CoreError::Forbidden(format!(
                        "recovery refused: the recovery data does not match the recovered manifest: {e}"
                    ))
                })?;
        }
        let mode = recovered
            .manifest
            .as_ref()
            .map(|m| m.manifest().config.seal_mode)
            .unwrap_or_default();
        let root = state.ca.root_cert.clone();
        let quote = self.make_quote(&cairn_crypto::sha256(&root))?;
        // Invariant: memory switches only after the re-sealed state is committed.
        let rev = self
            .commit(&state, Some(p.revision), &data_key, mode)
            .map_err(|e| {
                CoreError::Internal(format!(
                    "the recovered state could not be re-sealed, still in recovery mode: {e}"
                ))
            })?;
        *inner = recovered;
        inner.revision = Some(rev);
        inner.cached_quote = quote;
        self.bump_ca_epoch();
        tracing::warn!(
            state = inner.phase.code(),
            root_sha256 = %hex::encode(cairn_crypto::sha256(&root)),
            "recovery successful: the sealed state was opened with the recovery secrets and re-sealed to this Coordinator's seal key"
        );
        Ok(())
    }

    /// Commit for `SealMode: Disabled`: stores only a fresh state-2 state around the current CA
    /// (once; later commits write nothing) and returns the stored revision.
    pub(crate) fn commit_disabled(
        &self,
        state: &State,
        expected: Option<u64>,
    ) -> Result<u64, CoreError> {
        let written = self.disabled_rev.load(Ordering::Acquire);
        if let Some(rev) = expected.filter(|r| *r == written && written != 0) {
            return Ok(rev);
        }
        let placeholder = State::new(state.ca.clone());
        let rev = self.commit(
            &placeholder,
            expected,
            &placeholder_key()?,
            SealMode::ProductKey,
        )?;
        self.disabled_rev.store(rev, Ordering::Release);
        tracing::warn!(
            "SealMode Disabled: the deployment's state is kept in memory only; the store holds a fresh state (accepting a manifest) for the next start"
        );
        Ok(rev)
    }
}

fn placeholder_key() -> Result<SecretKey32, CoreError> {
    cairn_crypto::random_key32().map_err(|e| CoreError::internal("random", e))
}

fn pending(inner: &Inner) -> Result<&Pending, CoreError> {
    if inner.phase != Phase::Recovery {
        return Err(wrong_state(inner.phase));
    }
    inner
        .recovery
        .as_ref()
        .ok_or_else(|| CoreError::Internal("recovery mode without a sealed state".into()))
}

fn pending_mut(inner: &mut Inner) -> Result<&mut Pending, CoreError> {
    if inner.phase != Phase::Recovery {
        return Err(wrong_state(inner.phase));
    }
    inner
        .recovery
        .as_mut()
        .ok_or_else(|| CoreError::Internal("recovery mode without a sealed state".into()))
}

fn open_session(blob: &[u8]) -> Result<RecoverySession, CoreError> {
    let info = cairn_store::inspect(blob).map_err(|e| {
        CoreError::Internal(format!(
            "the sealed state cannot be recovered: {e}; restore an intact copy of the seal directory, or set a new manifest to start over"
        ))
    })?;
    let no_keys = CoreError::Forbidden(
        "recovery refused: the sealed state holds no recovery data (its manifest set no RecoveryKeys), so it cannot be recovered; restore an intact copy on its original platform, or set a new manifest to start over".into(),
    );
    if info.recovery_data.is_empty() {
        return Err(no_keys);
    }
    let data = RecoveryData::parse(&info.recovery_data).map_err(|e| {
        CoreError::Internal(format!("the sealed state's recovery data is unusable: {e}"))
    })?;
    if data.mode() == cairn_recovery::RecoveryMode::None {
        return Err(no_keys);
    }
    RecoverySession::new(&info.recovery_data, &data.public_keys()).map_err(refused)
}

fn refused(e: RecoveryError) -> CoreError {
    CoreError::Forbidden(format!("recovery refused: {e}"))
}

fn recovery_keys(
    m: &Manifest,
) -> Result<BTreeMap<String, cairn_recovery::RecoveryPublicKey>, CoreError> {
    m.recovery_keys
        .iter()
        .map(|(name, pem)| {
            cairn_recovery::parse_recovery_key(pem)
                .map(|k| (name.clone(), k))
                .map_err(|e| CoreError::InvalidManifest {
                    kind: "E_CHECK",
                    message: format!("RecoveryKeys.{name}: {e}"),
                })
        })
        .collect()
}

/// Recovery keys by name → SPKI fingerprint (PEM formatting differences do not count).
fn fingerprints(m: &Manifest) -> BTreeMap<&str, Option<[u8; 32]>> {
    m.recovery_keys
        .iter()
        .map(|(n, pem)| {
            (
                n.as_str(),
                cairn_recovery::parse_recovery_key(pem)
                    .ok()
                    .map(|k| k.fingerprint()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let o = RecoverOutcome {
            remaining: 2,
            recovered: false,
        };
        assert_eq!(
            o.message(),
            "Secret was processed successfully. Upload the next secret. Remaining secrets: 2"
        );
        let o = RecoverOutcome {
            remaining: 0,
            recovered: true,
        };
        assert_eq!(o.message(), "Recovery successful.");
    }

    fn manifest(keys: &[&str], threshold: u64) -> Manifest {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests/keys");
        let mut m = Manifest::default();
        for k in keys {
            let pem = std::fs::read_to_string(format!("{dir}/{k}.pub")).unwrap();
            m.recovery_keys.insert((*k).to_string(), pem);
        }
        m.config.recovery_threshold = threshold;
        m
    }

    #[test]
    fn rekey_only_when_keys_or_threshold_change() {
        let ca = cairn_ca::CaBundle::generate(
            cairn_crypto::KeyType::P256,
            &["localhost".to_string()],
            time::macros::datetime!(2026-06-01 12:00 UTC),
        )
        .unwrap();
        let mut next = State::new(ca);
        let a = manifest(&["recovery1", "recovery2", "recovery3"], 2);
        // Same keys with different PEM line endings: no new key.
        let mut same = a.clone();
        for pem in same.recovery_keys.values_mut() {
            *pem = pem.replace('\n', "\r\n");
        }
        assert!(rekey_for_update(&a, &same, &mut next).unwrap().is_none());
        assert!(next.recovery_data.is_none());
        // Threshold change: Shamir 2-of-3 → XOR.
        let b = manifest(&["recovery1", "recovery2", "recovery3"], 0);
        let k = rekey_for_update(&a, &b, &mut next).unwrap().unwrap();
        assert_eq!(k.secrets.len(), 3);
        assert_eq!(next.recovery_data.as_deref(), Some(&k.recovery_data[..]));
        let data = RecoveryData::parse(&k.recovery_data).unwrap();
        assert_eq!(data.mode(), cairn_recovery::RecoveryMode::Xor);
        assert_eq!(data.threshold(), 3);
        // A key removed.
        let c = manifest(&["recovery1"], 0);
        let k = rekey_for_update(&b, &c, &mut next).unwrap().unwrap();
        assert_eq!(k.secrets.keys().collect::<Vec<_>>(), vec!["recovery1"]);
        // No keys at all: a fresh key without secrets (recovery impossible, as MarbleRun).
        let k = new_data_key(&manifest(&[], 0)).unwrap();
        assert!(k.secrets.is_empty());
        assert_ne!(
            k.data_key,
            new_data_key(&manifest(&[], 0)).unwrap().data_key
        );
    }
}
