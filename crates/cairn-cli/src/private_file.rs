//! Files holding secrets (decrypted recovery secrets, signatures over them, user secrets, keys).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Writes `data` to `path` with mode 0600 whatever existed there: a new temporary file in the
/// same directory (created exclusively, 0600), then renamed over `path`. An existing file keeps
/// neither its mode nor its contents, and a symlink at `path` is replaced, not followed.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("cannot write {}: not a file name", path.display()))?;
    let suffix = hex::encode(cairn_crypto::random_bytes(6).map_err(|e| anyhow::anyhow!("{e}"))?);
    let tmp = dir.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn replaces_a_readable_file_and_a_symlink_with_a_private_file() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("secret.bin");
        std::fs::write(&out, b"old").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&out, b"new").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_private(&link, b"secret").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"secret");
        // Only the two files and the link's replacement: no temporary file left behind.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3);

        let e = write_private(&tmp.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir/f"), "{e}");
    }
}
