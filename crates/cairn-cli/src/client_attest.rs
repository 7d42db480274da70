//! Coordinator attestation for the client commands (MarbleRun's era check, with Cairn's verifier)
//! and the cached Coordinator root.

use std::path::{Path, PathBuf};

use base64::Engine;
use cairn_attest::{PackagePolicy, TrustRoot, Verdict};

use super::client_http::{ApiError, Client, ServerTrust};

/// A refusal: the Coordinator or manifest checked is not acceptable (exit 1).
#[derive(Debug)]
pub(crate) struct Refusal(pub(crate) String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Expected Coordinator identity (the era config, with flag overrides applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EraConfig {
    pub(crate) unique_id: Option<String>,
    pub(crate) signer_id: Option<String>,
    pub(crate) security_version: Option<u64>,
    pub(crate) product_id: Option<u64>,
    pub(crate) debug: bool,
    pub(crate) accepted_tcb_statuses: Option<Vec<String>>,
    pub(crate) accepted_advisories: Option<Vec<String>>,
}

impl EraConfig {
    /// Parse MarbleRun's era JSON; keys match case-insensitively (Go `encoding/json`).
    pub(crate) fn parse(bytes: &[u8]) -> anyhow::Result<EraConfig> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("era config is not JSON: {e}"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("era config must be a JSON object"))?;
        let mut c = EraConfig::default();
        for (k, v) in obj {
            let bad = |what: &str| anyhow::anyhow!("era config key {k:?}: expected {what}");
            match k.to_ascii_lowercase().as_str() {
                "uniqueid" => c.unique_id = opt_str(v).map_err(|_| bad("a hex string"))?,
                "signerid" => c.signer_id = opt_str(v).map_err(|_| bad("a hex string"))?,
                "securityversion" => {
                    c.security_version = opt_u64(v).map_err(|_| bad("a number"))?
                }
                "productid" => c.product_id = opt_u64(v).map_err(|_| bad("a number"))?,
                "debug" => c.debug = v.as_bool().ok_or_else(|| bad("true or false"))?,
                "acceptedtcbstatuses" => {
                    c.accepted_tcb_statuses = opt_list(v).map_err(|_| bad("a list of strings"))?
                }
                "acceptedadvisories" => {
                    c.accepted_advisories = opt_list(v).map_err(|_| bad("a list of strings"))?
                }
                "insecureskipverify" | "nonce" => {
                    eprintln!("warning: era config key {k:?} is ignored; use --insecure / --nonce");
                }
                _ => eprintln!("warning: unknown era config key {k:?} ignored"),
            }
        }
        Ok(c)
    }

    fn is_empty(&self) -> bool {
        self.unique_id.is_none()
            && self.signer_id.is_none()
            && self.security_version.is_none()
            && self.product_id.is_none()
    }

    /// The package policy for the verifier. Debug: a debug enclave is refused unless `debug`;
    /// a production enclave passes either way (MarbleRun's client rule).
    pub(crate) fn policy(&self, v: &Verdict) -> Result<PackagePolicy, Refusal> {
        let id = |field: &'static str, s: &Option<String>| -> Result<Option<[u8; 32]>, Refusal> {
            s.as_deref()
                .map(|h| cairn_attest::parse_id_hex(field, h).map_err(|e| Refusal(e.to_string())))
                .transpose()
        };
        if v.debug && !self.debug {
            return Err(Refusal(
                "the Coordinator runs as a DEBUG enclave (its memory is readable by the host); \
                 refused. Pass --debug (or \"Debug\": true) only for test deployments"
                    .into(),
            ));
        }
        Ok(PackagePolicy {
            unique_id: id("UniqueID", &self.unique_id)?,
            signer_id: id("SignerID", &self.signer_id)?,
            product_id: self.product_id,
            security_version: self.security_version,
            debug: v.debug,
            accepted_tcb_statuses: self
                .accepted_tcb_statuses
                .clone()
                .unwrap_or_else(|| vec!["UpToDate".into(), "SWHardeningNeeded".into()]),
            accepted_advisories: self.accepted_advisories.clone().unwrap_or_default(),
        })
    }
}

fn opt_str(v: &serde_json::Value) -> Result<Option<String>, ()> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.trim().to_string())),
        _ => Err(()),
    }
}

fn opt_u64(v: &serde_json::Value) -> Result<Option<u64>, ()> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n.as_u64().map(Some).ok_or(()),
        _ => Err(()),
    }
}

fn opt_list(v: &serde_json::Value) -> Result<Option<Vec<String>>, ()> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or(()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(()),
    }
}

/// Split a comma list flag.
pub(crate) fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Verification inputs collected from the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct VerifyInputs {
    pub(crate) era_config: Option<PathBuf>,
    pub(crate) overrides: EraConfig,
    pub(crate) simulation_root: Option<PathBuf>,
    pub(crate) collateral: Option<PathBuf>,
    pub(crate) nonce: Option<String>,
}

/// A successfully attested Coordinator.
pub(crate) struct Attested {
    pub(crate) root_der: Vec<u8>,
    pub(crate) intermediate_der: Option<Vec<u8>>,
    pub(crate) verdict: Verdict,
    pub(crate) warnings: Vec<String>,
}

impl VerifyInputs {
    /// The effective expectation: era file (or ./era-config.json, as MarbleRun) + flag overrides.
    pub(crate) fn expectation(&self) -> anyhow::Result<EraConfig> {
        let mut base = match &self.era_config {
            Some(p) => EraConfig::parse(&read(p, "era config")?)?,
            None if Path::new("era-config.json").is_file() => {
                eprintln!(
                    "note: using ./era-config.json (give --era-config FILE to choose another)"
                );
                EraConfig::parse(&read(Path::new("era-config.json"), "era config")?)?
            }
            None => EraConfig::default(),
        };
        let o = &self.overrides;
        if o.unique_id.is_some() {
            base.unique_id = o.unique_id.clone();
        }
        if o.signer_id.is_some() {
            base.signer_id = o.signer_id.clone();
        }
        if o.security_version.is_some() {
            base.security_version = o.security_version;
        }
        if o.product_id.is_some() {
            base.product_id = o.product_id;
        }
        base.debug |= o.debug;
        if o.accepted_tcb_statuses.is_some() {
            base.accepted_tcb_statuses = o.accepted_tcb_statuses.clone();
        }
        if o.accepted_advisories.is_some() {
            base.accepted_advisories = o.accepted_advisories.clone();
        }
        if base.is_empty() {
            anyhow::bail!(
                "attestation configuration is missing: say which Coordinator you expect with \
                 --era-config FILE (MarbleRun's coordinator-era.json) or --unique-id HEX, or \
                 --signer-id HEX --product-id N --security-version N. To skip attestation \
                 (not recommended) pass --insecure"
            );
        }
        Ok(base)
    }

    fn trust_root(&self) -> anyhow::Result<TrustRoot> {
        match &self.simulation_root {
            None => Ok(TrustRoot::IntelProduction),
            Some(p) => Ok(TrustRoot::Simulation(read_cert(p)?)),
        }
    }

    fn collateral(&self) -> anyhow::Result<cairn_attest::Collateral> {
        let path = match (&self.collateral, &self.simulation_root) {
            (Some(c), _) => c.clone(),
            (None, Some(root)) => root
                .parent()
                .unwrap_or(Path::new("."))
                .join(cairn_platform::COLLATERAL_FILE),
            (None, None) => anyhow::bail!(
                "no collateral for an Intel-rooted quote: give --collateral FILE (dcap-qvl \
                 QuoteCollateralV3 JSON, e.g. fetched from your PCCS)"
            ),
        };
        cairn_platform::FileCollateral::new(&path)
            .load()
            .map_err(|e| anyhow::anyhow!("collateral {}: {e}", path.display()))
    }

    /// Fetch the quote and chain without TLS verification and check everything (exit-1 failures
    /// are [`Refusal`]s; network and usage problems are other errors).
    pub(crate) async fn attest(&self, addr: &str) -> anyhow::Result<Attested> {
        let expect = self.expectation()?;
        let trust_root = self.trust_root()?;
        let collateral = self.collateral()?;
        let nonce = self.nonce.clone().unwrap_or_default().into_bytes();
        let client = Client::new(addr, &ServerTrust::Unverified)?;
        let path = if nonce.is_empty() {
            "/api/v2/quote".to_string()
        } else {
            format!(
                "/api/v2/quote?nonce={}",
                base64::engine::general_purpose::URL_SAFE.encode(&nonce)
            )
        };
        let (cert_pem, quote) = match client
            .jsend::<cairn_api::QuoteV2>(http::Method::GET, &path, None)
            .await
        {
            Ok(Some(q)) => (q.cert, q.quote),
            Ok(None) => anyhow::bail!("the Coordinator sent an empty quote answer"),
            Err(e)
                if nonce.is_empty()
                    && e.downcast_ref::<ApiError>()
                        .is_some_and(|a| a.http_status == 405) =>
            {
                match client
                    .jsend::<cairn_api::QuoteV1>(http::Method::GET, "/quote", None)
                    .await?
                {
                    Some(q) => (q.Cert, q.Quote),
                    None => anyhow::bail!("the Coordinator sent an empty quote answer"),
                }
            }
            Err(e) => return Err(e),
        };
        let chain = pem_certs(cert_pem.as_bytes()).map_err(|e| {
            Refusal(format!(
                "the Coordinator's certificate chain is unreadable: {e}"
            ))
        })?;
        let (intermediate_der, root_der) = match chain.as_slice() {
            [root] => (None, root.clone()),
            [inter, root] => (Some(inter.clone()), root.clone()),
            _ => {
                return Err(Refusal(format!(
                "expected the chain intermediate, root from the Coordinator, got {} certificates",
                chain.len()
            ))
                .into())
            }
        };
        let quote = quote.filter(|q| !q.is_empty()).ok_or_else(|| {
            Refusal(
                "the Coordinator sent no quote (a MarbleRun Coordinator in simulation mode); it \
                 cannot be attested. Use --insecure only if you accept that"
                    .into(),
            )
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let verdict = cairn_attest::verify(&quote, &collateral, now, &trust_root)
            .map_err(|e| Refusal(format!("quote verification failed ({trust_root}): {e}")))?;
        cairn_attest::check_binding(&verdict, &root_der, &nonce).map_err(|e| {
            Refusal(format!(
                "the quote does not vouch for the root certificate the Coordinator presents: {e}"
            ))
        })?;
        let policy = expect.policy(&verdict)?;
        cairn_attest::check_policy(&verdict, &policy)
            .map_err(|e| Refusal(format!("the Coordinator is not the expected one: {e}")))?;
        let mut warnings = Vec::new();
        if !verdict.tcb_status.eq_ignore_ascii_case("UpToDate") {
            warnings.push(format!(
                "TCB status is {} (accepted by policy); advisories: {:?}",
                verdict.tcb_status, verdict.advisory_ids
            ));
        }
        Ok(Attested {
            root_der,
            intermediate_der,
            verdict,
            warnings,
        })
    }
}

pub(crate) fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
}

/// Read a certificate file, PEM (first block) or DER.
pub(crate) fn read_cert(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read(path, "certificate")?;
    if bytes.starts_with(b"-----BEGIN") || bytes.iter().take(64).all(|b| b.is_ascii()) {
        let certs = pem_certs(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
        certs
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("{}: no CERTIFICATE block", path.display()))
    } else {
        Ok(bytes)
    }
}

/// All CERTIFICATE blocks of a PEM text.
pub(crate) fn pem_certs(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let blocks = pem::parse_many(bytes)?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect())
}

pub(crate) fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Where the verified Coordinator root is cached: `--coordinator-cert`, else
/// `$XDG_CONFIG_HOME/cairn/coordinator-root.pem`, else `~/.config/cairn/coordinator-root.pem`.
pub(crate) fn cache_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config"),
            None => anyhow::bail!(
                "cannot find a config directory (neither XDG_CONFIG_HOME nor HOME is set); give --coordinator-cert FILE"
            ),
        },
    };
    Ok(base.join("cairn").join("coordinator-root.pem"))
}

/// Read the cached root, if any.
pub(crate) fn load_cached_root(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    if !path.exists() {
        return Ok(None);
    }
    read_cert(path).map(Some)
}

/// Cache the attested root (PEM).
pub(crate) fn save_cached_root(path: &Path, root_der: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, to_pem(root_der))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn era_keys_are_case_insensitive() {
        let a = EraConfig::parse(
            br#"{"UniqueID":"aa","SignerID":"bb","SecurityVersion":2,"ProductID":3,"Debug":true,
                "AcceptedTCBStatuses":["UpToDate"],"AcceptedAdvisories":["INTEL-SA-00615"]}"#,
        )
        .unwrap();
        let b = EraConfig::parse(
            br#"{"uniqueId":"aa","signerID":"bb","securityVersion":2,"productID":3,"debug":true,
                "acceptedTcbStatuses":["UpToDate"],"acceptedadvisories":["INTEL-SA-00615"]}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.security_version, Some(2));
        assert_eq!(a.accepted_tcb_statuses, Some(vec!["UpToDate".to_string()]));
        assert!(EraConfig::parse(br#"{"SecurityVersion":"2"}"#).is_err());
        assert!(EraConfig::parse(b"[]").is_err());
    }

    #[test]
    fn missing_expectation_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = VerifyInputs {
            era_config: Some(dir.path().join("none.json")),
            ..Default::default()
        };
        assert!(inputs.expectation().is_err());
        std::fs::write(dir.path().join("e.json"), b"{}").unwrap();
        let inputs = VerifyInputs {
            era_config: Some(dir.path().join("e.json")),
            ..Default::default()
        };
        let e = inputs.expectation().unwrap_err().to_string();
        assert!(e.contains("attestation configuration is missing"), "{e}");
        assert!(e.contains("--insecure"), "{e}");
    }

    #[test]
    fn flags_override_era_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("e.json"),
            br#"{"SignerID":"bb","SecurityVersion":2,"ProductID":3}"#,
        )
        .unwrap();
        let inputs = VerifyInputs {
            era_config: Some(dir.path().join("e.json")),
            overrides: EraConfig {
                security_version: Some(5),
                accepted_tcb_statuses: Some(vec!["OutOfDate".into()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = inputs.expectation().unwrap();
        assert_eq!(e.security_version, Some(5));
        assert_eq!(e.product_id, Some(3));
        assert_eq!(e.accepted_tcb_statuses, Some(vec!["OutOfDate".to_string()]));
    }

    #[test]
    fn cache_path_rules() {
        assert_eq!(
            cache_path(Some(Path::new("/x/root.pem"))).unwrap(),
            PathBuf::from("/x/root.pem")
        );
    }
}
