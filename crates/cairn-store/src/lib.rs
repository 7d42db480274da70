//! Sealed state storage: the blob codec (pure functions that seal and unseal the Coordinator's
//! state) and the [`Persistence`] backends that keep one blob with compare-and-swap revisions.
//!
//! The store moves sealed bytes; what the state means lives in cairn-core. The blob layout and
//! the on-disk file layout are documented in this crate's README.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::io;
use std::path::PathBuf;

mod blob;
#[cfg(feature = "etcd")]
mod etcd;
mod persist;

pub use blob::{
    inspect, seal_state, unseal_state, unseal_with_data_key, BlobInfo, Unsealed, FORMAT_VERSION,
    MAGIC,
};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdPersistence, DEFAULT_ETCD_KEY};
pub use persist::{FilePersistence, MemoryPersistence, Persistence, Revision, STATE_FILE};

/// Errors of the store. Messages name files and formats, never key or state bytes.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes do not start with the Cairn sealed-state magic.
    #[error("not a Cairn sealed state (magic bytes missing)")]
    NotCairnState,
    /// The format version byte is one this build cannot read.
    #[error(
        "unsupported sealed state format version {found} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// version byte in the blob
        found: u8,
        /// version this build writes and reads
        supported: u8,
    },
    /// The seal key cannot open the sealed data key: the state was sealed by another enclave
    /// identity (or platform), so it must be recovered.
    #[error("the seal key cannot decrypt the data key; the state needs recovery")]
    SealKeyMismatch,
    /// The given data key does not decrypt the state (recovery with a wrong key).
    #[error("the data key does not decrypt the sealed state")]
    DataKeyMismatch,
    /// The blob is truncated or was modified.
    #[error("sealed state is corrupted: {0}")]
    Corrupted(&'static str),
    /// Compare-and-swap failed: the stored revision is not the expected one.
    #[error("state revision conflict: expected {expected:?}, found {actual:?}")]
    Conflict {
        /// revision the writer based its change on (`None`: no state yet)
        expected: Option<u64>,
        /// revision currently stored
        actual: Option<u64>,
    },
    /// The state directory path exists but is not a directory.
    #[error("state directory {0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// A file operation failed; the previously stored state is unchanged.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// what was attempted
        op: &'static str,
        /// file or directory concerned
        path: PathBuf,
        /// the OS error
        #[source]
        source: io::Error,
    },
    /// A remote backend (etcd) is misconfigured, unreachable or failed. After a failed write the
    /// outcome is unknown: reload the state before retrying. Messages name the endpoints, never
    /// credentials.
    #[error("{backend} backend: {message}")]
    Backend {
        /// which backend (`"etcd"`)
        backend: &'static str,
        /// what failed, naming the endpoints and key
        message: String,
    },
    /// A primitive of the crypto layer failed.
    #[error(transparent)]
    Crypto(#[from] cairn_crypto::CryptoError),
}
