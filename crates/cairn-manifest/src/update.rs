//! Manifest update rules (MarbleRun's package update vs. full update).

use std::collections::BTreeMap;

use crate::decode::{self, Sink};
use crate::model::Manifest;
use crate::{path, Diagnostic, ErrorKind, ManifestErrors};

/// What kind of update an uploaded manifest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateKind {
    /// Only `Packages` is set (`Config` ignored): package name → new SecurityVersion.
    Package(BTreeMap<String, u64>),
    /// Anything else: a full manifest that must pass `ValidManifest::parse`.
    Full,
}

/// Classifies an uploaded update. A package update that sets anything but
/// `SecurityVersion` (or lacks it) is refused here.
pub fn classify(uploaded_json: &[u8]) -> Result<UpdateKind, ManifestErrors> {
    let value = crate::parse_json(uploaded_json)?;
    let empty = serde_json::Map::new();
    let root = match &value {
        serde_json::Value::Object(o) => o,
        serde_json::Value::Null => &empty,
        other => {
            return Err(ManifestErrors::single(
                ErrorKind::Parse,
                "",
                format!(
                    "a manifest must be a JSON object, found {}",
                    decode::type_name(other)
                ),
            ))
        }
    };
    let keys = decode::non_empty_top_keys(root);
    if keys.iter().any(|k| *k != "Packages" && *k != "Config") {
        return Ok(UpdateKind::Full);
    }
    let mut sink = Sink::default();
    let pkgs = decode::update_packages(root, &mut sink);
    let mut svns = BTreeMap::new();
    for (name, (pkg, set)) in &pkgs {
        let base = path::key("Packages", name);
        let unupdatable = set
            .iter()
            .any(|k| matches!(*k, "UniqueID" | "SignerID" | "ProductID"))
            || pkg.debug;
        if unupdatable {
            sink.check(
                &base,
                "update manifest contains unupdatable values; a package update may only set SecurityVersion",
            );
        }
        match pkg.security_version {
            Some(v) if v > crate::check::MAX_SGX_U16 => sink.check(
                path::key(&base, "SecurityVersion"),
                format!(
                    "SecurityVersion {v} exceeds {}: SGX enclaves carry a 16-bit value, so no enclave could match and the package would be locked out",
                    crate::check::MAX_SGX_U16
                ),
            ),
            Some(v) => {
                svns.insert(name.clone(), v);
            }
            None => sink.check(
                path::key(&base, "SecurityVersion"),
                "a package update must set SecurityVersion",
            ),
        }
    }
    if let Some(e) = ManifestErrors::from_sink(sink) {
        return Err(e);
    }
    Ok(UpdateKind::Package(svns))
}

/// Checks a package update against the current manifest: at least one
/// package, every package exists, no SecurityVersion downgrade.
pub fn check_package_update(
    current: &Manifest,
    new_svns: &BTreeMap<String, u64>,
) -> Result<(), Diagnostic> {
    if new_svns.is_empty() {
        return Err(Diagnostic {
            path: "Packages".into(),
            message: "the update manifest lists no packages".into(),
        });
    }
    for (name, new) in new_svns {
        let at = path::key(&path::key("Packages", name), "SecurityVersion");
        let Some(pkg) = current.packages.get(name) else {
            return Err(Diagnostic {
                path: path::key("Packages", name),
                message: format!("package \"{name}\" is not defined in the current manifest"),
            });
        };
        if let Some(cur) = pkg.security_version {
            if *new < cur {
                return Err(Diagnostic {
                    path: at,
                    message: format!(
                        "SecurityVersion {new} is lower than the current {cur}; downgrades are not allowed"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Applies checked SecurityVersions to a copy of `current`.
pub fn apply_package_update(current: &Manifest, new_svns: &BTreeMap<String, u64>) -> Manifest {
    let mut m = current.clone();
    for (name, svn) in new_svns {
        if let Some(p) = m.packages.get_mut(name) {
            p.security_version = Some(*svn);
        }
    }
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(
            classify(
                br#"{"Packages":{"p":{"SecurityVersion":4}},"Config":{"SealMode":"UniqueKey"}}"#
            )
            .unwrap(),
            UpdateKind::Package(BTreeMap::from([("p".to_string(), 4)]))
        );
        assert_eq!(
            classify(br#"{"Packages":{"p":{"SecurityVersion":4}},"Marbles":{"m":{}}}"#).unwrap(),
            UpdateKind::Full
        );
        // Empty sections do not make a full update.
        assert_eq!(
            classify(br#"{"packages":{"p":{"securityversion":4}},"Marbles":{}}"#).unwrap(),
            UpdateKind::Package(BTreeMap::from([("p".to_string(), 4)]))
        );
    }

    #[test]
    fn refuses_unupdatable_values() {
        for body in [
            r#"{"Packages":{"p":{"SecurityVersion":4,"UniqueID":"ab"}}}"#,
            r#"{"Packages":{"p":{"SecurityVersion":4,"Debug":true}}}"#,
            r#"{"Packages":{"p":{"SecurityVersion":4,"ProductID":0}}}"#,
            r#"{"Packages":{"p":{"SecurityVersion":4,"SignerID":"ab"}}}"#,
        ] {
            let e = classify(body.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Check);
            assert_eq!(e.errors[0].path, "Packages.p");
            assert!(e.errors[0]
                .message
                .starts_with("update manifest contains unupdatable values"));
        }
        // Debug false is not an update of Debug.
        assert!(classify(br#"{"Packages":{"p":{"SecurityVersion":4,"Debug":false}}}"#).is_ok());
        let e = classify(br#"{"Packages":{"p":{}}}"#).unwrap_err();
        assert_eq!(
            e.errors[0].to_string(),
            "Packages.p.SecurityVersion: a package update must set SecurityVersion"
        );
    }
}
