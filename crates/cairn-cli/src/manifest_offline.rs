//! `cairn manifest check` and `cairn manifest signature`: offline manifest commands.

use std::path::PathBuf;

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

pub(crate) fn check(_args: CheckArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}

pub(crate) fn signature(_args: SignatureArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
