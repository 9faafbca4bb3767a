//! Forking a worker straight from the template as a child of the caller.
//!
//! The template is the caller's child. A plain `fork()` there makes the worker the
//! template's child, so the template used to fork an intermediate process that forked
//! the workers and exited, leaving them to the caller (a subreaper while it asks):
//! one more copy of the template's page tables, one more teardown and reap per
//! request, on the path of every pool. `clone3(CLONE_PARENT)` makes the worker the
//! caller's child at once.
//!
//! glibc's `fork()` is more than the system call, so this does its share by hand:
//! the kernel writes the child's thread id into the thread descriptor
//! (`CLONE_CHILD_SETTID`/`CLEARTID` on the address glibc registered at start, found
//! with `PR_GET_TID_ADDRESS` and checked), and the child registers the thread's robust
//! mutex list again (the kernel drops it on fork). What `fork()` also redoes in the
//! child (malloc's and stdio's locks, the loader's lock) matters only when other
//! threads may hold them: the template forks only while it is single-threaded.
//! Handlers registered with `pthread_atfork` do not run; the Python side runs
//! Python's own fork hooks (`PyOS_BeforeFork` and the `AfterFork` pair), which is
//! what `os.fork()` runs. Where any of this is not available (musl, a glibc older than
//! 2.25 that cached the pid, a seccomp filter that refuses `clone3`),
//! [`Sibling::prepare`] or [`Sibling::fork`] fails and the template falls back to
//! the intermediate process.

use std::io;

/// `prctl` option returning the address given to `set_tid_address` (glibc gives the
/// thread descriptor's tid field); not in the `libc` crate.
const PR_GET_TID_ADDRESS: libc::c_int = 40;

/// `struct clone_args` up to `tls` (`CLONE_ARGS_SIZE_VER0`, the same on every arch).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// What a sibling fork needs from the calling thread.
pub struct Sibling {
    tid_address: u64,
    robust_head: usize,
    robust_len: usize,
}

fn unsupported(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, why.to_owned())
}

#[cfg(target_env = "gnu")]
fn libc_keeps_no_pid() -> bool {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = version.to_str().unwrap_or("").split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 25) // before 2.25 the thread descriptor cached the pid
}

#[cfg(not(target_env = "gnu"))]
fn libc_keeps_no_pid() -> bool {
    false // musl's thread descriptor is not found by PR_GET_TID_ADDRESS
}

impl Sibling {
    /// Find what the child's C library state needs, or say why a sibling fork cannot
    /// be done from this thread.
    pub fn prepare() -> io::Result<Sibling> {
        if !libc_keeps_no_pid() {
            return Err(unsupported("the C library is not glibc 2.25 or newer"));
        }
        if std::fs::read_dir("/proc/self/task")?.count() != 1 {
            return Err(unsupported("the process has other threads"));
        }
        let mut tid_field: *mut libc::c_int = std::ptr::null_mut();
        // SAFETY: PR_GET_TID_ADDRESS writes one pointer to the address given.
        let got = unsafe {
            libc::prctl(
                PR_GET_TID_ADDRESS,
                &mut tid_field as *mut *mut libc::c_int as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if got < 0 || tid_field.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the address the kernel clears when this thread exits: glibc's thread
        // descriptor of the calling thread, alive while it runs.
        let held = unsafe { tid_field.read_volatile() };
        // SAFETY: gettid cannot fail.
        if held != unsafe { libc::gettid() } {
            return Err(unsupported("the thread's tid field was not found"));
        }
        let mut head: *mut libc::c_void = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: get_robust_list of the calling thread (0) writes one pointer and one
        // length to the addresses given.
        let got = unsafe {
            libc::syscall(
                libc::SYS_get_robust_list,
                0,
                &mut head as *mut *mut libc::c_void,
                &mut len as *mut usize,
            )
        };
        if got < 0 || head.is_null() {
            return Err(unsupported("the thread has no robust mutex list"));
        }
        // SAFETY: the robust list head glibc registered for this thread; its first
        // word points to the first entry, the head itself when no robust mutex is held.
        let first = unsafe { head.cast::<*mut libc::c_void>().read_volatile() };
        if first != head {
            return Err(unsupported("the thread holds a robust mutex"));
        }
        Ok(Sibling {
            tid_address: tid_field as u64,
            robust_head: head as usize,
            robust_len: len,
        })
    }

    /// Fork a child of this process's parent. Returns 0 in the child and the child's
    /// pid here.
    ///
    /// # Safety
    ///
    /// As `fork()` in a multi-threaded program is unsafe, this is unsafe unless the
    /// calling process has no other thread. The caller runs its language runtime's
    /// fork hooks around it (Python's `PyOS_BeforeFork` and `PyOS_AfterFork_*`).
    pub unsafe fn fork(&self) -> io::Result<i32> {
        let args = CloneArgs {
            flags: (libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID)
                as u64,
            child_tid: self.tid_address,
            // With CLONE_PARENT the kernel takes our own exit signal (SIGCHLD) and
            // refuses any other.
            exit_signal: 0,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 with a valid clone_args of the size given, without CLONE_VM:
        // the child gets a copy of this process, as with fork.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the robust list head of this thread, as glibc's fork registers it
            // again in the child; an error leaves robust mutexes as the kernel left them.
            unsafe {
                libc::syscall(libc::SYS_set_robust_list, self.robust_head, self.robust_len);
            }
        }
        Ok(pid as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    fn read_i32s<const N: usize>(fd: i32) -> [i32; N] {
        let mut got = [0u8; 64];
        let mut filled = 0;
        while filled < 4 * N {
            // SAFETY: read into the rest of the buffer.
            let n = unsafe { libc::read(fd, got[filled..].as_mut_ptr().cast(), 4 * N - filled) };
            assert!(n > 0, "the pipe closed after {filled} bytes");
            filled += n as usize;
        }
        std::array::from_fn(|i| {
            i32::from_le_bytes([got[4 * i], got[4 * i + 1], got[4 * i + 2], got[4 * i + 3]])
        })
    }

    fn write_i32s_and_exit(fd: i32, values: &[i32]) -> ! {
        let mut bytes = [0u8; 16];
        for (i, v) in values.iter().enumerate() {
            bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        // SAFETY: write to our pipe end (no allocation: the test process has other
        // threads), then end the process without unwinding.
        unsafe {
            libc::write(fd, bytes.as_ptr().cast(), 4 * values.len());
            libc::_exit(0)
        }
    }

    #[test]
    fn a_multi_threaded_process_is_refused() {
        let other = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(1)));
        assert!(Sibling::prepare().is_err());
        other.join().expect("join");
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn a_sibling_is_a_child_of_our_parent_and_its_tid_field_is_its_own() {
        // A forked child of ours (single-threaded) makes the sibling fork: the
        // sibling must be our child, and glibc's tid field in it its own tid.
        let (from_middle, middle_end) = pipe();
        let (from_sibling, sibling_end) = pipe();
        // SAFETY: the child makes only allocation-free calls before _exit.
        let middle = unsafe { libc::fork() };
        assert!(middle >= 0);
        if middle == 0 {
            let pid = match Sibling::prepare() {
                // SAFETY: this forked child has one thread.
                Ok(sibling) => match unsafe { sibling.fork() } {
                    Ok(0) => {
                        // prepare() checks that the tid field holds gettid().
                        let tid_field_ok = i32::from(Sibling::prepare().is_ok());
                        // SAFETY: getppid cannot fail.
                        let parent = unsafe { libc::getppid() };
                        write_i32s_and_exit(sibling_end, &[tid_field_ok, parent]);
                    }
                    Ok(pid) => pid,
                    Err(_) => -1,
                },
                Err(_) => -2,
            };
            write_i32s_and_exit(middle_end, &[pid]);
        }
        let [pid] = read_i32s::<1>(from_middle);
        // SAFETY: reap the intermediate.
        unsafe { libc::waitpid(middle, std::ptr::null_mut(), 0) };
        assert!(pid > 0, "the sibling fork failed: {pid}");
        let [tid_field_ok, parent] = read_i32s::<2>(from_sibling);
        assert_eq!((tid_field_ok, parent), (1, std::process::id() as i32));
        // SAFETY: the sibling is our child: waitpid reaps it.
        assert_eq!(unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) }, pid);
        for fd in [from_middle, middle_end, from_sibling, sibling_end] {
            // SAFETY: our descriptors from pipe().
            unsafe { libc::close(fd) };
        }
    }
}
