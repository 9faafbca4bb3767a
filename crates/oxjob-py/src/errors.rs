//! Mapping core errors to Python exceptions.

use oxjob_core::Error;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    oxjob.exceptions,
    CorruptFileError,
    PyValueError,
    "A file is not a valid oxjob container: truncated, corrupted or not oxjob's."
);

/// Convert a core error, naming `what` (a file name or "<file object>") in the message.
pub fn to_py(err: Error, what: &str) -> PyErr {
    match err {
        Error::Corrupt(msg) => CorruptFileError::new_err(format!("{what}: {msg}")),
        Error::Invalid(msg) => PyValueError::new_err(msg),
        // OSError(errno, strerror, filename) becomes FileNotFoundError and friends.
        Error::Io(err) => match err.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, err.to_string(), what.to_string())),
            None => PyOSError::new_err(format!("{what}: {err}")),
        },
    }
}
