//! Workers forked ahead of time for the next pool of the same kind.
//!
//! A program that opens pools in a loop (`with Pool(2) as pool: ...`) would pay a
//! worker's start at every pool, on the caller's path. When a pool whose workers came
//! from the template starts shutting down, as many new workers are forked from the
//! template on a background thread (while the pool's own workers exit); they wait,
//! fresh (they ran no task: the pool's initializer and tasks reach them only once a
//! pool takes them), for the next pool started with the
//! same template and the same request (working directory and environment), stdout and
//! stderr. A pool started any other way discards them, and so does [`LINGER`] without a
//! pool, or the caller's exit (their sockets close). A pool that took waiting workers
//! has the next pool's forked at once, while it works.

use super::fork_lock::ForkLock;
use super::template;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

/// What a waiting worker was made for: it serves only a pool that would ask the same.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    template: String,
    request: Vec<u8>,
    /// `(st_dev, st_ino)` of descriptors 1 and 2: output redirected since (a test
    /// runner's capture, for one) must reach the new pool's workers.
    outputs: [(u64, u64); 2],
}

fn identity(fd: i32) -> io::Result<(u64, u64)> {
    // SAFETY: a zeroed `stat` is a valid out-buffer for fstat, whose result is checked.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor number with a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

fn dup(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor number; the result is checked and owned
    // by nobody else.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

impl Key {
    /// The key of workers started now from the template at `path` with `env`.
    pub fn now(path: &str, env: &[(String, String)]) -> io::Result<Key> {
        Ok(Key {
            template: path.to_owned(),
            request: template::request(env)?,
            outputs: [identity(1)?, identity(2)?],
        })
    }

    /// Copies of descriptors 1 and 2, if they are still the ones the key names.
    fn outputs_now(&self) -> io::Result<[OwnedFd; 2]> {
        let copies = [dup(1)?, dup(2)?];
        let same = [
            identity(copies[0].as_raw_fd())?,
            identity(copies[1].as_raw_fd())?,
        ];
        if same != self.outputs {
            return Err(io::Error::other("the output was redirected meanwhile"));
        }
        Ok(copies)
    }

    /// The template request that starts such workers.
    pub fn request(&self) -> &[u8] {
        &self.request
    }
}

/// A worker forked ahead, waiting for a pool.
pub type Waiting = template::Started;

/// A waiting worker and when it is discarded if no pool took it.
struct Kept {
    worker: Waiting,
    until: Instant,
}

struct Standby {
    /// The process this state belongs to: a forked child finds its parent's copy,
    /// whose workers and threads are the parent's.
    owner: u32,
    key: Option<Key>,
    waiting: Vec<Kept>,
    /// A thread is forking workers for `key`.
    filling: bool,
    /// A thread discards workers past their time; one per process, while any wait.
    expiring: bool,
}

static STANDBY: ForkLock<Standby> = ForkLock::new(Standby {
    owner: 0,
    key: None,
    waiting: Vec::new(),
    filling: false,
    expiring: false,
});
static FILLED: Condvar = Condvar::new();

/// How long workers forked ahead of time wait for a pool before they are discarded.
pub const LINGER: Duration = Duration::from_secs(2);

/// This process's standby state; `None` in a child forked while its parent held it.
fn lock() -> Option<MutexGuard<'static, Standby>> {
    let mut standby = STANDBY.lock()?;
    let me = std::process::id();
    if standby.owner != me {
        // The parent's workers are not ours to use or kill: close our copies of
        // their sockets only.
        standby.owner = me;
        standby.key = None;
        standby.waiting.clear();
        standby.filling = false;
        standby.expiring = false;
    }
    Some(standby)
}

/// Kill and reap workers that will not be used (their sockets close).
fn discard(waiting: Vec<Kept>) {
    template::kill_and_reap(waiting.iter().map(|kept| kept.worker.pid));
}

/// Whether the worker is still running (one that exited is reaped here).
fn running(worker: &Waiting) -> bool {
    // SAFETY: waitpid WNOHANG on our own child with a null status pointer.
    unsafe { libc::waitpid(worker.pid, std::ptr::null_mut(), libc::WNOHANG) == 0 }
}

/// Up to `n` waiting workers made for `key` (waiting for a fill under way); workers
/// made for another key are discarded.
pub fn take(key: &Key, n: usize) -> Vec<Waiting> {
    let Some(mut standby) = lock() else {
        return Vec::new();
    };
    if standby.filling && standby.key.as_ref() == Some(key) {
        standby = FILLED
            .wait_timeout_while(standby, template::ANSWER_TIMEOUT, |s| s.filling)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
    }
    if standby.key.as_ref() != Some(key) {
        let stale = std::mem::take(&mut standby.waiting);
        drop(standby);
        discard(stale);
        return Vec::new();
    }
    let mut taken = Vec::with_capacity(n);
    let mut dead = Vec::new();
    while taken.len() < n {
        let Some(kept) = standby.waiting.pop() else {
            break;
        };
        if running(&kept.worker) {
            taken.push(kept.worker);
        } else {
            dead.push(kept); // reaped already; its socket closes
        }
    }
    drop(standby);
    drop(dead);
    taken
}

/// Fork `n` workers for `key` from its template on a background thread (if none is
/// being forked already), replacing workers made for another key.
pub fn fill(key: Key, n: usize) {
    let Some(mut standby) = lock() else {
        return;
    };
    if standby.filling || n == 0 {
        return;
    }
    let stale = if standby.key.as_ref() == Some(&key) {
        Vec::new()
    } else {
        std::mem::take(&mut standby.waiting)
    };
    // One request's worth at most: pools larger than that start the rest themselves.
    let n = n
        .min(template::MAX_PER_REQUEST)
        .saturating_sub(standby.waiting.len());
    standby.key = Some(key.clone());
    if n == 0 {
        drop(standby);
        discard(stale);
        return;
    }
    // The workers get the output descriptors the key names, as they are now (the
    // caller may point 1 and 2 elsewhere before the thread below asks).
    let Ok(outputs) = key.outputs_now() else {
        drop(standby);
        discard(stale);
        return;
    };
    standby.filling = true;
    drop(standby);
    discard(stale);
    let filler = std::thread::Builder::new()
        .name("oxjob-standby".into())
        .stack_size(256 * 1024) // it only asks the template and waits
        .spawn(move || {
            let made = start(&key, n, &outputs).unwrap_or_default();
            let Some(mut standby) = lock() else {
                return;
            };
            standby.filling = false;
            let unwanted = if standby.key.as_ref() == Some(&key) {
                let until = Instant::now() + LINGER;
                let kept = made.into_iter().map(|worker| Kept { worker, until });
                standby.waiting.extend(kept);
                Vec::new()
            } else {
                made
            };
            // This thread stays to discard workers past their time, unless one does.
            let expire = !standby.waiting.is_empty() && !standby.expiring;
            standby.expiring |= expire;
            drop(standby);
            FILLED.notify_all();
            template::kill_and_reap(unwanted.iter().map(|w| w.pid));
            if expire {
                expire_until_none_wait();
            }
        });
    if filler.is_err() {
        if let Some(mut standby) = lock() {
            standby.filling = false;
        }
        FILLED.notify_all();
    }
}

/// Workers no pool took soon are not kept: a program that is done with pools should
/// not find processes it did not ask for. Returns once none waits.
fn expire_until_none_wait() {
    loop {
        let Some(mut standby) = lock() else {
            return;
        };
        let now = Instant::now();
        let (old, kept) = std::mem::take(&mut standby.waiting)
            .into_iter()
            .partition(|kept: &Kept| kept.until <= now);
        standby.waiting = kept;
        let next = standby.waiting.iter().map(|kept| kept.until).min();
        standby.expiring = next.is_some();
        drop(standby);
        discard(old);
        match next {
            Some(until) => std::thread::sleep(until.saturating_duration_since(now)),
            None => return,
        }
    }
}

fn start(key: &Key, n: usize, outputs: &[OwnedFd; 2]) -> io::Result<Vec<Waiting>> {
    let outputs = [outputs[0].as_raw_fd(), outputs[1].as_raw_fd()];
    template::start(&key.template, n, &key.request, outputs)
}
