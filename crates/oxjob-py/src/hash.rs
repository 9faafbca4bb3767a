//! The streaming xxh3-128 hasher, with `hashlib`'s method names.

use crate::buffer::Borrowed;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Below this many bytes, releasing the GIL costs more than it frees.
const DETACH_ABOVE: usize = 1 << 16;

/// Incremental xxh3-128 (`update`, `digest`, `hexdigest`, like `hashlib` objects).
#[pyclass(module = "oxjob._engine")]
#[derive(Default)]
pub struct StreamHasher {
    // Boxed: xxh3's state is 64-byte aligned, and Python allocates the object itself
    // with 16-byte alignment only (a debug build panicked: misaligned pointer dereference).
    inner: Box<oxjob_core::hash::StreamHasher>,
}

#[pymethods]
impl StreamHasher {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Feed a bytes-like object (C-contiguous); large inputs are hashed without the GIL.
    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let borrowed = Borrowed::new(data)?;
        let bytes = borrowed.as_slice();
        if bytes.len() > DETACH_ABOVE {
            let inner = &mut self.inner;
            py.detach(|| inner.update(bytes));
        } else {
            self.inner.update(bytes);
        }
        Ok(())
    }

    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.digest())
    }

    fn hexdigest(&self) -> String {
        self.inner.hexdigest()
    }

    #[getter]
    fn name(&self) -> &'static str {
        "xxh3_128"
    }
}
