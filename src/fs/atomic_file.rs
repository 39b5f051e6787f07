//! Writing a secret file whole or not at all: an exclusive temporary file in the target
//! directory, created with its final mode, written and fsynced, renamed over the target name,
//! then the directory fsynced. Neither name is ever opened through a planted symlink: the
//! temporary file is created with `O_EXCL` under a random name, and a rename replaces a
//! symlink at the target name instead of following it.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// What to do when the target name already exists (as a file, a directory or a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it atomically (`--force`).
    Replace,
    /// Leave it alone and fail with [`WriteError::Exists`]; checked by the rename itself
    /// (`RENAME_NOREPLACE`), not by an earlier look.
    Keep,
}

/// Why a file was not written. Never carries the content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The target exists and [`Existing::Keep`] was asked for.
    #[error("{0} exists")]
    Exists(PathBuf),
    /// Creating, writing, syncing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The target file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The directory a file name lives in (`.` for a bare name).
pub fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` with permission bits `mode` (on Unix), atomically: a reader sees
/// the old file or the whole new one. The directory must exist.
pub fn write(path: &Path, bytes: &[u8], mode: u32, existing: Existing) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = directory_of(path);
    let prefix = format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = builder.tempfile_in(&dir).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    let persisted = match existing {
        Existing::Replace => file.persist(path),
        Existing::Keep => file.persist_noclobber(path),
    };
    // On failure the temporary file is removed when the error drops.
    match persisted {
        Ok(_) => {}
        Err(e) if existing == Existing::Keep && e.error.kind() == ErrorKind::AlreadyExists => {
            return Err(WriteError::Exists(path.to_path_buf()));
        }
        Err(e) => return Err(io(e.error)),
    }
    sync_directory(&dir).map_err(io)
}

/// Makes a rename in `dir` durable.
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, File::open);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_gets_its_mode_and_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        write(&path, b"secret", 0o600, Existing::Keep).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the target is left");
    }

    #[test]
    fn keep_refuses_an_existing_file_and_replace_swaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh.secret");
        std::fs::write(&path, "old").unwrap();
        let err = write(&path, b"new", 0o600, Existing::Keep).unwrap_err();
        assert!(matches!(err, WriteError::Exists(_)), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        write(&path, b"new", 0o600, Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(
            mode(&path),
            0o600,
            "the mode of the new file, not the old one"
        );
    }

    #[test]
    fn a_symlink_planted_at_the_target_or_a_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let path = dir.path().join("signing.key");
        // The names a predictable writer would use, and the target itself.
        for name in ["signing.key.tmp", ".signing.key.tmp", "signing.tmp"] {
            symlink(&victim, dir.path().join(name)).unwrap();
        }
        symlink(&victim, &path).unwrap();

        let err = write(&path, b"secret", 0o600, Existing::Keep).unwrap_err();
        assert!(matches!(err, WriteError::Exists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");

        write(&path, b"secret", 0o600, Existing::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
        assert_eq!(mode(&path), 0o600);

        // A dangling symlink to a file that does not exist yet is not created through either.
        let planted = outside.path().join("planted");
        let other = dir.path().join("refresh.secret");
        symlink(&planted, &other).unwrap();
        assert!(write(&other, b"secret", 0o600, Existing::Keep).is_err());
        assert!(!planted.exists());
    }
}
