//! Shared segments (`oxjob.shared` arrays) the caller has dropped.
//!
//! Workers keep the shared segments they receive mapped across batches and calls: a
//! segment mapped anew costs a page fault per few pages on first touch (a 100 MB
//! array: ~12 ms to map and sum on the project's VM, ~3.5 ms once mapped). So that a
//! worker never keeps memory the caller has freed, the caller logs each shared
//! segment it drops, by [`Key`], and before a worker's next batch the supervisor
//! sends it the keys logged since its previous one (a `Forget` frame). Workers also
//! let go of every segment after a second without frames.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// A memfd's identity in every process that holds it: device and inode numbers.
pub type Key = (u64, u64);

/// The [`Key`] of the memfd `fd`.
pub fn key_of(fd: BorrowedFd<'_>) -> io::Result<Key> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills `stat` for a descriptor we borrow; the result is checked
    // before `stat` is read.
    let stat = unsafe {
        if libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        stat.assume_init()
    };
    Ok((stat.st_dev, stat.st_ino))
}

/// Keys kept in the log; a worker that missed older ones forgets everything.
const MAX_LOG: usize = 4096;

struct Log {
    /// Sequence number of `keys[0]`.
    first: u64,
    keys: VecDeque<Key>,
}

static LOG: Mutex<Log> = Mutex::new(Log {
    first: 0,
    keys: VecDeque::new(),
});

/// The log, unless it stays busy: a child made by a bare `fork()` may have inherited
/// it locked by a thread it does not have. A missed update costs at worst a segment
/// kept until the worker's next idle second.
fn log() -> Option<MutexGuard<'static, Log>> {
    for _ in 0..1000 {
        match LOG.try_lock() {
            Ok(log) => return Some(log),
            // Every update leaves the log consistent.
            Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

impl Log {
    fn end(&self) -> u64 {
        self.first + self.keys.len() as u64
    }

    fn push(&mut self, key: Key) {
        self.keys.push_back(key);
        if self.keys.len() > MAX_LOG {
            self.keys.pop_front();
            self.first += 1;
        }
    }

    fn since(&self, seq: u64) -> News {
        if seq < self.first {
            return News::All;
        }
        let skip = usize::try_from(seq - self.first).unwrap_or(usize::MAX);
        News::Keys(self.keys.iter().skip(skip).copied().collect())
    }
}

/// What a worker told up to some point must now forget.
#[derive(Debug, PartialEq, Eq)]
pub enum News {
    /// These segments.
    Keys(Vec<Key>),
    /// Everything: older entries left the log before it was told.
    All,
}

/// Log that the caller dropped the shared segment `key`.
pub fn record(key: Key) {
    if let Some(mut log) = log() {
        log.push(key);
    }
}

/// Log `keys` at once: the sequence numbers before and after them (None when the log
/// stays busy). A worker told up to `before` may then be told up to `after`: the keys
/// are news to every other worker only (spares handed to it, see `spares`).
pub fn record_all(keys: &[Key]) -> Option<(u64, u64)> {
    let mut log = log()?;
    let before = log.end();
    for key in keys {
        log.push(*key);
    }
    Some((before, log.end()))
}

/// The sequence number after the newest entry: where a new worker starts.
pub fn end() -> u64 {
    log().map_or(0, |log| log.end())
}

/// What was dropped after `seq`, and the sequence number to ask from next time.
pub fn since(seq: u64) -> (News, u64) {
    match log() {
        Some(log) => (log.since(seq), log.end()),
        None => (News::Keys(Vec::new()), seq),
    }
}

/// A `Forget` frame's body: the keys, 16 bytes each (little-endian).
pub fn encode(keys: &[Key]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.len() * 16);
    for (dev, ino) in keys {
        out.extend_from_slice(&dev.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
    }
    out
}

/// The keys of a `Forget` frame's body.
pub fn decode(body: &[u8]) -> Result<Vec<Key>> {
    if !body.len().is_multiple_of(16) {
        return Err(Error::corrupt(format!(
            "a forget list of {} bytes is not a whole number of 16-byte keys",
            body.len()
        )));
    }
    Ok(body
        .chunks_exact(16)
        .map(|chunk| {
            let (dev, ino) = chunk.split_at(8);
            let mut dev_bytes = [0u8; 8];
            let mut ino_bytes = [0u8; 8];
            dev_bytes.copy_from_slice(dev);
            ino_bytes.copy_from_slice(ino);
            (u64::from_le_bytes(dev_bytes), u64::from_le_bytes(ino_bytes))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::memfd;
    use std::os::fd::AsFd;

    #[test]
    fn keys_round_trip_and_bad_lengths_are_rejected() {
        let keys = vec![(1, 2), (u64::MAX, 0)];
        assert_eq!(decode(&encode(&keys)).ok(), Some(keys));
        assert!(decode(&[0u8; 15]).is_err());
        assert_eq!(decode(&[]).ok(), Some(vec![]));
    }

    #[test]
    fn the_log_reports_what_came_after_and_everything_once_it_overflowed() {
        let mut log = Log {
            first: 0,
            keys: VecDeque::new(),
        };
        log.push((1, 1));
        let told = log.end();
        log.push((1, 2));
        log.push((1, 3));
        assert_eq!(log.since(told), News::Keys(vec![(1, 2), (1, 3)]));
        assert_eq!(log.since(log.end()), News::Keys(vec![]));
        for ino in 0..MAX_LOG as u64 {
            log.push((2, ino));
        }
        assert_eq!(log.since(told), News::All);
        assert_eq!(log.keys.len(), MAX_LOG);
    }

    #[test]
    fn a_memfd_has_one_key_in_every_descriptor() {
        let fd = memfd::create(4096).expect("memfd");
        let dup = fd.try_clone().expect("dup");
        let other = memfd::create(4096).expect("memfd");
        let key = key_of(fd.as_fd()).expect("fstat");
        assert_eq!(key, key_of(dup.as_fd()).expect("fstat"));
        assert_ne!(key, key_of(other.as_fd()).expect("fstat"));
    }
}
