//! Workers forked from a warm template process instead of fork+exec'd fresh.
//!
//! The template (`python -m oxjob._workers.template`, started by the caller) listens on a Unix
//! socket. A request carries the worker's socket, the caller's stdout and stderr (as
//! `SCM_RIGHTS` descriptors), the caller's working directory and the worker's whole
//! environment, so the forked worker starts as [`std::process::Command`] would have
//! started it. The template forks them as the caller's children (see [`super::sibling`]),
//! or, where it cannot, through an intermediate process; the caller is a child subreaper while it
//! asks, so the worker is re-parented to the caller and reaped, signalled and watched
//! exactly as a worker the caller started itself. Any failure returns an error and the
//! supervisor starts the worker the usual way.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::fork_lock::ProcessLock;

/// Spawns through a template are serialized: the subreaper flag is process-wide (and
/// not inherited: a child forked while its parent asked takes the lock over).
static ASKING: ProcessLock = ProcessLock::new();

/// How long a template may take to answer (its first answer waits for its imports).
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The request body: the working directory, then `KEY=VALUE` entries, NUL-separated
/// (the caller's whole environment with `env` over it).
pub fn request(env: &[(String, String)]) -> io::Result<Vec<u8>> {
    let mut vars: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (k, v) in env {
        vars.insert(k.into(), v.into());
    }
    let mut body = std::env::current_dir()?.as_os_str().as_bytes().to_vec();
    body.push(0);
    for (k, v) in &vars {
        body.extend_from_slice(k.as_bytes());
        body.push(b'=');
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    Ok(body)
}

fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    }];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    // u64 backing keeps the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: a zeroed msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer holds CMSG_SPACE(fds) bytes, so the first header and
    // its data (one int per descriptor) fit inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
        let out = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            out.add(i).write_unaligned(*fd);
        }
    }
    loop {
        // SAFETY: `msg` points to live buffers (data, control) for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn set_subreaper(on: bool) -> io::Result<()> {
    // SAFETY: prctl with an integer argument; the result is checked.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            libc::c_ulong::from(on),
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// At most this many workers per request (the template reads this many descriptors).
pub const MAX_PER_REQUEST: usize = 64;

fn ask(
    path: &str,
    worker_socks: &[&UnixStream],
    body: &[u8],
    outputs: [RawFd; 2],
) -> io::Result<Vec<i32>> {
    let mut sock = UnixStream::connect(path)?;
    sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut message = (body.len() as u32).to_le_bytes().to_vec();
    message.extend_from_slice(body);
    // The workers' sockets, then the caller's stdout and stderr.
    let mut fds: Vec<RawFd> = worker_socks.iter().map(|s| s.as_raw_fd()).collect();
    fds.extend(outputs);
    let mut sent = send_with_fds(&sock, &message, &fds)?;
    while sent < message.len() {
        sent += send_with_fds(&sock, &message[sent..], &[])?;
    }
    let mut answer = vec![0u8; 4 * worker_socks.len()];
    sock.read_exact(&mut answer)?;
    Ok(answer
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Kill and reap workers the template started for us that we will not use.
pub(crate) fn kill_and_reap(pids: impl IntoIterator<Item = i32>) {
    for pid in pids.into_iter().filter(|&pid| pid > 0) {
        // SAFETY: kill and waitpid on a pid the template started for us; if it is not
        // (or no longer) our child, waitpid fails at once (ECHILD) and nothing else
        // happens. Kill errors (it exited already) are harmless.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// A worker the template started: our end of its socket and its pid (our child, not
/// reaped).
pub struct Started {
    /// Our end of the worker's socket.
    pub sock: UnixStream,
    /// Its process id.
    pub pid: i32,
}

/// Start `n` workers from the template listening at `path`, in one request (`body`,
/// from [`request`]; `outputs` become their stdout and stderr, usually 1 and 2): the
/// template forks them together, each holding only its own socket. They are children
/// of this process; on any failure none is left running.
pub fn start(path: &str, n: usize, body: &[u8], outputs: [RawFd; 2]) -> io::Result<Vec<Started>> {
    if n == 0 || n > MAX_PER_REQUEST {
        return Err(io::Error::other(
            "a template request is for 1 to 64 workers",
        ));
    }
    let pairs = (0..n)
        .map(|_| UnixStream::pair())
        .collect::<io::Result<Vec<_>>>()?;
    let theirs: Vec<&UnixStream> = pairs.iter().map(|(_, theirs)| theirs).collect();
    let pids = fork_from(path, &theirs, body, outputs)?;
    // Our copies of the workers' ends close here: each worker holds its own.
    Ok(pairs
        .into_iter()
        .zip(pids)
        .map(|((sock, _theirs), pid)| Started { sock, pid })
        .collect())
}

/// One worker per socket of `worker_socks` (its end in the worker): their pids, in order.
fn fork_from(
    path: &str,
    worker_socks: &[&UnixStream],
    body: &[u8],
    outputs: [RawFd; 2],
) -> io::Result<Vec<i32>> {
    let _asking = ASKING.lock();
    set_subreaper(true)?;
    let answer = ask(path, worker_socks, body, outputs);
    // The workers are ours once the template answered (their intermediate parent was
    // reaped first); no other orphan should become ours.
    let _ = set_subreaper(false);
    let pids = answer?;
    let ours = |pid: i32| {
        // WNOWAIT: only ask. A worker that already exited stays a zombie, so its pid
        // cannot be reused before the supervisor watches and reaps it.
        // SAFETY: a zeroed siginfo_t is a valid out-buffer for waitid, which fails with
        // ECHILD on a pid that is not our child: that is what is checked.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on one pid with a valid out-pointer.
        let asked = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        pid > 0 && asked == 0
    };
    if pids.len() != worker_socks.len() || !pids.iter().all(|&pid| ours(pid)) {
        // A fork that failed, or a re-parenting that did not happen: use none of them.
        for &pid in &pids {
            if pid > 0 && !ours(pid) {
                // SAFETY: kill with a pid we were just given; failure is harmless.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        kill_and_reap(pids);
        return Err(io::Error::other(
            "the template could not start the workers as this process's children",
        ));
    }
    Ok(pids)
}
