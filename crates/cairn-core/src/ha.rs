//! High availability: several Coordinator instances share one state in a distributed store
//! (etcd). Logic only; sockets live in the coordinator's `peer` module.
//!
//! Keys. The shared blob keeps the codec of cairn-store unchanged: the state is encrypted under
//! the data key (the unit recovery restores), and the data key is wrapped under a shared 32-byte
//! **key-encryption key** (KEK) instead of an instance's seal key (blob mode byte [`MODE_KEK`]).
//! Each instance keeps the KEK sealed with its own seal key in its own KEK store (a file in its
//! seal dir), so it restarts without help. An instance without the KEK gets it from a running
//! instance over mutual TLS after both attested each other ([`CoordinatorCore::verify_peer`]:
//! same MRSIGNER + ProductID and SVN ≥ own, or same MRENCLAVE under UniqueKey), or through
//! recovery when none runs.
//!
//! Linearizability. Every commit is a compare-and-swap on the revision the in-memory state
//! reflects. A conflict means another instance committed first: the commit path reloads the
//! latest state ([`CoordinatorCore::reload_locked`]) and the operation is re-run on it
//! ([`CoordinatorCore::retry_conflicts`], bounded), so a decision such as "one activation left"
//! is always taken on the latest committed state. A watcher outside the core calls
//! [`CoordinatorCore::refresh`] on every store change so reads follow within a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_attest::{SealKeyKind, Verdict};
use cairn_crypto::SecretKey32;
use cairn_manifest::SealMode;
use cairn_store::{Persistence, StoreError};

use crate::coordinator::{restore, unseal_any, CoordinatorCore, CoreConfig, Deps, Inner};
use crate::error::CoreError;
use crate::state::State;
use crate::Phase;

/// Sealed-blob mode byte: the data key is wrapped under the shared KEK (HA mode).
pub const MODE_KEK: u8 = 2;
/// How often an operation is re-run after losing a compare-and-swap race.
pub(crate) const MAX_ATTEMPTS: u32 = 64;

/// Which side of a key exchange the verified peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer asks for the KEK: its SVN must be at least this instance's.
    Requester,
    /// The peer hands the KEK over: same signer and product, any SVN, so an upgraded instance
    /// can join a cluster of older ones (the key it receives must still open the state).
    Provider,
}

/// Which other instances serve the shared state, as the store's presence registry tells (the
/// coordinator's `peer` module keeps it in etcd with expiring keys).
pub trait PeerDirectory: Send + Sync {
    /// Advertised peer addresses of the other instances that are alive and hold a state key that
    /// opens the shared state (not in recovery). Blocks on the store.
    fn ready_peers(&self) -> Result<Vec<String>, String>;
}

/// What the core needs for HA mode.
#[derive(Clone)]
pub struct HaConfig {
    /// Where this instance keeps the KEK sealed with its own seal key (its seal dir).
    pub kek_store: Arc<dyn Persistence>,
    /// The other instances; `None` (tests) counts as "no instance serves".
    pub peers: Option<Arc<dyn PeerDirectory>>,
}

pub(crate) struct Ha {
    kek_store: Arc<dyn Persistence>,
    kek: Mutex<Option<SecretKey32>>,
    own: Mutex<Option<Verdict>>,
    peers: Option<Arc<dyn PeerDirectory>>,
    /// Set when the held KEK no longer opens the shared state (it was re-keyed by a forced
    /// recovery elsewhere): the instance then asks its peers for the current KEK.
    stale: AtomicBool,
}

impl Ha {
    pub(crate) fn new(config: HaConfig) -> Self {
        Ha {
            kek_store: config.kek_store,
            kek: Mutex::new(None),
            own: Mutex::new(None),
            peers: config.peers,
            stale: AtomicBool::new(false),
        }
    }

    fn kek_slot(&self) -> MutexGuard<'_, Option<SecretKey32>> {
        // The slot is replaced as a whole, so a poisoned value is still consistent.
        self.kek.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn kek(&self) -> Option<SecretKey32> {
        self.kek_slot().clone()
    }

    /// Loads the locally sealed KEK, if this instance has one its seal keys open.
    pub(crate) fn load_local(&self, issuer: &dyn cairn_platform::Issuer) -> Result<(), CoreError> {
        let Some((_, blob)) = self
            .kek_store
            .load()
            .map_err(|e| CoreError::internal("loading the sealed KEK", e))?
        else {
            return Ok(());
        };
        for kind in [SealKeyKind::Signer, SealKeyKind::Enclave] {
            let Ok(seal_key) = issuer.seal_key(kind) else {
                continue;
            };
            if let Ok(u) = cairn_store::unseal_state(&blob, &seal_key) {
                let kek = SecretKey32::from_slice(&u.plaintext)
                    .map_err(|e| CoreError::internal("the sealed KEK", e))?;
                *self.kek_slot() = Some(kek);
                return Ok(());
            }
        }
        tracing::warn!("the locally sealed KEK cannot be opened with this instance's seal keys; it will be replaced once the KEK is obtained");
        Ok(())
    }

    /// Seals `kek` with this instance's seal key into the KEK store, then uses it.
    pub(crate) fn install(
        &self,
        issuer: &dyn cairn_platform::Issuer,
        kek: SecretKey32,
        mode: SealMode,
    ) -> Result<(), CoreError> {
        let kind = match mode {
            SealMode::UniqueKey => SealKeyKind::Enclave,
            _ => SealKeyKind::Signer,
        };
        let seal_key = issuer
            .seal_key(kind)
            .map_err(|e| CoreError::internal("deriving the seal key", e))?;
        let wrap = cairn_crypto::random_key32().map_err(|e| CoreError::internal("random", e))?;
        let blob = cairn_store::seal_state(&kek.0, &wrap, &seal_key, 0, &[])
            .map_err(|e| CoreError::internal("sealing the KEK", e))?;
        let current = self
            .kek_store
            .load()
            .map_err(|e| CoreError::internal("loading the sealed KEK", e))?
            .map(|(r, _)| r);
        self.kek_store
            .compare_and_swap(current, &blob)
            .map_err(|e| CoreError::internal("storing the sealed KEK", e))?;
        *self.kek_slot() = Some(kek);
        Ok(())
    }
}

impl CoordinatorCore {
    /// True when this instance shares its state with others (HA mode).
    pub fn is_ha(&self) -> bool {
        self.ha.is_some()
    }

    /// True in HA mode while this instance has no KEK: it serves in Recovery (state 1) until a
    /// peer hands the KEK over ([`CoordinatorCore::install_kek`]) or the state is recovered.
    pub fn awaiting_kek(&self) -> bool {
        self.ha
            .as_ref()
            .is_some_and(|h| h.kek().is_none() || h.stale.load(Ordering::Acquire))
            || (self.is_ha() && self.phase() == Phase::Recovery)
    }

    /// Refuses a manual recovery (`POST /api/v2/recover`) of an HA instance in Recovery while
    /// other instances serve the shared state, unless `force`. Recovering here would wrap the
    /// state under a new KEK and lock the serving instances out (the cluster splits), while the
    /// instance gets the KEK from them automatically. Outside HA mode or Recovery it allows
    /// everything (the recovery itself reports a wrong state).
    pub fn check_manual_recovery(&self, force: bool) -> Result<(), CoreError> {
        let Some(ha) = &self.ha else {
            return Ok(());
        };
        if self.phase() != Phase::Recovery {
            return Ok(());
        }
        let ready = match &ha.peers {
            Some(d) => d.ready_peers(),
            None => Ok(Vec::new()),
        };
        manual_recovery_verdict(ready, force)
    }

    /// Refuses a manifest set on an HA instance in Recovery while other instances serve the
    /// shared state: the set would replace the whole deployment's state under them.
    pub(crate) fn check_discarding_shared_state(&self) -> Result<(), CoreError> {
        let Some(ha) = &self.ha else {
            return Ok(());
        };
        if self.phase() != Phase::Recovery {
            return Ok(());
        }
        let ready = match &ha.peers {
            Some(d) => d.ready_peers(),
            None => Ok(Vec::new()),
        };
        // Invariant: a manifest set replaces the shared state only when the registry
        // positively shows no other instance serving it.
        match ready {
            Ok(peers) if peers.is_empty() => Ok(()),
            Ok(peers) => Err(CoreError::PeersServing(format!(
                "manifest set refused: this instance is in recovery mode while {} other Coordinator instance(s) serve the shared state ({}); a manifest set here would replace the deployment's state under them. This instance obtains the state key from them automatically over --peer-addr (if it does not, its log says why); to start the deployment over, stop every other instance first",
                peers.len(),
                peers.join(", ")
            ))),
            Err(e) => Err(CoreError::PeersServing(format!(
                "manifest set refused: this instance is in recovery mode and cannot tell whether other Coordinator instances serve the shared state ({e}); retry when etcd is reachable"
            ))),
        }
    }

    /// The KEK for a peer that [`CoordinatorCore::verify_peer`] accepted. Refused while this
    /// instance has none or is in Recovery.
    pub fn kek_for_peer(&self) -> Result<SecretKey32, CoreError> {
        let Some(ha) = &self.ha else {
            return Err(CoreError::WrongState("not running in HA mode".into()));
        };
        if self.phase() == Phase::Recovery {
            return Err(CoreError::WrongState(
                "this instance is in recovery mode and cannot share the state key".into(),
            ));
        }
        if ha.stale.load(Ordering::Acquire) {
            return Err(CoreError::WrongState(
                "this instance's state key no longer opens the shared state; it is asking its peers for the current one".into(),
            ));
        }
        ha.kek()
            .ok_or_else(|| CoreError::WrongState("this instance has no state key yet".into()))
    }

    /// A quote of this instance whose report data is SHA-256(`cert_der`) (OE-wrapped): the
    /// evidence it presents to a peer for its TLS certificate.
    pub fn peer_quote(&self, cert_der: &[u8]) -> Result<Vec<u8>, CoreError> {
        let raw = self
            .deps
            .issuer
            .quote(&cairn_crypto::sha256(cert_der))
            .map_err(|e| CoreError::internal("generating the instance quote", e))?;
        Ok(cairn_attest::oe::wrap(&raw))
    }

    /// Verifies a peer instance: its quote is valid, bound to its TLS certificate `cert_der`,
    /// and its identity passes the policy the Coordinator applies to itself: same MRENCLAVE
    /// under UniqueKey sealing; otherwise same MRSIGNER, ProductID and Debug, with SVN ≥ own
    /// for a [`PeerRole::Requester`]. Its TCB status must be UpToDate or equal to this
    /// instance's.
    pub fn verify_peer(
        &self,
        quote: &[u8],
        cert_der: &[u8],
        role: PeerRole,
    ) -> Result<(), CoreError> {
        let now = u64::try_from(self.deps.clock.now().unix_timestamp()).unwrap_or(0);
        let own = self.own_verdict(now)?;
        let peer = self
            .deps
            .verifier
            .verify(quote, now)
            .map_err(|e| CoreError::PermissionDenied(format!("peer instance: {e}")))?;
        cairn_attest::check_binding(&peer, cert_der, &[]).map_err(|e| {
            CoreError::PermissionDenied(format!(
                "peer instance quote is not bound to its TLS certificate: {e}"
            ))
        })?;
        let mode = self
            .lock()
            .map(|i| CoordinatorCore::seal_mode_of(&i))
            .unwrap_or_default();
        check_peer_identity(&own, &peer, mode, role)
    }

    fn own_verdict(&self, now: u64) -> Result<Verdict, CoreError> {
        let Some(ha) = &self.ha else {
            return Err(CoreError::WrongState("not running in HA mode".into()));
        };
        let mut slot = ha.own.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = slot.as_ref() {
            return Ok(v.clone());
        }
        let quote = self.peer_quote(b"cairn own identity")?;
        let v = self.deps.verifier.verify(&quote, now).map_err(|e| {
            CoreError::Internal(format!("cannot verify this instance's own quote: {e}"))
        })?;
        *slot = Some(v.clone());
        Ok(v)
    }

    /// Takes a KEK a verified peer handed over: it must open the shared state, which is then
    /// loaded; the KEK is sealed into this instance's KEK store.
    pub fn install_kek(&self, kek: SecretKey32) -> Result<(), CoreError> {
        let Some(ha) = &self.ha else {
            return Err(CoreError::WrongState("not running in HA mode".into()));
        };
        let mut inner = self.lock()?;
        let Some((rev, blob)) = self
            .deps
            .store
            .load()
            .map_err(|e| CoreError::internal("loading the shared state", e))?
        else {
            return Err(CoreError::NotFound("no shared state in the store".into()));
        };
        let u = cairn_store::unseal_state(&blob, &kek).map_err(|e| {
            CoreError::PermissionDenied(format!("the received KEK does not open the state: {e}"))
        })?;
        let state = State::from_plaintext(&u.plaintext)
            .map_err(|e| CoreError::internal("the shared state is not readable", e))?;
        let next = restore(state, u.data_key, rev.0).map_err(CoreError::Internal)?;
        let mode = CoordinatorCore::seal_mode_of(&next);
        ha.install(self.deps.issuer.as_ref(), kek, mode)?;
        self.replace_inner(&mut inner, next)?;
        ha.stale.store(false, Ordering::Release);
        tracing::info!(
            revision = rev.0,
            "obtained the state key from a peer instance; serving the shared state"
        );
        Ok(())
    }

    /// Reloads the shared state when the store holds a newer revision than memory. Returns true
    /// when the in-memory state changed. Blocks on the store: call it from a blocking context.
    /// The store is read and the blob opened without holding the state lock, so reads of the
    /// cached state never wait for a slow store.
    pub fn refresh(&self) -> Result<bool, CoreError> {
        if self.phase() == Phase::Recovery {
            return Ok(false);
        }
        let Some((rev, blob)) = self
            .deps
            .store
            .load()
            .map_err(|e| CoreError::internal("reloading the state", e))?
        else {
            return Ok(false);
        };
        let current = self.lock()?.revision;
        // Revisions only grow; memory at or past `rev` already reflects it.
        if current.is_some_and(|c| c >= rev.0) {
            return Ok(false);
        }
        let (state, data_key) = self.unseal_shared(&blob).map_err(|reason| {
            self.note_unopenable(&blob);
            CoreError::Internal(format!(
                "the state at revision {} cannot be opened by this instance: {reason}",
                rev.0
            ))
        })?;
        let next = restore(state, data_key, rev.0).map_err(CoreError::Internal)?;
        let mut inner = self.lock()?;
        if inner.phase == Phase::Recovery || inner.revision.is_some_and(|c| c >= rev.0) {
            return Ok(false);
        }
        self.replace_inner(&mut inner, next)?;
        tracing::debug!(revision = rev.0, "reloaded the shared state");
        Ok(true)
    }

    /// Reloads under the held lock (see [`CoordinatorCore::refresh`]). In Recovery nothing is
    /// loaded: the state must first be recovered or its key obtained.
    pub(crate) fn reload_locked(&self, inner: &mut Inner) -> Result<bool, CoreError> {
        if inner.phase == Phase::Recovery {
            return Ok(false);
        }
        let Some((rev, blob)) = self
            .deps
            .store
            .load()
            .map_err(|e| CoreError::internal("reloading the state", e))?
        else {
            return Ok(false);
        };
        if inner.revision == Some(rev.0) {
            return Ok(false);
        }
        let (state, data_key) = self.unseal_shared(&blob).map_err(|reason| {
            self.note_unopenable(&blob);
            CoreError::Internal(format!(
                "the state at revision {} cannot be opened by this instance: {reason}",
                rev.0
            ))
        })?;
        let next = restore(state, data_key, rev.0).map_err(CoreError::Internal)?;
        self.replace_inner(inner, next)?;
        tracing::debug!(revision = rev.0, "reloaded the shared state");
        Ok(true)
    }

    /// The shared state is wrapped under a KEK this instance's KEK does not open (a forced
    /// recovery elsewhere re-keyed it): marks the KEK stale, so the key fetcher asks the peers
    /// for the current one and this instance stops handing out its own.
    fn note_unopenable(&self, blob: &[u8]) {
        let Some(ha) = &self.ha else { return };
        let kek_wrapped = cairn_store::inspect(blob).is_ok_and(|i| i.mode == MODE_KEK);
        if kek_wrapped && ha.kek().is_some() && !ha.stale.swap(true, Ordering::AcqRel) {
            tracing::warn!("the shared state was re-keyed (a forced recovery through another instance?): this instance's state key no longer opens it; asking the peer instances for the current key");
        }
    }

    /// Unseals a blob with the KEK (HA) or this instance's seal keys.
    pub(crate) fn unseal_shared(&self, blob: &[u8]) -> Result<(State, SecretKey32), String> {
        unseal_with(self.ha.as_ref(), self.deps.issuer.as_ref(), blob)
    }

    /// The key and mode byte that wrap the data key on commit: the KEK in HA mode (generated and
    /// sealed locally on first use), otherwise this instance's seal key.
    pub(crate) fn wrapping_key(
        &self,
        mode: SealMode,
        seal_kind: SealKeyKind,
        seal_mode_byte: u8,
    ) -> Result<(SecretKey32, u8), CoreError> {
        if let Some(ha) = &self.ha {
            if let Some(k) = ha.kek() {
                return Ok((k, MODE_KEK));
            }
            let kek = cairn_crypto::random_key32().map_err(|e| CoreError::internal("random", e))?;
            ha.install(self.deps.issuer.as_ref(), kek.clone(), mode)?;
            tracing::info!("generated a new state key (KEK) for the shared state");
            return Ok((kek, MODE_KEK));
        }
        let seal_key = self
            .deps
            .issuer
            .seal_key(seal_kind)
            .map_err(|e| CoreError::internal("deriving the seal key", e))?;
        Ok((seal_key, seal_mode_byte))
    }

    /// `SealMode: Disabled` keeps a deployment in one instance's memory only, which instances
    /// sharing a state cannot honour: such a manifest is refused in HA mode.
    pub(crate) fn refuse_disabled_in_ha(&self) -> Result<(), CoreError> {
        if self.ha.is_some() {
            return Err(CoreError::InvalidManifest {
                kind: "E_CHECK",
                message: "Config.SealMode: Disabled cannot be used by several Coordinator instances sharing one state (--store etcd); use ProductKey or UniqueKey".into(),
            });
        }
        Ok(())
    }

    /// Runs `op` and re-runs it (after a reload, done by the commit path) while it loses
    /// compare-and-swap races against other instances, at most [`MAX_ATTEMPTS`] times.
    pub(crate) fn retry_conflicts<T>(
        &self,
        mut op: impl FnMut() -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let mut attempt = 0u32;
        loop {
            match op() {
                Err(CoreError::Conflict(m)) if attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(attempt, reason = %m, "lost a commit race; retrying on the latest state");
                    if attempt > 4 {
                        // Spread contending instances apart a little.
                        let jitter = cairn_crypto::random_bytes(1)
                            .map(|b| u64::from(b[0] % 8))
                            .unwrap_or(3);
                        std::thread::sleep(Duration::from_millis(jitter + u64::from(attempt)));
                    }
                }
                Err(CoreError::Conflict(m)) => {
                    return Err(CoreError::Internal(format!(
                        "the state kept changing through other Coordinator instances ({MAX_ATTEMPTS} attempts); nothing was changed, retry later: {m}"
                    )))
                }
                other => return other,
            }
        }
    }

    /// Maps a failed commit made on `inner`: after a compare-and-swap conflict the latest
    /// state is reloaded into `inner` and [`CoreError::Conflict`] returned, so the operation can
    /// be re-run on it; anything else becomes `Internal` prefixed with `what`.
    pub(crate) fn conflict_reload(&self, inner: &mut Inner, e: CoreError, what: &str) -> CoreError {
        match e {
            CoreError::Conflict(m) => match self.reload_locked(inner) {
                Ok(true) => CoreError::Conflict(m),
                Ok(false) => CoreError::Internal(format!("{what}: {m}")),
                Err(re) => CoreError::Internal(format!("{what}: {m}; reloading failed: {re}")),
            },
            refused @ CoreError::InvalidManifest { .. } => refused,
            other => CoreError::Internal(format!("{what}: {other}")),
        }
    }

    /// Makes `next` the in-memory state. Keeps the manifest `Arc` when the bytes are unchanged
    /// (in-flight activations compare it), re-quotes when the root changed, and moves the CA
    /// epoch when a certificate changed so TLS servers rebuild theirs.
    pub(crate) fn replace_inner(
        &self,
        inner: &mut Inner,
        mut next: Inner,
    ) -> Result<(), CoreError> {
        if let (Some(old), Some(new)) = (&inner.manifest, &next.manifest) {
            if old.raw() == new.raw() {
                next.manifest = Some(old.clone());
            }
        }
        let root_changed = inner.state.ca.root_cert != next.state.ca.root_cert;
        let ca_changed =
            root_changed || inner.state.ca.intermediate_cert != next.state.ca.intermediate_cert;
        next.cached_quote = if root_changed || inner.cached_quote.is_empty() {
            self.make_quote(&cairn_crypto::sha256(&next.state.ca.root_cert))?
        } else {
            std::mem::take(&mut inner.cached_quote)
        };
        *inner = next;
        if ca_changed {
            self.bump_ca_epoch();
        }
        Ok(())
    }

    /// Starts in HA mode: like [`CoordinatorCore::start`], with the data key wrapped under the
    /// shared KEK. Without a KEK that opens the shared state the instance starts in Recovery
    /// ([`CoordinatorCore::awaiting_kek`]) until a peer hands it over or the state is recovered.
    pub fn start_ha(deps: Deps, config: CoreConfig, ha: HaConfig) -> Result<Self, CoreError> {
        let mut attempt = 0;
        loop {
            match CoordinatorCore::start_with(
                deps.clone(),
                config.clone(),
                Some(Ha::new(ha.clone())),
            ) {
                // Two instances created the first state at once: load the winner's.
                Err(CoreError::Conflict(_)) if attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }
}

/// Maps a store error of a commit: conflicts stay recognisable, the rest is `Internal`.
pub(crate) fn store_error(e: StoreError) -> CoreError {
    match e {
        StoreError::Conflict { expected, actual } => CoreError::Conflict(format!(
            "the state was changed by another Coordinator instance (expected revision {}, found {})",
            expected.map_or_else(|| "none".to_owned(), |r| r.to_string()),
            actual.map_or_else(|| "none".to_owned(), |r| r.to_string())
        )),
        other => CoreError::internal("committing the state", other),
    }
}

/// Unseals a blob with the KEK (when `ha` has one) or the issuer's seal keys.
pub(crate) fn unseal_with(
    ha: Option<&Ha>,
    issuer: &dyn cairn_platform::Issuer,
    blob: &[u8],
) -> Result<(State, SecretKey32), String> {
    if let Some(kek) = ha.and_then(Ha::kek) {
        if let Ok(u) = cairn_store::unseal_state(blob, &kek) {
            let state = State::from_plaintext(&u.plaintext)
                .map_err(|e| format!("unsealed state is not readable: {e}"))?;
            return Ok((state, u.data_key));
        }
    }
    unseal_any(issuer, blob).map_err(|reason| {
        if ha.is_some() {
            format!("{reason}; in HA mode the state key (KEK) comes from a running instance over --peer-addr, or through recovery")
        } else {
            reason
        }
    })
}

/// Policy of [`CoordinatorCore::check_manual_recovery`], pure: `ready` lists the other instances
/// that serve the shared state (or why that could not be read).
pub(crate) fn manual_recovery_verdict(
    ready: Result<Vec<String>, String>,
    force: bool,
) -> Result<(), CoreError> {
    // Invariant: without `force`, a recovery that would re-key the shared state runs only when
    // the registry positively shows no other instance serving it.
    let refusal = match ready {
        Ok(peers) if peers.is_empty() => return Ok(()),
        Ok(peers) => format!(
            "recovery refused: {} other Coordinator instance(s) serve the shared state ({}); this instance obtains the state key from them automatically over --peer-addr (if it does not, its log says why: unreachable peer port or attestation policy). Recovering here would re-key the state and lock those instances out",
            peers.len(),
            peers.join(", ")
        ),
        Err(e) => format!(
            "recovery refused: cannot tell whether other Coordinator instances serve the shared state ({e}); retry when etcd is reachable"
        ),
    };
    if force {
        tracing::warn!(reason = %refusal, "forced manual recovery in HA mode: proceeding");
        return Ok(());
    }
    Err(CoreError::PeersServing(format!(
        "{refusal}. To recover anyway (those instances then fetch the new state key from this one), repeat the request with force: POST /api/v2/recover?force=true, or `cairn recover ... --force`"
    )))
}

/// Policy of [`CoordinatorCore::verify_peer`], pure.
pub(crate) fn check_peer_identity(
    own: &Verdict,
    peer: &Verdict,
    mode: SealMode,
    role: PeerRole,
) -> Result<(), CoreError> {
    let deny = |m: String| Err(CoreError::PermissionDenied(format!("peer instance: {m}")));
    if peer.trust_root != own.trust_root {
        return deny(format!(
            "evidence rooted in {}, this instance's in {}",
            peer.trust_root, own.trust_root
        ));
    }
    if peer.debug != own.debug {
        return deny(format!(
            "Debug {} (this instance: {})",
            peer.debug, own.debug
        ));
    }
    if peer.tcb_status != "UpToDate" && peer.tcb_status != own.tcb_status {
        return deny(format!(
            "TCB status {} (this instance: {})",
            peer.tcb_status, own.tcb_status
        ));
    }
    if mode == SealMode::UniqueKey {
        if peer.mr_enclave != own.mr_enclave {
            return deny(format!(
                "UniqueID {} differs from this instance's {}",
                hex::encode(peer.mr_enclave),
                hex::encode(own.mr_enclave)
            ));
        }
        return Ok(());
    }
    if peer.mr_signer != own.mr_signer {
        return deny(format!(
            "SignerID {} differs from this instance's {}",
            hex::encode(peer.mr_signer),
            hex::encode(own.mr_signer)
        ));
    }
    if peer.isv_prod_id != own.isv_prod_id {
        return deny(format!(
            "ProductID {} differs from this instance's {}",
            peer.isv_prod_id, own.isv_prod_id
        ));
    }
    if role == PeerRole::Requester && peer.isv_svn < own.isv_svn {
        return deny(format!(
            "SecurityVersion {} is lower than this instance's {}",
            peer.isv_svn, own.isv_svn
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cairn_attest::Tee;
    use cairn_crypto::KeyType;
    use cairn_platform::{Issuer, PlatformError};
    use cairn_store::MemoryPersistence;

    use super::*;
    use crate::{Clock, ErrorKind, QuoteVerifier};

    /// A "machine" (`seal`: its seal keys) running an enclave with SVN `svn`. Quotes are the
    /// padded report data followed by the SVN; the fake verifier reads them back.
    struct FakeIssuer {
        seal: u8,
        svn: u16,
    }

    impl Issuer for FakeIssuer {
        fn quote(&self, report_data: &[u8]) -> Result<Vec<u8>, PlatformError> {
            let mut q = report_data.to_vec();
            q.resize(64, 0);
            q.extend_from_slice(&self.svn.to_be_bytes());
            Ok(q)
        }
        fn seal_key(&self, kind: SealKeyKind) -> Result<SecretKey32, PlatformError> {
            let k = if kind == SealKeyKind::Signer { 1 } else { 2 };
            Ok(SecretKey32([k ^ self.seal; 32]))
        }
        fn identity_summary(&self) -> String {
            "fake".into()
        }
    }

    struct FakeVerifier;
    impl QuoteVerifier for FakeVerifier {
        fn verify(&self, evidence: &[u8], _: u64) -> Result<Verdict, CoreError> {
            let raw = cairn_attest::oe::unwrap(evidence)
                .map_err(|e| CoreError::PermissionDenied(e.to_string()))?;
            let mut report_data = [0u8; 64];
            report_data.copy_from_slice(&raw[..64]);
            Ok(Verdict {
                trust_root: "simulation:test".into(),
                tee: Tee::Sgx,
                mr_enclave: [7; 32],
                mr_signer: [8; 32],
                isv_prod_id: 1,
                isv_svn: u16::from_be_bytes([raw[64], raw[65]]),
                debug: false,
                report_data,
                tcb_status: "UpToDate".into(),
                advisory_ids: Vec::new(),
                tdx: None,
            })
        }
    }

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> time::OffsetDateTime {
            time::macros::datetime!(2026-06-01 12:00 UTC)
        }
    }

    const BASE: &str = r#"{"Packages":{"p":{"UniqueID":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}},"Marbles":{"m":{"Package":"p"}}}"#;

    struct Machine {
        issuer: Arc<FakeIssuer>,
        kek_store: Arc<MemoryPersistence>,
        peers: Option<Arc<dyn PeerDirectory>>,
    }

    /// The presence registry as a test sets it.
    struct FakeDirectory(Mutex<Result<Vec<String>, String>>);
    impl FakeDirectory {
        fn set(&self, v: Result<Vec<&str>, &str>) {
            *self.0.lock().unwrap() = v
                .map(|l| l.iter().map(|s| (*s).to_string()).collect())
                .map_err(str::to_string);
        }
    }
    impl PeerDirectory for FakeDirectory {
        fn ready_peers(&self) -> Result<Vec<String>, String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Machine {
        fn new(seal: u8, svn: u16) -> Self {
            Machine {
                issuer: Arc::new(FakeIssuer { seal, svn }),
                kek_store: Arc::new(MemoryPersistence::new()),
                peers: None,
            }
        }

        fn start(&self, store: &Arc<MemoryPersistence>) -> CoordinatorCore {
            let deps = Deps {
                issuer: self.issuer.clone(),
                store: store.clone(),
                clock: Arc::new(FixedClock),
                verifier: Arc::new(FakeVerifier),
            };
            let config = CoreConfig {
                key_type: KeyType::P256,
                dns_names: vec!["localhost".into()],
            };
            CoordinatorCore::start_ha(
                deps,
                config,
                HaConfig {
                    kek_store: self.kek_store.clone(),
                    peers: self.peers.clone(),
                },
            )
            .unwrap()
        }
    }

    /// Hands the KEK from `from` to `to` the way the peer protocol does.
    fn hand_over(from: &CoordinatorCore, to: &CoordinatorCore) -> Result<(), CoreError> {
        let (server_cert, client_cert) = (b"server cert".as_slice(), b"client cert".as_slice());
        to.verify_peer(
            &from.peer_quote(server_cert)?,
            server_cert,
            PeerRole::Provider,
        )?;
        from.verify_peer(
            &to.peer_quote(client_cert)?,
            client_cert,
            PeerRole::Requester,
        )?;
        to.install_kek(from.kek_for_peer()?)
    }

    #[test]
    fn instances_share_the_state_through_the_kek() {
        let etcd = Arc::new(MemoryPersistence::new());
        let (ma, mb) = (Machine::new(0, 1), Machine::new(0x40, 1));
        let a = ma.start(&etcd);
        assert_eq!(a.phase(), Phase::AcceptingManifest);
        assert!(!a.awaiting_kek());
        let blob = etcd.load().unwrap().unwrap().1;
        assert_eq!(cairn_store::inspect(&blob).unwrap().mode, MODE_KEK);

        // Another machine cannot open the state with its own seal keys.
        let b = mb.start(&etcd);
        assert_eq!(b.phase(), Phase::Recovery);
        assert!(b.awaiting_kek());
        assert_eq!(
            b.kek_for_peer().unwrap_err().kind(),
            ErrorKind::FailedPrecondition
        );
        // A KEK that does not open the state is refused.
        let e = b.install_kek(SecretKey32([9; 32])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        hand_over(&a, &b).unwrap();
        assert_eq!(b.phase(), Phase::AcceptingManifest);
        assert!(!b.awaiting_kek());
        assert_eq!(b.root_cert().unwrap(), a.root_cert().unwrap());

        // A manifest set through A is seen by B after a refresh.
        a.set_manifest(BASE.as_bytes()).unwrap();
        assert!(b.refresh().unwrap());
        assert!(!b.refresh().unwrap(), "nothing new");
        assert_eq!(b.phase(), Phase::AcceptingMarbles);
        assert_eq!(
            b.manifest().unwrap().signature,
            a.manifest().unwrap().signature
        );

        // B restarts from its own sealed KEK, without a peer.
        drop(b);
        let b = mb.start(&etcd);
        assert_eq!(b.phase(), Phase::AcceptingMarbles);
        assert_eq!(b.root_cert().unwrap(), a.root_cert().unwrap());
    }

    #[test]
    fn a_stale_instance_reloads_and_re_decides() {
        let etcd = Arc::new(MemoryPersistence::new());
        let (ma, mb) = (Machine::new(0, 1), Machine::new(0x40, 1));
        let a = ma.start(&etcd);
        let b = mb.start(&etcd);
        hand_over(&a, &b).unwrap();
        a.set_manifest(BASE.as_bytes()).unwrap();
        // B has not seen the manifest: its commit conflicts, it reloads and re-runs the set,
        // which is now refused the way a single instance refuses a second manifest.
        assert_eq!(b.phase(), Phase::AcceptingManifest);
        let e = b.set_manifest(BASE.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
        assert!(e.to_string().contains("already set"), "{e}");
        assert_eq!(b.phase(), Phase::AcceptingMarbles);
    }

    #[test]
    fn seal_mode_disabled_is_refused_in_ha_mode() {
        let etcd = Arc::new(MemoryPersistence::new());
        let a = Machine::new(0, 1).start(&etcd);
        let before = etcd.load().unwrap().unwrap();
        let disabled = BASE.replacen('{', r#"{"Config":{"SealMode":"Disabled"},"#, 1);
        let e = a.set_manifest(disabled.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidManifest, "{e}");
        assert!(
            e.to_string().contains("SealMode: Disabled cannot be used"),
            "{e}"
        );
        assert_eq!(a.phase(), Phase::AcceptingManifest);
        assert_eq!(etcd.load().unwrap().unwrap(), before);
    }

    #[test]
    fn peers_of_a_lower_svn_are_refused() {
        let etcd = Arc::new(MemoryPersistence::new());
        let a = Machine::new(0, 2).start(&etcd);
        let old = Machine::new(0x40, 1).start(&etcd);
        let e = hand_over(&a, &old).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(
            e.to_string()
                .contains("SecurityVersion 1 is lower than this instance's 2"),
            "{e}"
        );
        assert!(old.awaiting_kek());
        // A newer instance may join an older one.
        let newer = Machine::new(0x41, 3).start(&etcd);
        hand_over(&a, &newer).unwrap();
        // A quote bound to another certificate is refused.
        let q = a.peer_quote(b"cert one").unwrap();
        let e = newer
            .verify_peer(&q, b"cert two", PeerRole::Provider)
            .unwrap_err();
        assert!(e.to_string().contains("not bound"), "{e}");
    }

    fn key_file(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests/keys");
        std::fs::read_to_string(format!("{dir}/{name}")).unwrap()
    }

    /// BASE with one recovery key (testdata's recovery1).
    fn manifest_with_recovery_key() -> String {
        BASE.replacen(
            '{',
            &format!(
                "{{\"RecoveryKeys\":{{\"r\":{}}},",
                serde_json::to_string(&key_file("recovery1.pub")).unwrap()
            ),
            1,
        )
    }

    /// FR-34: a manual recovery of an instance in recovery mode is refused while other
    /// instances serve, before any share is consumed; forced or with no instance serving it
    /// runs, and the instances it locked out fetch the new key from it.
    #[test]
    fn manual_recovery_is_refused_while_peers_serve() {
        let etcd = Arc::new(MemoryPersistence::new());
        let a = Machine::new(0, 1).start(&etcd);
        let with_key = manifest_with_recovery_key();
        let secrets = a
            .set_manifest(with_key.as_bytes())
            .unwrap()
            .recovery_secrets;
        let secret = cairn_recovery::decrypt_secret(&key_file("recovery1.key"), &secrets["r"])
            .unwrap()
            .to_vec();
        let sig = cairn_recovery::sign_secret(&key_file("recovery1.key"), &secret).unwrap();

        // A new machine (no KEK) is in recovery mode while A serves.
        let directory = Arc::new(FakeDirectory(Mutex::new(Ok(vec!["a:5433".to_string()]))));
        let mut mb = Machine::new(0x40, 1);
        mb.peers = Some(directory.clone());
        let b = mb.start(&etcd);
        assert_eq!(b.phase(), Phase::Recovery);
        let e = b.recover(&secret, &sig).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeersServing, "{e}");
        let m = e.to_string();
        assert!(
            m.contains("1 other Coordinator instance(s) serve the shared state (a:5433)"),
            "{m}"
        );
        assert!(
            m.contains("obtains the state key from them automatically"),
            "{m}"
        );
        assert!(m.contains("POST /api/v2/recover?force=true"), "{m}");
        assert!(m.contains("--force"), "{m}");
        // Refused before the secret is even looked at: garbage gets the same answer.
        let e = b.recover(b"garbage", b"sig").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeersServing, "{e}");
        // An unreadable registry refuses too.
        directory.set(Err("etcd down"));
        let e = b.recover(&secret, &sig).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeersServing, "{e}");
        assert!(e.to_string().contains("cannot tell whether"), "{e}");
        assert_eq!(b.phase(), Phase::Recovery);
        assert!(b.is_ha() && b.awaiting_kek());

        // A manifest set would discard the shared state under A: refused as well.
        directory.set(Ok(vec!["a:5433"]));
        let stored = etcd.load().unwrap();
        let e = b.set_manifest(BASE.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeersServing, "{e}");
        assert!(
            e.to_string().starts_with("manifest set refused: this instance is in recovery mode while 1 other Coordinator instance(s) serve the shared state (a:5433)"),
            "{e}"
        );
        directory.set(Err("etcd down"));
        let e = b.set_manifest(BASE.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PeersServing, "{e}");
        assert_eq!(b.phase(), Phase::Recovery);
        assert_eq!(
            etcd.load().unwrap(),
            stored,
            "the shared state was replaced"
        );

        // Forced: the share is processed and the state recovered under a new KEK.
        directory.set(Ok(vec!["a:5433"]));
        let o = b.recover_with(&secret, &sig, true).unwrap();
        assert!(o.recovered);
        assert_eq!(b.phase(), Phase::AcceptingMarbles);
        assert_eq!(b.root_cert().unwrap(), a.root_cert().unwrap());

        // A's KEK no longer opens the state: A marks it stale, stops handing it out and takes
        // the current one from B.
        assert!(!a.awaiting_kek());
        assert!(a.refresh().is_err());
        assert!(a.awaiting_kek());
        assert_eq!(
            a.kek_for_peer().unwrap_err().kind(),
            ErrorKind::FailedPrecondition
        );
        hand_over(&b, &a).unwrap();
        assert!(!a.awaiting_kek());
        assert_eq!(a.kek_for_peer().unwrap(), b.kek_for_peer().unwrap());
        a.refresh().unwrap();
        assert_eq!(
            a.manifest().unwrap().signature,
            b.manifest().unwrap().signature
        );

        // Outside recovery mode the check lets everything through (recover reports the state).
        assert_eq!(b.check_manual_recovery(false).map_err(|e| e.kind()), Ok(()));
        let e = b.recover(&secret, &sig).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    }

    /// FR-34 case 2: every instance lost its KEK; with none serving, one recovery runs unforced
    /// and the others obtain the new KEK from the recovered instance.
    #[test]
    fn one_recovery_restores_every_instance() {
        let etcd = Arc::new(MemoryPersistence::new());
        let first = Machine::new(0, 1).start(&etcd);
        let with_key = manifest_with_recovery_key();
        let secrets = first
            .set_manifest(with_key.as_bytes())
            .unwrap()
            .recovery_secrets;
        let root = first.root_cert().unwrap();
        drop(first);
        let directory = Arc::new(FakeDirectory(Mutex::new(Ok(Vec::new()))));
        let nodes: Vec<_> = (1..4u8)
            .map(|i| {
                let mut m = Machine::new(i << 4, 1);
                m.peers = Some(directory.clone());
                m.start(&etcd)
            })
            .collect();
        assert!(nodes.iter().all(|n| n.phase() == Phase::Recovery));
        // Peers in recovery mode have no key to hand over.
        assert!(hand_over(&nodes[0], &nodes[1]).is_err());
        let secret = cairn_recovery::decrypt_secret(&key_file("recovery1.key"), &secrets["r"])
            .unwrap()
            .to_vec();
        let sig = cairn_recovery::sign_secret(&key_file("recovery1.key"), &secret).unwrap();
        assert!(nodes[1].recover(&secret, &sig).unwrap().recovered);
        for i in [0, 2] {
            hand_over(&nodes[1], &nodes[i]).unwrap();
        }
        for n in &nodes {
            assert_eq!(n.phase(), Phase::AcceptingMarbles);
            assert_eq!(n.root_cert().unwrap(), root);
        }
    }

    #[test]
    fn identity_policy() {
        let mut quote = [0u8; 66];
        quote[65] = 1; // SVN 1
        let own = FakeVerifier
            .verify(&cairn_attest::oe::wrap(&quote), 0)
            .unwrap();
        assert_eq!(own.isv_svn, 1);
        let ok = |f: &dyn Fn(&mut Verdict), mode| {
            let mut p = own.clone();
            f(&mut p);
            check_peer_identity(&own, &p, mode, PeerRole::Requester).map_err(|e| e.to_string())
        };
        assert_eq!(ok(&|_| {}, SealMode::ProductKey), Ok(()));
        assert_eq!(
            ok(&|p| p.mr_enclave = [1; 32], SealMode::ProductKey),
            Ok(())
        );
        assert!(ok(&|p| p.mr_enclave = [1; 32], SealMode::UniqueKey)
            .unwrap_err()
            .contains("UniqueID"));
        assert!(ok(&|p| p.mr_signer = [1; 32], SealMode::ProductKey)
            .unwrap_err()
            .contains("SignerID"));
        let mut older = own.clone();
        older.isv_svn = 0;
        assert_eq!(
            check_peer_identity(&own, &older, SealMode::ProductKey, PeerRole::Provider)
                .map_err(|e| e.to_string()),
            Ok(())
        );
        assert!(ok(&|p| p.isv_svn = 0, SealMode::ProductKey)
            .unwrap_err()
            .contains("SecurityVersion 0 is lower"));
        assert!(ok(&|p| p.isv_prod_id = 2, SealMode::ProductKey)
            .unwrap_err()
            .contains("ProductID 2 differs"));
        assert!(ok(&|p| p.debug = true, SealMode::UniqueKey)
            .unwrap_err()
            .contains("Debug true"));
        assert!(
            ok(&|p| p.tcb_status = "OutOfDate".into(), SealMode::ProductKey)
                .unwrap_err()
                .contains("TCB status OutOfDate")
        );
        assert!(ok(&|p| p.trust_root = "intel".into(), SealMode::ProductKey)
            .unwrap_err()
            .contains("rooted in intel"));
    }
}
