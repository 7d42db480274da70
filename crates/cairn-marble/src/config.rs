//! `cairn-premain` configuration, parsed once from an abstract environment source.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::MarbleError;

/// Default Coordinator mesh address (MarbleRun's).
pub const DEFAULT_COORDINATOR_ADDR: &str = "localhost:2001";
/// Default DNS names of the marble's activation certificate.
pub const DEFAULT_DNS_NAMES: &str = "localhost";
/// Default UUID file (relative to the working directory).
pub const DEFAULT_UUID_FILE: &str = "uuid";

/// A source of configuration strings (the process environment, or a map in tests).
pub trait EnvSource {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment (read only; values that are not UTF-8 count as unset).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

impl<const N: usize> EnvSource for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_string())
    }
}

/// Where the Coordinator root used to pin the mesh TLS connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// A PEM file path.
    File(PathBuf),
    /// PEM given inline in the variable.
    Inline(String),
}

/// Which evidence issuer premain uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformConfig {
    /// Simulated platform from `CAIRN_SIM_DIR`; the launched program's executable is measured.
    Simulation {
        /// The simulated platform directory (shared with the Coordinator).
        dir: PathBuf,
        /// `CAIRN_SIM_PRODUCT_ID` (default 0).
        product_id: u16,
        /// `CAIRN_SIM_SVN` (default 0).
        svn: u16,
        /// `CAIRN_SIM_DEBUG=1`.
        debug: bool,
    },
    /// Gramine's `/dev/attestation` files.
    Gramine,
}

/// Everything `cairn-premain` reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PremainConfig {
    /// `EDG_MARBLE_COORDINATOR_ADDR` (default `localhost:2001`).
    pub coordinator_addr: String,
    /// `EDG_MARBLE_TYPE` (required).
    pub marble_type: String,
    /// `EDG_MARBLE_DNS_NAMES` split at commas (default `localhost`).
    pub dns_names: Vec<String>,
    /// `EDG_MARBLE_UUID_FILE` (default `./uuid`).
    pub uuid_file: PathBuf,
    /// `CAIRN_COORDINATOR_ROOT_CA`: pin the Coordinator root (unset: accept any, with a warning).
    pub coordinator_root: Option<RootSource>,
    /// Simulation or Gramine.
    pub platform: PlatformConfig,
    /// `EDG_LOG_FORMAT=json` or `CAIRN_LOG_FORMAT=json`.
    pub log_json: bool,
}

impl PremainConfig {
    /// Parse the configuration. Empty values count as unset.
    pub fn from_source(src: &dyn EnvSource) -> Result<PremainConfig, MarbleError> {
        let get = |k: &str| src.get(k).filter(|v| !v.trim().is_empty());

        let marble_type = get("EDG_MARBLE_TYPE").ok_or_else(|| {
            MarbleError::Config(
                "EDG_MARBLE_TYPE is not set: set it to the name of this marble in the manifest's \
                 \"Marbles\" section, e.g. EDG_MARBLE_TYPE=backend"
                    .into(),
            )
        })?;
        let marble_type = marble_type.trim().to_string();

        let coordinator_addr = get("EDG_MARBLE_COORDINATOR_ADDR")
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| DEFAULT_COORDINATOR_ADDR.to_string());
        crate::client::split_host_port(&coordinator_addr)
            .map_err(|e| MarbleError::Config(format!("EDG_MARBLE_COORDINATOR_ADDR: {e}")))?;

        let dns_names = parse_names(
            &get("EDG_MARBLE_DNS_NAMES").unwrap_or_else(|| DEFAULT_DNS_NAMES.to_string()),
        );
        let dns_names = if dns_names.is_empty() {
            vec![DEFAULT_DNS_NAMES.to_string()]
        } else {
            dns_names
        };

        let uuid_file = PathBuf::from(
            get("EDG_MARBLE_UUID_FILE").unwrap_or_else(|| DEFAULT_UUID_FILE.to_string()),
        );

        let coordinator_root = get("CAIRN_COORDINATOR_ROOT_CA").map(|v| {
            if v.trim_start().starts_with("-----BEGIN") {
                RootSource::Inline(v)
            } else {
                RootSource::File(PathBuf::from(v))
            }
        });

        let platform = match get("CAIRN_SIM_DIR") {
            Some(dir) => PlatformConfig::Simulation {
                dir: PathBuf::from(dir),
                product_id: parse_u16(&get, "CAIRN_SIM_PRODUCT_ID")?,
                svn: parse_u16(&get, "CAIRN_SIM_SVN")?,
                debug: parse_bool(&get, "CAIRN_SIM_DEBUG")?,
            },
            None => PlatformConfig::Gramine,
        };

        let log_json = ["EDG_LOG_FORMAT", "CAIRN_LOG_FORMAT"]
            .iter()
            .any(|k| get(k).is_some_and(|v| v.trim().eq_ignore_ascii_case("json")));

        Ok(PremainConfig {
            coordinator_addr,
            marble_type,
            dns_names,
            uuid_file,
            coordinator_root,
            platform,
            log_json,
        })
    }
}

/// Split a comma list of names, trimming blanks and dropping empty entries.
pub fn parse_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_u16(get: &dyn Fn(&str) -> Option<String>, key: &str) -> Result<u16, MarbleError> {
    match get(key) {
        None => Ok(0),
        Some(v) => v.trim().parse::<u16>().map_err(|_| {
            MarbleError::Config(format!("{key}={v:?} is not a number between 0 and 65535"))
        }),
    }
}

fn parse_bool(get: &dyn Fn(&str) -> Option<String>, key: &str) -> Result<bool, MarbleError> {
    match get(key).as_deref().map(str::trim) {
        None => Ok(false),
        Some("1") | Some("true") | Some("TRUE") | Some("yes") => Ok(true),
        Some("0") | Some("false") | Some("FALSE") | Some("no") => Ok(false),
        Some(v) => Err(MarbleError::Config(format!(
            "{key}={v:?}: use 1 (on) or 0 (off)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_with_only_marble_type() {
        let c = PremainConfig::from_source(&map(&[("EDG_MARBLE_TYPE", "backend")])).unwrap();
        assert_eq!(c.marble_type, "backend");
        assert_eq!(c.coordinator_addr, "localhost:2001");
        assert_eq!(c.dns_names, vec!["localhost".to_string()]);
        assert_eq!(c.uuid_file, PathBuf::from("uuid"));
        assert_eq!(c.coordinator_root, None);
        assert_eq!(c.platform, PlatformConfig::Gramine);
        assert!(!c.log_json);
    }

    #[test]
    fn missing_marble_type_is_a_clear_error() {
        for env in [map(&[]), map(&[("EDG_MARBLE_TYPE", "  ")])] {
            let e = PremainConfig::from_source(&env).unwrap_err().to_string();
            assert!(e.contains("EDG_MARBLE_TYPE"), "{e}");
            assert!(e.contains("Marbles"), "{e}");
        }
    }

    #[test]
    fn all_values_parsed() {
        let env = map(&[
            ("EDG_MARBLE_TYPE", "frontend"),
            ("EDG_MARBLE_COORDINATOR_ADDR", "[::1]:3001"),
            ("EDG_MARBLE_DNS_NAMES", "web, web.shop ,,10.0.0.1"),
            ("EDG_MARBLE_UUID_FILE", "/tmp/x/uuid"),
            ("CAIRN_COORDINATOR_ROOT_CA", "/etc/cairn/root.pem"),
            ("CAIRN_SIM_DIR", "/tmp/sim"),
            ("CAIRN_SIM_PRODUCT_ID", "7"),
            ("CAIRN_SIM_SVN", "3"),
            ("CAIRN_SIM_DEBUG", "1"),
            ("EDG_LOG_FORMAT", "json"),
        ]);
        let c = PremainConfig::from_source(&env).unwrap();
        assert_eq!(c.coordinator_addr, "[::1]:3001");
        assert_eq!(c.dns_names, vec!["web", "web.shop", "10.0.0.1"]);
        assert_eq!(c.uuid_file, PathBuf::from("/tmp/x/uuid"));
        assert_eq!(
            c.coordinator_root,
            Some(RootSource::File("/etc/cairn/root.pem".into()))
        );
        assert_eq!(
            c.platform,
            PlatformConfig::Simulation {
                dir: "/tmp/sim".into(),
                product_id: 7,
                svn: 3,
                debug: true
            }
        );
        assert!(c.log_json);
    }

    #[test]
    fn inline_pem_root_and_sim_defaults() {
        let env = [
            ("EDG_MARBLE_TYPE", "m"),
            (
                "CAIRN_COORDINATOR_ROOT_CA",
                "-----BEGIN CERTIFICATE-----\nAAAA\n",
            ),
            ("CAIRN_SIM_DIR", "sim"),
        ];
        let c = PremainConfig::from_source(&env).unwrap();
        assert!(matches!(c.coordinator_root, Some(RootSource::Inline(_))));
        assert_eq!(
            c.platform,
            PlatformConfig::Simulation {
                dir: "sim".into(),
                product_id: 0,
                svn: 0,
                debug: false
            }
        );
    }

    #[test]
    fn bad_numbers_and_flags_are_named() {
        let e = PremainConfig::from_source(&[
            ("EDG_MARBLE_TYPE", "m"),
            ("CAIRN_SIM_DIR", "sim"),
            ("CAIRN_SIM_SVN", "70000"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("CAIRN_SIM_SVN"), "{e}");
        let e = PremainConfig::from_source(&[
            ("EDG_MARBLE_TYPE", "m"),
            ("CAIRN_SIM_DIR", "sim"),
            ("CAIRN_SIM_DEBUG", "maybe"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("CAIRN_SIM_DEBUG"), "{e}");
        let e = PremainConfig::from_source(&[
            ("EDG_MARBLE_TYPE", "m"),
            ("EDG_MARBLE_COORDINATOR_ADDR", "host:notaport"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("EDG_MARBLE_COORDINATOR_ADDR"), "{e}");
    }
}
