//! The core's error type and its stable machine-readable kind.

/// What a caller should map an error to (gRPC code / HTTP status), decided in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The Coordinator is not in a state that allows the operation.
    FailedPrecondition,
    /// No peer certificate (or no authentication) where one is required.
    Unauthenticated,
    /// Verification of the caller failed (quote, policy, marble type, activation budget).
    PermissionDenied,
    /// Malformed input (UUID, nonce, ...).
    InvalidArgument,
    /// The uploaded manifest was rejected (parse, check, secret generation, template).
    InvalidManifest,
    /// Something that should exist does not (e.g. no manifest set yet).
    NotFound,
    /// A server-side failure (persistence, quote generation, ...).
    Internal,
    /// An authenticated user lacks the permission (MarbleRun answers 500 error).
    Forbidden,
    /// A manifest feature gate needed by the endpoint is off (HTTP 403).
    FeatureDisabled,
    /// The operation would conflict with other Coordinator instances that serve the shared
    /// state (HA); it can be forced explicitly (HTTP 409).
    PeersServing,
}

/// Errors of the Coordinator logic. Messages name the reason (field, expected, actual) and never
/// contain secret material.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Wrong Coordinator state for the operation.
    #[error("{0}")]
    WrongState(String),
    /// Missing authentication (e.g. no TLS client certificate).
    #[error("{0}")]
    Unauthenticated(String),
    /// Marble verification failed.
    #[error("marble verification failed: {0}")]
    PermissionDenied(String),
    /// Malformed input.
    #[error("{0}")]
    InvalidArgument(String),
    /// The manifest was rejected; `kind` is `E_PARSE`, `E_CHECK`, `E_SECRET_GEN` or `E_TEMPLATE`.
    #[error("invalid manifest ({kind}): {message}")]
    InvalidManifest {
        /// Verdict kind.
        kind: &'static str,
        /// Every error, each naming its manifest path.
        message: String,
    },
    /// Missing object.
    #[error("{0}")]
    NotFound(String),
    /// Server-side failure.
    #[error("{0}")]
    Internal(String),
    /// An authenticated user is not permitted to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The manifest does not enable the feature.
    #[error("{0}")]
    FeatureDisabled(String),
    /// Another Coordinator instance committed first (HA); the operation is re-run on the latest
    /// state, and reported as `Internal` only when that keeps failing.
    #[error("{0}")]
    Conflict(String),
    /// A manual recovery was refused because other instances serve the shared state (HA).
    #[error("{0}")]
    PeersServing(String),
}

impl CoreError {
    /// The stable kind that servers map to transport codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::WrongState(_) => ErrorKind::FailedPrecondition,
            CoreError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            CoreError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            CoreError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            CoreError::InvalidManifest { .. } => ErrorKind::InvalidManifest,
            CoreError::NotFound(_) => ErrorKind::NotFound,
            CoreError::Internal(_) => ErrorKind::Internal,
            CoreError::Forbidden(_) => ErrorKind::Forbidden,
            CoreError::FeatureDisabled(_) => ErrorKind::FeatureDisabled,
            CoreError::Conflict(_) => ErrorKind::Internal,
            CoreError::PeersServing(_) => ErrorKind::PeersServing,
        }
    }

    pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        CoreError::Internal(format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = CoreError::PermissionDenied("unknown marble type requested".into());
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "marble verification failed: unknown marble type requested"
        );
        let e = CoreError::InvalidManifest {
            kind: "E_CHECK",
            message: "Marbles: x".into(),
        };
        assert_eq!(e.kind(), ErrorKind::InvalidManifest);
        assert!(e.to_string().contains("E_CHECK"));
    }
}
