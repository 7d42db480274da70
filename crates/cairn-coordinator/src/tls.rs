//! rustls server configurations for the client API and the mesh API, with a client-certificate
//! verifier that accepts any certificate but checks the handshake signature.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use cairn_ca::CaBundle;
use cairn_core::CoordinatorCore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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
/// The certificate is resolved per handshake from the core, so the original root is served
/// again as soon as a recovery replaced the temporary one.
pub fn client_api_config(core: Arc<CoordinatorCore>) -> anyhow::Result<Arc<ServerConfig>> {
    let resolver = MeshCertResolver::with(core, root_certified_key)?;
    let mut cfg = ServerConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(false)))
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Mesh API: intermediate + root chain with the intermediate key, client certificate required.
/// The certificate is resolved per handshake from the core, so a rotated intermediate (package
/// or full manifest update) is presented without a restart.
pub fn mesh_config(core: Arc<CoordinatorCore>) -> anyhow::Result<Arc<ServerConfig>> {
    let resolver = MeshCertResolver::new(core)?;
    let mut cfg = ServerConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(true)))
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves the core's current intermediate + root chain (or, for the client API, the root);
/// rebuilt when the core's CA epoch moves.
pub struct MeshCertResolver {
    core: Arc<CoordinatorCore>,
    current: RwLock<(u64, Arc<CertifiedKey>)>,
    build: fn(&CaBundle) -> anyhow::Result<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for MeshCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCertResolver").finish_non_exhaustive()
    }
}

impl MeshCertResolver {
    /// A resolver starting with the core's current CA.
    pub fn new(core: Arc<CoordinatorCore>) -> anyhow::Result<Self> {
        Self::with(core, mesh_certified_key)
    }

    /// A resolver presenting what `build` makes of the core's current CA.
    pub fn with(
        core: Arc<CoordinatorCore>,
        build: fn(&CaBundle) -> anyhow::Result<Arc<CertifiedKey>>,
    ) -> anyhow::Result<Self> {
        let epoch = core.ca_epoch();
        let key = build(&core.ca_bundle().context("reading the CA")?)?;
        Ok(MeshCertResolver {
            core,
            current: RwLock::new((epoch, key)),
            build,
        })
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let epoch = self.core.ca_epoch();
        if let Ok(g) = self.current.read() {
            if g.0 == epoch {
                return Some(g.1.clone());
            }
        }
        // Epoch read before the bundle: a rotation racing with this rebuild only causes one
        // more rebuild on the next handshake, never a stale cert cached under the new epoch.
        let rebuilt = self
            .core
            .ca_bundle()
            .map_err(|e| e.to_string())
            .and_then(|ca| (self.build)(&ca).map_err(|e| e.to_string()));
        match rebuilt {
            Ok(key) => {
                if let Ok(mut g) = self.current.write() {
                    *g = (epoch, key.clone());
                }
                Some(key)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build the mesh certificate; keeping the previous one");
                self.current.read().ok().map(|g| g.1.clone())
            }
        }
    }
}

impl ResolvesServerCert for MeshCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

fn root_certified_key(ca: &CaBundle) -> anyhow::Result<Arc<CertifiedKey>> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.root_key.to_vec()));
    let signer = cairn_crypto::provider()
        .key_provider
        .load_private_key(key)
        .context("client API certificate key")?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(ca.root_cert.clone())],
        signer,
    )))
}

fn mesh_certified_key(ca: &CaBundle) -> anyhow::Result<Arc<CertifiedKey>> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.intermediate_key.to_vec()));
    let chain = vec![
        CertificateDer::from(ca.intermediate_cert.clone()),
        CertificateDer::from(ca.root_cert.clone()),
    ];
    let signer = cairn_crypto::provider()
        .key_provider
        .load_private_key(key)
        .context("mesh certificate key")?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}
