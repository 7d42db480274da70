//! [`MarbleTls`]: rustls configs for marble-to-marble mutual TLS from `MARBLE_PREDEFINED_*`.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{EnvSource, ProcessEnv};
use crate::env_names;
use crate::MarbleError;

/// A marble's mesh identity: its certificate chain and key, and the marble root it trusts.
pub struct MarbleTls {
    marble_root: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    coordinator_root: Option<CertificateDer<'static>>,
}

impl std::fmt::Debug for MarbleTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarbleTls")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl MarbleTls {
    /// Build from a map holding `MARBLE_PREDEFINED_ROOT_CA`, `_MARBLE_CERTIFICATE_CHAIN` and
    /// `_PRIVATE_KEY` (and optionally `_COORDINATOR_ROOT_CA`).
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<MarbleTls, MarbleError> {
        Self::from_source(env)
    }

    /// Build from the process environment (as set by `cairn-premain`).
    pub fn from_process_env() -> Result<MarbleTls, MarbleError> {
        Self::from_source(&ProcessEnv)
    }

    /// Build from any [`EnvSource`].
    pub fn from_source(src: &dyn EnvSource) -> Result<MarbleTls, MarbleError> {
        let need = |k: &str| {
            src.get(k).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                MarbleError::Config(format!(
                    "{k} is not set: start this program through cairn-premain (or set the \
                     MARBLE_PREDEFINED_* variables from an activation)"
                ))
            })
        };
        let root_pem = need(env_names::ROOT_CA)?;
        let chain_pem = need(env_names::CERT_CHAIN)?;
        let key_pem = need(env_names::PRIVATE_KEY)?;

        let marble_root = certs(env_names::ROOT_CA, &root_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| no_cert(env_names::ROOT_CA))?;
        let chain = certs(env_names::CERT_CHAIN, &chain_pem)?;
        if chain.is_empty() {
            return Err(no_cert(env_names::CERT_CHAIN));
        }
        // The error deliberately omits the parser's detail and the value: it is key material.
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
            MarbleError::Cert(format!(
                "{} holds no readable PEM private key",
                env_names::PRIVATE_KEY
            ))
        })?;
        let coordinator_root = match src
            .get(env_names::COORDINATOR_ROOT_CA)
            .filter(|v| !v.trim().is_empty())
        {
            Some(pem) => certs(env_names::COORDINATOR_ROOT_CA, &pem)?
                .into_iter()
                .next(),
            None => None,
        };
        Ok(MarbleTls {
            marble_root,
            chain,
            key,
            coordinator_root,
        })
    }

    /// DER of this marble's leaf certificate.
    pub fn leaf_der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }

    /// DER of the marble root this marble trusts.
    pub fn marble_root_der(&self) -> &[u8] {
        self.marble_root.as_ref()
    }

    /// DER of the Coordinator root, when it was given.
    pub fn coordinator_root_der(&self) -> Option<&[u8]> {
        self.coordinator_root.as_ref().map(|c| c.as_ref())
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, MarbleError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.marble_root.clone())
            .map_err(|e| MarbleError::Cert(format!("{}: {e}", env_names::ROOT_CA)))?;
        Ok(Arc::new(roots))
    }

    /// Server config presenting this marble's chain and **requiring** a client certificate that
    /// chains to the marble root.
    ///
    /// Invariant: only peers holding a marble leaf of the current marble root complete the handshake.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, MarbleError> {
        let provider = cairn_crypto::provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| MarbleError::Cert(format!("client verifier: {e}")))?;
        let cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| MarbleError::Cert(format!("TLS setup: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| MarbleError::Cert(format!("marble certificate/key: {e}")))?;
        Ok(Arc::new(cfg))
    }

    /// Client config trusting only the marble root and presenting this marble's chain.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, MarbleError> {
        let provider = cairn_crypto::provider();
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| MarbleError::Cert(format!("TLS setup: {e}")))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| MarbleError::Cert(format!("marble certificate/key: {e}")))?;
        Ok(Arc::new(cfg))
    }
}

fn certs(var: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, MarbleError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MarbleError::Cert(format!("{var}: {e}")))
}

fn no_cert(var: &str) -> MarbleError {
    MarbleError::Cert(format!("{var} holds no CERTIFICATE PEM block"))
}

#[cfg(test)]
#[path = "../tests/support/pki.rs"]
mod testpki;

#[cfg(test)]
mod tests {
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::testpki::Deployment;
    use super::*;

    /// Serve one connection with `server`, connect with `client`; Ok(echo) when both handshakes pass.
    async fn exchange(server: &MarbleTls, client: &MarbleTls) -> Result<Vec<u8>, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server.server_config().unwrap());
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            tls.write_all(&buf).await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        });
        let connector = TlsConnector::from(client.client_config().unwrap());
        let tcp = TcpStream::connect(addr).await.unwrap();
        let res = async {
            let mut tls = connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut out = vec![0u8; 4];
            tls.read_exact(&mut out).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(out)
        }
        .await;
        let srv_res = srv.await.unwrap();
        match (res, srv_res) {
            (Ok(out), Ok(())) => Ok(out),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    #[tokio::test]
    async fn mutual_tls_between_marbles_of_one_deployment() {
        let d = Deployment::new();
        let a = MarbleTls::from_env_map(&d.marble_env("a")).unwrap();
        let b = MarbleTls::from_env_map(&d.marble_env("b")).unwrap();
        assert!(a.coordinator_root_der().is_some());
        assert_eq!(exchange(&a, &b).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn marbles_of_different_roots_cannot_talk() {
        // Same as after a SecurityVersion update: the intermediate / marble root changed.
        let old = Deployment::new();
        let new = Deployment::new();
        let a = MarbleTls::from_env_map(&old.marble_env("a")).unwrap();
        let b = MarbleTls::from_env_map(&new.marble_env("b")).unwrap();
        assert!(exchange(&a, &b).await.is_err());
        assert!(exchange(&b, &a).await.is_err());
    }

    #[tokio::test]
    async fn client_without_certificate_is_refused() {
        let d = Deployment::new();
        let server = MarbleTls::from_env_map(&d.marble_env("s")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server.server_config().unwrap());
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.is_ok()
        });
        let mut roots = RootCertStore::empty();
        roots.add(server.marble_root.clone()).unwrap();
        let cfg = ClientConfig::builder_with_provider(cairn_crypto::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut c = TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        // TLS 1.3: the client learns about the refusal on its first read.
        let _ = c.write_all(b"x").await;
        let mut buf = [0u8; 1];
        let read = c.read(&mut buf).await;
        assert!(!srv.await.unwrap());
        assert!(!matches!(read, Ok(1)));
    }

    #[test]
    fn missing_variables_are_named_and_keys_never_echoed() {
        let d = Deployment::new();
        let mut env = d.marble_env("a");
        env.remove(env_names::CERT_CHAIN);
        let e = MarbleTls::from_env_map(&env).unwrap_err().to_string();
        assert!(
            e.contains("MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN"),
            "{e}"
        );
        assert!(e.contains("cairn-premain"), "{e}");

        let mut env = d.marble_env("a");
        env.insert(
            env_names::PRIVATE_KEY.into(),
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n".into(),
        );
        // a malformed key either fails to parse or fails to match the certificate
        let err = MarbleTls::from_env_map(&env).and_then(|t| t.server_config().map(|_| ()));
        let e = err.unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
}
