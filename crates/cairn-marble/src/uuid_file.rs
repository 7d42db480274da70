//! The marble UUID, persisted in `EDG_MARBLE_UUID_FILE`.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use uuid::Uuid;

use crate::MarbleError;

/// Read the UUID from `path`, or create a random v4 UUID and store it there (mode 0600, parent
/// directories 0700). An existing file is only read, so read-only injected UUID files work.
/// Returns the UUID and whether it was newly created.
pub fn load_or_create(path: &Path) -> Result<(Uuid, bool), MarbleError> {
    match fs::read_to_string(path) {
        Ok(text) => parse(path, &text).map(|u| (u, false)),
        Err(e) if e.kind() == ErrorKind::NotFound => create(path),
        Err(e) => Err(MarbleError::io("read UUID file", path, e)),
    }
}

fn parse(path: &Path, text: &str) -> Result<Uuid, MarbleError> {
    Uuid::parse_str(text.trim()).map_err(|e| MarbleError::BadUuidFile {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn create(path: &Path) -> Result<(Uuid, bool), MarbleError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| MarbleError::io("create directory", parent, e))?;
    }
    let uuid = Uuid::new_v4();
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(mut f) => {
            f.write_all(uuid.hyphenated().to_string().as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| MarbleError::io("write UUID file", path, e))?;
            Ok((uuid, true))
        }
        // Another process created it between our read and create: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text =
                fs::read_to_string(path).map_err(|e| MarbleError::io("read UUID file", path, e))?;
            parse(path, &text).map(|u| (u, false))
        }
        Err(e) => Err(MarbleError::io("create UUID file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_0600_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/uuid");
        let (a, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(a.get_version_num(), 4);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            a.hyphenated().to_string()
        );
        let (b, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a, b);
    }

    #[test]
    fn existing_read_only_file_is_only_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uuid");
        let id = "0b7a3c2e-3c8f-4d56-9a51-3f0c9e2d7a11";
        fs::write(&path, format!("{id}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        let (u, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(u.to_string(), id);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o444
        );
    }

    #[test]
    fn garbage_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uuid");
        fs::write(&path, "not-a-uuid").unwrap();
        let e = load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("does not contain a UUID"), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not-a-uuid");
    }

    #[test]
    fn directory_in_the_way_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, MarbleError::Io { .. }), "{e}");
    }
}
