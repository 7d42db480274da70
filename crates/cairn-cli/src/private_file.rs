//! Files holding secrets (decrypted recovery secrets, signatures over them, user secrets, keys).

use std::path::Path;

/// Writes `data` to `path` with mode 0600 whatever existed there (cairn-platform's atomic write:
/// a fresh 0600 temp file renamed over `path`). An existing file keeps neither its mode nor its
/// contents, and a symlink at `path` is replaced, not followed.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    cairn_platform::write_private_file(path, data)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
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
