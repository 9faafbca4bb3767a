//! The cache store behind `oxjob.Memory`: entries on disk, written atomically,
//! bounded automatically, shared safely by many processes.
//!
//! ```text
//! <root>/<module>/.../<function>/<args-hash>/output.oxjob   the result, a container
//! <root>/<module>/.../<function>/<args-hash>/metadata.json  written by the Python side
//! <root>/<module>/.../<function>/func_code.py               written by the Python side
//! ```
//!
//! * An entry is built in a hidden `.tmp-<random>` directory and renamed into place,
//!   so a reader sees a whole entry or none, without locks. A newer result for a key
//!   replaces the older entry atomically (`renameat2(RENAME_EXCHANGE)` on Linux), so
//!   the next read returns what was stored last.
//! * An entry is removed by renaming it to a hidden `.trash-<random>` name first, so
//!   it disappears at once even while its files are deleted.
//! * The last access time of an entry is the access time of its `output.oxjob`,
//!   set explicitly on every hit (independent of `noatime` mounts); eviction removes
//!   the least recently used entries first.
//! * Only what the store recognises as its own is ever removed: entry directories
//!   (`output.oxjob` and `metadata.json`, nothing else), `func_code.py` files, its
//!   own work directories, and directories it emptied. Anything else found under the
//!   root is left alone.
//! * Work directories left by a killed writer are removed by [`Store::entries`],
//!   [`Store::reduce`] and [`Store::clear`] once they are older than [`STALE_AFTER`].

mod entries;

mod install;

pub use entries::{EntryInfo, Limits};

use crate::container::{self, Section, WriteOptions};
use crate::error::{Error, Result};
use crate::tempname;
use std::fs::{self, File, FileTimes};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Name of the result file in an entry.
pub const OUTPUT: &str = "output.oxjob";
/// Name of the metadata file in an entry.
pub const METADATA: &str = "metadata.json";
/// Name of the function's source, beside its entries (written by the Python side).
pub const FUNC_CODE: &str = "func_code.py";
/// Hidden work directories older than this belong to a dead writer.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

const TMP_PREFIX: &str = ".tmp-";
const TRASH_PREFIX: &str = ".trash-";

/// Whether a hidden name is one of the store's own work or trash directories.
fn is_work_name(name: &str) -> bool {
    name.starts_with(TMP_PREFIX) || name.starts_with(TRASH_PREFIX)
}

/// What [`Store::put`] did; both carry the bytes the entry takes on disk.
#[derive(Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The entry was written where there was none.
    Stored(u64),
    /// An older entry of this key was replaced.
    Replaced(u64),
}

impl PutOutcome {
    /// Bytes of the new entry (result and metadata).
    pub fn bytes(&self) -> u64 {
        match self {
            PutOutcome::Stored(bytes) | PutOutcome::Replaced(bytes) => *bytes,
        }
    }
}

/// A cache store rooted at one directory.
///
/// Clones share what the store knows of its size (see [`Store::after_put`]).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    tally: Arc<Mutex<entries::Tally>>,
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
        Store {
            root: root.into(),
            tally: Arc::default(),
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of entry `key` of function `func_id` (`"module/sub/func"`).
    pub fn entry_dir(&self, func_id: &str, key: &str) -> Result<PathBuf> {
        Ok(self.root.join(relative(func_id)?).join(relative(key)?))
    }

    /// Store `sections` (pickle stream, then buffers) and `metadata` under `key`,
    /// replacing an older entry of that key.
    ///
    /// Nothing partial is ever visible, and nothing is left behind on failure: the
    /// work directory and the directories made for it are removed and the error
    /// returned.
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
        let made = tempname::create_dirs(parent)?;
        let result = (|| {
            let work = tempname::create_dir_in(parent, TMP_PREFIX)?;
            let written = (|| {
                let file = tempname::create_new(&work.join(OUTPUT))?;
                let mut sink = BufWriter::with_capacity(1 << 20, file);
                let written = container::write(&mut sink, sections, opts)?;
                sink.into_inner()
                    .map_err(std::io::IntoInnerError::into_error)?;
                tempname::create_new(&work.join(METADATA))?.write_all(metadata)?;
                let bytes = written + metadata.len() as u64;
                Ok(if install::install(&work, &target)? {
                    PutOutcome::Replaced(bytes)
                } else {
                    PutOutcome::Stored(bytes)
                })
            })();
            if written.is_err() {
                let _ = fs::remove_dir_all(&work);
            }
            written
        })();
        if result.is_err() {
            tempname::remove_dirs(&made);
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
    /// Anything else at that path is left alone.
    pub fn remove(&self, func_id: &str, key: &str) -> Result<()> {
        let dir = self.entry_dir(func_id, key)?;
        if entries::is_entry(&dir) {
            remove_atomically(&dir)?;
        }
        Ok(())
    }

    /// Remove the entries of one function (`sub`, its directory) and its
    /// `func_code.py`, or, when `sub` is `None`, every entry and `func_code.py` of the
    /// store. Directories this emptied go too; anything the store does not recognise
    /// as its own stays. Returns the number of entries removed.
    pub fn clear(&self, sub: Option<&str>) -> Result<usize> {
        let removed = match sub {
            Some(sub) => entries::clear_dir(&self.root.join(relative(sub)?), false)?,
            None => entries::clear_dir(&self.root, true)?,
        };
        self.forget_tally();
        Ok(removed)
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
    let trash = parent.join(install::trash_name(&name));
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
