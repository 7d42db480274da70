//! rustls server configurations for the client API and the mesh API, with a client-certificate
//! verifier that accepts any certificate but checks the handshake signature.

use std::sync::Arc;

use anyhow::Context;
use cairn_ca::CaBundle;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// Accepts any client certificate without chain verification (users are matched byte for byte,
/// marbles are bound by their quote) while still requiring proof of possession of its key.
#[derive(Debug)]
pub struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    /// `mandatory`: the handshake fails without a client certificate.
    pub fn new(mandatory: bool) -> Self {
        AnyClientCert {
            mandatory,
            algs: cairn_crypto::provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Invariant: no trust is derived from the chain itself; the handshake signature below
        // proves possession of the end-entity key, which is all later checks rely on.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Client API: root certificate + root key, optional client certificates, h2 and http/1.1.
pub fn client_api_config(ca: &CaBundle) -> anyhow::Result<Arc<ServerConfig>> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.root_key.to_vec()));
    let mut cfg = ServerConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(false)))
        .with_single_cert(vec![CertificateDer::from(ca.root_cert.clone())], key)
        .context("client API certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Mesh API: intermediate + root chain with the intermediate key, client certificate required.
pub fn mesh_config(ca: &CaBundle) -> anyhow::Result<Arc<ServerConfig>> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.intermediate_key.to_vec()));
    let chain = vec![
        CertificateDer::from(ca.intermediate_cert.clone()),
        CertificateDer::from(ca.root_cert.clone()),
    ];
    let mut cfg = ServerConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(true)))
        .with_single_cert(chain, key)
        .context("mesh certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
