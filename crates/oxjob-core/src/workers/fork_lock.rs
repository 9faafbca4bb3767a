//! A mutex that a forked child does not wait for.
//!
//! A process that forks while another of its threads holds a mutex gives the child a
//! copy that stays locked for ever: the thread that would unlock it does not exist
//! there. Python programs fork (`multiprocessing`'s fork context, `os.fork()`), and
//! worker start-up runs on background threads (see [`super::standby`]), so the locks
//! of that path remember which process took them: a child that finds one held by its
//! parent gets `None` and does without (it starts workers the plain way).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
