//! User-authenticated commands: `secret set|get`, `manifest update apply|acknowledge|cancel|get`
//! and `manifest log`.
//!
//! Trust in the Coordinator is established like the other client commands: with attestation
//! flags (`--simulation-root`, `--unique-id`, `--era-config`, ...) the Coordinator is attested
//! first and the connection pinned to the attested root; without them the root cached by
//! `cairn verify` / `cairn manifest set` is pinned (MarbleRun's behaviour for these commands);
//! `--insecure` skips both with a warning. The user is the TLS client certificate given with
//! `--cert`/`--key`. A refusal by the Coordinator (unauthorised user, invalid upload, nothing
//! pending) exits 1 with the Coordinator's message; usage, file and connection errors exit 2.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use clap::Subcommand;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::client_cmds::client_attest::{self, pem_certs, Refusal};
use crate::client_cmds::client_http::{ApiError, Client, Identity, ServerTrust};
use crate::client_cmds::{self, AttestArgs, ConnArgs};
use crate::CmdResult;

/// The user identity flags (MarbleRun's `-c/--cert`, `-k/--key`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct UserArgs {
    /// The user's TLS client certificate (PEM): the one listed under Users in the manifest.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub(crate) cert: PathBuf,
    /// The private key of --cert (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(short = 'k', long, value_name = "FILE")]
    pub(crate) key: PathBuf,
}

/// `cairn secret` subcommands.
#[derive(Subcommand)]
pub(crate) enum SecretCmd {
    /// Upload user-defined secrets (needs WriteSecret on each of them).
    Set(SecretSetArgs),
    /// Read secrets (needs ReadSecret on all of them).
    Get(SecretGetArgs),
}

/// Arguments of `cairn secret set`.
#[derive(clap::Args)]
#[command(
    after_help = "SECRET_FILE is JSON mapping secret names to values, base64 encoded:\n  \
    {\"userKey\": {\"Key\": \"AAECAwQFBgcICQoLDA0ODw==\"},\n   \
    \"userCert\": {\"Cert\": \"<base64 DER or PEM>\", \"Private\": \"<base64 DER or PEM>\"}}\n\
    Keys are case-insensitive. symmetric-key and plain secrets take Key; cert-* secrets take Cert \
    and Private (base64 of PEM is converted to DER). With --from-pem NAME, SECRET_FILE is a PEM \
    file with a CERTIFICATE and/or a PRIVATE KEY block, uploaded as secret NAME.\n\n\
    Examples:\n  cairn secret set secrets.json localhost:4433 --cert alice.crt --key alice.key\n  \
    cairn secret set tls.pem localhost:4433 --from-pem userCert --cert alice.crt --key alice.key"
)]
pub(crate) struct SecretSetArgs {
    /// JSON file {name: {Cert|Private|Key: base64}}, or a PEM file with --from-pem.
    pub(crate) file: PathBuf,
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    /// Treat FILE as PEM (CERTIFICATE and/or PRIVATE KEY) and upload it as the secret NAME.
    #[arg(long, value_name = "NAME")]
    pub(crate) from_pem: Option<String>,
    #[command(flatten)]
    pub(crate) user: UserArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

/// Arguments of `cairn secret get`.
#[derive(clap::Args)]
#[command(
    after_help = "Prints each secret: certificates and keys as PEM, symmetric keys as hex, \
    plain secrets as text (hex when not printable).\n\n\
    Examples:\n  cairn secret get userKey apiKey localhost:4433 --cert alice.crt --key alice.key\n  \
    cairn secret get sharedCert localhost:4433 -c bob.crt -k bob.key -o secrets.json"
)]
pub(crate) struct SecretGetArgs {
    /// Names of the secrets to read.
    #[arg(required = true, num_args = 1.., value_name = "NAME")]
    pub(crate) names: Vec<String>,
    /// Coordinator client API address (HOST:PORT).
    #[arg(required = true)]
    pub(crate) addr: String,
    /// Write the secrets as the Coordinator returned them (JSON, base64 values) to this file.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print one JSON object {name: {type, size, shared, userDefined, validFor, cert, private,
    /// public}} with byte values as lowercase hex.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) user: UserArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

/// `cairn manifest update` subcommands.
#[derive(Subcommand)]
pub(crate) enum UpdateCmd {
    /// Upload an update: a package-only manifest raising SecurityVersions (applied at once), or a
    /// full manifest (applied once every required user acknowledged it).
    Apply(UpdateUploadArgs),
    /// Acknowledge the pending full update by uploading the byte-identical manifest.
    Acknowledge(UpdateUploadArgs),
    /// Cancel the pending full update (needs UpdateManifest).
    Cancel(UpdateCancelArgs),
    /// Print the pending full update, or with --missing the users that still must acknowledge it.
    Get(UpdateGetArgs),
}

/// Arguments of `cairn manifest update apply|acknowledge`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    cairn manifest update apply update.json localhost:4433 --cert admin.crt --key admin.key\n  \
    cairn manifest update acknowledge new-manifest.json localhost:4433 -c bob.crt -k bob.key -r recovery.json")]
pub(crate) struct UpdateUploadArgs {
    /// Manifest file (JSON or YAML; YAML is converted to JSON first).
    pub(crate) file: PathBuf,
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    /// Write new recovery secrets (when the update changes RecoveryKeys) as JSON to this file.
    #[arg(short = 'r', long, value_name = "OUT")]
    pub(crate) recoverydata: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) user: UserArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

/// Arguments of `cairn manifest update cancel`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  \
    cairn manifest update cancel localhost:4433 --cert alice.crt --key alice.key")]
pub(crate) struct UpdateCancelArgs {
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    #[command(flatten)]
    pub(crate) user: UserArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

/// Arguments of `cairn manifest update get`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cairn manifest update get localhost:4433 -o pending.json\n  \
    cairn manifest update get localhost:4433 --missing"
)]
pub(crate) struct UpdateGetArgs {
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    /// Print how many acknowledgements are missing and from whom, instead of the manifest.
    #[arg(long)]
    pub(crate) missing: bool,
    /// Write the pending manifest to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print one JSON object {"manifest" (text), "message", "missingUsers"}.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

/// Arguments of `cairn manifest log`.
#[derive(clap::Args)]
#[command(
    after_help = "Prints the update log, one JSON object per line (manifest set, secrets \
    set, SecurityVersion increases, full updates and their acknowledgements and cancellations).\n\n\
    Example:\n  cairn manifest log localhost:4433 -o update.log"
)]
pub(crate) struct LogArgs {
    /// Coordinator client API address (HOST:PORT).
    pub(crate) addr: String,
    /// Write the log to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

// ---------- commands ----------

pub(crate) fn secret(c: SecretCmd) -> CmdResult {
    match c {
        SecretCmd::Set(a) => secret_set(a),
        SecretCmd::Get(a) => secret_get(a),
    }
}

pub(crate) fn update(c: UpdateCmd) -> CmdResult {
    match c {
        UpdateCmd::Apply(a) => update_upload(a, Upload::Apply),
        UpdateCmd::Acknowledge(a) => update_upload(a, Upload::Acknowledge),
        UpdateCmd::Cancel(a) => update_cancel(a),
        UpdateCmd::Get(a) => update_get(a),
    }
}

fn secret_set(a: SecretSetArgs) -> CmdResult {
    client_cmds::finish(client_cmds::run(async move {
        let bytes = client_attest::read(&a.file, "secret file")?;
        let secrets = match &a.from_pem {
            Some(name) => secret_from_pem(&a.file, name, &bytes)?,
            None => parse_secret_file(&a.file, &bytes)?,
        };
        let identity = load_identity(&a.user)?;
        let trust = server_trust(&a.conn, &a.attest, &a.addr, "secret set").await?;
        let client = Client::with_identity(&a.addr, &trust, Some(identity))?;
        let names: Vec<String> = secrets.keys().cloned().collect();
        let req = cairn_api::SecretsSetReqV2 { secrets };
        client
            .jsend::<serde_json::Value>(
                http::Method::POST,
                "/api/v2/secrets",
                Some(serde_json::to_vec(&req)?),
            )
            .await
            .map_err(refused("secret upload refused"))?;
        println!("Secrets set: {}", names.join(", "));
        Ok(0)
    }))
}

fn secret_get(a: SecretGetArgs) -> CmdResult {
    client_cmds::finish(client_cmds::run(async move {
        let (addr, names) = (&a.addr, &a.names);
        if names.iter().any(String::is_empty) {
            anyhow::bail!("a secret name is empty");
        }
        let identity = load_identity(&a.user)?;
        let trust = server_trust(&a.conn, &a.attest, addr, "secret get").await?;
        let client = Client::with_identity(addr, &trust, Some(identity))?;
        let query: Vec<String> = names
            .iter()
            .map(|n| format!("s={}", percent_encode(n)))
            .collect();
        let path = format!("/api/v2/secrets?{}", query.join("&"));
        let got: cairn_api::SecretsGetV2 = client
            .jsend(http::Method::GET, &path, None)
            .await
            .map_err(refused("reading secrets refused"))?
            .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no secrets"))?;
        if let Some(out) = &a.output {
            let mut text = serde_json::to_string_pretty(&got.secrets)?;
            text.push('\n');
            crate::private_file::write_private(out, text.as_bytes())?;
            eprintln!("Secrets written to {} (mode 0600)", out.display());
        }
        if a.json {
            let obj: serde_json::Map<String, serde_json::Value> = got
                .secrets
                .iter()
                .map(|(k, s)| (k.clone(), secret_json(s)))
                .collect();
            println!("{}", serde_json::Value::Object(obj));
        } else if a.output.is_none() {
            let mut so = std::io::stdout().lock();
            for (name, s) in &got.secrets {
                so.write_all(format_secret(name, s).as_bytes())?;
            }
        }
        Ok(0)
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Upload {
    Apply,
    Acknowledge,
}

fn update_upload(a: UpdateUploadArgs, kind: Upload) -> CmdResult {
    client_cmds::finish(client_cmds::run(async move {
        let raw = client_attest::read(&a.file, "manifest")?;
        let body = cairn_manifest::input_to_json(&raw).map_err(|e| {
            let msgs: Vec<String> = e.errors.iter().map(|d| d.to_string()).collect();
            Refusal(format!(
                "{} is neither JSON nor YAML: {}",
                a.file.display(),
                msgs.join("; ")
            ))
        })?;
        let identity = load_identity(&a.user)?;
        let cmd = match kind {
            Upload::Apply => "manifest update apply",
            Upload::Acknowledge => "manifest update acknowledge",
        };
        let trust = server_trust(&a.conn, &a.attest, &a.addr, cmd).await?;
        let client = Client::with_identity(&a.addr, &trust, Some(identity))?;
        let req = serde_json::to_vec(&cairn_api::ManifestSetReqV2 { manifest: body })?;
        let (missing, users, recovery) = match kind {
            Upload::Apply => {
                let r: cairn_api::UpdateRespV2 = client
                    .jsend(http::Method::POST, "/api/v2/update", Some(req))
                    .await
                    .map_err(refused("manifest update refused"))?
                    .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no update result"))?;
                (
                    r.missing_acknowledgments,
                    r.missing_users.unwrap_or_default(),
                    r.recovery_secrets,
                )
            }
            Upload::Acknowledge => {
                let r: cairn_api::UpdateManifestAckRespV2 = client
                    .jsend(http::Method::POST, "/api/v2/update-manifest", Some(req))
                    .await
                    .map_err(refused("acknowledgement refused"))?
                    .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no update result"))?;
                (
                    r.missing_acknowledgments,
                    r.missing_users,
                    r.recovery_secrets,
                )
            }
        };
        if missing == 0 {
            println!("Manifest update applied.");
        } else {
            println!(
                "Manifest update pending: {}.",
                missing_message(missing, &users)
            );
            println!(
                "Each of them acknowledges with: cairn manifest update acknowledge {} {} --cert USER.crt --key USER.key",
                a.file.display(),
                a.addr
            );
        }
        write_recovery(recovery, a.recoverydata.as_deref())?;
        Ok(0)
    }))
}

fn update_cancel(a: UpdateCancelArgs) -> CmdResult {
    client_cmds::finish(client_cmds::run(async move {
        let identity = load_identity(&a.user)?;
        let trust = server_trust(&a.conn, &a.attest, &a.addr, "manifest update cancel").await?;
        let client = Client::with_identity(&a.addr, &trust, Some(identity))?;
        let r: cairn_api::MessageV2 = client
            .jsend(http::Method::POST, "/api/v2/update-cancel", None)
            .await
            .map_err(refused("cancelling the update refused"))?
            .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no answer"))?;
        println!("{}", r.message);
        Ok(0)
    }))
}

fn update_get(a: UpdateGetArgs) -> CmdResult {
    client_cmds::finish(client_cmds::run(async move {
        let trust = server_trust(&a.conn, &a.attest, &a.addr, "manifest update get").await?;
        let client = Client::new(&a.addr, &trust)?;
        let p: cairn_api::UpdateManifestGetV2 = client
            .jsend(http::Method::GET, "/api/v2/update-manifest", None)
            .await
            .map_err(|e| match e.downcast_ref::<ApiError>() {
                Some(api) if api.http_status == 404 => Refusal(format!(
                    "no manifest update is pending ({})",
                    if api.message.is_empty() {
                        "HTTP 404"
                    } else {
                        &api.message
                    }
                ))
                .into(),
                _ => refused("reading the pending update failed")(e),
            })?
            .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no pending update"))?;
        if a.json {
            println!(
                "{}",
                json!({
                    "manifest": String::from_utf8_lossy(&p.manifest),
                    "message": p.message,
                    "missingUsers": p.missing_users,
                })
            );
            return Ok(0);
        }
        if a.missing {
            println!("{}", p.message);
            for u in &p.missing_users {
                println!("  {u}");
            }
            return Ok(0);
        }
        match &a.output {
            Some(out) => {
                std::fs::write(out, &p.manifest)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
                eprintln!("Pending manifest written to {}", out.display());
            }
            None => {
                let mut so = std::io::stdout().lock();
                so.write_all(&p.manifest)?;
                if !p.manifest.ends_with(b"\n") {
                    so.write_all(b"\n")?;
                }
            }
        }
        eprintln!("{}", p.message);
        Ok(0)
    }))
}

pub(crate) fn log(a: LogArgs) -> CmdResult {
    client_cmds::finish(client_cmds::run(async move {
        let trust = server_trust(&a.conn, &a.attest, &a.addr, "manifest log").await?;
        let client = Client::new(&a.addr, &trust)?;
        let l: cairn_api::UpdateLogV2 = client
            .jsend(http::Method::GET, "/api/v2/update", None)
            .await
            .map_err(refused("reading the update log failed"))?
            .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no update log"))?;
        let mut text = String::new();
        for line in &l.update_log {
            text.push_str(line.trim_end_matches('\n'));
            text.push('\n');
        }
        match &a.output {
            Some(out) => {
                std::fs::write(out, &text)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
                eprintln!(
                    "Update log ({} entries) written to {}",
                    l.update_log.len(),
                    out.display()
                );
            }
            None => std::io::stdout().write_all(text.as_bytes())?,
        }
        Ok(0)
    }))
}

// ---------- helpers ----------

/// True when any attestation flag was given (then the Coordinator is attested, not just pinned
/// to the cached root).
fn attestation_requested(a: &AttestArgs) -> bool {
    a.era_config.is_some()
        || a.unique_id.is_some()
        || a.signer_id.is_some()
        || a.product_id.is_some()
        || a.security_version.is_some()
        || a.simulation_root.is_some()
        || a.collateral.is_some()
        || a.nonce.is_some()
}

/// `--insecure`: no checks; attestation flags: attest and pin; otherwise pin the cached root.
async fn server_trust(
    conn: &ConnArgs,
    attest: &AttestArgs,
    addr: &str,
    cmd: &str,
) -> anyhow::Result<ServerTrust> {
    if conn.insecure || !attestation_requested(attest) {
        return client_cmds::pinned_or_insecure(conn, cmd);
    }
    let att = attest.inputs().attest(addr).await?;
    client_cmds::print_warnings(&att);
    Ok(ServerTrust::Pinned(att.root_der))
}

/// Map the Coordinator's `fail`/`error` answers to a refusal (exit 1) carrying its message.
fn refused(what: &'static str) -> impl Fn(anyhow::Error) -> anyhow::Error {
    move |e| match e.downcast_ref::<ApiError>() {
        Some(api) => Refusal(format!("{what}: {api}")).into(),
        None => e,
    }
}

/// Load `--cert` (PEM chain, or one DER certificate) and `--key` (PEM or DER).
fn load_identity(u: &UserArgs) -> anyhow::Result<Identity> {
    let cert_bytes = client_attest::read(&u.cert, "user certificate")?;
    let chain: Vec<CertificateDer<'static>> = if looks_like_pem(&cert_bytes) {
        pem_certs(&cert_bytes)
            .map_err(|e| anyhow::anyhow!("--cert {}: not a PEM file: {e}", u.cert.display()))?
            .into_iter()
            .map(CertificateDer::from)
            .collect()
    } else {
        vec![CertificateDer::from(cert_bytes)]
    };
    if chain.is_empty() {
        anyhow::bail!(
            "--cert {}: no CERTIFICATE block (give the user's PEM certificate from the manifest's Users)",
            u.cert.display()
        );
    }
    let key_bytes = client_attest::read(&u.key, "user key")?;
    let key = if looks_like_pem(&key_bytes) {
        PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
            anyhow::anyhow!(
                "--key {}: no usable private key ({e}); expected a PEM \"PRIVATE KEY\", \
                 \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block",
                u.key.display()
            )
        })?
    } else {
        PrivateKeyDer::try_from(key_bytes).map_err(|e| {
            anyhow::anyhow!(
                "--key {}: not a DER private key: {e}; expected PEM or DER PKCS#8/PKCS#1/SEC1",
                u.key.display()
            )
        })?
    };
    Ok(Identity {
        chain,
        key,
        source: format!("--cert {} / --key {}", u.cert.display(), u.key.display()),
    })
}

fn looks_like_pem(b: &[u8]) -> bool {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(0);
    b[start..].starts_with(b"-----BEGIN")
}

/// Parse a secrets file `{name: {Cert|Private|Key: base64}}` (keys case-insensitive). Errors
/// name the file, the secret and the field.
fn parse_secret_file(
    path: &Path,
    bytes: &[u8],
) -> anyhow::Result<BTreeMap<String, cairn_api::UserSecret>> {
    let f = path.display();
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Refusal(format!(
            "{f} is not JSON: {e} (expected {{\"NAME\": {{\"Key\": \"BASE64\"}}}}; for a PEM file use --from-pem NAME)"
        ))
    })?;
    let obj = v.as_object().ok_or_else(|| {
        Refusal(format!(
            "{f}: expected a JSON object mapping secret names to {{\"Cert\"|\"Private\"|\"Key\": BASE64}}"
        ))
    })?;
    if obj.is_empty() {
        return Err(Refusal(format!("{f}: no secrets in the file")).into());
    }
    let mut out = BTreeMap::new();
    for (name, entry) in obj {
        let fields = entry.as_object().ok_or_else(|| {
            Refusal(format!(
                "{f}: secret {name:?}: expected an object with Cert, Private or Key, found {entry}"
            ))
        })?;
        for k in fields.keys() {
            if !matches!(k.to_ascii_lowercase().as_str(), "cert" | "private" | "key") {
                eprintln!(
                    "warning: {f}: {name}.{k} is ignored (a secret takes Cert, Private and Key; \
                     the public key is derived from Cert)"
                );
            }
        }
        let mut s: cairn_api::UserSecret = serde_json::from_value(entry.clone())
            .map_err(|e| Refusal(format!("{f}: secret {name:?}: {e}")))?;
        if s.Cert.is_none() && s.Private.is_none() && s.Key.is_none() {
            return Err(Refusal(format!(
                "{f}: secret {name:?} sets none of Cert, Private, Key"
            ))
            .into());
        }
        if let Some(c) = s.Cert.take() {
            s.Cert =
                Some(pem_to_der(&c, "CERTIFICATE").map_err(|e| {
                    Refusal(format!("{f}: secret {name:?}: Cert holds PEM that {e}"))
                })?);
        }
        if let Some(p) = s.Private.take() {
            s.Private = Some(pem_to_der(&p, "PRIVATE KEY").map_err(|e| {
                Refusal(format!("{f}: secret {name:?}: Private holds PEM that {e}"))
            })?);
        }
        out.insert(name.clone(), s);
    }
    Ok(out)
}

/// Bytes that are PEM text become the DER of their first block whose tag contains `tag`;
/// anything else is returned unchanged.
fn pem_to_der(bytes: &[u8], tag: &str) -> Result<Vec<u8>, String> {
    if !looks_like_pem(bytes) {
        return Ok(bytes.to_vec());
    }
    let blocks = pem::parse_many(bytes).map_err(|e| format!("cannot be parsed: {e}"))?;
    blocks
        .into_iter()
        .find(|b| b.tag().contains(tag))
        .map(pem::Pem::into_contents)
        .ok_or_else(|| format!("has no {tag} block"))
}

/// `--from-pem NAME`: one secret from a PEM file's CERTIFICATE and/or PRIVATE KEY blocks.
fn secret_from_pem(
    path: &Path,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<BTreeMap<String, cairn_api::UserSecret>> {
    let f = path.display();
    if name.is_empty() {
        anyhow::bail!("--from-pem needs the secret's name");
    }
    let blocks =
        pem::parse_many(bytes).map_err(|e| Refusal(format!("{f} is not a PEM file: {e}")))?;
    let mut s = cairn_api::UserSecret::default();
    for b in blocks {
        if b.tag() == "CERTIFICATE" && s.Cert.is_none() {
            s.Cert = Some(b.into_contents());
        } else if b.tag().contains("PRIVATE KEY") && s.Private.is_none() {
            s.Private = Some(b.into_contents());
        }
    }
    if s.Cert.is_none() && s.Private.is_none() {
        return Err(Refusal(format!(
            "{f}: no CERTIFICATE or PRIVATE KEY block to upload as secret {name:?}"
        ))
        .into());
    }
    Ok(BTreeMap::from([(name.to_string(), s)]))
}

/// Percent-encode a query value (everything but RFC 3986 unreserved characters).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn missing_message(n: u64, users: &[String]) -> String {
    let head = if n == 1 {
        "1 user still needs to acknowledge the update manifest".to_string()
    } else {
        format!("{n} users still need to acknowledge the update manifest")
    };
    if users.is_empty() {
        head
    } else {
        format!("{head} ({})", users.join(", "))
    }
}

/// New recovery secrets: to `-r FILE` as `{"RecoverySecrets": {...}}`, else to stdout.
fn write_recovery(
    secrets: Option<BTreeMap<String, Vec<u8>>>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let Some(secrets) = secrets.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(&cairn_api::ManifestSetResp {
        RecoverySecrets: Some(secrets),
    })?;
    match out {
        Some(p) => {
            crate::private_file::write_private(p, text.as_bytes())?;
            println!(
                "The update changed the recovery keys; new recovery data written to {}",
                p.display()
            );
        }
        None => {
            println!("The update changed the recovery keys; new recovery data:");
            println!("{text}");
        }
    }
    Ok(())
}

fn secret_json(s: &cairn_api::Secret) -> serde_json::Value {
    let h = |b: &Option<Vec<u8>>| b.as_deref().map(hex::encode);
    json!({
        "type": s.Type,
        "size": s.Size,
        "shared": s.Shared,
        "userDefined": s.UserDefined,
        "validFor": s.ValidFor,
        "cert": h(&s.Cert),
        "private": h(&s.Private),
        "public": h(&s.Public),
    })
}

/// Human-readable form of one secret.
fn format_secret(name: &str, s: &cairn_api::Secret) -> String {
    let mut o = format!("{name}:\n  Type:        {}\n", s.Type);
    if s.Shared {
        o.push_str("  Shared:      true\n");
    }
    if s.UserDefined {
        o.push_str("  UserDefined: true\n");
    }
    if s.Size > 0 {
        o.push_str(&format!("  Size:        {} bits\n", s.Size));
    }
    if s.ValidFor > 0 {
        o.push_str(&format!("  Valid for:   {} days\n", s.ValidFor));
    }
    let nonempty = |b: &Option<Vec<u8>>| b.as_ref().filter(|v| !v.is_empty()).cloned();
    let (cert, private, public) = (nonempty(&s.Cert), nonempty(&s.Private), nonempty(&s.Public));
    if cert.is_none() && private.is_none() && public.is_none() {
        o.push_str(
            "  (no value yet: a user with WriteSecret uploads it with `cairn secret set`)\n",
        );
        return o;
    }
    let pem = |tag: &str, der: &[u8]| {
        pem::encode_config(
            &pem::Pem::new(tag, der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    };
    if s.Type.starts_with("cert-") {
        if let Some(c) = &cert {
            o.push_str("  Certificate:\n");
            o.push_str(&pem("CERTIFICATE", c));
        }
        if let Some(p) = &public {
            o.push_str("  Public key:\n");
            o.push_str(&pem("PUBLIC KEY", p));
        }
        if let Some(p) = &private {
            o.push_str("  Private key:\n");
            o.push_str(&pem("PRIVATE KEY", p));
        }
        return o;
    }
    let value = private.or(public).unwrap_or_default();
    if s.Type == "plain" {
        match std::str::from_utf8(&value) {
            Ok(t) if !t.chars().any(char::is_control) => {
                o.push_str(&format!("  Data:        {t}\n"));
            }
            _ => o.push_str(&format!("  Data (hex):  {}\n", hex::encode(&value))),
        }
    } else {
        o.push_str(&format!("  Key (hex):   {}\n", hex::encode(&value)));
        o.push_str(&format!(
            "  Key (b64):   {}\n",
            base64::engine::general_purpose::STANDARD.encode(&value)
        ));
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_errors_name_file_secret_and_field() {
        let p = Path::new("secrets.json");
        let e = parse_secret_file(p, b"[]").unwrap_err().to_string();
        assert_eq!(
            e,
            "secrets.json: expected a JSON object mapping secret names to {\"Cert\"|\"Private\"|\"Key\": BASE64}"
        );
        let e = parse_secret_file(p, br#"{"k": {"Key": "***"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("secrets.json: secret \"k\": Key: invalid base64"),
            "{e}"
        );
        let e = parse_secret_file(p, br#"{"k": {"Public": "AA=="}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "secrets.json: secret \"k\" sets none of Cert, Private, Key"
        );
        let e = parse_secret_file(p, b"{}").unwrap_err().to_string();
        assert_eq!(e, "secrets.json: no secrets in the file");
        let e = parse_secret_file(p, b"nope").unwrap_err().to_string();
        assert!(e.starts_with("secrets.json is not JSON: "), "{e}");
    }

    #[test]
    fn secret_file_keys_are_case_insensitive_and_pem_becomes_der() {
        let cert_pem = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let file = format!(
            r#"{{"a": {{"key": "{}"}}, "c": {{"CERT": "{}", "private": "{}"}}}}"#,
            b64(b"xyz"),
            b64(cert_pem.as_bytes()),
            b64(&[9, 9])
        );
        let m = parse_secret_file(Path::new("s.json"), file.as_bytes()).unwrap();
        assert_eq!(m["a"].Key.as_deref(), Some(&b"xyz"[..]));
        assert_eq!(m["c"].Cert.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(m["c"].Private.as_deref(), Some(&[9u8, 9][..]));
    }

    #[test]
    fn from_pem_takes_certificate_and_private_key() {
        let pem = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                   -----BEGIN PRIVATE KEY-----\nBAUG\n-----END PRIVATE KEY-----\n";
        let m = secret_from_pem(Path::new("t.pem"), "tls", pem.as_bytes()).unwrap();
        assert_eq!(m["tls"].Cert.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(m["tls"].Private.as_deref(), Some(&[4u8, 5, 6][..]));
        let e = secret_from_pem(
            Path::new("t.pem"),
            "tls",
            b"-----BEGIN X-----\nAQID\n-----END X-----\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.pem: no CERTIFICATE or PRIVATE KEY block to upload as secret \"tls\""
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("userKey"), "userKey");
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn secrets_are_formatted_per_type() {
        let s = |t: &str, private: Option<Vec<u8>>| cairn_api::Secret {
            Type: t.into(),
            Size: 0,
            Shared: false,
            UserDefined: true,
            Cert: None,
            ValidFor: 0,
            Private: private.clone(),
            Public: private,
        };
        assert_eq!(
            format_secret("apiKey", &s("plain", Some(b"hello world".to_vec()))),
            "apiKey:\n  Type:        plain\n  UserDefined: true\n  Data:        hello world\n"
        );
        assert_eq!(
            format_secret("bin", &s("plain", Some(vec![0, 1]))),
            "bin:\n  Type:        plain\n  UserDefined: true\n  Data (hex):  0001\n"
        );
        let mut k = s("symmetric-key", Some(vec![0xab; 2]));
        k.Size = 16;
        assert_eq!(
            format_secret("k", &k),
            "k:\n  Type:        symmetric-key\n  UserDefined: true\n  Size:        16 bits\n  \
             Key (hex):   abab\n  Key (b64):   q6s=\n"
        );
        assert!(format_secret("e", &s("plain", None)).contains("no value yet"));
    }

    #[test]
    fn missing_messages() {
        assert_eq!(
            missing_message(1, &["bob".into()]),
            "1 user still needs to acknowledge the update manifest (bob)"
        );
        assert_eq!(
            missing_message(2, &[]),
            "2 users still need to acknowledge the update manifest"
        );
    }
}
