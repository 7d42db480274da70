//! Test harness: in-process Coordinator on port 0 in simulation mode, an HTTPS client, and a
//! simulated marble (rcgen key + self-signed cert + CSR, sim quote, tonic over rustls).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use base64::Engine as _;
use cairn_api::rpc::marble_client::MarbleClient;
use cairn_api::rpc::{ActivationReq, ActivationResp};
use cairn_coordinator::{Config, Running};
use cairn_platform::{EnclaveIdentity, Issuer as _, SimPlatformDir};
use http_body_util::BodyExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests");

/// A Coordinator with its directories.
pub struct Coord {
    pub running: Running,
    pub dir: PathBuf,
    pub _tmp: Option<tempfile::TempDir>,
}

impl Coord {
    pub async fn start() -> Coord {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let running = start_in(&dir, &[]).await;
        Coord {
            running,
            dir,
            _tmp: Some(tmp),
        }
    }

    pub fn client(&self) -> SocketAddr {
        self.running.client_addr
    }

    pub fn mesh(&self) -> SocketAddr {
        self.running.mesh_addr
    }

    pub fn sim_dir(&self) -> PathBuf {
        self.dir.join("seal").join("sim")
    }

    pub fn sim(&self) -> SimPlatformDir {
        SimPlatformDir::open_or_create(&self.sim_dir()).unwrap()
    }

    /// Stops the servers but keeps the directories.
    pub async fn stop(self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.running.shutdown().await;
        (self.dir, self._tmp)
    }

    pub async fn restart(self, extra: &[&str]) -> Coord {
        let (dir, tmp) = self.stop().await;
        let running = start_in(&dir, extra).await;
        Coord {
            running,
            dir,
            _tmp: tmp,
        }
    }

    pub async fn set_manifest(&self, raw: &[u8]) -> Resp {
        let body = serde_json::json!({
            "manifest": base64::engine::general_purpose::STANDARD.encode(raw)
        });
        request(
            self.client(),
            "POST",
            "/api/v2/manifest",
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn status_code(&self) -> i64 {
        let r = request(self.client(), "GET", "/api/v2/status", None).await;
        r.json()["data"]["code"].as_i64().unwrap()
    }
}

pub async fn start_in(dir: &Path, extra: &[&str]) -> Running {
    let seal = dir.join("seal");
    let mut args: Vec<String> = vec![
        "cairn-coordinator".into(),
        "--client-addr".into(),
        "127.0.0.1:0".into(),
        "--mesh-addr".into(),
        "127.0.0.1:0".into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
        "--seal-dir".into(),
        seal.display().to_string(),
        "--simulation".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::parse(args, &BTreeMap::<String, String>::new()).unwrap();
    cairn_coordinator::start(&config).await.unwrap()
}

/// An HTTP response.
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Accepts any server certificate and records the presented chain.
#[derive(Debug, Default)]
pub struct Recorder {
    pub chain: Mutex<Vec<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut c = vec![end_entity.to_vec()];
        c.extend(intermediates.iter().map(|i| i.to_vec()));
        *self.chain.lock().unwrap() = c;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &cairn_crypto::provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &cairn_crypto::provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        cairn_crypto::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config(
    recorder: Arc<Recorder>,
    client_cert: Option<(&[u8], &[u8])>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder);
    let mut cfg = match client_cert {
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// One HTTPS/1.1 request to the client API.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<Vec<u8>>) -> Resp {
    request_with_chain(addr, method, path, body).await.0
}

/// Like [`request`], also returning the server's certificate chain.
pub async fn request_with_chain(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (Resp, Vec<Vec<u8>>) {
    let rec = Arc::new(Recorder::default());
    let connector = TlsConnector::from(client_config(rec.clone(), None, b"http/1.1"));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(http_body_util::Full::new(Bytes::from(
            body.unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let chain = rec.chain.lock().unwrap().clone();
    (
        Resp {
            status,
            content_type,
            body,
        },
        chain,
    )
}

/// Plain HTTP GET (metrics).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A simulated marble: P-256 key, self-signed certificate and CSR.
pub struct TestMarble {
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub csr_der: Vec<u8>,
}

impl TestMarble {
    pub fn new() -> TestMarble {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "marble.test".to_string()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "MarbleRun Marble");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        let csr = params.serialize_request(&key).unwrap();
        TestMarble {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            csr_der: csr.der().to_vec(),
        }
    }

    /// A sim quote for `id` over SHA-256(this marble's certificate).
    pub fn quote(&self, sim: &SimPlatformDir, id: &EnclaveIdentity) -> Vec<u8> {
        quote_over(sim, id, &self.cert_der)
    }
}

pub fn quote_over(sim: &SimPlatformDir, id: &EnclaveIdentity, cert_der: &[u8]) -> Vec<u8> {
    let report = cairn_crypto::sha256(cert_der);
    let raw = sim.issuer(id.clone()).quote(&report).unwrap();
    cairn_attest::oe::wrap(&raw)
}

pub const U: [u8; 32] = [0xaa; 32];
pub const V: [u8; 32] = [0xcc; 32];

/// A simulated identity with MRENCLAVE `mr_enclave` and the sim dir's signer.
pub fn identity(sim: &SimPlatformDir, mr_enclave: [u8; 32], debug: bool) -> EnclaveIdentity {
    EnclaveIdentity {
        mr_enclave,
        mr_signer: sim.signer_id(),
        isv_prod_id: 7,
        isv_svn: 3,
        debug,
    }
}

/// Calls `rpc.Marble/Activate` over TLS presenting `marble`'s certificate. Also returns the
/// chain the mesh server presented.
pub async fn activate(
    mesh: SocketAddr,
    marble: &TestMarble,
    marble_type: &str,
    uuid: &str,
    quote: Vec<u8>,
) -> (Result<ActivationResp, tonic::Status>, Vec<Vec<u8>>) {
    let rec = Arc::new(Recorder::default());
    let cfg = client_config(
        rec.clone(),
        Some((&marble.cert_der, &marble.key_der)),
        b"h2",
    );
    let connector = TlsConnector::from(cfg);
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(mesh).await?;
                let tls = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap();
    let req = ActivationReq {
        quote,
        csr: marble.csr_der.clone(),
        marble_type: marble_type.to_string(),
        uuid: uuid.to_string(),
    };
    let r = MarbleClient::new(channel)
        .activate(req)
        .await
        .map(|r| r.into_inner());
    let chain = rec.chain.lock().unwrap().clone();
    (r, chain)
}

pub fn env_str(resp: &ActivationResp, key: &str) -> String {
    let p = resp.parameters.as_ref().unwrap();
    String::from_utf8(
        p.env
            .get(key)
            .unwrap_or_else(|| panic!("env {key} missing"))
            .clone(),
    )
    .unwrap()
}

/// DER blocks of a PEM text.
pub fn pem_ders(pem_text: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut inside = false;
    for line in pem_text.lines() {
        if line.starts_with("-----BEGIN") {
            inside = true;
            cur.clear();
        } else if line.starts_with("-----END") {
            inside = false;
            out.push(
                base64::engine::general_purpose::STANDARD
                    .decode(&cur)
                    .unwrap(),
            );
        } else if inside {
            cur.push_str(line.trim());
        }
    }
    out
}
