//! The cache store (`oxjob.memory`'s local backend) as a Python class.

use crate::container::{borrow_all, into_python, options, sections};
use crate::errors::to_py;
use oxjob_core::store::{EntryInfo, Limits};
use oxjob_core::work_queue;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

type EntryTuple = (String, String, u64, f64, f64);

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn entry_tuple(e: EntryInfo) -> EntryTuple {
    (
        e.func_id,
        e.key,
        e.bytes,
        seconds(e.last_access),
        seconds(e.created),
    )
}

/// A cache store rooted at one directory (see `oxjob_core::store`).
#[pyclass(module = "oxjob._engine", frozen)]
pub struct Store {
    inner: oxjob_core::store::Store,
}

impl Store {
    fn describe(&self, func_id: &str, key: &str) -> String {
        self.inner
            .entry_dir(func_id, key)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| format!("{func_id}/{key}"))
    }
}

#[pymethods]
impl Store {
    #[new]
    fn new(root: PathBuf) -> Self {
        Store {
            inner: oxjob_core::store::Store::new(root),
        }
    }

    #[getter]
    fn root(&self) -> PathBuf {
        self.inner.root().to_path_buf()
    }

    /// The directory of an entry.
    fn entry_dir(&self, func_id: &str, key: &str) -> PyResult<PathBuf> {
        self.inner
            .entry_dir(func_id, key)
            .map_err(|e| to_py(e, "cache"))
    }

    /// Store `[pickle, buffer, ...]` and `metadata`, replacing an older entry of the
    /// key; returns the bytes the entry takes.
    #[pyo3(signature = (func_id, key, parts, codec, level, metadata, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        func_id: &str,
        key: &str,
        parts: &Bound<'_, PyList>,
        codec: &str,
        level: i32,
        metadata: &[u8],
        threads: Option<usize>,
    ) -> PyResult<u64> {
        let opts = options(codec, level, threads)?;
        let borrowed = borrow_all(parts)?;
        let sections = sections(&borrowed);
        let outcome = py
            .detach(|| self.inner.put(func_id, key, &sections, &opts, metadata))
            .map_err(|e| to_py(e, &self.describe(func_id, key)))?;
        Ok(outcome.bytes())
    }

    /// `[pickle, buffer, ...]` of an entry, or None when absent; marks it as used.
    #[pyo3(signature = (func_id, key, threads=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        func_id: &str,
        key: &str,
        threads: Option<usize>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let threads = threads.unwrap_or_else(work_queue::default_threads);
        let found = py
            .detach(|| self.inner.get(func_id, key, threads))
            .map_err(|e| to_py(e, &self.describe(func_id, key)))?;
        match found {
            None => Ok(None),
            Some(decoded) => Ok(Some(into_python(py, decoded)?)),
        }
    }

    /// Mark an entry as just used.
    fn touch(&self, func_id: &str, key: &str) -> PyResult<()> {
        self.inner
            .touch(func_id, key)
            .map_err(|e| to_py(e, &self.describe(func_id, key)))
    }

    fn contains(&self, func_id: &str, key: &str) -> bool {
        self.inner.contains(func_id, key)
    }

    fn remove(&self, py: Python<'_>, func_id: &str, key: &str) -> PyResult<()> {
        py.detach(|| self.inner.remove(func_id, key))
            .map_err(|e| to_py(e, &self.describe(func_id, key)))
    }

    /// Remove a function's entries (`sub`), or every entry; returns how many.
    #[pyo3(signature = (sub=None))]
    fn clear(&self, py: Python<'_>, sub: Option<&str>) -> PyResult<usize> {
        py.detach(|| self.inner.clear(sub))
            .map_err(|e| to_py(e, "cache"))
    }

    /// Every entry: `(func_id, key, bytes, last_access, created)`, times in seconds.
    fn entries(&self, py: Python<'_>) -> PyResult<Vec<EntryTuple>> {
        let found = py
            .detach(|| self.inner.entries())
            .map_err(|e| to_py(e, "cache"))?;
        Ok(found.into_iter().map(entry_tuple).collect())
    }

    /// Enforce bounds, least recently used first; returns the removed entries.
    #[pyo3(signature = (bytes_limit=None, items_limit=None, age_limit=None))]
    fn reduce(
        &self,
        py: Python<'_>,
        bytes_limit: Option<u64>,
        items_limit: Option<usize>,
        age_limit: Option<f64>,
    ) -> PyResult<Vec<EntryTuple>> {
        let limits = limits(bytes_limit, items_limit, age_limit)?;
        let removed = py
            .detach(|| self.inner.reduce(&limits))
            .map_err(|e| to_py(e, "cache"))?;
        Ok(removed.into_iter().map(entry_tuple).collect())
    }

    /// Enforce bounds after a write of `nbytes`, walking the store only when due
    /// (amortised O(1) per write); returns the removed entries.
    #[pyo3(signature = (nbytes, bytes_limit=None, items_limit=None, age_limit=None))]
    fn after_put(
        &self,
        py: Python<'_>,
        nbytes: u64,
        bytes_limit: Option<u64>,
        items_limit: Option<usize>,
        age_limit: Option<f64>,
    ) -> PyResult<Vec<EntryTuple>> {
        let limits = limits(bytes_limit, items_limit, age_limit)?;
        let removed = py
            .detach(|| self.inner.after_put(nbytes, &limits))
            .map_err(|e| to_py(e, "cache"))?;
        Ok(removed.into_iter().map(entry_tuple).collect())
    }
}

fn limits(
    bytes_limit: Option<u64>,
    items_limit: Option<usize>,
    age_limit: Option<f64>,
) -> PyResult<Limits> {
    let age = match age_limit {
        Some(s) if !(s.is_finite() && s >= 0.0) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "age_limit must be a non-negative duration, got {s} seconds"
            )))
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    Ok(Limits {
        bytes: bytes_limit,
        items: items_limit,
        age,
    })
}
