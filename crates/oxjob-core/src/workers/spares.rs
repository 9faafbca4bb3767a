//! Result segments the caller has finished with, kept for a moment so that workers
//! can refill them: refilling a memfd whose pages exist costs a plain copy, a new
//! one also costs allocating every page (~4x more on a VM).
//!
//! The caller gives a segment back when the last view of a result is gone; the
//! supervisor hands a few to a worker with each batch. Spares are freed after
//! [`KEEP`] unused, and never exceed [`MAX_BYTES`] in all.
//!
//! A child made by a bare `fork()` inherits the pool: its spares are the parent's
//! memory (refilling one would write into the parent's), so the child drops them;
//! and the pool's lock may have been held by a thread that does not exist in the
//! child, so nothing here ever blocks on it (a busy lock only skips a reuse).

use super::dropped;
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// Workers keep the spares they were given mapped (see `dropped`): one this process
/// frees is logged, so that they let go of it too.
fn forget(fd: &OwnedFd) {
    if let Ok(key) = dropped::key_of(fd.as_fd()) {
        dropped::record(key);
    }
}

/// How long an unused spare is kept.
pub const KEEP: Duration = Duration::from_secs(1);
/// Bound on the memory held by spares.
pub const MAX_BYTES: usize = 2 << 30;

struct Pool {
    /// Memfd, length, since when, and the worker that filled it.
    spares: VecDeque<(OwnedFd, usize, Instant, Option<usize>)>,
    bytes: usize,
    /// The process these spares belong to (0: none yet).
    owner: u32,
    /// Whether the owner's sweeper thread runs (a forked child has none).
    sweeping: bool,
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new());

/// The pool of this process, unless its lock is busy.
fn pool() -> Option<MutexGuard<'static, Pool>> {
    let mut pool = match POOL.try_lock() {
        Ok(pool) => pool,
        // Every update leaves the pool consistent, so a poisoned lock is still usable.
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    let this_process = std::process::id();
    if pool.owner != this_process {
        *pool = Pool::new();
        pool.owner = this_process;
    }
    Some(pool)
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            spares: VecDeque::new(),
            bytes: 0,
            owner: 0,
            sweeping: false,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, len, since, _)) = self.spares.front() {
            if now.duration_since(*since) < KEEP && self.bytes <= MAX_BYTES {
                break;
            }
            self.bytes -= len;
            if let Some((fd, _, _, _)) = self.spares.pop_front() {
                forget(&fd);
            }
        }
    }

    fn push(&mut self, fd: OwnedFd, len: usize, now: Instant, origin: Option<usize>) {
        self.spares.push_back((fd, len, now, origin));
        self.bytes += len;
        self.expire(now);
    }

    /// Up to `n` spares, newest first: those `worker` filled (it keeps them mapped),
    /// then any.
    fn pop(&mut self, n: usize, now: Instant, worker: Option<usize>) -> Vec<OwnedFd> {
        self.expire(now);
        let mut taken = Vec::new();
        while taken.len() < n {
            let own = worker.and_then(|w| self.spares.iter().rposition(|s| s.3 == Some(w)));
            let Some(index) = own.or_else(|| self.spares.len().checked_sub(1)) else {
                break;
            };
            let Some((fd, len, _, _)) = self.spares.remove(index) else {
                break;
            };
            self.bytes -= len;
            taken.push(fd);
        }
        taken
    }
}

/// Whether any spare is waiting to be handed out (a busy pool counts as one).
pub fn waiting() -> bool {
    pool().is_none_or(|pool| !pool.spares.is_empty())
}

/// Results smaller than this are not worth a descriptor held open while they live.
pub const MIN_BYTES: usize = 8 << 20;
/// Bound on the descriptors results hold open for later reuse (`ulimit -n` is often
/// 1024); results beyond it close theirs, as smaller ones do.
const MAX_HELD: usize = 256;
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Whether a live result of `len` bytes may keep its memfd open to be given back
/// (with [`give`]) when it dies.
pub fn hold(len: usize) -> bool {
    len >= MIN_BYTES
        && HELD
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held < MAX_HELD).then_some(held + 1)
            })
            .is_ok()
}

/// Keep the memfd `fd` of `len` bytes, held since [`hold`], which nothing here maps any
/// more; `origin` is the worker that filled it.
pub fn give(fd: OwnedFd, len: usize, origin: Option<usize>) {
    let _ = HELD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
        held.checked_sub(1)
    });
    let Some(mut pool) = pool() else {
        forget(&fd);
        return; // busy: `fd` is simply closed
    };
    pool.push(fd, len, Instant::now(), origin);
    if !pool.sweeping {
        // Frees spares nobody took, then ends when there are none left.
        pool.sweeping = std::thread::Builder::new()
            .name("oxjob-spares".into())
            .spawn(sweep)
            .is_ok();
        if !pool.sweeping {
            pool.pop(usize::MAX, Instant::now(), None)
                .iter()
                .for_each(forget);
        }
    }
}

fn sweep() {
    loop {
        std::thread::sleep(KEEP / 4);
        let Some(mut pool) = pool() else {
            continue;
        };
        pool.expire(Instant::now());
        if pool.spares.is_empty() {
            pool.sweeping = false;
            return;
        }
    }
}

/// Up to `n` spares for `worker`, newest first, those it filled before others.
pub fn take(n: usize, worker: usize) -> Vec<OwnedFd> {
    pool().map_or_else(Vec::new, |mut pool| {
        pool.pop(n, Instant::now(), Some(worker))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::memfd;

    fn len_of(fd: &OwnedFd) -> u64 {
        let file = std::fs::File::from(fd.try_clone().expect("dup"));
        file.metadata().expect("stat").len()
    }

    #[test]
    fn spares_are_taken_newest_first_and_expire() {
        let mut pool = Pool::new();
        let start = Instant::now();
        pool.push(memfd::create(10).expect("memfd"), 10, start, None);
        pool.push(memfd::create(20).expect("memfd"), 20, start, None);
        let taken = pool.pop(1, start, None);
        assert_eq!(taken.iter().map(len_of).collect::<Vec<_>>(), vec![20]);
        assert_eq!(pool.bytes, 10);
        assert!(pool.pop(5, start + KEEP, None).is_empty());
        assert_eq!(pool.bytes, 0);
    }

    #[test]
    fn a_worker_gets_back_the_spares_it_filled_first() {
        let mut pool = Pool::new();
        let now = Instant::now();
        pool.push(memfd::create(1).expect("memfd"), 1, now, Some(0));
        pool.push(memfd::create(2).expect("memfd"), 2, now, Some(1));
        pool.push(memfd::create(3).expect("memfd"), 3, now, Some(0));
        pool.push(memfd::create(4).expect("memfd"), 4, now, Some(1));
        let taken = pool.pop(3, now, Some(0));
        assert_eq!(taken.iter().map(len_of).collect::<Vec<_>>(), vec![3, 1, 4]);
        assert_eq!(pool.bytes, 2);
    }

    #[test]
    fn spares_never_exceed_the_bound() {
        let mut pool = Pool::new();
        let now = Instant::now();
        pool.push(memfd::create(1).expect("memfd"), MAX_BYTES, now, None);
        pool.push(memfd::create(1).expect("memfd"), 1, now, None);
        assert_eq!(pool.spares.len(), 1);
        assert_eq!(pool.bytes, 1);
    }
}
