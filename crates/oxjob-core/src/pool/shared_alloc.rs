//! Large allocations backed by memfds, made in workers so that a result can be sent
//! to the caller without copying it: the caller maps the very pages the task wrote.
//!
//! Each allocation is one memfd mapped `MAP_SHARED`, registered by address. Once its
//! descriptor has been sent, the worker must not write to the pages any more: if it
//! still holds the allocation after the task (a cache, a global), [`detach`] moves its
//! contents to private memory at the same address first.

use super::memfd;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{LazyLock, Mutex, MutexGuard};

struct Region {
    len: usize,
    /// None once detached: the pages are private anonymous memory.
    fd: Option<OwnedFd>,
}

static REGIONS: LazyLock<Mutex<HashMap<usize, Region>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn regions() -> MutexGuard<'static, HashMap<usize, Region>> {
    // A panic while the lock was held cannot leave the map inconsistent: every
    // update is a single insert or remove.
    REGIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A zero-filled shared allocation of `len` (> 0) bytes.
pub fn allocate(len: usize) -> io::Result<*mut u8> {
    let fd = memfd::create(len as u64)?;
    // SAFETY: mapping `len` bytes of a memfd of that size; the result is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = ptr.cast::<u8>();
    regions().insert(ptr as usize, Region { len, fd: Some(fd) });
    Ok(ptr)
}

/// The length of the allocation starting at `ptr`, if it is one of ours.
pub fn len_of(ptr: *const u8) -> Option<usize> {
    regions().get(&(ptr as usize)).map(|region| region.len)
}

/// Free `ptr` if it is one of ours; false otherwise (the caller frees it).
pub fn release(ptr: *mut u8) -> bool {
    let Some(region) = regions().remove(&(ptr as usize)) else {
        return false;
    };
    // SAFETY: exactly the region mapped by `allocate` (or `detach`), no longer registered.
    unsafe {
        libc::munmap(ptr.cast(), region.len);
    }
    true
}

/// A descriptor of the memfd behind exactly `ptr..ptr+len`, if it is one of ours and
/// still shared.
pub fn descriptor(ptr: *const u8, len: usize) -> io::Result<Option<OwnedFd>> {
    match regions().get(&(ptr as usize)) {
        Some(Region {
            len: l,
            fd: Some(fd),
        }) if *l == len => Ok(Some(fd.try_clone()?)),
        _ => Ok(None),
    }
}

/// If the allocation at `address` is still alive and shared, give it private pages
/// with the same contents at the same address, so later writes stay in this process.
pub fn detach(address: usize) -> io::Result<()> {
    let mut regions = regions();
    let Some(region) = regions.get_mut(&address) else {
        return Ok(()); // freed already: the usual case
    };
    let ptr = address as *mut u8;
    if region.fd.is_none() {
        return Ok(());
    }
    let len = region.len;
    // SAFETY: a new private anonymous mapping of `len` bytes; the result is checked.
    let private = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if private == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both regions are `len` bytes, mapped, and distinct.
    unsafe { std::ptr::copy_nonoverlapping(ptr, private.cast::<u8>(), len) };
    // SAFETY: moves the private pages over the shared mapping at `ptr`, which has
    // exactly `len` bytes; the old mapping is replaced atomically.
    let moved = unsafe {
        libc::mremap(
            private,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            ptr.cast::<libc::c_void>(),
        )
    };
    if moved == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        // SAFETY: the private mapping made above, unused.
        unsafe { libc::munmap(private, len) };
        return Err(err);
    }
    region.fd = None;
    Ok(())
}

/// `malloc` for a data allocator: shared from `threshold` bytes, libc's below (and
/// whenever a shared allocation fails).
pub fn malloc(size: usize, threshold: usize) -> *mut u8 {
    if size >= threshold {
        if let Ok(ptr) = allocate(size) {
            return ptr;
        }
    }
    // SAFETY: plain malloc; the caller owns the result.
    unsafe { libc::malloc(size).cast() }
}

/// `calloc` for a data allocator (a new memfd reads as zeros).
pub fn calloc(nelem: usize, elsize: usize, threshold: usize) -> *mut u8 {
    if let Some(size) = nelem.checked_mul(elsize) {
        if size >= threshold {
            if let Ok(ptr) = allocate(size) {
                return ptr;
            }
        }
    }
    // SAFETY: plain calloc; the caller owns the result.
    unsafe { libc::calloc(nelem, elsize).cast() }
}

/// `realloc` for a data allocator.
///
/// # Safety
/// `ptr` is null or came from [`malloc`], [`calloc`] or `realloc` and is not used after.
pub unsafe fn realloc(ptr: *mut u8, size: usize, threshold: usize) -> *mut u8 {
    let Some(old_len) = len_of(ptr) else {
        // SAFETY: not ours, so null or from libc's allocator, per the contract.
        return unsafe { libc::realloc(ptr.cast(), size).cast() };
    };
    let new = malloc(size, threshold);
    if !new.is_null() {
        // SAFETY: both blocks hold at least the bytes copied, and are distinct.
        unsafe { std::ptr::copy_nonoverlapping(ptr, new, old_len.min(size)) };
        release(ptr);
    }
    new
}

/// `free` for a data allocator.
///
/// # Safety
/// `ptr` is null or came from [`malloc`], [`calloc`] or [`realloc`], and is not used after.
pub unsafe fn free(ptr: *mut u8) {
    if !release(ptr) {
        // SAFETY: not ours, so null or from libc's allocator, per the contract.
        unsafe { libc::free(ptr.cast()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_shared_until_detached() {
        let len = 3 * 4096 + 5;
        let ptr = allocate(len).expect("allocate");
        assert_eq!(len_of(ptr), Some(len));
        // SAFETY: `ptr` is `len` writable bytes.
        unsafe { std::ptr::write_bytes(ptr, 7, len) };
        let fd = descriptor(ptr, len).expect("dup").expect("ours");
        assert!(descriptor(ptr, len - 1).expect("dup").is_none());
        let other = memfd::Mapping::new(&fd, memfd::MapMode::Shared).expect("map");
        // SAFETY: both mappings are `len` bytes long.
        unsafe {
            assert_eq!(*other.as_ptr().add(len - 1), 7);
            detach(ptr as usize).expect("detach");
            *ptr = 1; // private now: the other mapping keeps its byte
            assert_eq!(*other.as_ptr(), 7);
            assert_eq!(*ptr.add(len - 1), 7);
        }
        assert!(descriptor(ptr, len).expect("dup").is_none());
        assert!(release(ptr));
        assert!(!release(ptr));
        assert_eq!(len_of(ptr), None);
    }

    #[test]
    fn allocator_entry_points() {
        let threshold = 1 << 16;
        let small = malloc(100, threshold);
        assert!(len_of(small).is_none());
        let large = calloc(1 << 14, 8, threshold);
        assert_eq!(len_of(large), Some(1 << 17));
        // SAFETY: `large` is 128 KiB of writable zeros; each pointer is used once.
        unsafe {
            assert_eq!(*large.add(1000), 0);
            *large.add(5) = 42;
            let grown = realloc(large, 1 << 18, threshold);
            assert_eq!(*grown.add(5), 42);
            assert_eq!(len_of(grown), Some(1 << 18));
            let shrunk = realloc(grown, 10, threshold);
            assert_eq!(*shrunk.add(5), 42);
            assert!(len_of(shrunk).is_none());
            free(shrunk);
            free(small);
        }
    }
}
