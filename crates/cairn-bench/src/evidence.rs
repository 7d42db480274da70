//! Client-side evidence of a simulated marble, prepared before anything is timed: P-256 key,
//! self-signed certificate, CSR, a simulated quote over SHA-256(certificate) and a fresh UUID.

use anyhow::Context as _;
use cairn_platform::{EnclaveIdentity, Issuer as _, SimPlatformDir};

/// Everything one activation sends.
#[derive(Clone)]
pub struct Evidence {
    /// Self-signed TLS client certificate (DER).
    pub cert_der: Vec<u8>,
    /// Its PKCS#8 private key (DER).
    pub key_der: Vec<u8>,
    /// CSR signed by the same key (DER).
    pub csr_der: Vec<u8>,
    /// OE-wrapped simulated quote whose report data is SHA-256(`cert_der`).
    pub quote: Vec<u8>,
    /// Random UUID (hyphenated).
    pub uuid: String,
}

/// Key, self-signed certificate and CSR of a simulated marble.
pub struct MarbleKeys {
    /// Certificate DER.
    pub cert_der: Vec<u8>,
    /// PKCS#8 key DER.
    pub key_der: Vec<u8>,
    /// CSR DER.
    pub csr_der: Vec<u8>,
}

/// A fresh P-256 marble identity (the subject and SANs a MarbleRun marble sends).
pub fn marble_keys() -> anyhow::Result<MarbleKeys> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "MarbleRun Marble");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    let cert = params.self_signed(&key)?;
    let csr = params.serialize_request(&key)?;
    Ok(MarbleKeys {
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        csr_der: csr.der().to_vec(),
    })
}

/// The identity of the simulated marbles: MRENCLAVE `mr_enclave`, the sim dir's signer.
pub fn sim_identity(sim: &SimPlatformDir, mr_enclave: [u8; 32]) -> EnclaveIdentity {
    EnclaveIdentity {
        mr_enclave,
        mr_signer: sim.signer_id(),
        isv_prod_id: 1,
        isv_svn: 1,
        debug: false,
    }
}

/// A random hyphenated UUID.
pub fn random_uuid() -> anyhow::Result<String> {
    let b = cairn_crypto::random_bytes(16)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(&b);
    Ok(uuid::Builder::from_random_bytes(a)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// One complete evidence set for `id`.
pub fn evidence(sim: &SimPlatformDir, id: &EnclaveIdentity) -> anyhow::Result<Evidence> {
    let k = marble_keys()?;
    let report = cairn_crypto::sha256(&k.cert_der);
    let raw = sim
        .issuer(id.clone())
        .quote(&report)
        .context("simulated quote")?;
    Ok(Evidence {
        quote: cairn_attest::oe::wrap(&raw),
        cert_der: k.cert_der,
        key_der: k.key_der,
        csr_der: k.csr_der,
        uuid: random_uuid()?,
    })
}

/// `n` evidence sets built on `threads` threads.
pub fn prepare(
    sim: &SimPlatformDir,
    id: &EnclaveIdentity,
    n: usize,
    threads: usize,
) -> anyhow::Result<Vec<Evidence>> {
    let threads = threads.clamp(1, 64);
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                s.spawn(move || (0..count).map(|_| evidence(sim, id)).collect::<Vec<_>>())
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            let part = h
                .join()
                .map_err(|_| anyhow::anyhow!("evidence worker panicked"))?;
            for e in part {
                out.push(e?);
            }
        }
        Ok(out)
    })
}
