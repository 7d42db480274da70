//! Users and roles (marblerun-compat §9, interfaces §6): authentication of a client certificate
//! against the manifest's users and permission checks over roles.

use std::collections::BTreeSet;

use cairn_manifest::Manifest;

use crate::error::CoreError;

/// The 401 message MarbleRun clients know.
pub const UNAUTHORIZED_USER: &str =
    "unauthorized user: client certificate did not match any MarbleRun users";

/// Resource types of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `Packages` (UpdateSecurityVersion).
    Packages,
    /// `Secrets` (ReadSecret, WriteSecret).
    Secrets,
    /// `Manifest` (UpdateManifest).
    Manifest,
}

impl Resource {
    fn as_str(self) -> &'static str {
        match self {
            Resource::Packages => "Packages",
            Resource::Secrets => "Secrets",
            Resource::Manifest => "Manifest",
        }
    }
}

/// Role actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read user-defined or shared secrets.
    ReadSecret,
    /// Upload user-defined secrets.
    WriteSecret,
    /// Raise a package's SecurityVersion.
    UpdateSecurityVersion,
    /// Submit, acknowledge or cancel a full manifest update.
    UpdateManifest,
}

impl Action {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadSecret => "ReadSecret",
            Action::WriteSecret => "WriteSecret",
            Action::UpdateSecurityVersion => "UpdateSecurityVersion",
            Action::UpdateManifest => "UpdateManifest",
        }
    }

    fn resource(self) -> Resource {
        match self {
            Action::ReadSecret | Action::WriteSecret => Resource::Secrets,
            Action::UpdateSecurityVersion => Resource::Packages,
            Action::UpdateManifest => Resource::Manifest,
        }
    }
}

impl crate::CoordinatorCore {
    /// [`authenticate`], logging a warning when the user's certificate has expired.
    pub(crate) fn authenticate_user(
        &self,
        m: &Manifest,
        peer_cert: Option<&[u8]>,
    ) -> Result<String, CoreError> {
        let user = authenticate(m, peer_cert)?;
        let now = self.deps.clock.now().unix_timestamp();
        if let Some(w) = expired_warning(m, &user, now) {
            tracing::warn!(user = %user, "{w}");
        }
        Ok(user)
    }

    /// The user presenting `peer_cert` under the current manifest: in Recovery the state error
    /// (users are unknown until the state is recovered), 401 without a manifest.
    pub(crate) fn user_of(
        &self,
        inner: &crate::coordinator::Inner,
        peer_cert: Option<&[u8]>,
    ) -> Result<String, CoreError> {
        if inner.phase == crate::Phase::Recovery {
            return Err(crate::coordinator::wrong_state(inner.phase));
        }
        match inner.manifest.as_deref() {
            Some(vm) => self.authenticate_user(vm.manifest(), peer_cert),
            None => Err(CoreError::Unauthenticated(UNAUTHORIZED_USER.into())),
        }
    }
}

/// Finds the user whose manifest certificate equals `peer_cert` byte for byte.
///
/// `peer_cert` must be the FIRST certificate of the client's TLS chain (the one whose key signed
/// the handshake); later chain certificates never select a user (FR-17). Validity dates are not
/// enforced (interfaces §6).
pub fn authenticate(m: &Manifest, peer_cert: Option<&[u8]>) -> Result<String, CoreError> {
    let Some(cert) = peer_cert else {
        return Err(CoreError::Unauthenticated(UNAUTHORIZED_USER.into()));
    };
    // Invariant: a user is selected only if the handshake-proven leaf DER equals their manifest DER.
    m.users
        .iter()
        .find(|(_, u)| !u.certificate_der.is_empty() && u.certificate_der.as_slice() == cert)
        .map(|(name, _)| name.clone())
        .ok_or_else(|| CoreError::Unauthenticated(UNAUTHORIZED_USER.into()))
}

/// A warning when `user`'s manifest certificate is expired at `now_unix`. Validity is not
/// enforced (interfaces §6), so the request goes on; the operator should replace the certificate.
pub fn expired_warning(m: &Manifest, user: &str, now_unix: i64) -> Option<String> {
    use x509_parser::prelude::FromDer as _;
    let der = &m.users.get(user)?.certificate_der;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let not_after = cert.validity().not_after.to_datetime();
    (not_after.unix_timestamp() < now_unix).then(|| {
        let not_after = not_after.date();
        format!(
            "user {user:?} authenticated with a certificate that expired on {not_after}; validity is not enforced, but replace the certificate through a manifest update"
        )
    })
}

/// True when `user`'s roles grant `action` on every name in `names` (union over roles; actions
/// compared case-insensitively, resource types exactly).
pub fn permitted(m: &Manifest, user: &str, action: Action, names: &[&str]) -> bool {
    let Some(u) = m.users.get(user) else {
        return false;
    };
    let mut allowed = BTreeSet::new();
    let mut any_role = false;
    for role_name in &u.roles {
        let Some(role) = m.roles.get(role_name) else {
            continue;
        };
        if role.resource_type != action.resource().as_str() {
            continue;
        }
        if !role
            .actions
            .iter()
            .any(|a| a.eq_ignore_ascii_case(action.as_str()))
        {
            continue;
        }
        any_role = true;
        allowed.extend(role.resource_names.iter().map(String::as_str));
    }
    any_role && names.iter().all(|n| allowed.contains(n))
}

/// Checks [`permitted`], naming the user, action and resources on refusal.
pub fn require(m: &Manifest, user: &str, action: Action, names: &[&str]) -> Result<(), CoreError> {
    if permitted(m, user, action, names) {
        return Ok(());
    }
    let what = if names.is_empty() {
        String::new()
    } else {
        format!(" on {}", names.join(", "))
    };
    let resource = action.resource().as_str();
    let hint = if names.is_empty() {
        format!(
            "a role with ResourceType {resource:?} and Actions [{:?}]",
            action.as_str()
        )
    } else {
        format!(
            "a role with ResourceType {resource:?}, Actions [{:?}] and these ResourceNames",
            action.as_str()
        )
    };
    Err(CoreError::Forbidden(format!(
        "user {user:?} is not allowed to {}{what}: none of the user's roles grants it (the manifest must give the user {hint})",
        action.as_str()
    )))
}

/// Users holding UpdateManifest (sorted).
pub fn update_manifest_users(m: &Manifest) -> Vec<String> {
    m.users
        .keys()
        .filter(|u| permitted(m, u, Action::UpdateManifest, &[]))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests");
        let raw = std::fs::read(format!("{keys}/valid-users-roles.json")).unwrap();
        cairn_manifest::ValidManifest::parse(&raw)
            .unwrap()
            .manifest()
            .clone()
    }

    fn der(name: &str) -> Vec<u8> {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests/keys");
        let pem = std::fs::read_to_string(format!("{keys}/{name}.crt")).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    #[test]
    fn authenticates_and_authorises() {
        let m = manifest();
        assert_eq!(authenticate(&m, Some(&der("alice"))).unwrap(), "alice");
        assert_eq!(authenticate(&m, Some(&der("bob"))).unwrap(), "bob");
        let e = authenticate(&m, Some(&der("mallory"))).unwrap_err();
        assert_eq!(e.to_string(), UNAUTHORIZED_USER);
        assert!(authenticate(&m, None).is_err());
        assert!(permitted(
            &m,
            "alice",
            Action::WriteSecret,
            &["userKey", "apiKey"]
        ));
        assert!(permitted(
            &m,
            "alice",
            Action::ReadSecret,
            &["sharedKey", "userKey"]
        ));
        assert!(!permitted(
            &m,
            "bob",
            Action::ReadSecret,
            &["sharedKey", "userKey"]
        ));
        assert!(permitted(&m, "bob", Action::ReadSecret, &["sharedKey"]));
        assert!(!permitted(&m, "bob", Action::WriteSecret, &[]));
        assert!(!permitted(&m, "carol", Action::ReadSecret, &["sharedKey"]));
        assert!(permitted(
            &m,
            "alice",
            Action::UpdateSecurityVersion,
            &["frontend"]
        ));
        assert!(!permitted(
            &m,
            "alice",
            Action::UpdateSecurityVersion,
            &["backend"]
        ));
        assert!(!permitted(&m, "alice", Action::UpdateManifest, &[]));
        assert!(update_manifest_users(&m).is_empty());
        let e = require(&m, "bob", Action::WriteSecret, &["userKey"]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Forbidden);
    }

    #[test]
    fn expiry_is_warned_not_enforced() {
        let mut m = manifest();
        let dave = der("dave");
        m.users.get_mut("carol").unwrap().certificate_der = dave.clone();
        // 2026-06-01: dave's certificate expired on 2020-01-02 but still authenticates.
        let now = 1_780_000_000;
        assert_eq!(authenticate(&m, Some(&dave)).unwrap(), "carol");
        assert_eq!(
            expired_warning(&m, "carol", now).unwrap(),
            "user \"carol\" authenticated with a certificate that expired on 2020-01-02; validity is not enforced, but replace the certificate through a manifest update"
        );
        assert_eq!(expired_warning(&m, "alice", now), None);
        assert_eq!(expired_warning(&m, "nobody", now), None);
    }
}
