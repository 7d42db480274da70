//! The user secrets API (marblerun-compat §1.6 "Secrets get/set", §2.4 upload rules).

use std::collections::BTreeMap;

use cairn_crypto::Zeroizing;
use cairn_manifest::{SecretKind, ValidManifest};

use crate::coordinator::{log_line, wrong_state, CoordinatorCore};
use crate::error::CoreError;
use crate::secrets;
use crate::state::StoredSecret;
use crate::users::{self, Action};
use crate::Phase;

/// A secret as `GET /api/v2/secrets` returns it (definition plus current value).
#[derive(Clone)]
pub struct SecretInfo {
    /// Manifest type spelling.
    pub kind: String,
    /// `Size` from the manifest.
    pub size: u64,
    /// `Shared`.
    pub shared: bool,
    /// `UserDefined`.
    pub user_defined: bool,
    /// Certificate DER (cert secrets), `None` when not set.
    pub cert: Option<Vec<u8>>,
    /// `ValidFor` days (0 when not given).
    pub valid_for: u64,
    /// PKCS#8 private key, or the key/data; `None` when not uploaded yet.
    pub private: Option<Zeroizing<Vec<u8>>>,
    /// PKIX public key, or the key/data; `None` when not uploaded yet.
    pub public: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for SecretInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secret: print the definition only.
        f.debug_struct("SecretInfo")
            .field("kind", &self.kind)
            .field("size", &self.size)
            .field("shared", &self.shared)
            .field("user_defined", &self.user_defined)
            .finish_non_exhaustive()
    }
}

/// One uploaded user secret (`UserSecret`: `Cert` DER, `Private` DER, `Key` bytes).
#[derive(Clone, Default)]
pub struct UserSecretInput {
    /// Certificate DER (cert secrets).
    pub cert: Option<Vec<u8>>,
    /// Private key DER (cert secrets, optional, not validated).
    pub private: Option<Zeroizing<Vec<u8>>>,
    /// Key bytes (symmetric-key and plain secrets).
    pub key: Option<Zeroizing<Vec<u8>>>,
}

impl CoordinatorCore {
    /// Reads secrets for the user presenting `peer_cert` (first chain certificate). The user
    /// needs ReadSecret on every requested name.
    pub fn get_secrets(
        &self,
        peer_cert: Option<&[u8]>,
        names: &[String],
    ) -> Result<BTreeMap<String, SecretInfo>, CoreError> {
        let inner = self.lock()?;
        if inner.phase != Phase::AcceptingMarbles {
            return Err(wrong_state(inner.phase));
        }
        let vm = manifest_of(inner.manifest.as_deref())?;
        let m = vm.manifest();
        let user = self.authenticate_user(m, peer_cert)?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        users::require(m, &user, Action::ReadSecret, &refs)?;
        let mut out = BTreeMap::new();
        for name in names {
            let Some(def) = m.secrets.get(name) else {
                return Err(CoreError::NotFound(format!(
                    "secret {name:?} is not defined in the manifest"
                )));
            };
            let value = inner.state.secrets.get(name);
            if value.is_none() && !def.user_defined {
                return Err(CoreError::NotFound(format!(
                    "secret {name:?} is per-marble and has no stored value"
                )));
            }
            out.insert(
                name.clone(),
                SecretInfo {
                    kind: def.kind.as_str().to_string(),
                    size: def.size,
                    shared: def.shared,
                    user_defined: def.user_defined,
                    cert: value.and_then(|v| v.cert.clone()),
                    valid_for: def.valid_for.unwrap_or(0),
                    // A cert uploaded without its optional Private key reads back as null.
                    private: value.map(|v| v.private.clone()).filter(|p| !p.is_empty()),
                    public: value.map(|v| v.public.clone()),
                },
            );
        }
        tracing::info!(user = %user, secrets = ?names, "secrets read");
        Ok(out)
    }

    /// Uploads user-defined secrets for the user presenting `peer_cert`: every rule of §2.4,
    /// WriteSecret per secret, a template dry run with the new values, one update-log entry per
    /// secret, and a single commit.
    pub fn set_secrets(
        &self,
        peer_cert: Option<&[u8]>,
        uploads: BTreeMap<String, UserSecretInput>,
    ) -> Result<(), CoreError> {
        // Re-run on the latest state when another Coordinator instance committed first (HA).
        self.retry_conflicts(|| self.set_secrets_once(peer_cert, uploads.clone()))
    }

    fn set_secrets_once(
        &self,
        peer_cert: Option<&[u8]>,
        uploads: BTreeMap<String, UserSecretInput>,
    ) -> Result<(), CoreError> {
        let mut inner = self.lock()?;
        if inner.phase != Phase::AcceptingMarbles {
            return Err(wrong_state(inner.phase));
        }
        let vm = manifest_of(inner.manifest.as_deref())?.clone();
        let m = vm.manifest();
        let user = self.authenticate_user(m, peer_cert)?;
        if uploads.is_empty() {
            return Err(CoreError::InvalidArgument(
                "no new secrets defined: the upload is empty; send {\"secrets\": {NAME: {\"Key\": BASE64}}} (or Cert/Private for certificates)".into(),
            ));
        }
        let now = self.deps.clock.now();
        let mut next = inner.state.clone();
        let mut data = cairn_manifest::template::dummy_data(m);
        for (name, up) in &uploads {
            let Some(def) = m.secrets.get(name) else {
                return Err(CoreError::InvalidArgument(format!(
                    "secret manifest specifies a secret which the original manifest does not contain: {name:?} (user-defined secrets of the manifest: {})",
                    user_defined_names(m)
                )));
            };
            if !def.user_defined {
                return Err(CoreError::InvalidArgument(format!(
                    "secret {name} is not writeable (it is not UserDefined; the Coordinator generates it). User-defined secrets of the manifest: {}",
                    user_defined_names(m)
                )));
            }
            users::require(m, &user, Action::WriteSecret, &[name.as_str()])?;
            let stored = validate_upload(name, def.kind, def.size, up)?;
            if let Some(t) = secrets::to_template(&stored) {
                data.secrets.insert(name.clone(), t.clone());
                data.previous.insert(name.clone(), t);
            }
            next.secrets.insert(name.clone(), stored);
            next.update_log.push(log_line(
                now,
                "Secret set",
                &[
                    ("user", user.clone().into()),
                    ("secret", name.clone().into()),
                    ("type", def.kind.as_str().into()),
                ],
            ));
        }
        for marble in m.marbles.keys() {
            cairn_manifest::render_parameters(m, marble, &data)
                .map_err(|e| dry_run_error(&e, &uploads))?;
        }
        self.commit_next(&mut inner, next)?;
        tracing::info!(user = %user, secrets = ?uploads.keys().collect::<Vec<_>>(), "secrets set");
        Ok(())
    }
}

/// The dry-run refusal of an upload. A template that needs a part of an uploaded secret the
/// upload left empty (a cert's optional `Private`) is named as such.
fn dry_run_error(
    e: &cairn_manifest::TemplateError,
    uploads: &BTreeMap<String, UserSecretInput>,
) -> CoreError {
    use cairn_manifest::TemplateError as T;
    let inner = match e {
        T::InParameter { source, .. } => source.as_ref(),
        other => other,
    };
    match inner {
        T::NotUploaded { secret, .. } if uploads.contains_key(secret) => {
            CoreError::InvalidArgument(format!(
                "the uploaded secrets fail the template dry run: {e}; the templates use a part of secret {secret:?} that this upload leaves empty: upload it with that field (for a certificate, its Private key)"
            ))
        }
        _ => CoreError::InvalidArgument(format!(
            "the uploaded secrets fail the template dry run: {e}"
        )),
    }
}

/// Comma-separated names of the manifest's user-defined secrets (`none` when there are none).
fn user_defined_names(m: &cairn_manifest::Manifest) -> String {
    let names: Vec<&str> = m
        .secrets
        .iter()
        .filter(|(_, d)| d.user_defined)
        .map(|(n, _)| n.as_str())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

pub(crate) fn manifest_of(m: Option<&ValidManifest>) -> Result<&ValidManifest, CoreError> {
    m.ok_or_else(|| CoreError::Internal("state 3 without a manifest".into()))
}

/// Applies the per-type upload rules of §2.4 and builds the stored value.
fn validate_upload(
    name: &str,
    kind: SecretKind,
    size: u64,
    up: &UserSecretInput,
) -> Result<StoredSecret, CoreError> {
    let bad = |msg: String| CoreError::InvalidArgument(format!("secret {name}: {msg}"));
    match kind {
        SecretKind::SymmetricKey | SecretKind::Plain => {
            if up.cert.is_some() || up.private.is_some() {
                return Err(bad(format!(
                    "a {} secret only takes Key (Cert and Private are not allowed)",
                    kind.as_str()
                )));
            }
            let Some(key) = up.key.clone().filter(|k| !k.is_empty()) else {
                return Err(bad("Key is required (base64 of the secret's bytes)".into()));
            };
            if kind == SecretKind::SymmetricKey {
                let want = size / 8;
                if key.len() as u64 != want {
                    return Err(bad(format!(
                        "declared size and actual size don't match: expected {want} bytes (Size {size} bits), got {}",
                        key.len()
                    )));
                }
            }
            Ok(StoredSecret {
                kind: kind.as_str().to_string(),
                cert: None,
                private: key.clone(),
                public: key,
            })
        }
        SecretKind::CertRsa | SecretKind::CertEcdsa | SecretKind::CertEd25519 => {
            if up.key.is_some() {
                return Err(bad(format!(
                    "a {} secret takes Cert and Private, not Key",
                    kind.as_str()
                )));
            }
            let Some(cert) = up.cert.clone().filter(|c| !c.is_empty()) else {
                return Err(bad(
                    "Cert is required (base64 of the DER certificate; Private is optional)".into(),
                ));
            };
            use x509_parser::prelude::FromDer;
            let public = x509_parser::certificate::X509Certificate::from_der(&cert)
                .map(|(_, c)| c.public_key().raw.to_vec())
                .map_err(|e| bad(format!("Cert is not a DER X.509 certificate: {e}")))?;
            Ok(StoredSecret {
                kind: kind.as_str().to_string(),
                cert: Some(cert),
                private: up.private.clone().unwrap_or_default(),
                public: Zeroizing::new(public),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_rules() {
        let key = |b: &[u8]| UserSecretInput {
            key: Some(Zeroizing::new(b.to_vec())),
            ..Default::default()
        };
        assert!(validate_upload("k", SecretKind::SymmetricKey, 128, &key(&[1; 16])).is_ok());
        let e = validate_upload("k", SecretKind::SymmetricKey, 128, &key(&[1; 15])).unwrap_err();
        assert!(e.to_string().contains("expected 16 bytes"), "{e}");
        let mut with_cert = key(&[1; 16]);
        with_cert.cert = Some(vec![1]);
        assert!(validate_upload("k", SecretKind::SymmetricKey, 128, &with_cert).is_err());
        assert!(validate_upload("p", SecretKind::Plain, 0, &key(b"a\0b")).is_ok());
        assert!(validate_upload("c", SecretKind::CertEd25519, 0, &key(b"x")).is_err());
        let e = validate_upload("c", SecretKind::CertEd25519, 0, &UserSecretInput::default())
            .unwrap_err();
        assert!(e.to_string().contains("Cert is required"));
        let bad_cert = UserSecretInput {
            cert: Some(vec![1, 2, 3]),
            ..Default::default()
        };
        assert!(validate_upload("c", SecretKind::CertEd25519, 0, &bad_cert).is_err());
    }
}
