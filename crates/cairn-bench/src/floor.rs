//! The crypto floor of one activation on this machine, as bare library calls on one thread:
//! marble key generation, leaf signing, quote verification and one TLS handshake (in memory,
//! both ends, mutual authentication as on the mesh API).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cairn_crypto::KeyType;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::evidence::{marble_keys, Evidence};

/// Mean time of each step, single thread.
#[derive(Debug, Clone)]
pub struct Floor {
    /// `cairn_crypto::generate_ecdsa_pkcs8(P256)`.
    pub keygen: Duration,
    /// `cairn_ca::LeafIssuer::issue` as activation runs it (parses and checks the CSR, generates
    /// the leaf key, signs): includes `keygen`.
    pub leaf: Duration,
    /// `cairn_attest::verify` of a simulated quote with the simulation root.
    pub verify: Duration,
    /// One TLS 1.3 handshake with client certificate, client and server side together.
    pub handshake: Duration,
}

impl Floor {
    /// Leaf issuance without the key generation it includes: CSR parse + signature check and
    /// the certificate signature.
    pub fn leaf_sign(&self) -> Duration {
        self.leaf.saturating_sub(self.keygen)
    }

    /// The CPU time one activation cannot go below: key generation, leaf signing, quote
    /// verification and the handshake (`leaf` already contains the key generation).
    pub fn total(&self) -> Duration {
        self.leaf + self.verify + self.handshake
    }
}

fn mean_of(iters: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    f()?; // warm-up
    let n = iters.max(1);
    let t = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(t.elapsed() / u32::try_from(n).unwrap_or(u32::MAX))
}

/// Measures each step `iters` times. `ev` supplies a quote the simulated platform of `sim`
/// issued (the one the running Coordinator trusts).
pub fn measure(
    sim: &cairn_platform::SimPlatformDir,
    ev: &Evidence,
    iters: usize,
) -> anyhow::Result<Floor> {
    let now = time::OffsetDateTime::now_utc();
    let keygen = mean_of(iters, || {
        cairn_crypto::generate_ecdsa_pkcs8(KeyType::P256)?;
        Ok(())
    })?;

    let ca = cairn_ca::CaBundle::generate(KeyType::P256, &["localhost".to_string()], now)?;
    let issuer = cairn_ca::LeafIssuer::new(&ca)?;
    let uuid = uuid::Uuid::nil();
    let leaf = mean_of(iters, || {
        issuer.issue(&ev.csr_der, &uuid, "m", now)?;
        Ok(())
    })?;

    let collateral = sim.collateral().context("simulated collateral")?;
    let root = sim.trust_root();
    let now_unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let verify = mean_of(iters, || {
        cairn_attest::verify(&ev.quote, &collateral, now_unix, &root)?;
        Ok(())
    })?;

    let (server, client) = handshake_configs()?;
    let handshake = mean_of(iters, || handshake_once(&server, &client))?;
    Ok(Floor {
        keygen,
        leaf,
        verify,
        handshake,
    })
}

/// Server config with a P-256 certificate requiring a client certificate, and a client config
/// presenting one; both with the workspace's crypto provider and ALPN h2.
fn handshake_configs() -> anyhow::Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>)> {
    let server_keys = marble_keys()?;
    let client_keys = marble_keys()?;
    let mut server = rustls::ServerConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AnyClient::default()))
        .with_single_cert(
            vec![CertificateDer::from(server_keys.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_keys.key_der)),
        )?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let client =
        crate::client::client_config(Some((&client_keys.cert_der, &client_keys.key_der)), b"h2")?;
    Ok((Arc::new(server), client))
}

fn handshake_once(
    server_cfg: &Arc<rustls::ServerConfig>,
    client_cfg: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<()> {
    let mut client = rustls::Connection::Client(rustls::ClientConnection::new(
        client_cfg.clone(),
        ServerName::try_from("localhost")?,
    )?);
    let mut server = rustls::Connection::Server(rustls::ServerConnection::new(server_cfg.clone())?);
    // A TLS 1.3 handshake with client auth needs two round trips; 8 is a safe bound.
    for _ in 0..8 {
        pump(&mut client, &mut server)?;
        pump(&mut server, &mut client)?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    bail!("in-memory TLS handshake did not complete")
}

fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf)?;
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd)?;
        to.process_new_packets()?;
    }
    Ok(())
}

/// Accepts any client certificate, checking only the handshake signature (as the mesh API).
#[derive(Debug)]
struct AnyClient {
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl Default for AnyClient {
    fn default() -> Self {
        AnyClient {
            algs: cairn_crypto::provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
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
