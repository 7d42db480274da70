//! Configuration from flags and MarbleRun/Cairn environment variables (flags win). The
//! environment is read once, through [`EnvSource`], so tests pass a map.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use cairn_crypto::KeyType;
use clap::Parser;

/// A source of environment variables.
pub trait EnvSource {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Persistence backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Sealed file in the seal dir.
    File,
    /// etcd (cargo feature `etcd`).
    Etcd,
}

/// The Coordinator's effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client REST API address.
    pub client_addr: SocketAddr,
    /// Marble gRPC API address.
    pub mesh_addr: SocketAddr,
    /// DNS names / IP literals for the CA certificates.
    pub dns_names: Vec<String>,
    /// Directory of the sealed state.
    pub seal_dir: PathBuf,
    /// Simulated TEE instead of Gramine + Intel root.
    pub simulation: bool,
    /// Simulated platform directory.
    pub sim_dir: PathBuf,
    /// CA key curve.
    pub key_type: KeyType,
    /// Prometheus `/metrics` address.
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Persistence backend.
    pub store: StoreKind,
    /// Simulated ISVPRODID of the Coordinator.
    pub sim_product_id: u16,
    /// Simulated ISVSVN of the Coordinator.
    pub sim_svn: u16,
    /// PCCS URL for collateral (hardware mode).
    pub pccs_url: Option<String>,
    /// etcd connection settings (`--store etcd`).
    pub etcd: EtcdOptions,
    /// Instance-to-instance key sharing address (HA mode).
    pub peer_addr: SocketAddr,
}

/// etcd settings as given; files are read when the store is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// PEM CA file verifying the etcd servers.
    pub ca: Option<PathBuf>,
    /// PEM client certificate file (mutual TLS).
    pub cert: Option<PathBuf>,
    /// PEM client key file.
    pub key: Option<PathBuf>,
    /// etcd user.
    pub user: Option<String>,
    /// File holding the etcd user's password (first line).
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Parser)]
#[command(
    name = "cairn-coordinator",
    version,
    about = "Cairn Coordinator: attests marbles against a manifest and issues their identities (MarbleRun-compatible)"
)]
struct Cli {
    /// Client REST API address, e.g. `:4433` or `127.0.0.1:4433` [env EDG_COORDINATOR_CLIENT_ADDR; default :4433]
    #[arg(long)]
    client_addr: Option<String>,
    /// Marble gRPC API address, e.g. `:2001` [env EDG_COORDINATOR_MESH_ADDR; default :2001]
    #[arg(long)]
    mesh_addr: Option<String>,
    /// Comma list of names for the certificates, e.g. `localhost,192.0.2.10` (IPs become IP SANs) [env EDG_COORDINATOR_DNS_NAMES; default localhost]
    #[arg(long)]
    dns_names: Option<String>,
    /// Sealed state directory, e.g. `./cairn-coordinator-data` [env EDG_COORDINATOR_SEAL_DIR]
    #[arg(long)]
    seal_dir: Option<PathBuf>,
    /// Run on the simulated TEE, e.g. `--simulation` [env CAIRN_SIMULATION=1]
    #[arg(long)]
    simulation: bool,
    /// Simulated platform directory, e.g. `./sim` [env CAIRN_SIM_DIR; default <seal-dir>/sim]
    #[arg(long)]
    sim_dir: Option<PathBuf>,
    /// CA key type, e.g. `p384` [env CAIRN_KEY_TYPE; default p256]
    #[arg(long)]
    key_type: Option<String>,
    /// Prometheus address, e.g. `127.0.0.1:9090` [env CAIRN_METRICS_ADDR; default off]
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Log format `text` or `json`, e.g. `--log-format json` [env CAIRN_LOG_FORMAT or EDG_LOG_FORMAT=json]
    #[arg(long)]
    log_format: Option<String>,
    /// Persistence backend `file` or `etcd`, e.g. `--store file` [env CAIRN_STORE]
    #[arg(long)]
    store: Option<String>,
    /// etcd endpoints (comma list), e.g. `http://127.0.0.1:2379,http://10.0.0.2:2379` [env CAIRN_ETCD_ENDPOINTS]
    #[arg(long)]
    etcd_endpoints: Option<String>,
    /// PEM CA certificate verifying etcd (endpoints must be https://), e.g. `/etc/etcd/ca.pem` [env CAIRN_ETCD_CA]
    #[arg(long)]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd mutual TLS, e.g. `client.pem` [env CAIRN_ETCD_CERT]
    #[arg(long)]
    etcd_cert: Option<PathBuf>,
    /// PEM key of --etcd-cert, e.g. `client-key.pem` [env CAIRN_ETCD_KEY]
    #[arg(long)]
    etcd_key: Option<PathBuf>,
    /// etcd user (with --etcd-password-file), e.g. `cairn` [env CAIRN_ETCD_USER]
    #[arg(long)]
    etcd_user: Option<String>,
    /// File whose first line is the etcd password, e.g. `/run/secrets/etcd-pw` [env CAIRN_ETCD_PASSWORD_FILE]
    #[arg(long)]
    etcd_password_file: Option<PathBuf>,
    /// Instance-to-instance key sharing (HA, mutual TLS after attestation), e.g. `:5433`; the bound address is advertised in etcd [env CAIRN_PEER_ADDR; default :5433]
    #[arg(long)]
    peer_addr: Option<String>,
    /// Simulated ProductID of the Coordinator, e.g. `1` [env CAIRN_SIM_PRODUCT_ID; default 1]
    #[arg(long)]
    sim_product_id: Option<u16>,
    /// Simulated SecurityVersion of the Coordinator, e.g. `1` [env CAIRN_SIM_SVN; default 1]
    #[arg(long)]
    sim_svn: Option<u16>,
    /// PCCS URL for collateral, e.g. `https://pccs.example:8081/sgx/certification/v4/` [env CAIRN_PCCS_URL]
    #[arg(long)]
    pccs_url: Option<String>,
}

/// Why the command line cannot run (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl Config {
    /// Parses `args` (including argv[0]) with `env` as fallback. Flags win over environment.
    pub fn parse(
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
        env: &dyn EnvSource,
    ) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from(args)?;
        let pick = |flag: Option<String>, key: &str| flag.or_else(|| env.get(key));
        let client_addr = parse_addr(
            &pick(cli.client_addr, "EDG_COORDINATOR_CLIENT_ADDR").unwrap_or_else(|| ":4433".into()),
        )
        .context("--client-addr")?;
        let mesh_addr = parse_addr(
            &pick(cli.mesh_addr, "EDG_COORDINATOR_MESH_ADDR").unwrap_or_else(|| ":2001".into()),
        )
        .context("--mesh-addr")?;
        let dns_names = cairn_ca::parse_names(
            &pick(cli.dns_names, "EDG_COORDINATOR_DNS_NAMES").unwrap_or_else(|| "localhost".into()),
        );
        let seal_dir = cli
            .seal_dir
            .or_else(|| env.get("EDG_COORDINATOR_SEAL_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("./cairn-coordinator-data"));
        let simulation = cli.simulation
            || env
                .get("CAIRN_SIMULATION")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"));
        let sim_dir = cli
            .sim_dir
            .or_else(|| env.get("CAIRN_SIM_DIR").map(PathBuf::from))
            .unwrap_or_else(|| seal_dir.join("sim"));
        let key_type_s = pick(cli.key_type, "CAIRN_KEY_TYPE").unwrap_or_else(|| "p256".into());
        let key_type = KeyType::parse(&key_type_s)
            .ok_or_else(|| anyhow!("--key-type: expected p256 or p384, got {key_type_s:?}"))?;
        let metrics_addr = pick(cli.metrics_addr, "CAIRN_METRICS_ADDR")
            .filter(|s| !s.is_empty())
            .map(|s| parse_addr(&s))
            .transpose()
            .context("--metrics-addr")?;
        let log_format = match cli.log_format.or_else(|| env.get("CAIRN_LOG_FORMAT")) {
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => bail!("--log-format: expected text or json, got {s:?}"),
            },
            None if env
                .get("EDG_LOG_FORMAT")
                .is_some_and(|v| v.eq_ignore_ascii_case("json")) =>
            {
                LogFormat::Json
            }
            None => LogFormat::Text,
        };
        let store = match pick(cli.store, "CAIRN_STORE").as_deref().unwrap_or("file") {
            "file" => StoreKind::File,
            "etcd" => StoreKind::Etcd,
            other => bail!("--store: expected file or etcd, got {other:?}"),
        };
        let path =
            |flag: Option<PathBuf>, key: &str| flag.or_else(|| env.get(key).map(PathBuf::from));
        let etcd = EtcdOptions {
            endpoints: pick(cli.etcd_endpoints, "CAIRN_ETCD_ENDPOINTS")
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            ca: path(cli.etcd_ca, "CAIRN_ETCD_CA"),
            cert: path(cli.etcd_cert, "CAIRN_ETCD_CERT"),
            key: path(cli.etcd_key, "CAIRN_ETCD_KEY"),
            user: pick(cli.etcd_user, "CAIRN_ETCD_USER"),
            password_file: path(cli.etcd_password_file, "CAIRN_ETCD_PASSWORD_FILE"),
        };
        if store == StoreKind::Etcd && etcd.endpoints.is_empty() {
            bail!("--store etcd needs --etcd-endpoints (or CAIRN_ETCD_ENDPOINTS), e.g. http://127.0.0.1:2379");
        }
        let peer_addr =
            parse_addr(&pick(cli.peer_addr, "CAIRN_PEER_ADDR").unwrap_or_else(|| ":5433".into()))
                .context("--peer-addr")?;
        let num = |flag: Option<u16>, key: &str| -> anyhow::Result<u16> {
            match flag {
                Some(v) => Ok(v),
                None => match env.get(key) {
                    Some(s) => s
                        .parse()
                        .with_context(|| format!("{key}: not a number: {s:?}")),
                    None => Ok(1),
                },
            }
        };
        Ok(Config {
            client_addr,
            mesh_addr,
            dns_names,
            seal_dir,
            simulation,
            sim_dir,
            key_type,
            metrics_addr,
            log_format,
            store,
            sim_product_id: num(cli.sim_product_id, "CAIRN_SIM_PRODUCT_ID")?,
            sim_svn: num(cli.sim_svn, "CAIRN_SIM_SVN")?,
            pccs_url: pick(cli.pccs_url, "CAIRN_PCCS_URL"),
            etcd,
            peer_addr,
        })
    }
}

/// `:4433` → all interfaces; `host:port` with an IP or a resolvable name.
pub fn parse_addr(s: &str) -> anyhow::Result<SocketAddr> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .with_context(|| format!("invalid port in {s:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .with_context(|| format!("invalid address {s:?} (expected HOST:PORT or :PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("address {s:?} resolves to nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::parse(["cairn-coordinator"], &env(&[])).unwrap();
        assert_eq!(c.client_addr, "0.0.0.0:4433".parse().unwrap());
        assert_eq!(c.mesh_addr, "0.0.0.0:2001".parse().unwrap());
        assert_eq!(c.dns_names, vec!["localhost".to_string()]);
        assert_eq!(c.seal_dir, PathBuf::from("./cairn-coordinator-data"));
        assert_eq!(c.sim_dir, PathBuf::from("./cairn-coordinator-data/sim"));
        assert!(!c.simulation);
        assert_eq!(c.key_type, KeyType::P256);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!((c.sim_product_id, c.sim_svn), (1, 1));
        assert!(c.metrics_addr.is_none());
    }

    #[test]
    fn env_and_flags_win() {
        let e = env(&[
            ("EDG_COORDINATOR_CLIENT_ADDR", "127.0.0.1:1"),
            ("EDG_COORDINATOR_MESH_ADDR", ":7"),
            ("EDG_COORDINATOR_DNS_NAMES", "a,192.0.2.1"),
            ("CAIRN_SIMULATION", "1"),
            ("EDG_LOG_FORMAT", "json"),
            ("CAIRN_KEY_TYPE", "p384"),
        ]);
        let c = Config::parse(["x", "--client-addr", "127.0.0.1:2"], &e).unwrap();
        assert_eq!(c.client_addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(c.mesh_addr.port(), 7);
        assert_eq!(c.dns_names.len(), 2);
        assert!(c.simulation);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.key_type, KeyType::P384);
        let c = Config::parse(["x", "--log-format", "text"], &e).unwrap();
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(Config::parse(["x", "--key-type", "p521"], &e).is_err());
        let e = env(&[
            ("CAIRN_STORE", "etcd"),
            (
                "CAIRN_ETCD_ENDPOINTS",
                "http://127.0.0.1:1, http://127.0.0.1:2",
            ),
            ("CAIRN_ETCD_CA", "/ca.pem"),
            ("CAIRN_ETCD_USER", "u"),
            ("CAIRN_ETCD_PASSWORD_FILE", "/pw"),
            ("CAIRN_PEER_ADDR", "127.0.0.1:0"),
        ]);
        let c = Config::parse(["x", "--etcd-cert", "/c.pem", "--etcd-key", "/k.pem"], &e).unwrap();
        assert_eq!(c.store, StoreKind::Etcd);
        assert_eq!(
            c.etcd,
            EtcdOptions {
                endpoints: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
                ca: Some("/ca.pem".into()),
                cert: Some("/c.pem".into()),
                key: Some("/k.pem".into()),
                user: Some("u".into()),
                password_file: Some("/pw".into()),
            }
        );
        assert_eq!(c.peer_addr, "127.0.0.1:0".parse().unwrap());
        let err = Config::parse(["x", "--store", "etcd"], &env(&[])).unwrap_err();
        assert!(err.to_string().contains("--etcd-endpoints"), "{err}");
        let c = Config::parse(["x"], &env(&[])).unwrap();
        assert_eq!(c.peer_addr, "0.0.0.0:5433".parse().unwrap());
    }
}
