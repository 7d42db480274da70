//! cairn-coordinator (layer 4): configuration, TLS listeners for the client REST API and the
//! marble gRPC API, metrics, logging and start-up wiring around cairn-core.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client_api;
pub mod config;
pub mod mesh;
pub mod metrics;
#[cfg(feature = "etcd")]
pub mod peer;
pub mod refusal_log;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use cairn_core::{Clock, CollateralProvider, CoordinatorCore, CoreConfig, DcapVerifier, Deps};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, EnvSource, LogFormat, ProcessEnv, StoreKind};

/// What `--store etcd` answers in a build without the `etcd` feature.
pub const ETCD_FEATURE_HINT: &str = "--store etcd needs the `etcd` cargo feature: apt-get install -y protobuf-compiler libprotobuf-dev && cargo build --release -p cairn-coordinator --features etcd";

/// The system clock (only binaries read it).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// Collateral from the simulated platform directory (re-signed when older than a day).
struct SimCollateral(Arc<cairn_platform::SimPlatformDir>);

impl CollateralProvider for SimCollateral {
    fn collateral_for(&self, _raw_quote: &[u8]) -> Result<cairn_attest::Collateral, String> {
        self.0.collateral().map_err(|e| e.to_string())
    }
}

/// A running Coordinator: bound addresses and a shutdown switch.
pub struct Running {
    /// Bound client API address.
    pub client_addr: SocketAddr,
    /// Bound mesh API address.
    pub mesh_addr: SocketAddr,
    /// Bound metrics address, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The core (for in-process inspection).
    pub core: Arc<CoordinatorCore>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish and waits for the servers.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Builds the core for `config` (platform, store, verifier) and starts every listener.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with_store(config, None).await
}

/// Like [`start`], with an explicit persistence backend (tests inject faults through it).
pub async fn start_with_store(
    config: &Config,
    store: Option<Arc<dyn cairn_store::Persistence>>,
) -> anyhow::Result<Running> {
    cairn_crypto::install_default_provider();
    #[cfg(not(feature = "etcd"))]
    if config.store == StoreKind::Etcd {
        anyhow::bail!("{ETCD_FEATURE_HINT}");
    }
    // HA mode: shared state in etcd, KEK from peers (peer.rs).
    #[cfg(feature = "etcd")]
    let ha = match (&store, config.store) {
        (None, StoreKind::Etcd) => Some(peer::HaStore::open(config)?),
        _ => None,
    };
    #[cfg(feature = "etcd")]
    let store = match &ha {
        Some(h) => Some(h.state.clone() as Arc<dyn cairn_store::Persistence>),
        None => store,
    };
    #[cfg(feature = "etcd")]
    let ha_core = ha.as_ref().map(|h| h.core.clone());
    #[cfg(not(feature = "etcd"))]
    let ha_core: Option<cairn_core::HaConfig> = None;
    let deps = build_deps(config, store)?;
    let core_config = CoreConfig {
        key_type: config.key_type,
        dns_names: config.dns_names.clone(),
    };
    let core = tokio::task::spawn_blocking(move || match ha_core {
        Some(h) => CoordinatorCore::start_ha(deps, core_config, h),
        None => CoordinatorCore::start(deps, core_config),
    })
    .await
    .context("core start-up task")?
    .context("starting the Coordinator core")?;
    let core = Arc::new(core);
    let metrics = metrics::Metrics::new();
    metrics.set_state(core.phase().code());

    let client_tls = tls::client_api_config(core.clone())?;
    let mesh_tls = tls::mesh_config(core.clone())?;

    let client_listener = TcpListener::bind(config.client_addr)
        .await
        .with_context(|| format!("binding the client API to {}", config.client_addr))?;
    let mesh_listener = TcpListener::bind(config.mesh_addr)
        .await
        .with_context(|| format!("binding the mesh API to {}", config.mesh_addr))?;
    let client_addr = client_listener.local_addr()?;
    let mesh_addr = mesh_listener.local_addr()?;
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let metrics_addr = match config.metrics_addr {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics server to {addr}"))?;
            let bound = l.local_addr()?;
            tasks.push(tokio::spawn(serve_metrics(l, metrics.clone(), rx.clone())));
            tracing::info!("metrics listening on {bound}");
            Some(bound)
        }
        None => None,
    };

    let app = client_api::router(client_api::ApiState {
        core: core.clone(),
        metrics: metrics.clone(),
    });
    tasks.push(tokio::spawn(client_api::serve(
        client_listener,
        client_tls,
        app,
        metrics.clone(),
        rx.clone(),
    )));
    let service = mesh::MarbleService::new(core.clone(), metrics.clone());
    let mesh_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = mesh::serve(mesh_listener, mesh_tls, service, mesh_rx).await {
            tracing::error!(error = %e, "mesh API server failed");
        }
    }));
    #[cfg(feature = "etcd")]
    if let Some(h) = &ha {
        let (_, peer_tasks) = peer::start(h, core.clone(), config, rx.clone()).await?;
        tasks.extend(peer_tasks);
    }
    tracing::info!("client API listening on {client_addr}");
    tracing::info!("mesh API listening on {mesh_addr}");
    Ok(Running {
        client_addr,
        mesh_addr,
        metrics_addr,
        core,
        shutdown,
        tasks,
    })
}

/// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(&config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sets up tracing (text or JSON) once; `RUST_LOG` filters, default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Creates the seal dir 0700 (independent of the umask); warns when an existing one is open to
/// other users, who could delete the sealed state and so make the next start create a new CA.
fn create_seal_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the seal dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("inspecting the seal dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            seal_dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the seal dir is accessible to other users, who could delete the sealed state; run chmod 700 on it"
        );
    }
    Ok(())
}

fn build_deps(
    config: &Config,
    store: Option<Arc<dyn cairn_store::Persistence>>,
) -> anyhow::Result<Deps> {
    create_seal_dir(&config.seal_dir)?;
    let store: Arc<dyn cairn_store::Persistence> = match store {
        Some(s) => s,
        None => Arc::new(
            cairn_store::FilePersistence::new(&config.seal_dir)
                .with_context(|| format!("opening the state in {}", config.seal_dir.display()))?,
        ),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if config.simulation {
        let dir = Arc::new(
            cairn_platform::SimPlatformDir::open_or_create(&config.sim_dir).with_context(|| {
                format!(
                    "opening the simulated platform {}",
                    config.sim_dir.display()
                )
            })?,
        );
        let exe = std::env::current_exe().context("locating the Coordinator executable")?;
        let id = dir
            .identity_for_executable(&exe, config.sim_product_id, config.sim_svn, false)
            .context("measuring the Coordinator executable")?;
        tracing::warn!(
            sim_dir = %config.sim_dir.display(),
            mr_enclave = %hex::encode(id.mr_enclave),
            "SIMULATION mode: evidence is signed by a simulated platform and gives no confidentiality"
        );
        let issuer: Arc<dyn cairn_platform::Issuer> = Arc::new(dir.issuer(id));
        let verifier = DcapVerifier::new(
            cairn_attest::TrustRoot::Simulation(dir.root_der()),
            Some(Arc::new(SimCollateral(dir.clone()))),
        );
        Ok(Deps {
            issuer,
            store,
            clock,
            verifier: Arc::new(verifier),
        })
    } else {
        let issuer: Arc<dyn cairn_platform::Issuer> = Arc::new(cairn_platform::GramineIssuer::new(
            cairn_platform::DEFAULT_GRAMINE_BASE,
        ));
        if config.pccs_url.is_some() {
            tracing::warn!("--pccs-url is accepted but no PCCS collateral client exists yet; marble activation will fail");
        }
        // No collateral client yet: activation fails with "collateral source not configured";
        // never a fallback to simulation.
        let verifier = DcapVerifier::new(cairn_attest::TrustRoot::IntelProduction, None);
        Ok(Deps {
            issuer,
            store,
            clock,
            verifier: Arc::new(verifier),
        })
    }
}

async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
}
