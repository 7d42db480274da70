//! Secret generation (manifest set and activation) and the mapping from the manifest model to
//! cairn-ca's certificate specification and to template values.

use std::collections::BTreeMap;

use base64::Engine as _;
use cairn_ca::{CaBundle, CertKind, CertSecretSpec, SubjectSpec};
use cairn_crypto::Zeroizing;
use cairn_manifest::template::SecretValue;
use cairn_manifest::{Manifest, SecretDef, SecretKind};
use time::OffsetDateTime;

use crate::error::CoreError;
use crate::state::StoredSecret;

/// Generates every shared, non-user-defined secret of `m` (set time). Per-marble secrets are
/// derived or generated at activation; user-defined ones are uploaded later.
pub(crate) fn generate_shared(
    m: &Manifest,
    ca: &CaBundle,
    now: OffsetDateTime,
) -> Result<BTreeMap<String, StoredSecret>, CoreError> {
    let mut out = BTreeMap::new();
    for (name, def) in &m.secrets {
        if def.user_defined || !def.shared {
            if !def.user_defined && def.kind == SecretKind::Plain {
                return Err(secret_gen(
                    name,
                    "unsupported secret of type plain (plain secrets must be UserDefined)",
                ));
            }
            continue;
        }
        out.insert(name.clone(), generate_one(name, def, ca, now)?);
    }
    Ok(out)
}

/// Generates one fresh value of `def` (shared secrets at set time, per-marble cert secrets at
/// activation).
pub(crate) fn generate_one(
    name: &str,
    def: &SecretDef,
    ca: &CaBundle,
    now: OffsetDateTime,
) -> Result<StoredSecret, CoreError> {
    match def.kind {
        SecretKind::SymmetricKey => {
            let len = symmetric_len(name, def)?;
            let key = cairn_crypto::random_bytes(len)
                .map(Zeroizing::new)
                .map_err(|e| CoreError::internal("random", e))?;
            Ok(StoredSecret {
                kind: def.kind.as_str().to_string(),
                cert: None,
                private: key.clone(),
                public: key,
            })
        }
        SecretKind::CertRsa | SecretKind::CertEcdsa | SecretKind::CertEd25519 => {
            let spec = cert_spec(def)?;
            let g = cairn_ca::generate_cert_secret(ca, &spec, now)
                .map_err(|e| secret_gen(name, &e.to_string()))?;
            Ok(StoredSecret {
                kind: def.kind.as_str().to_string(),
                cert: g.cert,
                private: g.private,
                public: Zeroizing::new(g.public),
            })
        }
        SecretKind::Plain => Err(secret_gen(name, "unsupported secret of type plain")),
    }
}

/// Per-marble symmetric key: HKDF-SHA256(ikm = root secret, salt = UUID string ‖ name,
/// info = marble type or "" when secret binding is disabled, len = Size/8).
pub(crate) fn derive_private_symmetric(
    root_secret: &[u8],
    uuid: &str,
    name: &str,
    marble_type_or_empty: &str,
    def: &SecretDef,
) -> Result<StoredSecret, CoreError> {
    let len = symmetric_len(name, def)?;
    let mut salt = Vec::with_capacity(uuid.len() + name.len());
    salt.extend_from_slice(uuid.as_bytes());
    salt.extend_from_slice(name.as_bytes());
    let key = cairn_crypto::hkdf_sha256(root_secret, &salt, marble_type_or_empty.as_bytes(), len)
        .map_err(|e| CoreError::internal("deriving a per-marble secret", e))?;
    Ok(StoredSecret {
        kind: def.kind.as_str().to_string(),
        cert: None,
        private: key.clone(),
        public: key,
    })
}

fn symmetric_len(name: &str, def: &SecretDef) -> Result<usize, CoreError> {
    if def.size == 0 || !def.size.is_multiple_of(8) {
        return Err(secret_gen(
            name,
            &format!(
                "symmetric-key Size must be a positive multiple of 8, got {}",
                def.size
            ),
        ));
    }
    usize::try_from(def.size / 8).map_err(|_| secret_gen(name, "Size too large"))
}

fn secret_gen(name: &str, msg: &str) -> CoreError {
    CoreError::InvalidManifest {
        kind: "E_SECRET_GEN",
        message: format!("Secrets.{name}: {msg}"),
    }
}

/// Maps a manifest certificate secret onto cairn-ca's specification.
pub(crate) fn cert_spec(def: &SecretDef) -> Result<CertSecretSpec, CoreError> {
    let kind = match def.kind {
        SecretKind::CertRsa => CertKind::Rsa,
        SecretKind::CertEcdsa => CertKind::Ecdsa,
        SecretKind::CertEd25519 => CertKind::Ed25519,
        other => {
            return Err(CoreError::Internal(format!(
                "secret type {} is not a certificate",
                other.as_str()
            )))
        }
    };
    let t = &def.cert;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut spec = CertSecretSpec::new(kind, def.size);
    spec.subject = SubjectSpec {
        common_name: non_empty(&t.subject.common_name),
        country: t.subject.country.clone(),
        organization: t.subject.organization.clone(),
        organizational_unit: t.subject.organizational_unit.clone(),
        locality: t.subject.locality.clone(),
        province: t.subject.province.clone(),
        street_address: t.subject.street_address.clone(),
        postal_code: t.subject.postal_code.clone(),
        serial_number: non_empty(&t.subject.serial_number),
    };
    spec.dns_names = t.dns_names.clone();
    spec.ip_addresses = t.ip_addresses.clone();
    spec.email_addresses = t.email_addresses.clone();
    spec.uris = t.uris.clone();
    spec.not_after = t.not_after;
    spec.valid_for_days = def.valid_for;
    spec.key_usage = t.key_usage;
    spec.ext_key_usage = t.ext_key_usage.clone();
    spec.is_ca = t.is_ca;
    spec.max_path_len = t.max_path_len;
    spec.max_path_len_zero = t.max_path_len_zero;
    Ok(spec)
}

/// Template view of a stored secret.
pub(crate) fn to_template(s: &StoredSecret) -> Option<SecretValue> {
    Some(SecretValue {
        kind: SecretKind::from_manifest(&s.kind)?,
        cert: s.cert.clone(),
        private: s.private.to_vec(),
        public: s.public.to_vec(),
    })
}

/// Template view of a user-defined secret that has not been uploaded yet (empty values, so a
/// template that uses it fails with "not uploaded yet").
pub(crate) fn empty_value(def: &SecretDef) -> SecretValue {
    SecretValue {
        kind: def.kind,
        cert: None,
        private: Vec::new(),
        public: Vec::new(),
    }
}

/// PEM text of one DER block with 64-character lines.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(size: u64) -> SecretDef {
        let m = cairn_manifest::ValidManifest::parse(
            format!(
                r#"{{"Packages":{{"p":{{"Debug":true}}}},"Marbles":{{"m":{{"Package":"p"}}}},"Secrets":{{"k":{{"Type":"symmetric-key","Size":{size}}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        m.manifest().secrets["k"].clone()
    }

    #[test]
    fn hkdf_binding() {
        let def = sym(256);
        let root = [9u8; 32];
        let a = derive_private_symmetric(&root, "u1", "k", "a", &def).unwrap();
        let a2 = derive_private_symmetric(&root, "u1", "k", "a", &def).unwrap();
        let b = derive_private_symmetric(&root, "u1", "k", "b", &def).unwrap();
        let n1 = derive_private_symmetric(&root, "u1", "k", "", &def).unwrap();
        assert_eq!(a.private.len(), 32);
        assert_eq!(a.private, a2.private);
        assert_ne!(a.private, b.private);
        assert_ne!(a.private, n1.private);
        let expect = cairn_crypto::hkdf_sha256(&root, b"u1k", b"a", 32).unwrap();
        assert_eq!(a.private, expect);
    }

    #[test]
    fn pem_lines() {
        let p = pem("CERTIFICATE", &[0u8; 100]);
        assert!(p.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(p.ends_with("-----END CERTIFICATE-----\n"));
        assert!(p.lines().all(|l| l.len() <= 64));
    }
}
