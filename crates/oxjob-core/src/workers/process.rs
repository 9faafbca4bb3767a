//! The operating system's side of a worker process: its pidfd, waiting on its socket
//! and its exit, reaping it, and (in the worker) watching the parent.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub(super) fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new descriptor owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait until the socket has data (true) or the process behind `pidfd` has exited
/// with nothing left to read (false).
pub(super) fn wait_readable(sock: &UnixStream, pidfd: Option<&OwnedFd>) -> bool {
    let Some(pidfd) = pidfd else {
        return true; // no pidfd: rely on EOF
    };
    let mut fds = [
        libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a live array of two pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return true;
        }
        if fds[0].revents != 0 {
            return true; // data, EOF or error: recv tells which
        }
        if fds[1].revents != 0 {
            return false;
        }
    }
}

pub(super) fn reap(pid: i32) -> (Option<i32>, Option<i32>) {
    let mut status = 0;
    loop {
        // SAFETY: waiting on our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return (None, None);
        }
    }
    if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (Some(libc::WEXITSTATUS(status)), None)
    }
}

/// In a worker: exit at once when the parent `ppid` is gone (checked every 100 ms).
pub fn watch_parent(ppid: i32) -> io::Result<()> {
    std::thread::Builder::new()
        .name("oxjob-parent-watch".into())
        .spawn(move || loop {
            // SAFETY: getppid cannot fail.
            if unsafe { libc::getppid() } != ppid {
                // SAFETY: _exit ends the process without running Python finalisers,
                // which is what an orphaned worker must do.
                unsafe { libc::_exit(70) };
            }
            std::thread::sleep(Duration::from_millis(100));
        })?;
    Ok(())
}
