//! The activation identity: a fresh P-256 key, a self-signed certificate (the TLS client
//! certificate the quote binds) and a CSR with the same key and SANs.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use cairn_crypto::Zeroizing;

use crate::MarbleError;

/// Subject CN of the activation certificate (MarbleRun's).
pub const ACTIVATION_CN: &str = "MarbleRun Marble";

/// The key, self-signed certificate and CSR a marble activates with.
pub struct ActivationIdentity {
    cert_der: Vec<u8>,
    csr_der: Vec<u8>,
    key_pkcs8: Zeroizing<Vec<u8>>,
    sans: Vec<String>,
}

impl std::fmt::Debug for ActivationIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationIdentity")
            .field("sans", &self.sans)
            .finish_non_exhaustive()
    }
}

impl ActivationIdentity {
    /// Generate a new identity. SANs: `dns_names` (IP literals become IP SANs) plus 127.0.0.1 and ::1.
    pub fn generate(dns_names: &[String]) -> Result<ActivationIdentity, MarbleError> {
        let sans = san_list(dns_names);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| MarbleError::Cert(format!("generating the activation key: {e}")))?;
        let mut params = CertificateParams::new(sans.clone()).map_err(|e| {
            MarbleError::Cert(format!("invalid DNS name in EDG_MARBLE_DNS_NAMES: {e}"))
        })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ACTIVATION_CN);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(9999, 12, 31);
        let cert = params.self_signed(&key).map_err(|e| {
            MarbleError::Cert(format!("self-signing the activation certificate: {e}"))
        })?;
        let csr = params
            .serialize_request(&key)
            .map_err(|e| MarbleError::Cert(format!("building the CSR: {e}")))?;
        Ok(ActivationIdentity {
            cert_der: cert.der().to_vec(),
            csr_der: csr.der().to_vec(),
            key_pkcs8: Zeroizing::new(key.serialize_der()),
            sans,
        })
    }

    /// DER of the self-signed certificate.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// DER of the CSR.
    pub fn csr_der(&self) -> &[u8] {
        &self.csr_der
    }

    /// The SAN entries used (names, then 127.0.0.1 and ::1).
    pub fn sans(&self) -> &[String] {
        &self.sans
    }

    /// The quote's report data: SHA-256 of the certificate DER.
    pub fn report_data(&self) -> [u8; 32] {
        cairn_crypto::sha256(&self.cert_der)
    }

    /// Client certificate chain and key for rustls.
    pub(crate) fn rustls_identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![CertificateDer::from(self.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.to_vec())),
        )
    }
}

fn san_list(dns_names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in dns_names
        .iter()
        .map(|s| s.trim().to_string())
        .chain(["127.0.0.1".to_string(), "::1".to_string()])
    {
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use x509_parser::prelude::*;

    use super::*;

    #[test]
    fn cert_and_csr_share_key_and_sans() {
        let id =
            ActivationIdentity::generate(&["web".into(), "10.1.2.3".into(), "localhost".into()])
                .unwrap();
        assert_eq!(
            id.sans(),
            ["web", "10.1.2.3", "localhost", "127.0.0.1", "::1"]
        );
        let (_, cert) = X509Certificate::from_der(id.cert_der()).unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            ACTIVATION_CN
        );
        cert.verify_signature(None).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let mut dns = vec![];
        let mut ips = vec![];
        for n in &san.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                    _ => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                }),
                _ => panic!("unexpected SAN"),
            }
        }
        assert_eq!(dns, ["web", "localhost"]);
        assert_eq!(
            ips,
            [
                "10.1.2.3".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        let (_, csr) = X509CertificationRequest::from_der(id.csr_der()).unwrap();
        csr.verify_signature().unwrap();
        assert_eq!(
            csr.certification_request_info.subject_pki.raw,
            cert.public_key().raw
        );
        assert_eq!(id.report_data(), cairn_crypto::sha256(id.cert_der()));
    }

    #[test]
    fn debug_does_not_print_key() {
        let id = ActivationIdentity::generate(&["localhost".into()]).unwrap();
        let s = format!("{id:?}");
        assert!(!s.contains("key"), "{s}");
    }
}
