//! Commands that talk to a Coordinator: status, verify, certificate, manifest set/get/verify.
//!
//! Attesting commands fetch the quote without TLS verification, verify it (trust root, binding to
//! the root certificate, expected measurement, TCB), then talk to the Coordinator over TLS pinned
//! to the attested root. `--insecure` skips all of that with a warning on stderr.

#[path = "client_attest.rs"]
pub(crate) mod client_attest;
#[path = "client_http.rs"]
pub(crate) mod client_http;

use std::path::{Path, PathBuf};

use base64::Engine;
use clap::Subcommand;
use serde_json::json;

use self::client_attest::{
    cache_path, comma_list, load_cached_root, pem_certs, save_cached_root, to_pem, Attested,
    EraConfig, Refusal, VerifyInputs,
};
use self::client_http::{Client, ServerTrust};
use crate::CmdResult;

/// Flags shared by every client command.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ConnArgs {
    /// Skip attestation and certificate checks (prints a warning). Only for tests and demos.
    #[arg(short = 'i', long)]
    pub(crate) insecure: bool,
    /// Cached Coordinator root (PEM) [default: $XDG_CONFIG_HOME/cairn/coordinator-root.pem].
    #[arg(long, value_name = "FILE")]
    pub(crate) coordinator_cert: Option<PathBuf>,
}

/// How to attest the Coordinator (MarbleRun's era config, or flags).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct AttestArgs {
    /// Expected identity as MarbleRun era JSON (UniqueID, SignerID, SecurityVersion, ProductID,
    /// Debug, AcceptedTCBStatuses, AcceptedAdvisories; keys case-insensitive).
    #[arg(long, value_name = "FILE")]
    pub(crate) era_config: Option<PathBuf>,
    /// Expected MRENCLAVE (64 hex).
    #[arg(long, value_name = "HEX")]
    pub(crate) unique_id: Option<String>,
    /// Expected MRSIGNER (64 hex); needs --product-id and --security-version.
    #[arg(long, value_name = "HEX")]
    pub(crate) signer_id: Option<String>,
    /// Expected ISVPRODID.
    #[arg(long, value_name = "N")]
    pub(crate) product_id: Option<u64>,
    /// Minimum ISVSVN.
    #[arg(long, value_name = "N")]
    pub(crate) security_version: Option<u64>,
    /// Accept a debug-mode Coordinator enclave (never in production).
    #[arg(long)]
    pub(crate) debug: bool,
    /// Accepted TCB statuses besides UpToDate (comma list) [default: UpToDate,SWHardeningNeeded].
    #[arg(long, value_name = "LIST")]
    pub(crate) accepted_tcb_statuses: Option<String>,
    /// Accepted advisory IDs for SWHardeningNeeded (comma list; empty accepts all).
    #[arg(long, value_name = "LIST")]
    pub(crate) accepted_advisories: Option<String>,
    /// Simulated platform root (PEM or DER; `cairn sim init DIR` writes DIR/root.pem).
    #[arg(long, value_name = "FILE")]
    pub(crate) simulation_root: Option<PathBuf>,
    /// Collateral JSON [default for a simulation root: collateral.json next to it].
    #[arg(long, value_name = "FILE")]
    pub(crate) collateral: Option<PathBuf>,
    /// Nonce (raw string bytes) for a fresh quote over SHA-256(root ‖ nonce).
    #[arg(long)]
    pub(crate) nonce: Option<String>,
}

impl AttestArgs {
    pub(crate) fn inputs(&self) -> VerifyInputs {
        VerifyInputs {
            era_config: self.era_config.clone(),
            overrides: EraConfig {
                unique_id: self.unique_id.clone(),
                signer_id: self.signer_id.clone(),
                security_version: self.security_version,
                product_id: self.product_id,
                debug: self.debug,
                accepted_tcb_statuses: self.accepted_tcb_statuses.as_deref().map(comma_list),
                accepted_advisories: self.accepted_advisories.as_deref().map(comma_list),
            },
            simulation_root: self.simulation_root.clone(),
            collateral: self.collateral.clone(),
            nonce: self.nonce.clone(),
        }
    }
}

/// Arguments of `cairn status`.
#[derive(clap::Args)]
#[command(
    after_help = "Uses the Coordinator root cached by `cairn verify`.\n\nExample:\n  \
    cairn status localhost:4433\n  cairn status localhost:4433 --insecure --json"
)]
pub(crate) struct StatusArgs {
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// Print one JSON object {"code", "message"}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `cairn verify`.
#[derive(clap::Args)]
#[command(
    after_help = "Checks the quote's signature chain against the trust root, that it covers \
    the Coordinator's root certificate, the expected measurement and the TCB status, then caches \
    the root so later commands pin it.\n\nExamples:\n  \
    cairn verify localhost:4433 --simulation-root sim/root.pem --unique-id 3f2a...\n  \
    cairn verify coordinator:4433 --era-config coordinator-era.json --collateral collateral.json"
)]
pub(crate) struct VerifyArgs {
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
    /// Where to cache the verified root [default: $XDG_CONFIG_HOME/cairn/coordinator-root.pem].
    #[arg(long, value_name = "FILE")]
    pub(crate) coordinator_cert: Option<PathBuf>,
    /// Print one JSON object with the verdict.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which certificate `cairn certificate` fetches.
#[derive(clap::Args)]
pub(crate) struct CertArgs {
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    /// Output file [default: marblerunRootCA.crt / marblerunIntermediateCA.crt / marblerunChainCA.crt].
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

/// `cairn certificate` subcommands.
#[derive(Subcommand)]
pub(crate) enum CertificateCmd {
    /// The Coordinator root certificate (stays valid across manifest updates).
    #[command(
        after_help = "Example:\n  cairn certificate root localhost:4433 --simulation-root sim/root.pem \
        --unique-id 3f2a... -o root.pem"
    )]
    Root(CertArgs),
    /// The Coordinator intermediate certificate (changes with every manifest update).
    #[command(
        after_help = "Example:\n  cairn certificate intermediate localhost:4433 --era-config era.json -o intermediate.pem"
    )]
    Intermediate(CertArgs),
    /// Intermediate then root, PEM.
    #[command(
        after_help = "Example:\n  cairn certificate chain localhost:4433 --insecure -o chain.pem"
    )]
    Chain(CertArgs),
}

/// Arguments of `cairn manifest set`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  cairn manifest set manifest.json localhost:4433 \
    --simulation-root sim/root.pem --unique-id 3f2a... --recoverydata recovery.json"
)]
pub(crate) struct ManifestSetArgs {
    /// Manifest file (JSON or YAML; YAML is converted to JSON first).
    pub(crate) file: PathBuf,
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    /// Write the returned recovery secrets as JSON to this file (default: print them).
    #[arg(short = 'r', long, value_name = "OUT")]
    pub(crate) recoverydata: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
    /// Print one JSON object {"fingerprint", "recoverySecrets"}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `cairn manifest get`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  cairn manifest get localhost:4433 --era-config era.json --signature"
)]
pub(crate) struct ManifestGetArgs {
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    /// Wrap as {"ManifestSignature": fingerprint, "Manifest": ...}.
    #[arg(short = 's', long)]
    pub(crate) signature: bool,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

/// Arguments of `cairn manifest verify`.
#[derive(clap::Args)]
#[command(
    after_help = "Compares SHA-256 of the exact bytes (YAML converted to JSON first).\n\n\
    Example:\n  cairn manifest verify manifest.json localhost:4433 --era-config era.json"
)]
pub(crate) struct ManifestVerifyArgs {
    /// Manifest file or 64-hex fingerprint.
    pub(crate) file_or_hash: String,
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
    /// Print one JSON object {"match", "local", "coordinator", "whitespaceOnly"}.
    #[arg(long)]
    pub(crate) json: bool,
}

// ---------- commands ----------

pub(crate) fn status(a: StatusArgs) -> CmdResult {
    run(async move {
        let trust = pinned_or_insecure(&a.conn, "status")?;
        let client = Client::new(&a.addr, &trust)?;
        let st: cairn_api::StatusV2 = client
            .jsend(http::Method::GET, "/api/v2/status", None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no status"))?;
        if a.json {
            println!("{}", json!({"code": st.code, "message": st.message}));
        } else {
            println!("{}: {}", st.code, st.message);
        }
        Ok(0)
    })
}

pub(crate) fn verify(a: VerifyArgs) -> CmdResult {
    let json_out = a.json;
    let result = run(async move {
        let att = a.attest.inputs().attest(&a.addr).await?;
        let cache = cache_path(a.coordinator_cert.as_deref())?;
        save_cached_root(&cache, &att.root_der)?;
        print_warnings(&att);
        let root_fp = hex::encode(cairn_crypto::sha256(&att.root_der));
        if a.json {
            println!(
                "{}",
                json!({
                    "verified": true, "error": null,
                    "trust_root": att.verdict.trust_root,
                    "mrenclave": hex::encode(att.verdict.mr_enclave),
                    "mrsigner": hex::encode(att.verdict.mr_signer),
                    "isv_prod_id": att.verdict.isv_prod_id,
                    "isv_svn": att.verdict.isv_svn,
                    "debug": att.verdict.debug,
                    "tcb_status": att.verdict.tcb_status,
                    "advisory_ids": att.verdict.advisory_ids,
                    "root_fingerprint": root_fp,
                    "cached_root": cache.display().to_string(),
                })
            );
        } else {
            println!("Coordinator at {} verified.", a.addr);
            println!("  trust root:   {}", att.verdict.trust_root);
            println!("  UniqueID:     {}", hex::encode(att.verdict.mr_enclave));
            println!("  SignerID:     {}", hex::encode(att.verdict.mr_signer));
            println!(
                "  ProductID:    {}   SecurityVersion: {}   Debug: {}",
                att.verdict.isv_prod_id, att.verdict.isv_svn, att.verdict.debug
            );
            println!("  TCB status:   {}", att.verdict.tcb_status);
            println!("  root SHA-256: {root_fp}");
            println!(
                "Root cached in {} (later commands pin it).",
                cache.display()
            );
        }
        Ok(0)
    });
    if json_out {
        // exactly one JSON object, also on failure (exit code unchanged)
        if let Err(e) = &result {
            let msg = match e.downcast_ref::<Refusal>() {
                Some(r) => r.0.clone(),
                None => format!("{e:#}"),
            };
            println!("{}", json!({"verified": false, "error": msg}));
        }
    }
    finish(result)
}

pub(crate) fn certificate(c: CertificateCmd) -> CmdResult {
    let (kind, a) = match c {
        CertificateCmd::Root(a) => ("root", a),
        CertificateCmd::Intermediate(a) => ("intermediate", a),
        CertificateCmd::Chain(a) => ("chain", a),
    };
    finish(run(async move {
        let (root, intermediate) = if a.conn.insecure {
            warn_insecure();
            let (root, inter) = fetch_chain_unverified(&a.addr).await?;
            (root, inter)
        } else {
            let att = a.attest.inputs().attest(&a.addr).await?;
            print_warnings(&att);
            let cache = cache_path(a.conn.coordinator_cert.as_deref())?;
            if let Some(cached) = load_cached_root(&cache)? {
                if cached != att.root_der {
                    return Err(Refusal(format!(
                        "the Coordinator's root certificate changed since it was cached in {}; if \
                         that is expected (a new deployment), run `cairn verify {} ...` to re-attest \
                         and update the cache",
                        cache.display(),
                        a.addr
                    ))
                    .into());
                }
            }
            (att.root_der, att.intermediate_der)
        };
        let (pem, default) = match kind {
            "root" => (to_pem(&root), "marblerunRootCA.crt"),
            "intermediate" => (
                to_pem(&intermediate.ok_or_else(|| {
                    anyhow::anyhow!("the Coordinator sent no intermediate certificate")
                })?),
                "marblerunIntermediateCA.crt",
            ),
            _ => {
                let mut s = intermediate.as_deref().map(to_pem).unwrap_or_default();
                s.push_str(&to_pem(&root));
                (s, "marblerunChainCA.crt")
            }
        };
        let out = a.output.unwrap_or_else(|| PathBuf::from(default));
        std::fs::write(&out, pem)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
        eprintln!(
            "Coordinator {kind} certificate written to {}",
            out.display()
        );
        Ok(0)
    }))
}

pub(crate) fn manifest_set(a: ManifestSetArgs) -> CmdResult {
    finish(run(async move {
        let raw = client_attest::read(&a.file, "manifest")?;
        let body = cairn_manifest::input_to_json(&raw).map_err(|e| {
            let msgs: Vec<String> = e.errors.iter().map(|d| d.to_string()).collect();
            Refusal(format!(
                "{} is neither JSON nor YAML: {}",
                a.file.display(),
                msgs.join("; ")
            ))
        })?;
        let fingerprint = hex::encode(cairn_crypto::sha256(&body));
        let trust = attest_or_insecure(&a.conn, &a.attest, &a.addr, true).await?;
        let client = Client::new(&a.addr, &trust)?;
        let req = cairn_api::ManifestSetReqV2 { manifest: body };
        let resp: Option<cairn_api::ManifestSetResp> = client
            .jsend(
                http::Method::POST,
                "/api/v2/manifest",
                Some(serde_json::to_vec(&req)?),
            )
            .await
            .map_err(|e| match e.downcast_ref::<client_http::ApiError>() {
                Some(api) => Refusal(format!("manifest refused: {api}")).into(),
                None => e,
            })?;
        let resp = resp.unwrap_or_default();
        let recovery_json = serde_json::to_string_pretty(&resp)?;
        let has_secrets = resp.RecoverySecrets.as_ref().is_some_and(|m| !m.is_empty());
        if let Some(out) = &a.recoverydata {
            crate::private_file::write_private(out, recovery_json.as_bytes())?;
            eprintln!("Recovery data written to {}", out.display());
        }
        if a.json {
            let secrets = serde_json::to_value(&resp)?;
            println!(
                "{}",
                json!({"fingerprint": fingerprint, "recoverySecrets": secrets["RecoverySecrets"]})
            );
        } else {
            println!("Manifest set. Fingerprint (SHA-256): {fingerprint}");
            if has_secrets && a.recoverydata.is_none() {
                println!("{recovery_json}");
            }
        }
        Ok(0)
    }))
}

pub(crate) fn manifest_get(a: ManifestGetArgs) -> CmdResult {
    finish(run(async move {
        let trust = attest_or_insecure(&a.conn, &a.attest, &a.addr, false).await?;
        let client = Client::new(&a.addr, &trust)?;
        let m: cairn_api::ManifestGetV2 = client
            .jsend(http::Method::GET, "/api/v2/manifest", None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no manifest"))?;
        let raw = m.manifest.unwrap_or_default();
        if raw.is_empty() {
            return Err(Refusal(
                "the Coordinator has no manifest yet (set one with `cairn manifest set`)".into(),
            )
            .into());
        }
        let actual = hex::encode(cairn_crypto::sha256(&raw));
        if !m.manifest_fingerprint.eq_ignore_ascii_case(&actual) {
            return Err(Refusal(format!(
                "the manifest's fingerprint {actual} differs from the one the Coordinator claims ({})",
                m.manifest_fingerprint
            ))
            .into());
        }
        let out = if a.signature {
            let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&raw).into())
            });
            let mut s = serde_json::to_string_pretty(&json!({
                "ManifestSignature": actual,
                "ManifestSignatureRootECDSA": m.manifest_signature_root_ecdsa
                    .map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
                "Manifest": manifest,
            }))?;
            s.push('\n');
            s.into_bytes()
        } else {
            raw
        };
        match &a.output {
            Some(p) => std::fs::write(p, &out)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?,
            None => {
                use std::io::Write;
                let mut so = std::io::stdout();
                so.write_all(&out)?;
                if !out.ends_with(b"\n") {
                    so.write_all(b"\n")?;
                }
            }
        }
        Ok(0)
    }))
}

pub(crate) fn manifest_verify(a: ManifestVerifyArgs) -> CmdResult {
    let json_out = a.json;
    finish(run(async move {
        let local: Local = if is_hex_fingerprint(&a.file_or_hash) {
            Local::Hash(a.file_or_hash.to_ascii_lowercase())
        } else {
            let path = Path::new(&a.file_or_hash);
            let raw = client_attest::read(path, "manifest")?;
            let body = cairn_manifest::input_to_json(&raw).map_err(|e| {
                let msgs: Vec<String> = e.errors.iter().map(|d| d.to_string()).collect();
                Refusal(format!(
                    "{} is neither JSON nor YAML: {}",
                    path.display(),
                    msgs.join("; ")
                ))
            })?;
            Local::Bytes(body)
        };
        let trust = attest_or_insecure(&a.conn, &a.attest, &a.addr, true).await?;
        let client = Client::new(&a.addr, &trust)?;
        let m: cairn_api::ManifestGetV2 = client
            .jsend(http::Method::GET, "/api/v2/manifest", None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no manifest"))?;
        let remote_raw = m.manifest.unwrap_or_default();
        if remote_raw.is_empty() {
            return Err(Refusal("the Coordinator has no manifest yet".into()).into());
        }
        let cmp = match &local {
            Local::Hash(h) => compare_hash(h, &remote_raw),
            Local::Bytes(b) => compare_manifest(b, &remote_raw),
        };
        if json_out {
            println!(
                "{}",
                json!({"match": cmp.matches, "local": cmp.local, "coordinator": cmp.coordinator,
                       "whitespaceOnly": cmp.whitespace_only})
            );
        }
        if cmp.matches {
            if !json_out {
                println!(
                    "OK: the Coordinator's manifest has fingerprint {}",
                    cmp.coordinator
                );
            }
            Ok(0)
        } else {
            Err(Refusal(cmp.message()).into())
        }
    }))
}

// ---------- FR-07: fingerprint comparison ----------

enum Local {
    Hash(String),
    Bytes(Vec<u8>),
}

/// Result of comparing a local manifest with the Coordinator's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub(crate) matches: bool,
    pub(crate) local: String,
    pub(crate) coordinator: String,
    pub(crate) whitespace_only: bool,
}

impl Comparison {
    pub(crate) fn message(&self) -> String {
        let mut s = format!(
            "manifest mismatch: local SHA-256 {} differs from the Coordinator's {}",
            self.local, self.coordinator
        );
        if self.whitespace_only {
            s.push_str(
                ". The difference is whitespace only (for example a trailing newline added by an \
                 editor); the fingerprint covers the exact bytes, so use the file exactly as it was \
                 uploaded (`cairn manifest get` prints it)",
            );
        }
        s
    }
}

fn is_hex_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) && !Path::new(s).exists()
}

/// Compare exact bytes (a security check: no normalisation); when they differ, detect whether
/// only ASCII whitespace differs, to say so.
pub(crate) fn compare_manifest(local: &[u8], remote: &[u8]) -> Comparison {
    let l = hex::encode(cairn_crypto::sha256(local));
    let r = hex::encode(cairn_crypto::sha256(remote));
    let matches = l == r;
    let strip = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect()
    };
    Comparison {
        matches,
        whitespace_only: !matches && strip(local) == strip(remote),
        local: l,
        coordinator: r,
    }
}

fn compare_hash(local_hex: &str, remote: &[u8]) -> Comparison {
    let r = hex::encode(cairn_crypto::sha256(remote));
    Comparison {
        matches: r == local_hex,
        local: local_hex.to_string(),
        coordinator: r,
        whitespace_only: false,
    }
}

// ---------- helpers ----------

pub(crate) fn run(fut: impl std::future::Future<Output = CmdResult>) -> CmdResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// Map a [`Refusal`] to exit code 1 (other errors stay exit 2 in main).
pub(crate) fn finish(r: CmdResult) -> CmdResult {
    match r {
        Err(e) => match e.downcast_ref::<Refusal>() {
            Some(r) => {
                eprintln!("error: {}", r.0);
                Ok(1)
            }
            None => Err(e),
        },
        ok => ok,
    }
}

pub(crate) fn warn_insecure() {
    eprintln!(
        "WARNING: --insecure: the Coordinator is NOT attested and its certificate is NOT checked. \
         Anyone on the network path could impersonate it. Use only for tests."
    );
}

pub(crate) fn print_warnings(att: &Attested) {
    for w in &att.warnings {
        eprintln!("warning: {w}");
    }
}

/// For commands that only use the cached root (MarbleRun's `status`).
pub(crate) fn pinned_or_insecure(conn: &ConnArgs, cmd: &str) -> anyhow::Result<ServerTrust> {
    if conn.insecure {
        warn_insecure();
        return Ok(ServerTrust::Unverified);
    }
    let cache = cache_path(conn.coordinator_cert.as_deref())?;
    match load_cached_root(&cache)? {
        Some(root) => Ok(ServerTrust::Pinned(root)),
        None => anyhow::bail!(
            "no cached Coordinator root in {}: run `cairn verify HOST:PORT ...` first (it attests \
             the Coordinator and caches its root), or pass --insecure to `cairn {cmd}`",
            cache.display()
        ),
    }
}

/// Attest (caching the root when `save`) and pin, or skip everything under --insecure.
async fn attest_or_insecure(
    conn: &ConnArgs,
    attest: &AttestArgs,
    addr: &str,
    save: bool,
) -> anyhow::Result<ServerTrust> {
    if conn.insecure {
        warn_insecure();
        return Ok(ServerTrust::Unverified);
    }
    let att = attest.inputs().attest(addr).await?;
    print_warnings(&att);
    if save {
        let cache = cache_path(conn.coordinator_cert.as_deref())?;
        save_cached_root(&cache, &att.root_der)?;
    }
    Ok(ServerTrust::Pinned(att.root_der))
}

/// Fetch the chain without any verification (`--insecure`): (root, intermediate).
async fn fetch_chain_unverified(addr: &str) -> anyhow::Result<(Vec<u8>, Option<Vec<u8>>)> {
    let client = Client::new(addr, &ServerTrust::Unverified)?;
    let q: cairn_api::QuoteV2 = client
        .jsend(http::Method::GET, "/api/v2/quote", None)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no certificate chain"))?;
    let certs = pem_certs(q.cert.as_bytes())?;
    match certs.as_slice() {
        [root] => Ok((root.clone(), None)),
        [inter, root] => Ok((root.clone(), Some(inter.clone()))),
        _ => anyhow::bail!(
            "unexpected certificate chain with {} certificates",
            certs.len()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fr07_trailing_newline_is_reported_as_whitespace_only() {
        let base = br#"{"Packages":{"p":{"UniqueID":"aa"}},"Marbles":{"m":{"Package":"p"}}}"#;
        let mut b = base.to_vec();
        b.push(b'\n');
        let c = compare_manifest(&b, base);
        assert!(!c.matches);
        assert!(c.whitespace_only);
        assert_eq!(c.coordinator, hex::encode(cairn_crypto::sha256(base)));
        assert_eq!(c.local, hex::encode(cairn_crypto::sha256(&b)));
        let msg = c.message();
        assert!(
            msg.contains(&c.local) && msg.contains(&c.coordinator),
            "{msg}"
        );
        assert!(msg.contains("whitespace only"), "{msg}");

        let same = compare_manifest(base, base);
        assert!(same.matches && !same.whitespace_only);

        let other = compare_manifest(br#"{"Packages":{}}"#, base);
        assert!(!other.matches && !other.whitespace_only);
        assert!(!other.message().contains("whitespace"));
    }

    #[test]
    fn hash_argument_detection() {
        assert!(is_hex_fingerprint(&"ab".repeat(32)));
        assert!(!is_hex_fingerprint("manifest.json"));
        assert!(!is_hex_fingerprint(&"zz".repeat(32)));
        let c = compare_hash(&"00".repeat(32), b"x");
        assert!(!c.matches);
    }
}
