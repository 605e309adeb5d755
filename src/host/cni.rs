//! Writing the CNI config file on this node: atomically, only when it differs, and removing it
//! when the unit goes. The directory is `/etc/cni/net.d`, or the value of the environment
//! variable [`CNI_DIR_ENV`] (`CALICO_CHARM_CNI_DIR`) when set and not empty (for tests).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::render::cni::{CONFLIST_MODE, CONFLIST_NAME, DEFAULT_CNI_DIR};

/// Environment variable that overrides [`DEFAULT_CNI_DIR`] (for tests).
pub const CNI_DIR_ENV: &str = "CALICO_CHARM_CNI_DIR";

/// A failure writing the CNI config; `Display` names the path and what failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("cannot create CNI config directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read CNI config {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write CNI config {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot replace CNI config {path}: {source}")]
    Rename { path: PathBuf, source: io::Error },
    #[error("cannot set mode of CNI config {path}: {source}")]
    Permissions { path: PathBuf, source: io::Error },
    #[error("cannot remove CNI config {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// The CNI config directory: `$CALICO_CHARM_CNI_DIR` when set and not empty, else
/// `/etc/cni/net.d`.
pub fn cni_dir() -> PathBuf {
    cni_dir_from(std::env::var_os(CNI_DIR_ENV).as_deref())
}

/// [`cni_dir`] given the variable's value (pure).
pub fn cni_dir_from(value: Option<&std::ffi::OsStr>) -> PathBuf {
    match value {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_CNI_DIR),
    }
}

/// Write `content` to `dir/10-calico.conflist` atomically (temporary file in `dir`, fsync,
/// rename, fsync of the directory), mode 0644, only when the content or the mode differs.
/// Returns whether the file changed. Ownership is left to the caller's identity (root when
/// Juju runs the hook).
pub fn write_conflist(dir: &Path, content: &str) -> Result<bool, CniError> {
    remove_stale_temporaries(dir);
    let path = dir.join(CONFLIST_NAME);
    // Compared up to one byte more than the new content: a larger file differs anyway, and
    // one grown huge is never read whole.
    match read_prefix(&path, content.len() as u64 + 1) {
        Ok(existing) if existing == content.as_bytes() => {
            let meta = fs::metadata(&path).map_err(|source| CniError::Read {
                path: path.clone(),
                source,
            })?;
            if meta.permissions().mode() & 0o7777 == CONFLIST_MODE {
                return Ok(false);
            }
            fs::set_permissions(&path, Permissions::from_mode(CONFLIST_MODE))
                .map_err(|source| CniError::Permissions { path, source })?;
            return Ok(true);
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(CniError::Read { path, source }),
    }
    fs::create_dir_all(dir).map_err(|source| CniError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = dir.join(format!("{}{}", temporary_prefix(), std::process::id()));
    if let Err(e) = write_new(&tmp, content.as_bytes()) {
        let _ = fs::remove_file(&tmp);
        return Err(CniError::Write {
            path: tmp,
            source: e,
        });
    }
    if let Err(source) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(CniError::Rename { path, source });
    }
    // Make the rename durable; a failure here does not undo the (already visible) write.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

/// The prefix of the temporary files [`write_conflist`] writes (`.10-calico.conflist.tmp-<pid>`).
pub(crate) fn temporary_prefix() -> String {
    format!(".{CONFLIST_NAME}.tmp-")
}

/// Remove temporary files that earlier hooks, killed while writing, left in `dir`: any
/// [`temporary_prefix`] file but this process's own (hooks of one unit never run at once).
/// Best effort: what cannot be removed now is removed by a later hook.
pub(crate) fn remove_stale_temporaries(dir: &Path) -> usize {
    let prefix = temporary_prefix();
    let own = format!("{prefix}{}", std::process::id());
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name != own && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// At most `limit` bytes of a file.
fn read_prefix(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Remove `dir/10-calico.conflist` (when the unit goes away). Returns whether a file was
/// removed; a missing file is not an error.
pub fn remove_conflist(dir: &Path) -> Result<bool, CniError> {
    let path = dir.join(CONFLIST_NAME);
    match fs::remove_file(&path) {
        Ok(()) => {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CniError::Remove { path, source }),
    }
}

/// Create `path` afresh (a stale temporary file from a killed hook is replaced) with mode
/// 0644, write `bytes` and fsync.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(CONFLIST_MODE)
        .open(path)?;
    // The umask may have narrowed the mode given at creation.
    f.set_permissions(Permissions::from_mode(CONFLIST_MODE))?;
    f.write_all(bytes)?;
    f.sync_all()
}
