//! A mutex that a forked child does not wait for.
//!
//! A process that forks while another of its threads holds a mutex gives the child a
//! copy that stays locked for ever: the thread that would unlock it does not exist
//! there. Python programs fork (`multiprocessing`'s fork context, `os.fork()`), and
//! worker start-up runs on background threads (see [`super::standby`]), so the locks
//! of that path remember which process took them: a child that finds one held by its
//! parent gets `None` and does without (it starts workers the plain way).
//!
//! A lock that guards no data, only an action of this process, needs no such care:
//! a [`ProcessLock`] held by the parent at the fork is the child's to take.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// A mutex whose [`ForkLock::lock`] returns `None` in a forked child when the parent
/// held it at the fork.
pub struct ForkLock<T> {
    inner: Mutex<T>,
    /// The process that last took the lock (0: never taken).
    holder: AtomicU32,
}

impl<T> ForkLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> ForkLock<T> {
        ForkLock {
            inner: Mutex::new(value),
            holder: AtomicU32::new(0),
        }
    }

    /// The lock, waiting for a thread of this process that holds it; `None` if it was
    /// held, at the fork that made this process, by a thread of the parent.
    pub fn lock(&self) -> Option<MutexGuard<'_, T>> {
        let me = std::process::id();
        let guard = match self.inner.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let holder = self.holder.load(Ordering::Acquire);
                if holder != 0 && holder != me {
                    return None;
                }
                self.inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            }
        };
        self.holder.store(me, Ordering::Release);
        Some(guard)
    }
}

/// A lock without data that serializes an action among the threads of one process.
/// A child forked while a thread of its parent held it takes it over: that thread does
/// not exist in the child, and what it guarded (the action of another process) is not
/// the child's. Waiting is a short sleep: the lock is taken rarely and held for a
/// request to the template, never on a hot path.
pub struct ProcessLock {
    /// The process one of whose threads holds the lock; 0 when free.
    holder: AtomicU32,
}

/// Holds a [`ProcessLock`] until dropped.
pub struct ProcessGuard<'a> {
    lock: &'a ProcessLock,
}

impl ProcessLock {
    /// A new, free lock.
    pub const fn new() -> ProcessLock {
        ProcessLock {
            holder: AtomicU32::new(0),
        }
    }

    /// The lock, once no other thread of this process holds it.
    pub fn lock(&self) -> ProcessGuard<'_> {
        let me = std::process::id();
        let mut seen = 0;
        loop {
            match self
                .holder
                .compare_exchange(seen, me, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return ProcessGuard { lock: self },
                // Free, or held at the fork by a thread of an ancestor: try to take it.
                Err(holder) if holder != me => seen = holder,
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }
}

impl Default for ProcessLock {
    fn default() -> ProcessLock {
        ProcessLock::new()
    }
}

impl Drop for ProcessGuard<'_> {
    fn drop(&mut self) {
        self.lock.holder.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_forked_while_its_parent_held_a_process_lock_takes_it() {
        static LOCK: ProcessLock = ProcessLock::new();
        let held = LOCK.lock();
        // SAFETY: the child takes the lock, which does not allocate or wait for the
        // parent, then _exit; the parent waits for it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let guard = LOCK.lock();
            drop(guard);
            let again = LOCK.lock();
            drop(again);
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        drop(held);
    }

    #[test]
    fn a_process_lock_keeps_the_threads_of_one_process_apart() {
        use std::sync::atomic::AtomicUsize;
        static LOCK: ProcessLock = ProcessLock::new();
        static INSIDE: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..50 {
                        let _guard = LOCK.lock();
                        let now = INSIDE.fetch_add(1, Ordering::SeqCst) + 1;
                        MOST.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        INSIDE.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().is_ok());
        }
        assert_eq!(MOST.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_child_forked_while_the_lock_is_held_does_not_wait() {
        static LOCK: ForkLock<u32> = ForkLock::new(0);
        let held = LOCK.lock().expect("free");
        // SAFETY: the child only calls async-signal-safe-enough code on a lock it does
        // not wait for, then _exit; the parent waits for it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = if LOCK.lock().is_none() { 0 } else { 1 };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        drop(held);
        assert!(LOCK.lock().is_some());
    }
}
