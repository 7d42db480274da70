//! Server certificate verifiers for the Coordinator mesh connection.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::*;

/// Verifies the Coordinator's mesh certificate against a pinned Coordinator root.
///
/// Invariant: a handshake succeeds only if the end-entity certificate is the pinned root itself or
/// is directly signed by it (and names the server), and the peer proves possession of its key.
#[derive(Debug)]
pub(crate) struct PinnedRootVerifier {
    root_der: Vec<u8>,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl PinnedRootVerifier {
    pub(crate) fn new(root_der: Vec<u8>, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(root_der.clone()))
            .map_err(|e| format!("the Coordinator root certificate is not usable: {e}"))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("building the certificate verifier: {e}"))?;
        Ok(PinnedRootVerifier {
            root_der,
            webpki,
            provider,
        })
    }

    /// One-hop check used when webpki refuses the chain only because the Coordinator presents its
    /// intermediate CA certificate as the end entity (webpki does not accept CA end entities).
    fn direct_check(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), String> {
        let (_, root) = X509Certificate::from_der(&self.root_der)
            .map_err(|e| format!("cannot parse the pinned root: {e}"))?;
        let (_, ee) = X509Certificate::from_der(end_entity.as_ref())
            .map_err(|e| format!("cannot parse the server certificate: {e}"))?;
        if end_entity.as_ref() != self.root_der.as_slice() {
            if ee.issuer().as_raw() != root.subject().as_raw() {
                return Err(
                    "the server certificate was not issued by the pinned Coordinator root".into(),
                );
            }
            ee.verify_signature(Some(root.public_key())).map_err(|_| {
                "the server certificate is not signed by the pinned Coordinator root".to_string()
            })?;
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = ee.validity();
        if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
            return Err("the server certificate is outside its validity period".into());
        }
        if !names_match(&ee, server_name) {
            return Err(format!(
                "the server certificate is not valid for {}",
                server_name.to_str()
            ));
        }
        Ok(())
    }
}

fn names_match(cert: &X509Certificate<'_>, name: &ServerName<'_>) -> bool {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|g| match (g, name) {
        (GeneralName::DNSName(d), ServerName::DnsName(n)) => d.eq_ignore_ascii_case(n.as_ref()),
        (GeneralName::IPAddress(b), ServerName::IpAddress(ip)) => {
            let want: std::net::IpAddr = (*ip).into();
            match want {
                std::net::IpAddr::V4(v4) => *b == v4.octets().as_slice(),
                std::net::IpAddr::V6(v6) => *b == v6.octets().as_slice(),
            }
        }
        _ => false,
    })
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(webpki_err) => match self.direct_check(end_entity, server_name, now) {
                Ok(()) => Ok(ServerCertVerified::assertion()),
                Err(detail) => {
                    tracing::error!(%detail, webpki = %webpki_err, "Coordinator certificate refused");
                    Err(TlsError::General(format!(
                        "Coordinator certificate does not chain to the pinned root: {detail}"
                    )))
                }
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts any Coordinator certificate (MarbleRun behaviour, used only when no root is pinned;
/// the caller logs a warning). Handshake signatures are still checked.
#[derive(Debug)]
pub(crate) struct AcceptAnyVerifier {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyVerifier {
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> Self {
        AcceptAnyVerifier { provider }
    }
}

impl ServerCertVerifier for AcceptAnyVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
