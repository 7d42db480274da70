//! HA mode (`--store etcd`): the shared state in etcd, instance-to-instance key sharing over
//! mutual TLS on `--peer-addr`, the peer registry and the state watcher. The decisions (who
//! may receive the key, which key opens the state, reloads) are cairn-core's (`ha.rs`); this
//! module only moves bytes.
//!
//! Peer protocol, one exchange per TLS connection (both sides present a fresh self-signed
//! P-256 certificate; frames are a u32 big-endian length and at most [`MAX_FRAME`] bytes):
//! 1. server → client: the server's quote over SHA-256(server certificate DER);
//! 2. client → server: the client's quote over SHA-256(client certificate DER);
//! 3. server → client: `0x00 ‖ KEK(32)` when the client passed the server's policy, otherwise
//!    `0x01 ‖ UTF-8 reason`.
//!
//! The client verifies the server's quote before it sends anything and installs the KEK only
//! when it opens the shared state. Registry: `/cairn/peers` holds a JSON list of advertised
//! peer addresses, updated by compare-and-swap. Presence: every instance keeps
//! `/cairn/instances/<random id>` = `{"addr", "ready"}` under an etcd lease of [`PRESENCE_TTL`],
//! rewritten every [`BEAT`] and when its readiness changes (`ready`: it holds a state key that
//! opens the shared state); a stopped instance's key vanishes when its lease expires. A manual
//! recovery is refused while another instance is present and ready (cairn-core's
//! `check_manual_recovery`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn_core::{CoordinatorCore, HaConfig, PeerDirectory, PeerRole};
use cairn_crypto::SecretKey32;
use cairn_store::{EtcdConfig, EtcdPersistence, FilePersistence, Persistence};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, EtcdOptions};

/// etcd key of the peer registry.
pub const PEERS_KEY: &str = "/cairn/peers";
/// etcd prefix of the presence keys (one per running instance, leased).
pub const INSTANCES_PREFIX: &str = "/cairn/instances/";
/// Lifetime of a presence key after its last refresh: how long a stopped instance still counts
/// as serving.
pub const PRESENCE_TTL: Duration = Duration::from_secs(8);
/// How often the presence key is refreshed.
const BEAT: Duration = Duration::from_secs(2);
/// Largest frame accepted on the peer port.
pub const MAX_FRAME: usize = 64 * 1024;
/// Directory under the seal dir holding this instance's sealed KEK.
pub const KEK_DIR: &str = "kek";
/// At most this many addresses are kept in the registry (oldest dropped).
const MAX_PEERS: usize = 32;
/// Bound of one peer exchange.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an instance without the KEK asks the peers, and how often state is re-read when
/// the watch is silent.
const POLL: Duration = Duration::from_secs(1);

/// The etcd-backed pieces of an HA instance.
pub struct HaStore {
    /// The shared state key.
    pub state: Arc<EtcdPersistence>,
    /// The peer registry key.
    pub peers: Arc<EtcdPersistence>,
    /// The core's HA settings (KEK sealed in `<seal-dir>/kek`, the presence directory).
    pub core: HaConfig,
    /// This process's presence key (`/cairn/instances/<random id>`).
    pub presence_key: String,
}

impl HaStore {
    /// Opens the etcd keys (no network traffic yet) and the local KEK store.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let base = etcd_config(&config.etcd)?;
        let state = EtcdPersistence::new(base.clone()).context("opening the etcd store")?;
        let mut peers_cfg = base;
        peers_cfg.key = PEERS_KEY.to_owned();
        let peers = EtcdPersistence::new(peers_cfg).context("opening the etcd peer registry")?;
        let kek_dir = config.seal_dir.join(KEK_DIR);
        let kek_store = FilePersistence::new(&kek_dir)
            .with_context(|| format!("opening the KEK store {}", kek_dir.display()))?;
        let id = cairn_crypto::random_bytes(8).context("random instance id")?;
        let presence_key = format!("{INSTANCES_PREFIX}{}", hex::encode(id));
        let peers = Arc::new(peers);
        let directory = EtcdDirectory {
            store: peers.clone(),
            own_key: presence_key.clone(),
        };
        Ok(HaStore {
            state: Arc::new(state),
            peers,
            core: HaConfig {
                kek_store: Arc::new(kek_store),
                peers: Some(Arc::new(directory)),
            },
            presence_key,
        })
    }
}

/// The presence keys in etcd, as cairn-core's [`PeerDirectory`].
struct EtcdDirectory {
    store: Arc<EtcdPersistence>,
    own_key: String,
}

impl PeerDirectory for EtcdDirectory {
    fn ready_peers(&self) -> Result<Vec<String>, String> {
        let entries = self
            .store
            .list_prefix(INSTANCES_PREFIX)
            .map_err(|e| e.to_string())?;
        Ok(ready_others(&entries, &self.own_key))
    }
}

/// The presence value of an instance.
pub fn presence_value(addr: &str, ready: bool) -> Vec<u8> {
    serde_json::json!({ "addr": addr, "ready": ready })
        .to_string()
        .into_bytes()
}

/// Addresses of the ready instances among presence `entries`, except `own_key`. An unreadable
/// value counts as a ready instance of unknown address: refusing a recovery is the safe side.
pub fn ready_others(entries: &[(String, Vec<u8>)], own_key: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|(k, _)| k != own_key)
        .filter_map(
            |(k, v)| match serde_json::from_slice::<serde_json::Value>(v) {
                Ok(j) if j.get("ready").and_then(serde_json::Value::as_bool) == Some(false) => None,
                Ok(j) => Some(
                    j.get("addr")
                        .and_then(serde_json::Value::as_str)
                        .map_or_else(|| format!("unknown address ({k})"), str::to_owned),
                ),
                Err(_) => Some(format!("unknown address ({k})")),
            },
        )
        .collect()
}

/// Builds the etcd client settings, reading the TLS and password files.
pub fn etcd_config(o: &EtcdOptions) -> anyhow::Result<EtcdConfig> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading the etcd {what} {}", p.display()))
    };
    let mut c = EtcdConfig::new(o.endpoints.iter().cloned());
    c.ca_pem = o.ca.as_deref().map(|p| read(p, "CA")).transpose()?;
    c.client_cert_pem = o
        .cert
        .as_deref()
        .map(|p| read(p, "client certificate"))
        .transpose()?;
    c.client_key_pem = o
        .key
        .as_deref()
        .map(|p| read(p, "client key"))
        .transpose()?;
    c.user = o.user.clone();
    if let Some(p) = &o.password_file {
        let raw = read(p, "password file")?;
        let text = String::from_utf8(raw)
            .map_err(|_| anyhow!("the etcd password file {} is not UTF-8", p.display()))?;
        c.password = Some(text.lines().next().unwrap_or_default().to_owned());
    }
    Ok(c)
}

/// Binds the peer port, advertises it, and starts the peer server, the state watcher and (while
/// this instance has no KEK) the key fetcher. Returns the bound address and the tasks.
pub async fn start(
    ha: &HaStore,
    core: Arc<CoordinatorCore>,
    config: &Config,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    let listener = TcpListener::bind(config.peer_addr)
        .await
        .with_context(|| format!("binding the peer API to {}", config.peer_addr))?;
    let bound = listener.local_addr()?;
    let advertised = advertised_addr(bound, &config.dns_names);
    let identity = Arc::new(Identity::generate()?);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(serve(
        listener,
        core.clone(),
        identity.clone(),
        shutdown.clone(),
    )));
    let peers = ha.peers.clone();
    let own = advertised.clone();
    match tokio::task::spawn_blocking(move || register(peers.as_ref(), &own)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot advertise the peer address in etcd"),
        Err(e) => tracing::warn!(error = %e, "peer registration task failed"),
    }
    tasks.push(tokio::spawn(watch_state(
        ha.state.clone(),
        core.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(presence_loop(
        ha.peers.clone(),
        ha.presence_key.clone(),
        advertised.clone(),
        core.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(fetch_kek_loop(
        ha.peers.clone(),
        core,
        identity,
        advertised.clone(),
        shutdown,
    )));
    tracing::info!(advertised = %advertised, "peer API listening on {bound}");
    Ok((bound, tasks))
}

/// `bound`, with an unspecified IP replaced by the first DNS name (what peers can dial).
pub fn advertised_addr(bound: SocketAddr, dns_names: &[String]) -> String {
    if bound.ip().is_unspecified() {
        let host = dns_names.first().map_or("localhost", String::as_str);
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", bound.port()),
            _ => format!("{host}:{}", bound.port()),
        }
    } else {
        bound.to_string()
    }
}

/// Adds `own` to the registry (compare-and-swap; newest last, at most [`MAX_PEERS`]).
pub fn register(store: &dyn Persistence, own: &str) -> anyhow::Result<()> {
    for _ in 0..16 {
        let current = store.load()?;
        let mut list = match &current {
            Some((_, blob)) => parse_peers(blob),
            None => Vec::new(),
        };
        list.retain(|a| a != own);
        list.push(own.to_owned());
        if list.len() > MAX_PEERS {
            let drop = list.len() - MAX_PEERS;
            list.drain(..drop);
        }
        let blob = serde_json::to_vec(&serde_json::json!({ "peers": list }))?;
        match store.compare_and_swap(current.map(|(r, _)| r), &blob) {
            Ok(_) => return Ok(()),
            Err(cairn_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the peer registry kept changing; giving up")
}

/// The addresses in a registry value (an unreadable value counts as empty).
pub fn parse_peers(blob: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Value>(blob)
        .ok()
        .and_then(|v| {
            v.get("peers")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Reloads the state on every change etcd reports, and at least every [`POLL`].
async fn watch_state(
    store: Arc<EtcdPersistence>,
    core: Arc<CoordinatorCore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = store.subscribe();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            r = changes.changed() => if r.is_err() { return },
            () = tokio::time::sleep(POLL) => {}
        }
        let c = core.clone();
        match tokio::task::spawn_blocking(move || c.refresh()).await {
            Ok(Ok(changed)) => {
                if failing {
                    tracing::info!("the shared state is readable again");
                }
                failing = false;
                if changed {
                    tracing::debug!("applied a state change made through another instance");
                }
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot refresh the shared state; serving the cached state");
                }
                failing = true;
            }
            Err(e) => tracing::error!(error = %e, "state refresh task failed"),
        }
    }
}

/// Keeps this instance's presence key alive: rewritten every [`BEAT`], and within a [`POLL`]
/// when the readiness changes. Logs once per etcd outage.
async fn presence_loop(
    store: Arc<EtcdPersistence>,
    key: String,
    addr: String,
    core: Arc<CoordinatorCore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: Option<(bool, tokio::time::Instant)> = None;
    let mut failing = false;
    loop {
        let ready = !core.awaiting_kek();
        let due = last.is_none_or(|(r, at)| r != ready || at.elapsed() >= BEAT);
        if due {
            let (s, k, v) = (store.clone(), key.clone(), presence_value(&addr, ready));
            match tokio::task::spawn_blocking(move || s.put_expiring(&k, &v, PRESENCE_TTL)).await {
                Ok(Ok(())) => {
                    if failing || last.is_none_or(|(r, _)| r != ready) {
                        tracing::info!(
                            ready,
                            "announced this instance in the etcd presence registry"
                        );
                    }
                    failing = false;
                    last = Some((ready, tokio::time::Instant::now()));
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot refresh this instance's presence in etcd");
                    }
                    failing = true;
                }
                Err(e) => tracing::error!(error = %e, "presence task failed"),
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Whenever this instance has no KEK that opens the shared state (new instance, every instance
/// in recovery mode, or a KEK made stale by a forced recovery elsewhere): ask every advertised
/// peer in turn, every [`POLL`]. Never ends before shutdown, so a key that appears later (a
/// recovery through another instance) is picked up.
async fn fetch_kek_loop(
    peers: Arc<EtcdPersistence>,
    core: Arc<CoordinatorCore>,
    identity: Arc<Identity>,
    own: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut announced = false;
    loop {
        if !core.awaiting_kek() {
            announced = false;
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        if !announced {
            tracing::warn!("this instance cannot open the shared state: asking the running instances for the state key (or recover the state)");
            announced = true;
        }
        let p = peers.clone();
        let list = match tokio::task::spawn_blocking(move || p.load()).await {
            Ok(Ok(Some((_, blob)))) => parse_peers(&blob),
            Ok(Ok(None)) => Vec::new(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read the peer registry");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        for addr in list.iter().rev().filter(|a| **a != own) {
            match fetch_kek(addr, &core, &identity).await {
                Ok(kek) => {
                    let c = core.clone();
                    match tokio::task::spawn_blocking(move || c.install_kek(kek)).await {
                        Ok(Ok(())) => {
                            tracing::info!(peer = %addr, "received the state key from a peer instance");
                            break;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(peer = %addr, error = %e, "the state key from a peer was not usable")
                        }
                        Err(e) => tracing::error!(error = %e, "key install task failed"),
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %format!("{e:#}"), "peer did not hand over the state key")
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One client exchange with the peer at `addr` (see the module documentation).
pub async fn fetch_kek(
    addr: &str,
    core: &Arc<CoordinatorCore>,
    identity: &Identity,
) -> anyhow::Result<SecretKey32> {
    tokio::time::timeout(PEER_TIMEOUT, fetch_kek_inner(addr, core, identity))
        .await
        .map_err(|_| anyhow!("peer {addr} did not answer within {PEER_TIMEOUT:?}"))?
}

async fn fetch_kek_inner(
    addr: &str,
    core: &Arc<CoordinatorCore>,
    identity: &Identity,
) -> anyhow::Result<SecretKey32> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to peer {addr}"))?;
    let connector = tokio_rustls::TlsConnector::from(identity.client_config()?);
    let name = ServerName::try_from("cairn-peer")?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with peer {addr}"))?;
    let server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| anyhow!("peer {addr} presented no certificate"))?;
    let server_quote = read_frame(&mut tls).await?;
    let c = core.clone();
    tokio::task::spawn_blocking(move || {
        c.verify_peer(&server_quote, &server_cert, PeerRole::Provider)
    })
    .await?
    .with_context(|| format!("attesting peer {addr}"))?;
    let c = core.clone();
    let cert = identity.cert_der.clone();
    let quote = tokio::task::spawn_blocking(move || c.peer_quote(&cert)).await??;
    write_frame(&mut tls, &quote).await?;
    let answer = cairn_crypto::Zeroizing::new(read_frame(&mut tls).await?);
    match answer.split_first() {
        Some((0, key)) => Ok(SecretKey32::from_slice(key)?),
        Some((1, reason)) => bail!("peer {addr} refused: {}", String::from_utf8_lossy(reason)),
        _ => bail!("peer {addr} sent a malformed answer"),
    }
}

async fn serve(
    listener: TcpListener,
    core: Arc<CoordinatorCore>,
    identity: Arc<Identity>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = match identity.server_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "peer API TLS configuration failed");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "peer API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let acceptor = acceptor.clone();
        let core = core.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let r = tokio::time::timeout(PEER_TIMEOUT, serve_one(acceptor, tcp, core, identity))
                .await
                .unwrap_or_else(|_| Err(anyhow!("timed out")));
            match r {
                Ok(()) => {
                    tracing::info!(peer = %remote, "handed the state key to an attested peer instance")
                }
                Err(e) => {
                    tracing::warn!(peer = %remote, error = %format!("{e:#}"), "peer key request refused")
                }
            }
        });
    }
}

async fn serve_one(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    core: Arc<CoordinatorCore>,
    identity: Arc<Identity>,
) -> anyhow::Result<()> {
    let mut tls = acceptor.accept(tcp).await.context("TLS handshake")?;
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| anyhow!("no client certificate"))?;
    let c = core.clone();
    let cert = identity.cert_der.clone();
    let quote = tokio::task::spawn_blocking(move || c.peer_quote(&cert)).await??;
    write_frame(&mut tls, &quote).await?;
    let client_quote = read_frame(&mut tls).await?;
    let c = core.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        c.verify_peer(&client_quote, &client_cert, PeerRole::Requester)?;
        c.kek_for_peer()
    })
    .await?;
    match verdict {
        Ok(kek) => {
            let mut answer = cairn_crypto::Zeroizing::new(Vec::with_capacity(33));
            answer.push(0);
            answer.extend_from_slice(&kek.0);
            write_frame(&mut tls, &answer).await?;
            tls.shutdown().await.ok();
            Ok(())
        }
        Err(e) => {
            let mut answer = vec![1u8];
            answer.extend_from_slice(e.to_string().as_bytes());
            write_frame(&mut tls, &answer).await?;
            tls.shutdown().await.ok();
            Err(e.into())
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> anyhow::Result<()> {
    let len = u32::try_from(data.len()).context("frame too large")?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(data).await?;
    w.flush().await?;
    Ok(())
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> anyhow::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.context("reading a frame")?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        bail!("frame of {len} bytes exceeds {MAX_FRAME}");
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.context("reading a frame")?;
    Ok(buf)
}

/// This process's peer TLS identity: a fresh self-signed P-256 certificate (its key never
/// leaves memory; the quotes bind it to the enclave).
pub struct Identity {
    cert_der: Vec<u8>,
    key_der: cairn_crypto::Zeroizing<Vec<u8>>,
}

impl Identity {
    /// Generates the key pair and certificate.
    pub fn generate() -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec!["cairn-peer".to_string()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cairn Coordinator peer");
        let cert = params.self_signed(&key)?;
        Ok(Identity {
            cert_der: cert.der().to_vec(),
            key_der: cairn_crypto::Zeroizing::new(key.serialize_der()),
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.to_vec()))
    }

    fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let cfg = ServerConfig::builder_with_provider(cairn_crypto::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS protocol versions")?
            .with_client_cert_verifier(Arc::new(crate::tls::AnyClientCert::new(true)))
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                self.key(),
            )
            .context("peer certificate")?;
        Ok(Arc::new(cfg))
    }

    fn client_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let cfg = ClientConfig::builder_with_provider(cairn_crypto::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AttestedServer::default()))
            .with_client_auth_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                self.key(),
            )
            .context("peer client certificate")?;
        Ok(Arc::new(cfg))
    }
}

/// Accepts any peer server certificate at the TLS layer while checking the handshake
/// signature; the peer is authenticated by its quote over that certificate.
#[derive(Debug)]
struct AttestedServer {
    algs: WebPkiSupportedAlgorithms,
}

impl Default for AttestedServer {
    fn default() -> Self {
        AttestedServer {
            algs: cairn_crypto::provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AttestedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Invariant: no trust comes from the chain; the client verifies the server's quote over
        // this exact certificate before it sends or accepts anything.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_address() {
        let names = vec!["coord.example".to_string()];
        assert_eq!(
            advertised_addr("0.0.0.0:5433".parse().unwrap(), &names),
            "coord.example:5433"
        );
        assert_eq!(
            advertised_addr("127.0.0.1:7".parse().unwrap(), &names),
            "127.0.0.1:7"
        );
        assert_eq!(
            advertised_addr("[::]:9".parse().unwrap(), &["::1".to_string()]),
            "[::1]:9"
        );
    }

    #[test]
    fn registry_keeps_newest_unique() {
        let m = cairn_store::MemoryPersistence::new();
        register(&m, "a:1").unwrap();
        register(&m, "b:2").unwrap();
        register(&m, "a:1").unwrap();
        let (_, blob) = m.load().unwrap().unwrap();
        assert_eq!(
            parse_peers(&blob),
            vec!["b:2".to_string(), "a:1".to_string()]
        );
        for i in 0..40 {
            register(&m, &format!("h:{i}")).unwrap();
        }
        let (_, blob) = m.load().unwrap().unwrap();
        let list = parse_peers(&blob);
        assert_eq!(list.len(), MAX_PEERS);
        assert_eq!(list.last().map(String::as_str), Some("h:39"));
        assert_eq!(list.first().map(String::as_str), Some("h:8"));
        assert!(parse_peers(b"not json").is_empty());
    }

    #[test]
    fn presence_lists_ready_others() {
        let e = |k: &str, v: Vec<u8>| (format!("{INSTANCES_PREFIX}{k}"), v);
        let own = format!("{INSTANCES_PREFIX}me");
        let entries = vec![
            e("me", presence_value("me:1", true)),
            e("a", presence_value("a:1", true)),
            e("b", presence_value("b:1", false)),
            e("c", b"not json".to_vec()),
        ];
        assert_eq!(
            ready_others(&entries, &own),
            vec![
                "a:1".to_string(),
                format!("unknown address ({INSTANCES_PREFIX}c)")
            ]
        );
        assert!(ready_others(&entries[..1], &own).is_empty());
    }

    #[test]
    fn etcd_settings_read_the_files() {
        let d = tempfile::tempdir().unwrap();
        let w = |name: &str, body: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let o = EtcdOptions {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            ca: Some(w("ca.pem", "CA PEM")),
            cert: Some(w("c.pem", "CERT PEM")),
            key: Some(w("k.pem", "KEY PEM")),
            user: Some("cairn".into()),
            password_file: Some(w("pw", "s3cret\nignored\n")),
        };
        let c = etcd_config(&o).unwrap();
        assert_eq!(c.endpoints, vec!["https://127.0.0.1:2379".to_string()]);
        assert_eq!(c.ca_pem.as_deref(), Some(b"CA PEM".as_slice()));
        assert_eq!(c.client_cert_pem.as_deref(), Some(b"CERT PEM".as_slice()));
        assert_eq!(c.client_key_pem.as_deref(), Some(b"KEY PEM".as_slice()));
        assert_eq!(c.user.as_deref(), Some("cairn"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.key, cairn_store::DEFAULT_ETCD_KEY);
        // The password never shows in Debug output.
        assert!(!format!("{c:?}").contains("s3cret"));
        let missing = EtcdOptions {
            ca: Some(d.path().join("nope.pem")),
            ..o
        };
        let e = etcd_config(&missing).unwrap_err();
        assert!(format!("{e:#}").contains("nope.pem"), "{e:#}");
    }

    #[tokio::test]
    async fn frames_round_trip_and_limit() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write_frame(&mut a, b"hello").await.unwrap();
        assert_eq!(read_frame(&mut b).await.unwrap(), b"hello".to_vec());
        a.write_all(&(u32::try_from(MAX_FRAME).unwrap() + 1).to_be_bytes())
            .await
            .unwrap();
        let e = read_frame(&mut b).await.unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
    }
}
