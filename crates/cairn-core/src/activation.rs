//! Marble activation (marblerun-compat §3.3), checks in MarbleRun's order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use cairn_attest::{PackagePolicy, Verdict};
use cairn_ca::CaBundle;
use cairn_manifest::template::TemplateData;
use cairn_manifest::{Package, SecretKind, ValidManifest};

use crate::coordinator::{wrong_state, CoordinatorCore};
use crate::error::CoreError;
use crate::secrets::{self, pem};
use crate::state::StoredSecret;
use crate::Phase;

/// An `rpc.Marble/Activate` call as the mesh server received it.
#[derive(Debug, Clone)]
pub struct ActivationRequest {
    /// Raw or OE-wrapped quote.
    pub quote: Vec<u8>,
    /// DER CSR (proves possession of the activation key; supplies subject and SANs).
    pub csr: Vec<u8>,
    /// Marble type (`EDG_MARBLE_TYPE`).
    pub marble_type: String,
    /// UUID string.
    pub uuid: String,
    /// First certificate of the peer's TLS chain, if any.
    pub peer_cert_der: Option<Vec<u8>>,
}

/// What the marble receives: rendered Files/Env (plus `MARBLE_PREDEFINED_*`) and Argv.
#[derive(Clone, Default)]
pub struct ActivationResponse {
    /// Files by path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Environment variables.
    pub env: BTreeMap<String, Vec<u8>>,
    /// Argv (not templated).
    pub argv: Vec<String>,
}

impl std::fmt::Debug for ActivationResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values hold keys: print only names.
        f.debug_struct("ActivationResponse")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("argv_len", &self.argv.len())
            .finish()
    }
}

/// Env var: PEM of the marble root certificate.
pub const ENV_ROOT_CA: &str = "MARBLE_PREDEFINED_ROOT_CA";
/// Env var: PEM of the marble leaf followed by the intermediate.
pub const ENV_CERT_CHAIN: &str = "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN";
/// Env var: PEM (PKCS#8) of the marble leaf key.
pub const ENV_PRIVATE_KEY: &str = "MARBLE_PREDEFINED_PRIVATE_KEY";
/// Env var: PEM of the Coordinator root certificate.
pub const ENV_COORDINATOR_ROOT: &str = "MARBLE_PREDEFINED_COORDINATOR_ROOT_CA";

impl CoordinatorCore {
    /// The parsed intermediate CA for `ca`, parsed again only after a rotation.
    fn leaf_issuer(&self, ca: &CaBundle) -> Result<Arc<cairn_ca::LeafIssuer>, CoreError> {
        let mut slot = self.leaf_issuer.lock().unwrap_or_else(|p| p.into_inner());
        // Invariant: a cached issuer signs only for the exact intermediate key and certificate
        // it was parsed from (compared byte for byte with the current CA bundle).
        if let Some(issuer) = slot.as_ref().filter(|i| i.is_for(ca)) {
            return Ok(issuer.clone());
        }
        let fresh =
            Arc::new(cairn_ca::LeafIssuer::new(ca).map_err(|e| {
                CoreError::Internal(format!("the intermediate CA cannot sign: {e}"))
            })?);
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// Activates a marble: state, peer certificate, marble type, quote + binding + package
    /// policy, MaxActivations, UUID, then issues credentials and renders its parameters. The
    /// activation counter is committed before the response is returned.
    pub fn activate(&self, req: &ActivationRequest) -> Result<ActivationResponse, CoreError> {
        // 1. State (snapshot under the lock; verification runs without holding it).
        let (manifest, ca, stored, previous, root_secret, prev_root_secret, count, svns) = {
            let inner = self.lock()?;
            if inner.phase != Phase::AcceptingMarbles {
                return Err(CoreError::WrongState(format!(
                    "cannot accept marbles in current state: {}",
                    wrong_state(inner.phase)
                )));
            }
            let Some(m) = inner.manifest.clone() else {
                return Err(CoreError::Internal("state 3 without a manifest".into()));
            };
            (
                m,
                inner.state.ca.clone(),
                inner.state.secrets.clone(),
                inner.state.previous_secrets.clone(),
                inner.state.root_secret.clone(),
                inner.state.previous_root_secret.clone(),
                inner
                    .state
                    .activations
                    .get(&req.marble_type)
                    .copied()
                    .unwrap_or(0),
                inner.state.security_versions.clone(),
            )
        };
        // 2. Peer certificate.
        let Some(peer_cert) = req.peer_cert_der.as_deref() else {
            return Err(CoreError::Unauthenticated(
                "no TLS client certificate: the marble must present the certificate its quote is bound to".into(),
            ));
        };
        // 3. Marble type and package.
        let m = manifest.manifest();
        let Some(marble) = m.marbles.get(&req.marble_type) else {
            return Err(CoreError::PermissionDenied(format!(
                "unknown marble type requested: {:?} is not in the manifest's Marbles",
                req.marble_type
            )));
        };
        let Some(package) = m.packages.get(&marble.package) else {
            return Err(CoreError::PermissionDenied(format!(
                "marble type {:?} references package {:?}, which the manifest does not define",
                req.marble_type, marble.package
            )));
        };
        // 4. Quote, binding to the TLS certificate, package policy.
        let now = self.deps.clock.now();
        let now_unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let verdict = self.deps.verifier.verify(&req.quote, now_unix)?;
        // Invariant: the quote's report_data binds this TLS client certificate's key to the enclave.
        cairn_attest::check_binding(&verdict, peer_cert, &[]).map_err(|e| {
            CoreError::PermissionDenied(format!(
                "quote is not bound to the presented TLS client certificate: {e}"
            ))
        })?;
        // Package updates raise SecurityVersion without changing the stored manifest.
        let mut package = package.clone();
        if let Some(svn) = svns.get(&marble.package) {
            package.security_version = Some(*svn);
        }
        let policy = package_policy(&marble.package, &package, &verdict)?;
        cairn_attest::check_policy(&verdict, &policy).map_err(|e| {
            CoreError::PermissionDenied(format!("package {:?}: {e}", marble.package))
        })?;
        if verdict.tcb_status != "UpToDate" {
            tracing::warn!(
                marble_type = %req.marble_type,
                tcb_status = %verdict.tcb_status,
                advisories = ?verdict.advisory_ids,
                "accepted a marble whose TCB is not UpToDate"
            );
        }
        // 5. Activation budget.
        if marble.max_activations > 0 && count >= marble.max_activations {
            return Err(max_reached(&req.marble_type, marble.max_activations));
        }
        // 6. UUID.
        let uuid = uuid::Uuid::parse_str(&req.uuid)
            .map_err(|e| CoreError::InvalidArgument(format!("invalid UUID {:?}: {e}", req.uuid)))?;
        let uuid_str = uuid.hyphenated().to_string();
        // 7. Credentials, secrets, templates.
        let leaf = self
            .leaf_issuer(&ca)?
            .issue(&req.csr, &uuid, &req.marble_type, now)
            .map_err(|e| {
                CoreError::InvalidArgument(format!("cannot issue the marble certificate: {e}"))
            })?;
        let leaf_public = spki_of(&leaf.cert)?;
        let binding = if marble.disable_secret_binding {
            ""
        } else {
            req.marble_type.as_str()
        };
        let mut data = TemplateData {
            marble_root_ca: ca.marble_root_cert.clone(),
            marble_cert: leaf.cert.clone(),
            marble_key: leaf.key.to_vec(),
            marble_public: leaf_public,
            coordinator_root: ca.root_cert.clone(),
            coordinator_intermediate: ca.intermediate_cert.clone(),
            ..Default::default()
        };
        for (name, def) in &m.secrets {
            let (cur, prev) = if def.user_defined || def.shared {
                let cur = stored.get(name);
                let prev = previous.get(name).or(cur);
                match (
                    cur.and_then(secrets::to_template),
                    prev.and_then(secrets::to_template),
                ) {
                    (Some(c), Some(p)) => (c, p),
                    _ if def.user_defined => (secrets::empty_value(def), secrets::empty_value(def)),
                    _ => {
                        return Err(CoreError::Internal(format!(
                            "shared secret {name:?} is missing from the state"
                        )))
                    }
                }
            } else if def.kind == SecretKind::SymmetricKey {
                let Some(root) = root_secret.as_deref() else {
                    return Err(CoreError::Internal(
                        "root secret missing from the state".into(),
                    ));
                };
                let cur = secrets::derive_private_symmetric(root, &uuid_str, name, binding, def)?;
                let prev = match prev_root_secret.as_deref() {
                    Some(p) => secrets::derive_private_symmetric(p, &uuid_str, name, binding, def)?,
                    None => cur.clone(),
                };
                (template_of(&cur)?, template_of(&prev)?)
            } else {
                let g = secrets::generate_one(name, def, &ca, now)?;
                let t = template_of(&g)?;
                (t.clone(), t)
            };
            data.secrets.insert(name.clone(), cur);
            data.previous.insert(name.clone(), prev);
        }
        let rendered =
            cairn_manifest::render_parameters(m, &req.marble_type, &data).map_err(render_error)?;
        let mut resp = ActivationResponse {
            files: rendered.files,
            env: rendered.env,
            argv: rendered.argv,
        };
        let mut chain = pem("CERTIFICATE", &leaf.cert);
        chain.push_str(&pem("CERTIFICATE", &ca.intermediate_cert));
        resp.env.insert(
            ENV_ROOT_CA.into(),
            pem("CERTIFICATE", &ca.marble_root_cert).into_bytes(),
        );
        resp.env.insert(ENV_CERT_CHAIN.into(), chain.into_bytes());
        resp.env.insert(
            ENV_PRIVATE_KEY.into(),
            pem("PRIVATE KEY", &leaf.key).into_bytes(),
        );
        resp.env.insert(
            ENV_COORDINATOR_ROOT.into(),
            pem("CERTIFICATE", &ca.root_cert).into_bytes(),
        );

        // 8. Commit the counter before answering.
        if marble.max_activations > 0 {
            self.commit_activation(&manifest, &req.marble_type, marble.max_activations)?;
        }
        tracing::info!(
            marble_type = %req.marble_type,
            uuid = %uuid_str,
            mr_enclave = %hex::encode(verdict.mr_enclave),
            tcb_status = %verdict.tcb_status,
            "marble activated"
        );
        Ok(resp)
    }

    /// Commits one more activation of `marble_type` through the group commit (see
    /// [`ActivationBatch`]); returns once the write holding it is durable, or its error.
    fn commit_activation(
        &self,
        manifest: &Arc<ValidManifest>,
        marble_type: &str,
        max: u64,
    ) -> Result<(), CoreError> {
        let batch = &self.activation_batch;
        let mut q = batch.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push(PendingIncrement {
            ticket,
            manifest: manifest.clone(),
            marble_type: marble_type.to_string(),
            max,
        });
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r;
            }
            if q.leader_active {
                q = batch.done.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Invariant: with no leader active, every ticket an earlier leader took has its
            // result, so this ticket is still pending and the batch taken here contains it.
            q.leader_active = true;
            let work = std::mem::take(&mut q.pending);
            drop(q);
            let mut leader = LeaderGuard {
                batch,
                tickets: work.iter().map(|p| p.ticket).collect(),
                outcomes: Vec::new(),
            };
            leader.outcomes = self.commit_increments(&work);
            drop(leader);
            q = batch.lock();
        }
    }

    /// One durable write for a batch of increments, applied in queue order against the latest
    /// committed counts; increments that would exceed MaxActivations or whose manifest was
    /// replaced are refused without being written. In HA mode a lost race reloads and re-runs
    /// the whole batch (`ha.rs`), so the last activation is still granted exactly once.
    fn commit_increments(&self, work: &[PendingIncrement]) -> Vec<Outcome> {
        match self.retry_conflicts(|| self.commit_increments_once(work)) {
            Ok(outcomes) => outcomes,
            Err(e) => work.iter().map(|p| (p.ticket, Err(e.clone()))).collect(),
        }
    }

    fn commit_increments_once(&self, work: &[PendingIncrement]) -> Result<Vec<Outcome>, CoreError> {
        let mut inner = self.lock()?;
        let mut out = Vec::with_capacity(work.len());
        let mut next: Option<crate::state::State> = None;
        let mut accepted = Vec::with_capacity(work.len());
        for p in work {
            let same_manifest = inner
                .manifest
                .as_ref()
                .is_some_and(|m| Arc::ptr_eq(m, &p.manifest));
            if inner.phase != Phase::AcceptingMarbles || !same_manifest {
                out.push((
                    p.ticket,
                    Err(CoreError::WrongState(
                        "the manifest changed during activation; retry".into(),
                    )),
                ));
                continue;
            }
            let count = next
                .as_ref()
                .unwrap_or(&inner.state)
                .activations
                .get(&p.marble_type)
                .copied()
                .unwrap_or(0);
            if count >= p.max {
                out.push((p.ticket, Err(max_reached(&p.marble_type, p.max))));
                continue;
            }
            next.get_or_insert_with(|| inner.state.clone())
                .activations
                .insert(p.marble_type.clone(), count + 1);
            accepted.push(p.ticket);
        }
        let Some(next) = next else {
            return Ok(out);
        };
        let mode = CoordinatorCore::seal_mode_of(&inner);
        match self.commit(&next, inner.revision, &inner.data_key, mode) {
            Ok(rev) => {
                inner.state = next;
                inner.revision = Some(rev);
                out.extend(accepted.into_iter().map(|t| (t, Ok(()))));
            }
            Err(e) => match self.conflict_reload(&mut inner, e, "activation counter not persisted")
            {
                CoreError::Conflict(m) => return Err(CoreError::Conflict(m)),
                e => out.extend(accepted.into_iter().map(|t| (t, Err(e.clone())))),
            },
        }
        Ok(out)
    }
}

/// Group commit of activation counters. An activation that passed every check queues its
/// increment; the first one to find no write in flight becomes the leader and commits every
/// queued increment in one durable write, re-checking MaxActivations in queue order. Increments
/// queued while a write is in flight go into the next one, so the rate of durable writes no
/// longer caps the rate of activations; each activation still answers only after the write
/// holding its increment succeeded.
#[derive(Default)]
pub(crate) struct ActivationBatch {
    queue: Mutex<BatchQueue>,
    done: Condvar,
}

impl ActivationBatch {
    fn lock(&self) -> MutexGuard<'_, BatchQueue> {
        // Every critical section leaves the queue consistent (pushes, takes, inserts), so a
        // poisoned lock still guards valid data.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct BatchQueue {
    pending: Vec<PendingIncrement>,
    next_ticket: u64,
    leader_active: bool,
    results: HashMap<u64, Result<(), CoreError>>,
}

/// A ticket and what became of its increment.
type Outcome = (u64, Result<(), CoreError>);

struct PendingIncrement {
    ticket: u64,
    manifest: Arc<ValidManifest>,
    marble_type: String,
    max: u64,
}

/// Publishes a leader's outcomes and hands leadership on, also when the commit panicked (its
/// tickets then get an error instead of waiting forever).
struct LeaderGuard<'a> {
    batch: &'a ActivationBatch,
    tickets: Vec<u64>,
    outcomes: Vec<Outcome>,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut q = self.batch.lock();
        q.leader_active = false;
        for (t, r) in self.outcomes.drain(..) {
            q.results.insert(t, r);
        }
        for t in &self.tickets {
            q.results.entry(*t).or_insert_with(|| {
                Err(CoreError::Internal(
                    "the activation commit failed unexpectedly; retry".into(),
                ))
            });
        }
        self.batch.done.notify_all();
    }
}

/// A template that needs a user-defined secret nobody uploaded yet is the operator's to fix
/// (FailedPrecondition, naming the secret and how to upload it); anything else is internal.
fn render_error(e: cairn_manifest::TemplateError) -> CoreError {
    use cairn_manifest::TemplateError as T;
    let inner = match &e {
        T::InParameter { source, .. } => source.as_ref(),
        other => other,
    };
    match inner {
        T::NotUploaded { secret, .. } => CoreError::WrongState(format!(
            "rendering the marble's parameters: {e}; upload the user-defined secret {secret:?} (POST /api/v2/secrets, `cairn secret set`) and restart the marble"
        )),
        // A value uploaded before an update put it into Env (the update's dry run uses dummy
        // values, so only activation sees the real bytes).
        T::NulInEnv { .. } => CoreError::WrongState(format!(
            "rendering the marble's parameters: {e}; upload a value without NUL bytes or use it in Files instead of Env"
        )),
        T::Eval { message, .. } if message.contains("NUL byte") => CoreError::WrongState(format!(
            "rendering the marble's parameters: {e}; upload a value without NUL bytes or use it in Files instead of Env"
        )),
        _ => CoreError::Internal(format!("rendering the marble's parameters: {e}")),
    }
}

fn max_reached(marble_type: &str, max: u64) -> CoreError {
    CoreError::PermissionDenied(format!(
        "reached max activations count (marble type {marble_type:?}, MaxActivations {max})"
    ))
}

fn template_of(s: &StoredSecret) -> Result<cairn_manifest::template::SecretValue, CoreError> {
    secrets::to_template(s)
        .ok_or_else(|| CoreError::Internal(format!("unknown stored secret type {:?}", s.kind)))
}

fn spki_of(cert_der: &[u8]) -> Result<Vec<u8>, CoreError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der)
        .map_err(|e| CoreError::internal("parsing the issued leaf", e))?;
    Ok(cert.public_key().raw.to_vec())
}

/// Maps a manifest package to the verifier's policy. Identity strings must be 64 hex characters.
///
/// MarbleRun checks only the fields a package sets; cairn-attest's `check_policy` insists on a
/// complete identity, which the manifest check already enforces for non-Debug packages. For a
/// Debug package that pins less, unset identity fields are filled from the verdict so only the
/// fields the package sets (plus Debug and TCB) are judged.
fn package_policy(name: &str, p: &Package, v: &Verdict) -> Result<PackagePolicy, CoreError> {
    let id = |field: &'static str, s: &Option<String>| -> Result<Option<[u8; 32]>, CoreError> {
        s.as_deref()
            .map(|s| cairn_attest::parse_id_hex(field, s))
            .transpose()
            .map_err(|e| CoreError::PermissionDenied(format!("package {name:?}: {e}")))
    };
    let mut policy = PackagePolicy {
        unique_id: id("UniqueID", &p.unique_id)?,
        signer_id: id("SignerID", &p.signer_id)?,
        product_id: p.product_id,
        security_version: p.security_version,
        debug: p.debug,
        accepted_tcb_statuses: p.accepted_tcb_statuses.clone(),
        accepted_advisories: p.accepted_advisories.clone(),
    };
    if p.debug && policy.unique_id.is_none() {
        policy.signer_id.get_or_insert(v.mr_signer);
        policy.product_id.get_or_insert(u64::from(v.isv_prod_id));
        policy.security_version.get_or_insert(0);
    }
    Ok(policy)
}
