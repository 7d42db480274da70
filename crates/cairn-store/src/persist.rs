//! Persistence backends: one sealed blob with a revision, replaced by compare-and-swap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::StoreError;

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.sealed";
const FILE_MAGIC: &[u8; 8] = b"CAIRNREV";

/// Revision of the stored blob; increases with every successful write (by one for the file and
/// memory backends; the etcd backend uses the key's `mod_revision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

/// Where the sealed state lives. Implementations serialise writers: `compare_and_swap` stores
/// `blob` only if the current revision equals `expected` (`None`: nothing stored yet).
pub trait Persistence: Send + Sync {
    /// The stored revision and blob, `None` when nothing was ever stored.
    fn load(&self) -> Result<Option<(Revision, Vec<u8>)>, StoreError>;
    /// Replaces the blob atomically; returns the new revision, or
    /// [`StoreError::Conflict`] when the stored revision is not `expected`. On any error the
    /// previously stored blob is unchanged.
    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        blob: &[u8],
    ) -> Result<Revision, StoreError>;
}

/// The sealed state as `dir/state.sealed` (layout in the README). Writes go to a 0600 temp file
/// in the same directory, are fsynced, renamed over the state file, and the directory is fsynced.
/// Writers in this process are serialised; one Coordinator process owns the directory.
#[derive(Debug)]
pub struct FilePersistence {
    dir: PathBuf,
    lock: Mutex<()>,
    fail_writes: AtomicU32,
    tmp_counter: AtomicU64,
}

impl FilePersistence {
    /// Opens (creating with mode 0700 when missing) the state directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(StoreError::NotADirectory(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|source| io_err("create directory", &dir, source))?;
            }
            Err(source) => return Err(io_err("inspect", &dir, source)),
        }
        Ok(FilePersistence {
            dir,
            lock: Mutex::new(()),
            fail_writes: AtomicU32::new(0),
            tmp_counter: AtomicU64::new(0),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Fault hook: the next `n` writes fail after the temp file was written and before it
    /// replaces the state file (as a failing fsync would), so the old state stays.
    pub fn fail_next_writes(&self, n: u32) {
        self.fail_writes.store(n, Ordering::SeqCst);
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, so a poisoned lock is still a valid lock.
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> Result<Option<(Revision, Vec<u8>)>, StoreError> {
        let path = self.state_path();
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_err("open", &path, source)),
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|source| io_err("read", &path, source))?;
        if buf.len() < FILE_MAGIC.len() + 8 || &buf[..FILE_MAGIC.len()] != FILE_MAGIC {
            return Err(StoreError::NotCairnState);
        }
        let mut rev = [0u8; 8];
        rev.copy_from_slice(&buf[FILE_MAGIC.len()..FILE_MAGIC.len() + 8]);
        let blob = buf.split_off(FILE_MAGIC.len() + 8);
        Ok(Some((Revision(u64::from_be_bytes(rev)), blob)))
    }

    fn write_atomically(&self, revision: Revision, blob: &[u8]) -> Result<(), StoreError> {
        let path = self.state_path();
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{STATE_FILE}.tmp-{}-{n}", std::process::id()));
        let res = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|source| io_err("create", &tmp, source))?;
            f.write_all(FILE_MAGIC)
                .and_then(|()| f.write_all(&revision.0.to_be_bytes()))
                .and_then(|()| f.write_all(blob))
                .and_then(|()| f.sync_all())
                .map_err(|source| io_err("write", &tmp, source))?;
            drop(f);
            if take_fault(&self.fail_writes) {
                return Err(io_err("write", &tmp, injected()));
            }
            fs::rename(&tmp, &path).map_err(|source| io_err("replace", &path, source))
        })();
        if let Err(e) = res {
            if let Err(rm) = fs::remove_file(&tmp) {
                if rm.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove temp state file");
                }
            }
            return Err(e);
        }
        // The rename is durable only once the directory entry is synced.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| io_err("sync directory", &self.dir, source))
    }
}

impl Persistence for FilePersistence {
    fn load(&self) -> Result<Option<(Revision, Vec<u8>)>, StoreError> {
        let _g = self.guard();
        self.read()
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        blob: &[u8],
    ) -> Result<Revision, StoreError> {
        let _g = self.guard();
        let actual = self.read()?.map(|(r, _)| r);
        check_revision(expected, actual)?;
        let next = next_revision(actual);
        self.write_atomically(next, blob)?;
        Ok(next)
    }
}

/// In-memory persistence for tests, with a fault hook that fails the next N writes.
#[derive(Debug, Default)]
pub struct MemoryPersistence {
    state: Mutex<Option<(Revision, Vec<u8>)>>,
    fail_writes: AtomicU32,
}

impl MemoryPersistence {
    /// Empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` writes fail with [`StoreError::Io`] and change nothing.
    pub fn fail_next_writes(&self, n: u32) {
        self.fail_writes.store(n, Ordering::SeqCst);
    }

    fn guard(&self) -> MutexGuard<'_, Option<(Revision, Vec<u8>)>> {
        // Writes replace the whole Option at once, so a poisoned value is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Persistence for MemoryPersistence {
    fn load(&self) -> Result<Option<(Revision, Vec<u8>)>, StoreError> {
        Ok(self.guard().clone())
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        blob: &[u8],
    ) -> Result<Revision, StoreError> {
        let mut g = self.guard();
        let actual = g.as_ref().map(|(r, _)| *r);
        check_revision(expected, actual)?;
        if take_fault(&self.fail_writes) {
            return Err(io_err("write", Path::new("<memory>"), injected()));
        }
        let next = next_revision(actual);
        *g = Some((next, blob.to_vec()));
        Ok(next)
    }
}

fn check_revision(expected: Option<Revision>, actual: Option<Revision>) -> Result<(), StoreError> {
    if expected == actual {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            expected: expected.map(|r| r.0),
            actual: actual.map(|r| r.0),
        })
    }
}

fn next_revision(actual: Option<Revision>) -> Revision {
    Revision(actual.map_or(1, |r| r.0.saturating_add(1)))
}

fn take_fault(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn injected() -> io::Error {
    io::Error::other("injected write fault")
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cas_contract(p: &dyn Persistence) {
        assert!(p.load().unwrap().is_none());
        let r1 = p.compare_and_swap(None, b"one").unwrap();
        assert_eq!(r1, Revision(1));
        assert_eq!(p.load().unwrap(), Some((r1, b"one".to_vec())));
        // Stale writers conflict and change nothing.
        let e = p.compare_and_swap(None, b"x").unwrap_err();
        assert!(matches!(
            e,
            StoreError::Conflict {
                expected: None,
                actual: Some(1)
            }
        ));
        let e = p.compare_and_swap(Some(Revision(7)), b"x").unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }));
        let r2 = p.compare_and_swap(Some(r1), b"two").unwrap();
        assert_eq!(r2, Revision(2));
        assert!(p.compare_and_swap(Some(r1), b"x").is_err());
        assert_eq!(p.load().unwrap(), Some((r2, b"two".to_vec())));
    }

    #[test]
    fn memory_cas_and_faults() {
        let m = MemoryPersistence::new();
        cas_contract(&m);
        m.fail_next_writes(2);
        for _ in 0..2 {
            let e = m.compare_and_swap(Some(Revision(2)), b"three").unwrap_err();
            assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
        }
        assert_eq!(m.load().unwrap(), Some((Revision(2), b"two".to_vec())));
        assert_eq!(
            m.compare_and_swap(Some(Revision(2)), b"three").unwrap(),
            Revision(3)
        );
    }

    #[test]
    fn file_cas_round_trip_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = FilePersistence::new(d.path().join("a/b")).unwrap();
        cas_contract(&p);
        let meta = fs::metadata(p.state_path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_mode = fs::metadata(p.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        // A second handle on the same directory sees the state.
        let p2 = FilePersistence::new(p.dir()).unwrap();
        assert_eq!(p2.load().unwrap(), Some((Revision(2), b"two".to_vec())));
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(p.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
    }

    #[test]
    fn file_fault_keeps_old_state() {
        let d = tempfile::tempdir().unwrap();
        let p = FilePersistence::new(d.path()).unwrap();
        let r1 = p.compare_and_swap(None, b"old state").unwrap();
        let before = fs::read(p.state_path()).unwrap();
        p.fail_next_writes(1);
        let e = p.compare_and_swap(Some(r1), b"new state").unwrap_err();
        match &e {
            StoreError::Io { path, .. } => assert!(path.starts_with(d.path()), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(p.state_path()).unwrap(), before);
        assert_eq!(p.load().unwrap(), Some((r1, b"old state".to_vec())));
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "temp file removed"
        );
        assert_eq!(
            p.compare_and_swap(Some(r1), b"new state").unwrap(),
            Revision(2)
        );
    }

    #[test]
    fn state_path_is_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = FilePersistence::new(d.path()).unwrap();
        fs::create_dir(p.state_path()).unwrap();
        fs::write(p.state_path().join("keep"), b"x").unwrap();
        let e = p.load().unwrap_err();
        assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
        let e = p.compare_and_swap(None, b"blob").unwrap_err();
        match &e {
            StoreError::Io { path, .. } => assert_eq!(path, &p.state_path()),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains(STATE_FILE), "{e}");
        // Only the blocking directory remains; no temp file.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn dir_is_a_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        fs::write(&f, b"x").unwrap();
        assert!(matches!(
            FilePersistence::new(&f),
            Err(StoreError::NotADirectory(_))
        ));
        let e = FilePersistence::new(f.join("sub")).unwrap_err();
        assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
        // The directory vanishes (replaced by a file) after opening: typed error with the path.
        let sub = d.path().join("sub");
        let p = FilePersistence::new(&sub).unwrap();
        fs::remove_dir(&sub).unwrap();
        fs::write(&sub, b"x").unwrap();
        let e = p.compare_and_swap(None, b"blob").unwrap_err();
        assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("sub"), "{e}");
    }

    #[test]
    fn foreign_file_is_not_a_state() {
        let d = tempfile::tempdir().unwrap();
        let p = FilePersistence::new(d.path()).unwrap();
        fs::write(p.state_path(), b"hello").unwrap();
        assert!(matches!(p.load(), Err(StoreError::NotCairnState)));
    }

    #[test]
    fn sealed_state_through_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = FilePersistence::new(d.path()).unwrap();
        let dk = cairn_crypto::random_key32().unwrap();
        let sk = cairn_crypto::random_key32().unwrap();
        let blob = crate::seal_state(b"{\"k\":1}", &dk, &sk, 0, b"").unwrap();
        p.compare_and_swap(None, &blob).unwrap();
        let (_, loaded) = p.load().unwrap().unwrap();
        let u = crate::unseal_state(&loaded, &sk).unwrap();
        assert_eq!(u.plaintext.as_slice(), b"{\"k\":1}");
        // A byte flipped on disk is reported, not decrypted.
        let mut raw = fs::read(p.state_path()).unwrap();
        let last = raw.len() - 40;
        raw[last] ^= 0x10;
        fs::write(p.state_path(), &raw).unwrap();
        let (_, loaded) = p.load().unwrap().unwrap();
        assert!(matches!(
            crate::unseal_state(&loaded, &sk),
            Err(StoreError::Corrupted(_))
        ));
    }
}
