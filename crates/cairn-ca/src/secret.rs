//! Certificate secrets (`cert-rsa`, `cert-ecdsa`, `cert-ed25519`) generated from a plain
//! template with MarbleRun's defaults and signed by the intermediate key.

use std::fmt;
use std::net::IpAddr;

use ::time::OffsetDateTime;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use cairn_crypto::Zeroizing;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
};

use crate::{der, intermediate_issuer, random_serial, CaBundle, CaError};

/// Common name used when the template has none and not exactly one DNS name.
pub const DEFAULT_SECRET_CN: &str = "MarbleRun Generated Certificate";
/// Validity of a certificate secret when neither `not_after` nor `valid_for_days` is given.
pub const DEFAULT_VALID_FOR_DAYS: u64 = 365;

/// Key algorithm of a certificate secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertKind {
    /// `cert-rsa`: size 2048, 3072, 4096 or 8192.
    Rsa,
    /// `cert-ecdsa`: size 224, 256, 384 or 521 (NIST curves).
    Ecdsa,
    /// `cert-ed25519`: size 0.
    Ed25519,
}

/// Subject fields of a certificate template (Go `pkix.Name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectSpec {
    /// CommonName; empty or absent means "use the default".
    pub common_name: Option<String>,
    /// Country.
    pub country: Vec<String>,
    /// Organization.
    pub organization: Vec<String>,
    /// OrganizationalUnit.
    pub organizational_unit: Vec<String>,
    /// Locality.
    pub locality: Vec<String>,
    /// Province (stateOrProvinceName).
    pub province: Vec<String>,
    /// StreetAddress.
    pub street_address: Vec<String>,
    /// PostalCode.
    pub postal_code: Vec<String>,
    /// SerialNumber attribute of the subject.
    pub serial_number: Option<String>,
}

/// Everything needed to generate one certificate secret; the core layer maps the manifest's
/// `SecretDef` onto it. Empty lists and `None` take MarbleRun's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSecretSpec {
    /// Key algorithm.
    pub kind: CertKind,
    /// Key size in bits (modulus for RSA, curve for ECDSA, 0 for Ed25519).
    pub size: u64,
    /// Subject.
    pub subject: SubjectSpec,
    /// DNS SANs; empty: `["localhost"]`.
    pub dns_names: Vec<String>,
    /// IP SANs; empty: `[127.0.0.1, ::1]`.
    pub ip_addresses: Vec<IpAddr>,
    /// E-mail SANs.
    pub email_addresses: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// Explicit NotAfter; wins over `valid_for_days`.
    pub not_after: Option<OffsetDateTime>,
    /// Validity in days from `now` when `not_after` is absent (default 365).
    pub valid_for_days: Option<u64>,
    /// Go `x509.KeyUsage` bitmask; `None` or 0: DigitalSignature|CertSign.
    pub key_usage: Option<u32>,
    /// Go `x509.ExtKeyUsage` values; `None` or empty: [ServerAuth, ClientAuth].
    pub ext_key_usage: Option<Vec<u32>>,
    /// BasicConstraints cA.
    pub is_ca: bool,
    /// Go `MaxPathLen` (only for CA certificates; -1 or 0 without `max_path_len_zero`: none).
    pub max_path_len: Option<i64>,
    /// Go `MaxPathLenZero`.
    pub max_path_len_zero: bool,
}

impl CertSecretSpec {
    /// A template with every field defaulted.
    pub fn new(kind: CertKind, size: u64) -> Self {
        CertSecretSpec {
            kind,
            size,
            subject: SubjectSpec::default(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            email_addresses: Vec::new(),
            uris: Vec::new(),
            not_after: None,
            valid_for_days: None,
            key_usage: None,
            ext_key_usage: None,
            is_ca: false,
            max_path_len: None,
            max_path_len_zero: false,
        }
    }
}

/// A generated secret: certificate (when the secret has one), private key PKCS#8 DER and public
/// key SubjectPublicKeyInfo (PKIX) DER.
#[derive(Clone)]
pub struct GeneratedSecret {
    /// Certificate DER.
    pub cert: Option<Vec<u8>>,
    /// Private key, PKCS#8 DER.
    pub private: Zeroizing<Vec<u8>>,
    /// Public key, SubjectPublicKeyInfo DER.
    pub public: Vec<u8>,
}

impl fmt::Debug for GeneratedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedSecret")
            .field("cert_len", &self.cert.as_ref().map(Vec::len))
            .field("public_len", &self.public.len())
            .finish_non_exhaustive()
    }
}

/// Checks that `kind`/`size` can be generated (the validation rule of interfaces.md §4).
pub fn check_cert_size(kind: CertKind, size: u64) -> Result<(), CaError> {
    let ok = match kind {
        CertKind::Rsa => matches!(size, 2048 | 3072 | 4096 | 8192),
        CertKind::Ecdsa => matches!(size, 224 | 256 | 384 | 521),
        CertKind::Ed25519 => size == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidSpec(match kind {
            CertKind::Rsa => format!("cert-rsa size {size}: must be 2048, 3072, 4096 or 8192"),
            CertKind::Ecdsa => format!("cert-ecdsa size {size}: must be 224, 256, 384 or 521"),
            CertKind::Ed25519 => format!("cert-ed25519 size {size}: must be 0 or omitted"),
        }))
    }
}

/// Generates a key pair of `spec.kind`/`spec.size` and a certificate for it signed by the
/// intermediate key (issuer = intermediate subject), applying MarbleRun's template defaults.
pub fn generate_cert_secret(
    ca: &CaBundle,
    spec: &CertSecretSpec,
    now: OffsetDateTime,
) -> Result<GeneratedSecret, CaError> {
    check_cert_size(spec.kind, spec.size)?;
    let key = generate_key(spec.kind, spec.size)?;
    let mut params = template_params(spec, now)?;
    let issuer = intermediate_issuer(ca)?;
    let cert = if key.rcgen_knows_curve {
        let pk = SubjectPublicKeyInfo::from_der(&key.spki)?;
        params.signed_by(&pk, &issuer)?.der().to_vec()
    } else {
        // rcgen has no algorithm for this curve: sign with a placeholder key, then swap
        // in the real SubjectPublicKeyInfo and re-sign the TBS with the intermediate key.
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski(&key.spki));
        let placeholder = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let draft = params.signed_by(&placeholder, &issuer)?;
        der::replace_spki_and_resign(draft.der(), &key.spki, ca.key_type, &ca.intermediate_key)?
    };
    Ok(GeneratedSecret {
        cert: Some(cert),
        private: key.pkcs8,
        public: key.spki,
    })
}

struct NewKey {
    pkcs8: Zeroizing<Vec<u8>>,
    spki: Vec<u8>,
    /// Whether rcgen can write this SPKI's AlgorithmIdentifier (false for P-224).
    rcgen_knows_curve: bool,
}

fn generate_key(kind: CertKind, size: u64) -> Result<NewKey, CaError> {
    let gen_err = |what: &str| CaError::Generate(format!("{what} key generation failed"));
    match (kind, size) {
        (CertKind::Rsa, _) => {
            let ks = match size {
                2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
                _ => aws_lc_rs::rsa::KeySize::Rsa8192,
            };
            let kp = aws_lc_rs::rsa::KeyPair::generate(ks).map_err(|_| gen_err("RSA"))?;
            let pkcs8: Pkcs8V1Der<'_> = kp.as_der().map_err(|_| gen_err("RSA"))?;
            let spki: PublicKeyX509Der<'_> =
                kp.public_key().as_der().map_err(|_| gen_err("RSA"))?;
            Ok(NewKey {
                pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
                spki: spki.as_ref().to_vec(),
                rcgen_knows_curve: true,
            })
        }
        (CertKind::Ecdsa, 224) => p224_key(),
        (CertKind::Ecdsa, _) => {
            let alg = match size {
                256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                _ => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
            };
            let kp = EcdsaKeyPair::generate(alg).map_err(|_| gen_err("ECDSA"))?;
            let pkcs8 = kp.to_pkcs8v1().map_err(|_| gen_err("ECDSA"))?;
            let spki: PublicKeyX509Der<'_> =
                kp.public_key().as_der().map_err(|_| gen_err("ECDSA"))?;
            Ok(NewKey {
                pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
                spki: spki.as_ref().to_vec(),
                rcgen_knows_curve: true,
            })
        }
        (CertKind::Ed25519, _) => {
            let kp = Ed25519KeyPair::generate().map_err(|_| gen_err("Ed25519"))?;
            let pkcs8 = kp.to_pkcs8v1().map_err(|_| gen_err("Ed25519"))?;
            let spki: PublicKeyX509Der<'_> =
                kp.public_key().as_der().map_err(|_| gen_err("Ed25519"))?;
            Ok(NewKey {
                pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
                spki: spki.as_ref().to_vec(),
                rcgen_knows_curve: true,
            })
        }
    }
}

/// P-224 via RustCrypto (generation only; aws-lc-rs has no P-224).
fn p224_key() -> Result<NewKey, CaError> {
    use p224::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let gen_err = || CaError::Generate("P-224 key generation failed".into());
    // Rejection sampling: 28 random bytes form a valid scalar unless zero or >= the order.
    let sk = loop {
        let mut b = Zeroizing::new([0u8; 28]);
        cairn_crypto::fill_random(b.as_mut())?;
        if let Ok(sk) = p224::SecretKey::from_slice(b.as_ref()) {
            break sk;
        }
    };
    let pkcs8 = sk.to_pkcs8_der().map_err(|_| gen_err())?;
    let spki = sk.public_key().to_public_key_der().map_err(|_| gen_err())?;
    Ok(NewKey {
        pkcs8: Zeroizing::new(pkcs8.as_bytes().to_vec()),
        spki: spki.as_bytes().to_vec(),
        rcgen_knows_curve: false,
    })
}

/// Subject key identifier: first 20 bytes of SHA-256 of the SPKI (what rcgen derives by default).
fn ski(spki: &[u8]) -> Vec<u8> {
    cairn_crypto::sha256(spki)[..20].to_vec()
}

fn template_params(
    spec: &CertSecretSpec,
    now: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let dns_names = if spec.dns_names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        spec.dns_names.clone()
    };
    let ips = if spec.ip_addresses.is_empty() {
        vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ]
    } else {
        spec.ip_addresses.clone()
    };

    let s = &spec.subject;
    let mut dn = DistinguishedName::new();
    let multi = [
        (DnType::CountryName, &s.country),
        (DnType::OrganizationName, &s.organization),
        (DnType::OrganizationalUnitName, &s.organizational_unit),
        (DnType::LocalityName, &s.locality),
        (DnType::StateOrProvinceName, &s.province),
        (DnType::CustomDnType(vec![2, 5, 4, 9]), &s.street_address),
        (DnType::CustomDnType(vec![2, 5, 4, 17]), &s.postal_code),
    ];
    for (ty, values) in multi {
        for v in values {
            dn.push(ty.clone(), v.as_str());
        }
    }
    if let Some(sn) = &s.serial_number {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), sn.as_str());
    }
    let cn = match s.common_name.as_deref() {
        Some(cn) if !cn.is_empty() => cn.to_owned(),
        _ if dns_names.len() == 1 => dns_names[0].clone(),
        _ => DEFAULT_SECRET_CN.to_owned(),
    };
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;

    let mut sans = Vec::new();
    for d in &dns_names {
        sans.push(SanType::DnsName(d.as_str().try_into().map_err(|e| {
            CaError::InvalidSpec(format!("DNS name {d:?}: {e}"))
        })?));
    }
    sans.extend(ips.into_iter().map(SanType::IpAddress));
    for e in &spec.email_addresses {
        sans.push(SanType::Rfc822Name(e.as_str().try_into().map_err(
            |err| CaError::InvalidSpec(format!("e-mail address {e:?}: {err}")),
        )?));
    }
    for u in &spec.uris {
        sans.push(SanType::URI(u.as_str().try_into().map_err(|err| {
            CaError::InvalidSpec(format!("URI {u:?}: {err}"))
        })?));
    }
    p.subject_alt_names = sans;

    p.serial_number = Some(random_serial()?);
    p.not_before = now;
    p.not_after = match spec.not_after {
        Some(t) => t,
        None => {
            let days = spec.valid_for_days.unwrap_or(DEFAULT_VALID_FOR_DAYS);
            let days = i64::try_from(days)
                .ok()
                .and_then(|d| now.checked_add(::time::Duration::days(d)))
                .ok_or_else(|| CaError::InvalidSpec(format!("ValidFor {days} days overflows")))?;
            days
        }
    };

    p.key_usages = match spec.key_usage {
        None | Some(0) => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ],
        Some(bits) => key_usages(bits)?,
    };
    p.extended_key_usages = match &spec.ext_key_usage {
        None => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Some(v) if v.is_empty() => {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        }
        Some(v) => v
            .iter()
            .map(|x| ext_key_usage(*x))
            .collect::<Result<_, _>>()?,
    };
    p.is_ca = if spec.is_ca {
        match spec.max_path_len {
            Some(n) if n > 0 => IsCa::Ca(BasicConstraints::Constrained(
                u8::try_from(n)
                    .map_err(|_| CaError::InvalidSpec(format!("MaxPathLen {n} is above 255")))?,
            )),
            Some(0) | None if spec.max_path_len_zero => IsCa::Ca(BasicConstraints::Constrained(0)),
            _ => IsCa::Ca(BasicConstraints::Unconstrained),
        }
    } else {
        IsCa::ExplicitNoCa
    };
    Ok(p)
}

/// Go `x509.KeyUsage` bits to rcgen purposes.
fn key_usages(bits: u32) -> Result<Vec<KeyUsagePurpose>, CaError> {
    const MAP: [(u32, KeyUsagePurpose); 9] = [
        (1, KeyUsagePurpose::DigitalSignature),
        (2, KeyUsagePurpose::ContentCommitment),
        (4, KeyUsagePurpose::KeyEncipherment),
        (8, KeyUsagePurpose::DataEncipherment),
        (16, KeyUsagePurpose::KeyAgreement),
        (32, KeyUsagePurpose::KeyCertSign),
        (64, KeyUsagePurpose::CrlSign),
        (128, KeyUsagePurpose::EncipherOnly),
        (256, KeyUsagePurpose::DecipherOnly),
    ];
    if bits >= 512 {
        return Err(CaError::InvalidSpec(format!(
            "KeyUsage {bits} has bits above DecipherOnly (256)"
        )));
    }
    Ok(MAP
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, p)| *p)
        .collect())
}

/// Go `x509.ExtKeyUsage` enum values to rcgen purposes.
fn ext_key_usage(v: u32) -> Result<ExtendedKeyUsagePurpose, CaError> {
    use ExtendedKeyUsagePurpose as E;
    Ok(match v {
        0 => E::Any,
        1 => E::ServerAuth,
        2 => E::ClientAuth,
        3 => E::CodeSigning,
        4 => E::EmailProtection,
        5 => E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5]),
        6 => E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6]),
        7 => E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7]),
        8 => E::TimeStamping,
        9 => E::OcspSigning,
        10 => E::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
        11 => E::Other(vec![2, 16, 840, 1, 113_730, 4, 1]),
        12 => E::Other(vec![1, 3, 6, 1, 4, 1, 311, 2, 1, 22]),
        13 => E::Other(vec![1, 3, 6, 1, 4, 1, 311, 61, 1, 1]),
        _ => {
            return Err(CaError::InvalidSpec(format!(
                "ExtKeyUsage {v} is not a Go x509.ExtKeyUsage value (0..=13)"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crypto::KeyType;
    use rcgen::PublicKeyData;
    use x509_parser::prelude::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn ca() -> CaBundle {
        CaBundle::generate(KeyType::P256, &["localhost".into()], now()).unwrap()
    }

    fn sans(c: &X509Certificate<'_>) -> Vec<String> {
        c.subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|g| match g {
                        GeneralName::DNSName(d) => format!("dns:{d}"),
                        GeneralName::IPAddress(o) => format!("ip:{o:?}"),
                        GeneralName::RFC822Name(e) => format!("email:{e}"),
                        GeneralName::URI(u) => format!("uri:{u}"),
                        o => format!("{o:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cn(c: &X509Certificate<'_>) -> String {
        c.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn defaults_follow_marblerun() {
        let ca = ca();
        let s =
            generate_cert_secret(&ca, &CertSecretSpec::new(CertKind::Ecdsa, 256), now()).unwrap();
        let der = s.cert.unwrap();
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cn(&c), "localhost");
        assert_eq!(
            sans(&c),
            vec![
                "dns:localhost".to_string(),
                format!("ip:{:?}", &[127u8, 0, 0, 1][..]),
                format!(
                    "ip:{:?}",
                    &[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]
                ),
            ]
        );
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_cert_sign());
        assert!(!ku.key_encipherment() && !ku.crl_sign());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
        assert!(!c.is_ca());
        assert_eq!(c.validity().not_before.timestamp(), now().unix_timestamp());
        assert_eq!(
            c.validity().not_after.timestamp(),
            (now() + ::time::Duration::days(365)).unix_timestamp()
        );
        let (_, int) = X509Certificate::from_der(&ca.intermediate_cert).unwrap();
        assert_eq!(c.issuer(), int.subject());
        c.verify_signature(Some(int.public_key())).unwrap();
        assert!(c.raw_serial().len() <= 16);
        assert_eq!(c.public_key().raw, &s.public[..]);
    }

    #[test]
    fn template_fields_are_applied() {
        let ca = ca();
        let mut spec = CertSecretSpec::new(CertKind::Ecdsa, 384);
        spec.dns_names = vec!["a.example".into(), "b.example".into()];
        spec.ip_addresses = vec!["192.168.0.1".parse().unwrap()];
        spec.email_addresses = vec!["ops@example.com".into()];
        spec.uris = vec!["spiffe://x/y".into()];
        spec.subject.organization = vec!["Acme".into()];
        spec.subject.country = vec!["DE".into()];
        spec.valid_for_days = Some(10);
        spec.key_usage = Some(1 | 4);
        spec.ext_key_usage = Some(vec![1, 3, 5]);
        spec.is_ca = true;
        spec.max_path_len = Some(0);
        spec.max_path_len_zero = true;
        let s = generate_cert_secret(&ca, &spec, now()).unwrap();
        let der = s.cert.unwrap();
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cn(&c), DEFAULT_SECRET_CN);
        assert_eq!(
            c.subject()
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "Acme"
        );
        assert_eq!(
            sans(&c),
            vec![
                "dns:a.example".to_string(),
                "dns:b.example".to_string(),
                format!("ip:{:?}", &[192u8, 168, 0, 1][..]),
                "email:ops@example.com".to_string(),
                "uri:spiffe://x/y".to_string(),
            ]
        );
        assert_eq!(
            c.validity().not_after.timestamp(),
            (now() + ::time::Duration::days(10)).unix_timestamp()
        );
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.code_signing && !eku.client_auth);
        assert_eq!(eku.other.len(), 1);
        let bc = c.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));

        // Explicit NotAfter and CN win.
        let mut spec = CertSecretSpec::new(CertKind::Ed25519, 0);
        let na = now() + ::time::Duration::days(3);
        spec.not_after = Some(na);
        spec.valid_for_days = Some(99);
        spec.subject.common_name = Some("named".into());
        let s = generate_cert_secret(&ca, &spec, now()).unwrap();
        let der = s.cert.unwrap();
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cn(&c), "named");
        assert_eq!(c.validity().not_after.timestamp(), na.unix_timestamp());
    }

    #[test]
    fn every_kind_and_size() {
        let ca = ca();
        let (_, int) = X509Certificate::from_der(&ca.intermediate_cert).unwrap();
        let cases: &[(CertKind, u64, &str)] = &[
            (CertKind::Rsa, 2048, "1.2.840.113549.1.1.1"),
            (CertKind::Rsa, 3072, "1.2.840.113549.1.1.1"),
            (CertKind::Rsa, 4096, "1.2.840.113549.1.1.1"),
            (CertKind::Rsa, 8192, "1.2.840.113549.1.1.1"),
            (CertKind::Ecdsa, 224, "1.3.132.0.33"),
            (CertKind::Ecdsa, 256, "1.2.840.10045.3.1.7"),
            (CertKind::Ecdsa, 384, "1.3.132.0.34"),
            (CertKind::Ecdsa, 521, "1.3.132.0.35"),
            (CertKind::Ed25519, 0, "1.3.101.112"),
        ];
        for (kind, size, oid) in cases {
            let s = generate_cert_secret(&ca, &CertSecretSpec::new(*kind, *size), now())
                .unwrap_or_else(|e| panic!("{kind:?} {size}: {e}"));
            let der = s.cert.unwrap();
            let (rest, c) = X509Certificate::from_der(&der).unwrap();
            assert!(rest.is_empty());
            c.verify_signature(Some(int.public_key()))
                .unwrap_or_else(|e| panic!("{kind:?} {size}: {e}"));
            assert_eq!(c.public_key().raw, &s.public[..], "{kind:?} {size}");
            let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&s.public).unwrap();
            let alg = spki.algorithm.algorithm.to_id_string();
            let param = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let got = if *kind == CertKind::Ecdsa {
                param.unwrap()
            } else {
                alg
            };
            assert_eq!(&got, oid, "{kind:?} {size}");
            if let x509_parser::public_key::PublicKey::RSA(rsa) = spki.parsed().unwrap() {
                assert_eq!(rsa.key_size() as u64, *size);
            }
            // The private key is PKCS#8 and matches the certificate.
            let pki = x509_parser::der_parser::parse_der(&s.private).unwrap().1;
            assert!(pki.as_sequence().unwrap().len() >= 3);
            match (kind, size) {
                (CertKind::Ecdsa, 224) => {
                    use p224::pkcs8::{DecodePrivateKey, EncodePublicKey};
                    let sk = p224::SecretKey::from_pkcs8_der(&s.private).unwrap();
                    let pk = sk.public_key().to_public_key_der().unwrap();
                    assert_eq!(pk.as_bytes(), &s.public[..]);
                }
                (CertKind::Ecdsa, _) | (CertKind::Rsa, _) | (CertKind::Ed25519, _) => {
                    let kp = rcgen::KeyPair::try_from(s.private.as_slice()).unwrap();
                    assert_eq!(kp.subject_public_key_info(), s.public);
                }
            }
        }
    }

    #[test]
    fn impossible_sizes_are_refused() {
        let ca = ca();
        for (kind, size) in [
            (CertKind::Rsa, 1024),
            (CertKind::Rsa, 2047),
            (CertKind::Ecdsa, 255),
            (CertKind::Ecdsa, 0),
            (CertKind::Ed25519, 256),
        ] {
            let err =
                generate_cert_secret(&ca, &CertSecretSpec::new(kind, size), now()).unwrap_err();
            assert!(matches!(err, CaError::InvalidSpec(_)), "{err:?}");
        }
        let mut spec = CertSecretSpec::new(CertKind::Ecdsa, 256);
        spec.ext_key_usage = Some(vec![99]);
        assert!(matches!(
            generate_cert_secret(&ca, &spec, now()).unwrap_err(),
            CaError::InvalidSpec(_)
        ));
        spec.ext_key_usage = None;
        spec.key_usage = Some(1024);
        assert!(matches!(
            generate_cert_secret(&ca, &spec, now()).unwrap_err(),
            CaError::InvalidSpec(_)
        ));
    }

    #[test]
    fn key_usage_bits_map() {
        assert_eq!(key_usages(0b1_1111_1111).unwrap().len(), 9);
        assert_eq!(
            key_usages(16 | 64).unwrap(),
            vec![KeyUsagePurpose::KeyAgreement, KeyUsagePurpose::CrlSign]
        );
    }
}
