//! numpy's data allocator in workers (NEP 49): large arrays are allocated in shared
//! memory (`oxjob_core::pool::shared_alloc`), so a result array travels to the
//! caller as a descriptor, with no copy at all.

use crate::buffer::Borrowed;
use crate::segment::Segment;
use oxjob_core::pool::shared_alloc;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Allocations of at least this many bytes are shared (set at install time).
static THRESHOLD: AtomicUsize = AtomicUsize::new(usize::MAX);

/// `PyDataMem_SetHandler`'s slot in numpy's C-API table (stable since numpy 1.22).
const SET_HANDLER_SLOT: usize = 304;

#[repr(C)]
struct Allocator {
    ctx: *mut c_void,
    malloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    calloc: unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void,
    realloc: unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void, *mut c_void, usize),
}

/// numpy's `PyDataMem_Handler`.
#[repr(C)]
struct Handler {
    name: [c_char; 127],
    version: u8,
    allocator: Allocator,
}

// SAFETY: the handler is immutable and its context pointer is unused (null).
unsafe impl Sync for Handler {}

const fn handler_name() -> [c_char; 127] {
    let text = b"oxjob_shared_memory";
    let mut name = [0 as c_char; 127];
    let mut i = 0;
    while i < text.len() {
        name[i] = text[i] as c_char;
        i += 1;
    }
    name
}

static HANDLER: Handler = Handler {
    name: handler_name(),
    version: 1,
    allocator: Allocator {
        ctx: std::ptr::null_mut(),
        malloc: shared_malloc,
        calloc: shared_calloc,
        realloc: shared_realloc,
        free: shared_free,
    },
};

fn threshold() -> usize {
    THRESHOLD.load(Ordering::Relaxed)
}

unsafe extern "C" fn shared_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    shared_alloc::malloc(size, threshold()).cast()
}

unsafe extern "C" fn shared_calloc(_ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    shared_alloc::calloc(nelem, elsize, threshold()).cast()
}

unsafe extern "C" fn shared_realloc(
    _ctx: *mut c_void,
    ptr: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: numpy passes a block this handler allocated, or null.
    unsafe { shared_alloc::realloc(ptr.cast(), size, threshold()).cast() }
}

unsafe extern "C" fn shared_free(_ctx: *mut c_void, ptr: *mut c_void, _size: usize) {
    // SAFETY: numpy passes a block this handler allocated, or null.
    unsafe { shared_alloc::free(ptr.cast()) }
}

/// Make numpy allocate arrays of at least `threshold` bytes in shared memory, in
/// this thread's context (a worker's main thread).
#[pyfunction]
pub fn install_shared_allocator(py: Python<'_>, threshold: usize) -> PyResult<()> {
    let core = py
        .import("numpy._core._multiarray_umath")
        .or_else(|_| py.import("numpy.core._multiarray_umath"))?;
    let api = core.getattr("_ARRAY_API")?;
    // SAFETY: `_ARRAY_API` is numpy's capsule of its C-API table (unnamed); the slot
    // holds `PyObject *PyDataMem_SetHandler(PyObject *)` since numpy 1.22.
    unsafe {
        let table =
            ffi::PyCapsule_GetPointer(api.as_ptr(), std::ptr::null()) as *const *const c_void;
        if table.is_null() {
            return Err(PyErr::fetch(py));
        }
        let slot = *table.add(SET_HANDLER_SLOT);
        if slot.is_null() {
            return Err(PyRuntimeError::new_err("numpy has no PyDataMem_SetHandler"));
        }
        let set_handler: unsafe extern "C" fn(*mut ffi::PyObject) -> *mut ffi::PyObject =
            std::mem::transmute(slot);
        let capsule = ffi::PyCapsule_New(
            std::ptr::addr_of!(HANDLER) as *mut c_void,
            c"mem_handler".as_ptr(),
            None,
        );
        if capsule.is_null() {
            return Err(PyErr::fetch(py));
        }
        THRESHOLD.store(threshold.max(1), Ordering::Relaxed);
        let previous = set_handler(capsule);
        ffi::Py_DECREF(capsule);
        if previous.is_null() {
            return Err(PyErr::fetch(py));
        }
        ffi::Py_DECREF(previous);
    }
    Ok(())
}

/// The segment behind exactly this buffer's memory, if numpy allocated it in shared
/// memory: sending it costs no copy.
#[pyfunction]
pub fn shared_segment_of(data: &Bound<'_, PyAny>) -> PyResult<Option<Segment>> {
    let borrowed = Borrowed::new(data)?;
    let bytes = borrowed.as_slice();
    match shared_alloc::descriptor(bytes.as_ptr(), bytes.len()) {
        Ok(Some(fd)) => Segment::from_fd(fd).map(Some),
        Ok(None) => Ok(None),
        Err(err) => Err(PyOSError::new_err(err.to_string())),
    }
}

/// After a task: allocations at these addresses that are still alive get private
/// pages, so that what the caller received can no longer change under it.
#[pyfunction]
pub fn detach_allocations(addresses: Vec<usize>) -> PyResult<()> {
    for address in addresses {
        shared_alloc::detach(address).map_err(|e| PyOSError::new_err(e.to_string()))?;
    }
    Ok(())
}
