//! Marble leaf certificates: subject and SANs from a verified CSR, a key pair generated here.

use std::fmt;
use std::net::IpAddr;

use ::time::OffsetDateTime;
use cairn_crypto::{KeyType, Zeroizing};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use x509_parser::prelude::*;

use crate::{far_future, intermediate_issuer, random_serial, signing_alg, CaBundle, CaError};

/// A marble's certificate and the private key the Coordinator generated for it.
#[derive(Clone)]
pub struct MarbleLeaf {
    /// Leaf certificate DER, issued by the intermediate / marble root.
    pub cert: Vec<u8>,
    /// The leaf's private key, PKCS#8 DER (same curve as the CA).
    pub key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for MarbleLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarbleLeaf")
            .field("cert_len", &self.cert.len())
            .finish_non_exhaustive()
    }
}

/// Issues a marble certificate for an activation (parses the CA key each call; an activation
/// path issuing many leaves keeps a [`LeafIssuer`]).
///
/// The CSR's signature must verify with the CSR's own public key (proof of possession of the
/// activation key); that key is not certified: a fresh key pair of the bundle's curve is. The
/// subject is the CSR's with CN replaced by `uuid`; DNS and IP SANs are copied from the CSR;
/// extension [`crate::MARBLE_TYPE_OID`] carries the raw bytes of `marble_type`.
pub fn issue_marble_leaf(
    ca: &CaBundle,
    csr_der: &[u8],
    uuid: &uuid::Uuid,
    marble_type: &str,
    now: OffsetDateTime,
) -> Result<MarbleLeaf, CaError> {
    LeafIssuer::new(ca)?.issue(csr_der, uuid, marble_type, now)
}

/// The intermediate CA key and certificate parsed once, for issuing many marble leaves.
pub struct LeafIssuer {
    key_type: KeyType,
    intermediate_cert: Vec<u8>,
    intermediate_key: Zeroizing<Vec<u8>>,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl fmt::Debug for LeafIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafIssuer")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl LeafIssuer {
    /// Parses the bundle's intermediate key and certificate.
    pub fn new(ca: &CaBundle) -> Result<Self, CaError> {
        Ok(LeafIssuer {
            key_type: ca.key_type,
            intermediate_cert: ca.intermediate_cert.clone(),
            intermediate_key: ca.intermediate_key.clone(),
            issuer: intermediate_issuer(ca)?,
        })
    }

    /// Whether this issuer holds exactly `ca`'s current intermediate key and certificate (a
    /// rotation replaces both).
    pub fn is_for(&self, ca: &CaBundle) -> bool {
        self.key_type == ca.key_type
            && self.intermediate_cert == ca.intermediate_cert
            && *self.intermediate_key == *ca.intermediate_key
    }

    /// [`issue_marble_leaf`] with the parsed intermediate.
    pub fn issue(
        &self,
        csr_der: &[u8],
        uuid: &uuid::Uuid,
        marble_type: &str,
        now: OffsetDateTime,
    ) -> Result<MarbleLeaf, CaError> {
        let (rest, csr) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| CaError::CsrParse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CaError::CsrParse("trailing bytes after the request".into()));
        }
        // Invariant: the CSR signature verifies against the SPKI inside the same CSR.
        csr.verify_signature().map_err(|_| CaError::CsrSignature)?;

        let info = &csr.certification_request_info;
        let mut dn = subject_without_cn(&info.subject)?;
        dn.push(DnType::CommonName, uuid.hyphenated().to_string());

        let mut sans = Vec::new();
        if let Some(exts) = csr.requested_extensions() {
            for ext in exts {
                if let ParsedExtension::SubjectAlternativeName(san) = ext {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => {
                                sans.push(SanType::DnsName((*d).try_into().map_err(|e| {
                                    CaError::CsrParse(format!("DNS SAN {d:?}: {e}"))
                                })?))
                            }
                            GeneralName::IPAddress(octets) => {
                                sans.push(SanType::IpAddress(ip_from_octets(octets)?))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }

        // The leaf key is generated as an rcgen key pair (aws-lc-rs) and exported, instead of
        // generated as PKCS#8 and parsed back.
        let kp = KeyPair::generate_for(signing_alg(self.key_type))?;
        let key = Zeroizing::new(kp.serialize_der());

        let mut p = CertificateParams::default();
        p.distinguished_name = dn;
        p.serial_number = Some(random_serial()?);
        p.not_before = now;
        p.not_after = far_future();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.subject_alt_names = sans;
        let mut ext = CustomExtension::from_oid_content(
            crate::MARBLE_TYPE_OID,
            marble_type.as_bytes().to_vec(),
        );
        ext.set_criticality(false);
        p.custom_extensions = vec![ext];

        let cert = p.signed_by(&kp, &self.issuer)?.der().to_vec();
        Ok(MarbleLeaf { cert, key })
    }
}

/// The CSR subject as an rcgen name, without its common name(s).
fn subject_without_cn(name: &X509Name<'_>) -> Result<DistinguishedName, CaError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        for attr in rdn.iter() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| CaError::CsrParse("subject attribute OID too large".into()))?
                .collect();
            let ty = DnType::from_oid(&oid);
            if ty == DnType::CommonName {
                continue;
            }
            let value = attr.attr_value();
            let text = std::str::from_utf8(value.data)
                .map_err(|_| CaError::CsrParse(format!("subject attribute {oid:?} is not text")))?;
            let dv = match value.header.tag() {
                Tag::PrintableString => DnValue::PrintableString(
                    text.try_into()
                        .map_err(|e| CaError::CsrParse(format!("subject attribute: {e}")))?,
                ),
                _ => DnValue::Utf8String(text.to_owned()),
            };
            dn.push(ty, dv);
        }
    }
    Ok(dn)
}

fn ip_from_octets(o: &[u8]) -> Result<IpAddr, CaError> {
    if let Ok(v4) = <[u8; 4]>::try_from(o) {
        Ok(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(o) {
        Ok(IpAddr::from(v6))
    } else {
        Err(CaError::CsrParse(format!(
            "IP SAN of {} bytes is neither IPv4 nor IPv6",
            o.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_pair;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn csr(sans: Vec<String>, org: Option<&str>) -> (Vec<u8>, rcgen::KeyPair) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        let mut dn = DistinguishedName::new();
        if let Some(o) = org {
            dn.push(DnType::OrganizationName, o);
        }
        dn.push(DnType::CommonName, "from-csr");
        p.distinguished_name = dn;
        let der = p.serialize_request(&kp).unwrap().der().to_vec();
        (der, kp)
    }

    #[test]
    fn leaf_fields() {
        for kt in [KeyType::P256, KeyType::P384] {
            let ca = CaBundle::generate(kt, &["localhost".into()], now()).unwrap();
            let (der, csr_kp) = csr(
                vec!["backend.local".into(), "10.9.8.7".into(), "::2".into()],
                Some("Acme"),
            );
            let id = uuid::Uuid::new_v4();
            let leaf = issue_marble_leaf(&ca, &der, &id, "backend", now()).unwrap();
            let (_, c) = X509Certificate::from_der(&leaf.cert).unwrap();
            let cn: Vec<_> = c
                .subject()
                .iter_common_name()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(cn, vec![id.to_string()]);
            let org: Vec<_> = c
                .subject()
                .iter_organization()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(org, vec!["Acme"]);
            let (_, int) = X509Certificate::from_der(&ca.intermediate_cert).unwrap();
            assert_eq!(c.issuer(), int.subject());
            assert!(!c.is_ca());
            let bc = c.basic_constraints().unwrap().unwrap().value;
            assert!(!bc.ca);
            let ku = c.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature() && ku.key_agreement());
            assert!(!ku.key_cert_sign());
            let eku = c.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && eku.client_auth);
            let ext = c
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "1.3.9903.2.1")
                .unwrap();
            assert!(!ext.critical);
            assert_eq!(ext.value, b"backend");
            let san = c.subject_alternative_name().unwrap().unwrap().value;
            let names: Vec<String> = san
                .general_names
                .iter()
                .map(|g| match g {
                    GeneralName::DNSName(d) => format!("dns:{d}"),
                    GeneralName::IPAddress(ip) => format!("ip:{}", ip_from_octets(ip).unwrap()),
                    o => format!("{o:?}"),
                })
                .collect();
            assert_eq!(names, vec!["dns:backend.local", "ip:10.9.8.7", "ip:::2"]);
            // The CSR key is not reused.
            assert_ne!(
                c.public_key().subject_public_key.data.as_ref(),
                csr_kp.public_key_raw()
            );
            let kp = key_pair(kt, &leaf.key).unwrap();
            assert_eq!(
                c.public_key().subject_public_key.data.as_ref(),
                kp.public_key_raw()
            );
            assert_eq!(c.validity().not_before.timestamp(), now().unix_timestamp());
            // Signed by the intermediate key.
            let (_, mr) = X509Certificate::from_der(&ca.marble_root_cert).unwrap();
            c.verify_signature(Some(mr.public_key())).unwrap();
            c.verify_signature(Some(int.public_key())).unwrap();
        }
    }

    #[test]
    fn leaf_issuer_is_for_its_intermediate_only() {
        let mut ca = CaBundle::generate(KeyType::P256, &[], now()).unwrap();
        let issuer = LeafIssuer::new(&ca).unwrap();
        assert!(issuer.is_for(&ca));
        let (der, _) = csr(vec!["a.example".into()], None);
        let leaf = issuer.issue(&der, &uuid::Uuid::nil(), "t", now()).unwrap();
        let (_, int) = X509Certificate::from_der(&ca.intermediate_cert).unwrap();
        let (_, c) = X509Certificate::from_der(&leaf.cert).unwrap();
        c.verify_signature(Some(int.public_key())).unwrap();

        ca.rotate_intermediate(now()).unwrap();
        assert!(!issuer.is_for(&ca));
        let (_, rotated) = X509Certificate::from_der(&ca.intermediate_cert).unwrap();
        assert!(c.verify_signature(Some(rotated.public_key())).is_err());
        let mut other_curve = ca.clone();
        other_curve.key_type = KeyType::P384;
        assert!(!LeafIssuer::new(&ca).unwrap().is_for(&other_curve));
    }

    #[test]
    fn tampered_csr_is_rejected() {
        let ca = CaBundle::generate(KeyType::P256, &[], now()).unwrap();
        let (mut der, _) = csr(vec!["a.example".into()], None);
        // Flip a byte inside the DNS name (covered by the signature).
        let pos = der.windows(9).position(|w| w == b"a.example").unwrap();
        der[pos] ^= 0x01;
        let err = issue_marble_leaf(&ca, &der, &uuid::Uuid::nil(), "t", now()).unwrap_err();
        assert!(matches!(err, CaError::CsrSignature), "{err:?}");
        let err = issue_marble_leaf(&ca, b"junk", &uuid::Uuid::nil(), "t", now()).unwrap_err();
        assert!(matches!(err, CaError::CsrParse(_)), "{err:?}");
    }

    #[test]
    fn csr_without_sans_gives_leaf_without_sans() {
        let ca = CaBundle::generate(KeyType::P256, &[], now()).unwrap();
        let (der, _) = csr(vec![], None);
        let leaf = issue_marble_leaf(&ca, &der, &uuid::Uuid::nil(), "", now()).unwrap();
        let (_, c) = X509Certificate::from_der(&leaf.cert).unwrap();
        assert!(c.subject_alternative_name().unwrap().is_none());
        let ext = c
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.9903.2.1")
            .unwrap();
        assert!(ext.value.is_empty());
    }
}
