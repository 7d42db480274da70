//! `cairn`: the operator and relying-party CLI (MarbleRun-shaped: `cairn <command> [args] [HOST:PORT]`).
//!
//! Exit codes everywhere: 0 success, 1 the thing checked is invalid or refused, 2 usage or I/O error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin_cmds;
mod attest_cmds;
mod client_cmds;
mod manifest_offline;
mod private_file;
mod quickstart;
mod recover_cmds;

/// Outcome of a command: `Ok(0)` success, `Ok(1)` checked thing invalid/refused; `Err` = usage or I/O (exit 2).
pub(crate) type CmdResult = anyhow::Result<u8>;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: attest, configure and operate a confidential-computing deployment",
    long_about = "Cairn CLI. Attest a Coordinator, set and verify manifests, inspect quotes and run a \
                  local simulated deployment.\n\nExample:\n  cairn quickstart\n  cairn manifest check manifest.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check, set, get, verify and fingerprint manifests.
    #[command(subcommand)]
    Manifest(ManifestCmd),
    /// Create and use a simulated SGX platform (real-format quotes, local trust root).
    #[command(subcommand)]
    Sim(attest_cmds::SimCmd),
    /// Inspect and verify SGX/TDX quotes.
    #[command(subcommand)]
    Quote(attest_cmds::QuoteCmd),
    /// Print the UniqueID/SignerID a simulated enclave of an executable would have.
    PackageInfo(attest_cmds::PackageInfoArgs),
    /// Print the Coordinator's state.
    Status(client_cmds::StatusArgs),
    /// Attest a Coordinator (quote, chain, measurement, TCB) and cache its root.
    Verify(client_cmds::VerifyArgs),
    /// Fetch the Coordinator's root, intermediate or chain certificate (after attesting it).
    #[command(subcommand)]
    Certificate(client_cmds::CertificateCmd),
    /// Run a complete local deployment in simulation and show what it proves.
    Quickstart(quickstart::QuickstartArgs),
    /// Recover a Coordinator in recovery mode with recovery secrets (or prepare them offline).
    Recover(recover_cmds::RecoverArgs),
    /// Upload or read secrets as a manifest user (--cert/--key).
    #[command(subcommand)]
    Secret(admin_cmds::SecretCmd),
}

#[derive(Subcommand)]
enum ManifestCmd {
    /// Validate a manifest offline and print its fingerprint, warnings and errors.
    Check(manifest_offline::CheckArgs),
    /// Print the fingerprint (SHA-256 of the bytes that would be uploaded) of a manifest file.
    Signature(manifest_offline::SignatureArgs),
    /// Attest the Coordinator and upload a manifest.
    Set(client_cmds::ManifestSetArgs),
    /// Attest the Coordinator and print its manifest.
    Get(client_cmds::ManifestGetArgs),
    /// Attest the Coordinator and compare its manifest fingerprint with a local file or hash.
    Verify(client_cmds::ManifestVerifyArgs),
    /// Apply, acknowledge, cancel or show manifest updates as a manifest user (--cert/--key).
    #[command(subcommand)]
    Update(admin_cmds::UpdateCmd),
    /// Print the Coordinator's update log (one JSON object per line).
    Log(admin_cmds::LogArgs),
}

fn main() -> ExitCode {
    cairn_crypto::install_default_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Manifest(ManifestCmd::Check(a)) => manifest_offline::check(a),
        Command::Manifest(ManifestCmd::Signature(a)) => manifest_offline::signature(a),
        Command::Manifest(ManifestCmd::Set(a)) => client_cmds::manifest_set(a),
        Command::Manifest(ManifestCmd::Get(a)) => client_cmds::manifest_get(a),
        Command::Manifest(ManifestCmd::Verify(a)) => client_cmds::manifest_verify(a),
        Command::Sim(c) => attest_cmds::sim(c),
        Command::Quote(c) => attest_cmds::quote(c),
        Command::PackageInfo(a) => attest_cmds::package_info(a),
        Command::Status(a) => client_cmds::status(a),
        Command::Verify(a) => client_cmds::verify(a),
        Command::Certificate(c) => client_cmds::certificate(c),
        Command::Quickstart(a) => quickstart::run(a),
        Command::Recover(a) => recover_cmds::recover(a),
        Command::Secret(c) => admin_cmds::secret(c),
        Command::Manifest(ManifestCmd::Update(c)) => admin_cmds::update(c),
        Command::Manifest(ManifestCmd::Log(a)) => admin_cmds::log(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
