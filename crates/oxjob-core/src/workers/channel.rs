//! Sending and receiving frames, with descriptors, over a Unix stream socket.

use super::frame::{Header, Kind, HEADER_LEN, MAX_FDS};
use crate::buffer::Buffer;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// A received frame.
#[derive(Debug)]
pub struct Frame {
    /// The header.
    pub header: Header,
    /// The body (a pickle stream).
    pub body: Buffer,
    /// The descriptors that came with it, in order.
    pub fds: Vec<OwnedFd>,
}

/// A frame that was read off the socket but could not be kept: its body's memory
/// could not be had. The body was read and dropped and its descriptors closed, so
/// the stream is still in step and the next frame can be received.
#[derive(Debug)]
pub struct Dropped {
    /// The frame's header (kind, tag, length).
    pub header: Header,
    /// Why it was dropped.
    pub reason: String,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} frame {} dropped: {}",
            self.header.kind, self.header.tag, self.reason
        )
    }
}

impl std::error::Error for Dropped {}

/// The [`Dropped`] frame `err` reports, if it is one (see [`recv`]).
pub fn dropped(err: &io::Error) -> Option<&Dropped> {
    err.get_ref()?.downcast_ref::<Dropped>()
}

fn cmsg_space(n_fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((n_fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Send one frame; `fds` are duplicated into the receiver by the kernel.
/// The last `n_shared` descriptors are shared segments (see [`Header::n_shared`]).
pub fn send(
    sock: &UnixStream,
    kind: Kind,
    tag: u64,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
    n_shared: u16,
) -> io::Result<()> {
    let header = header_of(kind, tag, body, fds.len(), n_shared)?;
    let sent = send_first(sock, &header, body, fds, 0)?;
    write_rest(sock, &header, body, sent)
}

/// How far [`try_send`] got without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The whole frame went.
    Sent,
    /// Nothing went: the socket had no room. The stream is as it was.
    Nothing,
    /// The first `n` bytes went, the descriptors with them: [`finish`] must send the
    /// rest before any other frame goes on this socket.
    Part(usize),
}

/// Send as much of a frame as the socket takes at once, without waiting for room.
///
/// Lets a caller that holds a lock others need (the interpreter's, say) send small
/// frames without letting go of it, and wait only when the receiver is behind.
pub fn try_send(
    sock: &UnixStream,
    kind: Kind,
    tag: u64,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
    n_shared: u16,
) -> io::Result<Progress> {
    let header = header_of(kind, tag, body, fds.len(), n_shared)?;
    match send_first(sock, &header, body, fds, libc::MSG_DONTWAIT) {
        Ok(sent) if sent == header.len() + body.len() => Ok(Progress::Sent),
        Ok(sent) => Ok(Progress::Part(sent)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(Progress::Nothing),
        Err(err) => Err(err),
    }
}

/// Send the rest of a frame of which [`try_send`] sent the first `sent` bytes
/// (`n_fds` descriptors, which went with them); waits for room as [`send`] does.
pub fn finish(
    sock: &UnixStream,
    kind: Kind,
    tag: u64,
    body: &[u8],
    n_fds: usize,
    n_shared: u16,
    sent: usize,
) -> io::Result<()> {
    let header = header_of(kind, tag, body, n_fds, n_shared)?;
    write_rest(sock, &header, body, sent)
}

fn header_of(
    kind: Kind,
    tag: u64,
    body: &[u8],
    n_fds: usize,
    n_shared: u16,
) -> io::Result<[u8; HEADER_LEN]> {
    let n_fds = u16::try_from(n_fds)
        .ok()
        .filter(|&n| n <= MAX_FDS)
        .ok_or_else(|| io::Error::other(format!("{n_fds} descriptors in one frame")))?;
    if n_shared > n_fds {
        return Err(io::Error::other("more shared segments than descriptors"));
    }
    Ok(Header {
        kind,
        tag,
        len: body.len() as u64,
        n_fds,
        n_shared,
    }
    .encode())
}

/// One `sendmsg` of the header and body with the descriptors (retried if a signal
/// interrupts it): how many bytes went.
fn send_first(
    sock: &UnixStream,
    header: &[u8; HEADER_LEN],
    body: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: header.as_ptr() as *mut libc::c_void,
            iov_len: header.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    // u64 backing keeps the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; cmsg_space(fds.len()).div_ceil(8)];
    // SAFETY: a zeroed msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(fds.len());
        // SAFETY: the control buffer holds CMSG_SPACE(fds) bytes, so the first header
        // and its data (one int per descriptor) fit inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len =
                libc::CMSG_LEN((fds.len() * std::mem::size_of::<RawFd>()) as u32) as usize;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: `msg` points to live buffers (header, body, control) for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The descriptors went with the first bytes; the rest is a plain stream. (The
/// standard library writes to sockets with `MSG_NOSIGNAL`: a peer that died is an
/// `EPIPE` error, never a SIGPIPE, even in a process that restored SIGPIPE's default
/// action; tests/test_engine_faults.py checks it.)
fn write_rest(
    sock: &UnixStream,
    header: &[u8; HEADER_LEN],
    body: &[u8],
    sent: usize,
) -> io::Result<()> {
    let mut writer = sock;
    if sent < header.len() {
        writer.write_all(&header[sent..])?;
        writer.write_all(body)?;
    } else {
        writer.write_all(&body[sent - header.len()..])?;
    }
    Ok(())
}

/// Receive one frame; `Ok(None)` when the peer closed the socket between frames.
///
/// A frame whose body cannot be allocated is skipped and reported as an error of
/// kind `OutOfMemory` carrying a [`Dropped`] (see [`dropped`]); the socket stays
/// usable. Any other error leaves the stream out of step.
pub fn recv(sock: &UnixStream) -> io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0usize;
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut control = vec![0u64; cmsg_space(MAX_FDS as usize).div_ceil(8)];
    while got < HEADER_LEN {
        let mut iov = libc::iovec {
            iov_base: header[got..].as_mut_ptr().cast(),
            iov_len: HEADER_LEN - got,
        };
        // SAFETY: a zeroed msghdr is a valid empty message.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() * 8;
        // SAFETY: `msg` points to live buffers for the duration of the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: the kernel filled `msg`; CMSG_* walk only what it reported, and each
        // SCM_RIGHTS descriptor is new in this process, so owning it is right.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let bytes = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::other("descriptors were truncated"));
        }
        if n == 0 {
            if got == 0 && fds.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the socket inside a frame",
            ));
        }
        got += n as usize;
    }
    let header = Header::decode(&header).map_err(|e| io::Error::other(e.to_string()))?;
    if fds.len() != header.n_fds as usize {
        return Err(io::Error::other(format!(
            "frame announced {} descriptors, {} arrived",
            header.n_fds,
            fds.len()
        )));
    }
    let mut reader = sock;
    let mut body = match Buffer::zeroed(header.len as usize, "a frame body") {
        Ok(body) => body,
        Err(err) => {
            drop(fds);
            let skipped = io::copy(&mut reader.take(header.len), &mut io::sink())?;
            if skipped != header.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the socket inside a frame",
                ));
            }
            let reason = err.to_string();
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                Dropped { header, reason },
            ));
        }
    };
    reader.read_exact(&mut body)?;
    Ok(Some(Frame { header, body, fds }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::memfd;
    use std::os::fd::AsFd;

    #[test]
    fn a_send_that_must_not_wait_stops_when_the_socket_is_full() {
        let (a, b) = UnixStream::pair().expect("pair");
        let mut sent = 0u64;
        let full = loop {
            match try_send(&a, Kind::Batch, sent, b"0123456789", &[], 0).expect("try_send") {
                Progress::Sent => sent += 1,
                Progress::Nothing => break true,
                Progress::Part(n) => {
                    // The socket took the frame's start: it must be finished first.
                    finish(&a, Kind::Batch, sent, b"0123456789", 0, 0, n).expect("finish");
                    sent += 1;
                }
            }
            if sent > 10_000_000 {
                break false;
            }
        };
        assert!(full, "a socket nobody reads never filled up");
        let reader = std::thread::spawn(move || {
            (0..sent)
                .map(|_| recv(&b).expect("recv").expect("frame").header.tag)
                .collect::<Vec<_>>()
        });
        drop(a);
        assert_eq!(reader.join().expect("join"), (0..sent).collect::<Vec<_>>());
    }

    #[test]
    fn a_frame_sent_in_part_is_finished_whole_with_its_descriptors() {
        let (a, b) = UnixStream::pair().expect("pair");
        let payload = memfd::from_bytes(&[7u8; 10]).expect("memfd");
        let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let progress = try_send(&a, Kind::Batch, 2, &big, &[payload.as_fd()], 1).expect("try");
        let Progress::Part(sent) = progress else {
            panic!("8 MiB went at once into a socket nobody reads: {progress:?}");
        };
        assert!(sent > 0 && sent < big.len());
        let reader = std::thread::spawn(move || {
            let first = recv(&b).expect("recv").expect("frame");
            let second = recv(&b).expect("recv").expect("frame");
            (first, second)
        });
        finish(&a, Kind::Batch, 2, &big, 1, 1, sent).expect("finish");
        send(&a, Kind::Batch, 3, b"next", &[], 0).expect("send");
        let (first, second) = reader.join().expect("join");
        assert_eq!((first.header.tag, first.header.n_shared), (2, 1));
        assert!(first.body[..] == big[..], "the body arrived changed");
        assert_eq!(first.fds.len(), 1);
        assert_eq!((second.header.tag, &second.body[..]), (3, &b"next"[..]));
    }

    #[test]
    fn a_frame_beyond_memory_is_skipped_and_the_stream_goes_on() {
        let (a, b) = UnixStream::pair().expect("pair");
        let payload = memfd::from_bytes(&[1u8; 100]).expect("memfd");
        let big = vec![9u8; 300_000];
        let sender = std::thread::spawn(move || {
            send(&a, Kind::Result, 5, &big, &[payload.as_fd()], 0).expect("send");
            send(&a, Kind::Result, 6, b"small", &[], 0).expect("send");
        });
        let first = crate::buffer::with_limit(1000, || recv(&b));
        let err = first.expect_err("the big frame cannot be kept");
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let lost = dropped(&err).expect("a dropped frame");
        assert_eq!(
            (lost.header.kind, lost.header.tag, lost.header.len),
            (Kind::Result, 5, 300_000)
        );
        assert_eq!(lost.reason, "cannot allocate 300000 bytes for a frame body");
        let next = recv(&b).expect("recv").expect("frame");
        assert_eq!((next.header.tag, &next.body[..]), (6, &b"small"[..]));
        sender.join().expect("join");
    }
}
