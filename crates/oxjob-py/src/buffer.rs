//! Memory shared with Python through the buffer protocol, without copies.

use oxjob_core::buffer::Buffer;
use oxjob_core::workers::memfd::Mapping;
use oxjob_core::workers::{dropped, spares};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::c_int;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// Memory owned by Rust: decoded bytes, or a mapped memfd. A result's memfd
/// is kept with its mapping, and given to the spares when the last view is gone.
enum Memory {
    Decoded(Buffer),
    Mapped(Mapping),
    /// A worker's view of an input (read-only or copy-on-write), kept between batches
    /// (see `kept`).
    Kept(Arc<Mapping>),
    Result(Option<Mapping>, Returned),
}

/// What becomes of a result's memfd when its last view is gone.
enum Returned {
    /// A spare, for a worker to refill (the worker that filled it, preferably).
    Spare(Option<OwnedFd>, Option<usize>),
    /// Closed already; workers may still keep it mapped: its drop is logged.
    Closed(Option<dropped::Key>),
}

/// Bytes owned by Rust and handed to Python through the buffer protocol.
///
/// numpy arrays unpickled from it view its memory directly (no copy) and keep it
/// alive; it is freed (or unmapped) when the last view is garbage-collected.
/// Weak references tell a worker when the last view of a received segment is gone.
#[pyclass(module = "oxjob._engine", frozen, weakref)]
pub struct OwnedBuffer {
    memory: Memory,
    shape: [ffi::Py_ssize_t; 1],
    strides: [ffi::Py_ssize_t; 1],
}

impl OwnedBuffer {
    /// Take ownership of decoded bytes (writable).
    pub fn new(data: Buffer) -> Self {
        let len = data.len() as ffi::Py_ssize_t;
        OwnedBuffer {
            memory: Memory::Decoded(data),
            shape: [len],
            strides: [1],
        }
    }

    /// Take ownership of a mapping (writable unless mapped read-only).
    pub fn mapped(mapping: Mapping) -> Self {
        let len = mapping.len() as ffi::Py_ssize_t;
        OwnedBuffer {
            memory: Memory::Mapped(mapping),
            shape: [len],
            strides: [1],
        }
    }

    /// Share a kept view of an input (each batch gets its own buffer object, whose
    /// weak references say when the batch's last view of it is gone).
    pub fn kept(view: Arc<Mapping>) -> Self {
        let len = view.len() as ffi::Py_ssize_t;
        OwnedBuffer {
            memory: Memory::Kept(view),
            shape: [len],
            strides: [1],
        }
    }

    /// Take ownership of a result from worker `origin`: the mapping and its memfd,
    /// kept to become a spare if the spares have room for it.
    pub fn result(mapping: Mapping, fd: OwnedFd, origin: usize) -> Self {
        let len = mapping.len() as ffi::Py_ssize_t;
        let returned = if spares::hold(mapping.len()) {
            Returned::Spare(Some(fd), Some(origin))
        } else {
            Returned::Closed(dropped::key_of(fd.as_fd()).ok())
        };
        OwnedBuffer {
            memory: Memory::Result(Some(mapping), returned),
            shape: [len],
            strides: [1],
        }
    }

    fn parts(&self) -> (*mut u8, usize, bool) {
        match &self.memory {
            Memory::Decoded(data) => (data.as_ptr(), data.len(), false),
            Memory::Mapped(map) | Memory::Result(Some(map), _) => {
                (map.as_ptr(), map.len(), !map.writable())
            }
            Memory::Kept(view) => (view.as_ptr(), view.len(), !view.writable()),
            Memory::Result(None, _) => (std::ptr::NonNull::dangling().as_ptr(), 0, true),
        }
    }
}

impl Drop for OwnedBuffer {
    fn drop(&mut self) {
        if let Memory::Result(mapping, returned) = &mut self.memory {
            let len = mapping.as_ref().map_or(0, Mapping::len);
            drop(mapping.take()); // unmapped first: nothing here can see a refill
            match returned {
                Returned::Spare(fd, origin) => {
                    if let Some(fd) = fd.take() {
                        spares::give(fd, len, *origin);
                    }
                }
                Returned::Closed(key) => {
                    if let Some(key) = key.take() {
                        dropped::record(key);
                    }
                }
            }
        }
    }
}

#[pymethods]
impl OwnedBuffer {
    fn __len__(&self) -> usize {
        self.parts().1
    }

    /// Export the memory as a writable one-dimensional buffer of unsigned bytes.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("View is null"));
        }
        let this = slf.get();
        let (ptr, len, readonly) = this.parts();
        if readonly && flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("this buffer is read-only"));
        }
        // SAFETY: `view` is a non-null Py_buffer that CPython asks us to fill; the
        // memory, shape and strides live as long as `slf`, whose reference the view
        // keeps. Python writes through `ptr` when writable: the memory is exported like
        // a bytearray's, and `Buffer` is never read by Rust after creation.
        unsafe {
            fill_byte_view(
                view,
                slf.clone().into_any(),
                ptr,
                len,
                readonly,
                flags,
                &this.shape,
                &this.strides,
            );
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

/// Fill `view` as a one-dimensional byte buffer of `len` bytes at `ptr`, owned by
/// `owner` (whose reference the view takes), honouring what `flags` asks for.
///
/// # Safety
/// `view` must be a valid, non-null `Py_buffer` to fill, and `ptr`, `shape` and
/// `strides` must stay valid for as long as `owner` lives.
#[allow(clippy::too_many_arguments)]
pub unsafe fn fill_byte_view(
    view: *mut ffi::Py_buffer,
    owner: Bound<'_, PyAny>,
    ptr: *mut u8,
    len: usize,
    readonly: bool,
    flags: c_int,
    shape: &[ffi::Py_ssize_t; 1],
    strides: &[ffi::Py_ssize_t; 1],
) {
    let wants = |flag: c_int| flags & flag == flag;
    // SAFETY: the caller guarantees `view` is valid and that what it points to
    // outlives `owner`, whose reference the view keeps.
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = ptr.cast();
        (*view).len = len as ffi::Py_ssize_t;
        (*view).readonly = c_int::from(readonly);
        (*view).itemsize = 1;
        (*view).format = if wants(ffi::PyBUF_FORMAT) {
            c"B".as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        (*view).ndim = 1;
        (*view).shape = if wants(ffi::PyBUF_ND) {
            shape.as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        (*view).strides = if wants(ffi::PyBUF_STRIDES) {
            strides.as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = std::ptr::null_mut();
    }
}

/// A Python object's memory borrowed for reading, held for as long as this lives.
pub struct Borrowed {
    buffer: PyUntypedBuffer,
}

impl Borrowed {
    /// Borrow `obj`'s bytes; it must be C-contiguous.
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buffer = PyUntypedBuffer::get(obj)?;
        if !buffer.is_c_contiguous() {
            return Err(PyBufferError::new_err("oxjob needs C-contiguous buffers"));
        }
        Ok(Borrowed { buffer })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        if self.buffer.len_bytes() == 0 {
            return &[];
        }
        // SAFETY: the buffer is C-contiguous with `len_bytes` bytes at `buf_ptr`, and
        // the exporter keeps them in place until `self.buffer` is released on drop.
        unsafe {
            std::slice::from_raw_parts(self.buffer.buf_ptr().cast::<u8>(), self.buffer.len_bytes())
        }
    }
}
