//! Test PKI shaped like a Coordinator's: root, intermediate, marble root (intermediate's
//! self-signed twin) and marble leaves. Shared by unit tests (via `#[path]`) and the integration test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::HashMap;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

pub struct Deployment {
    pub root_der: Vec<u8>,
    pub root_pem: String,
    pub intermediate_der: Vec<u8>,
    pub intermediate_pem: String,
    pub intermediate_key_pem: String,
    pub marble_root_pem: String,
    intermediate_params: CertificateParams,
    intermediate_key: KeyPair,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p
}

impl Deployment {
    pub fn new() -> Deployment {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = ca_params("MarbleRun Coordinator");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::from_params(&root_params, &root_key);

        let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let intermediate_params = ca_params("MarbleRun Coordinator - Intermediate CA");
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .unwrap();
        let marble_root = intermediate_params.self_signed(&intermediate_key).unwrap();
        Deployment {
            root_der: root.der().to_vec(),
            root_pem: root.pem(),
            intermediate_der: intermediate.der().to_vec(),
            intermediate_pem: intermediate.pem(),
            intermediate_key_pem: intermediate_key.serialize_pem(),
            marble_root_pem: marble_root.pem(),
            intermediate_params,
            intermediate_key,
        }
    }

    /// A marble leaf (cert PEM, key PEM) signed with the intermediate key.
    pub fn leaf(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::from_params(&self.intermediate_params, &self.intermediate_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The `MARBLE_PREDEFINED_*` variables the Coordinator would set for a marble.
    pub fn marble_env(&self, cn: &str) -> HashMap<String, String> {
        let (cert, key) = self.leaf(cn);
        let mut env = HashMap::new();
        env.insert(
            "MARBLE_PREDEFINED_ROOT_CA".into(),
            self.marble_root_pem.clone(),
        );
        env.insert(
            "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN".into(),
            format!("{cert}{}", self.intermediate_pem),
        );
        env.insert("MARBLE_PREDEFINED_PRIVATE_KEY".into(), key);
        env.insert(
            "MARBLE_PREDEFINED_COORDINATOR_ROOT_CA".into(),
            self.root_pem.clone(),
        );
        env
    }
}
