//! Commands that talk to a Coordinator: status, verify, certificate, manifest set/get/verify.

use std::path::PathBuf;

use clap::Subcommand;

use crate::CmdResult;

/// Arguments of `cairn status`.
#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// Coordinator client API address.
    pub(crate) addr: String,
}

/// Arguments of `cairn verify`.
#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// Coordinator client API address.
    pub(crate) addr: String,
}

/// `cairn certificate` subcommands.
#[derive(Subcommand)]
pub(crate) enum CertificateCmd {
    /// The Coordinator root certificate.
    Root {
        /// Coordinator client API address.
        addr: String,
    },
}

/// Arguments of `cairn manifest set`.
#[derive(clap::Args)]
pub(crate) struct ManifestSetArgs {
    /// Manifest file (JSON or YAML).
    pub(crate) file: PathBuf,
    /// Coordinator client API address.
    pub(crate) addr: String,
}

/// Arguments of `cairn manifest get`.
#[derive(clap::Args)]
pub(crate) struct ManifestGetArgs {
    /// Coordinator client API address.
    pub(crate) addr: String,
}

/// Arguments of `cairn manifest verify`.
#[derive(clap::Args)]
pub(crate) struct ManifestVerifyArgs {
    /// Manifest file or 64-hex fingerprint.
    pub(crate) file_or_hash: String,
    /// Coordinator client API address.
    pub(crate) addr: String,
}

pub(crate) fn status(_a: StatusArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
pub(crate) fn verify(_a: VerifyArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
pub(crate) fn certificate(_c: CertificateCmd) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
pub(crate) fn manifest_set(_a: ManifestSetArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
pub(crate) fn manifest_get(_a: ManifestGetArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
pub(crate) fn manifest_verify(_a: ManifestVerifyArgs) -> CmdResult {
    anyhow::bail!("not implemented yet")
}
