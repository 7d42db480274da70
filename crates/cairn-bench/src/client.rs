//! Loopback clients of a Coordinator: HTTPS requests to the client API and `rpc.Marble/Activate`
//! over TLS + gRPC to the mesh API, one fresh connection per call (what a starting marble does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use base64::Engine as _;
use cairn_api::rpc::marble_client::MarbleClient;
use cairn_api::rpc::{ActivationReq, ActivationResp};
use http_body_util::BodyExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::evidence::Evidence;

/// Deadline for one whole request or activation (connect, handshake, call).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts any server certificate while still checking the handshake signature with the
/// presented key.
///
/// Deliberately insecure: the bench and the tests measure and probe a Coordinator they just
/// started on loopback, and the Coordinator's client API presents its self-signed ROOT as the
/// end-entity certificate, which webpki refuses. Trust in the Coordinator is not what is
/// measured here; the TLS work (handshake, signature check) is the same as with pinning.
#[derive(Debug)]
pub struct AnyServerCert {
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl Default for AnyServerCert {
    fn default() -> Self {
        AnyServerCert {
            algs: cairn_crypto::provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

/// A rustls client configuration trusting any server certificate (see [`AnyServerCert`]),
/// optionally presenting `client_cert` (certificate DER, PKCS#8 key DER), offering `alpn`.
pub fn client_config(
    client_cert: Option<(&[u8], &[u8])>,
    alpn: &[u8],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert::default()));
    let mut cfg = match client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from(cert.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
        )?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(cfg))
}

/// An HTTP response: status and body.
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTPS/1.1 request to the client API at `addr` on a fresh connection.
pub async fn https_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Resp> {
    https_request_as(addr, None, method, path, body).await
}

/// Like [`https_request`], presenting `client_cert` (certificate DER, PKCS#8 key DER): the
/// way a manifest user authenticates.
pub async fn https_request_as(
    addr: SocketAddr,
    client_cert: Option<(&[u8], &[u8])>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Resp> {
    let cfg = client_config(client_cert, b"http/1.1")?;
    tokio::time::timeout(
        CALL_TIMEOUT,
        https_request_inner(addr, cfg, method, path, body),
    )
    .await
    .map_err(|_| anyhow!("{method} {path} to {addr} timed out after {CALL_TIMEOUT:?}"))?
}

async fn https_request_inner(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Resp> {
    let connector = TlsConnector::from(cfg);
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake with the client API")?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            body.unwrap_or_default(),
        )))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    Ok(Resp { status, body })
}

/// `GET /api/v2/status` → the state code (`data.code`).
pub async fn status_code(addr: SocketAddr) -> anyhow::Result<i64> {
    let r = https_request(addr, "GET", "/api/v2/status", None).await?;
    let v = r.json()?;
    v["data"]["code"]
        .as_i64()
        .ok_or_else(|| anyhow!("status {} without data.code: {v}", r.status))
}

/// `GET /api/v2/quote` → the PEM text of `data.cert` (root first).
pub async fn quote_cert(addr: SocketAddr) -> anyhow::Result<String> {
    let r = https_request(addr, "GET", "/api/v2/quote", None).await?;
    let v = r.json()?;
    v["data"]["cert"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("quote response {} without data.cert: {v}", r.status))
}

/// `POST /api/v2/manifest` with `raw` base64-encoded.
pub async fn set_manifest(addr: SocketAddr, raw: &[u8]) -> anyhow::Result<Resp> {
    let body = serde_json::json!({
        "manifest": base64::engine::general_purpose::STANDARD.encode(raw)
    });
    https_request(
        addr,
        "POST",
        "/api/v2/manifest",
        Some(body.to_string().into_bytes()),
    )
    .await
}

/// A manifest with one package `p` (UniqueID `mr_enclave`) and one marble type `m` allowed
/// `max_activations` activations (0: unlimited, nothing is persisted per activation).
pub fn manifest_json(mr_enclave: &[u8; 32], max_activations: u64) -> String {
    format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p","MaxActivations":{max_activations}}}}}}}"#,
        hex::encode(mr_enclave)
    )
}

/// Outcome of one activation: `Err` for transport failures (connect, TLS, HTTP/2), `Ok(Err)`
/// for a gRPC status the Coordinator answered.
pub type ActivationResult = anyhow::Result<Result<ActivationResp, tonic::Status>>;

/// `rpc.Marble/Activate` for marble type `marble_type` with `ev`, on a fresh TLS connection to
/// `mesh` presenting `ev`'s certificate.
pub async fn activate(mesh: SocketAddr, ev: &Evidence, marble_type: &str) -> ActivationResult {
    let req = ActivationReq {
        quote: ev.quote.clone(),
        csr: ev.csr_der.clone(),
        marble_type: marble_type.to_string(),
        uuid: ev.uuid.clone(),
    };
    activate_raw(mesh, &ev.cert_der, &ev.key_der, req).await
}

/// Like [`activate`] with an arbitrary request (hostile tests send malformed quotes).
pub async fn activate_raw(
    mesh: SocketAddr,
    cert_der: &[u8],
    key_der: &[u8],
    req: ActivationReq,
) -> ActivationResult {
    let cfg = client_config(Some((cert_der, key_der)), b"h2")?;
    tokio::time::timeout(CALL_TIMEOUT, activate_inner(mesh, cfg, req))
        .await
        .map_err(|_| anyhow!("activation at {mesh} timed out after {CALL_TIMEOUT:?}"))?
}

async fn activate_inner(
    mesh: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    req: ActivationReq,
) -> ActivationResult {
    let connector = TlsConnector::from(cfg);
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(mesh).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from("localhost")
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .with_context(|| format!("connecting to the mesh API at {mesh}"))?;
    match MarbleClient::new(channel).activate(req).await {
        Ok(r) => Ok(Ok(r.into_inner())),
        // tonic reports transport failures as statuses carrying the transport error as their
        // source (or as Unavailable); a status the Coordinator sent has no source.
        Err(s)
            if s.code() == tonic::Code::Unavailable || std::error::Error::source(&s).is_some() =>
        {
            Err(anyhow!("transport: {s}"))
        }
        Err(s) => Ok(Err(s)),
    }
}

/// What a raw gRPC call got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcRaw {
    /// HTTP/2 status.
    pub http_status: u16,
    /// `grpc-status` (headers of a trailers-only answer, or trailers).
    pub grpc_status: Option<String>,
    /// `grpc-message`.
    pub grpc_message: Option<String>,
}

/// POSTs `body` as is (a gRPC frame, well-formed or not) to `path` on the mesh API over TLS +
/// HTTP/2, presenting `cert_der`/`key_der`. Hostile-input tests send garbage messages this way.
pub async fn grpc_raw(
    mesh: SocketAddr,
    cert_der: &[u8],
    key_der: &[u8],
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<GrpcRaw> {
    let cfg = client_config(Some((cert_der, key_der)), b"h2")?;
    tokio::time::timeout(CALL_TIMEOUT, grpc_raw_inner(mesh, cfg, path, body))
        .await
        .map_err(|_| anyhow!("gRPC {path} at {mesh} timed out after {CALL_TIMEOUT:?}"))?
}

async fn grpc_raw_inner(
    mesh: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<GrpcRaw> {
    let tcp = TcpStream::connect(mesh)
        .await
        .with_context(|| format!("connecting to {mesh}"))?;
    let tls = TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake with the mesh API")?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    let http_status = resp.status().as_u16();
    let header =
        |h: &http::HeaderMap, k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (mut grpc_status, mut grpc_message) = (
        header(resp.headers(), "grpc-status"),
        header(resp.headers(), "grpc-message"),
    );
    let collected = resp.into_body().collect().await?;
    if let Some(t) = collected.trailers() {
        grpc_status = grpc_status.or_else(|| header(t, "grpc-status"));
        grpc_message = grpc_message.or_else(|| header(t, "grpc-message"));
    }
    Ok(GrpcRaw {
        http_status,
        grpc_status,
        grpc_message,
    })
}

/// PEM text of the DER blocks' contents, decoded (certificate chains in env values).
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
            if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(&cur) {
                out.push(d);
            }
        } else if inside {
            cur.push_str(line.trim());
        }
    }
    out
}
