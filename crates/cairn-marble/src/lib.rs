//! Marble side of Cairn: activation client, launcher helpers and mesh TLS.
//!
//! * [`config`]: the premain configuration, parsed once from an abstract [`EnvSource`].
//! * [`identity`]: the activation key, its self-signed certificate and CSR.
//! * [`uuid_file`]: the persisted marble UUID.
//! * [`client`]: TLS to the Coordinator mesh API (root pinning or a loud warning) and `Activate`.
//! * [`launch`]: writing Files, preparing Env and the argv rules for the launched program.
//! * [`mesh`]: [`MarbleTls`], rustls configs for mutual TLS from `MARBLE_PREDEFINED_*`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod config;
pub mod identity;
pub mod launch;
pub mod mesh;
pub mod uuid_file;
mod verifier;

pub use client::{activate, activate_with_retry, ActivationOutcome, CoordinatorTrust, RetryPolicy};
pub use config::{EnvSource, PlatformConfig, PremainConfig, ProcessEnv};
pub use identity::ActivationIdentity;
pub use launch::{plan_argv, resolve_program, write_files, LaunchPlan};
pub use mesh::MarbleTls;

/// Env var names set by the Coordinator for every marble.
pub mod env_names {
    /// PEM of the marble root certificate (what marbles trust).
    pub const ROOT_CA: &str = "MARBLE_PREDEFINED_ROOT_CA";
    /// PEM of the marble leaf followed by the Coordinator intermediate.
    pub const CERT_CHAIN: &str = "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN";
    /// PEM (PKCS#8) of the marble leaf key.
    pub const PRIVATE_KEY: &str = "MARBLE_PREDEFINED_PRIVATE_KEY";
    /// PEM of the Coordinator root certificate.
    pub const COORDINATOR_ROOT_CA: &str = "MARBLE_PREDEFINED_COORDINATOR_ROOT_CA";
}

/// Errors of the marble library. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarbleError {
    /// Bad or missing configuration (environment or command line).
    #[error("configuration error: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted ("write", "read", "create directory").
        action: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The UUID file exists but does not hold a UUID.
    #[error("UUID file {path} does not contain a UUID ({detail}); fix or delete it")]
    BadUuidFile {
        /// The UUID file.
        path: std::path::PathBuf,
        /// Parse error.
        detail: String,
    },
    /// Certificate, CSR or key handling failed.
    #[error("certificate error: {0}")]
    Cert(String),
    /// The platform could not produce a quote.
    #[error("quote generation failed: {0}")]
    Quote(String),
    /// The Coordinator mesh API could not be reached (retryable).
    #[error("Coordinator at {addr} is unreachable: {detail}")]
    Unreachable {
        /// Mesh address.
        addr: String,
        /// What failed.
        detail: String,
    },
    /// The TLS connection to the Coordinator failed (certificate not trusted, protocol error).
    #[error("TLS connection to the Coordinator at {addr} failed: {detail}")]
    Tls {
        /// Mesh address.
        addr: String,
        /// What failed.
        detail: String,
    },
    /// The Coordinator answered the activation with an error status.
    #[error("Coordinator refused activation ({code:?}): {message}")]
    Rejected {
        /// gRPC status code.
        code: tonic::Code,
        /// Status message from the Coordinator.
        message: String,
    },
    /// The activation response is unusable (missing parameters, bad env names).
    #[error("invalid activation response: {0}")]
    BadResponse(String),
    /// The program to launch cannot be run as configured.
    #[error("{0}")]
    Launch(String),
}

impl MarbleError {
    /// True when trying again later may succeed: the Coordinator is unreachable, or it is not
    /// (yet) accepting marbles (gRPC `Unavailable` / `FailedPrecondition`).
    pub fn is_retryable(&self) -> bool {
        match self {
            MarbleError::Unreachable { .. } => true,
            MarbleError::Rejected { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::FailedPrecondition
                )
            }
            _ => false,
        }
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        MarbleError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
