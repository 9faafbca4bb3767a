//! Moving a finished work directory into place, over an older entry if need be.

use super::entries::is_entry;
use super::{remove_atomically, TRASH_PREFIX};
use crate::error::{Error, Result};
use crate::tempname;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::Path;

/// Rename `work` to `target`. When `target` already holds an entry, the two are
/// exchanged atomically where the system can (a reader sees the old entry or the new
/// one, never none), and the old one is deleted. Returns whether an entry was replaced.
pub(super) fn install(work: &Path, target: &Path) -> Result<bool> {
    match fs::rename(work, target) {
        Ok(()) => return Ok(false),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists
            ) => {}
        Err(err) => return Err(Error::Io(err)),
    }
    if !is_entry(target) {
        // Never swap away what is not the store's own.
        return Err(Error::Invalid(format!(
            "{} exists and is not a cache entry",
            target.display()
        )));
    }
    match exchange(work, target) {
        Ok(true) => {
            // `work` now holds the older entry.
            let _ = fs::remove_dir_all(work);
            return Ok(true);
        }
        Ok(false) => {}
        // Removed meanwhile: the place is free again.
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return match fs::rename(work, target) {
                Ok(()) => Ok(false),
                Err(err) => Err(Error::Io(err)),
            };
        }
        Err(err) => return Err(Error::Io(err)),
    }
    // No atomic exchange here: the older entry goes out of sight first, so a reader
    // may briefly find no entry (a miss), never a stale or partial one.
    remove_atomically(target)?;
    match fs::rename(work, target) {
        Ok(()) => Ok(true),
        // A concurrent writer installed its newer result in the gap: keep it.
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists
            ) =>
        {
            let _ = fs::remove_dir_all(work);
            Ok(true)
        }
        Err(err) => Err(Error::Io(err)),
    }
}

/// Swap two paths atomically; `Ok(false)` when the system or file system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both pointers are NUL-terminated strings that live until the call
    // returns; renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> io::Result<bool> {
    Ok(false)
}

/// A hidden name for an entry on its way out.
pub(super) fn trash_name(name: &str) -> String {
    format!("{TRASH_PREFIX}{name}-{}", tempname::random_token())
}
