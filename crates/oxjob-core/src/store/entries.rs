//! Listing entries, clearing them, and enforcing bounds (least recently used first).
//!
//! Bounds cost amortised O(1) per write: [`Store::after_put`] walks the store only
//! when the writes counted since the last walk could have crossed a bound, when they
//! reach a quarter of the entries then found (so other processes' writes are seen),
//! or when an entry seen at the last walk has since outlived the age limit. A walk
//! that finds a bound crossed evicts down to seven eighths of it, so the next such
//! walk is again at least an eighth of the entries away.

use super::{is_work_name, remove_atomically, Store, FUNC_CODE, METADATA, OUTPUT, STALE_AFTER};
use crate::error::{Error, Result};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

/// One cache entry as found on disk.
#[derive(Clone, Debug)]
pub struct EntryInfo {
    /// The function's directory relative to the root, with `/` separators.
    pub func_id: String,
    /// The arguments' hash (the entry's directory name).
    pub key: String,
    /// Bytes on disk (result and metadata).
    pub bytes: u64,
    /// Last time the entry was stored or read.
    pub last_access: SystemTime,
    /// When the entry was stored.
    pub created: SystemTime,
}

/// Bounds on a store; `None` means unbounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Total bytes of all entries.
    pub bytes: Option<u64>,
    /// Number of entries.
    pub items: Option<usize>,
    /// Entries not used for longer than this are removed.
    pub age: Option<Duration>,
}

impl Limits {
    /// Whether any bound is set.
    pub fn any(&self) -> bool {
        self.bytes.is_some() || self.items.is_some() || self.age.is_some()
    }
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Whether `dir` is an entry: a real directory holding a regular `output.oxjob` and
/// nothing but it and `metadata.json`. Anything else is not the store's to remove.
pub(super) fn is_entry(dir: &Path) -> bool {
    let regular = |name: &str| {
        fs::symlink_metadata(dir.join(name))
            .map(|m| m.file_type().is_file())
            .unwrap_or(false)
    };
    let is_dir = fs::symlink_metadata(dir)
        .map(|m| m.file_type().is_dir())
        .unwrap_or(false);
    if !is_dir || !regular(OUTPUT) {
        return false;
    }
    let Ok(listing) = fs::read_dir(dir) else {
        return false;
    };
    listing.into_iter().all(|item| {
        item.is_ok_and(|item| {
            let name = item.file_name();
            name == OUTPUT || (name == METADATA && regular(METADATA))
        })
    })
}

/// Remove a dead writer's work directory (one of ours, older than [`STALE_AFTER`]).
fn remove_if_stale(path: &Path, item: &fs::DirEntry, name: &str) {
    if !is_work_name(name) {
        return;
    }
    let stale = item
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_AFTER);
    if stale {
        let _ = fs::remove_dir_all(path);
    }
}

/// Remove the entries and the `func_code.py` in `dir` (and below when `recursive`),
/// then the directories this emptied. Returns the number of entries removed.
pub(super) fn clear_dir(dir: &Path, recursive: bool) -> Result<usize> {
    let mut removed = 0;
    if clear_in(dir, recursive, &mut removed)? && !recursive {
        let _ = fs::remove_dir(dir); // a function's directory this emptied
    }
    Ok(removed)
}

/// [`clear_dir`]'s walk; returns whether anything was removed in `dir` or below.
fn clear_in(dir: &Path, recursive: bool, removed: &mut usize) -> Result<bool> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(false)
        }
        Err(err) => return Err(Error::Io(err)),
    };
    let mut touched = false;
    for item in listing {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        let path = item.path();
        let Ok(kind) = item.file_type() else { continue };
        if kind.is_dir() {
            if is_hidden(&name) {
                remove_if_stale(&path, &item, &name);
            } else if is_entry(&path) {
                remove_atomically(&path)?;
                *removed += 1;
                touched = true;
            } else if recursive && clear_in(&path, true, removed)? {
                // Only a directory this emptied goes: a user's files keep theirs, and
                // a user's empty directory is not the store's.
                let _ = fs::remove_dir(&path);
                touched = true;
            }
        } else if name == FUNC_CODE {
            match fs::remove_file(&path) {
                Err(err) if err.kind() != ErrorKind::NotFound => return Err(Error::Io(err)),
                _ => touched = true,
            }
        }
    }
    Ok(touched)
}

/// What this process knows of the store's size since its last walk.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Whether a walk was made (nothing is known before).
    walked: bool,
    /// Entries found at the last walk plus entries written since: an upper bound
    /// while this process is the only writer.
    count: usize,
    /// Bytes likewise.
    bytes: u64,
    /// Entries found at the last walk.
    count_at_walk: usize,
    /// Writes since the last walk.
    pub(super) puts: usize,
    /// When the last walk was made.
    walked_at: Option<Instant>,
    /// When the least recently used entry seen at the last walk outlives the age limit.
    expires: Option<SystemTime>,
}

impl Tally {
    fn due(&self, limits: &Limits, now: SystemTime) -> bool {
        if !self.walked || self.puts.saturating_mul(4) >= self.count_at_walk {
            return true;
        }
        let over_items = limits.items.is_some_and(|n| self.count > n);
        let over_bytes = limits.bytes.is_some_and(|b| self.bytes > b);
        let expired = limits.age.is_some_and(|age| {
            self.expires.is_some_and(|e| now >= e)
                && self.walked_at.is_some_and(|t| t.elapsed() >= age)
        });
        over_items || over_bytes || expired
    }
}

/// Seven eighths of a crossed bound (the bound itself when it was not crossed, or is
/// too small for an eighth to be a whole entry).
fn goal<T>(limit: Option<T>, now: T, slack: bool) -> Option<T>
where
    T: Copy + PartialOrd + std::ops::Sub<Output = T> + std::ops::Div<Output = T> + From<u8>,
{
    limit.map(|l| {
        if slack && now > l {
            l - l / T::from(8)
        } else {
            l
        }
    })
}

fn entry_info(dir: &Path, func_id: String, key: String) -> Option<EntryInfo> {
    let output = fs::metadata(dir.join(OUTPUT)).ok()?;
    let metadata = fs::metadata(dir.join(METADATA)).ok();
    let created = metadata
        .as_ref()
        .and_then(|m| m.modified().ok())
        .or_else(|| output.modified().ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let last_access = output.accessed().unwrap_or(created).max(created);
    Some(EntryInfo {
        func_id,
        key,
        bytes: output.len() + metadata.map(|m| m.len()).unwrap_or(0),
        last_access,
        created,
    })
}

impl Store {
    /// Every entry of the store, in no particular order. Work directories of
    /// writers that died more than [`STALE_AFTER`] ago are removed on the way.
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        let mut found = Vec::new();
        self.walk(&self.root, "", &mut found)?;
        Ok(found)
    }

    fn walk(&self, dir: &Path, func_id: &str, found: &mut Vec<EntryInfo>) -> Result<()> {
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            // Removed by a concurrent clear: nothing to list.
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::Io(err)),
        };
        for item in listing {
            let Ok(item) = item else { continue };
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            if !item.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if is_hidden(&name) {
                remove_if_stale(&path, &item, &name);
                continue;
            }
            if is_entry(&path) {
                if let Some(info) = entry_info(&path, func_id.to_string(), name) {
                    found.push(info);
                }
            } else {
                let sub = if func_id.is_empty() {
                    name
                } else {
                    format!("{func_id}/{name}")
                };
                self.walk(&path, &sub, found)?;
            }
        }
        Ok(())
    }

    /// Remove entries until the store is within `limits`: first those unused for
    /// longer than the age limit, then the least recently used until both the byte
    /// and the item limits hold. Returns the removed entries.
    pub fn reduce(&self, limits: &Limits) -> Result<Vec<EntryInfo>> {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        self.reduce_to(limits, false, &mut tally)
    }

    /// Enforce `limits` after a write of `bytes`, walking the store only when due
    /// (see the module's documentation). Returns the removed entries.
    pub fn after_put(&self, bytes: u64, limits: &Limits) -> Result<Vec<EntryInfo>> {
        if !limits.any() {
            return Ok(Vec::new());
        }
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.count = tally.count.saturating_add(1);
        tally.bytes = tally.bytes.saturating_add(bytes);
        tally.puts = tally.puts.saturating_add(1);
        if !tally.due(limits, SystemTime::now()) {
            return Ok(Vec::new());
        }
        self.reduce_to(limits, true, &mut tally)
    }

    /// Forget what is known of the store's size (after a clear).
    pub(super) fn forget_tally(&self) {
        *self.tally.lock().unwrap_or_else(PoisonError::into_inner) = Tally::default();
    }

    fn reduce_to(&self, limits: &Limits, slack: bool, tally: &mut Tally) -> Result<Vec<EntryInfo>> {
        let mut entries = self.entries()?;
        entries.sort_by_key(|e| e.last_access);
        let now = SystemTime::now();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut count = entries.len();
        let bytes_goal = goal(limits.bytes, total, slack);
        let items_goal = goal(limits.items.map(|n| n as u64), count as u64, slack);
        let mut removed = Vec::new();
        let mut kept_oldest = None;
        for entry in entries {
            let too_old = limits.age.is_some_and(|age| {
                now.duration_since(entry.last_access)
                    .is_ok_and(|idle| idle > age)
            });
            let too_big = bytes_goal.is_some_and(|b| total > b);
            let too_many = items_goal.is_some_and(|n| count as u64 > n);
            if !(too_old || too_big || too_many) {
                kept_oldest = kept_oldest.or(Some(entry.last_access));
                continue;
            }
            remove_atomically(&self.entry_dir(&entry.func_id, &entry.key)?)?;
            total -= entry.bytes;
            count -= 1;
            removed.push(entry);
        }
        *tally = Tally {
            walked: true,
            count,
            bytes: total,
            count_at_walk: count,
            puts: 0,
            walked_at: Some(Instant::now()),
            expires: limits
                .age
                .zip(kept_oldest)
                .and_then(|(age, oldest)| oldest.checked_add(age)),
        };
        Ok(removed)
    }
}
