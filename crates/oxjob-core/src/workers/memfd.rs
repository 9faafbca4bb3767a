//! Anonymous shared memory (memfd) for buffers that are too large for a socket.
//!
//! A memfd has no name in any file system, so nothing can leak: the memory goes
//! away with the last descriptor and the last mapping, even after `kill -9`.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

fn memfd() -> io::Result<File> {
    const NAME: &CStr = c"oxjob";
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the result is checked.
    let raw = unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// A memfd's pages are memory: running out of them (ENOSPC, or EFBIG for a size no
/// file can have) is reported as what it is, ENOMEM.
fn as_memory_error(err: io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(libc::ENOSPC | libc::EFBIG) => io::Error::from_raw_os_error(libc::ENOMEM),
        _ => err,
    }
}

/// Copies at least this large are split across threads: allocating the segment's
/// pages dominates, and it scales with cores.
const PARALLEL_COPY_ABOVE: usize = 16 << 20;
const COPY_CHUNK: usize = 8 << 20;

/// A new memfd holding a copy of `data` (the one copy on the sending side).
pub fn from_bytes(data: &[u8]) -> io::Result<OwnedFd> {
    fill_new(data).map_err(as_memory_error)
}

fn fill_new(data: &[u8]) -> io::Result<OwnedFd> {
    let mut file = memfd()?;
    if data.len() < PARALLEL_COPY_ABOVE {
        file.write_all(data)?;
        return Ok(OwnedFd::from(file));
    }
    file.set_len(data.len() as u64)?;
    let chunks = data.chunks(COPY_CHUNK).enumerate();
    crate::work_queue::for_each(
        chunks,
        crate::work_queue::default_threads(),
        |(i, chunk)| file.write_all_at(chunk, (i * COPY_CHUNK) as u64),
    )?;
    Ok(OwnedFd::from(file))
}

/// Overwrite the start of the memfd `fd` with `data`. Refilling a segment whose
/// pages already exist costs a plain copy, several times less than a new one.
pub fn write_at(fd: &OwnedFd, data: &[u8]) -> io::Result<()> {
    refill(fd, data).map_err(as_memory_error)
}

fn refill(fd: &OwnedFd, data: &[u8]) -> io::Result<()> {
    let file = File::from(fd.try_clone()?);
    if data.len() < PARALLEL_COPY_ABOVE {
        return file.write_all_at(data, 0);
    }
    let chunks = data.chunks(COPY_CHUNK).enumerate();
    crate::work_queue::for_each(
        chunks,
        crate::work_queue::default_threads(),
        |(i, chunk)| file.write_all_at(chunk, (i * COPY_CHUNK) as u64),
    )
}

/// A new zero-filled memfd of `len` bytes (its pages are allocated on first touch).
pub fn create(len: u64) -> io::Result<OwnedFd> {
    let file = memfd()?;
    file.set_len(len).map_err(as_memory_error)?;
    Ok(OwnedFd::from(file))
}

/// How a received memfd is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapMode {
    /// Read-only view (`mmap_mode='r'`).
    ReadOnly,
    /// Writable; writes stay private to this process (`mmap_mode='c'`).
    CopyOnWrite,
    /// Writable and shared with every other mapping of the memfd.
    Shared,
}

/// A mapped memfd, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is owned by this value alone, like a heap buffer.
unsafe impl Send for Mapping {}
// SAFETY: shared access hands out only raw pointers and lengths.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map all of `fd`.
    pub fn new(fd: &OwnedFd, mode: MapMode) -> io::Result<Mapping> {
        let file = File::from(fd.try_clone()?);
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::other("memfd larger than the address space"))?;
        let writable = mode != MapMode::ReadOnly;
        if len == 0 {
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len,
                writable,
            });
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let flags = if mode == MapMode::CopyOnWrite {
            libc::MAP_PRIVATE
        } else {
            libc::MAP_SHARED
        };
        // SAFETY: mapping `len` bytes of a descriptor we hold; the result is checked.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { ptr, len, writable })
    }

    /// Map every page now, for reading, without breaking copy-on-write: far cheaper
    /// than one page fault per 4 KiB on first touch. Best effort (Linux 5.14+).
    pub fn populate_read(&self) {
        if self.len > 0 {
            // SAFETY: advice on exactly the region this value mapped.
            unsafe {
                libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_POPULATE_READ);
            }
        }
    }

    /// Whether a page of this mapping holds bytes of its own rather than the memfd's:
    /// a copy-on-write page that was written (present and not file-backed, or swapped
    /// out, in `/proc/self/pagemap`). An error means it cannot be told.
    pub fn has_private_pages(&self) -> io::Result<bool> {
        const PRESENT: u64 = 1 << 63;
        const SWAPPED: u64 = 1 << 62;
        const FILE_OR_SHARED: u64 = 1 << 61;
        const ENTRIES: usize = 8192; // 64 KiB of the map at a time
        if self.len == 0 {
            return Ok(false);
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("no page size"))?;
        let first = self.ptr.as_ptr() as usize / page;
        let pages = self.len.div_ceil(page);
        let map = File::open("/proc/self/pagemap")?;
        let mut raw = vec![0u8; ENTRIES * 8];
        let mut done = 0;
        while done < pages {
            let count = (pages - done).min(ENTRIES);
            let bytes = &mut raw[..count * 8];
            map.read_exact_at(bytes, ((first + done) * 8) as u64)?;
            for entry in bytes.chunks_exact(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(entry);
                let entry = u64::from_ne_bytes(word);
                if entry & SWAPPED != 0 || (entry & PRESENT != 0 && entry & FILE_OR_SHARED == 0) {
                    return Ok(true);
                }
            }
            done += count;
        }
        Ok(false)
    }

    /// Map every page now, writable: later writes cost no page fault. Best effort
    /// (Linux 5.14+); a read-only mapping is left alone.
    pub fn populate_write(&self) {
        if self.len > 0 && self.writable {
            // SAFETY: advice on exactly the region this value mapped.
            unsafe {
                libc::madvise(
                    self.ptr.as_ptr().cast(),
                    self.len,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
    }

    /// Overwrite the whole mapping with `data` (a memcpy: into pages already mapped,
    /// ~3x faster than `write_at` on this project's VM).
    pub fn write_all(&self, data: &[u8]) -> io::Result<()> {
        if !self.writable || data.len() != self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot write {} bytes into this mapping of {}",
                    data.len(),
                    self.len
                ),
            ));
        }
        if self.len > 0 {
            // SAFETY: the mapping is `len` writable bytes owned by this value, and
            // `data` (another object's memory) is exactly `len` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr(), self.len) };
        }
        Ok(())
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether writes are allowed.
    pub fn writable(&self) -> bool {
        self.writable
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: exactly the region mapped in `new`.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_at_refills_in_place() {
        for len in [10, PARALLEL_COPY_ABOVE + 3 * COPY_CHUNK + 7] {
            let first: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let second: Vec<u8> = first.iter().map(|b| b ^ 0xff).collect();
            let fd = from_bytes(&first).expect("memfd");
            write_at(&fd, &second).expect("refill");
            let mapping = Mapping::new(&fd, MapMode::ReadOnly).expect("map");
            assert_eq!(mapping.len(), len);
            // SAFETY: the mapping is `len` readable bytes, alive for this borrow.
            let seen = unsafe { std::slice::from_raw_parts(mapping.as_ptr(), len) };
            assert!(seen == second.as_slice());
        }
    }

    #[test]
    fn written_copy_on_write_pages_are_told_apart() {
        let len = 64 * 4096 + 100;
        let fd = from_bytes(&vec![7u8; len]).expect("memfd");
        let mapping = Mapping::new(&fd, MapMode::CopyOnWrite).expect("map");
        mapping.populate_read();
        assert!(!mapping.has_private_pages().expect("pagemap"));
        let refill = vec![9u8; len];
        write_at(&fd, &refill).expect("refill"); // the memfd's own bytes change: not private
        assert!(!mapping.has_private_pages().expect("pagemap"));
        // SAFETY: the last byte of a writable mapping of `len` bytes.
        unsafe { *mapping.as_ptr().add(len - 1) = 1 };
        assert!(mapping.has_private_pages().expect("pagemap"));
    }

    #[test]
    fn copy_on_write_and_shared() {
        let fd = from_bytes(&[1, 2, 3, 4]).expect("memfd");
        let private = Mapping::new(&fd, MapMode::CopyOnWrite).expect("map");
        let shared = Mapping::new(&fd, MapMode::Shared).expect("map");
        // SAFETY: both mappings are 4 bytes long and writable.
        unsafe {
            *private.as_ptr() = 9;
            assert_eq!(*shared.as_ptr(), 1, "private writes stay private");
            *shared.as_ptr().add(1) = 7;
        }
        let again = Mapping::new(&fd, MapMode::ReadOnly).expect("map");
        // SAFETY: 4 readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(again.as_ptr(), again.len()) };
        assert_eq!(bytes, &[1, 7, 3, 4]);
        assert!(!again.writable());
    }
}
