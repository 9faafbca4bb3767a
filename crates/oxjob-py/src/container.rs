//! `dump`/`load` entry points: Python buffers in, containers out, and back.

use crate::buffer::{Borrowed, OwnedBuffer};
use crate::errors::to_py;
use oxjob_core::buffer::Buffer;
use oxjob_core::codec::{Codec, CODEC_NAMES};
use oxjob_core::container::{self, FileSource, Section, SectionKind, WriteOptions};
use oxjob_core::tempname;
use oxjob_core::work_queue;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

pub(crate) fn options(codec: &str, level: i32, threads: Option<usize>) -> PyResult<WriteOptions> {
    let codec = Codec::from_name(codec).map_err(|e| to_py(e, "codec"))?;
    Ok(WriteOptions {
        codec,
        level,
        threads: threads.unwrap_or_else(work_queue::default_threads),
    })
}

pub(crate) fn borrow_all(parts: &Bound<'_, PyList>) -> PyResult<Vec<Borrowed>> {
    parts.iter().map(|part| Borrowed::new(&part)).collect()
}

pub(crate) fn sections(borrowed: &[Borrowed]) -> Vec<Section<'_>> {
    borrowed
        .iter()
        .enumerate()
        .map(|(i, b)| Section {
            kind: if i == 0 {
                SectionKind::Pickle
            } else {
                SectionKind::Buffer
            },
            data: b.as_slice(),
        })
        .collect()
}

/// Write `parts` (pickle stream, then buffers) to `path` atomically: into a
/// temporary file beside it, renamed over it once complete. Returns the size.
#[pyfunction]
#[pyo3(signature = (path, parts, codec, level, threads=None))]
pub fn write_file(
    py: Python<'_>,
    path: PathBuf,
    parts: &Bound<'_, PyList>,
    codec: &str,
    level: i32,
    threads: Option<usize>,
) -> PyResult<u64> {
    let opts = options(codec, level, threads)?;
    let borrowed = borrow_all(parts)?;
    let sections = sections(&borrowed);
    let what = path.display().to_string();
    py.detach(|| {
        // An unpredictable name, created exclusively: nothing planted is followed.
        let (file, temp) = tempname::create_beside(&path).map_err(oxjob_core::Error::Io)?;
        let result = (|| {
            let mut sink = BufWriter::with_capacity(1 << 20, file);
            let written = container::write(&mut sink, &sections, &opts)?;
            sink.into_inner().map_err(io::IntoInnerError::into_error)?;
            fs::rename(&temp, &path)?;
            Ok(written)
        })();
        if result.is_err() {
            // Never leave a partial file behind; the target was not touched.
            let _ = fs::remove_file(&temp);
        }
        result
    })
    .map_err(|e| to_py(e, &what))
}

/// Forwards writes to a Python `write` method, taking the GIL for each call.
struct PyWriter<'a> {
    write: &'a Py<PyAny>,
    error: Option<PyErr>,
}

impl Write for PyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let result = self
                .write
                .call1(py, (PyBytes::new(py, buf),))
                .and_then(|n| {
                    if n.is_none(py) {
                        Ok(buf.len())
                    } else {
                        n.extract::<usize>(py)
                    }
                });
            match result {
                Ok(n) => Ok(n.min(buf.len())),
                Err(err) => {
                    self.error = Some(err);
                    Err(io::Error::other("the file object's write() failed"))
                }
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Write `parts` as a container through `write(bytes)` (a file object's method).
#[pyfunction]
#[pyo3(signature = (write, parts, codec, level, threads=None))]
pub fn write_stream(
    py: Python<'_>,
    write: Py<PyAny>,
    parts: &Bound<'_, PyList>,
    codec: &str,
    level: i32,
    threads: Option<usize>,
) -> PyResult<u64> {
    let opts = options(codec, level, threads)?;
    let borrowed = borrow_all(parts)?;
    let sections = sections(&borrowed);
    let mut writer = PyWriter {
        write: &write,
        error: None,
    };
    let result = py.detach(|| {
        // Batch small pieces (headers, chunk records) into fewer Python calls.
        let mut sink = BufWriter::with_capacity(1 << 20, &mut writer);
        let written = container::write(&mut sink, &sections, &opts)?;
        sink.flush()?;
        Ok::<_, oxjob_core::Error>(written)
    });
    if let Some(err) = writer.error.take() {
        return Err(err);
    }
    result.map_err(|e| to_py(e, "<file object>"))
}

pub(crate) fn into_python(py: Python<'_>, decoded: Vec<Buffer>) -> PyResult<Bound<'_, PyList>> {
    let owned = decoded
        .into_iter()
        .map(|data| Bound::new(py, OwnedBuffer::new(data)))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, owned)
}

/// Read and check a whole container file; returns `[pickle, buffer, ...]`.
#[pyfunction]
#[pyo3(signature = (path, threads=None))]
pub fn read_file(
    py: Python<'_>,
    path: PathBuf,
    threads: Option<usize>,
) -> PyResult<Bound<'_, PyList>> {
    let threads = threads.unwrap_or_else(work_queue::default_threads);
    let what = path.display().to_string();
    let decoded = py
        .detach(|| Ok(container::read_file(File::open(&path)?, threads)?.1))
        .map_err(|e: oxjob_core::Error| to_py(e, &what))?;
    into_python(py, decoded)
}

/// Read and check the container at the start of `data`; returns
/// `([pickle, buffer, ...], length)` so the caller can step past it.
#[pyfunction]
#[pyo3(signature = (data, threads=None))]
pub fn read_bytes<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let threads = threads.unwrap_or_else(work_queue::default_threads);
    let borrowed = Borrowed::new(data)?;
    let bytes = borrowed.as_slice();
    let (layout, decoded) = py
        .detach(|| container::read_all(bytes, threads))
        .map_err(|e| to_py(e, "<file object>"))?;
    PyTuple::new(
        py,
        [
            into_python(py, decoded)?.into_any(),
            layout.end.into_pyobject(py)?.into_any(),
        ],
    )
}

/// Check a container file's structure and decode its pickle stream only.
///
/// Returns `(pickle, [(codec, offset, length), ...], end)` for the buffers, so
/// that uncompressed buffers can be memory-mapped in place.
#[pyfunction]
pub fn layout_file(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyTuple>> {
    let what = path.display().to_string();
    let (pickle, buffers, end, size) = py
        .detach(|| {
            let src = FileSource::new(File::open(&path)?)?;
            let layout = container::parse(&src)?;
            let first = &layout.sections[0];
            let pickle = container::decode_section(&src, first, 0, 1)?;
            let buffers: Vec<(&'static str, u64, u64)> = layout.sections[1..]
                .iter()
                .map(|s| (s.codec.name(), s.data_offset, s.raw_len))
                .collect();
            let size = oxjob_core::container::Source::size(&src);
            Ok((pickle, buffers, layout.end, size))
        })
        .map_err(|e| to_py(e, &what))?;
    if end != size {
        return Err(to_py(
            oxjob_core::Error::Corrupt("unexpected bytes after the end of the container".into()),
            &what,
        ));
    }
    let pickle = Bound::new(py, OwnedBuffer::new(pickle))?;
    PyTuple::new(
        py,
        [
            pickle.into_any(),
            PyList::new(py, buffers)?.into_any(),
            end.into_pyobject(py)?.into_any(),
        ],
    )
}

/// Names of the built-in codecs.
#[pyfunction]
pub fn codec_names() -> Vec<&'static str> {
    CODEC_NAMES.to_vec()
}

/// Threads the codecs use by default (the CPUs this process may run on).
#[pyfunction]
pub fn default_threads() -> usize {
    work_queue::default_threads()
}

/// Mark the uncompressed buffers of a container file as unverified, before they
/// are mapped for writing (`mmap_mode='r+'`).
#[pyfunction]
pub fn mark_unverified(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    let what = path.display().to_string();
    py.detach(|| {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        container::mark_unverified(&file)
    })
    .map_err(|e| to_py(e, &what))
}
