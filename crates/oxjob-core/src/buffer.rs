//! Zeroed byte buffers for decoded data, backed by transparent huge pages when large.
//!
//! A load writes every byte of its output once, so the cost that remains is the
//! first touch of fresh memory: one page fault per 4 KiB page. Large buffers are
//! mapped 2 MiB-aligned with `MADV_HUGEPAGE` (as numpy does for its own arrays),
//! which makes that 512 times fewer faults. Anonymous mappings are already zero,
//! so no pass is spent clearing them.
//!
//! Every allocation here is fallible: the sizes come from files and frames, and an
//! infallible allocation that fails aborts the whole process.

use crate::error::{Error, Result};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Buffers at least this large are mapped with huge pages.
pub const HUGE_ABOVE: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// An owned, zero-initialised, fixed-size byte buffer.
pub struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
    mapped: bool,
}

// SAFETY: `Buffer` owns its memory exclusively, like a `Box<[u8]>`.
unsafe impl Send for Buffer {}
// SAFETY: shared access only hands out `&[u8]`, like a `Box<[u8]>`.
unsafe impl Sync for Buffer {}

impl Buffer {
    /// `len` zero bytes, or [`Error::Memory`] naming `purpose` when they cannot be had
    /// (including sizes beyond the machine's memory and swap, which could never be
    /// filled even where the kernel would hand out the address space).
    pub fn zeroed(len: usize, purpose: &str) -> Result<Buffer> {
        let no_memory = || Error::no_memory(len as u64, purpose);
        LARGEST.set(LARGEST.get().max(len as u64));
        if len as u64 > memory_ceiling().min(LIMIT.get()) {
            return Err(no_memory());
        }
        if len >= HUGE_ABOVE {
            if let Some(ptr) = map_huge(len) {
                return Ok(Buffer {
                    ptr,
                    len,
                    mapped: true,
                });
            }
        }
        // Small, or no room for the aligned mapping's extra 2 MiB: the heap's turn.
        let data = zeroed_vec(len).ok_or_else(no_memory)?;
        Ok(Buffer::from(data))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Raw pointer to the first byte, for exporting the memory to Python.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(data: Vec<u8>) -> Buffer {
        let len = data.len();
        let raw = Box::into_raw(data.into_boxed_slice()).cast::<u8>();
        // SAFETY: `Box::into_raw` never returns null (empty boxes are dangling, non-null).
        let ptr = unsafe { NonNull::new_unchecked(raw) };
        Buffer {
            ptr,
            len,
            mapped: false,
        }
    }
}

/// `len` zero bytes on the heap, or None when the allocator refuses them.
pub fn zeroed_vec(len: usize) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    data.try_reserve_exact(len).ok()?;
    data.resize(len, 0);
    Some(data)
}

thread_local! {
    static LIMIT: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
    static LARGEST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Run `f` and return, beside its result, the largest buffer [`Buffer::zeroed`] was
/// asked for on this thread meanwhile (granted or not): how tests check that a
/// hostile file is refused before its claimed size is allocated.
pub fn largest_asked<T>(f: impl FnOnce() -> T) -> (T, u64) {
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            LARGEST.set(self.0.max(LARGEST.get()));
        }
    }
    let restore = Restore(LARGEST.replace(0));
    let result = f();
    let largest = LARGEST.get();
    drop(restore);
    (result, largest)
}

/// Run `f` with [`Buffer::zeroed`] refusing, on this thread, buffers larger than
/// `limit` bytes, as if memory ran out there: how tests and the fuzzers reach the
/// out-of-memory paths without starving the machine.
pub fn with_limit<T>(limit: u64, f: impl FnOnce() -> T) -> T {
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            LIMIT.set(self.0);
        }
    }
    let _restore = Restore(LIMIT.replace(limit));
    f()
}

/// Physical memory plus swap: no buffer larger than this can ever be filled.
fn memory_ceiling() -> u64 {
    static CEILING: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *CEILING.get_or_init(|| {
        // SAFETY: an all-zero sysinfo struct is a valid value of it.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: sysinfo only fills the struct it is given; the result is checked.
        if unsafe { libc::sysinfo(&mut info) } != 0 {
            return u64::MAX;
        }
        let unit = u64::from(info.mem_unit.max(1));
        (info.totalram as u64)
            .saturating_add(info.totalswap as u64)
            .saturating_mul(unit)
    })
}

fn map_huge(len: usize) -> Option<NonNull<u8>> {
    let span = len.checked_add(HUGE_PAGE)?;
    // SAFETY: an anonymous private mapping touches no existing memory; the result is checked.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    let start = (base as usize).next_multiple_of(HUGE_PAGE);
    let head = start - base as usize;
    let tail = span - head - len;
    let page = 4096;
    let tail_start = (start + len).next_multiple_of(page);
    let tail_len = (base as usize + span).saturating_sub(tail_start);
    // SAFETY: the head and tail trimmed here lie inside the mapping made above and
    // outside [start, start + len), which is what the buffer keeps.
    unsafe {
        if head > 0 {
            libc::munmap(base, head);
        }
        if tail > 0 && tail_len > 0 {
            libc::munmap(tail_start as *mut libc::c_void, tail_len);
        }
        // Advice only: without THP the buffer still works with small pages.
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    NonNull::new(start as *mut u8)
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.mapped {
            let len = self.len.next_multiple_of(4096);
            // SAFETY: [ptr, ptr + len rounded to pages) is exactly what `map_huge` kept.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), len);
            }
        } else {
            // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice of `len` bytes.
            drop(unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.ptr.as_ptr(),
                    self.len,
                ))
            });
        }
    }
}

impl Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.len)
    }
}

impl PartialEq<[u8]> for Buffer {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for Buffer {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Buffer) -> bool {
        self.as_slice() == other.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_buffers_are_zeroed_and_writable() {
        for len in [0, 1, 4095, HUGE_ABOVE, HUGE_ABOVE * 3 + 17] {
            let mut buffer = Buffer::zeroed(len, "a test").expect("alloc");
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().all(|&b| b == 0));
            if len > 1 {
                buffer[len - 1] = 7;
                buffer[0] = 1;
                assert_eq!((buffer[0], buffer[len - 1]), (1, 7));
            }
            if len >= HUGE_ABOVE {
                assert_eq!(buffer.as_ptr() as usize % HUGE_PAGE, 0);
            }
        }
    }

    #[test]
    fn a_limit_refuses_on_its_thread_only() {
        with_limit(1000, || {
            assert!(Buffer::zeroed(1000, "x").is_ok());
            assert!(matches!(Buffer::zeroed(1001, "x"), Err(Error::Memory(_))));
            let other = std::thread::spawn(|| Buffer::zeroed(1001, "x").is_ok()).join();
            assert!(matches!(other, Ok(true)));
        });
        assert!(Buffer::zeroed(1001, "x").is_ok());
    }

    #[test]
    fn impossible_sizes_are_memory_errors() {
        for len in [usize::MAX, usize::MAX / 2, 1 << 50] {
            let err = Buffer::zeroed(len, "section 1").err();
            let msg = format!("cannot allocate {len} bytes for section 1");
            assert!(matches!(err, Some(Error::Memory(m)) if m == msg));
        }
    }
}
