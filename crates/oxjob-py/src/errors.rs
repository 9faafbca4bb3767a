//! Mapping core errors to Python exceptions.

use oxjob_core::Error;
use pyo3::exceptions::{PyMemoryError, PyOSError, PyValueError};
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
        Error::Memory(msg) => PyMemoryError::new_err(format!("{what}: {msg}")),
        Error::Io(err) if is_out_of_memory(&err) => {
            PyMemoryError::new_err(format!("{what}: {err}"))
        }
        // OSError(errno, strerror, filename) becomes FileNotFoundError and friends.
        Error::Io(err) => match err.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, err.to_string(), what.to_string())),
            None => PyOSError::new_err(format!("{what}: {err}")),
        },
    }
}

/// ENOMEM, or a frame dropped for want of memory (std maps ENOMEM to this kind).
fn is_out_of_memory(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::OutOfMemory
}

/// An operating-system error as `OSError`, or as `MemoryError` when it says the
/// memory ran out (a mapping or a memfd that could not be had).
pub fn os_error(err: std::io::Error) -> PyErr {
    if is_out_of_memory(&err) {
        PyMemoryError::new_err(err.to_string())
    } else {
        // The matching OSError subclass (BrokenPipeError for EPIPE...): callers tell a
        // dead peer from other failures by it.
        PyErr::from(err)
    }
}
