//! Manifest updates (marblerun-compat §2.8): package (SecurityVersion) updates applied at once,
//! and full updates with multi-party acknowledgement, applied atomically.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_crypto::Zeroizing;
use cairn_manifest::update::UpdateKind;
use cairn_manifest::{Manifest, SecretDef, SecretKind, ValidManifest};
use time::OffsetDateTime;

use crate::coordinator::{log_line, wrong_state, CoordinatorCore, Inner};
use crate::error::CoreError;
use crate::secrets;
use crate::secrets_api::manifest_of;
use crate::state::{PendingUpdate, State};
use crate::users::{self, Action};
use crate::Phase;

/// Result of an update upload or acknowledgement.
#[derive(Debug, Clone, Default)]
pub struct UpdateOutcome {
    /// Acknowledgements still needed (0 once applied).
    pub missing_acknowledgments: u64,
    /// Required users that have not acknowledged yet.
    pub missing_users: Vec<String>,
    /// New recovery secrets (when the update changed RecoveryKeys or RecoveryThreshold).
    pub recovery_secrets: BTreeMap<String, Vec<u8>>,
    /// True when the update was applied by this call.
    pub applied: bool,
}

impl UpdateOutcome {
    /// The v2 acknowledgement message (marblerun-compat §1.3).
    pub fn ack_message(&self) -> String {
        if self.applied {
            return "All users have acknowledged the update manifest. Update successfully applied"
                .into();
        }
        format!(
            "{}.\nThe following users have not yet accepted: {}",
            missing_message(self.missing_acknowledgments),
            self.missing_users.join(", ")
        )
    }
}

/// `"1 user still needs to ..."` / `"N users still need to ..."`.
pub fn missing_message(n: u64) -> String {
    if n == 1 {
        "1 user still needs to acknowledge the update manifest".into()
    } else {
        format!("{n} users still need to acknowledge the update manifest")
    }
}

/// A pending full update as `GET /api/v2/update-manifest` shows it.
#[derive(Debug, Clone)]
pub struct PendingInfo {
    /// The exact pending manifest bytes.
    pub manifest_raw: Vec<u8>,
    /// Acknowledgements still needed.
    pub missing_acknowledgments: u64,
    /// Users that have not acknowledged yet.
    pub missing_users: Vec<String>,
}

const NO_UPDATE: &str = "no update in progress";

impl CoordinatorCore {
    /// `POST /api/v2/update`: a package-only manifest raises SecurityVersions at once; any other
    /// manifest starts (or, with one required acknowledgement, applies) a full update.
    pub fn update_manifest(
        &self,
        peer_cert: Option<&[u8]>,
        raw: &[u8],
    ) -> Result<UpdateOutcome, CoreError> {
        // Re-run on the latest state when another Coordinator instance committed first (HA).
        self.retry_conflicts(|| self.update_manifest_once(peer_cert, raw))
    }

    fn update_manifest_once(
        &self,
        peer_cert: Option<&[u8]>,
        raw: &[u8],
    ) -> Result<UpdateOutcome, CoreError> {
        let mut inner = self.lock()?;
        if inner.phase != Phase::AcceptingMarbles {
            return Err(wrong_state(inner.phase));
        }
        let vm = manifest_of(inner.manifest.as_deref())?.clone();
        let user = self.authenticate_user(vm.manifest(), peer_cert)?;
        let kind =
            cairn_manifest::update::classify(raw).map_err(|e| CoreError::InvalidManifest {
                kind: e.kind.as_str(),
                message: e.to_string(),
            })?;
        match kind {
            UpdateKind::Package(svns) => {
                self.package_update(&mut inner, vm.manifest(), &user, &svns)?;
                Ok(UpdateOutcome {
                    applied: true,
                    ..Default::default()
                })
            }
            UpdateKind::Full => self.start_full_update(&mut inner, vm.manifest(), &user, raw),
        }
    }

    /// `POST /api/v2/update-manifest`: acknowledges the pending update with a byte-identical
    /// upload; the last required acknowledgement applies it.
    pub fn acknowledge_update(
        &self,
        peer_cert: Option<&[u8]>,
        raw: &[u8],
    ) -> Result<UpdateOutcome, CoreError> {
        // Re-run on the latest state when another Coordinator instance committed first (HA).
        self.retry_conflicts(|| self.acknowledge_update_once(peer_cert, raw))
    }

    fn acknowledge_update_once(
        &self,
        peer_cert: Option<&[u8]>,
        raw: &[u8],
    ) -> Result<UpdateOutcome, CoreError> {
        let mut inner = self.lock()?;
        // Authentication comes first (401 before 404, as MarbleRun's handlers do); without a
        // manifest there are no users.
        let user = self.user_of(&inner, peer_cert)?;
        let Some(pending) = inner.state.pending_update.clone() else {
            return Err(CoreError::NotFound(NO_UPDATE.into()));
        };
        if !pending.required_users.contains_key(&user) {
            return Err(CoreError::Forbidden(format!(
                "user {user:?} is not allowed to acknowledge the pending update (not one of the users with UpdateManifest when it was started)"
            )));
        }
        // Invariant: only the exact bytes the initiator uploaded can be acknowledged.
        if raw != pending.manifest_raw.as_slice() {
            return Err(CoreError::InvalidArgument(format!(
                "the uploaded manifest (sha256 {}) is not byte-identical to the pending update (sha256 {}); fetch the pending manifest (GET /api/v2/update-manifest, `cairn manifest update get`) and acknowledge exactly those bytes",
                hex::encode(cairn_crypto::sha256(raw)),
                hex::encode(cairn_crypto::sha256(&pending.manifest_raw))
            )));
        }
        let now = self.deps.clock.now();
        let mut next = inner.state.clone();
        let mut p = pending;
        p.required_users.insert(user.clone(), true);
        next.update_log.push(log_line(
            now,
            "Complete Manifest update acknowledged by user",
            &[("user", user.clone().into())],
        ));
        if p.missing() > 0 {
            let outcome = UpdateOutcome {
                missing_acknowledgments: p.missing(),
                missing_users: p.missing_users(),
                ..Default::default()
            };
            next.pending_update = Some(p);
            self.commit_next(&mut inner, next)?;
            return Ok(outcome);
        }
        next.pending_update = None;
        let applied = ValidManifest::parse_at(&p.manifest_raw, now)
            .map_err(|e| CoreError::InvalidManifest {
                kind: e.kind.as_str(),
                message: e.to_string(),
            })
            .and_then(|new_vm| self.apply_full(&mut inner, next, new_vm, now));
        match applied {
            Ok(recovery_secrets) => Ok(UpdateOutcome {
                applied: true,
                recovery_secrets,
                ..Default::default()
            }),
            Err(e) => {
                tracing::error!(error = %e, "applying the acknowledged manifest update failed; cancelling it");
                let mut cancel = inner.state.clone();
                cancel.pending_update = None;
                cancel.update_log.push(log_line(
                    now,
                    "Complete Manifest update cancelled due to error during apply",
                    &[],
                ));
                if let Err(c) = self.commit_next(&mut inner, cancel) {
                    tracing::error!(error = %c, "cancelling the failed update could not be persisted");
                }
                Err(e)
            }
        }
    }

    /// The pending full update, if any (`NotFound` "no update in progress" otherwise).
    pub fn pending_update(&self) -> Result<PendingInfo, CoreError> {
        let inner = self.lock()?;
        let Some(p) = &inner.state.pending_update else {
            return Err(CoreError::NotFound(NO_UPDATE.into()));
        };
        Ok(PendingInfo {
            manifest_raw: p.manifest_raw.clone(),
            missing_acknowledgments: p.missing(),
            missing_users: p.missing_users(),
        })
    }

    /// `POST /api/v2/update-cancel`: any user with UpdateManifest removes the pending update.
    pub fn cancel_update(&self, peer_cert: Option<&[u8]>) -> Result<(), CoreError> {
        // Re-run on the latest state when another Coordinator instance committed first (HA).
        self.retry_conflicts(|| self.cancel_update_once(peer_cert))
    }

    fn cancel_update_once(&self, peer_cert: Option<&[u8]>) -> Result<(), CoreError> {
        let mut inner = self.lock()?;
        let user = self.user_of(&inner, peer_cert)?;
        let vm = manifest_of(inner.manifest.as_deref())?.clone();
        users::require(vm.manifest(), &user, Action::UpdateManifest, &[])?;
        if inner.state.pending_update.is_none() {
            return Err(CoreError::NotFound(NO_UPDATE.into()));
        }
        let now = self.deps.clock.now();
        let mut next = inner.state.clone();
        next.pending_update = None;
        next.update_log.push(log_line(
            now,
            "Complete Manifest update cancelled by user",
            &[("user", user.clone().into())],
        ));
        self.commit_next(&mut inner, next)?;
        tracing::info!(user = %user, "manifest update cancelled");
        Ok(())
    }

    fn package_update(
        &self,
        inner: &mut Inner,
        m: &Manifest,
        user: &str,
        svns: &BTreeMap<String, u64>,
    ) -> Result<(), CoreError> {
        let names: Vec<&str> = svns.keys().map(String::as_str).collect();
        users::require(m, user, Action::UpdateSecurityVersion, &names)?;
        // The effective manifest: the stored one with earlier package updates applied.
        let current =
            cairn_manifest::update::apply_package_update(m, &inner.state.security_versions);
        cairn_manifest::update::check_package_update(&current, svns).map_err(|d| {
            CoreError::InvalidManifest {
                kind: "E_CHECK",
                message: d.to_string(),
            }
        })?;
        let now = self.deps.clock.now();
        let mut next = inner.state.clone();
        next.security_versions
            .extend(svns.iter().map(|(k, v)| (k.clone(), *v)));
        next.ca
            .rotate_intermediate(now)
            .map_err(|e| CoreError::internal("rotating the intermediate CA", e))?;
        regenerate_shared_certs(m, &mut next, now)?;
        for (pkg, svn) in svns {
            next.update_log.push(log_line(
                now,
                "SecurityVersion increased",
                &[
                    ("user", user.into()),
                    ("package", pkg.clone().into()),
                    ("new version", (*svn).into()),
                ],
            ));
        }
        self.commit_next(inner, next)?;
        self.bump_ca_epoch();
        tracing::info!(user = %user, packages = ?svns, "package SecurityVersion update applied; intermediate CA rotated");
        Ok(())
    }

    fn start_full_update(
        &self,
        inner: &mut Inner,
        m: &Manifest,
        user: &str,
        raw: &[u8],
    ) -> Result<UpdateOutcome, CoreError> {
        users::require(m, user, Action::UpdateManifest, &[])?;
        if inner.state.pending_update.is_some() {
            return Err(CoreError::WrongState(
                "update already in progress. Acknowledge the update to apply it, or cancel it to start a new one".into(),
            ));
        }
        let now = self.deps.clock.now();
        let new_vm = ValidManifest::parse_at(raw, now).map_err(|e| CoreError::InvalidManifest {
            kind: e.kind.as_str(),
            message: e.to_string(),
        })?;
        for w in new_vm.warnings() {
            tracing::warn!(warning = %w, "update manifest warning");
        }
        let required_users = users::update_manifest_users(m);
        let threshold = m.config.update_threshold;
        let required = if threshold == 0 {
            required_users.len() as u64
        } else {
            threshold
        };
        let mut pending = PendingUpdate {
            manifest_raw: raw.to_vec(),
            required_users: required_users.into_iter().map(|u| (u, false)).collect(),
            required,
        };
        pending.required_users.insert(user.to_string(), true);
        let mut next = inner.state.clone();
        let missing = pending.missing();
        let message = if missing == 0 {
            "Complete Manifest update initiated by user. No further acknowledgements required"
        } else {
            "Complete Manifest update initiated by user. Waiting for acknowledgments to apply the update"
        };
        next.update_log.push(log_line(
            now,
            message,
            &[
                ("user", user.into()),
                ("missingAcknowledgments", missing.into()),
                ("missingUsers", pending.missing_users().into()),
                ("manifestFingerprint", new_vm.fingerprint_hex().into()),
            ],
        ));
        if missing == 0 {
            let recovery_secrets = self.apply_full(inner, next, new_vm, now)?;
            return Ok(UpdateOutcome {
                applied: true,
                recovery_secrets,
                ..Default::default()
            });
        }
        let outcome = UpdateOutcome {
            missing_acknowledgments: missing,
            missing_users: pending.missing_users(),
            ..Default::default()
        };
        next.pending_update = Some(pending);
        self.commit_next(inner, next)?;
        Ok(outcome)
    }

    /// Diffs and applies a full update onto `next` (pending update already removed), commits
    /// it, and only then switches the in-memory manifest. On any error nothing changes.
    /// Returns new recovery secrets when the recovery keys or threshold changed.
    fn apply_full(
        &self,
        inner: &mut Inner,
        mut next: State,
        new_vm: ValidManifest,
        now: OffsetDateTime,
    ) -> Result<BTreeMap<String, Vec<u8>>, CoreError> {
        let old_vm = manifest_of(inner.manifest.as_deref())?.clone();
        let (old, new) = (old_vm.manifest(), new_vm.manifest());
        let rotate = new.config.rotate_root_secret;
        next.ca
            .rotate_intermediate(now)
            .map_err(|e| CoreError::internal("rotating the intermediate CA", e))?;
        if rotate {
            let fresh =
                cairn_crypto::random_bytes(32).map_err(|e| CoreError::internal("random", e))?;
            next.previous_root_secret = next.root_secret.take();
            next.root_secret = Some(Zeroizing::new(fresh));
        }
        let mut cur = BTreeMap::new();
        let mut prev = BTreeMap::new();
        for (name, def) in &new.secrets {
            let same = old
                .secrets
                .get(name)
                .is_some_and(|o| same_definition(o, def));
            let old_val = next.secrets.get(name).cloned();
            let old_prev = next.previous_secrets.get(name).cloned();
            let keep =
                same && (def.user_defined || (def.kind == SecretKind::SymmetricKey && !rotate));
            if keep {
                if let Some(v) = old_val {
                    cur.insert(name.clone(), v);
                }
                if let Some(v) = old_prev {
                    prev.insert(name.clone(), v);
                }
                continue;
            }
            if def.user_defined || !def.shared {
                // Changed user-defined secrets must be uploaded again; per-marble secrets are
                // derived or generated at activation.
                if !def.user_defined && def.kind == SecretKind::Plain {
                    return Err(CoreError::InvalidManifest {
                        kind: "E_SECRET_GEN",
                        message: format!("Secrets.{name}: unsupported secret of type plain"),
                    });
                }
                continue;
            }
            let fresh = secrets::generate_one(name, def, &next.ca, now)?;
            let before = if same { old_val } else { None };
            prev.insert(name.clone(), before.unwrap_or_else(|| fresh.clone()));
            cur.insert(name.clone(), fresh);
        }
        next.secrets = cur;
        next.previous_secrets = prev;
        next.security_versions.clear();
        next.pending_update = None;
        let signature = next
            .ca
            .sign_manifest(new_vm.raw())
            .map_err(|e| CoreError::internal("signing the manifest", e))?;
        next.manifest_raw = Some(new_vm.raw().to_vec());
        next.manifest_signature = Some(signature);
        next.update_log.push(log_line(
            now,
            "Complete Manifest updated",
            &[("manifestFingerprint", new_vm.fingerprint_hex().into())],
        ));
        let mode = new.config.seal_mode;
        let rekey = crate::recovery::rekey_for_update(old, new, &mut next)?;
        let data_key = rekey.as_ref().map_or(&inner.data_key, |k| &k.data_key);
        // Invariant: memory changes only after the new state is durably committed.
        let rev = self
            .commit(&next, inner.revision, data_key, mode)
            .map_err(|e| {
                self.conflict_reload(
                    inner,
                    e,
                    "the update could not be persisted, nothing was changed",
                )
            })?;
        inner.state = next;
        inner.revision = Some(rev);
        let recovery_secrets = rekey.map_or_else(BTreeMap::new, |k| {
            inner.data_key = k.data_key;
            k.secrets
        });
        tracing::info!(fingerprint = %new_vm.fingerprint_hex(), "manifest update applied; intermediate CA rotated. Please restart your Marbles to enforce the update");
        inner.manifest = Some(Arc::new(new_vm));
        self.bump_ca_epoch();
        Ok(recovery_secrets)
    }
}

fn same_definition(a: &SecretDef, b: &SecretDef) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.shared == b.shared
        && a.user_defined == b.user_defined
        && a.valid_for == b.valid_for
}

/// Regenerates every shared, generated certificate secret with the (new) intermediate and
/// keeps the old value for `.Previous`.
fn regenerate_shared_certs(
    m: &Manifest,
    next: &mut State,
    now: OffsetDateTime,
) -> Result<(), CoreError> {
    for (name, def) in &m.secrets {
        if !def.shared || def.user_defined || !def.kind.is_cert() {
            continue;
        }
        let fresh = secrets::generate_one(name, def, &next.ca, now)?;
        let old = next.secrets.insert(name.clone(), fresh.clone());
        next.previous_secrets
            .insert(name.clone(), old.unwrap_or(fresh));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            missing_message(1),
            "1 user still needs to acknowledge the update manifest"
        );
        assert_eq!(
            missing_message(2),
            "2 users still need to acknowledge the update manifest"
        );
        let o = UpdateOutcome {
            missing_acknowledgments: 1,
            missing_users: vec!["bob".into()],
            ..Default::default()
        };
        assert_eq!(
            o.ack_message(),
            "1 user still needs to acknowledge the update manifest.\nThe following users have not yet accepted: bob"
        );
        let mut p = PendingUpdate {
            manifest_raw: vec![],
            required_users: [("a".to_string(), true), ("b".to_string(), false)].into(),
            required: 2,
        };
        assert_eq!(p.missing(), 1);
        assert_eq!(p.missing_users(), vec!["b"]);
        p.required_users.insert("b".into(), true);
        assert_eq!(p.missing(), 0);
    }
}
