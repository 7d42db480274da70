//! `cairn quickstart`: a complete local deployment in simulation.

use crate::CmdResult;

/// Arguments of `cairn quickstart`.
#[derive(clap::Args)]
pub(crate) struct QuickstartArgs {}

pub(crate) fn run(_a: QuickstartArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
