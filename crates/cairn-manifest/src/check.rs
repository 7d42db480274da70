//! Static manifest rules (MarbleRun's `Check` plus Cairn's additions).

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::decode::{DecodeExtra, Sink};
use crate::model::*;
use crate::path;
use crate::ErrorKind;

/// Runs every rule, adding to `sink`. Fills `certificate_der` of users.
/// `now`: `None` disables certificate expiry warnings.
pub(crate) fn check(
    m: &mut Manifest,
    extra: &DecodeExtra,
    now: Option<OffsetDateTime>,
    sink: &mut Sink,
) {
    packages(m, sink);
    marbles(m, sink);
    secrets(m, extra, sink);
    users(m, now, sink);
    roles(m, sink);
    recovery(m, sink);
    tls(m, sink);
    config(m, sink);
}

/// Largest ProductID / SecurityVersion an SGX enclave can carry (ISVPRODID, ISVSVN: 16 bits).
pub(crate) const MAX_SGX_U16: u64 = 65535;
/// Largest generated symmetric key in bits: HKDF-SHA256 output is at most 255 × 32 bytes.
pub(crate) const MAX_SYMMETRIC_KEY_BITS: u64 = 255 * 32 * 8;

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn packages(m: &Manifest, sink: &mut Sink) {
    for (name, p) in &m.packages {
        let base = path::key("Packages", name);
        let report = |sink: &mut Sink, field: &str, msg: String| {
            let at = path::key(&base, field);
            if p.debug {
                sink.warn(at, format!("{msg} (allowed because the package is Debug)"));
            } else {
                sink.check(at, msg);
            }
        };
        if p.unique_id.is_some() {
            let mixed: Vec<&str> = [
                ("SignerID", p.signer_id.is_some()),
                ("ProductID", p.product_id.is_some()),
                ("SecurityVersion", p.security_version.is_some()),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| n)
            .collect();
            if !mixed.is_empty() {
                report(
                    sink,
                    "UniqueID",
                    format!(
                        "package \"{name}\" sets UniqueID together with {}; pin either UniqueID alone or SignerID, ProductID and SecurityVersion",
                        mixed.join(", ")
                    ),
                );
            }
        } else {
            let missing: Vec<&str> = [
                ("SignerID", p.signer_id.is_some()),
                ("ProductID", p.product_id.is_some()),
                ("SecurityVersion", p.security_version.is_some()),
            ]
            .into_iter()
            .filter(|(_, set)| !*set)
            .map(|(n, _)| n)
            .collect();
            if !missing.is_empty() {
                report(
                    sink,
                    missing[0],
                    format!(
                        "package \"{name}\" has no UniqueID and is missing {}",
                        missing.join(", ")
                    ),
                );
            }
        }
        for (field, value) in [
            ("ProductID", p.product_id),
            ("SecurityVersion", p.security_version),
        ] {
            if let Some(v) = value.filter(|v| *v > MAX_SGX_U16) {
                sink.check(
                    path::key(&base, field),
                    format!("{field} {v} exceeds {MAX_SGX_U16}: SGX enclaves carry a 16-bit value, so no enclave could match"),
                );
            }
        }
        for (field, value) in [("UniqueID", &p.unique_id), ("SignerID", &p.signer_id)] {
            if let Some(v) = value {
                if !is_hex64(v) {
                    let at = path::key(&base, field);
                    let msg = format!("{field} \"{v}\" is not 64 hexadecimal characters");
                    if p.debug {
                        sink.warn(at, format!("{msg} (ignored for this Debug package)"));
                    } else {
                        sink.check(at, msg);
                    }
                }
            }
        }
    }
}

fn marbles(m: &Manifest, sink: &mut Sink) {
    if m.marbles.is_empty() {
        sink.check("Marbles", "no allowed marbles defined");
    }
    for (name, marble) in &m.marbles {
        let base = path::key("Marbles", name);
        if !m.packages.contains_key(&marble.package) {
            sink.check(
                path::key(&base, "Package"),
                format!("package \"{}\" is not defined", marble.package),
            );
        }
        for (i, tag) in marble.tls.iter().enumerate() {
            if !m.tls.contains_key(tag) {
                sink.check(
                    path::index(&path::key(&base, "TLS"), i),
                    format!("TLS tag \"{tag}\" is not defined"),
                );
            }
        }
        for (i, arg) in marble.parameters.argv.iter().enumerate() {
            if i == 0 && arg.trim().contains(char::is_whitespace) {
                sink.warn(
                    path::index(&path::key(&path::key(&base, "Parameters"), "Argv"), 0),
                    "Argv[0] contains whitespace; each argument must be its own array element",
                );
            }
        }
    }
}

fn secrets(m: &Manifest, extra: &DecodeExtra, sink: &mut Sink) {
    for (name, s) in &m.secrets {
        if extra.bad_secret_types.contains(name) {
            continue;
        }
        let base = path::key("Secrets", name);
        if s.valid_for.is_some() && s.cert.not_after.is_some() {
            sink.check(
                path::key(&base, "ValidFor"),
                "ValidFor and Cert.NotAfter cannot both be set",
            );
        }
        if s.valid_for.is_some() && !s.kind.is_cert() {
            sink.warn(
                path::key(&base, "ValidFor"),
                format!("ValidFor has no effect on a {} secret", s.kind.as_str()),
            );
        }
        if s.user_defined {
            continue;
        }
        let size_path = path::key(&base, "Size");
        let gen = ErrorKind::SecretGen;
        match s.kind {
            SecretKind::Plain => sink.error(
                gen,
                path::key(&base, "UserDefined"),
                "a plain secret cannot be generated; it must be UserDefined",
            ),
            SecretKind::SymmetricKey => {
                if s.size == 0 || s.size % 8 != 0 {
                    sink.error(
                        gen,
                        size_path,
                        format!(
                            "symmetric-key size {} is not a positive multiple of 8 bits",
                            s.size
                        ),
                    );
                } else if s.size > MAX_SYMMETRIC_KEY_BITS {
                    sink.error(
                        gen,
                        size_path,
                        format!(
                            "symmetric-key size {} exceeds {MAX_SYMMETRIC_KEY_BITS} bits (8160 bytes, the longest key HKDF-SHA256 derives per marble)",
                            s.size
                        ),
                    );
                }
            }
            SecretKind::CertRsa => {
                if ![2048, 3072, 4096, 8192].contains(&s.size) {
                    sink.error(
                        gen,
                        size_path,
                        format!(
                            "cert-rsa size {} cannot be generated; use 2048, 3072, 4096 or 8192",
                            s.size
                        ),
                    );
                }
            }
            SecretKind::CertEcdsa => {
                if ![224, 256, 384, 521].contains(&s.size) {
                    sink.error(
                        gen,
                        size_path,
                        format!(
                            "cert-ecdsa size {} cannot be generated; use 224, 256, 384 or 521",
                            s.size
                        ),
                    );
                }
            }
            SecretKind::CertEd25519 => {
                if s.size != 0 {
                    sink.error(
                        gen,
                        size_path,
                        format!("cert-ed25519 takes no size, found {}", s.size),
                    );
                }
            }
        }
    }
}

const THIRTY_DAYS: time::Duration = time::Duration::days(30);

fn users(m: &mut Manifest, now: Option<OffsetDateTime>, sink: &mut Sink) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    // The same certificate written differently (line breaks, trailing newline) is still one
    // identity: users are matched on the DER bytes.
    let mut seen_der: BTreeMap<Vec<u8>, (String, String)> = BTreeMap::new();
    let role_names: BTreeSet<String> = m.roles.keys().cloned().collect();
    for (name, user) in m.users.iter_mut() {
        let base = path::key("Users", name);
        let cert_path = path::key(&base, "Certificate");
        if user.certificate_pem.is_empty() {
            sink.check(&cert_path, format!("user \"{name}\" has no certificate"));
        } else {
            if let Some(other) = seen.get(&user.certificate_pem) {
                sink.check(
                    &cert_path,
                    format!("users \"{other}\" and \"{name}\" have the same certificate"),
                );
            } else {
                seen.insert(user.certificate_pem.clone(), name.clone());
            }
            match pem::parse(user.certificate_pem.as_bytes()) {
                Err(_) => sink.check(&cert_path, "certificate is not PEM"),
                Ok(block) if block.tag() != "CERTIFICATE" => sink.check(
                    &cert_path,
                    format!("PEM block is \"{}\", expected \"CERTIFICATE\"", block.tag()),
                ),
                Ok(block) => match X509Certificate::from_der(block.contents()) {
                    Err(e) => sink.check(&cert_path, format!("certificate cannot be parsed: {e}")),
                    Ok((_, cert)) => {
                        if let Some(now) = now {
                            let not_after = cert.validity().not_after.to_datetime();
                            if not_after <= now {
                                sink.warn(
                                    &cert_path,
                                    format!(
                                        "certificate of user \"{name}\" expired on {}",
                                        date(not_after)
                                    ),
                                );
                            } else if not_after <= now + THIRTY_DAYS {
                                sink.warn(
                                    &cert_path,
                                    format!("certificate of user \"{name}\" expires on {}, within 30 days", date(not_after)),
                                );
                            }
                        }
                        match seen_der.get(block.contents()) {
                            Some((other, other_pem)) if *other_pem != user.certificate_pem => {
                                sink.check(
                                    &cert_path,
                                    format!("users \"{other}\" and \"{name}\" have the same certificate (written differently)"),
                                );
                            }
                            Some(_) => {}
                            None => {
                                seen_der.insert(
                                    block.contents().to_vec(),
                                    (name.clone(), user.certificate_pem.clone()),
                                );
                            }
                        }
                        user.certificate_der = block.contents().to_vec();
                    }
                },
            }
        }
        for (i, role) in user.roles.iter().enumerate() {
            if !role_names.contains(role) {
                sink.check(
                    path::index(&path::key(&base, "Roles"), i),
                    format!("role \"{role}\" is not defined"),
                );
            }
        }
    }
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn roles(m: &Manifest, sink: &mut Sink) {
    for (name, role) in &m.roles {
        let base = path::key("Roles", name);
        let names_path = path::key(&base, "ResourceNames");
        let actions_path = path::key(&base, "Actions");
        let allowed: &[&str] = match role.resource_type.as_str() {
            "Packages" => &["UpdateSecurityVersion"],
            "Secrets" => &["ReadSecret", "WriteSecret"],
            "Manifest" => &["UpdateManifest"],
            other => {
                sink.check(
                    path::key(&base, "ResourceType"),
                    format!(
                        "unknown resource type \"{other}\"; expected Packages, Secrets or Manifest"
                    ),
                );
                continue;
            }
        };
        let mut write = false;
        let mut read = false;
        for (i, action) in role.actions.iter().enumerate() {
            match allowed.iter().find(|a| a.eq_ignore_ascii_case(action)) {
                Some(a) => {
                    write |= *a == "WriteSecret";
                    read |= *a == "ReadSecret";
                }
                None => sink.check(
                    path::index(&actions_path, i),
                    format!(
                        "action \"{action}\" is not valid for resource type {}; expected {}",
                        role.resource_type,
                        allowed.join(" or ")
                    ),
                ),
            }
        }
        for (i, res) in role.resource_names.iter().enumerate() {
            let at = path::index(&names_path, i);
            match role.resource_type.as_str() {
                "Packages" => {
                    if !m.packages.contains_key(res) {
                        sink.check(at, format!("package \"{res}\" is not defined"));
                    }
                }
                "Secrets" => match m.secrets.get(res) {
                    None => sink.check(at, format!("secret \"{res}\" is not defined")),
                    Some(s) => {
                        if write && !s.user_defined {
                            sink.check(at.clone(), format!("role \"{name}\" grants WriteSecret on secret \"{res}\", which is not user-defined"));
                        }
                        if read && !s.user_defined && !s.shared {
                            sink.check(at, format!("role \"{name}\" grants ReadSecret on secret \"{res}\", which is neither shared nor user-defined"));
                        }
                    }
                },
                _ => {
                    sink.check(at, "a Manifest role takes no resource names");
                }
            }
        }
    }
}

const RSA_OID: &str = "1.2.840.113549.1.1.1";

fn recovery(m: &Manifest, sink: &mut Sink) {
    for (name, pem_str) in &m.recovery_keys {
        let at = path::key("RecoveryKeys", name);
        match pem::parse(pem_str.as_bytes()) {
            Err(_) => sink.check(at, "recovery key is not PEM"),
            Ok(block) if block.tag() == "RSA PUBLIC KEY" => sink.check(
                at,
                "recovery key is a PKCS#1 \"RSA PUBLIC KEY\"; use a PKIX \"PUBLIC KEY\" PEM",
            ),
            Ok(block) if block.tag() != "PUBLIC KEY" => sink.check(
                at,
                format!("PEM block is \"{}\", expected \"PUBLIC KEY\"", block.tag()),
            ),
            Ok(block) => match SubjectPublicKeyInfo::from_der(block.contents()) {
                Err(e) => sink.check(at, format!("public key cannot be parsed: {e}")),
                Ok((_, spki)) => {
                    let oid = spki.algorithm.algorithm.to_id_string();
                    let is_rsa = oid == RSA_OID && matches!(spki.parsed(), Ok(PublicKey::RSA(_)));
                    if !is_rsa {
                        sink.check(
                            at,
                            format!("recovery key must be an RSA key, found algorithm {oid}"),
                        );
                    }
                }
            },
        }
    }
}

fn tls(m: &Manifest, sink: &mut Sink) {
    for (tag, t) in &m.tls {
        let base = path::key("TLS", tag);
        for (i, e) in t.incoming.iter().enumerate() {
            let at = path::index(&path::key(&base, "Incoming"), i);
            if e.port.is_empty() {
                sink.check(path::key(&at, "Port"), "an Incoming entry needs a Port");
            }
            if !e.cert.is_empty() {
                match m.secrets.get(&e.cert) {
                    None => sink.check(
                        path::key(&at, "Cert"),
                        format!("secret \"{}\" is not defined", e.cert),
                    ),
                    Some(s) if !s.kind.is_cert() => sink.check(
                        path::key(&at, "Cert"),
                        format!(
                            "secret \"{}\" is a {} secret, not a certificate",
                            e.cert,
                            s.kind.as_str()
                        ),
                    ),
                    Some(_) => {}
                }
                if !e.disable_client_auth {
                    sink.check(
                        path::key(&at, "DisableClientAuth"),
                        "an Incoming entry with Cert requires DisableClientAuth: true",
                    );
                }
            } else if e.disable_client_auth {
                sink.check(
                    path::key(&at, "DisableClientAuth"),
                    "DisableClientAuth requires a Cert",
                );
            }
        }
        for (i, e) in t.outgoing.iter().enumerate() {
            let at = path::index(&path::key(&base, "Outgoing"), i);
            if e.port.is_empty() {
                sink.check(path::key(&at, "Port"), "an Outgoing entry needs a Port");
            }
            if e.addr.is_empty() {
                sink.check(path::key(&at, "Addr"), "an Outgoing entry needs an Addr");
            }
        }
    }
}

fn config(m: &Manifest, sink: &mut Sink) {
    let c = &m.config;
    let updaters = m
        .users
        .values()
        .filter(|u| {
            u.roles.iter().any(|r| {
                m.roles.get(r).is_some_and(|role| {
                    role.resource_type == "Manifest"
                        && role
                            .actions
                            .iter()
                            .any(|a| a.eq_ignore_ascii_case("UpdateManifest"))
                })
            })
        })
        .count() as u64;
    if c.update_threshold > updaters {
        sink.check(
            "Config.UpdateThreshold",
            format!(
                "UpdateThreshold {} is higher than the number of users allowed to update the manifest ({updaters})",
                c.update_threshold
            ),
        );
    }
    let keys = m.recovery_keys.len() as u64;
    if c.recovery_threshold == 1 {
        sink.check(
            "Config.RecoveryThreshold",
            "RecoveryThreshold 1 is not allowed; use 0 (all keys) or at least 2",
        );
    } else if c.recovery_threshold > keys {
        sink.check(
            "Config.RecoveryThreshold",
            format!(
                "RecoveryThreshold {} is higher than the number of recovery keys ({keys})",
                c.recovery_threshold
            ),
        );
    }
}
