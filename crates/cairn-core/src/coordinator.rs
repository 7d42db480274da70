//! The Coordinator state machine: start-up (load/unseal or create), manifest set, status,
//! manifest get and quotes. Activation lives in `activation.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_ca::CaBundle;
use cairn_crypto::{KeyType, SecretKey32, Zeroizing};
use cairn_manifest::{SealMode, ValidManifest};
use cairn_platform::Issuer;
use cairn_store::{Persistence, Revision};
use time::OffsetDateTime;

use crate::error::CoreError;
use crate::recovery::{self, Pending};
use crate::secrets;
use crate::state::{State, PHASE_ACCEPTING_MANIFEST, PHASE_ACCEPTING_MARBLES};
use crate::{Clock, Phase, QuoteVerifier};

/// Sealed-blob mode byte for ProductKey (MRSIGNER+ISVPRODID) sealing.
const MODE_PRODUCT_KEY: u8 = 0;
/// Sealed-blob mode byte for UniqueKey (MRENCLAVE) sealing.
const MODE_UNIQUE_KEY: u8 = 1;

/// Start-up configuration the core needs.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Curve of the Coordinator CA keys.
    pub key_type: KeyType,
    /// DNS names / IP literals for the CA certificates' SANs.
    pub dns_names: Vec<String>,
}

/// The adapters the core runs over.
#[derive(Clone)]
pub struct Deps {
    /// Quotes and seal keys of the Coordinator's own TEE.
    pub issuer: Arc<dyn Issuer>,
    /// Where the sealed state lives.
    pub store: Arc<dyn Persistence>,
    /// Current time.
    pub clock: Arc<dyn Clock>,
    /// Verifier for marble quotes.
    pub verifier: Arc<dyn QuoteVerifier>,
}

/// The current manifest as served by `GET /api/v2/manifest`.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    /// Exact uploaded bytes.
    pub raw: Vec<u8>,
    /// Lowercase hex SHA-256 of `raw`.
    pub fingerprint_hex: String,
    /// ASN.1 ECDSA signature of SHA-256(raw) by the root key.
    pub signature: Vec<u8>,
}

/// Quote and certificate chain for `GET /api/v2/quote`.
#[derive(Debug, Clone)]
pub struct QuoteInfo {
    /// PEM: intermediate, then root.
    pub cert_chain_pem: String,
    /// OE-wrapped quote.
    pub quote: Vec<u8>,
}

/// Result of a successful manifest set.
#[derive(Debug, Clone, Default)]
pub struct SetManifestResult {
    /// RSA-OAEP encrypted recovery secrets by recovery key name (empty without RecoveryKeys).
    pub recovery_secrets: BTreeMap<String, Vec<u8>>,
    /// Manifest warnings (`path: message`).
    pub warnings: Vec<String>,
}

pub(crate) struct Inner {
    pub(crate) phase: Phase,
    pub(crate) state: State,
    /// Revision of the committed state this memory reflects (`None`: nothing committed).
    pub(crate) revision: Option<u64>,
    pub(crate) data_key: SecretKey32,
    pub(crate) manifest: Option<Arc<ValidManifest>>,
    pub(crate) cached_quote: Vec<u8>,
    /// In Recovery: a description of the sealed state a manifest set would discard.
    discarded: Option<String>,
    /// In Recovery: the sealed state being recovered (`recovery.rs`).
    pub(crate) recovery: Option<Pending>,
}

/// The Coordinator logic. All state-changing operations hold one mutex and commit before they
/// return.
pub struct CoordinatorCore {
    pub(crate) deps: Deps,
    inner: Mutex<Inner>,
    /// Incremented after every committed change of the CA bundle (intermediate rotation), so
    /// TLS servers can rebuild their certificates without taking the state lock per handshake.
    ca_epoch: AtomicU64,
    /// SealMode Disabled: revision of the fresh state written in place of the real one (0: none).
    pub(crate) disabled_rev: AtomicU64,
    /// HA mode (`ha.rs`): the shared KEK; `None` for a single instance.
    pub(crate) ha: Option<crate::ha::Ha>,
    /// Group commit of activation counters (activation.rs).
    pub(crate) activation_batch: crate::activation::ActivationBatch,
    /// The intermediate CA parsed once for leaf issuance (activation.rs).
    pub(crate) leaf_issuer: Mutex<Option<Arc<cairn_ca::LeafIssuer>>>,
}

impl CoordinatorCore {
    /// Loads and unseals the persisted state, or creates a new CA (state 2) when there is none.
    /// A state that cannot be unsealed puts the Coordinator in Recovery (state 1) with a
    /// temporary, unpersisted CA; the sealed state is left untouched.
    pub fn start(deps: Deps, config: CoreConfig) -> Result<Self, CoreError> {
        Self::start_with(deps, config, None)
    }

    /// [`CoordinatorCore::start`], in HA mode when `ha` is set (`ha.rs`).
    pub(crate) fn start_with(
        deps: Deps,
        config: CoreConfig,
        ha: Option<crate::ha::Ha>,
    ) -> Result<Self, CoreError> {
        let now = deps.clock.now();
        if let Some(h) = &ha {
            h.load_local(deps.issuer.as_ref())?;
        }
        let loaded = deps
            .store
            .load()
            .map_err(|e| CoreError::internal("loading the sealed state", e))?;
        let (inner, needs_commit) = match loaded {
            None => {
                let ca = new_ca(&config, now)?;
                tracing::info!("no sealed state found; created a new Coordinator CA");
                let data_key =
                    cairn_crypto::random_key32().map_err(|e| CoreError::internal("random", e))?;
                (
                    fresh_inner(State::new(ca), data_key, Phase::AcceptingManifest),
                    true,
                )
            }
            Some((rev, blob)) => {
                match crate::ha::unseal_with(ha.as_ref(), deps.issuer.as_ref(), &blob) {
                    Ok((state, data_key)) => match restore(state, data_key, rev.0) {
                        Ok(inner) => (inner, false),
                        Err(reason) => {
                            (recovery_inner(&config, now, rev.0, &blob, &reason)?, false)
                        }
                    },
                    Err(reason) => (recovery_inner(&config, now, rev.0, &blob, &reason)?, false),
                }
            }
        };
        let core = CoordinatorCore {
            deps,
            inner: Mutex::new(inner),
            ca_epoch: AtomicU64::new(0),
            disabled_rev: AtomicU64::new(0),
            ha,
            activation_batch: Default::default(),
            leaf_issuer: Mutex::new(None),
        };
        {
            let mut inner = core.lock()?;
            if needs_commit {
                let rev = core.commit(&inner.state, None, &inner.data_key, SealMode::ProductKey)?;
                inner.revision = Some(rev);
            }
            let report = cairn_crypto::sha256(&inner.state.ca.root_cert);
            inner.cached_quote = core.make_quote(&report)?;
            tracing::info!(
                state = inner.phase.code(),
                root_sha256 = %hex::encode(report),
                "Coordinator core started"
            );
        }
        Ok(core)
    }

    /// Current state.
    pub fn phase(&self) -> Phase {
        self.lock().map(|i| i.phase).unwrap_or(Phase::Recovery)
    }

    /// `(code, message)` for the status endpoints.
    pub fn status(&self) -> (i32, &'static str) {
        let p = self.phase();
        (p.code(), p.message())
    }

    /// The current manifest, raw bytes, fingerprint and signature.
    pub fn manifest(&self) -> Result<ManifestInfo, CoreError> {
        let inner = self.lock()?;
        if inner.phase == Phase::Recovery {
            return Err(CoreError::WrongState(
                "Coordinator is in recovery mode: the manifest is unavailable until the state is recovered or a new manifest is set".into(),
            ));
        }
        match (&inner.manifest, &inner.state.manifest_signature) {
            (Some(m), Some(sig)) => Ok(ManifestInfo {
                raw: m.raw().to_vec(),
                fingerprint_hex: hex::encode(m.fingerprint()),
                signature: sig.clone(),
            }),
            _ => Err(CoreError::NotFound("no manifest has been set yet".into())),
        }
    }

    /// The Coordinator quote with the certificate chain. Without a nonce the cached quote over
    /// SHA-256(root DER) is returned; with one a fresh quote over SHA-256(root DER ‖ nonce).
    pub fn quote(&self, nonce: Option<&[u8]>) -> Result<QuoteInfo, CoreError> {
        let (chain, root, cached) = {
            let inner = self.lock()?;
            (
                inner.state.ca.chain_pem(),
                inner.state.ca.root_cert.clone(),
                inner.cached_quote.clone(),
            )
        };
        let quote = match nonce {
            None => cached,
            Some(n) => self.make_quote(&cairn_crypto::sha256_concat(&[&root, n]))?,
        };
        Ok(QuoteInfo {
            cert_chain_pem: chain,
            quote,
        })
    }

    /// Root certificate DER (the client API's TLS certificate).
    pub fn root_cert(&self) -> Result<Vec<u8>, CoreError> {
        Ok(self.lock()?.state.ca.root_cert.clone())
    }

    /// A copy of the CA bundle (certificates and keys) for the TLS servers. Holders must keep the
    /// keys in memory only.
    pub fn ca_bundle(&self) -> Result<CaBundle, CoreError> {
        Ok(self.lock()?.state.ca.clone())
    }

    /// True when the current manifest enables `gate` (false without a manifest).
    pub fn feature_enabled(&self, gate: cairn_manifest::FeatureGate) -> bool {
        self.lock()
            .map(|i| {
                i.manifest
                    .as_ref()
                    .is_some_and(|m| m.manifest().feature_enabled(gate))
            })
            .unwrap_or(false)
    }

    /// Changes whenever the CA bundle changed (compare with a cached value, then re-read
    /// [`CoordinatorCore::ca_bundle`]).
    pub fn ca_epoch(&self) -> u64 {
        self.ca_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn bump_ca_epoch(&self) {
        self.ca_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Activation count per marble type (only types with MaxActivations > 0 are counted).
    pub fn activation_count(&self, marble_type: &str) -> u64 {
        self.lock()
            .map(|i| i.state.activations.get(marble_type).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Sets the initial manifest (state 2, or state 1 to discard the sealed state).
    ///
    /// Parses and checks `raw`, generates the shared secrets and the root secret, signs
    /// SHA-256(raw) with the root key and commits before returning; on a failed commit nothing
    /// changes.
    pub fn set_manifest(&self, raw: &[u8]) -> Result<SetManifestResult, CoreError> {
        self.check_discarding_shared_state()?;
        self.retry_conflicts(|| self.set_manifest_once(raw))
    }

    fn set_manifest_once(&self, raw: &[u8]) -> Result<SetManifestResult, CoreError> {
        let mut inner = self.lock()?;
        if inner.phase == Phase::AcceptingMarbles {
            return Err(CoreError::WrongState(
                "a manifest is already set (Coordinator state 3, accepting marbles); to change it, use a manifest update (POST /api/v2/update, `cairn manifest update apply`)".into(),
            ));
        }
        let now = self.deps.clock.now();
        let vm = ValidManifest::parse_at(raw, now).map_err(|e| CoreError::InvalidManifest {
            kind: e.kind.as_str(),
            message: e.to_string(),
        })?;
        let warnings: Vec<String> = vm.warnings().iter().map(ToString::to_string).collect();
        for w in &warnings {
            tracing::warn!(warning = %w, "manifest warning");
        }

        let mut next = inner.state.clone();
        let generated = secrets::generate_shared(vm.manifest(), &next.ca, now)?;
        next.previous_secrets = generated.clone();
        next.secrets = generated;
        let root_secret =
            cairn_crypto::random_bytes(32).map_err(|e| CoreError::internal("random", e))?;
        next.root_secret = Some(Zeroizing::new(root_secret));
        next.previous_root_secret = None;
        let signature = next
            .ca
            .sign_manifest(vm.raw())
            .map_err(|e| CoreError::internal("signing the manifest", e))?;
        next.manifest_raw = Some(vm.raw().to_vec());
        next.manifest_signature = Some(signature);
        next.phase = PHASE_ACCEPTING_MARBLES;
        next.activations.clear();
        next.update_log = vec![log_line(now, "Initial manifest set", &[])];
        next.security_versions.clear();
        next.pending_update = None;

        // A fresh data key per manifest, split for the recovery keys (recovery.rs).
        let recovery::NewDataKey {
            data_key,
            recovery_data,
            secrets: recovery_secrets,
        } = recovery::new_data_key(vm.manifest())?;
        next.recovery_data = Some(recovery_data);
        let seal_mode = vm.manifest().config.seal_mode;
        let mut warnings = warnings;
        if seal_mode == SealMode::Disabled {
            tracing::warn!("{}", recovery::DISABLED_WARNING);
            warnings.push(recovery::DISABLED_WARNING.into());
        }
        // Invariant: memory changes only after the new state is durably committed.
        let rev = self
            .commit(&next, inner.revision, &data_key, seal_mode)
            .map_err(|e| {
                tracing::error!(error = %e, "manifest set failed: state not persisted");
                self.conflict_reload(
                    &mut inner,
                    e,
                    "the manifest could not be persisted, nothing was changed",
                )
            })?;
        if let Some(d) = inner.discarded.take() {
            tracing::warn!(discarded = %d, "manifest set in recovery mode replaced the sealed state");
        }
        inner.recovery = None;
        inner.state = next;
        inner.revision = Some(rev);
        inner.data_key = data_key;
        inner.phase = Phase::AcceptingMarbles;
        tracing::info!(fingerprint = %vm.fingerprint_hex(), "manifest set");
        inner.manifest = Some(Arc::new(vm));
        Ok(SetManifestResult {
            recovery_secrets,
            warnings,
        })
    }

    /// The update log lines (state 3).
    pub fn update_log(&self) -> Result<Vec<String>, CoreError> {
        let inner = self.lock()?;
        if inner.phase != Phase::AcceptingMarbles {
            return Err(wrong_state(inner.phase));
        }
        Ok(inner.state.update_log.clone())
    }

    /// Commits `next` against the revision `inner` reflects and, only on success, makes it the
    /// in-memory state.
    pub(crate) fn commit_next(&self, inner: &mut Inner, next: State) -> Result<(), CoreError> {
        let mode = CoordinatorCore::seal_mode_of(inner);
        // Invariant: memory changes only after the new state is durably committed.
        let rev = self
            .commit(&next, inner.revision, &inner.data_key, mode)
            .map_err(|e| {
                self.conflict_reload(
                    inner,
                    e,
                    "the change could not be persisted, nothing was changed",
                )
            })?;
        inner.state = next;
        inner.revision = Some(rev);
        Ok(())
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Inner>, CoreError> {
        self.inner
            .lock()
            .map_err(|_| CoreError::Internal("internal state lock poisoned".into()))
    }

    /// Seals `state` and compare-and-swaps it against `expected`; returns the new revision.
    pub(crate) fn commit(
        &self,
        state: &State,
        expected: Option<u64>,
        data_key: &SecretKey32,
        mode: SealMode,
    ) -> Result<u64, CoreError> {
        if mode == SealMode::Disabled {
            self.refuse_disabled_in_ha()?;
            return self.commit_disabled(state, expected);
        }
        let (kind, mode_byte) = seal_choice(mode);
        let plaintext = state
            .to_plaintext()
            .map_err(|e| CoreError::internal("serialising the state", e))?;
        // HA mode wraps the data key under the shared KEK instead (`ha.rs`).
        let (seal_key, mode_byte) = self.wrapping_key(mode, kind, mode_byte)?;
        let recovery_data = state.recovery_data.as_deref().unwrap_or_default();
        let blob =
            cairn_store::seal_state(&plaintext, data_key, &seal_key, mode_byte, recovery_data)
                .map_err(|e| CoreError::internal("sealing the state", e))?;
        let rev = self
            .deps
            .store
            .compare_and_swap(expected.map(Revision), &blob)
            .map_err(crate::ha::store_error)?;
        Ok(rev.0)
    }

    pub(crate) fn make_quote(&self, report: &[u8; 32]) -> Result<Vec<u8>, CoreError> {
        let raw = self
            .deps
            .issuer
            .quote(report)
            .map_err(|e| CoreError::internal("generating the Coordinator quote", e))?;
        Ok(cairn_attest::oe::wrap(&raw))
    }

    pub(crate) fn seal_mode_of(inner: &Inner) -> SealMode {
        inner
            .manifest
            .as_ref()
            .map(|m| m.manifest().config.seal_mode)
            .unwrap_or_default()
    }
}

pub(crate) fn wrong_state(phase: Phase) -> CoreError {
    CoreError::WrongState(format!(
        "server is not in expected state: Coordinator is in state {} ({})",
        phase.code(),
        phase.message()
    ))
}

/// Update-log time format: ISO-8601 with milliseconds and zone, as zap's ISO8601 encoder
/// writes it (Go layout `2006-01-02T15:04:05.000Z0700`: `Z` for UTC, `+hhmm` otherwise).
const LOG_TIME: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]"
);
const LOG_ZONE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[offset_hour sign:mandatory][offset_minute]");

/// One update-log line: `{"time": ISO-8601, "update": message, fields...}`.
pub(crate) fn log_line(
    now: OffsetDateTime,
    message: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    let mut obj = serde_json::Map::new();
    let mut t = now.format(LOG_TIME).unwrap_or_default();
    if now.offset().is_utc() {
        t.push('Z');
    } else {
        t.push_str(&now.format(LOG_ZONE).unwrap_or_default());
    }
    obj.insert("time".into(), t.into());
    obj.insert("update".into(), message.into());
    for (k, v) in fields {
        obj.insert((*k).into(), v.clone());
    }
    serde_json::Value::Object(obj).to_string()
}

fn seal_choice(mode: SealMode) -> (cairn_attest::SealKeyKind, u8) {
    match mode {
        SealMode::UniqueKey => (cairn_attest::SealKeyKind::Enclave, MODE_UNIQUE_KEY),
        // Disabled never reaches here (`commit_disabled` stores a fresh state with ProductKey).
        _ => (cairn_attest::SealKeyKind::Signer, MODE_PRODUCT_KEY),
    }
}

fn new_ca(config: &CoreConfig, now: OffsetDateTime) -> Result<CaBundle, CoreError> {
    CaBundle::generate(config.key_type, &config.dns_names, now)
        .map_err(|e| CoreError::internal("generating the Coordinator CA", e))
}

fn fresh_inner(state: State, data_key: SecretKey32, phase: Phase) -> Inner {
    Inner {
        phase,
        state,
        revision: None,
        data_key,
        manifest: None,
        cached_quote: Vec::new(),
        discarded: None,
        recovery: None,
    }
}

/// Tries the ProductKey then the UniqueKey seal key.
pub(crate) fn unseal_any(issuer: &dyn Issuer, blob: &[u8]) -> Result<(State, SecretKey32), String> {
    let mut reasons = Vec::new();
    for kind in [
        cairn_attest::SealKeyKind::Signer,
        cairn_attest::SealKeyKind::Enclave,
    ] {
        let key = match issuer.seal_key(kind) {
            Ok(k) => k,
            Err(e) => {
                reasons.push(format!("{kind:?} seal key unavailable: {e}"));
                continue;
            }
        };
        match cairn_store::unseal_state(blob, &key) {
            Ok(u) => {
                let state = State::from_plaintext(&u.plaintext)
                    .map_err(|e| format!("unsealed state is not readable: {e}"))?;
                return Ok((state, u.data_key));
            }
            Err(e) => reasons.push(format!("{kind:?} seal key: {e}")),
        }
    }
    Err(reasons.join("; "))
}

pub(crate) fn restore(state: State, data_key: SecretKey32, rev: u64) -> Result<Inner, String> {
    let (phase, manifest) = if state.phase == PHASE_ACCEPTING_MANIFEST {
        (Phase::AcceptingManifest, None)
    } else {
        let raw = state
            .manifest_raw
            .as_deref()
            .ok_or("persisted state 3 has no manifest")?;
        let vm = ValidManifest::parse(raw)
            .map_err(|e| format!("persisted manifest no longer parses: {e}"))?;
        (Phase::AcceptingMarbles, Some(Arc::new(vm)))
    };
    let mut inner = fresh_inner(state, data_key, phase);
    inner.revision = Some(rev);
    inner.manifest = manifest;
    Ok(inner)
}

fn recovery_inner(
    config: &CoreConfig,
    now: OffsetDateTime,
    rev: u64,
    blob: &[u8],
    reason: &str,
) -> Result<Inner, CoreError> {
    let discarded = format!(
        "sealed state revision {rev}, blob sha256 {}",
        hex::encode(cairn_crypto::sha256(blob))
    );
    tracing::error!(
        reason = %reason,
        sealed_state = %discarded,
        "the sealed state could not be unsealed; entering recovery mode (state 1) with a temporary root certificate. The sealed state is kept: recover it, or set a new manifest to replace it"
    );
    let ca = CaBundle::temporary(config.key_type, &config.dns_names, now)
        .map_err(|e| CoreError::internal("generating the temporary CA", e))?;
    let data_key = cairn_crypto::random_key32().map_err(|e| CoreError::internal("random", e))?;
    let mut inner = fresh_inner(State::new(ca), data_key, Phase::Recovery);
    inner.revision = Some(rev);
    inner.discarded = Some(discarded);
    inner.recovery = Some(Pending::new(blob, rev));
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};

    use cairn_platform::PlatformError;
    use cairn_store::MemoryPersistence;

    use super::*;
    use crate::ErrorKind;

    /// Quotes are the padded report data; seal keys depend on `epoch` (another "enclave").
    struct FakeIssuer {
        epoch: AtomicU8,
    }

    impl Issuer for FakeIssuer {
        fn quote(&self, report_data: &[u8]) -> Result<Vec<u8>, PlatformError> {
            let mut q = report_data.to_vec();
            q.resize(64, 0);
            Ok(q)
        }
        fn seal_key(&self, kind: cairn_attest::SealKeyKind) -> Result<SecretKey32, PlatformError> {
            let k = match kind {
                cairn_attest::SealKeyKind::Signer => 1,
                _ => 2,
            };
            Ok(SecretKey32([k ^ self.epoch.load(Ordering::SeqCst); 32]))
        }
        fn identity_summary(&self) -> String {
            "fake".into()
        }
    }

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> OffsetDateTime {
            time::macros::datetime!(2026-06-01 12:00 UTC)
        }
    }

    struct NoVerifier;
    impl QuoteVerifier for NoVerifier {
        fn verify(&self, _: &[u8], _: u64) -> Result<cairn_attest::Verdict, CoreError> {
            Err(CoreError::PermissionDenied(
                "no verifier in unit tests".into(),
            ))
        }
    }

    fn deps(store: Arc<MemoryPersistence>, issuer: Arc<FakeIssuer>) -> Deps {
        Deps {
            issuer,
            store,
            clock: Arc::new(FixedClock),
            verifier: Arc::new(NoVerifier),
        }
    }

    fn config() -> CoreConfig {
        CoreConfig {
            key_type: KeyType::P256,
            dns_names: vec!["localhost".into()],
        }
    }

    const BASE: &str = r#"{"Packages":{"p":{"UniqueID":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}},"Marbles":{"m":{"Package":"p"}},"Secrets":{"k":{"Type":"symmetric-key","Size":128,"Shared":true}}}"#;

    #[test]
    fn lifecycle_commit_failure_restart_and_recovery() {
        let store = Arc::new(MemoryPersistence::new());
        let issuer = Arc::new(FakeIssuer {
            epoch: AtomicU8::new(0),
        });
        let core = CoordinatorCore::start(deps(store.clone(), issuer.clone()), config()).unwrap();
        assert_eq!(core.phase(), Phase::AcceptingManifest);
        assert!(
            store.load().unwrap().is_some(),
            "the new CA is committed at start"
        );
        let root = core.root_cert().unwrap();

        // Quote binding: cached over SHA-256(root), fresh over SHA-256(root ‖ nonce).
        let q = core.quote(None).unwrap();
        let raw = cairn_attest::oe::unwrap(&q.quote).unwrap();
        assert_eq!(&raw[..32], &cairn_crypto::sha256(&root)[..]);
        let q = core.quote(Some(b"n")).unwrap();
        let raw = cairn_attest::oe::unwrap(&q.quote).unwrap();
        assert_eq!(&raw[..32], &cairn_crypto::sha256_concat(&[&root, b"n"])[..]);

        // Invalid manifest.
        let e = core.set_manifest(b"{}").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidManifest);

        // FR-32b: a failed commit changes nothing.
        store.fail_next_writes(1);
        let e = core.set_manifest(BASE.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert_eq!(core.phase(), Phase::AcceptingManifest);
        assert_eq!(core.manifest().unwrap_err().kind(), ErrorKind::NotFound);
        core.set_manifest(BASE.as_bytes()).unwrap();
        assert_eq!(core.phase(), Phase::AcceptingMarbles);
        let info = core.manifest().unwrap();
        assert_eq!(
            info.fingerprint_hex,
            hex::encode(cairn_crypto::sha256(BASE.as_bytes()))
        );
        cairn_ca::verify_manifest_signature(&root, BASE.as_bytes(), &info.signature).unwrap();

        // FR-32a: the second set points to the update workflow.
        let e = core.set_manifest(BASE.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert!(e.to_string().contains("update"));
        drop(core);

        // Restart: same root, manifest and signature.
        let core = CoordinatorCore::start(deps(store.clone(), issuer.clone()), config()).unwrap();
        assert_eq!(core.phase(), Phase::AcceptingMarbles);
        assert_eq!(core.root_cert().unwrap(), root);
        assert_eq!(core.manifest().unwrap().signature, info.signature);
        drop(core);

        // Another seal key: recovery with a temporary root; the sealed state is untouched.
        issuer.epoch.store(0x80, Ordering::SeqCst);
        let before = store.load().unwrap().unwrap();
        let core = CoordinatorCore::start(deps(store.clone(), issuer.clone()), config()).unwrap();
        assert_eq!(core.phase(), Phase::Recovery);
        assert_ne!(core.root_cert().unwrap(), root);
        assert_eq!(
            core.manifest().unwrap_err().kind(),
            ErrorKind::FailedPrecondition
        );
        assert_eq!(store.load().unwrap().unwrap().1, before.1);
        // An explicit manifest set replaces it.
        core.set_manifest(BASE.as_bytes()).unwrap();
        assert_eq!(core.phase(), Phase::AcceptingMarbles);
        assert_ne!(store.load().unwrap().unwrap().1, before.1);
    }

    #[test]
    fn log_line_shape() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.123 UTC);
        let l = log_line(t, "Initial manifest set", &[("user", "alice".into())]);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["update"], "Initial manifest set");
        assert_eq!(v["user"], "alice");
        assert!(v["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-02T03:04:05.123"));
        assert_eq!(v["time"], "2026-01-02T03:04:05.123Z");
        let t = time::macros::datetime!(2026-01-02 03:04:05.123 +01:30);
        let v: serde_json::Value = serde_json::from_str(&log_line(t, "x", &[])).unwrap();
        assert_eq!(v["time"], "2026-01-02T03:04:05.123+0130");
    }
}
