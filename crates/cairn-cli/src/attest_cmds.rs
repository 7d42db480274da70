//! `cairn sim ...`, `cairn quote inspect`, `cairn package-info`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::CmdResult;

/// `cairn sim` subcommands.
#[derive(Subcommand)]
pub(crate) enum SimCmd {
    /// Create a simulated platform directory (or check an existing one).
    Init {
        /// Directory to create.
        dir: PathBuf,
    },
}

/// `cairn quote` subcommands.
#[derive(Subcommand)]
pub(crate) enum QuoteCmd {
    /// Parse a quote and verify it.
    Inspect {
        /// Quote file (raw or OE-wrapped).
        file: PathBuf,
    },
}

/// Arguments of `cairn package-info`.
#[derive(clap::Args)]
pub(crate) struct PackageInfoArgs {
    /// Executable to measure.
    pub(crate) file: PathBuf,
}

pub(crate) fn sim(_cmd: SimCmd) -> CmdResult {
    anyhow::bail!("not implemented yet")
}

pub(crate) fn quote(_cmd: QuoteCmd) -> CmdResult {
    anyhow::bail!("not implemented yet")
}

pub(crate) fn package_info(_args: PackageInfoArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
