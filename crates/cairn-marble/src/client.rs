//! Activation client: TLS to the Coordinator mesh API and `rpc.Marble/Activate`.

use std::sync::Arc;
use std::time::Duration;

use cairn_api::rpc::{marble_client::MarbleClient, ActivationReq, Parameters};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Endpoint, Uri};
use uuid::Uuid;

use crate::identity::ActivationIdentity;
use crate::verifier::{AcceptAnyVerifier, PinnedRootVerifier};
use crate::MarbleError;

/// Default mesh port when the address has none.
pub const DEFAULT_MESH_PORT: u16 = 2001;

/// How the marble authenticates the Coordinator's mesh certificate.
#[derive(Clone)]
pub enum CoordinatorTrust {
    /// Only a certificate that is, or is signed by, this Coordinator root (DER) is accepted.
    PinnedRoot(Vec<u8>),
    /// Any certificate is accepted (MarbleRun behaviour); callers log a warning.
    AcceptAny,
}

impl std::fmt::Debug for CoordinatorTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoordinatorTrust::PinnedRoot(der) => {
                write!(
                    f,
                    "PinnedRoot(sha256:{})",
                    hex_lower(&cairn_crypto::sha256(der))
                )
            }
            CoordinatorTrust::AcceptAny => f.write_str("AcceptAny"),
        }
    }
}

impl CoordinatorTrust {
    /// Pin the root from PEM text. With several certificates (a chain file: intermediate, then
    /// root) the last one is the root.
    pub fn from_pem(pem: &[u8]) -> Result<CoordinatorTrust, MarbleError> {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| MarbleError::Cert(format!("Coordinator root PEM: {e}")))?;
        let root = certs.last().ok_or_else(|| {
            MarbleError::Cert("Coordinator root PEM holds no CERTIFICATE block".into())
        })?;
        Ok(CoordinatorTrust::PinnedRoot(root.to_vec()))
    }

    /// SHA-256 of the pinned root, hex (for logs).
    pub fn fingerprint(&self) -> Option<String> {
        match self {
            CoordinatorTrust::PinnedRoot(der) => Some(hex_lower(&cairn_crypto::sha256(der))),
            CoordinatorTrust::AcceptAny => None,
        }
    }
}

/// Retry schedule for activation while the Coordinator is unreachable or not accepting marbles.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub initial_delay: Duration,
    /// Upper bound of the doubling delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// A successful activation.
#[derive(Debug, Clone)]
pub struct ActivationOutcome {
    /// Files, Env and Argv from the Coordinator.
    pub parameters: Parameters,
    /// Attempts it took.
    pub attempts: u32,
}

/// Split `host:port` (`[v6]:port` for IPv6). A missing port defaults to 2001.
pub fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("empty address; expected HOST:PORT, e.g. localhost:2001".into());
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("{addr:?}: missing ']' in IPv6 address"))?;
        match tail {
            "" => (h, None),
            t => (
                h,
                Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| format!("{addr:?}: expected ':PORT' after ']'"))?,
                ),
            ),
        }
    } else if addr.matches(':').count() > 1 {
        // bare IPv6 literal without a port
        (addr, None)
    } else {
        match addr.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (addr, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{addr:?}: missing host; expected HOST:PORT"));
    }
    let port = match port {
        None => DEFAULT_MESH_PORT,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{addr:?}: port {p:?} is not a number 0-65535"))?,
    };
    Ok((host.to_string(), port))
}

/// Build the client TLS config for the mesh connection: client certificate = the activation
/// certificate, ALPN h2, and the Coordinator verified per `trust`.
pub fn mesh_client_config(
    identity: &ActivationIdentity,
    trust: &CoordinatorTrust,
) -> Result<ClientConfig, MarbleError> {
    let provider = cairn_crypto::provider();
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match trust {
        CoordinatorTrust::PinnedRoot(root) => Arc::new(
            PinnedRootVerifier::new(root.clone(), provider.clone()).map_err(MarbleError::Cert)?,
        ),
        CoordinatorTrust::AcceptAny => Arc::new(AcceptAnyVerifier::new(provider.clone())),
    };
    let (chain, key) = identity.rustls_identity();
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MarbleError::Cert(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| MarbleError::Cert(format!("TLS client certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

#[derive(Debug)]
enum ConnectError {
    Tcp(std::io::Error),
    Tls(std::io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "TCP connect failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// One activation attempt: connect, call `Activate`, return the parameters.
pub async fn activate(
    addr: &str,
    trust: &CoordinatorTrust,
    identity: &ActivationIdentity,
    quote: &[u8],
    marble_type: &str,
    uuid: &Uuid,
) -> Result<Parameters, MarbleError> {
    let (host, port) = split_host_port(addr).map_err(MarbleError::Config)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| MarbleError::Config(format!("Coordinator host {host:?}: {e}")))?;
    let tls = TlsConnector::from(Arc::new(mesh_client_config(identity, trust)?));
    let connect_to = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let connector = {
        let connect_to = connect_to.clone();
        tower::service_fn(move |_uri: Uri| {
            let tls = tls.clone();
            let name = server_name.clone();
            let connect_to = connect_to.clone();
            async move {
                let tcp = TcpStream::connect(&connect_to)
                    .await
                    .map_err(ConnectError::Tcp)?;
                let stream = tls.connect(name, tcp).await.map_err(ConnectError::Tls)?;
                Ok::<_, ConnectError>(TokioIo::new(stream))
            }
        })
    };
    let endpoint = Endpoint::from_shared(format!("http://{connect_to}"))
        .map_err(|e| MarbleError::Config(format!("Coordinator address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| classify_connect_error(addr, &e))?;
    let mut client = MarbleClient::new(channel);
    let req = ActivationReq {
        quote: quote.to_vec(),
        csr: identity.csr_der().to_vec(),
        marble_type: marble_type.to_string(),
        uuid: uuid.hyphenated().to_string(),
    };
    let resp = client
        .activate(req)
        .await
        .map_err(|s| MarbleError::Rejected {
            code: s.code(),
            message: s.message().to_string(),
        })?
        .into_inner();
    resp.parameters
        .ok_or_else(|| MarbleError::BadResponse("the Coordinator returned no Parameters".into()))
}

/// [`activate`] with bounded retries while [`MarbleError::is_retryable`]; each retry is logged.
pub async fn activate_with_retry(
    addr: &str,
    trust: &CoordinatorTrust,
    identity: &ActivationIdentity,
    quote: &[u8],
    marble_type: &str,
    uuid: &Uuid,
    policy: &RetryPolicy,
) -> Result<ActivationOutcome, MarbleError> {
    let max = policy.max_attempts.max(1);
    let mut delay = policy.initial_delay;
    let mut attempt = 1;
    loop {
        match activate(addr, trust, identity, quote, marble_type, uuid).await {
            Ok(parameters) => {
                return Ok(ActivationOutcome {
                    parameters,
                    attempts: attempt,
                })
            }
            Err(e) if e.is_retryable() && attempt < max => {
                tracing::warn!(
                    attempt,
                    max_attempts = max,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "activation not possible yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(policy.max_delay);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn classify_connect_error(addr: &str, err: &tonic::transport::Error) -> MarbleError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = src {
        if let Some(ce) = e.downcast_ref::<ConnectError>() {
            return match ce {
                ConnectError::Tcp(io) => MarbleError::Unreachable {
                    addr: addr.to_string(),
                    detail: io.to_string(),
                },
                ConnectError::Tls(io) => {
                    let is_tls_protocol = io
                        .get_ref()
                        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
                    if is_tls_protocol {
                        MarbleError::Tls {
                            addr: addr.to_string(),
                            detail: io.to_string(),
                        }
                    } else {
                        // EOF / reset during the handshake: the Coordinator is (re)starting.
                        MarbleError::Unreachable {
                            addr: addr.to_string(),
                            detail: format!("TLS handshake interrupted: {io}"),
                        }
                    }
                }
            };
        }
        src = e.source();
    }
    MarbleError::Unreachable {
        addr: addr.to_string(),
        detail: error_chain(err),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("localhost:2001").unwrap(),
            ("localhost".into(), 2001)
        );
        assert_eq!(split_host_port("coord").unwrap(), ("coord".into(), 2001));
        assert_eq!(split_host_port("[::1]:3000").unwrap(), ("::1".into(), 3000));
        assert_eq!(split_host_port("[::1]").unwrap(), ("::1".into(), 2001));
        assert_eq!(split_host_port("::1").unwrap(), ("::1".into(), 2001));
        assert_eq!(
            split_host_port("10.0.0.1:1").unwrap(),
            ("10.0.0.1".into(), 1)
        );
        assert!(split_host_port("").is_err());
        assert!(split_host_port(":2001").is_err());
        assert!(split_host_port("h:x").is_err());
        assert!(split_host_port("[::1]x").is_err());
    }

    #[test]
    fn retryable_classification() {
        let r = |code| MarbleError::Rejected {
            code,
            message: String::new(),
        };
        assert!(r(tonic::Code::Unavailable).is_retryable());
        assert!(r(tonic::Code::FailedPrecondition).is_retryable());
        assert!(!r(tonic::Code::PermissionDenied).is_retryable());
        assert!(MarbleError::Unreachable {
            addr: "a".into(),
            detail: "d".into()
        }
        .is_retryable());
        assert!(!MarbleError::Tls {
            addr: "a".into(),
            detail: "d".into()
        }
        .is_retryable());
    }

    #[tokio::test]
    async fn unreachable_coordinator_is_retried_then_reported() {
        // Bind then drop to get a closed loopback port.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let id = ActivationIdentity::generate(&["localhost".into()]).unwrap();
        let policy = RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        };
        let e = activate_with_retry(
            &format!("127.0.0.1:{port}"),
            &CoordinatorTrust::AcceptAny,
            &id,
            b"",
            "m",
            &Uuid::new_v4(),
            &policy,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, MarbleError::Unreachable { .. }), "{e}");
    }
}
