//! The cache store behind `oxjob.Memory`: entries on disk, written atomically,
//! bounded automatically, shared safely by many processes.
//!
//! ```text
//! <root>/<module>/.../<function>/<args-hash>/output.oxjob   the result, a container
//! <root>/<module>/.../<function>/<args-hash>/metadata.json  written by the Python side
//! ```
//!
//! * An entry is built in a hidden `.tmp-*` directory and renamed into place, so a
//!   reader sees a whole entry or none, without locks. When two processes race on
//!   one key, the first rename wins and the other discards its copy.
//! * An entry is removed by renaming it to a hidden `.trash-*` name first, so it
//!   disappears at once even while its files are deleted.
//! * The last access time of an entry is the access time of its `output.oxjob`,
//!   set explicitly on every hit (independent of `noatime` mounts); eviction removes
//!   the least recently used entries first.
//! * Hidden directories left by a killed writer are removed by [`Store::reduce`] and
//!   [`Store::clear`] once they are older than [`STALE_AFTER`].

mod entries;

pub use entries::{EntryInfo, Limits};

use crate::container::{self, Section, WriteOptions};
use crate::error::{Error, Result};
use std::fs::{self, File, FileTimes};
use std::io::{BufWriter, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Name of the result file in an entry.
pub const OUTPUT: &str = "output.oxjob";
/// Name of the metadata file in an entry.
pub const METADATA: &str = "metadata.json";
/// Hidden work directories older than this belong to a dead writer.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

const TMP_PREFIX: &str = ".tmp-";
const TRASH_PREFIX: &str = ".trash-";

/// What [`Store::put`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The entry was written.
    Stored,
    /// Another writer had stored this key first; its entry was kept.
    AlreadyPresent,
}

/// A cache store rooted at one directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Check that a caller-supplied relative path stays inside the store.
fn relative(path: &str) -> Result<&Path> {
    let candidate = Path::new(path);
    let ok = candidate
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if ok && !path.is_empty() {
        Ok(candidate)
    } else {
        Err(Error::Invalid(format!(
            "cache path {path:?} must be relative and stay inside the store"
        )))
    }
}

impl Store {
    /// A store at `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of entry `key` of function `func_id` (`"module/sub/func"`).
    pub fn entry_dir(&self, func_id: &str, key: &str) -> Result<PathBuf> {
        Ok(self.root.join(relative(func_id)?).join(relative(key)?))
    }

    /// Store `sections` (pickle stream, then buffers) and `metadata` under `key`.
    ///
    /// Nothing partial is ever visible: on any error the work directory is removed
    /// and the error returned.
    pub fn put(
        &self,
        func_id: &str,
        key: &str,
        sections: &[Section<'_>],
        opts: &WriteOptions,
        metadata: &[u8],
    ) -> Result<PutOutcome> {
        let target = self.entry_dir(func_id, key)?;
        let parent = target
            .parent()
            .ok_or_else(|| Error::Invalid("entry has no parent directory".into()))?;
        fs::create_dir_all(parent)?;
        let work = parent.join(format!("{TMP_PREFIX}{key}-{}", unique_suffix()));
        let result = (|| {
            fs::create_dir(&work)?;
            let file = File::create(work.join(OUTPUT))?;
            let mut sink = BufWriter::with_capacity(1 << 20, file);
            container::write(&mut sink, sections, opts)?;
            sink.into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            fs::write(work.join(METADATA), metadata)?;
            match fs::rename(&work, &target) {
                Ok(()) => Ok(PutOutcome::Stored),
                // A non-empty directory already holds the key: a concurrent writer won.
                Err(err)
                    if target.join(OUTPUT).exists()
                        && matches!(
                            err.kind(),
                            ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists
                        ) =>
                {
                    let _ = fs::remove_dir_all(&work);
                    Ok(PutOutcome::AlreadyPresent)
                }
                Err(err) => Err(Error::Io(err)),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&work);
        }
        result
    }

    /// The decoded sections of entry `key`, or `None` when there is no such entry.
    /// A hit marks the entry as just used. A damaged entry is a [`Error::Corrupt`].
    pub fn get(
        &self,
        func_id: &str,
        key: &str,
        threads: usize,
    ) -> Result<Option<Vec<crate::buffer::Buffer>>> {
        let path = self.entry_dir(func_id, key)?.join(OUTPUT);
        let file = match File::open(&path) {
            Ok(file) => file,
            // A path through a non-directory cannot hold an entry either.
            Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None)
            }
            Err(err) => return Err(Error::Io(err)),
        };
        // Best effort: a read-only store still serves hits.
        let _ = file.set_times(FileTimes::new().set_accessed(SystemTime::now()));
        let (_, decoded) = container::read_file(file, threads)?;
        Ok(Some(decoded))
    }

    /// Mark entry `key` as just used (for hits served without [`Store::get`]).
    pub fn touch(&self, func_id: &str, key: &str) -> Result<()> {
        let file = File::open(self.entry_dir(func_id, key)?.join(OUTPUT))?;
        file.set_times(FileTimes::new().set_accessed(SystemTime::now()))?;
        Ok(())
    }

    /// Whether entry `key` exists.
    pub fn contains(&self, func_id: &str, key: &str) -> bool {
        self.entry_dir(func_id, key)
            .map(|dir| dir.join(OUTPUT).is_file())
            .unwrap_or(false)
    }

    /// Remove entry `key`, if present.
    pub fn remove(&self, func_id: &str, key: &str) -> Result<()> {
        remove_atomically(&self.entry_dir(func_id, key)?)
    }

    /// Remove everything under `sub` (a function's directory), or the whole store
    /// when `sub` is `None`, together with stale work directories.
    pub fn clear(&self, sub: Option<&str>) -> Result<()> {
        let dir = match sub {
            Some(sub) => self.root.join(relative(sub)?),
            None => self.root.clone(),
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::Io(err)),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                remove_atomically(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}

/// Rename `dir` out of sight, then delete it: readers never see half an entry.
fn remove_atomically(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trash = parent.join(format!("{TRASH_PREFIX}{name}-{}", unique_suffix()));
    match fs::rename(dir, &trash) {
        Ok(()) => {}
        Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(())
        }
        Err(err) => return Err(Error::Io(err)),
    }
    match fs::remove_dir_all(&trash) {
        Err(err) if err.kind() != ErrorKind::NotFound => Err(Error::Io(err)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
