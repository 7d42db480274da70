//! HTTPS to the Coordinator client API (hyper http1 over tokio-rustls) and JSend parsing.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Default client API port.
pub(crate) const DEFAULT_CLIENT_PORT: u16 = 4433;
const MAX_RESPONSE: usize = 64 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the Coordinator's TLS certificate is checked.
#[derive(Clone)]
pub(crate) enum ServerTrust {
    /// No check (used to fetch the quote before attestation, and under `--insecure`).
    Unverified,
    /// Only the given Coordinator root (DER), or a certificate it signed, is accepted.
    Pinned(Vec<u8>),
}

/// A JSend `fail`/`error` answer or an unexpected HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) http_status: u16,
    pub(crate) message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "the Coordinator answered HTTP {}", self.http_status)
        } else {
            write!(
                f,
                "the Coordinator answered HTTP {}: {}",
                self.http_status, self.message
            )
        }
    }
}

impl std::error::Error for ApiError {}

/// The user's TLS client identity (`--cert`/`--key`): the first certificate is what the
/// Coordinator compares with the manifest's users.
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// Where they came from, for error messages.
    pub(crate) source: String,
}

/// A client for one Coordinator address.
pub(crate) struct Client {
    connect_to: String,
    host_header: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

/// Split `HOST:PORT` (an `https://` prefix and a trailing `/` are tolerated; the default port is 4433).
pub(crate) fn parse_addr(addr: &str) -> anyhow::Result<(String, u16)> {
    let a = addr.trim();
    let a = a.strip_prefix("https://").unwrap_or(a);
    let a = a.trim_end_matches('/');
    if a.is_empty() || a.contains('/') {
        anyhow::bail!("{addr:?} is not HOST:PORT (e.g. localhost:4433)");
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| anyhow::anyhow!("{addr:?}: missing ']'"))?;
        (h.to_string(), tail.strip_prefix(':'))
    } else if a.matches(':').count() > 1 {
        (a.to_string(), None)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (a.to_string(), None),
        }
    };
    if host.is_empty() {
        anyhow::bail!("{addr:?}: missing host (expected HOST:PORT, e.g. localhost:4433)");
    }
    let port = match port {
        None | Some("") => DEFAULT_CLIENT_PORT,
        Some(p) => p
            .parse()
            .map_err(|_| anyhow::anyhow!("{addr:?}: port {p:?} is not a number 0-65535"))?,
    };
    Ok((host, port))
}

impl Client {
    pub(crate) fn new(addr: &str, trust: &ServerTrust) -> anyhow::Result<Client> {
        Client::with_identity(addr, trust, None)
    }

    /// A client that presents `identity` as its TLS client certificate (user authentication).
    pub(crate) fn with_identity(
        addr: &str,
        trust: &ServerTrust,
        identity: Option<Identity>,
    ) -> anyhow::Result<Client> {
        let (host, port) = parse_addr(addr)?;
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| anyhow::anyhow!("{host:?} is not a valid host name: {e}"))?;
        let (connect_to, host_header) = if host.contains(':') {
            (format!("[{host}]:{port}"), format!("[{host}]:{port}"))
        } else {
            (format!("{host}:{port}"), format!("{host}:{port}"))
        };
        let provider = cairn_crypto::provider();
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(Verifier {
            pinned: match trust {
                ServerTrust::Unverified => None,
                ServerTrust::Pinned(root) => Some(root.clone()),
            },
            provider: provider.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut cfg = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
                        "{}: the private key does not belong to the certificate",
                        id.source
                    ),
                    e => anyhow::anyhow!("{}: unusable client identity: {e}", id.source),
                })?,
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            connect_to,
            host_header,
            server_name,
            tls: TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// One request; returns HTTP status and body.
    pub(crate) async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        tokio::time::timeout(TIMEOUT, self.request_inner(method, path, body))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer from the Coordinator at {} within {}s",
                    self.connect_to,
                    TIMEOUT.as_secs()
                )
            })?
    }

    async fn request_inner(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let tcp = TcpStream::connect(&self.connect_to).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the Coordinator at {}: {e} (is it running? is the address the client API, default port 4433?)",
                self.connect_to
            )
        })?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "TLS connection to {} failed: {e} (if the Coordinator was re-created, run `cairn verify` again)",
                    self.connect_to
                )
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host_header)
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the Coordinator's answer: {e}"))?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }

    /// Request and unwrap a JSend `success` envelope into `T` (`null` data → `None`).
    pub(crate) async fn jsend<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Option<T>> {
        let (status, bytes) = self.request(method, path, body).await?;
        parse_jsend(status, &bytes)
    }
}

/// Unwrap a JSend envelope; `fail`/`error` and non-200 statuses become [`ApiError`].
pub(crate) fn parse_jsend<T: DeserializeOwned>(
    status: u16,
    bytes: &[u8],
) -> anyhow::Result<Option<T>> {
    let env: Result<serde_json::Value, _> = serde_json::from_slice(bytes);
    let Ok(env) = env else {
        let text = String::from_utf8_lossy(bytes);
        return Err(ApiError {
            http_status: status,
            message: text.trim().chars().take(300).collect(),
        }
        .into());
    };
    let st = env.get("status").and_then(|s| s.as_str()).unwrap_or("");
    let message = env
        .get("message")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .to_string();
    if status != 200 || st != "success" {
        return Err(ApiError {
            http_status: status,
            message,
        }
        .into());
    }
    match env.get("data") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(d) => Ok(Some(serde_json::from_value(d.clone()).map_err(|e| {
            anyhow::anyhow!("unexpected answer from the Coordinator: {e}")
        })?)),
    }
}

/// Verifier: with a pin, the server certificate must be the pinned root itself or be directly
/// signed by it; without, anything goes. Handshake signatures are always checked.
///
/// Invariant: with a pin, only a server holding the pinned root's key (or a key it certified)
/// completes the handshake.
#[derive(Debug)]
struct Verifier {
    pinned: Option<Vec<u8>>,
    provider: Arc<CryptoProvider>,
}

fn signed_by_root(ee: &[u8], root: &[u8]) -> bool {
    use x509_parser::prelude::*;
    let (Ok((_, ee)), Ok((_, root))) = (
        X509Certificate::from_der(ee),
        X509Certificate::from_der(root),
    ) else {
        return false;
    };
    ee.issuer().as_raw() == root.subject().as_raw()
        && ee.verify_signature(Some(root.public_key())).is_ok()
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            None => Ok(ServerCertVerified::assertion()),
            Some(root) if end_entity.as_ref() == root.as_slice() => {
                Ok(ServerCertVerified::assertion())
            }
            Some(root) if signed_by_root(end_entity.as_ref(), root) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(
                "the Coordinator's certificate is not the attested/cached root".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr("localhost:4433").unwrap(),
            ("localhost".into(), 4433)
        );
        assert_eq!(
            parse_addr("https://c.example/").unwrap(),
            ("c.example".into(), 4433)
        );
        assert_eq!(parse_addr("[::1]:1").unwrap(), ("::1".into(), 1));
        assert!(parse_addr("h:x").is_err());
        assert!(parse_addr("").is_err());
        assert!(parse_addr("h:1/api").is_err());
    }

    #[test]
    fn jsend_envelopes() {
        #[derive(Debug, serde::Deserialize)]
        struct S {
            code: i32,
        }
        let ok: Option<S> = parse_jsend(
            200,
            br#"{"status":"success","data":{"code":3,"message":"m"}}"#,
        )
        .unwrap();
        assert_eq!(ok.unwrap().code, 3);
        let null: Option<S> = parse_jsend(200, br#"{"status":"success","data":null}"#).unwrap();
        assert!(null.is_none());
        let e = parse_jsend::<S>(
            500,
            b"{\"status\":\"error\",\"data\":null,\"message\":\"no manifest\"}\n",
        )
        .unwrap_err();
        let api = e.downcast_ref::<ApiError>().unwrap();
        assert_eq!(api.http_status, 500);
        assert_eq!(api.message, "no manifest");
        let e = parse_jsend::<S>(405, b"").unwrap_err();
        assert_eq!(e.downcast_ref::<ApiError>().unwrap().http_status, 405);
    }
}
