//! `cairn manifest check` and `cairn manifest signature`: offline manifest commands.

use std::path::PathBuf;

use anyhow::Context as _;
use cairn_manifest::{Diagnostic, ManifestErrors, OffsetDateTime, ValidManifest};

use crate::CmdResult;

/// Arguments of `cairn manifest check`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  cairn manifest check manifest.json --strict")]
pub(crate) struct CheckArgs {
    /// Manifest file (JSON or YAML).
    pub(crate) file: PathBuf,
    /// Treat warnings as errors.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Print one machine-readable JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `cairn manifest signature`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  cairn manifest signature manifest.json")]
pub(crate) struct SignatureArgs {
    /// Manifest file (JSON or YAML).
    pub(crate) file: PathBuf,
}

/// Validates a manifest offline: exit 0 valid, 1 invalid (or warnings under
/// `--strict`), 2 unreadable file.
pub(crate) fn check(args: CheckArgs) -> CmdResult {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    // The fingerprint is over the bytes that would be uploaded; input that is
    // neither JSON nor YAML is fingerprinted as given.
    let (fingerprint, errors, warnings, kind) = match cairn_manifest::input_to_json(&bytes) {
        Err(e) => (
            hex::encode(cairn_manifest::fingerprint_of(&bytes)),
            e.errors,
            e.warnings,
            Some(e.kind),
        ),
        Ok(json) => {
            let fp = hex::encode(cairn_manifest::fingerprint_of(&json));
            match ValidManifest::parse_at(&json, OffsetDateTime::now_utc()) {
                Ok(v) => (fp, Vec::new(), v.warnings().to_vec(), None),
                Err(ManifestErrors {
                    errors,
                    warnings,
                    kind,
                    ..
                }) => (fp, errors, warnings, Some(kind)),
            }
        }
    };
    let valid = errors.is_empty() && (!args.strict || warnings.is_empty());
    if args.json {
        let list = |d: &[Diagnostic]| {
            d.iter()
                .map(|x| serde_json::json!({"path": x.path, "message": x.message}))
                .collect::<Vec<_>>()
        };
        let out = serde_json::json!({
            "valid": valid,
            "fingerprint": fingerprint,
            "errors": list(&errors),
            "warnings": list(&warnings),
        });
        println!("{out}");
    } else {
        println!("fingerprint: {fingerprint}");
        for w in &warnings {
            println!("warning: {w}");
        }
        for e in &errors {
            println!("error: {e}");
        }
        match (valid, kind) {
            (true, _) => println!("manifest is valid"),
            (false, Some(kind)) => println!(
                "manifest is invalid ({kind}, {} error{})",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ),
            (false, None) => println!(
                "manifest is invalid under --strict ({} warning{})",
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            ),
        }
    }
    Ok(if valid { 0 } else { 1 })
}

/// Prints the fingerprint (SHA-256 hex) of the bytes that would be uploaded:
/// JSON as is, YAML converted to compact sorted JSON.
pub(crate) fn signature(args: SignatureArgs) -> CmdResult {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    match cairn_manifest::input_to_json(&bytes) {
        Ok(json) => {
            println!("{}", hex::encode(cairn_manifest::fingerprint_of(&json)));
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}
