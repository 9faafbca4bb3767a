//! Listing entries and enforcing bounds (least recently used first).

use super::{remove_atomically, Store, METADATA, OUTPUT, STALE_AFTER};
use crate::error::{Error, Result};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, SystemTime};

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
                let stale = item
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_AFTER);
                if stale {
                    let _ = fs::remove_dir_all(&path);
                }
                continue;
            }
            if path.join(OUTPUT).is_file() {
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
        let mut entries = self.entries()?;
        entries.sort_by_key(|e| e.last_access);
        let now = SystemTime::now();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut count = entries.len();
        let mut removed = Vec::new();
        for entry in entries {
            let too_old = limits.age.is_some_and(|age| {
                now.duration_since(entry.last_access)
                    .is_ok_and(|idle| idle > age)
            });
            let too_big = limits.bytes.is_some_and(|b| total > b);
            let too_many = limits.items.is_some_and(|n| count > n);
            if !(too_old || too_big || too_many) {
                continue;
            }
            remove_atomically(&self.entry_dir(&entry.func_id, &entry.key)?)?;
            total -= entry.bytes;
            count -= 1;
            removed.push(entry);
        }
        Ok(removed)
    }
}
