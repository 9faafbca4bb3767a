//! `Segment`: a memfd that Python can send to workers as a descriptor (no copy) and
//! view through the buffer protocol (mapped shared and writable on first use).

use crate::buffer::{fill_byte_view, Borrowed};
use crate::errors::os_error;
use oxjob_core::workers::dropped;
use oxjob_core::workers::memfd::{self, MapMode, Mapping};
use pyo3::exceptions::{PyBufferError, PyOSError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::c_int;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Anonymous shared memory: the backing of `oxjob.shared` arrays, and the vehicle
/// of every large buffer sent to or from a worker.
#[pyclass(module = "oxjob._engine", frozen)]
pub struct Segment {
    fd: OwnedFd,
    len: usize,
    mapping: OnceLock<Mapping>,
    shape: [ffi::Py_ssize_t; 1],
    strides: [ffi::Py_ssize_t; 1],
    /// Sent to a worker as a task's input, which workers may keep mapped: its drop is
    /// logged so that they let go of it (see `oxjob_core::workers::dropped`).
    sent_to_worker: AtomicBool,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.sent_to_worker.load(Ordering::Relaxed) {
            if let Ok(key) = dropped::key_of(self.fd.as_fd()) {
                dropped::record(key);
            }
        }
    }
}

impl Segment {
    /// Wrap a descriptor received from another process.
    pub fn from_fd(fd: OwnedFd) -> PyResult<Segment> {
        let len = std::fs::File::from(fd.try_clone().map_err(os_error)?)
            .metadata()
            .map_err(os_error)?
            .len() as usize;
        Ok(Segment::new(fd, len))
    }

    fn new(fd: OwnedFd, len: usize) -> Segment {
        Segment {
            fd,
            len,
            mapping: OnceLock::new(),
            shape: [len as ffi::Py_ssize_t],
            strides: [1],
            sent_to_worker: AtomicBool::new(false),
        }
    }

    /// Note that a worker received this segment as a task's input.
    pub fn mark_sent_to_worker(&self) {
        self.sent_to_worker.store(true, Ordering::Relaxed);
    }

    /// The descriptor, for sending.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The descriptor itself (for mapping with another mode).
    pub fn owned_fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn mapped(&self) -> PyResult<&Mapping> {
        if let Some(mapping) = self.mapping.get() {
            return Ok(mapping);
        }
        let mapping = Mapping::new(&self.fd, MapMode::Shared).map_err(|err| {
            let len = self.len;
            os_error(std::io::Error::new(
                err.kind(),
                format!("cannot map a shared segment of {len} bytes: {err}"),
            ))
        })?;
        // Two threads may race here: the loser's mapping is simply unmapped.
        let _ = self.mapping.set(mapping);
        self.mapping
            .get()
            .ok_or_else(|| PyOSError::new_err("segment could not be mapped"))
    }
}

#[pymethods]
impl Segment {
    /// A new zero-filled segment of `nbytes` bytes.
    #[staticmethod]
    fn create(nbytes: usize) -> PyResult<Segment> {
        let fd = memfd::create(nbytes as u64).map_err(os_error)?;
        Ok(Segment::new(fd, nbytes))
    }

    /// A new segment holding a copy of a bytes-like object (copied without the GIL).
    #[staticmethod]
    fn from_buffer(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Segment> {
        let borrowed = Borrowed::new(data)?;
        let bytes = borrowed.as_slice();
        let fd = py.detach(|| memfd::from_bytes(bytes)).map_err(os_error)?;
        Ok(Segment::new(fd, bytes.len()))
    }

    /// Overwrite the whole segment with `data`, which must be exactly as long.
    /// Only for a segment nobody maps any more (see the `Released` frame).
    fn refill(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let borrowed = Borrowed::new(data)?;
        let bytes = borrowed.as_slice();
        if bytes.len() != self.len {
            return Err(PyValueError::new_err(format!(
                "refill needs {} bytes, got {}",
                self.len,
                bytes.len()
            )));
        }
        match self.mapping.get() {
            // Mapped here already (see `map_for_refills`): a plain memcpy.
            Some(mapping) => py.detach(|| mapping.write_all(bytes)),
            None => py.detach(|| memfd::write_at(self.owned_fd(), bytes)),
        }
        .map_err(os_error)
    }

    /// Map the segment here now, every page writable, so that each later `refill` is a
    /// memcpy (a worker's spare result segments, refilled again and again).
    fn map_for_refills(&self, py: Python<'_>) -> PyResult<()> {
        if self.mapping.get().is_none() {
            let mapping = self.mapped()?;
            py.detach(|| mapping.populate_write());
        }
        Ok(())
    }

    /// Size in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.len
    }

    /// Address of the shared mapping in this process (maps it if needed).
    #[getter]
    fn address(&self) -> PyResult<usize> {
        Ok(self.mapped()?.as_ptr() as usize)
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// Export the shared mapping as a writable one-dimensional byte buffer.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("View is null"));
        }
        let this = slf.get();
        let ptr = this.mapped()?.as_ptr();
        // SAFETY: `view` is a non-null Py_buffer to fill; the mapping and the shape
        // and strides arrays live as long as `slf`, whose reference the view keeps.
        unsafe {
            fill_byte_view(
                view,
                slf.clone().into_any(),
                ptr,
                this.len,
                false,
                flags,
                &this.shape,
                &this.strides,
            );
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __repr__(&self) -> String {
        format!("Segment({} bytes)", self.len)
    }
}

/// `(address, nbytes)` of a bytes-like object's memory: identifies a buffer
/// sent several times in one call, so that it is copied only once.
#[pyfunction]
pub fn buffer_address(data: &Bound<'_, PyAny>) -> PyResult<(usize, usize)> {
    let borrowed = Borrowed::new(data)?;
    let bytes = borrowed.as_slice();
    Ok((bytes.as_ptr() as usize, bytes.len()))
}
